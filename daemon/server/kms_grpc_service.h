// KmsGrpcService and AuditGrpcService: the gRPC adapters (callback API).
//
// Each call: a request id (returned in the trailing metadata entry
// `kms-request-id`), the caller's principal from the transport
// (PeerIdentity), then AuthorizedService / AuditService, then the call's
// audit record, durable before the answer (CallAuditor). While the audit
// log cannot be written every call is refused with UNAVAILABLE; beyond
// limits.max_in_flight_calls a call is shed with RESOURCE_EXHAUSTED, before
// any work and without an audit record (it touched nothing). Secret
// fields (request and response plaintexts) are wiped when gRPC is done with
// the call. Anything that would need a branch here belongs in the service.
// Borrows everything; thread-safe.
#ifndef KMS_DAEMON_SERVER_KMS_GRPC_SERVICE_H_
#define KMS_DAEMON_SERVER_KMS_GRPC_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>

#include "daemon/server/call_auditor.h"
#include "daemon/server/peer_identity.h"
#include "daemon/service/audit_service.h"
#include "daemon/service/authorized_service.h"
#include "kms/v1/kms.grpc.pb.h"

namespace kms::server {

// The calls admitted and not yet done, against limits.max_in_flight_calls.
// A call beyond it is shed before any work (RESOURCE_EXHAUSTED,
// ThrottlingException), so overload never builds an unbounded queue: memory
// and latency stay bounded, and clients back off. Thread-safe.
class InFlightLimit {
 public:
  explicit InFlightLimit(int max) : max_(max) {}
  // True if the call may proceed (then Release() it when done).
  bool TryAcquire() {
    if (count_.fetch_add(1, std::memory_order_relaxed) >= max_) {
      count_.fetch_sub(1, std::memory_order_relaxed);
      shed_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void Release() { count_.fetch_sub(1, std::memory_order_relaxed); }
  // Calls shed since the last call of this (for the log).
  uint64_t TakeShedCount() { return shed_.exchange(0, std::memory_order_relaxed); }
  int max() const { return max_; }

 private:
  const int max_;
  std::atomic<int> count_{0};
  std::atomic<uint64_t> shed_{0};
};

// What every call passes through before and after the service.
struct CallGate {
  const PeerIdentity& identity;
  CallAuditor& auditor;
  InFlightLimit& in_flight;
};

class KmsGrpcService final : public v1::KeyManagementService::CallbackService {
 public:
  KmsGrpcService(service::AuthorizedService& service, CallGate gate)
      : service_(service), gate_(gate) {}

#define KMS_DECLARE_RPC(Method)                                                    \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* context,           \
                                   const v1::Method##Request* request,             \
                                   v1::Method##Response* response) override;
  KMS_DECLARE_RPC(CreateKey)
  KMS_DECLARE_RPC(DescribeKey)
  KMS_DECLARE_RPC(ListKeys)
  KMS_DECLARE_RPC(EnableKey)
  KMS_DECLARE_RPC(DisableKey)
  KMS_DECLARE_RPC(UpdateKeyDescription)
  KMS_DECLARE_RPC(ScheduleKeyDeletion)
  KMS_DECLARE_RPC(CancelKeyDeletion)
  KMS_DECLARE_RPC(CreateAlias)
  KMS_DECLARE_RPC(UpdateAlias)
  KMS_DECLARE_RPC(DeleteAlias)
  KMS_DECLARE_RPC(ListAliases)
  KMS_DECLARE_RPC(TagResource)
  KMS_DECLARE_RPC(UntagResource)
  KMS_DECLARE_RPC(ListResourceTags)
  KMS_DECLARE_RPC(EnableKeyRotation)
  KMS_DECLARE_RPC(DisableKeyRotation)
  KMS_DECLARE_RPC(GetKeyRotationStatus)
  KMS_DECLARE_RPC(RotateKeyOnDemand)
  KMS_DECLARE_RPC(ListKeyRotations)
  KMS_DECLARE_RPC(GetRotationComplianceReport)
  KMS_DECLARE_RPC(GetParametersForImport)
  KMS_DECLARE_RPC(ImportKeyMaterial)
  KMS_DECLARE_RPC(DeleteImportedKeyMaterial)
  KMS_DECLARE_RPC(Encrypt)
  KMS_DECLARE_RPC(Decrypt)
  KMS_DECLARE_RPC(ReEncrypt)
  KMS_DECLARE_RPC(GenerateDataKey)
  KMS_DECLARE_RPC(GenerateDataKeyWithoutPlaintext)
  KMS_DECLARE_RPC(GenerateRandom)
  KMS_DECLARE_RPC(PutKeyPolicy)
  KMS_DECLARE_RPC(GetKeyPolicy)
  KMS_DECLARE_RPC(CreateGrant)
  KMS_DECLARE_RPC(ListGrants)
  KMS_DECLARE_RPC(RetireGrant)
  KMS_DECLARE_RPC(RevokeGrant)

 private:
  service::AuthorizedService& service_;
  CallGate gate_;
};

class AuditGrpcService final : public v1::AuditService::CallbackService {
 public:
  AuditGrpcService(service::AuditService& service, CallGate gate)
      : service_(service), gate_(gate) {}

  KMS_DECLARE_RPC(QueryAuditLog)
  KMS_DECLARE_RPC(ExportAuditLog)
  KMS_DECLARE_RPC(GetAuditPublicKey)
  KMS_DECLARE_RPC(GetKeyInventoryReport)
#undef KMS_DECLARE_RPC

 private:
  service::AuditService& service_;
  CallGate gate_;
};

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_KMS_GRPC_SERVICE_H_
