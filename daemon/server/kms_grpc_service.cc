#include "daemon/server/kms_grpc_service.h"

#include "daemon/common/secret_bytes.h"
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

// Finishes the call with the service's answer and wipes secrets on OnDone.
template <typename Request, typename Response>
class WipingReactor final : public grpc::ServerUnaryReactor {
 public:
  WipingReactor(const Request* request, Response* response)
      : request_(request), response_(response) {}
  void OnDone() override {
    // The request belongs to gRPC but is not const underneath; wiping it is
    // the last thing that happens to it.
    WipeSecrets(const_cast<Request*>(request_));
    WipeSecrets(response_);
    delete this;
  }

 private:
  const Request* request_;
  Response* response_;
};

template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* Handle(absl::string_view method, grpc::CallbackServerContext* context,
                                 const Request* request, Response* response, Fn&& call) {
  auto* reactor = new WipingReactor<Request, Response>(request, response);
  absl::StatusOr<Response> result = call(*request);
  if (result.ok()) {
    *response = *std::move(result);
    reactor->Finish(grpc::Status::OK);
  } else {
    reactor->Finish(ToGrpcStatus(result.status(), method, *context));
  }
  return reactor;
}

}  // namespace

#define KMS_DEFINE_RPC(Method)                                                        \
  grpc::ServerUnaryReactor* KmsGrpcService::Method(grpc::CallbackServerContext* context, \
                                                   const v1::Method##Request* request,   \
                                                   v1::Method##Response* response) {     \
    return Handle(#Method, context, request, response,                                \
                  [this](const v1::Method##Request& r) { return service_.Method(r); });  \
  }

KMS_DEFINE_RPC(CreateKey)
KMS_DEFINE_RPC(DescribeKey)
KMS_DEFINE_RPC(ListKeys)
KMS_DEFINE_RPC(EnableKey)
KMS_DEFINE_RPC(DisableKey)
KMS_DEFINE_RPC(UpdateKeyDescription)
KMS_DEFINE_RPC(ScheduleKeyDeletion)
KMS_DEFINE_RPC(CancelKeyDeletion)
KMS_DEFINE_RPC(CreateAlias)
KMS_DEFINE_RPC(UpdateAlias)
KMS_DEFINE_RPC(DeleteAlias)
KMS_DEFINE_RPC(ListAliases)
KMS_DEFINE_RPC(TagResource)
KMS_DEFINE_RPC(UntagResource)
KMS_DEFINE_RPC(ListResourceTags)
KMS_DEFINE_RPC(EnableKeyRotation)
KMS_DEFINE_RPC(DisableKeyRotation)
KMS_DEFINE_RPC(GetKeyRotationStatus)
KMS_DEFINE_RPC(RotateKeyOnDemand)
KMS_DEFINE_RPC(ListKeyRotations)
KMS_DEFINE_RPC(GetRotationComplianceReport)
KMS_DEFINE_RPC(GetParametersForImport)
KMS_DEFINE_RPC(ImportKeyMaterial)
KMS_DEFINE_RPC(DeleteImportedKeyMaterial)
KMS_DEFINE_RPC(Encrypt)
KMS_DEFINE_RPC(Decrypt)
KMS_DEFINE_RPC(ReEncrypt)
KMS_DEFINE_RPC(GenerateDataKey)
KMS_DEFINE_RPC(GenerateDataKeyWithoutPlaintext)
KMS_DEFINE_RPC(GenerateRandom)
#undef KMS_DEFINE_RPC

}  // namespace kms::server
