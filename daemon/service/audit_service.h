// AuditService: what compliance staff read — the audit log (query, export,
// the checkpoint public key) and the key inventory report. Auditors only
// (AccessControl::AuthorizeAudit).
//
// Queries scan the durable part of the log from after_sequence; the
// inventory's last-use dates come from one scan of all of it. Borrows
// everything; thread-safe.
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
