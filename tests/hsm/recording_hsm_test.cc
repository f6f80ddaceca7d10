// RecordingHsm over FakeHsm (and FaultInjectingHsm for failures): one HsmCall
// per operation with the right function, mechanism, object and result; none
// for calls the handle cache answers; results passed through untouched; no
// secret in any record.
#include "hsm/recording_hsm.h"

#include <openssl/evp.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"
#include "tests/testing/local_crypto.h"
#include "tests/testing/status_matchers.h"

namespace kms::hsm {

// So failures print the call, not a byte dump.
void PrintTo(const HsmCall& call, std::ostream* os) {
  *os << "{" << call.function << ", " << call.mechanism << ", '" << call.object_id << "', "
      << call.result << "}";
}

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::HasSubstr;

using testing::FakeHsm;
using testing::FaultInjectingHsm;
using testing::KnownMaterial;
using testing::WrapLocally;

constexpr absl::string_view kIv = "0123456789ab";
constexpr absl::string_view kPlaintext = "plaintext data key bytes";
constexpr absl::string_view kAad = "header|context";

// Collects the calls a RecordingHsm reports. Thread-safe.
class CallLog {
 public:
  RecordingHsm::Recorder Recorder() {
    return [this](const HsmCall& call) {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
    };
  }
  std::vector<HsmCall> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(calls_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<HsmCall> calls_;
};

// A FakeHsm with an AES key "aes" (and a ciphertext under it), a wrapping key
// "wrap" and a signing key "sign", made behind the recorder's back.
class RecordingHsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KMS_ASSERT_OK(fake_.GenerateAesKey("aes"));
    KMS_ASSERT_OK(fake_.GenerateRsaWrappingKey("wrap", 2048));
    KMS_ASSERT_OK(fake_.GenerateEcSigningKey("sign"));
    auto ciphertext = fake_.EncryptGcm("aes", kIv, kPlaintext, kAad);
    ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
    ciphertext_ = *ciphertext;
    auto der = fake_.GetPublicKeyDer("wrap");
    ASSERT_TRUE(der.ok()) << der.status();
    wrapping_der_ = *der;
  }

  FakeHsm fake_;
  CallLog log_;
  RecordingHsm hsm_{fake_, log_.Recorder()};
  std::string ciphertext_;
  std::string wrapping_der_;
};

// One case per recorded method: the call (on success) and what it records.
struct RecordedCase {
  std::string name;
  std::function<absl::Status(Hsm&, const std::string& ciphertext, const std::string& der)>
      call;
  HsmCall expected;
};

void PrintTo(const RecordedCase& c, std::ostream* os) { *os << c.name; }

class RecordedCallTest : public RecordingHsmTest,
                         public ::testing::WithParamInterface<RecordedCase> {};

TEST_P(RecordedCallTest, RecordsExactlyOneCallWithTheRightFields) {
  const RecordedCase& c = GetParam();
  KMS_ASSERT_OK(c.call(hsm_, ciphertext_, wrapping_der_));
  EXPECT_THAT(log_.Take(), ElementsAre(c.expected));
}

std::vector<RecordedCase> RecordedCases() {
  using Args = const std::string&;
  auto ok = [](absl::string_view f, absl::string_view m, absl::string_view id) {
    return HsmCall{std::string(f), std::string(m), std::string(id), "CKR_OK"};
  };
  std::vector<RecordedCase> cases = {
      {"GenerateAesKey", [](Hsm& h, Args, Args) { return h.GenerateAesKey("new"); },
       ok("C_GenerateKey", "CKM_AES_KEY_GEN", "new")},
      {"DestroyKey", [](Hsm& h, Args, Args) { return h.DestroyKey("aes"); },
       ok("C_DestroyObject", "", "aes")},
      {"DestroySigningKey", [](Hsm& h, Args, Args) { return h.DestroyKey("sign"); },
       ok("C_DestroyObject", "", "sign")},
      {"GetKeyAttributes",
       [](Hsm& h, Args, Args) { return h.GetKeyAttributes("aes").status(); },
       ok("C_GetAttributeValue", "", "aes")},
      {"EncryptGcm",
       [](Hsm& h, Args, Args) { return h.EncryptGcm("aes", kIv, kPlaintext, kAad).status(); },
       ok("C_Encrypt", "CKM_AES_GCM", "aes")},
      {"DecryptGcm",
       [](Hsm& h, Args ciphertext, Args) {
         return h.DecryptGcm("aes", kIv, ciphertext, kAad).status();
       },
       ok("C_Decrypt", "CKM_AES_GCM", "aes")},
      {"GenerateRandom", [](Hsm& h, Args, Args) { return h.GenerateRandom(32).status(); },
       ok("C_GenerateRandom", "", "")},
      {"GenerateRsaWrappingKey",
       [](Hsm& h, Args, Args) { return h.GenerateRsaWrappingKey("wrap2", 2048); },
       ok("C_GenerateKeyPair", "CKM_RSA_PKCS_KEY_PAIR_GEN", "wrap2")},
      {"GetPublicKeyDer", [](Hsm& h, Args, Args) { return h.GetPublicKeyDer("wrap").status(); },
       ok("C_GetAttributeValue", "", "wrap")},
      {"KeyCheckValue", [](Hsm& h, Args, Args) { return h.KeyCheckValue("aes").status(); },
       ok("C_Encrypt", "CKM_AES_ECB", "aes")},
      {"KeyFingerprint", [](Hsm& h, Args, Args) { return h.KeyFingerprint("aes").status(); },
       ok("C_Encrypt", "CKM_AES_ECB", "aes")},
      {"GenerateEcSigningKey",
       [](Hsm& h, Args, Args) { return h.GenerateEcSigningKey("sign2"); },
       ok("C_GenerateKeyPair", "CKM_EC_KEY_PAIR_GEN", "sign2")},
      {"SignEcdsaP256Sha256",
       [](Hsm& h, Args, Args) { return h.SignEcdsaP256Sha256("sign", "checkpoint").status(); },
       ok("C_Sign", "CKM_ECDSA", "sign")},
  };
  for (WrappingAlgorithm algorithm : kAllWrappingAlgorithms) {
    cases.push_back(
        {std::string("UnwrapAesKey_") + std::string(WrappingAlgorithmName(algorithm)),
         [algorithm](Hsm& h, Args, Args der) {
           return h.UnwrapAesKey("wrap", algorithm, WrapLocally(algorithm, der, KnownMaterial()),
                                 "imported");
         },
         ok("C_UnwrapKey", UnwrapMechanismName(algorithm), "imported")});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(EveryMethod, RecordedCallTest, ::testing::ValuesIn(RecordedCases()),
                         [](const ::testing::TestParamInfo<RecordedCase>& info) {
                           return info.param.name;
                         });

TEST(UnwrapMechanismNameTest, NamesThePkcs11MechanismOfEachAlgorithm) {
  EXPECT_EQ(UnwrapMechanismName(WrappingAlgorithm::kRsaesOaepSha1), "CKM_RSA_PKCS_OAEP");
  EXPECT_EQ(UnwrapMechanismName(WrappingAlgorithm::kRsaesOaepSha256), "CKM_RSA_PKCS_OAEP");
  EXPECT_EQ(UnwrapMechanismName(WrappingAlgorithm::kRsaAesKeyWrapSha1), "CKM_RSA_AES_KEY_WRAP");
  EXPECT_EQ(UnwrapMechanismName(WrappingAlgorithm::kRsaAesKeyWrapSha256),
            "CKM_RSA_AES_KEY_WRAP");
}

TEST_F(RecordingHsmTest, CacheOnlyCallsRecordNothing) {
  EXPECT_TRUE(hsm_.HasKey("aes"));
  EXPECT_FALSE(hsm_.HasKey("missing"));
  EXPECT_THAT(hsm_.ListKeyIds(), ElementsAre("aes"));
  EXPECT_THAT(hsm_.ListWrappingKeyIds(), ElementsAre("wrap"));
  EXPECT_THAT(hsm_.ListSigningKeyIds(), ElementsAre("sign"));
  EXPECT_EQ(hsm_.SupportedWrappingAlgorithms(), fake_.SupportedWrappingAlgorithms());
  EXPECT_THAT(log_.Take(), IsEmpty());
}

TEST_F(RecordingHsmTest, FailureFromTheInnerHsmIsRecordedWithCodeAndMessage) {
  absl::StatusOr<std::string> result = hsm_.EncryptGcm("missing", kIv, kPlaintext, kAad);
  ASSERT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm_.GenerateAesKey("aes"), absl::StatusCode::kAlreadyExists);
  KMS_EXPECT_CODE(hsm_.DecryptGcm("aes", kIv, ciphertext_, "other aad"),
                  absl::StatusCode::kInvalidArgument);
  std::vector<HsmCall> calls = log_.Take();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].function, "C_Encrypt");
  EXPECT_EQ(calls[0].object_id, "missing");
  EXPECT_EQ(calls[0].result, "NOT_FOUND: " + std::string(result.status().message()));
  EXPECT_THAT(calls[1].result, HasSubstr("ALREADY_EXISTS: "));
  EXPECT_EQ(calls[1].function, "C_GenerateKey");
  EXPECT_THAT(calls[2].result, HasSubstr("INVALID_ARGUMENT: "));
}

TEST(RecordingHsmFaultTest, InjectedFaultsAreRecordedAndPassedThrough) {
  FakeHsm fake;
  FaultInjectingHsm faulty(fake);
  CallLog log;
  RecordingHsm hsm(faulty, log.Recorder());
  KMS_ASSERT_OK(fake.GenerateEcSigningKey("sign"));
  faulty.FailOperation(FaultInjectingHsm::kSignEcdsaP256Sha256,
                       absl::UnavailableError("HSM down"));
  faulty.FailOperation(FaultInjectingHsm::kGenerateRandom, absl::InternalError("boom"));
  absl::StatusOr<std::string> signature = hsm.SignEcdsaP256Sha256("sign", "checkpoint");
  EXPECT_EQ(signature.status(), absl::UnavailableError("HSM down"));
  absl::StatusOr<SecretBytes> random = hsm.GenerateRandom(16);
  EXPECT_EQ(random.status(), absl::InternalError("boom"));
  // kAfterCall: the key is made, the caller and the record see the error.
  faulty.FailOperation(FaultInjectingHsm::kGenerateAesKey, absl::UnavailableError("lost reply"),
                       FaultInjectingHsm::When::kAfterCall);
  EXPECT_EQ(hsm.GenerateAesKey("k"), absl::UnavailableError("lost reply"));
  EXPECT_TRUE(fake.HasKey("k"));
  EXPECT_THAT(log.Take(),
              ElementsAre(HsmCall{"C_Sign", "CKM_ECDSA", "sign", "UNAVAILABLE: HSM down"},
                          HsmCall{"C_GenerateRandom", "", "", "INTERNAL: boom"},
                          HsmCall{"C_GenerateKey", "CKM_AES_KEY_GEN", "k",
                                  "UNAVAILABLE: lost reply"}));
}

TEST_F(RecordingHsmTest, ReturnValuesPassThroughUnchanged) {
  // GCM is deterministic for one key and IV, so the two must match exactly.
  auto encrypted = hsm_.EncryptGcm("aes", kIv, kPlaintext, kAad);
  ASSERT_TRUE(encrypted.ok()) << encrypted.status();
  EXPECT_EQ(*encrypted, ciphertext_);
  auto decrypted = hsm_.DecryptGcm("aes", kIv, ciphertext_, kAad);
  ASSERT_TRUE(decrypted.ok()) << decrypted.status();
  EXPECT_TRUE(decrypted->secret() == kPlaintext);
  auto random = hsm_.GenerateRandom(48);
  ASSERT_TRUE(random.ok()) << random.status();
  EXPECT_EQ(random->size(), 48u);
  auto der = hsm_.GetPublicKeyDer("wrap");
  ASSERT_TRUE(der.ok()) << der.status();
  EXPECT_EQ(*der, wrapping_der_);
  auto kcv = hsm_.KeyCheckValue("aes");
  auto expected_kcv = fake_.KeyCheckValue("aes");
  ASSERT_TRUE(kcv.ok() && expected_kcv.ok());
  EXPECT_EQ(*kcv, *expected_kcv);
  auto fingerprint = hsm_.KeyFingerprint("aes");
  auto expected_fingerprint = fake_.KeyFingerprint("aes");
  ASSERT_TRUE(fingerprint.ok() && expected_fingerprint.ok());
  EXPECT_EQ(*fingerprint, *expected_fingerprint);
  auto attributes = hsm_.GetKeyAttributes("sign");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_TRUE(attributes->sign);
  EXPECT_FALSE(attributes->decrypt);
  auto signature = hsm_.SignEcdsaP256Sha256("sign", "checkpoint");
  ASSERT_TRUE(signature.ok()) << signature.status();
  auto signing_der = fake_.GetPublicKeyDer("sign");
  ASSERT_TRUE(signing_der.ok());
  testing::Pkey key = testing::ParsePublicKey(*signing_der);
  ASSERT_NE(key, nullptr);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free);
  ASSERT_EQ(EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()), 1);
  EXPECT_EQ(EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature->data()),
                             signature->size(),
                             reinterpret_cast<const unsigned char*>("checkpoint"), 10),
            1);
  // Effects reach the inner Hsm.
  KMS_ASSERT_OK(hsm_.DestroyKey("aes"));
  EXPECT_FALSE(fake_.HasKey("aes"));
  KMS_ASSERT_OK(hsm_.GenerateEcSigningKey("sign2"));
  EXPECT_THAT(fake_.ListSigningKeyIds(), ElementsAre("sign", "sign2"));
  // Errors too, code and message alike.
  EXPECT_EQ(hsm_.DestroyKey("aes"), fake_.DestroyKey("aes"));
  EXPECT_EQ(hsm_.GenerateRandom(0).status(), fake_.GenerateRandom(0).status());
}

TEST_F(RecordingHsmTest, NoSecretOrCallerDataInAnyRecord) {
  const std::string wrapped = WrapLocally(WrappingAlgorithm::kRsaesOaepSha1, wrapping_der_,
                                          KnownMaterial());
  auto random = hsm_.GenerateRandom(32);
  ASSERT_TRUE(random.ok());
  KMS_ASSERT_OK(hsm_.EncryptGcm("aes", kIv, kPlaintext, kAad));
  auto decrypted = hsm_.DecryptGcm("aes", kIv, ciphertext_, kAad);
  ASSERT_TRUE(decrypted.ok());
  KMS_ASSERT_OK(hsm_.UnwrapAesKey("wrap", WrappingAlgorithm::kRsaesOaepSha1, wrapped, "imp"));
  auto signature = hsm_.SignEcdsaP256Sha256("sign", "secret-ish checkpoint text");
  ASSERT_TRUE(signature.ok());
  const std::vector<std::string> forbidden = {
      std::string(kPlaintext), std::string(kAad), std::string(kIv), ciphertext_, wrapped,
      KnownMaterial(), std::string(random->secret()), "secret-ish checkpoint text", *signature};
  std::vector<HsmCall> calls = log_.Take();
  ASSERT_EQ(calls.size(), 5u);
  for (const HsmCall& call : calls) {
    for (const std::string& field : {call.function, call.mechanism, call.object_id, call.result}) {
      for (const std::string& secret : forbidden) {
        EXPECT_THAT(field, Not(HasSubstr(secret)));
      }
    }
  }
}

TEST(RecordingHsmNullRecorderTest, ForwardsWithoutRecording) {
  FakeHsm fake;
  RecordingHsm hsm(fake, nullptr);
  KMS_EXPECT_OK(hsm.GenerateAesKey("k"));
  EXPECT_TRUE(fake.HasKey("k"));
}

}  // namespace
}  // namespace kms::hsm
