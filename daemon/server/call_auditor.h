// CallAuditor: the audit record of every call, made durable before the call
// is answered (the audit log fails closed).
//
// Every RPC — allowed, denied or failed — gets one "rpc" record: request id,
// principal, peer, operation, key and key version, the encryption context
// with each value replaced by its keyed hash (audit::ContextHasher), the
// outcome and the AWS error type. The HSM operations made for the call were
// recorded before it (hsm::RecordingHsm, linked by request id), so once the
// call's record is durable, so are they.
//
// Borrows the log and the hasher; thread-safe.
#ifndef KMS_DAEMON_SERVER_CALL_AUDITOR_H_
#define KMS_DAEMON_SERVER_CALL_AUDITOR_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/map.h>

#include "absl/status/status.h"
#include "daemon/audit/audit_log.h"
#include "daemon/audit/context_hasher.h"
#include "daemon/service/access_control.h"
#include "daemon/service/authorized_service.h"

namespace kms::server {

// The encryption contexts of a request, each with the prefix its keys get
// in the record ("" or "source:" for ReEncrypt's source context).
using ContextList =
    std::vector<std::pair<std::string, const google::protobuf::Map<std::string, std::string>*>>;

class CallAuditor {
 public:
  CallAuditor(audit::AuditLog& log, const audit::ContextHasher& hasher)
      : log_(log), hasher_(hasher) {}

  // OK while the log can be written; otherwise the error every call gets
  // until it can again (UNAVAILABLE, DependencyTimeoutException).
  absl::Status Ready() const;

  // Appends the record of a finished call and calls `done` once it is
  // durable (OK) or cannot be (as Ready()): at once, or later on the audit
  // log's writer thread, so no thread waits for the disk. `done` must be
  // quick.
  void Record(const service::Caller& caller, absl::string_view operation,
              const service::CallFacts& facts, const ContextList& contexts,
              const absl::Status& outcome, std::function<void(absl::Status)> done);

 private:
  audit::AuditLog& log_;
  const audit::ContextHasher& hasher_;
};

// The error calls get while the audit log cannot be written.
absl::Status AuditUnavailableError();

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_CALL_AUDITOR_H_
