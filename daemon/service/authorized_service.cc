#include "daemon/service/authorized_service.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/common/errors.h"
#include "daemon/common/status_macros.h"
#include "daemon/policy/grant.h"
#include "daemon/policy/policy.h"
#include "daemon/service/ciphertext_blob.h"
#include "daemon/service/service_internal.h"
#include "proto/grant_operation_names.h"

namespace kms::service {
namespace {

using keystore::GrantRecord;
using keystore::KeyRecord;
using ContextMap = std::map<std::string, std::string>;

ContextMap ToMap(const google::protobuf::Map<std::string, std::string>& context) {
  return ContextMap(context.begin(), context.end());
}

// The key material a ciphertext was made under (for the audit record).
std::string VersionOf(absl::string_view blob) {
  absl::StatusOr<CiphertextBlob> parsed = CiphertextBlob::Parse(blob);
  return parsed.ok() ? parsed->key_version_id : "";
}

absl::StatusOr<std::string> GrantOperationToName(int op) {
  absl::string_view name = api::GrantOperationName(op);
  if (name.empty()) {
    return ValidationError(absl::StrCat("operations: unknown grant operation ", op));
  }
  return std::string(name);
}

std::string Sha256(absl::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return InternalError("RAND_bytes failed");
  }
  return out;
}

absl::Status CheckPolicyName(absl::string_view name) {
  if (name.empty() || name == "default") return absl::OkStatus();
  return ValidationError(absl::StrCat("policy_name: keys have one policy, named \"default\"; got '",
                                      name, "'"));
}

absl::Status ValidateGrantName(absl::string_view name) {
  if (name.empty()) return absl::OkStatus();
  if (name.size() > 256) return ValidationError("name: at most 256 characters");
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != ':' && c != '/' &&
        c != '_' && c != '-') {
      return ValidationError(absl::StrCat("name: only [a-zA-Z0-9:/_-] allowed, got '", name, "'"));
    }
  }
  return absl::OkStatus();
}

void ToListEntry(const GrantRecord& grant, const ResourceNames& names, v1::GrantListEntry* out) {
  out->set_key_id(names.KeyArn(grant.key_id));
  out->set_grant_id(grant.grant_id);
  out->set_name(grant.name);
  *out->mutable_creation_date() = internal::ToTimestamp(grant.creation_time);
  out->set_grantee_principal(grant.grantee_principal);
  out->set_retiring_principal(grant.retiring_principal);
  out->set_issuing_principal(grant.issuing_principal);
  for (const std::string& op : grant.operations) {
    out->add_operations(
        api::GrantOperationFromName(op).value_or(v1::GRANT_OPERATION_UNSPECIFIED));
  }
  for (const auto& [k, v] : grant.encryption_context_equals) {
    (*out->mutable_constraints()->mutable_encryption_context_equals())[k] = v;
  }
  for (const auto& [k, v] : grant.encryption_context_subset) {
    (*out->mutable_constraints()->mutable_encryption_context_subset())[k] = v;
  }
}

}  // namespace

AuthorizedService::AuthorizedService(KeyService& keys, keystore::KeyStore& store,
                                     const AccessControl& access, const Clock& clock)
    : keys_(keys), store_(store), access_(access), clock_(clock) {}

absl::Status AuthorizedService::AuthorizeOn(const Caller& caller, absl::string_view action,
                                            const KeyRecord& key, const ContextMap* context) {
  KMS_ASSIGN_OR_RETURN(std::vector<GrantRecord> grants, store_.ListGrantsForKey(key.key_id));
  return access_.AuthorizeKey(caller, action, key, grants, context,
                              keys_.resource_names().KeyArn(key.key_id));
}

absl::StatusOr<KeyRecord> AuthorizedService::AuthorizeNamedKey(
    const Caller& caller, absl::string_view action, absl::string_view field,
    absl::string_view key_id, const ContextMap* context, CallFacts* facts) {
  KMS_ASSIGN_OR_RETURN(KeyRecord key, keys_.ResolveKey(field, key_id));
  facts->key_id = key.key_id;
  KMS_RETURN_IF_ERROR(AuthorizeOn(caller, action, key, context));
  return key;
}

// Key-scoped RPCs whose only key is request.key_id and that carry no
// encryption context: check, then forward.
#define KMS_KEY_SCOPED_RPC(Method)                                                          \
  absl::StatusOr<v1::Method##Response> AuthorizedService::Method(                           \
      const Caller& caller, const v1::Method##Request& request, CallFacts* facts) {          \
    KMS_RETURN_IF_ERROR(AuthorizeNamedKey(caller, "kms:" #Method, "key_id", request.key_id(), \
                                          nullptr, facts)                                   \
                            .status());                                                     \
    return keys_.Method(request);                                                           \
  }
KMS_KEY_SCOPED_RPC(DescribeKey)
KMS_KEY_SCOPED_RPC(EnableKey)
KMS_KEY_SCOPED_RPC(DisableKey)
KMS_KEY_SCOPED_RPC(UpdateKeyDescription)
KMS_KEY_SCOPED_RPC(ScheduleKeyDeletion)
KMS_KEY_SCOPED_RPC(CancelKeyDeletion)
KMS_KEY_SCOPED_RPC(TagResource)
KMS_KEY_SCOPED_RPC(UntagResource)
KMS_KEY_SCOPED_RPC(ListResourceTags)
KMS_KEY_SCOPED_RPC(EnableKeyRotation)
KMS_KEY_SCOPED_RPC(DisableKeyRotation)
KMS_KEY_SCOPED_RPC(GetKeyRotationStatus)
KMS_KEY_SCOPED_RPC(RotateKeyOnDemand)
KMS_KEY_SCOPED_RPC(ListKeyRotations)
KMS_KEY_SCOPED_RPC(GetParametersForImport)
KMS_KEY_SCOPED_RPC(ImportKeyMaterial)
KMS_KEY_SCOPED_RPC(DeleteImportedKeyMaterial)
#undef KMS_KEY_SCOPED_RPC

// Account-level RPCs: checked against the roles only.
#define KMS_ACCOUNT_RPC(Method)                                                    \
  absl::StatusOr<v1::Method##Response> AuthorizedService::Method(                  \
      const Caller& caller, const v1::Method##Request& request, CallFacts*) {      \
    KMS_RETURN_IF_ERROR(access_.AuthorizeAccount(caller, "kms:" #Method));         \
    return keys_.Method(request);                                                  \
  }
KMS_ACCOUNT_RPC(ListKeys)
KMS_ACCOUNT_RPC(ListAliases)
KMS_ACCOUNT_RPC(GetRotationComplianceReport)
KMS_ACCOUNT_RPC(GenerateRandom)
#undef KMS_ACCOUNT_RPC

// ------------------------------------------------------------------ keys

absl::StatusOr<v1::CreateKeyResponse> AuthorizedService::CreateKey(
    const Caller& caller, const v1::CreateKeyRequest& request, CallFacts* facts) {
  KMS_RETURN_IF_ERROR(access_.AuthorizeAccount(caller, "kms:CreateKey"));
  v1::CreateKeyRequest with_policy = request;
  if (request.policy().empty()) {
    with_policy.set_policy(DefaultKeyPolicy(caller.principal));
  } else {
    KMS_ASSIGN_OR_RETURN(policy::Policy parsed, policy::Policy::Parse(request.policy()));
    if (!request.bypass_policy_lockout_safety_check() &&
        !access_.CanStillPutKeyPolicy(caller, parsed)) {
      return policy::MalformedPolicyDocumentError(
          "the new key policy will not allow you to update the key policy in the future "
          "(set bypass_policy_lockout_safety_check to create it anyway)");
    }
  }
  KMS_ASSIGN_OR_RETURN(v1::CreateKeyResponse response, keys_.CreateKey(with_policy));
  facts->key_id = response.key_metadata().key_id();
  facts->key_version_id = response.key_metadata().current_key_version_id();
  return response;
}

// ------------------------------------------------------------------ aliases

absl::StatusOr<v1::CreateAliasResponse> AuthorizedService::CreateAlias(
    const Caller& caller, const v1::CreateAliasRequest& request, CallFacts* facts) {
  KMS_RETURN_IF_ERROR(AuthorizeNamedKey(caller, "kms:CreateAlias", "target_key_id",
                                        request.target_key_id(), nullptr, facts)
                          .status());
  return keys_.CreateAlias(request);
}

absl::StatusOr<v1::UpdateAliasResponse> AuthorizedService::UpdateAlias(
    const Caller& caller, const v1::UpdateAliasRequest& request, CallFacts* facts) {
  // Both the key the alias leaves and the key it moves to.
  absl::StatusOr<keystore::AliasRecord> alias = store_.GetAlias(request.alias_name());
  if (alias.ok()) {
    absl::StatusOr<KeyRecord> current = store_.GetKey(alias->key_id);
    if (current.ok()) KMS_RETURN_IF_ERROR(AuthorizeOn(caller, "kms:UpdateAlias", *current, nullptr));
  }
  KMS_RETURN_IF_ERROR(AuthorizeNamedKey(caller, "kms:UpdateAlias", "target_key_id",
                                        request.target_key_id(), nullptr, facts)
                          .status());
  return keys_.UpdateAlias(request);
}

absl::StatusOr<v1::DeleteAliasResponse> AuthorizedService::DeleteAlias(
    const Caller& caller, const v1::DeleteAliasRequest& request, CallFacts* facts) {
  absl::StatusOr<keystore::AliasRecord> alias = store_.GetAlias(request.alias_name());
  if (alias.ok()) {
    absl::StatusOr<KeyRecord> key = store_.GetKey(alias->key_id);
    if (key.ok()) {
      facts->key_id = key->key_id;
      KMS_RETURN_IF_ERROR(AuthorizeOn(caller, "kms:DeleteAlias", *key, nullptr));
    }
  } else if (!absl::IsNotFound(alias.status()) && !absl::IsInvalidArgument(alias.status())) {
    return alias.status();
  }
  // An alias that does not exist: KeyService gives the right error.
  return keys_.DeleteAlias(request);
}

// ------------------------------------------------------------------ data plane

absl::StatusOr<v1::EncryptResponse> AuthorizedService::Encrypt(
    const Caller& caller, const v1::EncryptRequest& request, CallFacts* facts) {
  const ContextMap context = ToMap(request.encryption_context());
  KMS_ASSIGN_OR_RETURN(
      const KeyRecord key,
      AuthorizeNamedKey(caller, "kms:Encrypt", "key_id", request.key_id(), &context, facts));
  KMS_ASSIGN_OR_RETURN(v1::EncryptResponse response, keys_.Encrypt(request, &key));
  facts->key_version_id = VersionOf(response.ciphertext_blob());
  return response;
}

absl::StatusOr<v1::GenerateDataKeyResponse> AuthorizedService::GenerateDataKey(
    const Caller& caller, const v1::GenerateDataKeyRequest& request, CallFacts* facts) {
  const ContextMap context = ToMap(request.encryption_context());
  KMS_ASSIGN_OR_RETURN(const KeyRecord key,
                       AuthorizeNamedKey(caller, "kms:GenerateDataKey", "key_id",
                                         request.key_id(), &context, facts));
  KMS_ASSIGN_OR_RETURN(v1::GenerateDataKeyResponse response,
                       keys_.GenerateDataKey(request, &key));
  facts->key_version_id = VersionOf(response.ciphertext_blob());
  return response;
}

absl::StatusOr<v1::GenerateDataKeyWithoutPlaintextResponse>
AuthorizedService::GenerateDataKeyWithoutPlaintext(
    const Caller& caller, const v1::GenerateDataKeyWithoutPlaintextRequest& request,
    CallFacts* facts) {
  const ContextMap context = ToMap(request.encryption_context());
  KMS_ASSIGN_OR_RETURN(const KeyRecord key,
                       AuthorizeNamedKey(caller, "kms:GenerateDataKeyWithoutPlaintext", "key_id",
                                         request.key_id(), &context, facts));
  KMS_ASSIGN_OR_RETURN(v1::GenerateDataKeyWithoutPlaintextResponse response,
                       keys_.GenerateDataKeyWithoutPlaintext(request, &key));
  facts->key_version_id = VersionOf(response.ciphertext_blob());
  return response;
}

absl::StatusOr<v1::DecryptResponse> AuthorizedService::Decrypt(
    const Caller& caller, const v1::DecryptRequest& request, CallFacts* facts) {
  // The ciphertext names its key. One that does not parse, or names no key
  // here, is KeyService's InvalidCiphertextException: nothing to protect.
  absl::StatusOr<CiphertextBlob> blob = CiphertextBlob::Parse(request.ciphertext_blob());
  std::optional<KeyRecord> authorized;
  if (blob.ok()) {
    absl::StatusOr<KeyRecord> key = store_.GetKey(blob->key_id);
    if (key.ok()) {
      facts->key_id = key->key_id;
      facts->key_version_id = blob->key_version_id;
      const ContextMap context = ToMap(request.encryption_context());
      KMS_RETURN_IF_ERROR(AuthorizeOn(caller, "kms:Decrypt", *key, &context));
      authorized = *std::move(key);
    } else if (!absl::IsNotFound(key.status())) {
      return key.status();
    }
  }
  return keys_.Decrypt(request, authorized ? &*authorized : nullptr);
}

absl::StatusOr<v1::ReEncryptResponse> AuthorizedService::ReEncrypt(
    const Caller& caller, const v1::ReEncryptRequest& request, CallFacts* facts) {
  absl::StatusOr<CiphertextBlob> blob = CiphertextBlob::Parse(request.ciphertext_blob());
  if (blob.ok()) {
    absl::StatusOr<KeyRecord> source = store_.GetKey(blob->key_id);
    if (source.ok()) {
      facts->detail = absl::StrCat("source key ", source->key_id, " version ",
                                   blob->key_version_id);
      const ContextMap context = ToMap(request.source_encryption_context());
      KMS_RETURN_IF_ERROR(AuthorizeOn(caller, "kms:ReEncryptFrom", *source, &context));
    } else if (!absl::IsNotFound(source.status())) {
      return source.status();
    }
  }
  const ContextMap destination_context = ToMap(request.destination_encryption_context());
  KMS_RETURN_IF_ERROR(AuthorizeNamedKey(caller, "kms:ReEncryptTo", "destination_key_id",
                                        request.destination_key_id(), &destination_context,
                                        facts)
                          .status());
  KMS_ASSIGN_OR_RETURN(v1::ReEncryptResponse response, keys_.ReEncrypt(request));
  facts->key_version_id = VersionOf(response.ciphertext_blob());
  return response;
}

// ------------------------------------------------------------------ key policies

absl::StatusOr<v1::PutKeyPolicyResponse> AuthorizedService::PutKeyPolicy(
    const Caller& caller, const v1::PutKeyPolicyRequest& request, CallFacts* facts) {
  KMS_RETURN_IF_ERROR(CheckPolicyName(request.policy_name()));
  KMS_ASSIGN_OR_RETURN(KeyRecord key, AuthorizeNamedKey(caller, "kms:PutKeyPolicy", "key_id",
                                                        request.key_id(), nullptr, facts));
  if (request.policy().empty()) return ValidationError("policy: required");
  KMS_ASSIGN_OR_RETURN(policy::Policy parsed, policy::Policy::Parse(request.policy()));
  if (!request.bypass_policy_lockout_safety_check() &&
      !access_.CanStillPutKeyPolicy(caller, parsed)) {
    return policy::MalformedPolicyDocumentError(
        "the new key policy will not allow you to update the key policy in the future "
        "(set bypass_policy_lockout_safety_check to put it anyway)");
  }
  KMS_RETURN_IF_ERROR(keys_.PutKeyPolicy(key.key_id, request.policy()));
  return v1::PutKeyPolicyResponse();
}

absl::StatusOr<v1::GetKeyPolicyResponse> AuthorizedService::GetKeyPolicy(
    const Caller& caller, const v1::GetKeyPolicyRequest& request, CallFacts* facts) {
  KMS_RETURN_IF_ERROR(CheckPolicyName(request.policy_name()));
  KMS_ASSIGN_OR_RETURN(KeyRecord key, AuthorizeNamedKey(caller, "kms:GetKeyPolicy", "key_id",
                                                        request.key_id(), nullptr, facts));
  v1::GetKeyPolicyResponse response;
  response.set_policy(key.policy);
  response.set_policy_name("default");
  return response;
}

// ------------------------------------------------------------------ grants

absl::StatusOr<v1::CreateGrantResponse> AuthorizedService::CreateGrant(
    const Caller& caller, const v1::CreateGrantRequest& request, CallFacts* facts) {
  KMS_ASSIGN_OR_RETURN(KeyRecord key, keys_.ResolveKey("key_id", request.key_id()));
  facts->key_id = key.key_id;

  policy::Grant grant;
  grant.grantee_principal = request.grantee_principal();
  grant.retiring_principal = request.retiring_principal();
  for (int op : request.operations()) {
    KMS_ASSIGN_OR_RETURN(std::string name, GrantOperationToName(op));
    grant.operations.push_back(std::move(name));
  }
  const auto& constraints = request.constraints();
  grant.encryption_context_equals = ToMap(constraints.encryption_context_equals());
  grant.encryption_context_subset = ToMap(constraints.encryption_context_subset());
  KMS_RETURN_IF_ERROR(policy::ValidateGrant(grant));
  KMS_RETURN_IF_ERROR(ValidateGrantName(request.name()));

  // Allowed by the policy or role, or passed on by a grantee whose grant
  // covers the new one.
  KMS_ASSIGN_OR_RETURN(std::vector<GrantRecord> grants, store_.ListGrantsForKey(key.key_id));
  const std::string key_arn = keys_.resource_names().KeyArn(key.key_id);
  if (access_.ParentGrantFor(caller, grants, grant) == nullptr) {
    KMS_RETURN_IF_ERROR(
        access_.AuthorizeKey(caller, "kms:CreateGrant", key, {}, nullptr, key_arn));
  } else {
    KMS_RETURN_IF_ERROR(access_.CheckNotExplicitlyDenied(caller, "kms:CreateGrant", key, key_arn));
  }
  if (key.state == keystore::KeyState::kPendingDeletion) {
    return InvalidStateError(absl::StrCat("key '", request.key_id(), "' is pending deletion"));
  }

  KMS_ASSIGN_OR_RETURN(std::string id_bytes, RandomBytes(32));
  KMS_ASSIGN_OR_RETURN(std::string token_bytes, RandomBytes(32));
  const std::string token = absl::StrCat("kmsd-grant-", absl::WebSafeBase64Escape(token_bytes));
  GrantRecord record;
  record.grant_id = absl::BytesToHexString(id_bytes);
  record.key_id = key.key_id;
  record.name = request.name();
  record.grantee_principal = grant.grantee_principal;
  record.retiring_principal = grant.retiring_principal;
  record.issuing_principal = caller.principal;
  record.operations = grant.operations;
  record.encryption_context_equals = grant.encryption_context_equals;
  record.encryption_context_subset = grant.encryption_context_subset;
  record.token_hash = Sha256(token);
  record.creation_time = absl::FromUnixMicros(absl::ToUnixMicros(clock_.Now()));
  {
    absl::MutexLock lock(&grant_mu_);
    KMS_ASSIGN_OR_RETURN(int64_t count, store_.CountGrants(key.key_id));
    if (count >= kMaxGrantsPerKey) {
      return LimitExceededError(absl::StrCat("key '", request.key_id(), "' already has ", count,
                                             " grants, the most a key may have"));
    }
    KMS_RETURN_IF_ERROR(store_.AddGrant(record));
  }
  v1::CreateGrantResponse response;
  response.set_grant_id(record.grant_id);
  response.set_grant_token(token);
  return response;
}

absl::StatusOr<v1::ListGrantsResponse> AuthorizedService::ListGrants(
    const Caller& caller, const v1::ListGrantsRequest& request, CallFacts* facts) {
  KMS_ASSIGN_OR_RETURN(KeyRecord key, AuthorizeNamedKey(caller, "kms:ListGrants", "key_id",
                                                        request.key_id(), nullptr, facts));
  const int limit = request.has_limit() ? request.limit() : 50;
  if (limit < 1 || limit > 100) {
    return ValidationError(absl::StrCat("limit: must be 1..100, got ", limit));
  }
  // Filtered in the store, before the limit: filtering a page afterwards
  // could return fewer than `limit` grants, or none, while more match.
  keystore::GrantFilter filter;
  filter.grant_id = request.grant_id();
  filter.grantee_principal = request.grantee_principal();
  KMS_ASSIGN_OR_RETURN(keystore::Page<GrantRecord> page,
                       store_.ListGrants(key.key_id, filter, limit, request.marker()));
  v1::ListGrantsResponse response;
  for (const GrantRecord& grant : page.items) {
    ToListEntry(grant, keys_.resource_names(), response.add_grants());
  }
  response.set_next_marker(page.next_marker);
  response.set_truncated(!page.next_marker.empty());
  return response;
}

absl::StatusOr<v1::RetireGrantResponse> AuthorizedService::RetireGrant(
    const Caller& caller, const v1::RetireGrantRequest& request, CallFacts* facts) {
  absl::StatusOr<GrantRecord> grant;
  if (!request.grant_token().empty()) {
    if (!request.grant_id().empty() || !request.key_id().empty()) {
      return ValidationError("give either grant_token, or key_id and grant_id, not both");
    }
    grant = store_.FindGrantByTokenHash(Sha256(request.grant_token()));
    if (absl::IsNotFound(grant.status())) {
      return NotFoundError("no grant has this grant token (retired or revoked already?)");
    }
  } else {
    if (request.key_id().empty() || request.grant_id().empty()) {
      return ValidationError("give either grant_token, or key_id and grant_id");
    }
    KMS_ASSIGN_OR_RETURN(KeyRecord key, keys_.ResolveKey("key_id", request.key_id()));
    grant = store_.GetGrant(request.grant_id());
    if (absl::IsNotFound(grant.status()) || (grant.ok() && grant->key_id != key.key_id)) {
      return NotFoundError(absl::StrCat("grant '", request.grant_id(), "' does not exist on key '",
                                        request.key_id(), "'"));
    }
  }
  KMS_RETURN_IF_ERROR(grant.status());
  facts->key_id = grant->key_id;
  facts->detail = absl::StrCat("grant ", grant->grant_id);

  const auto& ops = grant->operations;
  const bool retiring = !grant->retiring_principal.empty() &&
                        grant->retiring_principal == caller.principal;
  const bool grantee = grant->grantee_principal == caller.principal &&
                       std::find(ops.begin(), ops.end(), "RetireGrant") != ops.end();
  KMS_ASSIGN_OR_RETURN(KeyRecord key, store_.GetKey(grant->key_id));
  const std::string key_arn = keys_.resource_names().KeyArn(key.key_id);
  if (!retiring && !grantee) {
    KMS_RETURN_IF_ERROR(
        access_.AuthorizeKey(caller, "kms:RetireGrant", key, {}, nullptr, key_arn));
  } else {
    KMS_RETURN_IF_ERROR(access_.CheckNotExplicitlyDenied(caller, "kms:RetireGrant", key, key_arn));
  }
  KMS_RETURN_IF_ERROR(store_.DeleteGrant(grant->grant_id));
  return v1::RetireGrantResponse();
}

absl::StatusOr<v1::RevokeGrantResponse> AuthorizedService::RevokeGrant(
    const Caller& caller, const v1::RevokeGrantRequest& request, CallFacts* facts) {
  KMS_ASSIGN_OR_RETURN(KeyRecord key, AuthorizeNamedKey(caller, "kms:RevokeGrant", "key_id",
                                                        request.key_id(), nullptr, facts));
  facts->detail = absl::StrCat("grant ", request.grant_id());
  absl::StatusOr<GrantRecord> grant = store_.GetGrant(request.grant_id());
  if (absl::IsNotFound(grant.status()) || (grant.ok() && grant->key_id != key.key_id)) {
    return NotFoundError(absl::StrCat("grant '", request.grant_id(), "' does not exist on key '",
                                      request.key_id(), "'"));
  }
  KMS_RETURN_IF_ERROR(grant.status());
  KMS_RETURN_IF_ERROR(store_.DeleteGrant(grant->grant_id));
  return v1::RevokeGrantResponse();
}

}  // namespace kms::service
