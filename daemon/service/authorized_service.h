// AuthorizedService: the policy enforcement point. Every RPC enters here with
// its Caller, is checked by AccessControl against the key it names (its
// policy, its grants, the caller's roles), and only then reaches KeyService.
// Key policies and grants themselves are managed here too.
//
// Which key an RPC is checked against: the key its key_id names (aliases
// resolved); for Decrypt the key the ciphertext names; for ReEncrypt
// kms:ReEncryptFrom on the source key and kms:ReEncryptTo on the
// destination; CreateAlias/UpdateAlias/DeleteAlias the alias's target keys.
// A key that does not exist is NotFoundException before any access check (a
// ciphertext naming an unknown key stays InvalidCiphertextException).
//
// Each method fills `facts` (never null) with what the audit record names:
// the key acted on and the key material used, as far as known even when the
// call fails.
//
// Borrows everything; thread-safe.
#ifndef KMS_DAEMON_SERVICE_AUTHORIZED_SERVICE_H_
#define KMS_DAEMON_SERVICE_AUTHORIZED_SERVICE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/clock.h"
#include "daemon/keystore/key_store.h"
#include "daemon/service/access_control.h"
#include "daemon/service/key_service.h"
#include "kms/v1/kms.pb.h"

namespace kms::service {

// What an audit record says about a call beyond who made it.
struct CallFacts {
  std::string key_id;          // resolved key id (for ReEncrypt: the destination)
  std::string key_version_id;  // key material used, when known
  std::string detail;          // e.g. ReEncrypt's source key and version
};

// Grants per key, at most (CreateGrant gives LimitExceededException beyond).
inline constexpr int64_t kMaxGrantsPerKey = 10000;

class AuthorizedService {
 public:
  AuthorizedService(KeyService& keys, keystore::KeyStore& store, const AccessControl& access,
                    const Clock& clock);

#define KMS_AUTHORIZED_RPC(Method)                                                    \
  absl::StatusOr<v1::Method##Response> Method(const Caller& caller,                   \
                                              const v1::Method##Request& request,     \
                                              CallFacts* facts);
  KMS_AUTHORIZED_RPC(CreateKey)
  KMS_AUTHORIZED_RPC(DescribeKey)
  KMS_AUTHORIZED_RPC(ListKeys)
  KMS_AUTHORIZED_RPC(EnableKey)
  KMS_AUTHORIZED_RPC(DisableKey)
  KMS_AUTHORIZED_RPC(UpdateKeyDescription)
  KMS_AUTHORIZED_RPC(ScheduleKeyDeletion)
  KMS_AUTHORIZED_RPC(CancelKeyDeletion)
  KMS_AUTHORIZED_RPC(CreateAlias)
  KMS_AUTHORIZED_RPC(UpdateAlias)
  KMS_AUTHORIZED_RPC(DeleteAlias)
  KMS_AUTHORIZED_RPC(ListAliases)
  KMS_AUTHORIZED_RPC(TagResource)
  KMS_AUTHORIZED_RPC(UntagResource)
  KMS_AUTHORIZED_RPC(ListResourceTags)
  KMS_AUTHORIZED_RPC(EnableKeyRotation)
  KMS_AUTHORIZED_RPC(DisableKeyRotation)
  KMS_AUTHORIZED_RPC(GetKeyRotationStatus)
  KMS_AUTHORIZED_RPC(RotateKeyOnDemand)
  KMS_AUTHORIZED_RPC(ListKeyRotations)
  KMS_AUTHORIZED_RPC(GetRotationComplianceReport)
  KMS_AUTHORIZED_RPC(GetParametersForImport)
  KMS_AUTHORIZED_RPC(ImportKeyMaterial)
  KMS_AUTHORIZED_RPC(DeleteImportedKeyMaterial)
  KMS_AUTHORIZED_RPC(Encrypt)
  KMS_AUTHORIZED_RPC(Decrypt)
  KMS_AUTHORIZED_RPC(ReEncrypt)
  KMS_AUTHORIZED_RPC(GenerateDataKey)
  KMS_AUTHORIZED_RPC(GenerateDataKeyWithoutPlaintext)
  KMS_AUTHORIZED_RPC(GenerateRandom)
  // PutKeyPolicy: MalformedPolicyDocumentException for a bad document or
  // one that fails the lockout safety check (unless bypassed);
  // ValidationException for a policy_name other than "default".
  KMS_AUTHORIZED_RPC(PutKeyPolicy)
  KMS_AUTHORIZED_RPC(GetKeyPolicy)
  // CreateGrant: by a principal the policy (or the administrator role)
  // allows kms:CreateGrant, or by a grantee whose grant has CreateGrant and
  // covers the new grant (AccessControl::ParentGrantFor). Takes effect at
  // once. ValidationException (grant contents), KMSInvalidStateException
  // (key pending deletion), LimitExceededException (kMaxGrantsPerKey).
  KMS_AUTHORIZED_RPC(CreateGrant)
  KMS_AUTHORIZED_RPC(ListGrants)
  // RetireGrant: by the grant's retiring principal, its grantee when the
  // grant has RetireGrant, or whoever the key policy allows kms:RetireGrant.
  KMS_AUTHORIZED_RPC(RetireGrant)
  KMS_AUTHORIZED_RPC(RevokeGrant)
#undef KMS_AUTHORIZED_RPC

  const AccessControl& access() const { return access_; }

 private:
  // Resolves `key_id` (NotFound, Validation as KeyService would), records
  // it in `facts`, and checks `action` on it.
  absl::StatusOr<keystore::KeyRecord> AuthorizeNamedKey(
      const Caller& caller, absl::string_view action, absl::string_view field,
      absl::string_view key_id, const std::map<std::string, std::string>* context,
      CallFacts* facts);
  // Checks `action` on a key already in hand.
  absl::Status AuthorizeOn(const Caller& caller, absl::string_view action,
                           const keystore::KeyRecord& key,
                           const std::map<std::string, std::string>* context);

  KeyService& keys_;
  keystore::KeyStore& store_;
  const AccessControl& access_;
  const Clock& clock_;
  absl::Mutex grant_mu_;  // serialises CreateGrant's count-then-add
};

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_AUTHORIZED_SERVICE_H_
