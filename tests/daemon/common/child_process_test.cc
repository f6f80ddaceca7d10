#include "daemon/common/child_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "gtest/gtest.h"

namespace kms {
namespace {

// A child that runs `body` and exits with what it returns.
template <typename Body>
pid_t Child(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

TEST(ChildProcessTest, ExitCodeOfANormalExit) {
  const pid_t pid = Child([] { return 3; });
  ASSERT_GT(pid, 0);
  EXPECT_EQ(WaitForChildExit(pid, absl::Seconds(30)), 3);
  // Reaped: there is nothing left to wait for.
  EXPECT_EQ(WaitForChildExit(pid, absl::Seconds(1)), std::nullopt);
}

TEST(ChildProcessTest, ASignalIs128PlusItsNumber) {
  const pid_t pid = Child([] {
    ::pause();
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_EQ(WaitForChildExit(pid, absl::Seconds(30)), 128 + SIGKILL);
}

TEST(ChildProcessTest, StillRunningAtTheDeadlineIsNullopt) {
  const pid_t pid = Child([] {
    ::pause();
    return 0;
  });
  ASSERT_GT(pid, 0);
  EXPECT_EQ(WaitForChildExit(pid, absl::Milliseconds(20)), std::nullopt);
  ::kill(pid, SIGKILL);
  EXPECT_EQ(WaitForChildExit(pid, absl::Seconds(30)), 128 + SIGKILL);
}

TEST(ChildProcessTest, ExitCodeOfAStatusThatIsNeither) {
  // A stopped child's status (WIFSTOPPED) is neither an exit nor a kill.
  EXPECT_EQ(ExitCodeOf(0x137f), -1);
}

}  // namespace
}  // namespace kms
