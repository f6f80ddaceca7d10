#include "daemon/server/kms_grpc_service.h"

#include "absl/strings/str_cat.h"
#include "daemon/audit/request_scope.h"
#include "daemon/common/errors.h"
#include "daemon/common/secret_bytes.h"
#include "daemon/common/uuid.h"
#include "daemon/server/status_mapping.h"

namespace kms::server {
namespace {

// Secret-bearing fields, wiped once gRPC has serialised the response and
// released the request. (gRPC's own transport buffers are beyond our reach.)
template <typename Message>
void WipeSecrets(Message*) {}
void WipeSecrets(v1::EncryptRequest* m) { WipeString(m->mutable_plaintext()); }
void WipeSecrets(v1::DecryptResponse* m) { WipeString(m->mutable_plaintext()); }
void WipeSecrets(v1::GenerateDataKeyResponse* m) { WipeString(m->mutable_plaintext()); }
void WipeSecrets(v1::GenerateRandomResponse* m) { WipeString(m->mutable_plaintext()); }

// The encryption contexts a request carries, for its audit record.
template <typename Request>
ContextList ContextsOf(const Request&) {
  return {};
}
ContextList ContextsOf(const v1::EncryptRequest& r) { return {{"", &r.encryption_context()}}; }
ContextList ContextsOf(const v1::DecryptRequest& r) { return {{"", &r.encryption_context()}}; }
ContextList ContextsOf(const v1::GenerateDataKeyRequest& r) {
  return {{"", &r.encryption_context()}};
}
ContextList ContextsOf(const v1::GenerateDataKeyWithoutPlaintextRequest& r) {
  return {{"", &r.encryption_context()}};
}
ContextList ContextsOf(const v1::ReEncryptRequest& r) {
  return {{"source:", &r.source_encryption_context()},
          {"", &r.destination_encryption_context()}};
}

// One call's reactor: holds the service's answer until its audit record is
// durable, then finishes; wipes secrets on OnDone.
template <typename Request, typename Response>
class AuditedReactor final : public grpc::ServerUnaryReactor {
 public:
  AuditedReactor(grpc::CallbackServerContext* context, absl::string_view method,
                 const Request* request, Response* response)
      : context_(context), method_(method), request_(request), response_(response) {}

  // Answers with `result` if `recorded` is OK, else with `recorded`'s error
  // and no result (fail closed). Once per call, from any thread.
  void FinishAudited(absl::StatusOr<Response> result, const absl::Status& recorded) {
    if (!recorded.ok()) {
      if (result.ok()) WipeSecrets(&*result);
      Finish(ToGrpcStatus(recorded, method_, *context_));
    } else if (result.ok()) {
      *response_ = *std::move(result);
      Finish(grpc::Status::OK);
    } else {
      Finish(ToGrpcStatus(result.status(), method_, *context_));
    }
  }

  void OnDone() override {
    // The request belongs to gRPC but is not const underneath; wiping it is
    // the last thing that happens to it.
    WipeSecrets(const_cast<Request*>(request_));
    WipeSecrets(response_);
    if (admitted != nullptr) admitted->Release();
    delete this;
  }

  // OnDone (above) and OnCancel (the default, empty) are short and never
  // block, so gRPC may run them on the thread that completes the call
  // instead of handing each call's end to its executor thread: one thread
  // wake-up fewer per call. gRPC marks this hook internal; its own trivial
  // reactors use it the same way.
  bool InternalInlineable() override { return true; }

  absl::StatusOr<Response> result;  // the service's answer, until recorded
  InFlightLimit* admitted = nullptr;  // set once the call holds a place

 private:
  grpc::CallbackServerContext* const context_;
  const absl::string_view method_;  // a string literal
  const Request* const request_;
  Response* const response_;
};

// One call: identify, authorise and run (`call`), then record it and answer
// once the record is durable. The handler thread never waits for the disk:
// the answer goes out from the audit log's writer thread, after the group
// commit that made the record durable.
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* Handle(const CallGate& gate, absl::string_view method,
                                 grpc::CallbackServerContext* context, const Request* request,
                                 Response* response, Fn&& call) {
  auto* reactor = new AuditedReactor<Request, Response>(context, method, request, response);
  if (!gate.in_flight.TryAcquire()) {
    reactor->Finish(ToGrpcStatus(
        WithErrorType(absl::ResourceExhaustedError(absl::StrCat(
                          "kmsd is serving its limit of ", gate.in_flight.max(),
                          " calls at once (limits.max_in_flight_calls); retry with backoff")),
                      error_type::kThrottling),
        method, *context));
    return reactor;
  }
  reactor->admitted = &gate.in_flight;
  service::Caller caller;
  caller.request_id = NewUuid();
  caller.peer = context->peer();
  context->AddTrailingMetadata("kms-request-id", caller.request_id);
  // Refuse at once while records cannot be written: nothing is done that
  // could not be recorded.
  if (absl::Status ready = gate.auditor.Ready(); !ready.ok()) {
    reactor->Finish(ToGrpcStatus(ready, method, *context));
    return reactor;
  }
  service::CallFacts facts;
  absl::StatusOr<std::string> principal = gate.identity.PrincipalOf(*context);
  if (!principal.ok()) {
    reactor->result = WithErrorType(absl::UnauthenticatedError(principal.status().message()),
                                    error_type::kAccessDenied);
  } else {
    caller.principal = *std::move(principal);
    audit::RequestScope scope(caller.request_id);
    reactor->result = call(caller, *request, &facts);
  }
  const absl::Status outcome = reactor->result.status();
  gate.auditor.Record(caller, method, facts, ContextsOf(*request), outcome,
                      [reactor](absl::Status recorded) {
                        reactor->FinishAudited(std::move(reactor->result), recorded);
                      });
  return reactor;
}

}  // namespace

#define KMS_DEFINE_RPC(Service, Method)                                                    \
  grpc::ServerUnaryReactor* Service::Method(grpc::CallbackServerContext* context,          \
                                            const v1::Method##Request* request,            \
                                            v1::Method##Response* response) {              \
    return Handle(gate_, #Method, context, request, response,                              \
                  [this](const service::Caller& caller, const v1::Method##Request& r,      \
                         service::CallFacts* facts) {                                      \
                    return service_.Method(caller, r, facts);                              \
                  });                                                                      \
  }

KMS_DEFINE_RPC(KmsGrpcService, CreateKey)
KMS_DEFINE_RPC(KmsGrpcService, DescribeKey)
KMS_DEFINE_RPC(KmsGrpcService, ListKeys)
KMS_DEFINE_RPC(KmsGrpcService, EnableKey)
KMS_DEFINE_RPC(KmsGrpcService, DisableKey)
KMS_DEFINE_RPC(KmsGrpcService, UpdateKeyDescription)
KMS_DEFINE_RPC(KmsGrpcService, ScheduleKeyDeletion)
KMS_DEFINE_RPC(KmsGrpcService, CancelKeyDeletion)
KMS_DEFINE_RPC(KmsGrpcService, CreateAlias)
KMS_DEFINE_RPC(KmsGrpcService, UpdateAlias)
KMS_DEFINE_RPC(KmsGrpcService, DeleteAlias)
KMS_DEFINE_RPC(KmsGrpcService, ListAliases)
KMS_DEFINE_RPC(KmsGrpcService, TagResource)
KMS_DEFINE_RPC(KmsGrpcService, UntagResource)
KMS_DEFINE_RPC(KmsGrpcService, ListResourceTags)
KMS_DEFINE_RPC(KmsGrpcService, EnableKeyRotation)
KMS_DEFINE_RPC(KmsGrpcService, DisableKeyRotation)
KMS_DEFINE_RPC(KmsGrpcService, GetKeyRotationStatus)
KMS_DEFINE_RPC(KmsGrpcService, RotateKeyOnDemand)
KMS_DEFINE_RPC(KmsGrpcService, ListKeyRotations)
KMS_DEFINE_RPC(KmsGrpcService, GetRotationComplianceReport)
KMS_DEFINE_RPC(KmsGrpcService, GetParametersForImport)
KMS_DEFINE_RPC(KmsGrpcService, ImportKeyMaterial)
KMS_DEFINE_RPC(KmsGrpcService, DeleteImportedKeyMaterial)
KMS_DEFINE_RPC(KmsGrpcService, Encrypt)
KMS_DEFINE_RPC(KmsGrpcService, Decrypt)
KMS_DEFINE_RPC(KmsGrpcService, ReEncrypt)
KMS_DEFINE_RPC(KmsGrpcService, GenerateDataKey)
KMS_DEFINE_RPC(KmsGrpcService, GenerateDataKeyWithoutPlaintext)
KMS_DEFINE_RPC(KmsGrpcService, GenerateRandom)
KMS_DEFINE_RPC(KmsGrpcService, PutKeyPolicy)
KMS_DEFINE_RPC(KmsGrpcService, GetKeyPolicy)
KMS_DEFINE_RPC(KmsGrpcService, CreateGrant)
KMS_DEFINE_RPC(KmsGrpcService, ListGrants)
KMS_DEFINE_RPC(KmsGrpcService, RetireGrant)
KMS_DEFINE_RPC(KmsGrpcService, RevokeGrant)

KMS_DEFINE_RPC(AuditGrpcService, QueryAuditLog)
KMS_DEFINE_RPC(AuditGrpcService, ExportAuditLog)
KMS_DEFINE_RPC(AuditGrpcService, GetAuditPublicKey)
KMS_DEFINE_RPC(AuditGrpcService, GetKeyInventoryReport)
#undef KMS_DEFINE_RPC

}  // namespace kms::server
