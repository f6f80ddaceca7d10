// KmsGrpcService: the gRPC adapter for KeyService (callback API).
//
// Each RPC only translates: request -> KeyService call -> response + status
// (ToGrpcStatus). Secret fields (request and response plaintexts) are wiped
// when gRPC is done with the call. Anything that would need a branch here
// belongs in the service. Borrows the KeyService; thread-safe.
#ifndef KMS_DAEMON_SERVER_KMS_GRPC_SERVICE_H_
#define KMS_DAEMON_SERVER_KMS_GRPC_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "daemon/service/key_service.h"
#include "kms/v1/kms.grpc.pb.h"

namespace kms::server {

class KmsGrpcService final : public v1::KeyManagementService::CallbackService {
 public:
  explicit KmsGrpcService(service::KeyService& service) : service_(service) {}

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
#undef KMS_DECLARE_RPC

 private:
  service::KeyService& service_;
};

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_KMS_GRPC_SERVICE_H_
