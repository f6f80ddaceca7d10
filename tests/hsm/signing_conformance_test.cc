// The signing primitives of hsm/hsm.h (ECDSA P-256 key pairs for the audit
// log's checkpoints), run against every Hsm implementation: FakeHsm,
// FaultInjectingHsm without faults, and Pkcs11Hsm on a fresh SoftHSM token
// per test. Every signature is checked outside the HSM, with OpenSSL and the
// DER public key GetPublicKeyDer hands out, as an auditor would.
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/pkcs11_hsm.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"
#include "tests/testing/hsm_under_test.h"
#include "tests/testing/local_crypto.h"
#include "tests/testing/softhsm_token.h"
#include "tests/testing/status_matchers.h"

namespace kms::hsm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using testing::HsmFactory;
using testing::HsmUnderTest;
using testing::ParsePublicKey;
using testing::Pkey;

// True if `signature` is a DER ECDSA-Sig-Value over SHA-256(`message`) that
// the public key `der` (a SubjectPublicKeyInfo) accepts. OpenSSL only.
bool VerifiesLocally(absl::string_view der, absl::string_view message,
                     absl::string_view signature) {
  Pkey key = ParsePublicKey(der);
  if (key == nullptr) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free);
  return ctx != nullptr &&
         EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(),
                          reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

// True if `signature` is exactly one DER ECDSA-Sig-Value, nothing after it.
bool IsDerEcdsaSignature(absl::string_view signature) {
  const auto* start = reinterpret_cast<const unsigned char*>(signature.data());
  const unsigned char* cursor = start;
  ECDSA_SIG* parsed = d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(signature.size()));
  if (parsed == nullptr) return false;
  ECDSA_SIG_free(parsed);
  return cursor == start + signature.size();
}

class SigningConformanceTest : public ::testing::TestWithParam<HsmFactory> {
 protected:
  void SetUp() override {
    auto under_test = GetParam().make();
    ASSERT_TRUE(under_test.ok()) << under_test.status();
    under_test_ = std::move(*under_test);
  }
  void TearDown() override { under_test_.reset(); }

  Hsm& hsm() { return under_test_->hsm(); }
  HsmUnderTest& under_test() { return *under_test_; }

  // A new signing key `id`; its public key, DER.
  std::string MakeSigningKey(absl::string_view id = "audit") {
    absl::Status status = hsm().GenerateEcSigningKey(id);
    EXPECT_TRUE(status.ok()) << status;
    auto der = hsm().GetPublicKeyDer(id);
    EXPECT_TRUE(der.ok()) << der.status();
    return der.ok() ? *der : "";
  }

  static constexpr absl::string_view kCheckpoint = "checkpoint 42: sha256=0123abcd";

 private:
  std::unique_ptr<HsmUnderTest> under_test_;
};

TEST_P(SigningConformanceTest, SignatureVerifiesWithThePublicKey) {
  const std::string der = MakeSigningKey();
  for (const std::string& message :
       {std::string(kCheckpoint), std::string(1, '\0'), std::string(100000, 'x')}) {
    SCOPED_TRACE(absl::StrCat("message of ", message.size(), " bytes"));
    auto signature = hsm().SignEcdsaP256Sha256("audit", message);
    ASSERT_TRUE(signature.ok()) << signature.status();
    EXPECT_TRUE(IsDerEcdsaSignature(*signature));
    // DER of two 32-byte integers: 8 to 72 bytes, in practice 70..72.
    EXPECT_LE(signature->size(), 72u);
    EXPECT_TRUE(VerifiesLocally(der, message, *signature));
  }
}

TEST_P(SigningConformanceTest, EmptyMessageSigns) {
  const std::string der = MakeSigningKey();
  auto signature = hsm().SignEcdsaP256Sha256("audit", "");
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(VerifiesLocally(der, "", *signature));
  EXPECT_FALSE(VerifiesLocally(der, std::string(1, '\0'), *signature));
}

TEST_P(SigningConformanceTest, SignatureDoesNotVerifyForAnotherMessageKeyOrChangedByte) {
  const std::string der = MakeSigningKey();
  const std::string other_der = MakeSigningKey("other");
  auto signature = hsm().SignEcdsaP256Sha256("audit", kCheckpoint);
  ASSERT_TRUE(signature.ok()) << signature.status();
  ASSERT_TRUE(VerifiesLocally(der, kCheckpoint, *signature));
  EXPECT_FALSE(VerifiesLocally(der, "checkpoint 43: sha256=0123abcd", *signature));
  EXPECT_FALSE(VerifiesLocally(der, absl::StrCat(kCheckpoint, " "), *signature));
  EXPECT_FALSE(VerifiesLocally(other_der, kCheckpoint, *signature));
  // The last byte is part of s: any change there breaks the signature.
  std::string tampered = *signature;
  tampered.back() ^= 0x01;
  EXPECT_FALSE(VerifiesLocally(der, kCheckpoint, tampered));
}

TEST_P(SigningConformanceTest, TwoSignaturesOfOneMessageDifferAndBothVerify) {
  const std::string der = MakeSigningKey();
  auto first = hsm().SignEcdsaP256Sha256("audit", kCheckpoint);
  auto second = hsm().SignEcdsaP256Sha256("audit", kCheckpoint);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(*first, *second);  // randomised ECDSA: a fresh k each time
  EXPECT_TRUE(VerifiesLocally(der, kCheckpoint, *first));
  EXPECT_TRUE(VerifiesLocally(der, kCheckpoint, *second));
}

TEST_P(SigningConformanceTest, PublicKeyIsAP256SubjectPublicKeyInfo) {
  const std::string der = MakeSigningKey();
  Pkey key = ParsePublicKey(der);
  ASSERT_NE(key, nullptr);
  EXPECT_TRUE(EVP_PKEY_is_a(key.get(), "EC"));
  char group[64] = {0};
  size_t group_size = 0;
  ASSERT_EQ(EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof(group), &group_size),
            1);
  EXPECT_EQ(std::string(group, group_size), "prime256v1");
  // Named curve and uncompressed point: 91 bytes, the usual P-256 SPKI.
  EXPECT_EQ(der.size(), 91u);
  // Two keys, two public keys; one key, the same public key each time.
  EXPECT_NE(MakeSigningKey("other"), der);
  auto again = hsm().GetPublicKeyDer("audit");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, der);
}

TEST_P(SigningConformanceTest, OpensslCommandLineVerifiesTheSignature) {
  if (access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/openssl";
  const std::string der = MakeSigningKey();
  auto signature = hsm().SignEcdsaP256Sha256("audit", kCheckpoint);
  ASSERT_TRUE(signature.ok()) << signature.status();
  auto dir = testing::TempDir::Create("kmsd-sign");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string pub = (*dir)->path() + "/pub.der";
  const std::string sig = (*dir)->path() + "/sig";
  const std::string message = (*dir)->path() + "/message";
  testing::WriteTestFile(pub, der);
  testing::WriteTestFile(sig, *signature);
  testing::WriteTestFile(message, std::string(kCheckpoint));
  testing::CommandResult result =
      testing::RunCommand({"/usr/bin/openssl", "dgst", "-sha256", "-keyform", "DER", "-verify",
                           pub, "-signature", sig, message});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("Verified OK"));
  testing::WriteTestFile(message, "checkpoint 43");
  result = testing::RunCommand({"/usr/bin/openssl", "dgst", "-sha256", "-keyform", "DER",
                                "-verify", pub, "-signature", sig, message});
  EXPECT_NE(result.exit_code, 0) << result.out << result.err;
}

TEST_P(SigningConformanceTest, PrivateHalfIsSensitiveNeverExtractableAndSignsOnly) {
  MakeSigningKey();
  auto attributes = hsm().GetKeyAttributes("audit");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_TRUE(attributes->token);
  EXPECT_TRUE(attributes->is_private);
  EXPECT_TRUE(attributes->sensitive);
  EXPECT_TRUE(attributes->always_sensitive);
  EXPECT_FALSE(attributes->extractable);
  EXPECT_TRUE(attributes->never_extractable);
  EXPECT_TRUE(attributes->sign);
  EXPECT_FALSE(attributes->derive);
  EXPECT_FALSE(attributes->encrypt);
  EXPECT_FALSE(attributes->decrypt);
  EXPECT_FALSE(attributes->wrap);
  EXPECT_FALSE(attributes->unwrap);
  EXPECT_EQ(attributes->value_len, 0u);
  EXPECT_EQ(attributes->modulus_bits, 0u);
}

TEST_P(SigningConformanceTest, IdsAreOneNamespaceWithAesAndWrappingKeys) {
  KMS_ASSERT_OK(hsm().GenerateAesKey("aes"));
  KMS_ASSERT_OK(hsm().GenerateRsaWrappingKey("wrap", 2048));
  MakeSigningKey("audit");
  for (absl::string_view id : {"aes", "wrap", "audit"}) {
    SCOPED_TRACE(id);
    KMS_EXPECT_CODE(hsm().GenerateEcSigningKey(id), absl::StatusCode::kAlreadyExists);
  }
  KMS_EXPECT_CODE(hsm().GenerateAesKey("audit"), absl::StatusCode::kAlreadyExists);
  KMS_EXPECT_CODE(hsm().GenerateRsaWrappingKey("audit", 2048),
                  absl::StatusCode::kAlreadyExists);
  // Nothing was replaced: each id still names what it named.
  EXPECT_TRUE(hsm().HasKey("aes"));
  EXPECT_THAT(hsm().ListWrappingKeyIds(), ElementsAre("wrap"));
  EXPECT_THAT(hsm().ListSigningKeyIds(), ElementsAre("audit"));
  if (auto count = under_test().ObjectCount(); count.has_value()) {
    EXPECT_EQ(*count, 5u);  // 1 AES key + 2 pairs
  }
}

TEST_P(SigningConformanceTest, IdMustBeOneTo64Bytes) {
  KMS_EXPECT_CODE(hsm().GenerateEcSigningKey(""), absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_CODE(hsm().GenerateEcSigningKey(std::string(65, 'a')),
                  absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_OK(hsm().GenerateEcSigningKey(std::string(64, 'a')));
  KMS_EXPECT_OK(hsm().GenerateEcSigningKey("a"));
  EXPECT_THAT(hsm().ListSigningKeyIds(), ElementsAre("a", std::string(64, 'a')));
}

TEST_P(SigningConformanceTest, SigningWithAnAesKeyWrappingKeyOrUnknownIdIsNotFound) {
  KMS_ASSERT_OK(hsm().GenerateAesKey("aes"));
  KMS_ASSERT_OK(hsm().GenerateRsaWrappingKey("wrap", 2048));
  absl::StatusOr<std::string> signature = hsm().SignEcdsaP256Sha256("aes", kCheckpoint);
  EXPECT_EQ(signature.status().code(), absl::StatusCode::kNotFound) << signature.status();
  EXPECT_THAT(signature.status().message(), HasSubstr("names an AES key"));
  KMS_EXPECT_CODE(hsm().SignEcdsaP256Sha256("wrap", kCheckpoint), absl::StatusCode::kNotFound);
  signature = hsm().SignEcdsaP256Sha256("missing", kCheckpoint);
  EXPECT_EQ(signature.status().code(), absl::StatusCode::kNotFound) << signature.status();
  EXPECT_THAT(signature.status().message(), HasSubstr("no signing key with id 'missing'"));
  KMS_EXPECT_CODE(hsm().GetPublicKeyDer("missing"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().GetPublicKeyDer("aes"), absl::StatusCode::kNotFound);
}

TEST_P(SigningConformanceTest, ASigningKeyIsNoAesKeyAndNoWrappingKey) {
  MakeSigningKey();
  EXPECT_FALSE(hsm().HasKey("audit"));
  KMS_EXPECT_CODE(hsm().EncryptGcm("audit", "0123456789ab", "data", ""),
                  absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().KeyCheckValue("audit"), absl::StatusCode::kNotFound);
  absl::Status status =
      hsm().UnwrapAesKey("audit", WrappingAlgorithm::kRsaAesKeyWrapSha1,
                         std::string(296, 'w'), "imported");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("names a signing key"));
  EXPECT_FALSE(hsm().HasKey("imported"));
}

TEST_P(SigningConformanceTest, ListSigningKeyIdsIsSortedAndApartFromOtherKinds) {
  EXPECT_THAT(hsm().ListSigningKeyIds(), IsEmpty());
  for (absl::string_view id : {"s3", "s1", "s2"}) KMS_ASSERT_OK(hsm().GenerateEcSigningKey(id));
  KMS_ASSERT_OK(hsm().GenerateAesKey("a1"));
  KMS_ASSERT_OK(hsm().GenerateRsaWrappingKey("w1", 2048));
  EXPECT_THAT(hsm().ListSigningKeyIds(), ElementsAre("s1", "s2", "s3"));
  EXPECT_THAT(hsm().ListKeyIds(), ElementsAre("a1"));
  EXPECT_THAT(hsm().ListWrappingKeyIds(), ElementsAre("w1"));
}

TEST_P(SigningConformanceTest, DestroyKeyRemovesBothHalves) {
  const std::optional<size_t> before = under_test().ObjectCount();
  MakeSigningKey();
  if (before.has_value()) {
    EXPECT_EQ(under_test().ObjectCount(), *before + 2);
  }
  KMS_ASSERT_OK(hsm().DestroyKey("audit"));
  EXPECT_THAT(hsm().ListSigningKeyIds(), IsEmpty());
  KMS_EXPECT_CODE(hsm().SignEcdsaP256Sha256("audit", kCheckpoint),
                  absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().GetPublicKeyDer("audit"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().GetKeyAttributes("audit"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().DestroyKey("audit"), absl::StatusCode::kNotFound);
  if (before.has_value()) {
    EXPECT_EQ(under_test().ObjectCount(), before);
  }
  // The id is free again, for a new key.
  const std::string der = MakeSigningKey();
  auto signature = hsm().SignEcdsaP256Sha256("audit", kCheckpoint);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(VerifiesLocally(der, kCheckpoint, *signature));
}

INSTANTIATE_TEST_SUITE_P(AllHsms, SigningConformanceTest, testing::AllHsmFactories(),
                         testing::HsmFactoryName);

// Only a real token outlives its Hsm object.
TEST(SoftHsmSigningTest, SigningKeysPersistAcrossReopen) {
  auto token = testing::SoftHsmToken::Create();
  ASSERT_TRUE(token.ok()) << token.status();
  std::string der;
  {
    auto hsm = (*token)->OpenHsm();
    ASSERT_TRUE(hsm.ok()) << hsm.status();
    KMS_ASSERT_OK((*hsm)->GenerateEcSigningKey("audit"));
    KMS_ASSERT_OK((*hsm)->GenerateEcSigningKey("gone"));
    KMS_ASSERT_OK((*hsm)->GenerateAesKey("aes"));
    auto exported = (*hsm)->GetPublicKeyDer("audit");
    ASSERT_TRUE(exported.ok()) << exported.status();
    der = *exported;
    KMS_ASSERT_OK((*hsm)->DestroyKey("gone"));
  }
  auto hsm = (*token)->OpenHsm();
  ASSERT_TRUE(hsm.ok()) << hsm.status();
  // The cache is rebuilt with signing keys apart from the other kinds.
  EXPECT_THAT((*hsm)->ListSigningKeyIds(), ElementsAre("audit"));
  EXPECT_THAT((*hsm)->ListKeyIds(), ElementsAre("aes"));
  EXPECT_THAT((*hsm)->ListWrappingKeyIds(), IsEmpty());
  auto exported = (*hsm)->GetPublicKeyDer("audit");
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(*exported, der);
  auto signature = (*hsm)->SignEcdsaP256Sha256("audit", "after the restart");
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(VerifiesLocally(der, "after the restart", *signature));
  KMS_EXPECT_CODE((*hsm)->GenerateEcSigningKey("audit"), absl::StatusCode::kAlreadyExists);
  // 1 AES key + both halves of "audit"; nothing of "gone".
  auto count = (*hsm)->CountObjectsForTesting();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 3u);
  KMS_ASSERT_OK((*hsm)->DestroyKey("audit"));
  count = (*hsm)->CountObjectsForTesting();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1u);
}

// FaultInjectingHsm forwards the signing calls and can fail them.
TEST(FaultInjectingHsmSigningTest, SigningCallsAreFallibleAndCounted) {
  testing::FakeHsm fake;
  testing::FaultInjectingHsm hsm(fake);
  using testing::FaultInjectingHsm;
  hsm.FailOperation(FaultInjectingHsm::kGenerateEcSigningKey,
                    absl::UnavailableError("HSM down"));
  KMS_EXPECT_CODE(hsm.GenerateEcSigningKey("audit"), absl::StatusCode::kUnavailable);
  EXPECT_THAT(fake.ListSigningKeyIds(), IsEmpty());
  hsm.ClearFaults();
  KMS_ASSERT_OK(hsm.GenerateEcSigningKey("audit"));
  hsm.FailOperation(FaultInjectingHsm::kSignEcdsaP256Sha256, absl::InternalError("boom"));
  KMS_EXPECT_CODE(hsm.SignEcdsaP256Sha256("audit", "m"), absl::StatusCode::kInternal);
  hsm.ClearFaults();
  KMS_EXPECT_OK(hsm.SignEcdsaP256Sha256("audit", "m"));
  // kAfterCall: the key exists, the caller sees the error.
  hsm.FailOperation(FaultInjectingHsm::kGenerateEcSigningKey, absl::UnavailableError("lost"),
                    FaultInjectingHsm::When::kAfterCall);
  KMS_EXPECT_CODE(hsm.GenerateEcSigningKey("second"), absl::StatusCode::kUnavailable);
  EXPECT_THAT(hsm.ListSigningKeyIds(), ElementsAre("audit", "second"));
  EXPECT_EQ(hsm.CallCount(FaultInjectingHsm::kGenerateEcSigningKey), 3);
  EXPECT_EQ(hsm.CallCount(FaultInjectingHsm::kSignEcdsaP256Sha256), 2);
  EXPECT_EQ(hsm.CallCount(FaultInjectingHsm::kListSigningKeyIds), 1);
  EXPECT_EQ(hsm.InjectedFaultCount(), 3);
}

}  // namespace
}  // namespace kms::hsm
