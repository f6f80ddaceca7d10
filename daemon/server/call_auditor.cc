#include "daemon/server/call_auditor.h"

#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "daemon/common/logging.h"

namespace kms::server {

absl::Status AuditUnavailableError() {
  // The cause (a path, an OS error) is for kmsd's log, not for callers.
  return WithErrorType(
      absl::UnavailableError(
          "kmsd cannot write its audit log, so it answers no call until it can"),
      error_type::kDependencyTimeout);
}

absl::Status CallAuditor::Ready() const {
  absl::Status healthy = log_.Healthy();
  if (healthy.ok()) return healthy;
  return AuditUnavailableError();
}

void CallAuditor::Record(const service::Caller& caller, absl::string_view operation,
                         const service::CallFacts& facts, const ContextList& contexts,
                         const absl::Status& outcome, std::function<void(absl::Status)> done) {
  audit::Entry entry;
  entry.type = audit::RecordType::kRpc;
  entry.request_id = caller.request_id;
  entry.principal = caller.principal;
  entry.peer = caller.peer;
  entry.operation = std::string(operation);
  entry.key_id = facts.key_id;
  entry.key_version_id = facts.key_version_id;
  entry.message = facts.detail;
  for (const auto& [prefix, context] : contexts) {
    if (context == nullptr) continue;
    // Sorted, so a record does not depend on the map's iteration order.
    std::map<std::string, std::string> sorted(context->begin(), context->end());
    for (const auto& [key, value] : sorted) {
      entry.context.emplace_back(absl::StrCat(prefix, key), hasher_.Hash(value));
    }
  }
  if (outcome.ok()) {
    entry.outcome = audit::Outcome::kSuccess;
  } else {
    entry.error_type = ErrorTypeOf(outcome);
    entry.outcome = outcome.code() == absl::StatusCode::kPermissionDenied ||
                            outcome.code() == absl::StatusCode::kUnauthenticated
                        ? audit::Outcome::kDenied
                        : audit::Outcome::kFailed;
  }
  const uint64_t seq = log_.Append(std::move(entry));
  log_.WhenDurable(seq, [seq, request_id = caller.request_id,
                         done = std::move(done)](absl::Status durable) {
    if (!durable.ok()) {
      KMS_LOG(ERROR) << "audit record " << seq << " of request " << request_id
                     << " is not durable; the call gets an error instead of its result: "
                     << durable;
      done(AuditUnavailableError());
      return;
    }
    done(absl::OkStatus());
  });
}

}  // namespace kms::server
