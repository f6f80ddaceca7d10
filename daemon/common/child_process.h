// Waiting for a child process: what kmsctl bench (a kmsd it starts) and the
// end-to-end tests (the kmsd under test) both need.
#ifndef KMS_DAEMON_COMMON_CHILD_PROCESS_H_
#define KMS_DAEMON_COMMON_CHILD_PROCESS_H_

#include <sys/types.h>

#include <optional>

#include "absl/time/time.h"

namespace kms {

// The exit code a waitpid(2) status stands for: the code of a normal exit,
// 128 + the signal number for a process a signal ended (as shells report
// it), -1 for anything else.
int ExitCodeOf(int wait_status);

// Waits up to `timeout` for the child `pid` to exit and reaps it: its exit
// code (as ExitCodeOf), or nullopt if it is still running at the deadline or
// cannot be waited for (not this process's child, already reaped). Polls
// every 5 ms: another process's exit gives no clock to inject.
std::optional<int> WaitForChildExit(pid_t pid, absl::Duration timeout);

}  // namespace kms

#endif  // KMS_DAEMON_COMMON_CHILD_PROCESS_H_
