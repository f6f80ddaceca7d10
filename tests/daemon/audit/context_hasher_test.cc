#include "daemon/audit/context_hasher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

#include "tests/testing/daemon_process.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/status_matchers.h"

namespace kms::audit {
namespace {

using ::kms::testing::FakeHsm;
using ::kms::testing::StatusIs;
using ::kms::testing::TempDir;

class ContextHasherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir::Create("context-hasher-test").value();
    path_ = dir_->path() + "/audit-context.key";
  }
  std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::unique_ptr<TempDir> dir_;
  std::string path_;
  FakeHsm hsm_;
};

TEST_F(ContextHasherTest, HashIsTruncatedHmacSha256InHex) {
  // python3: hmac.new(b'\x0b'*32, b'tenant=acme', hashlib.sha256).hexdigest()[:32]
  auto hasher = ContextHasher::FromKey(SecretBytes::CopyFrom(std::string(32, '\x0b')));
  ASSERT_TRUE(hasher.ok()) << hasher.status();
  EXPECT_EQ(hasher->Hash("tenant=acme"), "1f20fdbd78d9456759eb7cec4bc9cf28");
  EXPECT_EQ(hasher->Hash("tenant=acme"), hasher->Hash("tenant=acme"));
  EXPECT_NE(hasher->Hash("tenant=acme"), hasher->Hash("tenant=acmf"));
  EXPECT_THAT(ContextHasher::FromKey(SecretBytes(31)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "32 bytes"));
}

TEST_F(ContextHasherTest, HashMatchesHmacSha256ForEmptyAndLongValues) {
  // Values shorter than, equal to and longer than SHA-256's 64-byte block.
  // python3: hmac.new(b'\x0b'*32, value, hashlib.sha256).hexdigest()[:32]
  auto hasher = ContextHasher::FromKey(SecretBytes::CopyFrom(std::string(32, '\x0b')));
  ASSERT_TRUE(hasher.ok()) << hasher.status();
  EXPECT_EQ(hasher->Hash(""), "5177e637aaac0b50e5dca8bb05b0b571");
  EXPECT_EQ(hasher->Hash(std::string(200, 'a')), "a669f88138c8d4d90e5c94e9e9fc1b5f");
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  EXPECT_EQ(hasher->Hash(all_bytes), "0ecd484e9985f9154b89ec00e508389d");
}

TEST_F(ContextHasherTest, ThreadsHashingAtOnceAgree) {
  auto hasher = ContextHasher::FromKey(SecretBytes::CopyFrom(std::string(32, '\x0b')));
  ASSERT_TRUE(hasher.ok()) << hasher.status();
  std::vector<std::string> seen(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < seen.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) seen[t] += hasher->Hash(absl::StrCat("tenant-", i % 7));
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::string& s : seen) EXPECT_EQ(s, seen[0]);
  EXPECT_NE(seen[0].find(hasher->Hash("tenant-3")), std::string::npos);
}

TEST_F(ContextHasherTest, CreatesASealedKeyAndReusesIt) {
  auto first = LoadOrCreateContextHasher(hsm_, path_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(hsm_.HasKey(kContextSealingKeyId));
  const std::string sealed = Read(path_);
  EXPECT_EQ(sealed.size(), 60u);
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto again = LoadOrCreateContextHasher(hsm_, path_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->Hash("acme"), first->Hash("acme"));
  EXPECT_EQ(Read(path_), sealed) << "a second start must not re-seal";
}

TEST_F(ContextHasherTest, DifferentKeysGiveDifferentHashes) {
  auto a = LoadOrCreateContextHasher(hsm_, path_);
  auto b = LoadOrCreateContextHasher(hsm_, dir_->path() + "/other.key");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->Hash("acme"), b->Hash("acme"));
}

TEST_F(ContextHasherTest, AMissingFileWithAnExistingHsmKeyMakesANewKey) {
  auto first = LoadOrCreateContextHasher(hsm_, path_);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  auto second = LoadOrCreateContextHasher(hsm_, path_);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->Hash("acme"), first->Hash("acme"));
  EXPECT_EQ(Read(path_).size(), 60u);
}

TEST_F(ContextHasherTest, ADamagedFileIsDataLoss) {
  ASSERT_TRUE(LoadOrCreateContextHasher(hsm_, path_).ok());
  std::string sealed = Read(path_);
  sealed[20] ^= 0x01;
  std::ofstream(path_, std::ios::binary | std::ios::trunc) << sealed;
  EXPECT_THAT(LoadOrCreateContextHasher(hsm_, path_).status(),
              StatusIs(absl::StatusCode::kDataLoss, "does not unseal"));
  std::ofstream(path_, std::ios::binary | std::ios::trunc) << "short";
  EXPECT_THAT(LoadOrCreateContextHasher(hsm_, path_).status(),
              StatusIs(absl::StatusCode::kDataLoss, "5 bytes"));
}

TEST_F(ContextHasherTest, AFileWithoutItsHsmKeyIsAPreconditionFailure) {
  ASSERT_TRUE(LoadOrCreateContextHasher(hsm_, path_).ok());
  FakeHsm fresh_token;
  EXPECT_THAT(LoadOrCreateContextHasher(fresh_token, path_).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace kms::audit
