#include "daemon/service/key_service.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/uuid.h"
#include "daemon/policy/policy.h"
#include "daemon/service/service_internal.h"
#include "google/protobuf/timestamp.pb.h"

namespace kms::service {

namespace internal {

using keystore::KeyRecord;
using keystore::KeyState;

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1'000'000;
  int64_t rem = micros % 1'000'000;
  if (rem < 0) {
    rem += 1'000'000;
    --seconds;
  }
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(rem * 1000));
  return ts;
}

absl::Time NowMicros(const Clock& clock) {
  return absl::FromUnixMicros(absl::ToUnixMicros(clock.Now()));
}

absl::Status FromHsm(const absl::Status& status, absl::string_view operation) {
  if (status.code() == absl::StatusCode::kUnavailable) {
    KMS_LOG(WARNING) << operation << ": HSM unavailable: " << status.message();
    return KeyUnavailableError("the HSM is unavailable; retry later");
  }
  KMS_LOG(ERROR) << operation << ": HSM error: " << status;
  return InternalError("internal HSM error");
}

absl::Status RefuseIfPendingDeletion(const KeyRecord& key, absl::string_view name) {
  if (key.state != KeyState::kPendingDeletion) return absl::OkStatus();
  return InvalidStateError(absl::StrCat("key '", name, "' is pending deletion"));
}

}  // namespace internal

namespace {

using keystore::KeyRecord;
using keystore::KeyState;
using internal::FromHsm;
using internal::NowMicros;
using internal::RefuseIfPendingDeletion;
using internal::ToTimestamp;

v1::KeyState ToProtoState(KeyState state) {
  switch (state) {
    case KeyState::kEnabled: return v1::ENABLED;
    case KeyState::kDisabled: return v1::DISABLED;
    case KeyState::kPendingDeletion: return v1::PENDING_DELETION;
    case KeyState::kPendingImport: return v1::PENDING_IMPORT;
  }
  return v1::KEY_STATE_UNSPECIFIED;
}

std::string StateText(KeyState state) { return std::string(keystore::KeyStateName(state)); }

// NotFound from the store for a key named in a request becomes the caller's
// NotFoundException with the name they used; other errors pass through.
absl::Status KeyNotFound(absl::string_view key_id) {
  return NotFoundError(absl::StrCat("key '", key_id, "' does not exist"));
}

}  // namespace

absl::Status CheckUsableForCrypto(const KeyRecord& key, absl::string_view name) {
  switch (key.state) {
    case KeyState::kEnabled:
      return absl::OkStatus();
    case KeyState::kDisabled:
      return DisabledError(absl::StrCat("key '", name, "' is disabled"));
    case KeyState::kPendingDeletion:
      return InvalidStateError(absl::StrCat("key '", name, "' is pending deletion"));
    case KeyState::kPendingImport:
      return InvalidStateError(
          absl::StrCat("key '", name,
                       "' is pending import: it has no key material (import it with "
                       "ImportKeyMaterial)"));
  }
  return InternalError("unknown key state");
}

KeyService::KeyService(hsm::Hsm& hsm, keystore::KeyStore& store, const Clock& clock,
                       ServiceOptions options)
    : hsm_(hsm),
      store_(store),
      clock_(clock),
      names_(options.resource_name_prefix),
      options_(std::move(options)) {}

// ------------------------------------------------------------------ recovery

absl::Status KeyService::Recover() {
  {
    absl::MutexLock lock(&control_mu_);
    KMS_ASSIGN_OR_RETURN(std::vector<keystore::Intent> intents, store_.ListIntents());
    for (const keystore::Intent& intent : intents) {
      if (intent.kind == kIntentDeleteMaterial) {
        // The metadata already says the material is gone; finish the job.
        KMS_RETURN_IF_ERROR(DestroyDeletedMaterial(intent.key_id));
        KMS_LOG(INFO) << "recovery: finished deleting the imported material of key "
                      << intent.key_id;
        KMS_RETURN_IF_ERROR(store_.RemoveIntent(intent.id));
        continue;
      }
      if (intent.kind != kIntentCreateVersion) {
        // An intent from a newer kmsd: leave it for that version to finish.
        KMS_LOG(WARNING) << "recovery: leaving intent " << intent.id << " of unknown kind '"
                         << intent.kind << "'";
        continue;
      }
      absl::StatusOr<keystore::KeyVersionRecord> version = store_.GetVersion(intent.version_id);
      if (!version.ok() && !absl::IsNotFound(version.status())) return version.status();
      if (version.ok() && !version->material_deleted) {
        // The metadata commit happened; only the intent's removal was lost.
        KMS_LOG(INFO) << "recovery: key version " << intent.version_id << " of key "
                      << intent.key_id << " was committed; clearing its intent";
      } else if (hsm_.HasKey(intent.version_id)) {
        // Crashed between the HSM step and the commit (of a new version, or
        // of a re-import restoring a deleted one): roll back.
        absl::Status destroyed = hsm_.DestroyKey(intent.version_id);
        if (!destroyed.ok() && !absl::IsNotFound(destroyed)) return destroyed;
        KMS_LOG(INFO) << "recovery: removed orphan HSM object " << intent.version_id
                      << " of key " << intent.key_id << " left by an interrupted change";
      }
      KMS_RETURN_IF_ERROR(store_.RemoveIntent(intent.id));
    }
    KMS_RETURN_IF_ERROR(RemoveOrphanWrappingKeys());
  }
  KMS_ASSIGN_OR_RETURN(int erased, DeleteDueKeys());
  if (erased > 0) KMS_LOG(INFO) << "recovery: erased " << erased << " key(s) past their deletion date";
  KMS_ASSIGN_OR_RETURN(int expired, ExpireImports());
  if (expired > 0) {
    KMS_LOG(INFO) << "recovery: destroyed the expired imported material of " << expired
                  << " key(s)";
  }
  return absl::OkStatus();
}

absl::StatusOr<int> KeyService::DeleteDueKeys() {
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(std::vector<KeyRecord> due, store_.ListKeysDueForDeletion(clock_.Now()));
  int erased = 0;
  absl::Status first_error;
  for (const KeyRecord& key : due) {
    absl::Status s = EraseKey(key);
    if (s.ok()) {
      ++erased;
    } else {
      // Keep going: one bad key must not hold every other deletion hostage.
      KMS_LOG(ERROR) << "deleting key " << key.key_id << " failed, will retry: " << s;
      if (first_error.ok()) first_error = s;
    }
  }
  if (!first_error.ok() && erased == 0) return first_error;
  return erased;
}

absl::Status KeyService::EraseKey(const KeyRecord& key) {
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::KeyVersionRecord> versions,
                       store_.ListVersions(key.key_id));
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::ImportParametersRecord> imports,
                       store_.ListImportParameters(key.key_id));
  // Crypto-erase first, rows last: if we crash in between, the key is still
  // PENDING_DELETION and past due, so the next sweep finishes the job.
  for (const auto& version : versions) {
    absl::Status s = hsm_.DestroyKey(version.version_id);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
  }
  for (const auto& import : imports) {
    absl::Status s = hsm_.DestroyKey(import.wrapping_key_id);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
  }
  KMS_RETURN_IF_ERROR(store_.DeleteKey(key.key_id));
  KMS_LOG(INFO) << "key " << key.key_id << " deleted: " << versions.size()
                << " HSM object(s) destroyed";
  return absl::OkStatus();
}

// ------------------------------------------------------------------ helpers

absl::StatusOr<KeyRecord> KeyService::ResolveKey(absl::string_view field,
                                                 absl::string_view key_id) {
  KMS_ASSIGN_OR_RETURN(KeyIdentifier id, names_.Parse(field, key_id));
  std::string resolved = id.value;
  if (id.kind == KeyIdentifier::Kind::kAliasName) {
    absl::StatusOr<keystore::AliasRecord> alias = store_.GetAlias(id.value);
    if (absl::IsNotFound(alias.status())) {
      return NotFoundError(absl::StrCat("alias '", id.value, "' does not exist"));
    }
    KMS_RETURN_IF_ERROR(alias.status());
    resolved = alias->key_id;
  }
  absl::StatusOr<KeyRecord> key = store_.GetKey(resolved);
  if (absl::IsNotFound(key.status())) return KeyNotFound(key_id);
  return key;
}

absl::StatusOr<KeyRecord> KeyService::ResolvedOrResolve(const KeyRecord* resolved,
                                                        absl::string_view field,
                                                        absl::string_view key_id) {
  if (resolved != nullptr) return *resolved;
  return ResolveKey(field, key_id);
}

absl::StatusOr<KeyRecord> KeyService::ResolveKeyNotAlias(absl::string_view field,
                                                         absl::string_view key_id) {
  KMS_ASSIGN_OR_RETURN(KeyIdentifier id, names_.Parse(field, key_id));
  if (id.kind == KeyIdentifier::Kind::kAliasName) {
    return ValidationError(
        absl::StrCat(field, " must be a key id or key resource name, not an alias: '", key_id, "'"));
  }
  absl::StatusOr<KeyRecord> key = store_.GetKey(id.value);
  if (absl::IsNotFound(key.status())) return KeyNotFound(key_id);
  return key;
}

v1::KeyMetadata KeyService::ToMetadata(const KeyRecord& key) const {
  v1::KeyMetadata m;
  m.set_key_id(key.key_id);
  m.set_arn(names_.KeyArn(key.key_id));
  *m.mutable_creation_date() = ToTimestamp(key.creation_time);
  m.set_enabled(key.state == KeyState::kEnabled);
  m.set_description(key.description);
  m.set_key_usage(v1::ENCRYPT_DECRYPT);
  m.set_key_state(ToProtoState(key.state));
  if (key.deletion_time.has_value()) *m.mutable_deletion_date() = ToTimestamp(*key.deletion_time);
  m.set_origin(key.origin == keystore::KeyOrigin::kExternal ? v1::EXTERNAL : v1::AWS_KMS);
  m.set_key_spec(v1::SYMMETRIC_DEFAULT);
  m.set_current_key_version_id(key.current_version_id);
  m.add_encryption_algorithms(v1::SYMMETRIC_DEFAULT_ALGORITHM);
  switch (key.expiration_model) {
    case keystore::ExpirationModel::kNone: break;
    case keystore::ExpirationModel::kExpires:
      m.set_expiration_model(v1::KEY_MATERIAL_EXPIRES);
      break;
    case keystore::ExpirationModel::kDoesNotExpire:
      m.set_expiration_model(v1::KEY_MATERIAL_DOES_NOT_EXPIRE);
      break;
  }
  if (key.valid_to) *m.mutable_valid_to() = ToTimestamp(*key.valid_to);
  return m;
}

absl::StatusOr<std::string> KeyService::EncryptUnder(const KeyRecord& key,
                                                     absl::string_view plaintext,
                                                     const EncryptionContext& context,
                                                     absl::string_view iv) {
  if (key.current_version_id.empty()) {
    return InternalError(absl::StrCat("key ", key.key_id, " is enabled but has no key material"));
  }
  // Counted before use, so a crash can only overcount.
  KMS_ASSIGN_OR_RETURN(const int64_t used, CountEncryption(key.current_version_id));
  if (used >= options_.usage_rotation_threshold) {
    MaybeRotateForUsage(key.key_id, key.current_version_id);
  }
  CiphertextBlob blob;
  blob.key_id = key.key_id;
  blob.key_version_id = key.current_version_id;
  if (iv.empty()) {
    absl::StatusOr<SecretBytes> drawn = hsm_.GenerateRandom(kBlobIvSize);
    if (!drawn.ok()) return FromHsm(drawn.status(), "GenerateRandom(iv)");
    blob.iv = std::string(drawn->secret());  // an IV is not secret once used
  } else if (iv.size() != kBlobIvSize) {
    return InternalError(absl::StrCat("blob IV must be ", kBlobIvSize, " bytes, got ",
                                      iv.size()));
  } else {
    blob.iv = std::string(iv);
  }
  absl::StatusOr<std::string> sealed =
      hsm_.EncryptGcm(blob.key_version_id, blob.iv, plaintext,
                      BlobAad(blob, CanonicalContext(context)));
  if (!sealed.ok()) return FromHsm(sealed.status(), "EncryptGcm");
  blob.ciphertext = *std::move(sealed);
  return blob.Serialize();
}

absl::StatusOr<KeyService::Decrypted> KeyService::DecryptBlob(
    absl::string_view blob_bytes, const EncryptionContext& context,
    absl::string_view expected_key_field, absl::string_view expected_key_id,
    const KeyRecord* blob_key) {
  // Resolve the caller's expectation first: naming a key that doesn't exist
  // is the caller's error, whatever the blob holds.
  std::optional<KeyRecord> expected;
  if (!expected_key_id.empty()) {
    KMS_ASSIGN_OR_RETURN(expected, ResolveKey(expected_key_field, expected_key_id));
  }
  KMS_ASSIGN_OR_RETURN(CiphertextBlob blob, CiphertextBlob::Parse(blob_bytes));
  if (expected.has_value() && expected->key_id != blob.key_id) {
    return IncorrectKeyError(absl::StrCat("the ciphertext was not encrypted under key '",
                                          expected_key_id, "'"));
  }
  absl::StatusOr<KeyRecord> key = blob_key != nullptr && blob_key->key_id == blob.key_id
                                      ? absl::StatusOr<KeyRecord>(*blob_key)
                                      : store_.GetKey(blob.key_id);
  // A blob naming an unknown key (or one deleted since) looks like any other
  // undecryptable blob.
  if (absl::IsNotFound(key.status())) return InvalidCiphertextError();
  KMS_RETURN_IF_ERROR(key.status());
  KMS_RETURN_IF_ERROR(CheckUsableForCrypto(*key, names_.KeyArn(key->key_id)));
  absl::StatusOr<keystore::KeyVersionRecord> version = store_.GetVersion(blob.key_version_id);
  if (absl::IsNotFound(version.status())) return InvalidCiphertextError();
  KMS_RETURN_IF_ERROR(version.status());
  if (version->key_id != blob.key_id) return InvalidCiphertextError();
  if (version->material_deleted) {
    return InvalidStateError(absl::StrCat(
        "the imported key material ", version->version_id, " of key '",
        names_.KeyArn(key->key_id),
        "' was deleted or has expired; re-import the same material to decrypt this"));
  }

  absl::StatusOr<SecretBytes> plaintext = hsm_.DecryptGcm(
      blob.key_version_id, blob.iv, blob.ciphertext, BlobAad(blob, CanonicalContext(context)));
  if (absl::IsInvalidArgument(plaintext.status())) return InvalidCiphertextError();
  if (absl::IsNotFound(plaintext.status())) {
    // Metadata says the version exists but the token has no such object:
    // someone removed it behind kmsd's back. Loud, and not the caller's fault.
    KMS_LOG(ERROR) << "key version " << blob.key_version_id << " of key " << blob.key_id
                   << " has no HSM object";
    return InternalError("key material is missing from the HSM");
  }
  if (!plaintext.ok()) return FromHsm(plaintext.status(), "DecryptGcm");
  return Decrypted{*std::move(key), *std::move(plaintext)};
}

// ------------------------------------------------------------------ keys

absl::StatusOr<v1::CreateKeyResponse> KeyService::CreateKey(const v1::CreateKeyRequest& request) {
  KMS_RETURN_IF_ERROR(ValidateDescription(request.description()));
  if (request.key_usage() != v1::KEY_USAGE_UNSPECIFIED &&
      request.key_usage() != v1::ENCRYPT_DECRYPT) {
    return ValidationError(absl::StrCat("key_usage must be ENCRYPT_DECRYPT, got ",
                                        v1::KeyUsage_Name(request.key_usage())));
  }
  if (request.key_spec() != v1::KEY_SPEC_UNSPECIFIED &&
      request.key_spec() != v1::SYMMETRIC_DEFAULT) {
    return ValidationError(absl::StrCat("key_spec must be SYMMETRIC_DEFAULT, got ",
                                        v1::KeySpec_Name(request.key_spec())));
  }
  if (!v1::OriginType_IsValid(request.origin())) {
    return ValidationError(absl::StrCat("origin must be AWS_KMS or EXTERNAL, got ",
                                        static_cast<int>(request.origin())));
  }
  std::vector<keystore::TagRecord> tags;
  for (const auto& tag : request.tags()) tags.push_back({tag.tag_key(), tag.tag_value()});
  KMS_RETURN_IF_ERROR(ValidateTags(tags));
  const int period = request.has_rotation_period_in_days()
                         ? request.rotation_period_in_days()
                         : options_.default_rotation_period_days;
  if (request.has_rotation_period_in_days() && !request.enable_key_rotation()) {
    return ValidationError("rotation_period_in_days needs enable_key_rotation");
  }
  if (request.enable_key_rotation()) {
    KMS_RETURN_IF_ERROR(CheckRange("rotation_period_in_days", period,
                                   options_.min_rotation_period_days,
                                   options_.max_rotation_period_days));
    if (request.origin() == v1::EXTERNAL) {
      return UnsupportedOperationError(
          "keys with imported material (origin EXTERNAL) are not rotated automatically");
    }
  }

  if (!request.policy().empty()) {
    KMS_RETURN_IF_ERROR(policy::Policy::Parse(request.policy()).status());
  }

  const absl::Time now = NowMicros(clock_);
  KeyRecord key;
  key.key_id = NewUuid();
  key.description = request.description();
  key.creation_time = now;
  key.policy = request.policy();
  std::optional<keystore::KeyVersionRecord> version;
  if (request.origin() == v1::EXTERNAL) {
    key.origin = keystore::KeyOrigin::kExternal;
    key.state = KeyState::kPendingImport;
  } else {
    key.origin = keystore::KeyOrigin::kKms;
    key.state = KeyState::kEnabled;
    version.emplace();
    version->version_id = NewUuid();
    version->key_id = key.key_id;
    version->creation_time = now;
    key.current_version_id = version->version_id;
    if (request.enable_key_rotation()) {
      key.rotation_enabled = true;
      key.rotation_period_days = period;
      key.next_rotation_time = now + absl::Hours(24) * period;
    }
  }

  absl::MutexLock lock(&control_mu_);
  int64_t intent_id = 0;
  if (version.has_value()) {
    // Intent first, so a crash after the HSM step leaves a record of the
    // object to roll back (Recover()).
    KMS_ASSIGN_OR_RETURN(intent_id,
                         store_.AddIntent({0, std::string(kIntentCreateVersion), key.key_id,
                                           version->version_id, now}));
    CrashPoint("create:after-intent");
    absl::Status generated = hsm_.GenerateAesKey(version->version_id);
    if (!generated.ok()) {
      // Nothing was created; a leftover intent would be harmless, but tidy up.
      (void)store_.RemoveIntent(intent_id);
      return FromHsm(generated, "GenerateAesKey");
    }
    CrashPoint("create:after-generate");
  }
  absl::Status committed = store_.CreateKey(key, version, tags);
  if (!committed.ok()) {
    if (version.has_value()) {
      // Roll back now; if that fails too, the intent makes Recover() do it.
      if (hsm_.DestroyKey(version->version_id).ok()) (void)store_.RemoveIntent(intent_id);
    }
    return committed;
  }
  if (version.has_value()) {
    CrashPoint("create:after-commit");
    // Losing this removal is harmless: Recover() sees the committed version.
    if (absl::Status s = store_.RemoveIntent(intent_id); !s.ok()) {
      KMS_LOG(WARNING) << "could not clear intent " << intent_id << ": " << s;
    }
  }
  KMS_LOG(INFO) << "created key " << key.key_id << " (origin "
                << keystore::KeyOriginName(key.origin) << ")";
  v1::CreateKeyResponse response;
  *response.mutable_key_metadata() = ToMetadata(key);
  response.mutable_key_metadata()->set_key_version_count(version.has_value() ? 1 : 0);
  return response;
}

absl::StatusOr<v1::DescribeKeyResponse> KeyService::DescribeKey(
    const v1::DescribeKeyRequest& request) {
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::KeyVersionRecord> versions,
                       store_.ListVersions(key.key_id));
  v1::DescribeKeyResponse response;
  *response.mutable_key_metadata() = ToMetadata(key);
  response.mutable_key_metadata()->set_key_version_count(static_cast<int32_t>(versions.size()));
  return response;
}

absl::StatusOr<v1::ListKeysResponse> KeyService::ListKeys(const v1::ListKeysRequest& request) {
  KMS_ASSIGN_OR_RETURN(int limit, ListLimit(request.has_limit()
                                                ? std::optional<int>(request.limit())
                                                : std::nullopt));
  if (!request.marker().empty() && !UuidToBytes(request.marker())) {
    return ValidationError(absl::StrCat("marker '", request.marker(),
                                        "' was not returned by ListKeys"));
  }
  KMS_ASSIGN_OR_RETURN(keystore::Page<KeyRecord> page, store_.ListKeys(limit, request.marker()));
  v1::ListKeysResponse response;
  for (const KeyRecord& key : page.items) {
    v1::KeyListEntry* entry = response.add_keys();
    entry->set_key_id(key.key_id);
    entry->set_key_arn(names_.KeyArn(key.key_id));
  }
  response.set_next_marker(page.next_marker);
  response.set_truncated(!page.next_marker.empty());
  return response;
}

absl::Status KeyService::SetEnabled(absl::string_view key_id, bool enabled) {
  const KeyState from = enabled ? KeyState::kDisabled : KeyState::kEnabled;
  const KeyState to = enabled ? KeyState::kEnabled : KeyState::kDisabled;
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", key_id));
  if (key.state == to) return absl::OkStatus();  // idempotent, as in AWS KMS
  if (key.state != from) {
    return InvalidStateError(absl::StrCat("key '", key_id, "' is ", StateText(key.state),
                                          " and cannot be ", enabled ? "enabled" : "disabled"));
  }
  key.state = to;
  KMS_RETURN_IF_ERROR(store_.UpdateKey(key));
  KMS_LOG(INFO) << (enabled ? "enabled" : "disabled") << " key " << key.key_id;
  return absl::OkStatus();
}

absl::StatusOr<v1::EnableKeyResponse> KeyService::EnableKey(const v1::EnableKeyRequest& request) {
  KMS_RETURN_IF_ERROR(SetEnabled(request.key_id(), true));
  return v1::EnableKeyResponse();
}

absl::StatusOr<v1::DisableKeyResponse> KeyService::DisableKey(
    const v1::DisableKeyRequest& request) {
  KMS_RETURN_IF_ERROR(SetEnabled(request.key_id(), false));
  return v1::DisableKeyResponse();
}

absl::StatusOr<v1::UpdateKeyDescriptionResponse> KeyService::UpdateKeyDescription(
    const v1::UpdateKeyDescriptionRequest& request) {
  KMS_RETURN_IF_ERROR(ValidateDescription(request.description()));
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, request.key_id()));
  key.description = request.description();
  KMS_RETURN_IF_ERROR(store_.UpdateKey(key));
  return v1::UpdateKeyDescriptionResponse();
}

absl::StatusOr<v1::ScheduleKeyDeletionResponse> KeyService::ScheduleKeyDeletion(
    const v1::ScheduleKeyDeletionRequest& request) {
  const int days = request.has_pending_window_in_days() ? request.pending_window_in_days()
                                                        : kDefaultPendingWindowDays;
  KMS_RETURN_IF_ERROR(
      CheckRange("pending_window_in_days", days, kMinPendingWindowDays, kMaxPendingWindowDays));
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  if (key.state == KeyState::kPendingDeletion) {
    return InvalidStateError(absl::StrCat("key '", request.key_id(),
                                          "' is already pending deletion"));
  }
  key.state = KeyState::kPendingDeletion;
  key.deletion_time = NowMicros(clock_) + absl::Hours(24) * days;
  KMS_RETURN_IF_ERROR(store_.UpdateKey(key));
  KMS_LOG(INFO) << "key " << key.key_id << " scheduled for deletion at "
                << absl::FormatTime(*key.deletion_time, absl::UTCTimeZone());
  v1::ScheduleKeyDeletionResponse response;
  response.set_key_id(names_.KeyArn(key.key_id));
  *response.mutable_deletion_date() = ToTimestamp(*key.deletion_time);
  response.set_key_state(v1::PENDING_DELETION);
  response.set_pending_window_in_days(days);
  return response;
}

absl::StatusOr<v1::CancelKeyDeletionResponse> KeyService::CancelKeyDeletion(
    const v1::CancelKeyDeletionRequest& request) {
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  if (key.state != KeyState::kPendingDeletion) {
    return InvalidStateError(absl::StrCat("key '", request.key_id(), "' is ",
                                          StateText(key.state), ", not pending deletion"));
  }
  // As in AWS KMS: a cancelled key comes back disabled, so nothing starts
  // using it again by surprise; one without material waits for import.
  bool has_material = !key.current_version_id.empty();
  if (has_material) {
    KMS_ASSIGN_OR_RETURN(keystore::KeyVersionRecord current,
                         store_.GetVersion(key.current_version_id));
    has_material = !current.material_deleted;
  }
  key.state = has_material ? KeyState::kDisabled : KeyState::kPendingImport;
  key.deletion_time.reset();
  KMS_RETURN_IF_ERROR(store_.UpdateKey(key));
  KMS_LOG(INFO) << "deletion of key " << key.key_id << " cancelled";
  v1::CancelKeyDeletionResponse response;
  response.set_key_id(names_.KeyArn(key.key_id));
  return response;
}

// ------------------------------------------------------------------ aliases

absl::StatusOr<v1::CreateAliasResponse> KeyService::CreateAlias(
    const v1::CreateAliasRequest& request) {
  KMS_RETURN_IF_ERROR(ValidateAliasName(request.alias_name()));
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key,
                       ResolveKeyNotAlias("target_key_id", request.target_key_id()));
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, request.target_key_id()));
  const absl::Time now = NowMicros(clock_);
  absl::Status s = store_.CreateAlias({request.alias_name(), key.key_id, now, now});
  if (absl::IsAlreadyExists(s)) {
    return AlreadyExistsError(absl::StrCat("alias '", request.alias_name(), "' already exists"));
  }
  KMS_RETURN_IF_ERROR(s);
  return v1::CreateAliasResponse();
}

absl::StatusOr<v1::UpdateAliasResponse> KeyService::UpdateAlias(
    const v1::UpdateAliasRequest& request) {
  KMS_RETURN_IF_ERROR(ValidateAliasName(request.alias_name()));
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key,
                       ResolveKeyNotAlias("target_key_id", request.target_key_id()));
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, request.target_key_id()));
  absl::Status s = store_.UpdateAlias(request.alias_name(), key.key_id, NowMicros(clock_));
  if (absl::IsNotFound(s)) {
    return NotFoundError(absl::StrCat("alias '", request.alias_name(), "' does not exist"));
  }
  KMS_RETURN_IF_ERROR(s);
  return v1::UpdateAliasResponse();
}

absl::StatusOr<v1::DeleteAliasResponse> KeyService::DeleteAlias(
    const v1::DeleteAliasRequest& request) {
  KMS_RETURN_IF_ERROR(ValidateAliasName(request.alias_name()));
  absl::MutexLock lock(&control_mu_);
  absl::Status s = store_.DeleteAlias(request.alias_name());
  if (absl::IsNotFound(s)) {
    return NotFoundError(absl::StrCat("alias '", request.alias_name(), "' does not exist"));
  }
  KMS_RETURN_IF_ERROR(s);
  return v1::DeleteAliasResponse();
}

absl::StatusOr<v1::ListAliasesResponse> KeyService::ListAliases(
    const v1::ListAliasesRequest& request) {
  KMS_ASSIGN_OR_RETURN(int limit, ListLimit(request.has_limit()
                                                ? std::optional<int>(request.limit())
                                                : std::nullopt));
  std::optional<std::string> key_filter;
  if (!request.key_id().empty()) {
    KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKeyNotAlias("key_id", request.key_id()));
    key_filter = key.key_id;
  }
  if (!request.marker().empty()) KMS_RETURN_IF_ERROR(ValidateAliasName(request.marker()));
  KMS_ASSIGN_OR_RETURN(keystore::Page<keystore::AliasRecord> page,
                       store_.ListAliases(key_filter, limit, request.marker()));
  v1::ListAliasesResponse response;
  for (const auto& alias : page.items) {
    v1::AliasListEntry* entry = response.add_aliases();
    entry->set_alias_name(alias.alias_name);
    entry->set_alias_arn(names_.AliasArn(alias.alias_name));
    entry->set_target_key_id(alias.key_id);
    *entry->mutable_creation_date() = ToTimestamp(alias.creation_time);
    *entry->mutable_last_updated_date() = ToTimestamp(alias.last_updated_time);
  }
  response.set_next_marker(page.next_marker);
  response.set_truncated(!page.next_marker.empty());
  return response;
}

// ------------------------------------------------------------------ tags

absl::StatusOr<v1::TagResourceResponse> KeyService::TagResource(
    const v1::TagResourceRequest& request) {
  if (request.tags().empty()) return ValidationError("tags is required");
  std::vector<keystore::TagRecord> tags;
  for (const auto& tag : request.tags()) tags.push_back({tag.tag_key(), tag.tag_value()});
  KMS_RETURN_IF_ERROR(ValidateTags(tags));
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, request.key_id()));
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::TagRecord> existing, store_.ListTags(key.key_id));
  size_t added = 0;
  for (const auto& tag : tags) {
    bool present = false;
    for (const auto& old : existing) present = present || old.key == tag.key;
    if (!present) ++added;
  }
  if (existing.size() + added > kMaxTagsPerKey) {
    return LimitExceededError(absl::StrCat("a key may have at most ", kMaxTagsPerKey,
                                           " tags; this would make ", existing.size() + added));
  }
  KMS_RETURN_IF_ERROR(store_.PutTags(key.key_id, tags));
  return v1::TagResourceResponse();
}

absl::StatusOr<v1::UntagResourceResponse> KeyService::UntagResource(
    const v1::UntagResourceRequest& request) {
  if (request.tag_keys().empty()) return ValidationError("tag_keys is required");
  std::vector<std::string> keys(request.tag_keys().begin(), request.tag_keys().end());
  KMS_RETURN_IF_ERROR(ValidateTagKeys(keys));
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, request.key_id()));
  KMS_RETURN_IF_ERROR(store_.RemoveTags(key.key_id, keys));
  return v1::UntagResourceResponse();
}

absl::StatusOr<v1::ListResourceTagsResponse> KeyService::ListResourceTags(
    const v1::ListResourceTagsRequest& request) {
  KMS_ASSIGN_OR_RETURN(int limit,
                       ListLimit(request.has_limit() ? std::optional<int>(request.limit())
                                                     : std::nullopt,
                                 static_cast<int>(kMaxTagsPerKey), static_cast<int>(kMaxTagsPerKey)));
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::TagRecord> tags, store_.ListTags(key.key_id));
  // At most 50 tags per key: page in memory; the marker is the last tag key.
  v1::ListResourceTagsResponse response;
  for (const auto& tag : tags) {
    if (!request.marker().empty() && tag.key <= request.marker()) continue;
    if (response.tags_size() == limit) {
      response.set_next_marker(response.tags(limit - 1).tag_key());
      response.set_truncated(true);
      break;
    }
    v1::Tag* out = response.add_tags();
    out->set_tag_key(tag.key);
    out->set_tag_value(tag.value);
  }
  return response;
}

// ------------------------------------------------------------------ rotation

namespace {
v1::RotationType ToRotationType(keystore::VersionOrigin origin) {
  switch (origin) {
    case keystore::VersionOrigin::kAutomatic: return v1::AUTOMATIC;
    case keystore::VersionOrigin::kOnDemand: return v1::ON_DEMAND;
    case keystore::VersionOrigin::kUsageLimit: return v1::USAGE_LIMIT;
    case keystore::VersionOrigin::kCreated: return v1::ORIGINAL;
  }
  return v1::ROTATION_TYPE_UNSPECIFIED;
}
}  // namespace

absl::Status KeyService::CheckRotatable(const KeyRecord& key, absl::string_view name) const {
  if (key.origin == keystore::KeyOrigin::kExternal) {
    return UnsupportedOperationError(absl::StrCat(
        "key '", name,
        "' has imported material (origin EXTERNAL): kmsd cannot rotate it; rotate it by "
        "importing new material (ImportKeyMaterial with import_type NEW_KEY_MATERIAL)"));
  }
  return CheckUsableForCrypto(key, name);
}

absl::StatusOr<std::string> KeyService::RotateLocked(KeyRecord key,
                                                     keystore::VersionOrigin origin) {
  const absl::Time now = NowMicros(clock_);
  keystore::KeyVersionRecord version;
  version.version_id = NewUuid();
  version.key_id = key.key_id;
  version.creation_time = now;
  version.origin = origin;
  // Same protocol as CreateKey, and the same intent kind, so Recover() rolls
  // an interrupted rotation back: the key stays on its old current version.
  KMS_ASSIGN_OR_RETURN(const int64_t intent_id,
                       store_.AddIntent({0, std::string(kIntentCreateVersion), key.key_id,
                                         version.version_id, now}));
  CrashPoint("rotate:after-intent");
  absl::Status generated = hsm_.GenerateAesKey(version.version_id);
  if (!generated.ok()) {
    (void)store_.RemoveIntent(intent_id);
    return FromHsm(generated, "GenerateAesKey(rotation)");
  }
  CrashPoint("rotate:after-generate");
  key.current_version_id = version.version_id;
  // Only the schedule moves the schedule; on-demand and usage rotations
  // leave the next automatic rotation where it was.
  if (origin == keystore::VersionOrigin::kAutomatic && key.rotation_enabled) {
    key.next_rotation_time = now + absl::Hours(24) * key.rotation_period_days;
  }
  absl::Status committed = store_.AddVersion(version, key);
  if (!committed.ok()) {
    if (hsm_.DestroyKey(version.version_id).ok()) (void)store_.RemoveIntent(intent_id);
    return committed;
  }
  CrashPoint("rotate:after-commit");
  if (absl::Status s = store_.RemoveIntent(intent_id); !s.ok()) {
    KMS_LOG(WARNING) << "could not clear intent " << intent_id << ": " << s;
  }
  KMS_LOG(INFO) << "rotated key " << key.key_id << " ("
                << keystore::VersionOriginName(origin) << "): current version is now "
                << version.version_id;
  return version.version_id;
}

absl::StatusOr<int> KeyService::RotateDueKeys() {
  absl::MutexLock lock(&control_mu_);
  const absl::Time now = clock_.Now();
  KMS_ASSIGN_OR_RETURN(std::vector<KeyRecord> due, store_.ListKeysDueForRotation(now));
  int rotated = 0;
  for (const KeyRecord& key : due) {
    if (key.origin == keystore::KeyOrigin::kExternal) continue;
    if (RotationBackingOff(key.key_id, now)) continue;
    absl::StatusOr<std::string> version = RotateLocked(key, keystore::VersionOrigin::kAutomatic);
    RecordRotationOutcome(key.key_id, now, version.status(), "scheduled");
    if (version.ok()) ++rotated;
  }
  return rotated;
}

bool KeyService::RotationBackingOff(const std::string& key_id, absl::Time now) const {
  auto it = rotation_backoff_.find(key_id);
  return it != rotation_backoff_.end() && now < it->second.next_attempt;
}

void KeyService::RecordRotationOutcome(const std::string& key_id, absl::Time now,
                                       const absl::Status& status, absl::string_view kind) {
  if (status.ok()) {
    rotation_backoff_.erase(key_id);
    return;
  }
  Backoff& b = rotation_backoff_[key_id];
  ++b.failures;
  const absl::Duration delay =
      std::min(absl::Minutes(1) * (int64_t{1} << std::min(b.failures - 1, 6)), absl::Hours(1));
  b.next_attempt = now + delay;
  KMS_LOG(ERROR) << kind << " rotation of key " << key_id << " failed (attempt " << b.failures
                 << "), retrying in " << absl::FormatDuration(delay) << ": " << status;
}

absl::StatusOr<int64_t> KeyService::CountEncryption(const std::string& version_id) {
  absl::MutexLock lock(&usage_mu_);
  auto it = usage_.find(version_id);
  if (it == usage_.end()) {
    KMS_ASSIGN_OR_RETURN(keystore::KeyVersionRecord version, store_.GetVersion(version_id));
    // After a restart, everything reserved before counts as used: the count
    // may run ahead of the truth, never behind it.
    it = usage_.emplace(version_id, Usage{version.encryptions_reserved,
                                          version.encryptions_reserved}).first;
  }
  Usage& usage = it->second;
  if (usage.used >= options_.usage_hard_limit) {
    return LimitExceededError(absl::StrCat(
        "key version ", version_id, " has reached its limit of ", options_.usage_hard_limit,
        " encryptions; rotate the key (RotateKeyOnDemand) to continue"));
  }
  if (usage.used == usage.reserved) {
    const int64_t reserved =
        std::min(usage.reserved + options_.usage_reservation_block, options_.usage_hard_limit);
    KMS_RETURN_IF_ERROR(store_.ReserveEncryptions(version_id, reserved));
    usage.reserved = reserved;
  }
  return ++usage.used;
}

void KeyService::MaybeRotateForUsage(const std::string& key_id, const std::string& version_id) {
  // Never wait behind a control-plane change on the data path; whoever
  // encrypts next past the threshold tries again.
  if (!control_mu_.TryLock()) return;
  // A failing rotation backs off like a scheduled one, so the data path
  // does not retry it (two database writes) on every encryption.
  const absl::Time now = clock_.Now();
  absl::StatusOr<KeyRecord> key = store_.GetKey(key_id);
  if (!RotationBackingOff(key_id, now) && key.ok() && key->current_version_id == version_id &&
      key->origin == keystore::KeyOrigin::kKms && key->state == KeyState::kEnabled) {
    absl::StatusOr<std::string> rotated = RotateLocked(*key, keystore::VersionOrigin::kUsageLimit);
    RecordRotationOutcome(key_id, now, rotated.status(), "usage-limit");
  }
  control_mu_.Unlock();
}

absl::StatusOr<v1::EnableKeyRotationResponse> KeyService::EnableKeyRotation(
    const v1::EnableKeyRotationRequest& request) {
  if (request.has_rotation_period_in_days()) {
    KMS_RETURN_IF_ERROR(CheckRange("rotation_period_in_days", request.rotation_period_in_days(),
                                   options_.min_rotation_period_days,
                                   options_.max_rotation_period_days));
  }
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_RETURN_IF_ERROR(CheckRotatable(key, request.key_id()));
  int period = request.has_rotation_period_in_days() ? request.rotation_period_in_days()
                                                     : key.rotation_period_days;
  if (period == 0) period = options_.default_rotation_period_days;
  KMS_ASSIGN_OR_RETURN(keystore::KeyVersionRecord current,
                       store_.GetVersion(key.current_version_id));
  key.rotation_enabled = true;
  key.rotation_period_days = period;
  // Due a period after the current material was made: a key enabled late
  // rotates at the scheduler's next run.
  key.next_rotation_time = current.creation_time + absl::Hours(24) * period;
  KMS_RETURN_IF_ERROR(store_.UpdateKey(key));
  KMS_LOG(INFO) << "rotation of key " << key.key_id << " enabled every " << period << " days";
  return v1::EnableKeyRotationResponse();
}

absl::StatusOr<v1::DisableKeyRotationResponse> KeyService::DisableKeyRotation(
    const v1::DisableKeyRotationRequest& request) {
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_RETURN_IF_ERROR(CheckRotatable(key, request.key_id()));
  key.rotation_enabled = false;
  key.next_rotation_time.reset();  // the period is kept for a later EnableKeyRotation
  KMS_RETURN_IF_ERROR(store_.UpdateKey(key));
  KMS_LOG(INFO) << "rotation of key " << key.key_id << " disabled";
  return v1::DisableKeyRotationResponse();
}

absl::StatusOr<v1::GetKeyRotationStatusResponse> KeyService::GetKeyRotationStatus(
    const v1::GetKeyRotationStatusRequest& request) {
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  v1::GetKeyRotationStatusResponse response;
  response.set_key_id(names_.KeyArn(key.key_id));
  response.set_key_rotation_enabled(key.rotation_enabled);
  response.set_rotation_period_in_days(key.rotation_period_days);
  if (key.next_rotation_time) *response.mutable_next_rotation_date() = ToTimestamp(*key.next_rotation_time);
  absl::MutexLock lock(&usage_mu_);
  if (auto it = on_demand_started_.find(key.key_id); it != on_demand_started_.end()) {
    *response.mutable_on_demand_rotation_start_date() = ToTimestamp(it->second);
  }
  return response;
}

absl::StatusOr<v1::RotateKeyOnDemandResponse> KeyService::RotateKeyOnDemand(
    const v1::RotateKeyOnDemandRequest& request) {
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  if (key.origin == keystore::KeyOrigin::kExternal) {
    return UnsupportedOperationError(absl::StrCat(
        "key '", request.key_id(),
        "' has imported material (origin EXTERNAL): rotate it by importing new material "
        "(ImportKeyMaterial with import_type NEW_KEY_MATERIAL)"));
  }
  KMS_RETURN_IF_ERROR(CheckUsableForCrypto(key, request.key_id()));
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::KeyVersionRecord> versions,
                       store_.ListVersions(key.key_id));
  const auto on_demand = std::count_if(versions.begin(), versions.end(), [](const auto& v) {
    return v.origin == keystore::VersionOrigin::kOnDemand;
  });
  if (on_demand >= options_.on_demand_rotation_limit) {
    return LimitExceededError(absl::StrCat("key '", request.key_id(), "' has had ", on_demand,
                                           " on-demand rotations, the limit is ",
                                           options_.on_demand_rotation_limit));
  }
  {
    absl::MutexLock usage_lock(&usage_mu_);
    on_demand_started_[key.key_id] = NowMicros(clock_);
  }
  absl::StatusOr<std::string> version = RotateLocked(key, keystore::VersionOrigin::kOnDemand);
  {
    absl::MutexLock usage_lock(&usage_mu_);
    on_demand_started_.erase(key.key_id);
  }
  KMS_RETURN_IF_ERROR(version.status());
  v1::RotateKeyOnDemandResponse response;
  response.set_key_id(names_.KeyArn(key.key_id));
  response.set_key_version_id(*version);
  return response;
}

absl::StatusOr<v1::ListKeyRotationsResponse> KeyService::ListKeyRotations(
    const v1::ListKeyRotationsRequest& request) {
  KMS_ASSIGN_OR_RETURN(int limit, ListLimit(request.has_limit()
                                                ? std::optional<int>(request.limit())
                                                : std::nullopt));
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::KeyVersionRecord> versions,
                       store_.ListVersions(key.key_id));
  // Versions are oldest first; the marker is the last version id returned.
  auto start = versions.begin();
  if (!request.marker().empty()) {
    start = std::find_if(versions.begin(), versions.end(),
                         [&](const auto& v) { return v.version_id == request.marker(); });
    if (start == versions.end()) {
      return ValidationError(absl::StrCat("marker '", request.marker(),
                                          "' was not returned by ListKeyRotations for this key"));
    }
    ++start;
  }
  if (!v1::IncludeKeyMaterial_IsValid(request.include_key_material())) {
    return ValidationError(absl::StrCat(
        "include_key_material must be ROTATIONS_ONLY or ALL_KEY_MATERIAL, got ",
        static_cast<int>(request.include_key_material())));
  }
  // The key's first material is not a rotation; it is listed only on request.
  const bool all_material = request.include_key_material() == v1::ALL_KEY_MATERIAL;
  v1::ListKeyRotationsResponse response;
  for (auto it = start; it != versions.end(); ++it) {
    if (it->origin == keystore::VersionOrigin::kCreated && !all_material) continue;
    if (response.rotations_size() == limit) {
      response.set_next_marker(response.rotations(limit - 1).key_version_id());
      response.set_truncated(true);
      break;
    }
    v1::RotationsListEntry* entry = response.add_rotations();
    entry->set_key_id(key.key_id);
    entry->set_key_version_id(it->version_id);
    *entry->mutable_rotation_date() = ToTimestamp(it->creation_time);
    entry->set_rotation_type(ToRotationType(it->origin));
    entry->set_current(it->version_id == key.current_version_id);
    if (key.origin == keystore::KeyOrigin::kExternal) {
      entry->set_import_state(it->material_deleted ? v1::PENDING_REIMPORT : v1::IMPORTED);
      entry->set_key_check_value(absl::AsciiStrToUpper(absl::BytesToHexString(it->key_check_value)));
    }
  }
  return response;
}

absl::StatusOr<v1::GetRotationComplianceReportResponse> KeyService::GetRotationComplianceReport(
    const v1::GetRotationComplianceReportRequest& request) {
  const int max_age = request.has_max_age_in_days() ? request.max_age_in_days()
                                                    : options_.compliance_max_age_days;
  KMS_RETURN_IF_ERROR(CheckRange("max_age_in_days", max_age, 1, 36500));
  const absl::Time now = clock_.Now();
  v1::GetRotationComplianceReportResponse response;
  response.set_max_age_in_days(max_age);
  std::string marker;
  do {
    KMS_ASSIGN_OR_RETURN(keystore::Page<KeyRecord> page, store_.ListKeys(kMaxListLimit, marker));
    for (const KeyRecord& key : page.items) {
      // Keys being erased or without material have nothing to rotate.
      if (key.state != KeyState::kEnabled && key.state != KeyState::kDisabled) continue;
      KMS_ASSIGN_OR_RETURN(keystore::KeyVersionRecord current,
                           store_.GetVersion(key.current_version_id));
      v1::RotationComplianceStatus status = v1::COMPLIANT;
      if (!key.rotation_enabled || key.origin == keystore::KeyOrigin::kExternal) {
        status = v1::ROTATION_DISABLED;
      } else if (now - current.creation_time > absl::Hours(24) * max_age) {
        status = v1::OVERDUE;
      }
      if (status == v1::COMPLIANT && !request.include_compliant()) continue;
      v1::RotationComplianceEntry* entry = response.add_keys();
      entry->set_key_id(key.key_id);
      entry->set_arn(names_.KeyArn(key.key_id));
      entry->set_key_state(ToProtoState(key.state));
      entry->set_key_rotation_enabled(key.rotation_enabled);
      entry->set_rotation_period_in_days(key.rotation_period_days);
      *entry->mutable_last_rotation_date() = ToTimestamp(current.creation_time);
      if (key.next_rotation_time) {
        *entry->mutable_next_rotation_date() = ToTimestamp(*key.next_rotation_time);
      }
      entry->set_status(status);
    }
    marker = page.next_marker;
  } while (!marker.empty());
  return response;
}

// ------------------------------------------------------------------ access

absl::Status KeyService::PutKeyPolicy(absl::string_view key_id, const std::string& document) {
  absl::MutexLock lock(&control_mu_);
  absl::StatusOr<KeyRecord> key = store_.GetKey(key_id);
  if (absl::IsNotFound(key.status())) return KeyNotFound(key_id);
  KMS_RETURN_IF_ERROR(key.status());
  key->policy = document;
  return store_.UpdateKey(*key);
}

absl::StatusOr<v1::GetKeyInventoryReportResponse> KeyService::GetKeyInventoryReport(
    const v1::GetKeyInventoryReportRequest& request) {
  const int max_age = request.has_max_age_in_days() ? request.max_age_in_days()
                                                    : options_.compliance_max_age_days;
  KMS_RETURN_IF_ERROR(CheckRange("max_age_in_days", max_age, 1, 36500));
  const absl::Time now = clock_.Now();
  v1::GetKeyInventoryReportResponse response;
  *response.mutable_generated_at() = ToTimestamp(now);

  // Aliases by key, from one pass over them all.
  std::map<std::string, std::vector<std::string>> aliases;
  std::string marker;
  do {
    KMS_ASSIGN_OR_RETURN(keystore::Page<keystore::AliasRecord> page,
                         store_.ListAliases(std::nullopt, kMaxListLimit, marker));
    for (const auto& alias : page.items) aliases[alias.key_id].push_back(alias.alias_name);
    marker = page.next_marker;
  } while (!marker.empty());

  do {
    KMS_ASSIGN_OR_RETURN(keystore::Page<KeyRecord> page, store_.ListKeys(kMaxListLimit, marker));
    for (const KeyRecord& key : page.items) {
      KMS_ASSIGN_OR_RETURN(std::vector<keystore::KeyVersionRecord> versions,
                           store_.ListVersions(key.key_id));
      v1::KeyInventoryEntry* entry = response.add_keys();
      entry->set_key_id(key.key_id);
      entry->set_arn(names_.KeyArn(key.key_id));
      for (const std::string& alias : aliases[key.key_id]) entry->add_aliases(alias);
      entry->set_description(key.description);
      entry->set_key_state(ToProtoState(key.state));
      entry->set_origin(key.origin == keystore::KeyOrigin::kExternal ? v1::EXTERNAL
                                                                     : v1::AWS_KMS);
      *entry->mutable_creation_date() = ToTimestamp(key.creation_time);
      entry->set_key_version_count(static_cast<int32_t>(versions.size()));
      std::optional<absl::Time> current_made;
      for (const auto& v : versions) {
        if (v.version_id == key.current_version_id) current_made = v.creation_time;
      }
      if (current_made) *entry->mutable_current_material_date() = ToTimestamp(*current_made);
      entry->set_rotation_enabled(key.rotation_enabled);
      entry->set_rotation_period_in_days(key.rotation_period_days);
      if (key.next_rotation_time) {
        *entry->mutable_next_rotation_date() = ToTimestamp(*key.next_rotation_time);
      }
      if (key.state == KeyState::kEnabled || key.state == KeyState::kDisabled) {
        v1::RotationComplianceStatus status = v1::COMPLIANT;
        if (!key.rotation_enabled || key.origin == keystore::KeyOrigin::kExternal) {
          status = v1::ROTATION_DISABLED;
        } else if (current_made && now - *current_made > absl::Hours(24) * max_age) {
          status = v1::OVERDUE;
        }
        entry->set_rotation_status(status);
      }
      if (key.expiration_model == keystore::ExpirationModel::kExpires) {
        entry->set_expiration_model(v1::KEY_MATERIAL_EXPIRES);
      } else if (key.expiration_model == keystore::ExpirationModel::kDoesNotExpire) {
        entry->set_expiration_model(v1::KEY_MATERIAL_DOES_NOT_EXPIRE);
      }
      if (key.valid_to) *entry->mutable_valid_to() = ToTimestamp(*key.valid_to);
      if (key.deletion_time) *entry->mutable_deletion_date() = ToTimestamp(*key.deletion_time);
    }
    marker = page.next_marker;
  } while (!marker.empty());
  return response;
}

// ------------------------------------------------------------------ data plane

absl::StatusOr<v1::EncryptResponse> KeyService::Encrypt(const v1::EncryptRequest& request,
                                                        const KeyRecord* resolved) {
  KMS_RETURN_IF_ERROR(CheckRange("plaintext length", static_cast<long long>(request.plaintext().size()),
                                 1, kMaxBlobPlaintext));
  const EncryptionContext context = ContextFromProto(request.encryption_context());
  KMS_RETURN_IF_ERROR(ValidateContext(context, "encryption_context"));
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolvedOrResolve(resolved, "key_id", request.key_id()));
  KMS_RETURN_IF_ERROR(CheckUsableForCrypto(key, request.key_id()));
  KMS_ASSIGN_OR_RETURN(std::string blob, EncryptUnder(key, request.plaintext(), context));
  v1::EncryptResponse response;
  response.set_ciphertext_blob(std::move(blob));
  response.set_key_id(names_.KeyArn(key.key_id));
  response.set_encryption_algorithm(v1::SYMMETRIC_DEFAULT_ALGORITHM);
  return response;
}

absl::StatusOr<v1::DecryptResponse> KeyService::Decrypt(const v1::DecryptRequest& request,
                                                        const KeyRecord* key) {
  KMS_RETURN_IF_ERROR(CheckRequired("ciphertext_blob", request.ciphertext_blob()));
  const EncryptionContext context = ContextFromProto(request.encryption_context());
  KMS_RETURN_IF_ERROR(ValidateContext(context, "encryption_context"));
  KMS_ASSIGN_OR_RETURN(Decrypted decrypted,
                       DecryptBlob(request.ciphertext_blob(), context, "key_id", request.key_id(),
                                   key));
  v1::DecryptResponse response;
  response.set_key_id(names_.KeyArn(decrypted.key.key_id));
  // The response owns a copy from here; the server wipes it once sent.
  response.set_plaintext(std::string(decrypted.plaintext.secret()));
  response.set_encryption_algorithm(v1::SYMMETRIC_DEFAULT_ALGORITHM);
  return response;
}

absl::StatusOr<v1::ReEncryptResponse> KeyService::ReEncrypt(const v1::ReEncryptRequest& request) {
  KMS_RETURN_IF_ERROR(CheckRequired("ciphertext_blob", request.ciphertext_blob()));
  const EncryptionContext source_context = ContextFromProto(request.source_encryption_context());
  KMS_RETURN_IF_ERROR(ValidateContext(source_context, "source_encryption_context"));
  const EncryptionContext destination_context =
      ContextFromProto(request.destination_encryption_context());
  KMS_RETURN_IF_ERROR(ValidateContext(destination_context, "destination_encryption_context"));
  // Check the destination before decrypting anything.
  KMS_ASSIGN_OR_RETURN(KeyRecord destination,
                       ResolveKey("destination_key_id", request.destination_key_id()));
  KMS_RETURN_IF_ERROR(CheckUsableForCrypto(destination, request.destination_key_id()));
  KMS_ASSIGN_OR_RETURN(Decrypted source,
                       DecryptBlob(request.ciphertext_blob(), source_context, "source_key_id",
                                   request.source_key_id()));
  KMS_ASSIGN_OR_RETURN(std::string blob,
                       EncryptUnder(destination, source.plaintext.secret(), destination_context));
  v1::ReEncryptResponse response;
  response.set_ciphertext_blob(std::move(blob));
  response.set_source_key_id(names_.KeyArn(source.key.key_id));
  response.set_key_id(names_.KeyArn(destination.key_id));
  return response;
}

absl::StatusOr<std::pair<SecretBytes, std::string>> KeyService::NewDataKey(
    absl::string_view key_id, const google::protobuf::Map<std::string, std::string>& proto_context,
    const std::optional<int>& number_of_bytes, v1::DataKeySpec key_spec,
    const KeyRecord* resolved, KeyRecord* key_out) {
  int length = 0;
  if (number_of_bytes.has_value() == (key_spec != v1::DATA_KEY_SPEC_UNSPECIFIED)) {
    return ValidationError("specify exactly one of key_spec and number_of_bytes");
  }
  if (number_of_bytes.has_value()) {
    KMS_RETURN_IF_ERROR(CheckRange("number_of_bytes", *number_of_bytes, 1, kMaxDataKeyBytes));
    length = *number_of_bytes;
  } else if (key_spec == v1::AES_256) {
    length = 32;
  } else if (key_spec == v1::AES_128) {
    length = 16;
  } else {
    return ValidationError(absl::StrCat("key_spec must be AES_256 or AES_128, got ",
                                        static_cast<int>(key_spec)));
  }
  const EncryptionContext context = ContextFromProto(proto_context);
  KMS_RETURN_IF_ERROR(ValidateContext(context, "encryption_context"));
  KMS_ASSIGN_OR_RETURN(*key_out, ResolvedOrResolve(resolved, "key_id", key_id));
  KMS_RETURN_IF_ERROR(CheckUsableForCrypto(*key_out, key_id));
  // The data key and the blob's IV in one draw: one HSM call (and one audit
  // record) fewer on the busiest path.
  absl::StatusOr<SecretBytes> random =
      hsm_.GenerateRandom(static_cast<size_t>(length) + kBlobIvSize);
  if (!random.ok()) return FromHsm(random.status(), "GenerateRandom(data key and IV)");
  const absl::string_view drawn = random->secret();
  SecretBytes data_key = SecretBytes::CopyFrom(drawn.substr(0, static_cast<size_t>(length)));
  KMS_ASSIGN_OR_RETURN(std::string blob, EncryptUnder(*key_out, data_key.secret(), context,
                                                      drawn.substr(static_cast<size_t>(length))));
  return std::make_pair(std::move(data_key), std::move(blob));
}

absl::StatusOr<v1::GenerateDataKeyResponse> KeyService::GenerateDataKey(
    const v1::GenerateDataKeyRequest& request, const KeyRecord* resolved) {
  KeyRecord key;
  KMS_ASSIGN_OR_RETURN(
      auto data_key,
      NewDataKey(request.key_id(), request.encryption_context(),
                 request.has_number_of_bytes() ? std::optional<int>(request.number_of_bytes())
                                               : std::nullopt,
                 request.key_spec(), resolved, &key));
  v1::GenerateDataKeyResponse response;
  response.set_ciphertext_blob(std::move(data_key.second));
  response.set_plaintext(std::string(data_key.first.secret()));  // wiped by the server once sent
  response.set_key_id(names_.KeyArn(key.key_id));
  return response;
}

absl::StatusOr<v1::GenerateDataKeyWithoutPlaintextResponse>
KeyService::GenerateDataKeyWithoutPlaintext(
    const v1::GenerateDataKeyWithoutPlaintextRequest& request, const KeyRecord* resolved) {
  KeyRecord key;
  KMS_ASSIGN_OR_RETURN(
      auto data_key,
      NewDataKey(request.key_id(), request.encryption_context(),
                 request.has_number_of_bytes() ? std::optional<int>(request.number_of_bytes())
                                               : std::nullopt,
                 request.key_spec(), resolved, &key));
  v1::GenerateDataKeyWithoutPlaintextResponse response;
  response.set_ciphertext_blob(std::move(data_key.second));
  response.set_key_id(names_.KeyArn(key.key_id));
  return response;
}

absl::StatusOr<v1::GenerateRandomResponse> KeyService::GenerateRandom(
    const v1::GenerateRandomRequest& request) {
  KMS_RETURN_IF_ERROR(CheckRange("number_of_bytes", request.number_of_bytes(), 1, kMaxRandomBytes));
  absl::StatusOr<SecretBytes> random =
      hsm_.GenerateRandom(static_cast<size_t>(request.number_of_bytes()));
  if (!random.ok()) return FromHsm(random.status(), "GenerateRandom");
  v1::GenerateRandomResponse response;
  response.set_plaintext(std::string(random->secret()));
  return response;
}

}  // namespace kms::service
