// The import primitives of hsm/hsm.h (wrapping keys, unwrap into a token
// object, key check values and fingerprints), run against every Hsm
// implementation: FakeHsm, FaultInjectingHsm without faults, and Pkcs11Hsm
// on a fresh SoftHSM token per test. Each implementation is exercised with
// the wrapping algorithms it reports; the test wraps material it knows with
// OpenSSL, as an operator would, and then proves, outside the HSM, that the
// imported key is exactly that material.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/pkcs11_hsm.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"
#include "tests/testing/local_crypto.h"
#include "tests/testing/hsm_under_test.h"
#include "tests/testing/status_matchers.h"

namespace kms::hsm {
namespace {

using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using testing::DecryptGcmLocally;
using testing::IsRsaAesKeyWrap;
using testing::Pkey;
using testing::Kcv;
using testing::KnownMaterial;
using testing::ParsePublicKey;
using testing::WrapLocally;

using testing::HsmFactory;
using testing::HsmUnderTest;

class ImportConformanceTest : public ::testing::TestWithParam<HsmFactory> {
 protected:
  void SetUp() override {
    auto under_test = GetParam().make();
    ASSERT_TRUE(under_test.ok()) << under_test.status();
    under_test_ = std::move(*under_test);
  }
  void TearDown() override { under_test_.reset(); }

  Hsm& hsm() { return under_test_->hsm(); }
  std::optional<size_t> ObjectCount() { return under_test_->ObjectCount(); }

  // An algorithm this implementation supports, for tests about something
  // else than the algorithm.
  WrappingAlgorithm AnyAlgorithm() {
    std::vector<WrappingAlgorithm> algorithms = hsm().SupportedWrappingAlgorithms();
    EXPECT_FALSE(algorithms.empty());
    return algorithms.empty() ? WrappingAlgorithm::kRsaAesKeyWrapSha1 : algorithms.front();
  }

  // A 2048-bit wrapping key "wrap" and its public key.
  std::string MakeWrappingKey(absl::string_view id = "wrap", int bits = 2048) {
    absl::Status status = hsm().GenerateRsaWrappingKey(id, bits);
    EXPECT_TRUE(status.ok()) << status;
    auto der = hsm().GetPublicKeyDer(id);
    EXPECT_TRUE(der.ok()) << der.status();
    return der.ok() ? *der : "";
  }

  // Expects that a refused import left nothing behind.
  void ExpectNothingLeft(absl::string_view id, const std::vector<std::string>& key_ids_before,
                         std::optional<size_t> objects_before) {
    EXPECT_FALSE(hsm().HasKey(id));
    EXPECT_EQ(hsm().ListKeyIds(), key_ids_before);
    KMS_EXPECT_CODE(hsm().KeyCheckValue(id), absl::StatusCode::kNotFound);
    // No new token object and no ephemeral session key.
    EXPECT_EQ(ObjectCount(), objects_before);
  }

  static constexpr absl::string_view kIv = "0123456789ab";
  static constexpr absl::string_view kAad = "header|context";

 private:
  std::unique_ptr<HsmUnderTest> under_test_;
};

TEST(WrappingAlgorithmTest, NamesAreAwsNames) {
  EXPECT_EQ(WrappingAlgorithmName(WrappingAlgorithm::kRsaesOaepSha1), "RSAES_OAEP_SHA_1");
  EXPECT_EQ(WrappingAlgorithmName(WrappingAlgorithm::kRsaesOaepSha256), "RSAES_OAEP_SHA_256");
  EXPECT_EQ(WrappingAlgorithmName(WrappingAlgorithm::kRsaAesKeyWrapSha1),
            "RSA_AES_KEY_WRAP_SHA_1");
  EXPECT_EQ(WrappingAlgorithmName(WrappingAlgorithm::kRsaAesKeyWrapSha256),
            "RSA_AES_KEY_WRAP_SHA_256");
}

TEST(LocalKeyCheckValueTest, MatchesTheAesKnownAnswer) {
  // AES-256 of the zero block under the zero key is dc95c078a2408989...
  // (FIPS-197 style known answer), so the KCV of all-zero material is dc95c0.
  auto kcv = LocalKeyCheckValue(SecretBytes(32));
  ASSERT_TRUE(kcv.ok()) << kcv.status();
  EXPECT_EQ(absl::BytesToHexString(*kcv), "dc95c0");
  auto fingerprint = LocalKeyFingerprint(SecretBytes(32));
  ASSERT_TRUE(fingerprint.ok()) << fingerprint.status();
  EXPECT_EQ(fingerprint->size(), kKeyFingerprintSize);
  // Another block than the KCV's.
  EXPECT_NE(fingerprint->substr(0, 3), *kcv);
  // Weak candidates are all told apart.
  EXPECT_NE(Kcv(std::string(32, '\0')), Kcv(std::string(32, '\xff')));
  EXPECT_NE(Kcv(std::string(32, '\x01')), Kcv(std::string(32, '\x02')));
}

TEST(LocalKeyCheckValueTest, RejectsNonAesSizes) {
  for (size_t size : {0, 1, 15, 17, 31, 33, 64}) {
    SCOPED_TRACE(size);
    KMS_EXPECT_CODE(LocalKeyCheckValue(SecretBytes(size)), absl::StatusCode::kInvalidArgument);
  }
  KMS_EXPECT_OK(LocalKeyCheckValue(SecretBytes(16)));
  KMS_EXPECT_OK(LocalKeyCheckValue(SecretBytes(24)));
}

TEST_P(ImportConformanceTest, OffersSomeAlgorithmsInDeclarationOrder) {
  std::vector<WrappingAlgorithm> algorithms = hsm().SupportedWrappingAlgorithms();
  ASSERT_FALSE(algorithms.empty());
  for (size_t i = 1; i < algorithms.size(); ++i) {
    EXPECT_LT(static_cast<int>(algorithms[i - 1]), static_cast<int>(algorithms[i]));
  }
}

TEST_P(ImportConformanceTest, WrappingKeysOfEachSizeExportAParsablePublicKey) {
  for (int bits : {2048, 3072, 4096}) {
    SCOPED_TRACE(bits);
    const std::string id = absl::StrCat("wrap-", bits);
    KMS_ASSERT_OK(hsm().GenerateRsaWrappingKey(id, bits));
    auto der = hsm().GetPublicKeyDer(id);
    ASSERT_TRUE(der.ok()) << der.status();
    Pkey key = ParsePublicKey(*der);
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(EVP_PKEY_get_base_id(key.get()), EVP_PKEY_RSA);
    EXPECT_EQ(EVP_PKEY_get_bits(key.get()), bits);
    BIGNUM* e = nullptr;
    ASSERT_EQ(EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_E, &e), 1);
    EXPECT_EQ(BN_get_word(e), 65537u);
    BN_free(e);

    auto attributes = hsm().GetKeyAttributes(id);
    ASSERT_TRUE(attributes.ok()) << attributes.status();
    EXPECT_EQ(attributes->modulus_bits, static_cast<size_t>(bits));
  }
  EXPECT_THAT(hsm().ListWrappingKeyIds(), ElementsAre("wrap-2048", "wrap-3072", "wrap-4096"));
  // Wrapping keys are not AES keys.
  EXPECT_THAT(hsm().ListKeyIds(), IsEmpty());
  EXPECT_FALSE(hsm().HasKey("wrap-2048"));
  KMS_EXPECT_CODE(hsm().EncryptGcm("wrap-2048", kIv, "x", kAad), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().KeyCheckValue("wrap-2048"), absl::StatusCode::kNotFound);
}

TEST_P(ImportConformanceTest, WrappingPrivateKeyIsSensitiveNeverExtractableUnwrapOnly) {
  MakeWrappingKey();
  auto attributes = hsm().GetKeyAttributes("wrap");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_TRUE(attributes->token);
  EXPECT_TRUE(attributes->is_private);
  EXPECT_TRUE(attributes->sensitive);
  EXPECT_TRUE(attributes->always_sensitive);
  EXPECT_FALSE(attributes->extractable);
  EXPECT_TRUE(attributes->never_extractable);
  EXPECT_TRUE(attributes->unwrap);
  EXPECT_FALSE(attributes->decrypt);
  EXPECT_FALSE(attributes->encrypt);
  EXPECT_FALSE(attributes->sign);
  EXPECT_FALSE(attributes->derive);
  EXPECT_FALSE(attributes->wrap);
  EXPECT_EQ(attributes->modulus_bits, 2048u);
}

TEST_P(ImportConformanceTest, WrappingKeyArgumentsAreValidated) {
  for (int bits : {0, 1024, 2047, 2049, 8192}) {
    SCOPED_TRACE(bits);
    KMS_EXPECT_CODE(hsm().GenerateRsaWrappingKey("wrap", bits),
                    absl::StatusCode::kInvalidArgument);
  }
  KMS_EXPECT_CODE(hsm().GenerateRsaWrappingKey("", 2048), absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_CODE(hsm().GenerateRsaWrappingKey(std::string(65, 'w'), 2048),
                  absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(hsm().ListWrappingKeyIds(), IsEmpty());

  // One namespace for AES keys and wrapping keys.
  KMS_ASSERT_OK(hsm().GenerateAesKey("k1"));
  KMS_EXPECT_CODE(hsm().GenerateRsaWrappingKey("k1", 2048), absl::StatusCode::kAlreadyExists);
  MakeWrappingKey();
  KMS_EXPECT_CODE(hsm().GenerateRsaWrappingKey("wrap", 2048), absl::StatusCode::kAlreadyExists);
  KMS_EXPECT_CODE(hsm().GenerateAesKey("wrap"), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(hsm().ListWrappingKeyIds(), ElementsAre("wrap"));
  EXPECT_THAT(hsm().ListKeyIds(), ElementsAre("k1"));
}

TEST_P(ImportConformanceTest, ImportedKeyIsExactlyTheWrappedMaterial) {
  const std::string der = MakeWrappingKey();
  const std::string material = KnownMaterial();
  int n = 0;
  for (WrappingAlgorithm algorithm : hsm().SupportedWrappingAlgorithms()) {
    SCOPED_TRACE(WrappingAlgorithmName(algorithm));
    const std::string id = absl::StrCat("imported-", n++);
    const std::optional<size_t> objects_before = ObjectCount();
    KMS_ASSERT_OK(hsm().UnwrapAesKey("wrap", algorithm, WrapLocally(algorithm, der, material),
                                     id));
    EXPECT_TRUE(hsm().HasKey(id));
    // Exactly one new object: the ephemeral key of RSA_AES_KEY_WRAP is gone.
    if (objects_before.has_value()) {
      EXPECT_EQ(ObjectCount(), *objects_before + 1);
    }

    // A ciphertext the HSM makes decrypts in OpenSSL under the known bytes.
    auto ciphertext = hsm().EncryptGcm(id, kIv, "a data key", kAad);
    ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
    EXPECT_EQ(DecryptGcmLocally(material, kIv, *ciphertext, kAad), "a data key");
    EXPECT_EQ(DecryptGcmLocally(KnownMaterial(32, 0x12), kIv, *ciphertext, kAad), std::nullopt);

    auto kcv = hsm().KeyCheckValue(id);
    ASSERT_TRUE(kcv.ok()) << kcv.status();
    EXPECT_EQ(kcv->size(), kKeyCheckValueSize);
    EXPECT_EQ(*kcv, Kcv(material));
    auto fingerprint = hsm().KeyFingerprint(id);
    ASSERT_TRUE(fingerprint.ok()) << fingerprint.status();
    auto local_fingerprint = LocalKeyFingerprint(SecretBytes::CopyFrom(material));
    ASSERT_TRUE(local_fingerprint.ok());
    EXPECT_EQ(*fingerprint, *local_fingerprint);

    auto attributes = hsm().GetKeyAttributes(id);
    ASSERT_TRUE(attributes.ok()) << attributes.status();
    EXPECT_TRUE(attributes->token);
    EXPECT_TRUE(attributes->is_private);
    EXPECT_TRUE(attributes->sensitive);
    EXPECT_FALSE(attributes->extractable);
    // The material was outside the HSM: PKCS#11 says so.
    EXPECT_FALSE(attributes->always_sensitive);
    EXPECT_FALSE(attributes->never_extractable);
    EXPECT_FALSE(attributes->derive);
    EXPECT_TRUE(attributes->encrypt);
    EXPECT_TRUE(attributes->decrypt);
    EXPECT_FALSE(attributes->wrap);
    EXPECT_FALSE(attributes->unwrap);
    EXPECT_FALSE(attributes->sign);
    // SoftHSM 2.6.1 leaves CKA_VALUE_LEN unset (0) on unwrapped keys; the
    // GCM round trip above shows the key is the 32 bytes either way.
    EXPECT_THAT(attributes->value_len, AnyOf(Eq(kAesKeySize), Eq(size_t{0})));
  }
}

TEST_P(ImportConformanceTest, RsaAesKeyWrapSplitsAtTheModulusSize) {
  const std::string der = MakeWrappingKey("wrap-3072", 3072);
  const std::string material = KnownMaterial(32, 0x33);
  for (WrappingAlgorithm algorithm : hsm().SupportedWrappingAlgorithms()) {
    if (!IsRsaAesKeyWrap(algorithm)) continue;
    SCOPED_TRACE(WrappingAlgorithmName(algorithm));
    const std::string id = absl::StrCat("imported-", static_cast<int>(algorithm));
    KMS_ASSERT_OK(hsm().UnwrapAesKey("wrap-3072", algorithm,
                                     WrapLocally(algorithm, der, material), id));
    auto kcv = hsm().KeyCheckValue(id);
    ASSERT_TRUE(kcv.ok()) << kcv.status();
    EXPECT_EQ(*kcv, Kcv(material));
  }
}

TEST_P(ImportConformanceTest, MaterialOtherThan32BytesIsRefusedAndLeavesNothing) {
  const std::string der = MakeWrappingKey();
  KMS_ASSERT_OK(hsm().GenerateAesKey("existing"));
  const std::vector<std::string> ids_before = hsm().ListKeyIds();
  const std::optional<size_t> objects_before = ObjectCount();
  for (WrappingAlgorithm algorithm : hsm().SupportedWrappingAlgorithms()) {
    for (size_t size : {1, 16, 24, 25, 31, 33, 40}) {
      SCOPED_TRACE(absl::StrCat(WrappingAlgorithmName(algorithm), ", ", size, " bytes"));
      absl::Status status = hsm().UnwrapAesKey(
          "wrap", algorithm, WrapLocally(algorithm, der, KnownMaterial(size)), "short");
      EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
      EXPECT_THAT(status.message(), HasSubstr("key material must be 32 bytes, got "));
      // The AES key sizes a caller most likely sent by mistake are named.
      if (size == 16 || size == 24) {
        EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("got ", size)));
      }
      ExpectNothingLeft("short", ids_before, objects_before);
    }
  }
}

TEST_P(ImportConformanceTest, CorruptedWrappedBytesAreRefusedAndLeaveNothing) {
  const std::string der = MakeWrappingKey();
  const std::string other_der = MakeWrappingKey("other-wrap");
  const std::vector<std::string> ids_before = hsm().ListKeyIds();
  const std::optional<size_t> objects_before = ObjectCount();
  for (WrappingAlgorithm algorithm : hsm().SupportedWrappingAlgorithms()) {
    const std::string good = WrapLocally(algorithm, der, KnownMaterial());
    std::vector<std::pair<std::string, std::string>> bad = {
        {"empty", ""},
        {"one byte", "x"},
        {"last byte dropped", good.substr(0, good.size() - 1)},
        {"first byte dropped", good.substr(1)},
        {"byte appended", good + "x"},
        {"under another wrapping key", WrapLocally(algorithm, other_der, KnownMaterial())},
    };
    for (size_t i : {size_t{0}, size_t{100}, size_t{255}, size_t{256}, size_t{270},
                     good.size() - 1}) {
      if (i >= good.size()) continue;
      std::string tampered = good;
      tampered[i] ^= 0x01;
      bad.emplace_back(absl::StrCat("byte ", i, " flipped"), tampered);
    }
    for (const auto& [name, wrapped] : bad) {
      SCOPED_TRACE(absl::StrCat(WrappingAlgorithmName(algorithm), ": ", name));
      KMS_EXPECT_CODE(hsm().UnwrapAesKey("wrap", algorithm, wrapped, "imported"),
                      absl::StatusCode::kInvalidArgument);
      ExpectNothingLeft("imported", ids_before, objects_before);
    }
    // The right bytes still work afterwards.
    KMS_EXPECT_OK(hsm().UnwrapAesKey("wrap", algorithm, good, "imported"));
    KMS_EXPECT_OK(hsm().DestroyKey("imported"));
  }
}

TEST_P(ImportConformanceTest, UnwrapWithAnAesKeyOrAnUnknownIdIsNotFound) {
  const WrappingAlgorithm algorithm = AnyAlgorithm();
  const std::string der = MakeWrappingKey();
  KMS_ASSERT_OK(hsm().GenerateAesKey("aes"));
  const std::string wrapped =
      WrapLocally(algorithm, der, KnownMaterial());
  absl::Status status =
      hsm().UnwrapAesKey("aes", algorithm, wrapped, "imported");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("names an AES key"));
  status = hsm().UnwrapAesKey("missing", algorithm, wrapped, "imported");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("no RSA wrapping key with id 'missing'"));
  KMS_EXPECT_CODE(hsm().GetPublicKeyDer("aes"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().GetPublicKeyDer("missing"), absl::StatusCode::kNotFound);
  EXPECT_FALSE(hsm().HasKey("imported"));
}

TEST_P(ImportConformanceTest, NewIdMustBeFreeAndValid) {
  const WrappingAlgorithm algorithm = AnyAlgorithm();
  const std::string der = MakeWrappingKey();
  KMS_ASSERT_OK(hsm().GenerateAesKey("k1"));
  auto kcv_before = hsm().KeyCheckValue("k1");
  ASSERT_TRUE(kcv_before.ok());
  const std::string wrapped =
      WrapLocally(algorithm, der, KnownMaterial());
  KMS_EXPECT_CODE(hsm().UnwrapAesKey("wrap", algorithm, wrapped, "k1"),
                  absl::StatusCode::kAlreadyExists);
  KMS_EXPECT_CODE(hsm().UnwrapAesKey("wrap", algorithm, wrapped, "wrap"),
                  absl::StatusCode::kAlreadyExists);
  KMS_EXPECT_CODE(hsm().UnwrapAesKey("wrap", algorithm, wrapped, ""),
                  absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_CODE(hsm().UnwrapAesKey("wrap", algorithm, wrapped,
                                     std::string(65, 'x')),
                  absl::StatusCode::kInvalidArgument);
  // The existing key is untouched.
  auto kcv_after = hsm().KeyCheckValue("k1");
  ASSERT_TRUE(kcv_after.ok());
  EXPECT_EQ(*kcv_after, *kcv_before);
  EXPECT_THAT(hsm().ListKeyIds(), ElementsAre("k1"));
}

TEST_P(ImportConformanceTest, DestroyingAWrappingKeyRemovesBothHalves) {
  const WrappingAlgorithm algorithm = AnyAlgorithm();
  const std::optional<size_t> objects_before = ObjectCount();
  const std::string der = MakeWrappingKey();
  if (objects_before.has_value()) {
    EXPECT_EQ(ObjectCount(), *objects_before + 2);
  }
  KMS_ASSERT_OK(hsm().DestroyKey("wrap"));
  EXPECT_EQ(ObjectCount(), objects_before);
  EXPECT_THAT(hsm().ListWrappingKeyIds(), IsEmpty());
  KMS_EXPECT_CODE(hsm().GetPublicKeyDer("wrap"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().GetKeyAttributes("wrap"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(
      hsm().UnwrapAesKey("wrap", algorithm,
                         WrapLocally(algorithm, der, KnownMaterial()),
                         "imported"),
      absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().DestroyKey("wrap"), absl::StatusCode::kNotFound);
  // The id is free again.
  MakeWrappingKey();
}

TEST_P(ImportConformanceTest, KeyCheckValuesFindWeakMaterialAndDifferingMaterial) {
  const WrappingAlgorithm algorithm = AnyAlgorithm();
  const std::string der = MakeWrappingKey();
  const std::string zeros(32, '\0');
  KMS_ASSERT_OK(hsm().UnwrapAesKey(
      "wrap", algorithm,
      WrapLocally(algorithm, der, zeros), "weak"));
  KMS_ASSERT_OK(hsm().UnwrapAesKey(
      "wrap", algorithm,
      WrapLocally(algorithm, der, KnownMaterial()), "good"));
  KMS_ASSERT_OK(hsm().UnwrapAesKey(
      "wrap", algorithm,
      WrapLocally(algorithm, der, KnownMaterial()), "same"));
  KMS_ASSERT_OK(hsm().GenerateAesKey("generated"));

  auto weak_kcv = hsm().KeyCheckValue("weak");
  ASSERT_TRUE(weak_kcv.ok()) << weak_kcv.status();
  EXPECT_EQ(absl::BytesToHexString(*weak_kcv), "dc95c0");
  EXPECT_EQ(*weak_kcv, Kcv(zeros));
  auto good_kcv = hsm().KeyCheckValue("good");
  ASSERT_TRUE(good_kcv.ok());
  EXPECT_NE(*good_kcv, Kcv(zeros));
  EXPECT_NE(*good_kcv, Kcv(std::string(32, '\xff')));

  // Same material, same fingerprint; different material, different one.
  auto good = hsm().KeyFingerprint("good");
  auto same = hsm().KeyFingerprint("same");
  auto generated = hsm().KeyFingerprint("generated");
  ASSERT_TRUE(good.ok() && same.ok() && generated.ok());
  EXPECT_EQ(good->size(), kKeyFingerprintSize);
  EXPECT_EQ(*good, *same);
  EXPECT_NE(*good, *generated);
  // Deterministic.
  auto again = hsm().KeyFingerprint("generated");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *generated);
  KMS_EXPECT_CODE(hsm().KeyFingerprint("missing"), absl::StatusCode::kNotFound);
}

TEST_P(ImportConformanceTest, ConcurrentImportsOfOneIdCreateOneKey) {
  const WrappingAlgorithm algorithm = AnyAlgorithm();
  const std::string der = MakeWrappingKey();
  constexpr int kThreads = 6;
  std::vector<std::string> wrapped;
  for (int t = 0; t < kThreads; ++t) {
    wrapped.push_back(WrapLocally(algorithm, der, KnownMaterial(32, static_cast<char>(t))));
  }
  std::atomic<int> created{0};
  std::atomic<int> already_exists{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      absl::Status status = hsm().UnwrapAesKey("wrap", algorithm, wrapped[t], "contested");
      if (status.ok()) ++created;
      if (status.code() == absl::StatusCode::kAlreadyExists) ++already_exists;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(already_exists.load(), kThreads - 1);
  EXPECT_THAT(hsm().ListKeyIds(), ElementsAre("contested"));
}

INSTANTIATE_TEST_SUITE_P(
    AllHsms, ImportConformanceTest,
    testing::AllHsmFactories(), testing::HsmFactoryName);

// ---- What only one implementation promises.

TEST(FakeHsmImportTest, SupportsEveryAlgorithm) {
  kms::testing::FakeHsm fake;
  EXPECT_THAT(fake.SupportedWrappingAlgorithms(),
              ElementsAre(WrappingAlgorithm::kRsaesOaepSha1, WrappingAlgorithm::kRsaesOaepSha256,
                          WrappingAlgorithm::kRsaAesKeyWrapSha1,
                          WrappingAlgorithm::kRsaAesKeyWrapSha256));
}

class SoftHsmImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto token = kms::testing::SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = std::move(*token);
  }
  std::unique_ptr<Pkcs11Hsm> Open() {
    auto hsm = token_->OpenHsm();
    EXPECT_TRUE(hsm.ok()) << hsm.status();
    return hsm.ok() ? std::move(*hsm) : nullptr;
  }
  std::unique_ptr<kms::testing::SoftHsmToken> token_;
};

TEST_F(SoftHsmImportTest, SoftHsm261OffersOnlyRsaAesKeyWrapSha1) {
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  // SoftHSM 2.6.1 lists CKM_RSA_PKCS_OAEP but only does SHA-1 with it; the
  // probe at Open finds that out by trying. It also leaves CKA_VALUE_LEN 0
  // on unwrapped keys, so plain RSAES_OAEP could not refuse 16- or 24-byte
  // material and is not offered.
  EXPECT_THAT(hsm->SupportedWrappingAlgorithms(),
              ElementsAre(WrappingAlgorithm::kRsaAesKeyWrapSha1));
  // The probe leaves no object behind.
  auto count = hsm->CountObjectsForTesting();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 0u);
}

TEST_F(SoftHsmImportTest, UnsupportedAlgorithmIsFailedPreconditionNamingTheSupportedOnes) {
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  ASSERT_TRUE(hsm->GenerateRsaWrappingKey("wrap", 2048).ok());
  auto der = hsm->GetPublicKeyDer("wrap");
  ASSERT_TRUE(der.ok()) << der.status();
  for (WrappingAlgorithm algorithm :
       {WrappingAlgorithm::kRsaesOaepSha1, WrappingAlgorithm::kRsaesOaepSha256,
        WrappingAlgorithm::kRsaAesKeyWrapSha256}) {
    SCOPED_TRACE(WrappingAlgorithmName(algorithm));
    absl::Status status = hsm->UnwrapAesKey(
        "wrap", algorithm, WrapLocally(algorithm, *der, KnownMaterial()), "imported");
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_THAT(status.message(), HasSubstr(std::string(WrappingAlgorithmName(algorithm))));
    EXPECT_THAT(status.message(), HasSubstr("it supports: RSA_AES_KEY_WRAP_SHA_1"));
    EXPECT_FALSE(hsm->HasKey("imported"));
  }
}

TEST_F(SoftHsmImportTest, WrappingAndImportedKeysPersistAcrossReopen) {
  std::string der;
  std::string kcv;
  {
    std::unique_ptr<Pkcs11Hsm> hsm = Open();
    ASSERT_NE(hsm, nullptr);
    ASSERT_TRUE(hsm->GenerateRsaWrappingKey("wrap", 2048).ok());
    ASSERT_TRUE(hsm->GenerateRsaWrappingKey("gone", 2048).ok());
    auto exported = hsm->GetPublicKeyDer("wrap");
    ASSERT_TRUE(exported.ok()) << exported.status();
    der = *exported;
    ASSERT_TRUE(hsm->UnwrapAesKey("wrap", WrappingAlgorithm::kRsaAesKeyWrapSha1,
                                  WrapLocally(WrappingAlgorithm::kRsaAesKeyWrapSha1, der,
                                              KnownMaterial()),
                                  "imported")
                    .ok());
    ASSERT_TRUE(hsm->DestroyKey("gone").ok());
  }
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  // The cache is rebuilt with both kinds, each half paired by CKA_ID.
  EXPECT_THAT(hsm->ListWrappingKeyIds(), ElementsAre("wrap"));
  EXPECT_THAT(hsm->ListKeyIds(), ElementsAre("imported"));
  auto exported = hsm->GetPublicKeyDer("wrap");
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(*exported, der);
  auto imported_kcv = hsm->KeyCheckValue("imported");
  ASSERT_TRUE(imported_kcv.ok()) << imported_kcv.status();
  EXPECT_EQ(*imported_kcv, Kcv(KnownMaterial()));
  // 1 AES key + 2 halves of "wrap"; nothing of "gone", no session leftovers.
  auto count = hsm->CountObjectsForTesting();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 3u);
  ASSERT_TRUE(hsm->DestroyKey("wrap").ok());
  count = hsm->CountObjectsForTesting();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1u);
}

// FaultInjectingHsm forwards the import calls and can fail them.
TEST(FaultInjectingHsmImportTest, ImportCallsAreFallibleAndCounted) {
  kms::testing::FakeHsm fake;
  kms::testing::FaultInjectingHsm hsm(fake);
  using kms::testing::FaultInjectingHsm;
  hsm.FailOperation(FaultInjectingHsm::kUnwrapAesKey, absl::UnavailableError("HSM down"));
  ASSERT_TRUE(hsm.GenerateRsaWrappingKey("wrap", 2048).ok());
  auto der = hsm.GetPublicKeyDer("wrap");
  ASSERT_TRUE(der.ok());
  const std::string wrapped =
      WrapLocally(WrappingAlgorithm::kRsaesOaepSha1, *der, KnownMaterial());
  KMS_EXPECT_CODE(hsm.UnwrapAesKey("wrap", WrappingAlgorithm::kRsaesOaepSha1, wrapped, "k"),
                  absl::StatusCode::kUnavailable);
  EXPECT_FALSE(fake.HasKey("k"));
  hsm.ClearFaults();
  KMS_EXPECT_OK(hsm.UnwrapAesKey("wrap", WrappingAlgorithm::kRsaesOaepSha1, wrapped, "k"));
  hsm.FailOperation(FaultInjectingHsm::kKeyCheckValue, absl::InternalError("boom"));
  KMS_EXPECT_CODE(hsm.KeyCheckValue("k"), absl::StatusCode::kInternal);
  KMS_EXPECT_OK(hsm.KeyFingerprint("k"));
  EXPECT_EQ(hsm.CallCount(FaultInjectingHsm::kUnwrapAesKey), 2);
  EXPECT_EQ(hsm.SupportedWrappingAlgorithms().size(), 4u);
  EXPECT_THAT(hsm.ListWrappingKeyIds(), ElementsAre("wrap"));
  EXPECT_EQ(hsm.CallCount(FaultInjectingHsm::kSupportedWrappingAlgorithms), 1);
}

}  // namespace
}  // namespace kms::hsm
