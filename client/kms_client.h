// KmsClient: the C++ client of kmsd's KeyManagementService (kms/v1/kms.proto).
//
// One method per RPC, taking the request message and returning the response
// or an absl::Status. A failed call keeps the gRPC code and message, and
// carries the AWS exception name kmsd sent in the `kms-error-type` trailer, so
// callers read it with kms::ErrorTypeOf(status). A status that kmsd never sent
// (kmsd unreachable, deadline passed) has no exception name attached;
// ErrorTypeOf then gives the default for the code and IsTransportError() is
// true.
//
// KmsClient also is a DataKeySource, so the envelope helpers
// (client/envelope.h) can use it directly; data keys come back in SecretBytes
// and the copies in the response messages are wiped.
//
// The same client also speaks kmsd's AuditService (QueryAuditLog and the other
// compliance RPCs, for principals in the `access.auditors` role), through a
// second stub on the same channel, with the same deadlines and error
// conventions.
//
// Thread-safe: calls may be made concurrently from any number of threads. The
// channel connects lazily, on the first call, and reconnects as needed.
#ifndef KMS_CLIENT_KMS_CLIENT_H_
#define KMS_CLIENT_KMS_CLIENT_H_

#include <memory>
#include <string>

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/data_key_source.h"
#include "kms/v1/kms.grpc.pb.h"
#include "kms/v1/kms.pb.h"

namespace kms::client {

struct ClientOptions {
  // Deadline of every call, counted from when the call starts. Waiting for a
  // connection counts against it.
  absl::Duration timeout = absl::Seconds(10);

  // mTLS: PEM files of the CA that issued kmsd's certificate, and of this
  // client's certificate and private key. All three or none; none means
  // plaintext (kmsd's development mode). The client certificate names the
  // caller (its URI SAN, else its CN).
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// True if `status` was made by the client side of the channel rather than
// sent by kmsd: kmsd could not be reached (kUnavailable) or did not answer in
// time (kDeadlineExceeded). kmsd's own errors always name their exception.
bool IsTransportError(const absl::Status& status);

// The channel credentials for `options`: mTLS from the three PEM files, or
// plaintext if none is given. For callers that make their own channels
// (kmsctl bench). Errors as for KmsClient::Connect's TLS files.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options);

// A finished call's status as KmsClient returns it: the gRPC code and
// message, and the exception name from the `kms-error-type` trailer if kmsd
// sent one. For callers that make their own calls (kmsctl bench).
absl::Status FromGrpcStatus(const grpc::Status& status, const grpc::ClientContext& context);

class KmsClient final : public DataKeySource {
 public:
  // A client of the kmsd at `endpoint` ("host:port", or any gRPC target such
  // as "unix:/run/kmsd.sock"). Does not connect: an unreachable endpoint shows
  // up as kUnavailable on the first call.
  // Errors: kInvalidArgument if `endpoint` is empty, the timeout is not
  // positive, or only some of the TLS files are given; kNotFound if a TLS
  // file cannot be read (the message names it).
  static absl::StatusOr<std::unique_ptr<KmsClient>> Connect(
      const std::string& endpoint, const ClientOptions& options = ClientOptions());

  // Each RPC returns the response, or the status kmsd (or the channel)
  // returned, with the exception name attached as described above. Response
  // plaintext fields (Decrypt, GenerateDataKey, GenerateRandom) are secrets
  // owned by the caller: wipe them with kms::WipeString when done.

  // Control plane: keys.
  absl::StatusOr<v1::CreateKeyResponse> CreateKey(const v1::CreateKeyRequest& request) const;
  absl::StatusOr<v1::DescribeKeyResponse> DescribeKey(const v1::DescribeKeyRequest& request) const;
  absl::StatusOr<v1::ListKeysResponse> ListKeys(const v1::ListKeysRequest& request) const;
  absl::StatusOr<v1::EnableKeyResponse> EnableKey(const v1::EnableKeyRequest& request) const;
  absl::StatusOr<v1::DisableKeyResponse> DisableKey(const v1::DisableKeyRequest& request) const;
  absl::StatusOr<v1::UpdateKeyDescriptionResponse> UpdateKeyDescription(
      const v1::UpdateKeyDescriptionRequest& request) const;
  absl::StatusOr<v1::ScheduleKeyDeletionResponse> ScheduleKeyDeletion(
      const v1::ScheduleKeyDeletionRequest& request) const;
  absl::StatusOr<v1::CancelKeyDeletionResponse> CancelKeyDeletion(
      const v1::CancelKeyDeletionRequest& request) const;

  // Control plane: aliases.
  absl::StatusOr<v1::CreateAliasResponse> CreateAlias(const v1::CreateAliasRequest& request) const;
  absl::StatusOr<v1::UpdateAliasResponse> UpdateAlias(const v1::UpdateAliasRequest& request) const;
  absl::StatusOr<v1::DeleteAliasResponse> DeleteAlias(const v1::DeleteAliasRequest& request) const;
  absl::StatusOr<v1::ListAliasesResponse> ListAliases(const v1::ListAliasesRequest& request) const;

  // Control plane: tags.
  absl::StatusOr<v1::TagResourceResponse> TagResource(const v1::TagResourceRequest& request) const;
  absl::StatusOr<v1::UntagResourceResponse> UntagResource(
      const v1::UntagResourceRequest& request) const;
  absl::StatusOr<v1::ListResourceTagsResponse> ListResourceTags(
      const v1::ListResourceTagsRequest& request) const;

  // Control plane: rotation. RotateKeyOnDemand fails with
  // LimitExceededException once a key has used up its on-demand rotations.
  absl::StatusOr<v1::EnableKeyRotationResponse> EnableKeyRotation(
      const v1::EnableKeyRotationRequest& request) const;
  absl::StatusOr<v1::DisableKeyRotationResponse> DisableKeyRotation(
      const v1::DisableKeyRotationRequest& request) const;
  absl::StatusOr<v1::GetKeyRotationStatusResponse> GetKeyRotationStatus(
      const v1::GetKeyRotationStatusRequest& request) const;
  absl::StatusOr<v1::RotateKeyOnDemandResponse> RotateKeyOnDemand(
      const v1::RotateKeyOnDemandRequest& request) const;
  absl::StatusOr<v1::ListKeyRotationsResponse> ListKeyRotations(
      const v1::ListKeyRotationsRequest& request) const;
  absl::StatusOr<v1::GetRotationComplianceReportResponse> GetRotationComplianceReport(
      const v1::GetRotationComplianceReportRequest& request) const;

  // Control plane: import of key material into keys of origin EXTERNAL
  // (client/key_material.h wraps the material).
  absl::StatusOr<v1::GetParametersForImportResponse> GetParametersForImport(
      const v1::GetParametersForImportRequest& request) const;
  absl::StatusOr<v1::ImportKeyMaterialResponse> ImportKeyMaterial(
      const v1::ImportKeyMaterialRequest& request) const;
  absl::StatusOr<v1::DeleteImportedKeyMaterialResponse> DeleteImportedKeyMaterial(
      const v1::DeleteImportedKeyMaterialRequest& request) const;

  // Data plane.
  absl::StatusOr<v1::EncryptResponse> Encrypt(const v1::EncryptRequest& request) const;
  absl::StatusOr<v1::DecryptResponse> Decrypt(const v1::DecryptRequest& request) const;
  absl::StatusOr<v1::ReEncryptResponse> ReEncrypt(const v1::ReEncryptRequest& request) const;
  absl::StatusOr<v1::GenerateDataKeyResponse> GenerateDataKey(
      const v1::GenerateDataKeyRequest& request) const;
  absl::StatusOr<v1::GenerateDataKeyWithoutPlaintextResponse> GenerateDataKeyWithoutPlaintext(
      const v1::GenerateDataKeyWithoutPlaintextRequest& request) const;
  absl::StatusOr<v1::GenerateRandomResponse> GenerateRandom(
      const v1::GenerateRandomRequest& request) const;

  // Access: key policies and grants. Policies travel as the JSON text given,
  // byte for byte; GetKeyPolicy returns the document exactly as stored.
  // A grant is identified by its id (ListGrants, RevokeGrant) or by its token
  // (RetireGrant). Errors as for every RPC; a policy or grant that says no is
  // AccessDeniedException (kPermissionDenied), an unknown grant
  // NotFoundException.
  absl::StatusOr<v1::PutKeyPolicyResponse> PutKeyPolicy(
      const v1::PutKeyPolicyRequest& request) const;
  absl::StatusOr<v1::GetKeyPolicyResponse> GetKeyPolicy(
      const v1::GetKeyPolicyRequest& request) const;
  absl::StatusOr<v1::CreateGrantResponse> CreateGrant(const v1::CreateGrantRequest& request) const;
  absl::StatusOr<v1::ListGrantsResponse> ListGrants(const v1::ListGrantsRequest& request) const;
  absl::StatusOr<v1::RetireGrantResponse> RetireGrant(const v1::RetireGrantRequest& request) const;
  absl::StatusOr<v1::RevokeGrantResponse> RevokeGrant(const v1::RevokeGrantRequest& request) const;

  // AuditService (a separate service on the same endpoint). A caller outside
  // the auditors role gets AccessDeniedException. QueryAuditLog and
  // ExportAuditLog return one page; pass next_sequence back as
  // after_sequence while truncated is set.
  absl::StatusOr<v1::QueryAuditLogResponse> QueryAuditLog(
      const v1::QueryAuditLogRequest& request) const;
  absl::StatusOr<v1::ExportAuditLogResponse> ExportAuditLog(
      const v1::ExportAuditLogRequest& request) const;
  absl::StatusOr<v1::GetAuditPublicKeyResponse> GetAuditPublicKey(
      const v1::GetAuditPublicKeyRequest& request) const;
  absl::StatusOr<v1::GetKeyInventoryReportResponse> GetKeyInventoryReport(
      const v1::GetKeyInventoryReportRequest& request) const;

  // DataKeySource: GenerateDataKey with key_spec AES_256, and Decrypt. Errors
  // are those of the RPCs.
  absl::StatusOr<DataKey> GenerateDataKey(const std::string& key_id,
                                          const EncryptionContext& context) override;
  absl::StatusOr<SecretBytes> DecryptDataKey(const std::string& ciphertext_blob,
                                             const EncryptionContext& context) override;

 private:
  using Stub = v1::KeyManagementService::StubInterface;
  template <typename Request, typename Response>
  using Method = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&, Response*);

  using AuditStub = v1::AuditService::StubInterface;
  template <typename Request, typename Response>
  using AuditMethod = grpc::Status (AuditStub::*)(grpc::ClientContext*, const Request&, Response*);

  KmsClient(std::unique_ptr<Stub> stub, std::unique_ptr<AuditStub> audit_stub,
            const ClientOptions& options);

  // Makes one call with the configured deadline and converts its status.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(Method<Request, Response> method, const Request& request) const;

  // Call's twin for the AuditService stub.
  template <typename Request, typename Response>
  absl::StatusOr<Response> CallAudit(AuditMethod<Request, Response> method,
                                     const Request& request) const;

  const std::unique_ptr<Stub> stub_;  // thread-safe
  const std::unique_ptr<AuditStub> audit_stub_;  // thread-safe; same channel as stub_
  const ClientOptions options_;
};

}  // namespace kms::client

#endif  // KMS_CLIENT_KMS_CLIENT_H_
