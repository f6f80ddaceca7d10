// One suite, run against every Hsm implementation (FakeHsm, and Pkcs11Hsm on
// a fresh SoftHSM token per test), so the fake cannot drift from the real
// thing. Everything here is promised by the comments in hsm/hsm.h.
#include <atomic>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"
#include "hsm/pkcs11_hsm.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"
#include "tests/testing/hsm_under_test.h"
#include "tests/testing/status_matchers.h"

namespace kms::hsm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

using testing::HsmFactory;
using testing::HsmUnderTest;

class HsmConformanceTest : public ::testing::TestWithParam<HsmFactory> {
 protected:
  void SetUp() override {
    auto under_test = GetParam().make();
    ASSERT_TRUE(under_test.ok()) << under_test.status();
    under_test_ = std::move(*under_test);
  }
  void TearDown() override { under_test_.reset(); }

  Hsm& hsm() { return under_test_->hsm(); }

  // A ciphertext of `plaintext` under a new key "k1".
  std::string MakeCiphertext(absl::string_view plaintext) {
    EXPECT_TRUE(hsm().GenerateAesKey("k1").ok());
    auto ciphertext = hsm().EncryptGcm("k1", kIv, plaintext, kAad);
    EXPECT_TRUE(ciphertext.ok()) << ciphertext.status();
    return ciphertext.ok() ? *ciphertext : "";
  }

  static constexpr absl::string_view kIv = "0123456789ab";  // 12 bytes
  static constexpr absl::string_view kAad = "header|context";

 private:
  std::unique_ptr<HsmUnderTest> under_test_;
};

std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i * 31 + 7);
  return bytes;
}

TEST_P(HsmConformanceTest, RoundTripReturnsThePlaintext) {
  KMS_ASSERT_OK(hsm().GenerateAesKey("k1"));
  for (size_t size : {0, 1, 15, 16, 17, 1000, 65536}) {
    for (absl::string_view aad : {absl::string_view(), kAad}) {
      SCOPED_TRACE(absl::StrCat("plaintext ", size, " bytes, aad ", aad.size(), " bytes"));
      const std::string plaintext = Pattern(size);
      auto ciphertext = hsm().EncryptGcm("k1", kIv, plaintext, aad);
      ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
      EXPECT_EQ(ciphertext->size(), size + kGcmTagSize);
      // Short ciphertexts can equal their plaintext by chance (1 in 256 for
      // one byte); 16 bytes cannot, in practice.
      if (size >= 16) {
        EXPECT_NE(ciphertext->substr(0, size), plaintext);
      }
      auto decrypted = hsm().DecryptGcm("k1", kIv, *ciphertext, aad);
      ASSERT_TRUE(decrypted.ok()) << decrypted.status();
      EXPECT_TRUE(decrypted->secret() == plaintext);
    }
  }
}

TEST_P(HsmConformanceTest, EncryptionIsDeterministicForOneKeyAndIv) {
  KMS_ASSERT_OK(hsm().GenerateAesKey("k1"));
  auto first = hsm().EncryptGcm("k1", kIv, "data key", kAad);
  auto second = hsm().EncryptGcm("k1", kIv, "data key", kAad);
  auto other_iv = hsm().EncryptGcm("k1", "ba9876543210", "data key", kAad);
  ASSERT_TRUE(first.ok() && second.ok() && other_iv.ok());
  EXPECT_EQ(*first, *second);
  EXPECT_NE(*first, *other_iv);
}

TEST_P(HsmConformanceTest, DecryptFailsWhenAadDiffers) {
  const std::string ciphertext = MakeCiphertext("data key");
  for (absl::string_view aad : {"header|contexT", "", "header|context ", "header|contex"}) {
    SCOPED_TRACE(aad);
    KMS_EXPECT_CODE(hsm().DecryptGcm("k1", kIv, ciphertext, aad),
                    absl::StatusCode::kInvalidArgument);
  }
}

TEST_P(HsmConformanceTest, DecryptFailsWhenIvDiffers) {
  const std::string ciphertext = MakeCiphertext("data key");
  KMS_EXPECT_CODE(hsm().DecryptGcm("k1", "0123456789aB", ciphertext, kAad),
                  absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_CODE(hsm().DecryptGcm("k1", std::string(12, '\0'), ciphertext, kAad),
                  absl::StatusCode::kInvalidArgument);
}

TEST_P(HsmConformanceTest, DecryptFailsUnderAnotherKey) {
  const std::string ciphertext = MakeCiphertext("data key");
  KMS_ASSERT_OK(hsm().GenerateAesKey("k2"));
  KMS_EXPECT_CODE(hsm().DecryptGcm("k2", kIv, ciphertext, kAad),
                  absl::StatusCode::kInvalidArgument);
}

TEST_P(HsmConformanceTest, DecryptFailsWhenAnyByteChanges) {
  const std::string ciphertext = MakeCiphertext("twenty bytes of data");
  for (size_t i = 0; i < ciphertext.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("byte ", i));
    std::string tampered = ciphertext;
    tampered[i] ^= 0x01;
    KMS_EXPECT_CODE(hsm().DecryptGcm("k1", kIv, tampered, kAad),
                    absl::StatusCode::kInvalidArgument);
  }
  // The key still works afterwards.
  KMS_EXPECT_OK(hsm().DecryptGcm("k1", kIv, ciphertext, kAad));
}

TEST_P(HsmConformanceTest, DecryptFailsWhenCiphertextIsTruncatedOrExtended) {
  const std::string ciphertext = MakeCiphertext("twenty bytes of data");
  const std::vector<std::string> bad = {
      ciphertext.substr(0, ciphertext.size() - 1),  // tag cut short
      ciphertext.substr(1),                         // first byte dropped
      ciphertext.substr(ciphertext.size() - kGcmTagSize),  // tag only
      ciphertext.substr(0, kGcmTagSize),            // as long as a tag
      ciphertext.substr(0, kGcmTagSize - 1),        // shorter than a tag
      "",                                           // nothing
      ciphertext + "x",                             // a byte appended
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("case ", i, ": ", bad[i].size(), " bytes"));
    KMS_EXPECT_CODE(hsm().DecryptGcm("k1", kIv, bad[i], kAad),
                    absl::StatusCode::kInvalidArgument);
  }
}

TEST_P(HsmConformanceTest, WrongIvSizeIsInvalidArgument) {
  const std::string ciphertext = MakeCiphertext("data key");
  for (size_t size : {0, 1, 8, 11, 13, 16}) {
    SCOPED_TRACE(absl::StrCat("iv ", size, " bytes"));
    const std::string iv(size, 'i');
    KMS_EXPECT_CODE(hsm().EncryptGcm("k1", iv, "data key", kAad),
                    absl::StatusCode::kInvalidArgument);
    KMS_EXPECT_CODE(hsm().DecryptGcm("k1", iv, ciphertext, kAad),
                    absl::StatusCode::kInvalidArgument);
    // Arguments are checked before the key is looked up.
    KMS_EXPECT_CODE(hsm().EncryptGcm("no-such-key", iv, "data key", kAad),
                    absl::StatusCode::kInvalidArgument);
  }
}

TEST_P(HsmConformanceTest, UnknownKeyIsNotFound) {
  const std::string ciphertext = MakeCiphertext("data key");
  EXPECT_FALSE(hsm().HasKey("missing"));
  KMS_EXPECT_CODE(hsm().EncryptGcm("missing", kIv, "data key", kAad),
                  absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().DecryptGcm("missing", kIv, ciphertext, kAad),
                  absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().DestroyKey("missing"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().GetKeyAttributes("missing"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().EncryptGcm("", kIv, "data key", kAad), absl::StatusCode::kNotFound);
}

TEST_P(HsmConformanceTest, DuplicateIdIsAlreadyExistsAndKeepsTheKey) {
  const std::string ciphertext = MakeCiphertext("data key");
  KMS_EXPECT_CODE(hsm().GenerateAesKey("k1"), absl::StatusCode::kAlreadyExists);
  auto decrypted = hsm().DecryptGcm("k1", kIv, ciphertext, kAad);
  ASSERT_TRUE(decrypted.ok()) << decrypted.status();
  EXPECT_EQ(decrypted->secret(), "data key");
  EXPECT_THAT(hsm().ListKeyIds(), ElementsAre("k1"));
}

TEST_P(HsmConformanceTest, IdMustBeOneTo64Bytes) {
  KMS_EXPECT_CODE(hsm().GenerateAesKey(""), absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_CODE(hsm().GenerateAesKey(std::string(65, 'x')),
                  absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(hsm().ListKeyIds(), IsEmpty());

  const std::string longest(64, 'x');
  const std::string binary("\0\xff\n'", 4);
  KMS_ASSERT_OK(hsm().GenerateAesKey(longest));
  KMS_ASSERT_OK(hsm().GenerateAesKey(binary));
  EXPECT_TRUE(hsm().HasKey(longest));
  EXPECT_TRUE(hsm().HasKey(binary));
  KMS_EXPECT_OK(hsm().EncryptGcm(binary, kIv, "data key", kAad));
}

TEST_P(HsmConformanceTest, DestroyedKeyIsGone) {
  const std::string ciphertext = MakeCiphertext("data key");
  ASSERT_TRUE(hsm().HasKey("k1"));
  KMS_ASSERT_OK(hsm().DestroyKey("k1"));
  EXPECT_FALSE(hsm().HasKey("k1"));
  EXPECT_THAT(hsm().ListKeyIds(), IsEmpty());
  KMS_EXPECT_CODE(hsm().EncryptGcm("k1", kIv, "data key", kAad), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().DecryptGcm("k1", kIv, ciphertext, kAad), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().GetKeyAttributes("k1"), absl::StatusCode::kNotFound);
  KMS_EXPECT_CODE(hsm().DestroyKey("k1"), absl::StatusCode::kNotFound);
}

TEST_P(HsmConformanceTest, RecreatedIdIsANewKey) {
  const std::string ciphertext = MakeCiphertext("data key");
  KMS_ASSERT_OK(hsm().DestroyKey("k1"));
  KMS_ASSERT_OK(hsm().GenerateAesKey("k1"));
  // Crypto-erase: the old material is gone for good.
  KMS_EXPECT_CODE(hsm().DecryptGcm("k1", kIv, ciphertext, kAad),
                  absl::StatusCode::kInvalidArgument);
}

TEST_P(HsmConformanceTest, ListKeyIdsIsSortedAndComplete) {
  EXPECT_THAT(hsm().ListKeyIds(), IsEmpty());
  for (const char* id : {"v-b", "v-c", "v-a"}) KMS_ASSERT_OK(hsm().GenerateAesKey(id));
  EXPECT_THAT(hsm().ListKeyIds(), ElementsAre("v-a", "v-b", "v-c"));
  KMS_ASSERT_OK(hsm().DestroyKey("v-b"));
  EXPECT_THAT(hsm().ListKeyIds(), ElementsAre("v-a", "v-c"));
}

TEST_P(HsmConformanceTest, GenerateRandomReturnsTheRequestedSize) {
  for (size_t size : {1, 12, 32, 1000, 65536}) {
    SCOPED_TRACE(size);
    auto random = hsm().GenerateRandom(size);
    ASSERT_TRUE(random.ok()) << random.status();
    EXPECT_EQ(random->size(), size);
  }
  auto first = hsm().GenerateRandom(32);
  auto second = hsm().GenerateRandom(32);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_FALSE(first->Equals(*second));
  EXPECT_NE(first->secret(), std::string(32, '\0'));
}

TEST_P(HsmConformanceTest, GenerateRandomRejectsZeroAndOver65536) {
  KMS_EXPECT_CODE(hsm().GenerateRandom(0), absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_CODE(hsm().GenerateRandom(65537), absl::StatusCode::kInvalidArgument);
  KMS_EXPECT_CODE(hsm().GenerateRandom(size_t{1} << 40), absl::StatusCode::kInvalidArgument);
}

TEST_P(HsmConformanceTest, KeyAttributesMatchTheTemplate) {
  KMS_ASSERT_OK(hsm().GenerateAesKey("k1"));
  auto attributes = hsm().GetKeyAttributes("k1");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_TRUE(attributes->token);
  EXPECT_TRUE(attributes->is_private);
  EXPECT_TRUE(attributes->sensitive);
  EXPECT_TRUE(attributes->always_sensitive);
  EXPECT_FALSE(attributes->extractable);
  EXPECT_TRUE(attributes->never_extractable);
  EXPECT_FALSE(attributes->derive);
  EXPECT_TRUE(attributes->encrypt);
  EXPECT_TRUE(attributes->decrypt);
  EXPECT_FALSE(attributes->wrap);
  EXPECT_FALSE(attributes->unwrap);
  EXPECT_EQ(attributes->value_len, kAesKeySize);
}

TEST_P(HsmConformanceTest, ConcurrentEncryptAndDecryptFrom8ThreadsAllSucceed) {
  KMS_ASSERT_OK(hsm().GenerateAesKey("k1"));
  KMS_ASSERT_OK(hsm().GenerateAesKey("k2"));
  constexpr int kThreads = 8;
  constexpr int kRounds = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = t % 2 == 0 ? "k1" : "k2";
      for (int i = 0; i < kRounds; ++i) {
        const std::string plaintext = absl::StrCat("thread ", t, " round ", i);
        std::string iv(kGcmIvSize, '\0');
        iv[0] = static_cast<char>(t);
        iv[1] = static_cast<char>(i);
        auto ciphertext = hsm().EncryptGcm(key, iv, plaintext, kAad);
        if (!ciphertext.ok()) {
          ++failures;
          continue;
        }
        auto decrypted = hsm().DecryptGcm(key, iv, *ciphertext, kAad);
        if (!decrypted.ok() || decrypted->secret() != plaintext) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_P(HsmConformanceTest, ConcurrentGenerateOfOneIdCreatesOneKey) {
  constexpr int kThreads = 8;
  std::atomic<int> created{0};
  std::atomic<int> already_exists{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      absl::Status status = hsm().GenerateAesKey("contested");
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
    AllHsms, HsmConformanceTest,
    testing::AllHsmFactories(), testing::HsmFactoryName);

// The fault injector itself, over a FakeHsm.
using kms::testing::FaultInjectingHsm;

TEST(FaultInjectingHsmTest, FailNthCallFailsExactlyThatCall) {
  kms::testing::FakeHsm fake;
  FaultInjectingHsm hsm(fake);
  hsm.FailNthCall(2, absl::UnavailableError("injected"));
  KMS_EXPECT_OK(hsm.GenerateAesKey("k1"));
  EXPECT_TRUE(hsm.HasKey("k1"));  // infallible calls are not counted
  KMS_EXPECT_CODE(hsm.GenerateAesKey("k2"), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(fake.HasKey("k2"));  // failed before reaching the target
  KMS_EXPECT_OK(hsm.GenerateAesKey("k2"));
  EXPECT_EQ(hsm.InjectedFaultCount(), 1);
  EXPECT_EQ(hsm.CallCount(FaultInjectingHsm::kGenerateAesKey), 3);
  EXPECT_EQ(hsm.CallCount(FaultInjectingHsm::kHasKey), 1);
  EXPECT_EQ(hsm.CallCount(), 4);
}

TEST(FaultInjectingHsmTest, FailOperationFailsEveryCallUntilCleared) {
  kms::testing::FakeHsm fake;
  FaultInjectingHsm hsm(fake);
  KMS_ASSERT_OK(hsm.GenerateAesKey("k1"));
  hsm.FailOperation("EncryptGcm", absl::InternalError("injected"));
  for (int i = 0; i < 3; ++i) {
    KMS_EXPECT_CODE(hsm.EncryptGcm("k1", "0123456789ab", "x", ""),
                    absl::StatusCode::kInternal);
  }
  KMS_EXPECT_OK(hsm.GenerateRandom(16));  // other operations are unaffected
  hsm.ClearFaults();
  KMS_EXPECT_OK(hsm.EncryptGcm("k1", "0123456789ab", "x", ""));
}

TEST(FaultInjectingHsmTest, AfterCallFaultLetsTheCallTakeEffect) {
  kms::testing::FakeHsm fake;
  FaultInjectingHsm hsm(fake);
  hsm.FailOperation(FaultInjectingHsm::kGenerateAesKey, absl::UnavailableError("lost reply"),
                    FaultInjectingHsm::When::kAfterCall);
  KMS_EXPECT_CODE(hsm.GenerateAesKey("k1"), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(fake.HasKey("k1"));  // the orphan a reconciler must clean up
}

TEST(FaultInjectingHsmTest, FailAllCallsTakesTheHsmAway) {
  kms::testing::FakeHsm fake;
  FaultInjectingHsm hsm(fake);
  KMS_ASSERT_OK(hsm.GenerateAesKey("k1"));
  hsm.FailAllCalls(absl::UnavailableError("HSM down"));
  KMS_EXPECT_CODE(hsm.EncryptGcm("k1", "0123456789ab", "x", ""),
                  absl::StatusCode::kUnavailable);
  KMS_EXPECT_CODE(hsm.DestroyKey("k1"), absl::StatusCode::kUnavailable);
  KMS_EXPECT_CODE(hsm.GenerateRandom(1), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(hsm.HasKey("k1"));
  hsm.ClearFaults();
  KMS_EXPECT_OK(hsm.DestroyKey("k1"));
}

}  // namespace
}  // namespace kms::hsm
