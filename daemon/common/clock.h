// Clock: the daemon's only source of wall-clock time.
//
// Deletion deadlines (and later rotation schedules) are computed from an
// injected Clock, so tests advance a FakeClock (tests/testing/fake_clock.h)
// instead of sleeping. Implementations are thread-safe.
#ifndef KMS_DAEMON_COMMON_CLOCK_H_
#define KMS_DAEMON_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace kms {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// Reads the system clock (absl::Now()).
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace kms

#endif  // KMS_DAEMON_COMMON_CLOCK_H_
