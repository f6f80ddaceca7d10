#include "client/kms_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "daemon/common/errors.h"
#include "daemon/common/secret_bytes.h"

namespace kms::client {
namespace {

constexpr char kErrorTypeTrailer[] = "kms-error-type";

void CopyContext(const EncryptionContext& from,
                 google::protobuf::Map<std::string, std::string>* to) {
  to->insert(from.begin(), from.end());
}

// The contents of a PEM file the caller named. Errors: kNotFound.
absl::StatusOr<std::string> ReadPemFile(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  if (in) contents << in.rdbuf();
  if (!in || contents.str().empty()) {
    return absl::NotFoundError(what + " " + path + " cannot be read");
  }
  return contents.str();
}

}  // namespace

// The client side's one translation of grpc::Status. gRPC and Abseil share
// the canonical code numbering, so the code carries over as is.
absl::Status FromGrpcStatus(const grpc::Status& status, const grpc::ClientContext& context) {
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kErrorTypeTrailer);
  if (it == trailers.end() || it->second.empty()) return result;
  return WithErrorType(std::move(result), absl::string_view(it->second.data(), it->second.size()));
}

bool IsTransportError(const absl::Status& status) {
  return (status.code() == absl::StatusCode::kUnavailable ||
          status.code() == absl::StatusCode::kDeadlineExceeded) &&
         !status.GetPayload(kErrorTypePayloadUrl).has_value();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options) {
  const int tls_files = !options.ca_file.empty() + !options.cert_file.empty() +
                        !options.key_file.empty();
  if (tls_files == 0) return grpc::InsecureChannelCredentials();
  if (tls_files != 3) {
    return absl::InvalidArgumentError(
        "TLS needs all of the CA file, the client certificate and its key, got only some");
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = ReadPemFile("CA file", options.ca_file);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> cert = ReadPemFile("client certificate", options.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemFile("client key", options.key_file);
  if (!key.ok()) return key.status();
  ssl.pem_root_certs = *std::move(ca);
  ssl.pem_cert_chain = *std::move(cert);
  ssl.pem_private_key = *std::move(key);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(ssl);
  WipeString(&ssl.pem_private_key);
  return credentials;
}

absl::StatusOr<std::unique_ptr<KmsClient>> KmsClient::Connect(const std::string& endpoint,
                                                              const ClientOptions& options) {
  if (endpoint.empty()) return absl::InvalidArgumentError("kmsd endpoint is empty");
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("call timeout must be positive, got " +
                                      absl::FormatDuration(options.timeout));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentialsFor(options);
  if (!credentials.ok()) return credentials.status();
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(endpoint, *credentials);
  return std::unique_ptr<KmsClient>(
      new KmsClient(v1::KeyManagementService::NewStub(channel),
                    v1::AuditService::NewStub(channel), options));
}

KmsClient::KmsClient(std::unique_ptr<Stub> stub, std::unique_ptr<AuditStub> audit_stub,
                     const ClientOptions& options)
    : stub_(std::move(stub)), audit_stub_(std::move(audit_stub)), options_(options) {}

template <typename Request, typename Response>
absl::StatusOr<Response> KmsClient::Call(Method<Request, Response> method,
                                         const Request& request) const {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(options_.timeout));
  Response response;
  grpc::Status status = (stub_.get()->*method)(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status, context);
  return response;
}

template <typename Request, typename Response>
absl::StatusOr<Response> KmsClient::CallAudit(AuditMethod<Request, Response> method,
                                              const Request& request) const {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(options_.timeout));
  Response response;
  grpc::Status status = (audit_stub_.get()->*method)(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status, context);
  return response;
}

absl::StatusOr<v1::CreateKeyResponse> KmsClient::CreateKey(
    const v1::CreateKeyRequest& request) const {
  return Call(&Stub::CreateKey, request);
}
absl::StatusOr<v1::DescribeKeyResponse> KmsClient::DescribeKey(
    const v1::DescribeKeyRequest& request) const {
  return Call(&Stub::DescribeKey, request);
}
absl::StatusOr<v1::ListKeysResponse> KmsClient::ListKeys(const v1::ListKeysRequest& request) const {
  return Call(&Stub::ListKeys, request);
}
absl::StatusOr<v1::EnableKeyResponse> KmsClient::EnableKey(
    const v1::EnableKeyRequest& request) const {
  return Call(&Stub::EnableKey, request);
}
absl::StatusOr<v1::DisableKeyResponse> KmsClient::DisableKey(
    const v1::DisableKeyRequest& request) const {
  return Call(&Stub::DisableKey, request);
}
absl::StatusOr<v1::UpdateKeyDescriptionResponse> KmsClient::UpdateKeyDescription(
    const v1::UpdateKeyDescriptionRequest& request) const {
  return Call(&Stub::UpdateKeyDescription, request);
}
absl::StatusOr<v1::ScheduleKeyDeletionResponse> KmsClient::ScheduleKeyDeletion(
    const v1::ScheduleKeyDeletionRequest& request) const {
  return Call(&Stub::ScheduleKeyDeletion, request);
}
absl::StatusOr<v1::CancelKeyDeletionResponse> KmsClient::CancelKeyDeletion(
    const v1::CancelKeyDeletionRequest& request) const {
  return Call(&Stub::CancelKeyDeletion, request);
}
absl::StatusOr<v1::CreateAliasResponse> KmsClient::CreateAlias(
    const v1::CreateAliasRequest& request) const {
  return Call(&Stub::CreateAlias, request);
}
absl::StatusOr<v1::UpdateAliasResponse> KmsClient::UpdateAlias(
    const v1::UpdateAliasRequest& request) const {
  return Call(&Stub::UpdateAlias, request);
}
absl::StatusOr<v1::DeleteAliasResponse> KmsClient::DeleteAlias(
    const v1::DeleteAliasRequest& request) const {
  return Call(&Stub::DeleteAlias, request);
}
absl::StatusOr<v1::ListAliasesResponse> KmsClient::ListAliases(
    const v1::ListAliasesRequest& request) const {
  return Call(&Stub::ListAliases, request);
}
absl::StatusOr<v1::TagResourceResponse> KmsClient::TagResource(
    const v1::TagResourceRequest& request) const {
  return Call(&Stub::TagResource, request);
}
absl::StatusOr<v1::UntagResourceResponse> KmsClient::UntagResource(
    const v1::UntagResourceRequest& request) const {
  return Call(&Stub::UntagResource, request);
}
absl::StatusOr<v1::ListResourceTagsResponse> KmsClient::ListResourceTags(
    const v1::ListResourceTagsRequest& request) const {
  return Call(&Stub::ListResourceTags, request);
}
absl::StatusOr<v1::EnableKeyRotationResponse> KmsClient::EnableKeyRotation(
    const v1::EnableKeyRotationRequest& request) const {
  return Call(&Stub::EnableKeyRotation, request);
}
absl::StatusOr<v1::DisableKeyRotationResponse> KmsClient::DisableKeyRotation(
    const v1::DisableKeyRotationRequest& request) const {
  return Call(&Stub::DisableKeyRotation, request);
}
absl::StatusOr<v1::GetKeyRotationStatusResponse> KmsClient::GetKeyRotationStatus(
    const v1::GetKeyRotationStatusRequest& request) const {
  return Call(&Stub::GetKeyRotationStatus, request);
}
absl::StatusOr<v1::RotateKeyOnDemandResponse> KmsClient::RotateKeyOnDemand(
    const v1::RotateKeyOnDemandRequest& request) const {
  return Call(&Stub::RotateKeyOnDemand, request);
}
absl::StatusOr<v1::ListKeyRotationsResponse> KmsClient::ListKeyRotations(
    const v1::ListKeyRotationsRequest& request) const {
  return Call(&Stub::ListKeyRotations, request);
}
absl::StatusOr<v1::GetRotationComplianceReportResponse> KmsClient::GetRotationComplianceReport(
    const v1::GetRotationComplianceReportRequest& request) const {
  return Call(&Stub::GetRotationComplianceReport, request);
}
absl::StatusOr<v1::GetParametersForImportResponse> KmsClient::GetParametersForImport(
    const v1::GetParametersForImportRequest& request) const {
  return Call(&Stub::GetParametersForImport, request);
}
absl::StatusOr<v1::ImportKeyMaterialResponse> KmsClient::ImportKeyMaterial(
    const v1::ImportKeyMaterialRequest& request) const {
  return Call(&Stub::ImportKeyMaterial, request);
}
absl::StatusOr<v1::DeleteImportedKeyMaterialResponse> KmsClient::DeleteImportedKeyMaterial(
    const v1::DeleteImportedKeyMaterialRequest& request) const {
  return Call(&Stub::DeleteImportedKeyMaterial, request);
}
absl::StatusOr<v1::EncryptResponse> KmsClient::Encrypt(const v1::EncryptRequest& request) const {
  return Call(&Stub::Encrypt, request);
}
absl::StatusOr<v1::DecryptResponse> KmsClient::Decrypt(const v1::DecryptRequest& request) const {
  return Call(&Stub::Decrypt, request);
}
absl::StatusOr<v1::ReEncryptResponse> KmsClient::ReEncrypt(
    const v1::ReEncryptRequest& request) const {
  return Call(&Stub::ReEncrypt, request);
}
absl::StatusOr<v1::GenerateDataKeyResponse> KmsClient::GenerateDataKey(
    const v1::GenerateDataKeyRequest& request) const {
  return Call(&Stub::GenerateDataKey, request);
}
absl::StatusOr<v1::GenerateDataKeyWithoutPlaintextResponse>
KmsClient::GenerateDataKeyWithoutPlaintext(
    const v1::GenerateDataKeyWithoutPlaintextRequest& request) const {
  return Call(&Stub::GenerateDataKeyWithoutPlaintext, request);
}
absl::StatusOr<v1::GenerateRandomResponse> KmsClient::GenerateRandom(
    const v1::GenerateRandomRequest& request) const {
  return Call(&Stub::GenerateRandom, request);
}

absl::StatusOr<v1::PutKeyPolicyResponse> KmsClient::PutKeyPolicy(
    const v1::PutKeyPolicyRequest& request) const {
  return Call(&Stub::PutKeyPolicy, request);
}
absl::StatusOr<v1::GetKeyPolicyResponse> KmsClient::GetKeyPolicy(
    const v1::GetKeyPolicyRequest& request) const {
  return Call(&Stub::GetKeyPolicy, request);
}
absl::StatusOr<v1::CreateGrantResponse> KmsClient::CreateGrant(
    const v1::CreateGrantRequest& request) const {
  return Call(&Stub::CreateGrant, request);
}
absl::StatusOr<v1::ListGrantsResponse> KmsClient::ListGrants(
    const v1::ListGrantsRequest& request) const {
  return Call(&Stub::ListGrants, request);
}
absl::StatusOr<v1::RetireGrantResponse> KmsClient::RetireGrant(
    const v1::RetireGrantRequest& request) const {
  return Call(&Stub::RetireGrant, request);
}
absl::StatusOr<v1::RevokeGrantResponse> KmsClient::RevokeGrant(
    const v1::RevokeGrantRequest& request) const {
  return Call(&Stub::RevokeGrant, request);
}

absl::StatusOr<v1::QueryAuditLogResponse> KmsClient::QueryAuditLog(
    const v1::QueryAuditLogRequest& request) const {
  return CallAudit(&AuditStub::QueryAuditLog, request);
}
absl::StatusOr<v1::ExportAuditLogResponse> KmsClient::ExportAuditLog(
    const v1::ExportAuditLogRequest& request) const {
  return CallAudit(&AuditStub::ExportAuditLog, request);
}
absl::StatusOr<v1::GetAuditPublicKeyResponse> KmsClient::GetAuditPublicKey(
    const v1::GetAuditPublicKeyRequest& request) const {
  return CallAudit(&AuditStub::GetAuditPublicKey, request);
}
absl::StatusOr<v1::GetKeyInventoryReportResponse> KmsClient::GetKeyInventoryReport(
    const v1::GetKeyInventoryReportRequest& request) const {
  return CallAudit(&AuditStub::GetKeyInventoryReport, request);
}

absl::StatusOr<DataKey> KmsClient::GenerateDataKey(const std::string& key_id,
                                                   const EncryptionContext& context) {
  v1::GenerateDataKeyRequest request;
  request.set_key_id(key_id);
  request.set_key_spec(v1::AES_256);
  CopyContext(context, request.mutable_encryption_context());
  absl::StatusOr<v1::GenerateDataKeyResponse> response = GenerateDataKey(request);
  if (!response.ok()) return response.status();
  DataKey key;
  key.plaintext = SecretBytes::TakeFrom(response->mutable_plaintext());
  key.ciphertext_blob = std::move(*response->mutable_ciphertext_blob());
  key.key_arn = std::move(*response->mutable_key_id());
  return key;
}

absl::StatusOr<SecretBytes> KmsClient::DecryptDataKey(const std::string& ciphertext_blob,
                                                      const EncryptionContext& context) {
  v1::DecryptRequest request;
  request.set_ciphertext_blob(ciphertext_blob);
  CopyContext(context, request.mutable_encryption_context());
  absl::StatusOr<v1::DecryptResponse> response = Decrypt(request);
  if (!response.ok()) return response.status();
  return SecretBytes::TakeFrom(response->mutable_plaintext());
}

}  // namespace kms::client
