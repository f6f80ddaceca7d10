// Import of key material through the KeyService: GetParametersForImport,
// ImportKeyMaterial, DeleteImportedKeyMaterial and expiry, against a real
// SoftHSM token and against FakeHsm (which passes the same HSM conformance
// tests). The test wraps material it knows with OpenSSL, as an operator
// would (tests/testing/local_crypto.h), and checks every refusal leaves
// nothing behind: no HSM object, no metadata change, the token still usable.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/uuid.h"
#include "daemon/service/ciphertext_blob.h"
#include "daemon/service/encryption_context.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon/service/service_fixture.h"
#include "tests/testing/hsm_under_test.h"
#include "tests/testing/local_crypto.h"
#include "tests/testing/status_matchers.h"

namespace kms::service {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::FaultInjectingHsm;
using testing::KnownMaterial;
using testing::WrapLocally;


v1::AlgorithmSpec ToProto(hsm::WrappingAlgorithm algorithm) {
  switch (algorithm) {
    case hsm::WrappingAlgorithm::kRsaesOaepSha1: return v1::RSAES_OAEP_SHA_1;
    case hsm::WrappingAlgorithm::kRsaesOaepSha256: return v1::RSAES_OAEP_SHA_256;
    case hsm::WrappingAlgorithm::kRsaAesKeyWrapSha1: return v1::RSA_AES_KEY_WRAP_SHA_1;
    case hsm::WrappingAlgorithm::kRsaAesKeyWrapSha256: return v1::RSA_AES_KEY_WRAP_SHA_256;
  }
  return v1::ALGORITHM_SPEC_UNSPECIFIED;
}

std::string KcvHex(absl::string_view material) {
  return absl::AsciiStrToUpper(absl::BytesToHexString(testing::Kcv(material)));
}

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

// What GetParametersForImport returned, and how to wrap for it.
struct Parameters {
  std::string token;
  std::string public_key;
  hsm::WrappingAlgorithm algorithm;
};

class ImportTest : public ServiceTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      auto softhsm = testing::SoftHsmUnderTest::Create();
      ASSERT_TRUE(softhsm.ok()) << softhsm.status();
      softhsm_ = *std::move(softhsm);
      base_hsm_ = &softhsm_->hsm();
    }
    ServiceTest::SetUp();
    algorithm_ = base_hsm_->SupportedWrappingAlgorithms().front();
  }

  hsm::Hsm& hsm() { return *base_hsm_; }

  std::string NewExternalKey() {
    v1::CreateKeyRequest request;
    request.set_origin(v1::EXTERNAL);
    auto response = service_->CreateKey(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->key_metadata().key_id() : "";
  }

  absl::StatusOr<Parameters> GetParameters(const std::string& key_id,
                                           v1::WrappingKeySpec spec = v1::RSA_2048) {
    v1::GetParametersForImportRequest request;
    request.set_key_id(key_id);
    request.set_wrapping_algorithm(ToProto(algorithm_));
    request.set_wrapping_key_spec(spec);
    auto response = service_->GetParametersForImport(request);
    if (!response.ok()) return response.status();
    return Parameters{response->import_token(), response->public_key(), algorithm_};
  }

  v1::ImportKeyMaterialRequest ImportRequest(const std::string& key_id, const Parameters& p,
                                             absl::string_view material) {
    v1::ImportKeyMaterialRequest request;
    request.set_key_id(key_id);
    request.set_import_token(p.token);
    request.set_encrypted_key_material(WrapLocally(p.algorithm, p.public_key, material));
    return request;
  }

  // Fetches parameters and imports `material` with `request` adjusted by
  // `adjust`.
  absl::StatusOr<v1::ImportKeyMaterialResponse> Import(
      const std::string& key_id, absl::string_view material,
      const std::function<void(v1::ImportKeyMaterialRequest&)>& adjust = nullptr) {
    absl::StatusOr<Parameters> p = GetParameters(key_id);
    if (!p.ok()) return p.status();
    v1::ImportKeyMaterialRequest request = ImportRequest(key_id, *p, material);
    if (adjust) adjust(request);
    return service_->ImportKeyMaterial(request);
  }

  absl::Status DeleteMaterial(const std::string& key_id) {
    v1::DeleteImportedKeyMaterialRequest request;
    request.set_key_id(key_id);
    return service_->DeleteImportedKeyMaterial(request).status();
  }

  // AES key objects other than the import token key.
  std::vector<std::string> MaterialObjects() {
    std::vector<std::string> ids = hsm().ListKeyIds();
    ids.erase(std::remove(ids.begin(), ids.end(), std::string(kImportTokenKeyId)), ids.end());
    return ids;
  }

  std::unique_ptr<testing::HsmUnderTest> softhsm_;
  hsm::WrappingAlgorithm algorithm_ = hsm::WrappingAlgorithm::kRsaAesKeyWrapSha1;
};

INSTANTIATE_TEST_SUITE_P(Hsms, ImportTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "SoftHsm" : "FakeHsm"; });

// ---------------------------------------------------------------- the happy path

TEST_P(ImportTest, FirstImportEnablesTheKeyAndReportsTheKcv) {
  const std::string key = NewExternalKey();
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  const std::string material = KnownMaterial();
  auto imported = Import(key, material);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->key_check_value(), KcvHex(material));
  EXPECT_EQ(imported->key_id(), service_->resource_names().KeyArn(key));

  const v1::KeyMetadata m = Describe(key);
  EXPECT_EQ(m.key_state(), v1::ENABLED);
  EXPECT_EQ(m.current_key_version_id(), imported->key_material_id());
  EXPECT_EQ(m.expiration_model(), v1::KEY_MATERIAL_DOES_NOT_EXPIRE);
  EXPECT_FALSE(m.has_valid_to());
  EXPECT_EQ(m.key_version_count(), 1);

  // The material is a non-extractable token object; the spent wrapping key
  // pair is gone.
  EXPECT_EQ(MaterialObjects(), std::vector<std::string>{imported->key_material_id()});
  auto attributes = hsm().GetKeyAttributes(imported->key_material_id());
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_TRUE(attributes->sensitive);
  EXPECT_FALSE(attributes->extractable);
  EXPECT_THAT(hsm().ListWrappingKeyIds(), IsEmpty());

  auto blob = Encrypt(key, "hello", {{"purpose", "test"}});
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto plaintext = Decrypt(*blob, {{"purpose", "test"}});
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  EXPECT_EQ(*plaintext, "hello");
}

// The material kmsd imported is exactly what the test wrapped: a blob kmsd
// made decrypts with OpenSSL under that material, reading the blob by its
// documented layout (ciphertext_blob.h) and the context by its canonical form
// (encryption_context.h).
TEST_P(ImportTest, CiphertextDecryptsOutsideKmsdWithTheImportedMaterial) {
  const std::string key = NewExternalKey();
  const std::string material = KnownMaterial(32, 0x5a);
  KMS_ASSERT_OK(Import(key, material).status());
  auto blob = Encrypt(key, "envelope", {{"b", "2"}, {"a", "1"}});
  ASSERT_TRUE(blob.ok()) << blob.status();
  ASSERT_EQ(blob->size(), 1 + 16 + 16 + 12 + 8 + 16u);
  const std::string header = blob->substr(0, 33);
  const std::string iv = blob->substr(33, 12);
  const std::string sealed = blob->substr(45);
  // u32 count, then (u32 length, bytes) for each key and value, keys sorted.
  const std::string context("\0\0\0\2"
                            "\0\0\0\1a\0\0\0\0011"
                            "\0\0\0\1b\0\0\0\0012",
                            4 + 2 * (4 + 1 + 4 + 1));
  EXPECT_EQ(testing::DecryptGcmLocally(material, iv, sealed, header + context), "envelope");
  // And not under other material.
  EXPECT_EQ(testing::DecryptGcmLocally(KnownMaterial(32, 0x5b), iv, sealed, header + context),
            std::nullopt);
}

TEST_P(ImportTest, EveryOfferedAlgorithmImports) {
  for (hsm::WrappingAlgorithm algorithm : hsm().SupportedWrappingAlgorithms()) {
    SCOPED_TRACE(hsm::WrappingAlgorithmName(algorithm));
    algorithm_ = algorithm;
    const std::string key = NewExternalKey();
    const std::string material = KnownMaterial(32, static_cast<char>(0x20 + static_cast<int>(algorithm)));
    auto imported = Import(key, material);
    ASSERT_TRUE(imported.ok()) << imported.status();
    EXPECT_EQ(imported->key_check_value(), KcvHex(material));
  }
}

// ---------------------------------------------------------------- parameters

TEST_P(ImportTest, ParametersAreAFreshRsaKeyOfTheRequestedSize) {
  const std::string key = NewExternalKey();
  auto p2048 = GetParameters(key, v1::RSA_2048);
  ASSERT_TRUE(p2048.ok()) << p2048.status();
  auto p3072 = GetParameters(key, v1::RSA_3072);
  ASSERT_TRUE(p3072.ok()) << p3072.status();
  testing::Pkey k2048 = testing::ParsePublicKey(p2048->public_key);
  testing::Pkey k3072 = testing::ParsePublicKey(p3072->public_key);
  ASSERT_NE(k2048, nullptr);
  ASSERT_NE(k3072, nullptr);
  EXPECT_EQ(EVP_PKEY_get_bits(k2048.get()), 2048);
  EXPECT_EQ(EVP_PKEY_get_bits(k3072.get()), 3072);
  EXPECT_EQ(p2048->token.size(), kImportTokenSize);
  EXPECT_NE(p2048->token, p3072->token);
  EXPECT_EQ(hsm().ListWrappingKeyIds().size(), 2u);

  v1::GetParametersForImportRequest request;
  request.set_key_id(key);
  request.set_wrapping_algorithm(ToProto(algorithm_));
  request.set_wrapping_key_spec(v1::RSA_2048);
  auto response = service_->GetParametersForImport(request);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->parameters_valid_to().seconds(),
            absl::ToUnixSeconds(clock_.Now() + absl::Hours(24)));
}

TEST_P(ImportTest, ParameterArgumentsAreValidated) {
  const std::string key = NewExternalKey();
  v1::GetParametersForImportRequest request;
  request.set_key_id(key);
  request.set_wrapping_key_spec(v1::RSA_2048);
  EXPECT_ERROR(service_->GetParametersForImport(request), kInvalidArgument,
               "ValidationException");
  request.set_wrapping_algorithm(static_cast<v1::AlgorithmSpec>(99));
  EXPECT_ERROR(service_->GetParametersForImport(request), kInvalidArgument,
               "ValidationException");
  request.set_wrapping_algorithm(ToProto(algorithm_));
  request.clear_wrapping_key_spec();
  EXPECT_ERROR(service_->GetParametersForImport(request), kInvalidArgument,
               "ValidationException");
  request.set_wrapping_key_spec(v1::RSA_2048);
  request.set_key_id("alias/nope");
  EXPECT_ERROR(service_->GetParametersForImport(request), kNotFound,
               "NotFoundException");
  request.set_key_id(NewKey());  // origin AWS_KMS
  EXPECT_ERROR(service_->GetParametersForImport(request), kFailedPrecondition,
               "UnsupportedOperationException");
  EXPECT_THAT(hsm().ListWrappingKeyIds(), IsEmpty());
}

TEST_P(ImportTest, AnAlgorithmTheHsmCannotUnwrapIsNamedWithTheSupportedOnes) {
  const std::vector<hsm::WrappingAlgorithm> supported = hsm().SupportedWrappingAlgorithms();
  for (hsm::WrappingAlgorithm algorithm : hsm::kAllWrappingAlgorithms) {
    if (std::find(supported.begin(), supported.end(), algorithm) != supported.end()) continue;
    v1::GetParametersForImportRequest request;
    request.set_key_id(NewExternalKey());
    request.set_wrapping_algorithm(ToProto(algorithm));
    request.set_wrapping_key_spec(v1::RSA_2048);
    auto response = service_->GetParametersForImport(request);
    EXPECT_ERROR(response, kFailedPrecondition, "UnsupportedOperationException");
    EXPECT_THAT(response.status().message(),
                HasSubstr(hsm::WrappingAlgorithmName(supported.front())));
  }
  if (GetParam()) {
    // SoftHSM 2.6.1 cannot do SHA-256 OAEP: at least that one is refused.
    EXPECT_LT(supported.size(), std::size(hsm::kAllWrappingAlgorithms));
  }
}

TEST_P(ImportTest, OutstandingParametersAreLimitedPerKey) {
  options_.max_outstanding_import_parameters = 2;
  Restart();
  const std::string key = NewExternalKey();
  KMS_ASSERT_OK(GetParameters(key).status());
  KMS_ASSERT_OK(GetParameters(key).status());
  EXPECT_ERROR(GetParameters(key), kResourceExhausted,
               "LimitExceededException");
  KMS_EXPECT_OK(GetParameters(NewExternalKey()).status());  // per key
  EXPECT_EQ(hsm().ListWrappingKeyIds().size(), 3u);
}

TEST_P(ImportTest, AWrappingKeyGenerationFailureLeavesNothing) {
  const std::string key = NewExternalKey();
  KMS_ASSERT_OK(GetParameters(key).status());  // makes the token key
  faulty_->FailOperation(FaultInjectingHsm::kGetPublicKeyDer, absl::InternalError("boom"));
  EXPECT_ERROR(GetParameters(key), kInternal, "KMSInternalException");
  faulty_->ClearFaults();
  EXPECT_EQ(hsm().ListWrappingKeyIds().size(), 1u);
  auto listed = store_->ListImportParameters(key);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 1u);
}

// ---------------------------------------------------------------- the token

TEST_P(ImportTest, AlteredTokensAreInvalid) {
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string material = KnownMaterial();
  // One byte in each field: version, wrapping key id, key id, algorithm,
  // expiry, MAC IV, MAC.
  for (size_t at : {0, 5, 20, 33, 40, 45, 60, 69}) {
    SCOPED_TRACE(absl::StrCat("byte ", at));
    v1::ImportKeyMaterialRequest request = ImportRequest(key, *p, material);
    std::string token = p->token;
    token[at] ^= 0x01;
    request.set_import_token(token);
    EXPECT_ERROR(service_->ImportKeyMaterial(request), kInvalidArgument,
                 "InvalidImportTokenException");
  }
  for (const std::string& token : {std::string("x"), p->token.substr(1), p->token + "x"}) {
    v1::ImportKeyMaterialRequest request = ImportRequest(key, *p, material);
    request.set_import_token(token);
    EXPECT_ERROR(service_->ImportKeyMaterial(request), kInvalidArgument,
                 "InvalidImportTokenException");
  }
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  // The genuine token still works.
  KMS_EXPECT_OK(service_->ImportKeyMaterial(ImportRequest(key, *p, material)).status());
}

TEST_P(ImportTest, ATokenForAnotherKeyIsInvalid) {
  const std::string key = NewExternalKey();
  const std::string other = NewExternalKey();
  auto p = GetParameters(other);
  ASSERT_TRUE(p.ok()) << p.status();
  auto response = service_->ImportKeyMaterial(ImportRequest(key, *p, KnownMaterial()));
  EXPECT_ERROR(response, kInvalidArgument, "InvalidImportTokenException");
  EXPECT_THAT(response.status().message(), HasSubstr("another key"));
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  EXPECT_THAT(MaterialObjects(), IsEmpty());
}

TEST_P(ImportTest, ATokenImportsOnce) {
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string material = KnownMaterial();
  KMS_ASSERT_OK(service_->ImportKeyMaterial(ImportRequest(key, *p, material)).status());
  auto again = service_->ImportKeyMaterial(ImportRequest(key, *p, material));
  EXPECT_ERROR(again, kInvalidArgument, "InvalidImportTokenException");
  EXPECT_THAT(again.status().message(), HasSubstr("already been used"));
  auto listed = store_->ListImportParameters(key);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed, IsEmpty());
}

TEST_P(ImportTest, AnExpiredTokenIsExpiredAndItsWrappingKeyIsDestroyed) {
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  clock_.Advance(absl::Hours(24) - absl::Seconds(1));
  v1::ImportKeyMaterialRequest request = ImportRequest(key, *p, KnownMaterial());
  clock_.Advance(absl::Seconds(1));
  EXPECT_ERROR(service_->ImportKeyMaterial(request), kInvalidArgument,
               "ExpiredImportTokenException");
  EXPECT_EQ(hsm().ListWrappingKeyIds().size(), 1u);
  auto expired = service_->ExpireImports();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 0);  // no key material expired, only parameters
  EXPECT_THAT(hsm().ListWrappingKeyIds(), IsEmpty());
  // Still "expired", not "used": the token says when it expired.
  EXPECT_ERROR(service_->ImportKeyMaterial(request), kInvalidArgument,
               "ExpiredImportTokenException");
}

TEST_P(ImportTest, ConfiguredParameterLifetime) {
  options_.import_parameters_lifetime = absl::Hours(1);
  Restart();
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  clock_.Advance(absl::Hours(1));
  EXPECT_ERROR(service_->ImportKeyMaterial(ImportRequest(key, *p, KnownMaterial())),
               kInvalidArgument, "ExpiredImportTokenException");
}

// ---------------------------------------------------------------- the material

TEST_P(ImportTest, MaterialThatDoesNotUnwrapIsInvalidCiphertextAndLeavesTheTokenUsable) {
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  auto other = GetParameters(key);
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string material = KnownMaterial();

  v1::ImportKeyMaterialRequest corrupt = ImportRequest(key, *p, material);
  std::string bytes = corrupt.encrypted_key_material();
  bytes[bytes.size() / 2] ^= 0x40;
  corrupt.set_encrypted_key_material(bytes);
  EXPECT_ERROR(service_->ImportKeyMaterial(corrupt), kInvalidArgument,
               "InvalidCiphertextException");
  // Wrapped under another wrapping key's public half.
  v1::ImportKeyMaterialRequest misdirected = ImportRequest(key, *p, material);
  misdirected.set_encrypted_key_material(WrapLocally(p->algorithm, other->public_key, material));
  EXPECT_ERROR(service_->ImportKeyMaterial(misdirected), kInvalidArgument,
               "InvalidCiphertextException");

  EXPECT_THAT(MaterialObjects(), IsEmpty());
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  auto intents = store_->ListIntents();
  ASSERT_TRUE(intents.ok());
  EXPECT_THAT(*intents, IsEmpty());
  KMS_EXPECT_OK(service_->ImportKeyMaterial(ImportRequest(key, *p, material)).status());
}

TEST_P(ImportTest, MaterialOfTheWrongLengthIsIncorrect) {
  const std::string key = NewExternalKey();
  for (size_t size : {16, 24, 31, 33, 48}) {
    SCOPED_TRACE(absl::StrCat(size, " bytes"));
    auto response = Import(key, KnownMaterial(size));
    EXPECT_ERROR(response, kInvalidArgument, "IncorrectKeyMaterialException");
    EXPECT_THAT(response.status().message(), HasSubstr("must be 32 bytes"));
  }
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
}

TEST_P(ImportTest, WeakMaterialIsRefused) {
  const std::string key = NewExternalKey();
  for (char byte : {'\x00', '\xff', 'A', '\x5a'}) {
    SCOPED_TRACE(absl::StrCat("byte ", static_cast<int>(static_cast<unsigned char>(byte))));
    auto response = Import(key, std::string(32, byte));
    EXPECT_ERROR(response, kInvalidArgument, "IncorrectKeyMaterialException");
    EXPECT_THAT(response.status().message(), HasSubstr("weak"));
  }
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  // Material with one byte different from a weak pattern is not weak.
  std::string almost(32, '\0');
  almost[31] = 1;
  KMS_EXPECT_OK(Import(key, almost).status());
}

TEST_P(ImportTest, ExpectedKeyCheckValueIsEnforced) {
  const std::string key = NewExternalKey();
  const std::string material = KnownMaterial();
  auto wrong = Import(key, material, [](auto& r) { r.set_expected_key_check_value("000000"); });
  EXPECT_ERROR(wrong, kInvalidArgument, "IncorrectKeyMaterialException");
  EXPECT_THAT(wrong.status().message(), HasSubstr(KcvHex(material)));
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  for (const char* bad : {"12345", "1234567", "GGGGGG", "12 345"}) {
    EXPECT_ERROR(Import(key, material, [&](auto& r) { r.set_expected_key_check_value(bad); }),
                 kInvalidArgument, "ValidationException");
  }
  const std::string lower = absl::AsciiStrToLower(KcvHex(material));
  KMS_EXPECT_OK(
      Import(key, material, [&](auto& r) { r.set_expected_key_check_value(lower); }).status());
}

TEST_P(ImportTest, ArgumentsAreValidatedBeforeTheTokenIsSpent) {
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string material = KnownMaterial();
  const absl::Time now = clock_.Now();
  std::vector<std::function<void(v1::ImportKeyMaterialRequest&)>> bad = {
      [](auto& r) { r.clear_import_token(); },
      [](auto& r) { r.clear_encrypted_key_material(); },
      [](auto& r) { r.set_import_type(static_cast<v1::ImportType>(7)); },
      [](auto& r) { r.set_expiration_model(static_cast<v1::ExpirationModelType>(7)); },
      [](auto& r) { r.set_expiration_model(v1::KEY_MATERIAL_EXPIRES); },
      [&](auto& r) {
        r.set_expiration_model(v1::KEY_MATERIAL_DOES_NOT_EXPIRE);
        *r.mutable_valid_to() = Ts(now + absl::Hours(1));
      },
      [&](auto& r) { *r.mutable_valid_to() = Ts(now - absl::Seconds(1)); },
      [&](auto& r) { *r.mutable_valid_to() = Ts(now); },
      [&](auto& r) { *r.mutable_valid_to() = Ts(now + absl::Hours(24 * 365) + absl::Seconds(1)); },
      [](auto& r) { r.set_key_material_id("not-a-version"); },
      [](auto& r) {
        r.set_import_type(v1::NEW_KEY_MATERIAL);
        r.set_key_material_id(NewUuid());
      },
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("case ", i));
    v1::ImportKeyMaterialRequest request = ImportRequest(key, *p, material);
    bad[i](request);
    EXPECT_ERROR(service_->ImportKeyMaterial(request), kInvalidArgument, "ValidationException");
  }
  v1::ImportKeyMaterialRequest request = ImportRequest(key, *p, material);
  *request.mutable_valid_to() = Ts(now + absl::Hours(24 * 365));  // the limit itself is fine
  auto imported = service_->ImportKeyMaterial(request);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(Describe(key).expiration_model(), v1::KEY_MATERIAL_EXPIRES);
}

TEST_P(ImportTest, KeysNotOfOriginExternalTakeNoMaterial) {
  const std::string kms_key = NewKey();
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_ERROR(service_->ImportKeyMaterial(ImportRequest(kms_key, *p, KnownMaterial())),
               kFailedPrecondition, "UnsupportedOperationException");
  EXPECT_ERROR(DeleteMaterial(kms_key), kFailedPrecondition, "UnsupportedOperationException");
}

// ---------------------------------------------------------------- one material, one key

TEST_P(ImportTest, TheSameMaterialInASecondKeyNeedsExplicitPermission) {
  const std::string first = NewExternalKey();
  const std::string second = NewExternalKey();
  const std::string material = KnownMaterial();
  KMS_ASSERT_OK(Import(first, material).status());
  auto refused = Import(second, material);
  EXPECT_ERROR(refused, kInvalidArgument, "IncorrectKeyMaterialException");
  EXPECT_THAT(refused.status().message(), HasSubstr(first));
  EXPECT_EQ(Describe(second).key_state(), v1::PENDING_IMPORT);
  EXPECT_EQ(MaterialObjects().size(), 1u);
  KMS_EXPECT_OK(
      Import(second, material, [](auto& r) { r.set_allow_duplicate_key_material(true); }).status());
  EXPECT_EQ(Describe(second).key_state(), v1::ENABLED);
}

// ---------------------------------------------------------------- deletion, re-import

TEST_P(ImportTest, DeletedMaterialComesBackOnlyAsTheSameMaterial) {
  const std::string key = NewExternalKey();
  const std::string material = KnownMaterial();
  auto imported = Import(key, material);
  ASSERT_TRUE(imported.ok()) << imported.status();
  auto blob = Encrypt(key, "kept");
  ASSERT_TRUE(blob.ok()) << blob.status();

  KMS_ASSERT_OK(DeleteMaterial(key));
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  EXPECT_ERROR(Decrypt(*blob), kFailedPrecondition, "KMSInvalidStateException");
  EXPECT_ERROR(Encrypt(key, "x"), kFailedPrecondition, "KMSInvalidStateException");
  KMS_EXPECT_OK(DeleteMaterial(key));  // again: nothing to do

  auto different = Import(key, KnownMaterial(32, 0x33));
  EXPECT_ERROR(different, kInvalidArgument, "IncorrectKeyMaterialException");
  EXPECT_THAT(different.status().message(), HasSubstr("exactly the same material"));
  EXPECT_THAT(MaterialObjects(), IsEmpty());

  auto again = Import(key, material);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->key_material_id(), imported->key_material_id());
  EXPECT_EQ(Describe(key).key_state(), v1::ENABLED);
  EXPECT_EQ(Describe(key).key_version_count(), 1);
  EXPECT_EQ(Decrypt(*blob).value_or(""), "kept");
}

TEST_P(ImportTest, ReimportingPresentMaterialChangesOnlyItsExpiry) {
  const std::string key = NewExternalKey();
  const std::string material = KnownMaterial();
  auto imported = Import(key, material);
  ASSERT_TRUE(imported.ok()) << imported.status();
  const absl::Time until = absl::FromUnixSeconds(absl::ToUnixSeconds(clock_.Now() + absl::Hours(48)));
  auto again = Import(key, material, [&](auto& r) { *r.mutable_valid_to() = Ts(until); });
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->key_material_id(), imported->key_material_id());
  const v1::KeyMetadata m = Describe(key);
  EXPECT_EQ(m.expiration_model(), v1::KEY_MATERIAL_EXPIRES);
  EXPECT_EQ(m.valid_to().seconds(), absl::ToUnixSeconds(until));
  EXPECT_EQ(m.key_version_count(), 1);
  EXPECT_EQ(MaterialObjects(), std::vector<std::string>{imported->key_material_id()});
  EXPECT_ERROR(Import(key, KnownMaterial(32, 0x44)), kInvalidArgument,
               "IncorrectKeyMaterialException");
}

TEST_P(ImportTest, PendingDeletionFreezesImport) {
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(key);
  KMS_ASSERT_OK(service_->ScheduleKeyDeletion(schedule).status());
  EXPECT_ERROR(service_->ImportKeyMaterial(ImportRequest(key, *p, KnownMaterial())),
               kFailedPrecondition, "KMSInvalidStateException");
  EXPECT_ERROR(GetParameters(key), kFailedPrecondition, "KMSInvalidStateException");
  EXPECT_ERROR(DeleteMaterial(key), kFailedPrecondition, "KMSInvalidStateException");
  // Erasing the key destroys its outstanding wrapping key too.
  clock_.Advance(absl::Hours(24 * 30));
  auto erased = service_->DeleteDueKeys();
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(*erased, 1);
  EXPECT_THAT(hsm().ListWrappingKeyIds(), IsEmpty());
}

// ---------------------------------------------------------------- expiry

TEST_P(ImportTest, ExpiredMaterialIsDestroyedAndRestoredByReimport) {
  const std::string key = NewExternalKey();
  const std::string material = KnownMaterial();
  auto imported = Import(key, material, [&](auto& r) {
    *r.mutable_valid_to() = Ts(clock_.Now() + absl::Hours(24));
  });
  ASSERT_TRUE(imported.ok()) << imported.status();
  auto blob = Encrypt(key, "survives");
  ASSERT_TRUE(blob.ok()) << blob.status();

  clock_.Advance(absl::Hours(24) - absl::Seconds(1));
  EXPECT_EQ(service_->ExpireImports().value_or(-1), 0);
  EXPECT_EQ(Describe(key).key_state(), v1::ENABLED);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(service_->ExpireImports().value_or(-1), 1);
  const v1::KeyMetadata m = Describe(key);
  EXPECT_EQ(m.key_state(), v1::PENDING_IMPORT);
  EXPECT_EQ(m.expiration_model(), v1::EXPIRATION_MODEL_TYPE_UNSPECIFIED);
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  EXPECT_ERROR(Decrypt(*blob), kFailedPrecondition, "KMSInvalidStateException");
  EXPECT_EQ(service_->ExpireImports().value_or(-1), 0);  // once

  Restart();  // survives a restart
  KMS_ASSERT_OK(service_->Recover());
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  KMS_ASSERT_OK(Import(key, material).status());
  EXPECT_EQ(Decrypt(*blob).value_or(""), "survives");
}

TEST_P(ImportTest, MaterialThatExpiredWhileDownIsDestroyedAtStartUp) {
  const std::string key = NewExternalKey();
  KMS_ASSERT_OK(Import(key, KnownMaterial(), [&](auto& r) {
                  *r.mutable_valid_to() = Ts(clock_.Now() + absl::Hours(1));
                }).status());
  clock_.Advance(absl::Hours(2));
  Restart();
  KMS_ASSERT_OK(service_->Recover());
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  EXPECT_THAT(MaterialObjects(), IsEmpty());
}

TEST_P(ImportTest, MaterialExpiringWhilePendingDeletionLeavesTheKeyPendingImportOnCancel) {
  const std::string key = NewExternalKey();
  KMS_ASSERT_OK(Import(key, KnownMaterial(), [&](auto& r) {
                  *r.mutable_valid_to() = Ts(clock_.Now() + absl::Hours(1));
                }).status());
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(key);
  KMS_ASSERT_OK(service_->ScheduleKeyDeletion(schedule).status());
  clock_.Advance(absl::Hours(2));
  EXPECT_EQ(service_->ExpireImports().value_or(-1), 1);
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_DELETION);
  v1::CancelKeyDeletionRequest cancel;
  cancel.set_key_id(key);
  KMS_ASSERT_OK(service_->CancelKeyDeletion(cancel).status());
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
}

// ---------------------------------------------------------------- new material (rotation)

TEST_P(ImportTest, NewKeyMaterialRotatesTheKey) {
  const std::string key = NewExternalKey();
  const std::string first = KnownMaterial(32, 0x01);
  auto v1_import = Import(key, first);
  ASSERT_TRUE(v1_import.ok()) << v1_import.status();
  auto old_blob = Encrypt(key, "old");
  ASSERT_TRUE(old_blob.ok());

  const std::string second = KnownMaterial(32, 0x02);
  auto v2_import = Import(key, second, [](auto& r) { r.set_import_type(v1::NEW_KEY_MATERIAL); });
  ASSERT_TRUE(v2_import.ok()) << v2_import.status();
  EXPECT_NE(v2_import->key_material_id(), v1_import->key_material_id());
  EXPECT_EQ(v2_import->key_check_value(), KcvHex(second));
  EXPECT_EQ(Describe(key).current_key_version_id(), v2_import->key_material_id());
  EXPECT_EQ(Describe(key).key_version_count(), 2);
  EXPECT_EQ(Decrypt(*old_blob).value_or(""), "old");

  v1::ListKeyRotationsRequest list;
  list.set_key_id(key);
  auto rotations = service_->ListKeyRotations(list);
  ASSERT_TRUE(rotations.ok());
  ASSERT_EQ(rotations->rotations_size(), 1);
  EXPECT_EQ(rotations->rotations(0).rotation_type(), v1::ON_DEMAND);
  EXPECT_EQ(rotations->rotations(0).import_state(), v1::IMPORTED);
  EXPECT_EQ(rotations->rotations(0).key_check_value(), KcvHex(second));
  EXPECT_TRUE(rotations->rotations(0).current());

  // Back to an earlier version's material is not new material.
  auto repeat = Import(key, first, [](auto& r) { r.set_import_type(v1::NEW_KEY_MATERIAL); });
  EXPECT_ERROR(repeat, kInvalidArgument, "IncorrectKeyMaterialException");
  EXPECT_THAT(repeat.status().message(), HasSubstr(v1_import->key_material_id()));

  // kmsd cannot make material for an imported key.
  v1::RotateKeyOnDemandRequest rotate;
  rotate.set_key_id(key);
  auto refused = service_->RotateKeyOnDemand(rotate);
  EXPECT_ERROR(refused, kFailedPrecondition, "UnsupportedOperationException");
  EXPECT_THAT(refused.status().message(), HasSubstr("NEW_KEY_MATERIAL"));
}

// Every version with its KCV and whether its material is in the HSM: what
// an operator needs to re-import deleted material (key_material_id).
TEST_P(ImportTest, AllKeyMaterialListsTheOriginalWithItsImportState) {
  const std::string key = NewExternalKey();
  const std::string first = KnownMaterial(32, 0x01);
  auto original = Import(key, first);
  ASSERT_TRUE(original.ok());
  KMS_ASSERT_OK(Import(key, KnownMaterial(32, 0x02), [](auto& r) {
                  r.set_import_type(v1::NEW_KEY_MATERIAL);
                }).status());
  KMS_ASSERT_OK(DeleteMaterial(key));
  v1::ListKeyRotationsRequest list;
  list.set_key_id(key);
  list.set_include_key_material(v1::ALL_KEY_MATERIAL);
  auto all = service_->ListKeyRotations(list);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->rotations_size(), 2);
  EXPECT_EQ(all->rotations(0).key_version_id(), original->key_material_id());
  EXPECT_EQ(all->rotations(0).rotation_type(), v1::ORIGINAL);
  EXPECT_EQ(all->rotations(0).key_check_value(), KcvHex(first));
  EXPECT_FALSE(all->rotations(0).current());
  for (const auto& entry : all->rotations()) EXPECT_EQ(entry.import_state(), v1::PENDING_REIMPORT);

  list.set_include_key_material(v1::ROTATIONS_ONLY);
  auto rotations = service_->ListKeyRotations(list);
  ASSERT_TRUE(rotations.ok());
  EXPECT_EQ(rotations->rotations_size(), 1);
  list.set_include_key_material(static_cast<v1::IncludeKeyMaterial>(9));
  EXPECT_ERROR(service_->ListKeyRotations(list), kInvalidArgument, "ValidationException");
}

TEST_P(ImportTest, NewKeyMaterialNeedsCurrentMaterialAndRespectsTheRotationLimit) {
  options_.on_demand_rotation_limit = 1;
  Restart();
  const std::string key = NewExternalKey();
  auto new_material = [](auto& r) { r.set_import_type(v1::NEW_KEY_MATERIAL); };
  EXPECT_ERROR(Import(key, KnownMaterial(32, 1), new_material), kInvalidArgument,
               "ValidationException");
  KMS_ASSERT_OK(Import(key, KnownMaterial(32, 1)).status());
  KMS_ASSERT_OK(Import(key, KnownMaterial(32, 2), new_material).status());
  EXPECT_ERROR(Import(key, KnownMaterial(32, 3), new_material),
               kResourceExhausted, "LimitExceededException");
  KMS_ASSERT_OK(DeleteMaterial(key));
  EXPECT_ERROR(Import(key, KnownMaterial(32, 3), new_material), kFailedPrecondition,
               "KMSInvalidStateException");
}

TEST_P(ImportTest, EachVersionIsRestoredByItsOwnMaterial) {
  const std::string key = NewExternalKey();
  const std::string first = KnownMaterial(32, 0x01);
  const std::string second = KnownMaterial(32, 0x02);
  auto v1_import = Import(key, first);
  ASSERT_TRUE(v1_import.ok());
  auto old_blob = Encrypt(key, "old");
  ASSERT_TRUE(old_blob.ok());
  KMS_ASSERT_OK(
      Import(key, second, [](auto& r) { r.set_import_type(v1::NEW_KEY_MATERIAL); }).status());
  auto new_blob = Encrypt(key, "new");
  ASSERT_TRUE(new_blob.ok());
  KMS_ASSERT_OK(DeleteMaterial(key));

  // The old version alone does not make the key usable.
  auto restored_old = Import(key, first, [&](auto& r) {
    r.set_key_material_id(v1_import->key_material_id());
  });
  ASSERT_TRUE(restored_old.ok()) << restored_old.status();
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  // The current version (the default target) must be the second material.
  EXPECT_ERROR(Import(key, first), kInvalidArgument, "IncorrectKeyMaterialException");
  KMS_ASSERT_OK(Import(key, second).status());
  EXPECT_EQ(Describe(key).key_state(), v1::ENABLED);
  EXPECT_EQ(Decrypt(*old_blob).value_or(""), "old");
  EXPECT_EQ(Decrypt(*new_blob).value_or(""), "new");

  // Only the current one restored: old ciphertexts say what to do.
  KMS_ASSERT_OK(DeleteMaterial(key));
  KMS_ASSERT_OK(Import(key, second).status());
  auto pending = Decrypt(*old_blob);
  EXPECT_ERROR(pending, kFailedPrecondition, "KMSInvalidStateException");
  EXPECT_THAT(pending.status().message(), HasSubstr("re-import"));
  EXPECT_EQ(Decrypt(*new_blob).value_or(""), "new");
  EXPECT_ERROR(Import(key, first, [](auto& r) { r.set_key_material_id(NewUuid()); }),
               kNotFound, "NotFoundException");
}

// ---------------------------------------------------------------- failures and recovery

TEST_P(ImportTest, AnHsmFailureAfterTheUnwrapLeavesNothing) {
  const std::string key = NewExternalKey();
  auto p = GetParameters(key);
  ASSERT_TRUE(p.ok()) << p.status();
  for (absl::string_view operation :
       {FaultInjectingHsm::kKeyCheckValue, FaultInjectingHsm::kKeyFingerprint}) {
    SCOPED_TRACE(operation);
    faulty_->FailOperation(operation, absl::UnavailableError("HSM gone"));
    EXPECT_ERROR(service_->ImportKeyMaterial(ImportRequest(key, *p, KnownMaterial())),
                 kUnavailable, "KeyUnavailableException");
    faulty_->ClearFaults();
    EXPECT_THAT(MaterialObjects(), IsEmpty());
    EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  }
  KMS_EXPECT_OK(service_->ImportKeyMaterial(ImportRequest(key, *p, KnownMaterial())).status());
}

// What a kill -9 after the unwrap of a re-import leaves (the object exists,
// the version is still marked deleted, the intent is there) is rolled back.
TEST_P(ImportTest, RecoveryRollsBackAnInterruptedRestore) {
  const std::string key = NewExternalKey();
  auto imported = Import(key, KnownMaterial());
  ASSERT_TRUE(imported.ok());
  KMS_ASSERT_OK(DeleteMaterial(key));
  const std::string version = imported->key_material_id();
  KMS_ASSERT_OK(hsm().GenerateAesKey(version));  // stands in for the unwrapped copy
  KMS_ASSERT_OK(store_->AddIntent({0, std::string(kIntentCreateVersion), key, version,
                                   clock_.Now()})
                    .status());
  Restart();
  KMS_ASSERT_OK(service_->Recover());
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  auto intents = store_->ListIntents();
  ASSERT_TRUE(intents.ok());
  EXPECT_THAT(*intents, IsEmpty());
}

// A kill -9 after DeleteImportedKeyMaterial's commit: metadata says deleted,
// the objects are still in the token. Recovery finishes the destruction.
TEST_P(ImportTest, RecoveryFinishesAnInterruptedDeletion) {
  const std::string key = NewExternalKey();
  auto imported = Import(key, KnownMaterial());
  ASSERT_TRUE(imported.ok());
  faulty_->FailOperation(FaultInjectingHsm::kDestroyKey, absl::UnavailableError("gone"));
  EXPECT_ERROR(DeleteMaterial(key), kUnavailable, "KeyUnavailableException");
  faulty_->ClearFaults();
  // Fail-closed: the key is already unusable.
  EXPECT_EQ(Describe(key).key_state(), v1::PENDING_IMPORT);
  EXPECT_EQ(MaterialObjects().size(), 1u);
  Restart();
  KMS_ASSERT_OK(service_->Recover());
  EXPECT_THAT(MaterialObjects(), IsEmpty());
  auto intents = store_->ListIntents();
  ASSERT_TRUE(intents.ok());
  EXPECT_THAT(*intents, IsEmpty());
}

TEST_P(ImportTest, RecoveryRemovesWrappingKeysWithoutParameters) {
  const std::string key = NewExternalKey();
  KMS_ASSERT_OK(GetParameters(key).status());
  KMS_ASSERT_OK(hsm().GenerateRsaWrappingKey(NewUuid(), 2048));  // a crash's leftover
  EXPECT_EQ(hsm().ListWrappingKeyIds().size(), 2u);
  Restart();
  KMS_ASSERT_OK(service_->Recover());
  auto listed = store_->ListImportParameters(key);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(hsm().ListWrappingKeyIds(), std::vector<std::string>{listed->front().wrapping_key_id});
}

}  // namespace
}  // namespace kms::service
