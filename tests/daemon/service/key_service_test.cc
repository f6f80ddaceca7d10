// KeyService against FakeHsm, SQLite ":memory:" and a FakeClock: every RPC's
// behaviour, state rule and bad input, without gRPC or PKCS#11.
#include "daemon/service/key_service.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>

#include "daemon/common/errors.h"
#include "tests/testing/status_matchers.h"
#include "daemon/keystore/sqlite_key_store.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"
#include "tests/daemon/service/service_fixture.h"

namespace kms::service {
namespace {

using ::kms::testing::FakeClock;
using ::kms::testing::FakeHsm;

class KeyServiceTest : public ServiceTest {
 protected:
  absl::Status Disable(const std::string& key_id) {
    v1::DisableKeyRequest r;
    r.set_key_id(key_id);
    return service_->DisableKey(r).status();
  }

  absl::StatusOr<v1::ScheduleKeyDeletionResponse> Schedule(const std::string& key_id,
                                                           std::optional<int> days) {
    v1::ScheduleKeyDeletionRequest r;
    r.set_key_id(key_id);
    if (days) r.set_pending_window_in_days(*days);
    return service_->ScheduleKeyDeletion(r);
  }

  absl::Status CreateAlias(const std::string& alias, const std::string& target) {
    v1::CreateAliasRequest r;
    r.set_alias_name(alias);
    r.set_target_key_id(target);
    return service_->CreateAlias(r).status();
  }

};

// ---------------------------------------------------------------- CreateKey

TEST_F(KeyServiceTest, CreateKeyMakesAnEnabledKeyWithOneHsmObject) {
  v1::CreateKeyRequest request;
  request.set_description("payments");
  auto* tag = request.add_tags();
  tag->set_tag_key("team");
  tag->set_tag_value("pay");
  auto response = service_->CreateKey(request);
  ASSERT_TRUE(response.ok()) << response.status();
  const v1::KeyMetadata& m = response->key_metadata();
  EXPECT_EQ(m.key_state(), v1::ENABLED);
  EXPECT_TRUE(m.enabled());
  EXPECT_EQ(m.description(), "payments");
  EXPECT_EQ(m.origin(), v1::AWS_KMS);
  EXPECT_EQ(m.key_usage(), v1::ENCRYPT_DECRYPT);
  EXPECT_EQ(m.key_spec(), v1::SYMMETRIC_DEFAULT);
  EXPECT_EQ(m.arn(), "arn:kmsd:kms:local:000000000000:key/" + m.key_id());
  EXPECT_EQ(m.creation_date().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_FALSE(m.has_deletion_date());
  ASSERT_FALSE(m.current_key_version_id().empty());
  EXPECT_EQ(fake_hsm_.ListKeyIds(), std::vector<std::string>{m.current_key_version_id()});
  auto attributes = fake_hsm_.GetKeyAttributes(m.current_key_version_id());
  ASSERT_TRUE(attributes.ok());
  EXPECT_TRUE(attributes->sensitive);
  EXPECT_FALSE(attributes->extractable);
  EXPECT_EQ(Describe(m.key_id()).SerializeAsString(), m.SerializeAsString());
}

TEST_F(KeyServiceTest, ExternalKeyStartsPendingImportWithoutMaterial) {
  v1::CreateKeyRequest request;
  request.set_origin(v1::EXTERNAL);
  auto response = service_->CreateKey(request);
  ASSERT_TRUE(response.ok()) << response.status();
  const std::string key_id = response->key_metadata().key_id();
  EXPECT_EQ(response->key_metadata().key_state(), v1::PENDING_IMPORT);
  EXPECT_EQ(response->key_metadata().origin(), v1::EXTERNAL);
  EXPECT_TRUE(response->key_metadata().current_key_version_id().empty());
  EXPECT_TRUE(fake_hsm_.ListKeyIds().empty());
  EXPECT_ERROR(Encrypt(key_id, "x"), kFailedPrecondition, "KMSInvalidStateException");
  v1::EnableKeyRequest enable;
  enable.set_key_id(key_id);
  EXPECT_ERROR(service_->EnableKey(enable), kFailedPrecondition, "KMSInvalidStateException");
}

TEST_F(KeyServiceTest, CreateKeyWithBadInputChangesNothing) {
  std::vector<v1::CreateKeyRequest> bad(5);
  bad[0].set_description(std::string(8193, 'd'));
  bad[1].add_tags()->set_tag_key("");
  bad[2].set_key_usage(static_cast<v1::KeyUsage>(7));
  bad[3].set_key_spec(static_cast<v1::KeySpec>(9));
  bad[4].set_origin(static_cast<v1::OriginType>(5));
  for (const auto& request : bad) {
    auto response = service_->CreateKey(request);
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument) << response.status();
  }
  EXPECT_EQ(ErrorTypeOf(service_->CreateKey(bad[1]).status()), "TagException");
  auto listed = service_->ListKeys(v1::ListKeysRequest());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->keys_size(), 0);
  EXPECT_TRUE(fake_hsm_.ListKeyIds().empty());
}

TEST_F(KeyServiceTest, CreateKeyWhenHsmFailsLeavesNoKeyAndNoIntent) {
  faulty_->FailOperation("GenerateAesKey", absl::UnavailableError("token gone"));
  EXPECT_ERROR(service_->CreateKey(v1::CreateKeyRequest()), kUnavailable,
               "KeyUnavailableException");
  faulty_->ClearFaults();
  auto listed = service_->ListKeys(v1::ListKeysRequest());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->keys_size(), 0);
  auto intents = store_->ListIntents();
  ASSERT_TRUE(intents.ok());
  EXPECT_TRUE(intents->empty());
  EXPECT_FALSE(NewKey().empty());  // and it works again once the HSM is back
}

// ---------------------------------------------------------------- Recover

TEST_F(KeyServiceTest, RecoverRemovesHsmObjectOfAnUncommittedCreate) {
  // The state a kill -9 between the HSM step and the commit leaves behind.
  ASSERT_TRUE(fake_hsm_.GenerateAesKey("orphan-version").ok());
  ASSERT_TRUE(store_->AddIntent({0, "create_version", "some-key", "orphan-version", clock_.Now()}).ok());
  const std::string kept = NewKey();
  ASSERT_TRUE(service_->Recover().ok());
  EXPECT_FALSE(fake_hsm_.HasKey("orphan-version"));
  EXPECT_TRUE(store_->ListIntents()->empty());
  EXPECT_TRUE(fake_hsm_.HasKey(Describe(kept).current_key_version_id()));
}

TEST_F(KeyServiceTest, RecoverKeepsACommittedCreateAndClearsItsIntent) {
  const std::string key_id = NewKey();
  const std::string version = Describe(key_id).current_key_version_id();
  // The state a kill -9 between the commit and the intent's removal leaves.
  ASSERT_TRUE(store_->AddIntent({0, "create_version", key_id, version, clock_.Now()}).ok());
  ASSERT_TRUE(service_->Recover().ok());
  EXPECT_TRUE(fake_hsm_.HasKey(version));
  EXPECT_TRUE(store_->ListIntents()->empty());
  EXPECT_TRUE(Encrypt(key_id, "still works").ok());
}

TEST_F(KeyServiceTest, RecoverWithAnIntentWhoseObjectNeverAppearedJustClearsIt) {
  ASSERT_TRUE(store_->AddIntent({0, "create_version", "k", "never-made", clock_.Now()}).ok());
  ASSERT_TRUE(service_->Recover().ok());
  EXPECT_TRUE(store_->ListIntents()->empty());
}

// ---------------------------------------------------------------- Encrypt / Decrypt

TEST_F(KeyServiceTest, EncryptThenDecryptRoundTrips) {
  const std::string key_id = NewKey();
  auto blob = Encrypt(key_id, "attack at dawn", {{"tenant", "t1"}});
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto plaintext = Decrypt(*blob, {{"tenant", "t1"}});
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  EXPECT_EQ(*plaintext, "attack at dawn");
}

TEST_F(KeyServiceTest, DecryptReportsTheKeyThatDecrypted) {
  const std::string key_id = NewKey();
  v1::DecryptRequest request;
  request.set_ciphertext_blob(*Encrypt(key_id, "p"));
  auto response = service_->Decrypt(request);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->key_id(), service_->resource_names().KeyArn(key_id));
}

TEST_F(KeyServiceTest, ContextPairsInAnotherOrderDecrypt) {
  const std::string key_id = NewKey();
  v1::EncryptRequest request;
  request.set_key_id(key_id);
  request.set_plaintext("p");
  (*request.mutable_encryption_context())["b"] = "2";
  (*request.mutable_encryption_context())["a"] = "1";
  (*request.mutable_encryption_context())["c"] = "3";
  auto blob = service_->Encrypt(request);
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(*Decrypt(blob->ciphertext_blob(), {{"c", "3"}, {"a", "1"}, {"b", "2"}}), "p");
}

TEST_F(KeyServiceTest, AnyContextChangeIsInvalidCiphertext) {
  const std::string key_id = NewKey();
  const EncryptionContext context = {{"tenant", "t1"}, {"purpose", "backup"}};
  auto blob = Encrypt(key_id, "p", context);
  ASSERT_TRUE(blob.ok());
  const std::vector<EncryptionContext> wrong = {
      {},                                                            // all dropped
      {{"tenant", "t1"}},                                            // one dropped
      {{"tenant", "t2"}, {"purpose", "backup"}},                     // value changed
      {{"tenant", "t1"}, {"purpose", "backup"}, {"extra", "x"}},     // one added
      {{"Tenant", "t1"}, {"purpose", "backup"}},                     // key changed
      {{"tenant", "t1"}, {"purpose", "backup "}},                    // trailing space
  };
  for (const auto& c : wrong) {
    EXPECT_ERROR(Decrypt(*blob, c), kInvalidArgument, "InvalidCiphertextException");
  }
}

TEST_F(KeyServiceTest, EveryChangedByteIsInvalidCiphertext) {
  const std::string key_id = NewKey();
  auto blob = Encrypt(key_id, "sixteen byte msg", {{"k", "v"}});
  ASSERT_TRUE(blob.ok());
  for (size_t i = 0; i < blob->size(); ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      std::string changed = *blob;
      changed[i] = static_cast<char>(changed[i] ^ flip);
      EXPECT_ERROR(Decrypt(changed, {{"k", "v"}}), kInvalidArgument,
                   "InvalidCiphertextException");
    }
  }
}

TEST_F(KeyServiceTest, TruncatedOrExtendedBlobIsInvalidCiphertext) {
  const std::string key_id = NewKey();
  auto blob = Encrypt(key_id, "payload");
  ASSERT_TRUE(blob.ok());
  for (size_t n = 1; n < blob->size(); ++n) {
    EXPECT_ERROR(Decrypt(blob->substr(0, n)), kInvalidArgument, "InvalidCiphertextException")
        << "truncated to " << n;
  }
  for (const std::string& tail : {std::string(1, '\0'), std::string(16, 'x')}) {
    EXPECT_ERROR(Decrypt(*blob + tail), kInvalidArgument, "InvalidCiphertextException");
  }
}

TEST_F(KeyServiceTest, EmptyBlobIsAValidationError) {
  EXPECT_ERROR(Decrypt(""), kInvalidArgument, "ValidationException");
}

TEST_F(KeyServiceTest, DecryptWithAnotherKeyNamedIsIncorrectKey) {
  const std::string a = NewKey();
  const std::string b = NewKey();
  ASSERT_TRUE(CreateAlias("alias/a", a).ok());
  auto blob = Encrypt(a, "p");
  ASSERT_TRUE(blob.ok());
  EXPECT_ERROR(Decrypt(*blob, {}, b), kInvalidArgument, "IncorrectKeyException");
  EXPECT_EQ(*Decrypt(*blob, {}, a), "p");
  EXPECT_EQ(*Decrypt(*blob, {}, "alias/a"), "p");
  EXPECT_EQ(*Decrypt(*blob, {}, service_->resource_names().KeyArn(a)), "p");
  EXPECT_ERROR(Decrypt(*blob, {}, "alias/missing"), kNotFound, "NotFoundException");
}

TEST_F(KeyServiceTest, EncryptRejectsBadPlaintextSizesAndUnknownKeys) {
  const std::string key_id = NewKey();
  EXPECT_ERROR(Encrypt(key_id, ""), kInvalidArgument, "ValidationException");
  EXPECT_ERROR(Encrypt(key_id, std::string(4097, 'p')), kInvalidArgument,
               "ValidationException");
  EXPECT_TRUE(Encrypt(key_id, std::string(4096, 'p')).ok());
  EXPECT_ERROR(Encrypt("", "p"), kInvalidArgument, "ValidationException");
  EXPECT_ERROR(Encrypt("not-a-key-id", "p"), kInvalidArgument, "ValidationException");
  EXPECT_ERROR(Encrypt("00000000-0000-4000-8000-000000000000", "p"), kNotFound,
               "NotFoundException");
  EXPECT_ERROR(Encrypt("alias/none", "p"), kNotFound, "NotFoundException");
}

TEST_F(KeyServiceTest, EachEncryptionUsesAFreshIv) {
  const std::string key_id = NewKey();
  std::set<std::string> blobs;
  for (int i = 0; i < 50; ++i) blobs.insert(*Encrypt(key_id, "same"));
  EXPECT_EQ(blobs.size(), 50u);
}

TEST_F(KeyServiceTest, HsmOutageIsKeyUnavailableAndRecovers) {
  const std::string key_id = NewKey();
  faulty_->FailOperation("EncryptGcm", absl::UnavailableError("CKR_DEVICE_REMOVED"));
  auto failed = Encrypt(key_id, "p");
  EXPECT_ERROR(failed, kUnavailable, "KeyUnavailableException");
  EXPECT_EQ(failed.status().message().find("CKR_"), absl::string_view::npos)
      << "HSM details must stay in the log";
  faulty_->ClearFaults();
  EXPECT_TRUE(Encrypt(key_id, "p").ok());
}

// ---------------------------------------------------------------- states

TEST_F(KeyServiceTest, DisabledKeyRefusesDataPlaneAndEnableRestoresIt) {
  const std::string key_id = NewKey();
  auto blob = Encrypt(key_id, "p");
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(Disable(key_id).ok());
  EXPECT_EQ(Describe(key_id).key_state(), v1::DISABLED);
  EXPECT_FALSE(Describe(key_id).enabled());
  EXPECT_ERROR(Encrypt(key_id, "p"), kFailedPrecondition, "DisabledException");
  EXPECT_ERROR(Decrypt(*blob), kFailedPrecondition, "DisabledException");
  v1::GenerateDataKeyRequest gdk;
  gdk.set_key_id(key_id);
  gdk.set_key_spec(v1::AES_256);
  EXPECT_ERROR(service_->GenerateDataKey(gdk), kFailedPrecondition, "DisabledException");
  EXPECT_TRUE(Disable(key_id).ok());  // idempotent
  v1::EnableKeyRequest enable;
  enable.set_key_id(key_id);
  ASSERT_TRUE(service_->EnableKey(enable).ok());
  ASSERT_TRUE(service_->EnableKey(enable).ok());  // idempotent
  EXPECT_EQ(*Decrypt(*blob), "p");
}

TEST_F(KeyServiceTest, UpdateKeyDescription) {
  const std::string key_id = NewKey("old");
  v1::UpdateKeyDescriptionRequest r;
  r.set_key_id(key_id);
  r.set_description("new");
  ASSERT_TRUE(service_->UpdateKeyDescription(r).ok());
  EXPECT_EQ(Describe(key_id).description(), "new");
  r.set_description(std::string(8193, 'x'));
  EXPECT_ERROR(service_->UpdateKeyDescription(r), kInvalidArgument, "ValidationException");
  EXPECT_EQ(Describe(key_id).description(), "new");
}

// ---------------------------------------------------------------- deletion

TEST_F(KeyServiceTest, ScheduleKeyDeletionValidatesTheWindow) {
  const std::string key_id = NewKey();
  for (int days : {-1, 0, 6, 31, 365}) {
    EXPECT_ERROR(Schedule(key_id, days), kInvalidArgument, "ValidationException");
  }
  EXPECT_EQ(Describe(key_id).key_state(), v1::ENABLED);
}

TEST_F(KeyServiceTest, ScheduleKeyDeletionDefaultsToThirtyDays) {
  const std::string key_id = NewKey();
  auto scheduled = Schedule(key_id, std::nullopt);
  ASSERT_TRUE(scheduled.ok()) << scheduled.status();
  EXPECT_EQ(scheduled->pending_window_in_days(), 30);
  EXPECT_EQ(scheduled->key_state(), v1::PENDING_DELETION);
  EXPECT_EQ(scheduled->deletion_date().seconds(),
            absl::ToUnixSeconds(clock_.Now() + absl::Hours(24 * 30)));
  const v1::KeyMetadata m = Describe(key_id);
  EXPECT_EQ(m.key_state(), v1::PENDING_DELETION);
  EXPECT_EQ(m.deletion_date().seconds(), scheduled->deletion_date().seconds());
  EXPECT_ERROR(Schedule(key_id, 7), kFailedPrecondition, "KMSInvalidStateException");
}

TEST_F(KeyServiceTest, PendingDeletionKeyRefusesUseAndCancelReturnsItDisabled) {
  const std::string key_id = NewKey();
  auto blob = Encrypt(key_id, "p");
  ASSERT_TRUE(Schedule(key_id, 7).ok());
  EXPECT_ERROR(Encrypt(key_id, "p"), kFailedPrecondition, "KMSInvalidStateException");
  EXPECT_ERROR(Decrypt(*blob), kFailedPrecondition, "KMSInvalidStateException");
  EXPECT_TRUE(absl::IsFailedPrecondition(Disable(key_id)));
  v1::CancelKeyDeletionRequest cancel;
  cancel.set_key_id(key_id);
  auto cancelled = service_->CancelKeyDeletion(cancel);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->key_id(), service_->resource_names().KeyArn(key_id));
  const v1::KeyMetadata m = Describe(key_id);
  EXPECT_EQ(m.key_state(), v1::DISABLED);
  EXPECT_FALSE(m.has_deletion_date());
  EXPECT_ERROR(service_->CancelKeyDeletion(cancel), kFailedPrecondition,
               "KMSInvalidStateException");
}

TEST_F(KeyServiceTest, CancelledExternalKeyReturnsToPendingImport) {
  v1::CreateKeyRequest create;
  create.set_origin(v1::EXTERNAL);
  const std::string key_id = service_->CreateKey(create)->key_metadata().key_id();
  ASSERT_TRUE(Schedule(key_id, 7).ok());
  v1::CancelKeyDeletionRequest cancel;
  cancel.set_key_id(key_id);
  ASSERT_TRUE(service_->CancelKeyDeletion(cancel).ok());
  EXPECT_EQ(Describe(key_id).key_state(), v1::PENDING_IMPORT);
}

TEST_F(KeyServiceTest, KeyIsErasedWhenItsDeletionDateArrivesAndNotBefore) {
  const std::string key_id = NewKey();
  const std::string version = Describe(key_id).current_key_version_id();
  ASSERT_TRUE(CreateAlias("alias/doomed", key_id).ok());
  auto blob = Encrypt(key_id, "p");
  ASSERT_TRUE(blob.ok());
  ASSERT_TRUE(Schedule(key_id, 7).ok());

  clock_.Advance(absl::Hours(24 * 7) - absl::Seconds(1));
  EXPECT_EQ(*service_->DeleteDueKeys(), 0);
  EXPECT_TRUE(fake_hsm_.HasKey(version));

  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(*service_->DeleteDueKeys(), 1);
  EXPECT_FALSE(fake_hsm_.HasKey(version));
  v1::DescribeKeyRequest describe;
  describe.set_key_id(key_id);
  EXPECT_ERROR(service_->DescribeKey(describe), kNotFound, "NotFoundException");
  describe.set_key_id("alias/doomed");
  EXPECT_ERROR(service_->DescribeKey(describe), kNotFound, "NotFoundException");
  EXPECT_ERROR(Decrypt(*blob), kInvalidArgument, "InvalidCiphertextException");
  EXPECT_EQ(*service_->DeleteDueKeys(), 0);
}

TEST_F(KeyServiceTest, DeletionInterruptedAfterTheHsmStepIsFinishedByTheNextSweep) {
  const std::string key_id = NewKey();
  const std::string version = Describe(key_id).current_key_version_id();
  ASSERT_TRUE(Schedule(key_id, 7).ok());
  clock_.Advance(absl::Hours(24 * 8));
  // As if a crash came after the crypto-erase but before the rows went.
  ASSERT_TRUE(fake_hsm_.DestroyKey(version).ok());
  EXPECT_EQ(*service_->DeleteDueKeys(), 1);
  v1::DescribeKeyRequest describe;
  describe.set_key_id(key_id);
  EXPECT_ERROR(service_->DescribeKey(describe), kNotFound, "NotFoundException");
}

TEST_F(KeyServiceTest, FailedHsmDestroyKeepsTheKeyPendingForTheNextSweep) {
  const std::string key_id = NewKey();
  ASSERT_TRUE(Schedule(key_id, 7).ok());
  clock_.Advance(absl::Hours(24 * 8));
  faulty_->FailOperation("DestroyKey", absl::UnavailableError("token gone"));
  EXPECT_FALSE(service_->DeleteDueKeys().ok());
  EXPECT_EQ(Describe(key_id).key_state(), v1::PENDING_DELETION);
  faulty_->ClearFaults();
  EXPECT_EQ(*service_->DeleteDueKeys(), 1);
}

TEST_F(KeyServiceTest, RecoverErasesKeysWhoseDeadlinePassedWhileDown) {
  const std::string key_id = NewKey();
  ASSERT_TRUE(Schedule(key_id, 7).ok());
  clock_.Advance(absl::Hours(24 * 30));
  ASSERT_TRUE(service_->Recover().ok());
  EXPECT_TRUE(fake_hsm_.ListKeyIds().empty());
  EXPECT_TRUE(absl::IsNotFound(store_->GetKey(key_id).status()));
}

// ---------------------------------------------------------------- ReEncrypt

TEST_F(KeyServiceTest, ReEncryptMovesABlobToAnotherKeyAndContext) {
  const std::string a = NewKey();
  const std::string b = NewKey();
  auto blob = Encrypt(a, "secret", {{"v", "1"}});
  v1::ReEncryptRequest r;
  r.set_ciphertext_blob(*blob);
  (*r.mutable_source_encryption_context())["v"] = "1";
  r.set_destination_key_id(b);
  (*r.mutable_destination_encryption_context())["v"] = "2";
  auto moved = service_->ReEncrypt(r);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->source_key_id(), service_->resource_names().KeyArn(a));
  EXPECT_EQ(moved->key_id(), service_->resource_names().KeyArn(b));
  EXPECT_EQ(*Decrypt(moved->ciphertext_blob(), {{"v", "2"}}, b), "secret");
  EXPECT_ERROR(Decrypt(moved->ciphertext_blob(), {{"v", "1"}}), kInvalidArgument,
               "InvalidCiphertextException");
}

TEST_F(KeyServiceTest, ReEncryptToTheSameKeyGivesANewBlob) {
  const std::string a = NewKey();
  auto blob = Encrypt(a, "secret");
  v1::ReEncryptRequest r;
  r.set_ciphertext_blob(*blob);
  r.set_destination_key_id(a);
  auto moved = service_->ReEncrypt(r);
  ASSERT_TRUE(moved.ok());
  EXPECT_NE(moved->ciphertext_blob(), *blob);
  EXPECT_EQ(*Decrypt(moved->ciphertext_blob()), "secret");
}

TEST_F(KeyServiceTest, ReEncryptChecksSourceAndDestination) {
  const std::string a = NewKey();
  const std::string b = NewKey();
  auto blob = Encrypt(a, "secret", {{"v", "1"}});
  v1::ReEncryptRequest r;
  r.set_ciphertext_blob(*blob);
  (*r.mutable_source_encryption_context())["v"] = "1";
  EXPECT_ERROR(service_->ReEncrypt(r), kInvalidArgument, "ValidationException");  // no destination
  r.set_destination_key_id(b);
  r.set_source_key_id(b);
  EXPECT_ERROR(service_->ReEncrypt(r), kInvalidArgument, "IncorrectKeyException");
  r.clear_source_key_id();
  (*r.mutable_source_encryption_context())["v"] = "wrong";
  EXPECT_ERROR(service_->ReEncrypt(r), kInvalidArgument, "InvalidCiphertextException");
  (*r.mutable_source_encryption_context())["v"] = "1";
  ASSERT_TRUE(Disable(b).ok());
  EXPECT_ERROR(service_->ReEncrypt(r), kFailedPrecondition, "DisabledException");
  r.clear_ciphertext_blob();
  EXPECT_ERROR(service_->ReEncrypt(r), kInvalidArgument, "ValidationException");
}

// ---------------------------------------------------------------- data keys

TEST_F(KeyServiceTest, GenerateDataKeyReturnsAKeyItsBlobDecryptsTo) {
  const std::string key_id = NewKey();
  struct Case {
    v1::DataKeySpec spec;
    std::optional<int> bytes;
    size_t expected;
  };
  for (const Case& c : {Case{v1::AES_256, std::nullopt, 32}, Case{v1::AES_128, std::nullopt, 16},
                        Case{v1::DATA_KEY_SPEC_UNSPECIFIED, 1, 1},
                        Case{v1::DATA_KEY_SPEC_UNSPECIFIED, 1024, 1024}}) {
    v1::GenerateDataKeyRequest r;
    r.set_key_id(key_id);
    r.set_key_spec(c.spec);
    if (c.bytes) r.set_number_of_bytes(*c.bytes);
    (*r.mutable_encryption_context())["file"] = "f1";
    auto dk = service_->GenerateDataKey(r);
    ASSERT_TRUE(dk.ok()) << dk.status();
    EXPECT_EQ(dk->plaintext().size(), c.expected);
    EXPECT_EQ(dk->key_id(), service_->resource_names().KeyArn(key_id));
    EXPECT_EQ(*Decrypt(dk->ciphertext_blob(), {{"file", "f1"}}), dk->plaintext());
  }
}

TEST_F(KeyServiceTest, GenerateDataKeyDrawsKeyAndIvInOneHsmCall) {
  const std::string key_id = NewKey();
  v1::GenerateDataKeyRequest r;
  r.set_key_id(key_id);
  r.set_key_spec(v1::AES_256);
  auto warm = service_->GenerateDataKey(r);  // the first use reserves encryptions
  ASSERT_TRUE(warm.ok()) << warm.status();
  const int64_t random_before = faulty_->CallCount(testing::FaultInjectingHsm::kGenerateRandom);
  const int64_t total_before = faulty_->CallCount();
  auto dk = service_->GenerateDataKey(r);
  ASSERT_TRUE(dk.ok()) << dk.status();
  // One draw for the key and the IV, one encryption: two HSM calls, two
  // audit records.
  EXPECT_EQ(faulty_->CallCount(testing::FaultInjectingHsm::kGenerateRandom), random_before + 1);
  EXPECT_EQ(faulty_->CallCount(), total_before + 2);
  // The blob still decrypts to the whole key.
  EXPECT_EQ(*Decrypt(dk->ciphertext_blob(), {}), dk->plaintext());
  EXPECT_NE(dk->plaintext(), warm->plaintext());
}

TEST_F(KeyServiceTest, DataPlaneUsesTheKeyRecordTheCallerAuthorisedOn) {
  const std::string key_id = NewKey();
  auto blob = Encrypt(key_id, "p");
  ASSERT_TRUE(blob.ok()) << blob.status();
  // The record an authoriser read, in a state the store no longer has: the
  // call goes by what was authorised, not by a second read.
  auto record = store_->GetKey(key_id);
  ASSERT_TRUE(record.ok()) << record.status();
  record->state = keystore::KeyState::kDisabled;
  v1::GenerateDataKeyRequest gdk;
  gdk.set_key_id(key_id);
  gdk.set_key_spec(v1::AES_256);
  EXPECT_ERROR(service_->GenerateDataKey(gdk, &*record), kFailedPrecondition,
               "DisabledException");
  v1::EncryptRequest encrypt;
  encrypt.set_key_id(key_id);
  encrypt.set_plaintext("p");
  EXPECT_ERROR(service_->Encrypt(encrypt, &*record), kFailedPrecondition, "DisabledException");
  v1::DecryptRequest decrypt;
  decrypt.set_ciphertext_blob(*blob);
  EXPECT_ERROR(service_->Decrypt(decrypt, &*record), kFailedPrecondition, "DisabledException");
  // A record of another key than the blob names is not used for it.
  const std::string other_id = NewKey();
  auto other = store_->GetKey(other_id);
  ASSERT_TRUE(other.ok()) << other.status();
  other->state = keystore::KeyState::kDisabled;
  EXPECT_TRUE(service_->Decrypt(decrypt, &*other).ok());
  EXPECT_TRUE(service_->GenerateDataKey(gdk).ok());
}

TEST_F(KeyServiceTest, GenerateDataKeyNeedsExactlyOneSize) {
  const std::string key_id = NewKey();
  v1::GenerateDataKeyRequest r;
  r.set_key_id(key_id);
  EXPECT_ERROR(service_->GenerateDataKey(r), kInvalidArgument, "ValidationException");
  r.set_key_spec(v1::AES_256);
  r.set_number_of_bytes(32);
  EXPECT_ERROR(service_->GenerateDataKey(r), kInvalidArgument, "ValidationException");
  r.clear_key_spec();
  for (int bad : {0, -1, 1025}) {
    r.set_number_of_bytes(bad);
    EXPECT_ERROR(service_->GenerateDataKey(r), kInvalidArgument, "ValidationException");
  }
  r.clear_number_of_bytes();
  r.set_key_spec(static_cast<v1::DataKeySpec>(42));
  EXPECT_ERROR(service_->GenerateDataKey(r), kInvalidArgument, "ValidationException");
}

TEST_F(KeyServiceTest, GenerateDataKeyWithoutPlaintextDecryptsToAFreshKey) {
  const std::string key_id = NewKey();
  v1::GenerateDataKeyWithoutPlaintextRequest r;
  r.set_key_id(key_id);
  r.set_key_spec(v1::AES_256);
  auto dk = service_->GenerateDataKeyWithoutPlaintext(r);
  ASSERT_TRUE(dk.ok()) << dk.status();
  auto plaintext = Decrypt(dk->ciphertext_blob());
  ASSERT_TRUE(plaintext.ok());
  EXPECT_EQ(plaintext->size(), 32u);
  r.clear_key_spec();
  EXPECT_ERROR(service_->GenerateDataKeyWithoutPlaintext(r), kInvalidArgument,
               "ValidationException");
}

TEST_F(KeyServiceTest, GenerateRandomBounds) {
  v1::GenerateRandomRequest r;
  for (int bad : {0, -3, 1025}) {
    r.set_number_of_bytes(bad);
    EXPECT_ERROR(service_->GenerateRandom(r), kInvalidArgument, "ValidationException");
  }
  r.set_number_of_bytes(1024);
  auto random = service_->GenerateRandom(r);
  ASSERT_TRUE(random.ok());
  EXPECT_EQ(random->plaintext().size(), 1024u);
  r.set_number_of_bytes(32);
  EXPECT_NE(service_->GenerateRandom(r)->plaintext(), service_->GenerateRandom(r)->plaintext());
}

// ---------------------------------------------------------------- aliases

TEST_F(KeyServiceTest, AliasesNameKeysEverywhere) {
  const std::string a = NewKey();
  const std::string b = NewKey();
  ASSERT_TRUE(CreateAlias("alias/app", a).ok());
  EXPECT_EQ(Describe("alias/app").key_id(), a);
  EXPECT_EQ(Describe(service_->resource_names().AliasArn("alias/app")).key_id(), a);
  EXPECT_ERROR(service_->CreateAlias([&] {
    v1::CreateAliasRequest r;
    r.set_alias_name("alias/app");
    r.set_target_key_id(b);
    return r;
  }()), kAlreadyExists, "AlreadyExistsException");

  v1::UpdateAliasRequest update;
  update.set_alias_name("alias/app");
  update.set_target_key_id(b);
  ASSERT_TRUE(service_->UpdateAlias(update).ok());
  EXPECT_EQ(Describe("alias/app").key_id(), b);
  update.set_alias_name("alias/missing");
  EXPECT_ERROR(service_->UpdateAlias(update), kNotFound, "NotFoundException");

  v1::DeleteAliasRequest del;
  del.set_alias_name("alias/app");
  ASSERT_TRUE(service_->DeleteAlias(del).ok());
  EXPECT_ERROR(service_->DeleteAlias(del), kNotFound, "NotFoundException");
}

TEST_F(KeyServiceTest, CreateAliasRefusesBadNamesAndTargets) {
  const std::string a = NewKey();
  EXPECT_EQ(ErrorTypeOf(CreateAlias("app", a)), "InvalidAliasNameException");
  EXPECT_EQ(ErrorTypeOf(CreateAlias("alias/aws/reserved", a)), "InvalidAliasNameException");
  EXPECT_EQ(ErrorTypeOf(CreateAlias("alias/ok", "00000000-0000-4000-8000-000000000000")),
            "NotFoundException");
  ASSERT_TRUE(CreateAlias("alias/first", a).ok());
  EXPECT_EQ(ErrorTypeOf(CreateAlias("alias/second", "alias/first")), "ValidationException");
  ASSERT_TRUE(Schedule(a, 7).ok());
  EXPECT_EQ(ErrorTypeOf(CreateAlias("alias/late", a)), "KMSInvalidStateException");
}

TEST_F(KeyServiceTest, ListAliasesPagesAndFilters) {
  const std::string a = NewKey();
  const std::string b = NewKey();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(CreateAlias("alias/a" + std::to_string(i), a).ok());
  ASSERT_TRUE(CreateAlias("alias/b0", b).ok());
  v1::ListAliasesRequest r;
  r.set_limit(4);
  auto first = service_->ListAliases(r);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->aliases_size(), 4);
  EXPECT_TRUE(first->truncated());
  r.set_marker(first->next_marker());
  auto second = service_->ListAliases(r);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->aliases_size(), 2);
  EXPECT_FALSE(second->truncated());
  EXPECT_EQ(second->aliases(1).alias_name(), "alias/b0");
  EXPECT_EQ(second->aliases(1).target_key_id(), b);
  EXPECT_EQ(second->aliases(1).alias_arn(), service_->resource_names().AliasArn("alias/b0"));

  v1::ListAliasesRequest filtered;
  filtered.set_key_id(b);
  EXPECT_EQ(service_->ListAliases(filtered)->aliases_size(), 1);
  filtered.set_limit(0);
  EXPECT_ERROR(service_->ListAliases(filtered), kInvalidArgument, "ValidationException");
}

// ---------------------------------------------------------------- tags

TEST_F(KeyServiceTest, TagsAreAddedOverwrittenRemovedAndListed) {
  const std::string key_id = NewKey();
  v1::TagResourceRequest tag;
  tag.set_key_id(key_id);
  for (auto [k, v] : {std::pair{"b", "2"}, std::pair{"a", "1"}, std::pair{"c", "3"}}) {
    auto* t = tag.add_tags();
    t->set_tag_key(k);
    t->set_tag_value(v);
  }
  ASSERT_TRUE(service_->TagResource(tag).ok());
  tag.clear_tags();
  auto* t = tag.add_tags();
  t->set_tag_key("a");
  t->set_tag_value("one");
  ASSERT_TRUE(service_->TagResource(tag).ok());

  v1::UntagResourceRequest untag;
  untag.set_key_id(key_id);
  untag.add_tag_keys("c");
  untag.add_tag_keys("not-there");
  ASSERT_TRUE(service_->UntagResource(untag).ok());

  v1::ListResourceTagsRequest list;
  list.set_key_id(key_id);
  list.set_limit(1);
  auto page = service_->ListResourceTags(list);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->tags_size(), 1);
  EXPECT_EQ(page->tags(0).tag_key(), "a");
  EXPECT_EQ(page->tags(0).tag_value(), "one");
  EXPECT_TRUE(page->truncated());
  list.set_marker(page->next_marker());
  page = service_->ListResourceTags(list);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->tags_size(), 1);
  EXPECT_EQ(page->tags(0).tag_key(), "b");
  EXPECT_FALSE(page->truncated());
}

TEST_F(KeyServiceTest, TaggingPastFiftyIsALimitAndChangesNothing) {
  const std::string key_id = NewKey();
  v1::TagResourceRequest tag;
  tag.set_key_id(key_id);
  for (int i = 0; i < 50; ++i) {
    auto* t = tag.add_tags();
    t->set_tag_key("k" + std::to_string(i));
  }
  ASSERT_TRUE(service_->TagResource(tag).ok());
  tag.clear_tags();
  tag.add_tags()->set_tag_key("one-too-many");
  EXPECT_ERROR(service_->TagResource(tag), kResourceExhausted, "LimitExceededException");
  tag.clear_tags();
  tag.add_tags()->set_tag_key("k3");  // overwriting an existing tag is fine
  EXPECT_TRUE(service_->TagResource(tag).ok());
  EXPECT_EQ(store_->ListTags(key_id)->size(), 50u);
}

TEST_F(KeyServiceTest, BadTagsAreTagExceptions) {
  const std::string key_id = NewKey();
  v1::TagResourceRequest tag;
  tag.set_key_id(key_id);
  EXPECT_ERROR(service_->TagResource(tag), kInvalidArgument, "ValidationException");
  tag.add_tags()->set_tag_key(std::string(129, 'k'));
  EXPECT_ERROR(service_->TagResource(tag), kInvalidArgument, "TagException");
  v1::UntagResourceRequest untag;
  untag.set_key_id(key_id);
  untag.add_tag_keys("");
  EXPECT_ERROR(service_->UntagResource(untag), kInvalidArgument, "TagException");
}

// ---------------------------------------------------------------- ListKeys

TEST_F(KeyServiceTest, ListKeysWalksEveryKeyOnce) {
  std::set<std::string> created;
  for (int i = 0; i < 25; ++i) created.insert(NewKey());
  std::set<std::string> seen;
  v1::ListKeysRequest r;
  r.set_limit(10);
  int pages = 0;
  while (true) {
    auto page = service_->ListKeys(r);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    for (const auto& k : page->keys()) {
      EXPECT_TRUE(seen.insert(k.key_id()).second);
      EXPECT_EQ(k.key_arn(), service_->resource_names().KeyArn(k.key_id()));
    }
    if (!page->truncated()) break;
    r.set_marker(page->next_marker());
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, created);
}

TEST_F(KeyServiceTest, ListKeysRejectsBadLimitsAndMarkers) {
  v1::ListKeysRequest r;
  for (int bad : {0, -1, 1001}) {
    r.set_limit(bad);
    EXPECT_ERROR(service_->ListKeys(r), kInvalidArgument, "ValidationException");
  }
  r.clear_limit();
  r.set_marker("garbage");
  EXPECT_ERROR(service_->ListKeys(r), kInvalidArgument, "ValidationException");
}

}  // namespace
}  // namespace kms::service
