// AuditService: what compliance staff read — the audit log (query, export,
// the checkpoint public key) and the key inventory report. Auditors only
// (AccessControl::AuthorizeAudit).
//
// Queries read the durable part of the log. QueryAuditLog returns the "rpc"
// records that match every filter given, at most `limit` a page; a
// truncated page ends at its last call, whose seq is next_sequence (the
// next page's after_sequence). With include_hsm_calls
// each returned call is preceded by its "hsm" records (same request_id),
// which come before the call in the log and may interleave with other
// calls': a call's HSM records are found, on whichever page the call falls,
// when they are at most 100000 records before it (kHsmLookback). HSM records
// of calls that do not match, and of periodic tasks, are never returned.
// ExportAuditLog returns the stored lines themselves, so its pages joined
// with '\n' are the file's bytes. The inventory's last-use dates come from
// one scan of all of it.
//
// Errors, every method: AccessDeniedException (kPermissionDenied) unless
// the caller is an auditor, checked first; kUnavailable / kDataLoss as
// audit::ReadAuditLog. QueryAuditLog and ExportAuditLog:
// ValidationException (kInvalidArgument) for a limit out of range.
// GetKeyInventoryReport: ValidationException for max_age_in_days out of
// range. GetAuditPublicKey: kInternal if the configured key does not parse.
//
// Borrows everything; thread-safe.
#ifndef KMS_DAEMON_SERVICE_AUDIT_SERVICE_H_
#define KMS_DAEMON_SERVICE_AUDIT_SERVICE_H_

#include <string>

#include "absl/status/statusor.h"
#include "daemon/audit/audit_log.h"
#include "daemon/service/access_control.h"
#include "daemon/service/authorized_service.h"
#include "daemon/service/key_service.h"
#include "kms/v1/kms.pb.h"

namespace kms::service {

class AuditService {
 public:
  struct Options {
    std::string public_key_der;   // SubjectPublicKeyInfo of the signing key
    std::string key_fingerprint;  // as checkpoints name it
  };
  AuditService(KeyService& keys, audit::AuditLog& log, const AccessControl& access,
               Options options);

#define KMS_AUDIT_RPC(Method)                                                      \
  absl::StatusOr<v1::Method##Response> Method(const Caller& caller,                \
                                              const v1::Method##Request& request,  \
                                              CallFacts* facts);
  KMS_AUDIT_RPC(QueryAuditLog)
  KMS_AUDIT_RPC(ExportAuditLog)
  KMS_AUDIT_RPC(GetAuditPublicKey)
  KMS_AUDIT_RPC(GetKeyInventoryReport)
#undef KMS_AUDIT_RPC

 private:
  KeyService& keys_;
  audit::AuditLog& log_;
  const AccessControl& access_;
  const Options options_;
};

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_AUDIT_SERVICE_H_
