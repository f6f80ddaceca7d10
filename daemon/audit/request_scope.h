// RequestScope: which request the current thread is working for, so that
// records made deep below (one per HSM operation, hsm::RecordingHsm) carry
// the request id of the call that caused them.
//
// The gRPC adapter opens a scope around each call; the periodic tasks open
// one named after the task ("kmsd:deletion-sweep", "kmsd:rotation-scheduler",
// "kmsd:import-expiry", "kmsd:start-up"). Attribution only: no
// security decision reads it. Scopes nest; each thread has its own.
#ifndef KMS_DAEMON_AUDIT_REQUEST_SCOPE_H_
#define KMS_DAEMON_AUDIT_REQUEST_SCOPE_H_

#include <string>
#include <utility>

namespace kms::audit {

class RequestScope {
 public:
  explicit RequestScope(std::string request_id) : previous_(std::move(current_)) {
    current_ = std::move(request_id);
  }
  ~RequestScope() { current_ = std::move(previous_); }
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

  // The innermost open scope's request id on this thread; empty if none.
  static const std::string& Current() { return current_; }

 private:
  static inline thread_local std::string current_;
  std::string previous_;
};

}  // namespace kms::audit

#endif  // KMS_DAEMON_AUDIT_REQUEST_SCOPE_H_
