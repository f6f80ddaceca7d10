#include "daemon/common/uuid.h"

#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kms {
namespace {

MATCHER(IsV4Uuid, "is a canonical version 4 UUID") {
  const std::string& s = arg;
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  }
  return s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
}

TEST(UuidTest, NewUuidIsCanonicalVersion4AndRoundTrips) {
  // More than one pool's worth, so a refill is crossed.
  for (int i = 0; i < 200; ++i) {
    const std::string id = NewUuid();
    ASSERT_THAT(id, IsV4Uuid());
    std::optional<std::string> bytes = UuidToBytes(id);
    ASSERT_TRUE(bytes.has_value());
    EXPECT_EQ(bytes->size(), kUuidBytes);
    EXPECT_EQ(UuidFromBytes(*bytes), id);
  }
}

TEST(UuidTest, IdsFromManyThreadsAreAllDistinct) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<std::string>> drawn(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&drawn, t] {
      for (int i = 0; i < kPerThread; ++i) drawn[t].push_back(NewUuid());
    });
  }
  for (std::thread& thread : threads) thread.join();
  absl::flat_hash_set<std::string> seen;
  for (const auto& ids : drawn) seen.insert(ids.begin(), ids.end());
  EXPECT_EQ(seen.size(), size_t{kThreads * kPerThread});
}

TEST(UuidTest, AForkedChildDoesNotRepeatItsParentsIds) {
  // Ids come from a per-thread pool; a child that kept its copy of the
  // parent's pool would hand out the same ids the parent is about to.
  (void)NewUuid();  // the pool now holds ids not yet handed out
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string id = NewUuid();
    const bool ok = write(fds[1], id.data(), id.size()) == static_cast<ssize_t>(id.size());
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  std::string from_child(36, '\0');
  ASSERT_EQ(read(fds[0], from_child.data(), from_child.size()), 36);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  EXPECT_THAT(from_child, IsV4Uuid());
  EXPECT_NE(from_child, NewUuid());
}

TEST(UuidTest, MalformedTextHasNoBytes) {
  EXPECT_FALSE(UuidToBytes("").has_value());
  EXPECT_FALSE(UuidToBytes("1234abcd-12ab-34cd-56ef-1234567890a").has_value());   // 35
  EXPECT_FALSE(UuidToBytes("1234ABCD-12ab-34cd-56ef-1234567890ab").has_value());  // upper case
  EXPECT_FALSE(UuidToBytes("1234abcd112ab-34cd-56ef-1234567890ab").has_value());  // no dash
  EXPECT_FALSE(UuidToBytes("1234abcd-12ab-34cd-56ef-1234567890ag").has_value());  // not hex
  EXPECT_FALSE(UuidFromBytes(std::string(15, '\0')).has_value());
  EXPECT_EQ(UuidFromBytes(std::string(16, '\xff')), "ffffffff-ffff-ffff-ffff-ffffffffffff");
}

}  // namespace
}  // namespace kms
