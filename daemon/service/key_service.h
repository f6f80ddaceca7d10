// KeyService: every kmsd operation, as pure logic over an Hsm, a KeyStore and
// a Clock. The gRPC layer (daemon/server) only translates to and from it.
//
// Ownership: borrows the Hsm, KeyStore and Clock, which must outlive it.
// Thread-safe. Control-plane changes (create, state changes, aliases, tags,
// deletion) are serialised by one mutex, so read-modify-write sequences on the
// store never interleave; data-plane calls take no service lock.
//
// Crash safety (DESIGN.md): creating key material writes an intent row
// before the HSM step and removes it after the metadata commit; Recover()
// rolls back whatever a crash interrupted. Deletion is idempotent: the key
// stays PENDING_DELETION until both its HSM objects and its rows are gone.
//
// Errors: each method returns the codes and AWS exception names of
// DESIGN.md's table; the comments below list what is specific to each.
// Every method may also return kUnavailable (KeyUnavailableException) when
// the HSM or database is briefly gone, and kInternal for broken invariants.
#ifndef KMS_DAEMON_SERVICE_KEY_SERVICE_H_
#define KMS_DAEMON_SERVICE_KEY_SERVICE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/clock.h"
#include "daemon/common/secret_bytes.h"
#include "daemon/keystore/key_store.h"
#include "daemon/service/ciphertext_blob.h"
#include "daemon/service/encryption_context.h"
#include "daemon/service/import_token.h"
#include "daemon/service/validation.h"
#include "hsm/hsm.h"
#include "kms/v1/kms.pb.h"

namespace kms::service {

// Intent kinds written to the store before multi-step changes (Recover()).
// create_version: an AES key object `version_id` is about to be made (created,
//   rotated, imported or restored by re-import). Committed once the version
//   row exists with its material present; otherwise the object is destroyed.
// delete_material: the imported material of `key_id` is being destroyed; the
//   HSM objects of versions marked material_deleted are removed.
inline constexpr absl::string_view kIntentCreateVersion = "create_version";
inline constexpr absl::string_view kIntentDeleteMaterial = "delete_material";

// The HSM object id of the AES key that MACs import tokens (import_token.h).
// Made on first use; never a key version (those are UUIDs).
inline constexpr absl::string_view kImportTokenKeyId = "kmsd-import-token-key";

struct ServiceOptions {
  // Resource names are "<prefix>:key/<id>" and "<prefix>:alias/<name>".
  std::string resource_name_prefix = "arn:kmsd:kms:local:000000000000";

  // Rotation periods callers may choose, in days, and the default.
  int min_rotation_period_days = 1;
  int max_rotation_period_days = 2560;
  int default_rotation_period_days = 365;
  // RotateKeyOnDemand calls allowed per key; then LimitExceededException.
  int on_demand_rotation_limit = 25;
  // Encryptions per key version: at the threshold the key rotates (type
  // USAGE_LIMIT); at the hard limit the version refuses to encrypt. AES-GCM
  // with random 96-bit IVs allows 2^32 encryptions per key (SP 800-38D).
  int64_t usage_rotation_threshold = int64_t{1} << 30;
  int64_t usage_hard_limit = int64_t{1} << 32;
  // Encryptions reserved (persisted) at a time, so the count never
  // undercounts after a crash while costing one write per block.
  int64_t usage_reservation_block = 10000;
  // GetRotationComplianceReport's default maximum age of current material.
  int compliance_max_age_days = 365;

  // Import of key material (keys of origin EXTERNAL).
  // How long an import token and its wrapping key pair stay usable.
  absl::Duration import_parameters_lifetime = absl::Hours(24);
  // ImportKeyMaterial's valid_to may be at most this far ahead.
  int max_import_valid_days = 365;
  // Unused GetParametersForImport results a key may have at once; each is an
  // RSA key pair in the HSM until it is used or expires.
  int max_outstanding_import_parameters = 10;

  // Test hook: called at named points of multi-step changes ("rotate:after-
  // generate", ...). The crash-point test makes it kill the process.
  std::function<void(absl::string_view point)> crash_hook;
};

class KeyService {
 public:
  KeyService(hsm::Hsm& hsm, keystore::KeyStore& store, const Clock& clock,
             ServiceOptions options = {});
  KeyService(const KeyService&) = delete;
  KeyService& operator=(const KeyService&) = delete;

  // Start-up: rolls back or completes every intent a crash left behind
  // (removing HSM objects that never got a metadata row), removes wrapping
  // key pairs with no import parameters, then erases keys whose deletion
  // date has passed and imported material past its valid_to. Call once
  // before serving.
  absl::Status Recover();

  // Erases every key whose deletion date is at or before Clock::Now(): its HSM
  // objects are destroyed, then its metadata, aliases and tags. Returns how
  // many keys were erased. A failure leaves the key PENDING_DELETION for the
  // next call. The daemon calls this periodically.
  absl::StatusOr<int> DeleteDueKeys();

  // Destroys imported material whose valid_to is at or before Clock::Now()
  // (the key goes to PENDING_IMPORT; one pending deletion stays so), and
  // expired import parameters with their wrapping key pairs. Returns how
  // many keys lost their material. The daemon calls this periodically.
  absl::StatusOr<int> ExpireImports();

  // Rotates every ENABLED key whose next rotation date is at or before
  // Clock::Now(), once each however long it was overdue, and schedules the
  // next rotation a period from now. A key whose rotation fails is retried
  // with exponential backoff (1 minute doubling to 1 hour); nothing is lost.
  // Returns how many keys rotated. The daemon calls this periodically.
  absl::StatusOr<int> RotateDueKeys();

  // ---- control plane: keys
  // CreateKey: ValidationException (description, usage, spec, origin),
  // TagException, MalformedPolicyDocumentException. The policy is stored as
  // given (AuthorizedService supplies the default one).
  absl::StatusOr<v1::CreateKeyResponse> CreateKey(const v1::CreateKeyRequest& request);
  absl::StatusOr<v1::DescribeKeyResponse> DescribeKey(const v1::DescribeKeyRequest& request);
  absl::StatusOr<v1::ListKeysResponse> ListKeys(const v1::ListKeysRequest& request);
  // EnableKey/DisableKey: KMSInvalidStateException when pending deletion or
  // pending import. Enabling an enabled key (or disabling a disabled one)
  // succeeds and changes nothing.
  absl::StatusOr<v1::EnableKeyResponse> EnableKey(const v1::EnableKeyRequest& request);
  absl::StatusOr<v1::DisableKeyResponse> DisableKey(const v1::DisableKeyRequest& request);
  absl::StatusOr<v1::UpdateKeyDescriptionResponse> UpdateKeyDescription(
      const v1::UpdateKeyDescriptionRequest& request);
  // ScheduleKeyDeletion: pending_window_in_days 7..30 (default 30);
  // KMSInvalidStateException if already pending deletion.
  absl::StatusOr<v1::ScheduleKeyDeletionResponse> ScheduleKeyDeletion(
      const v1::ScheduleKeyDeletionRequest& request);
  // CancelKeyDeletion: the key returns to DISABLED (PENDING_IMPORT if it has
  // no material); KMSInvalidStateException if not pending deletion.
  absl::StatusOr<v1::CancelKeyDeletionResponse> CancelKeyDeletion(
      const v1::CancelKeyDeletionRequest& request);

  // ---- control plane: aliases
  // CreateAlias: InvalidAliasNameException, AlreadyExistsException,
  // NotFoundException (target), KMSInvalidStateException (target pending
  // deletion). The target must be a key id or key resource name.
  absl::StatusOr<v1::CreateAliasResponse> CreateAlias(const v1::CreateAliasRequest& request);
  absl::StatusOr<v1::UpdateAliasResponse> UpdateAlias(const v1::UpdateAliasRequest& request);
  absl::StatusOr<v1::DeleteAliasResponse> DeleteAlias(const v1::DeleteAliasRequest& request);
  absl::StatusOr<v1::ListAliasesResponse> ListAliases(const v1::ListAliasesRequest& request);

  // ---- control plane: tags (TagException for bad tags, LimitExceededException
  // past 50 tags on a key, KMSInvalidStateException when pending deletion)
  absl::StatusOr<v1::TagResourceResponse> TagResource(const v1::TagResourceRequest& request);
  absl::StatusOr<v1::UntagResourceResponse> UntagResource(
      const v1::UntagResourceRequest& request);
  absl::StatusOr<v1::ListResourceTagsResponse> ListResourceTags(
      const v1::ListResourceTagsRequest& request);

  // ---- control plane: rotation. Keys with imported material (origin
  // EXTERNAL) are not rotated: UnsupportedOperationException.
  // EnableKeyRotation: rotation_period_in_days within the configured range;
  // the next rotation is due a period after the current material was made.
  absl::StatusOr<v1::EnableKeyRotationResponse> EnableKeyRotation(
      const v1::EnableKeyRotationRequest& request);
  absl::StatusOr<v1::DisableKeyRotationResponse> DisableKeyRotation(
      const v1::DisableKeyRotationRequest& request);
  absl::StatusOr<v1::GetKeyRotationStatusResponse> GetKeyRotationStatus(
      const v1::GetKeyRotationStatusRequest& request);
  // RotateKeyOnDemand: new material becomes current; DisabledException,
  // KMSInvalidStateException, LimitExceededException past the per-key limit.
  absl::StatusOr<v1::RotateKeyOnDemandResponse> RotateKeyOnDemand(
      const v1::RotateKeyOnDemandRequest& request);
  absl::StatusOr<v1::ListKeyRotationsResponse> ListKeyRotations(
      const v1::ListKeyRotationsRequest& request);
  // Keys (ENABLED or DISABLED) whose rotation is disabled or whose current
  // material is older than max_age_in_days.
  absl::StatusOr<v1::GetRotationComplianceReportResponse> GetRotationComplianceReport(
      const v1::GetRotationComplianceReportRequest& request);

  // ---- control plane: import of key material (keys of origin EXTERNAL;
  // UnsupportedOperationException for others, KMSInvalidStateException when
  // pending deletion).
  // GetParametersForImport: a new RSA wrapping key pair in the HSM and a
  // token for it, both valid import_parameters_lifetime.
  // UnsupportedOperationException for a wrapping algorithm this HSM cannot
  // unwrap (the message lists those it can); LimitExceededException past
  // max_outstanding_import_parameters unused ones.
  absl::StatusOr<v1::GetParametersForImportResponse> GetParametersForImport(
      const v1::GetParametersForImportRequest& request);
  // ImportKeyMaterial: unwraps the material straight into the HSM, checks
  // it there, and commits it; any failure leaves nothing behind and the
  // token usable. InvalidImportTokenException (altered, for another key,
  // already used), ExpiredImportTokenException, InvalidCiphertextException
  // (does not unwrap), IncorrectKeyMaterialException (not 32 bytes, weak,
  // not the expected KCV, not the material this key had before, already in
  // another key without allow_duplicate_key_material, already a version of
  // this key), LimitExceededException (NEW_KEY_MATERIAL past the on-demand
  // rotation limit).
  absl::StatusOr<v1::ImportKeyMaterialResponse> ImportKeyMaterial(
      const v1::ImportKeyMaterialRequest& request);
  // DeleteImportedKeyMaterial: destroys every version's material at once;
  // the key goes to PENDING_IMPORT until the same material is re-imported.
  // Succeeds and changes nothing for a key without material.
  absl::StatusOr<v1::DeleteImportedKeyMaterialResponse> DeleteImportedKeyMaterial(
      const v1::DeleteImportedKeyMaterialRequest& request);

  // ---- data plane. Keys must be ENABLED: DisabledException for a disabled
  // key, KMSInvalidStateException for one pending deletion or import.
  // `key`, where a method takes one, is the key's record as the caller has
  // just read it to authorise the call (AuthorizedService): the call then
  // uses that record instead of reading it again, so authorisation and use
  // see one state of the key. nullptr: the method reads it.
  // Encrypt: plaintext 1..4096 bytes. `key`: resolved from request.key_id.
  absl::StatusOr<v1::EncryptResponse> Encrypt(const v1::EncryptRequest& request,
                                              const keystore::KeyRecord* key = nullptr);
  // Decrypt: InvalidCiphertextException for any blob that does not parse or
  // authenticate (including a wrong context and a blob naming an unknown key);
  // IncorrectKeyException when key_id is given and the blob is another key's.
  // `key`: the key the blob names (ignored if the blob names another).
  absl::StatusOr<v1::DecryptResponse> Decrypt(const v1::DecryptRequest& request,
                                              const keystore::KeyRecord* key = nullptr);
  absl::StatusOr<v1::ReEncryptResponse> ReEncrypt(const v1::ReEncryptRequest& request);
  // GenerateDataKey*: exactly one of key_spec and number_of_bytes (1..1024).
  // `key`: resolved from request.key_id.
  absl::StatusOr<v1::GenerateDataKeyResponse> GenerateDataKey(
      const v1::GenerateDataKeyRequest& request, const keystore::KeyRecord* key = nullptr);
  absl::StatusOr<v1::GenerateDataKeyWithoutPlaintextResponse> GenerateDataKeyWithoutPlaintext(
      const v1::GenerateDataKeyWithoutPlaintextRequest& request,
      const keystore::KeyRecord* key = nullptr);
  // GenerateRandom: number_of_bytes 1..1024, from the HSM.
  absl::StatusOr<v1::GenerateRandomResponse> GenerateRandom(
      const v1::GenerateRandomRequest& request);

  // ---- access (callers check access first: AuthorizedService)
  // Replaces the key's policy with `document`, which the caller validated.
  // Errors: NotFoundException.
  absl::Status PutKeyPolicy(absl::string_view key_id, const std::string& document);

  // ---- compliance
  // Every key with its state, versions, rotation status (as the compliance
  // report computes it with `max_age_in_days`, default from the options) and
  // imported-material expiry; last_used_date is the caller's to fill in.
  absl::StatusOr<v1::GetKeyInventoryReportResponse> GetKeyInventoryReport(
      const v1::GetKeyInventoryReportRequest& request);

  // Resolves a key_id argument (key id, alias, or resource name) to the key.
  // NotFoundException names what was asked for; ValidationException for a
  // malformed identifier.
  absl::StatusOr<keystore::KeyRecord> ResolveKey(absl::string_view field,
                                                 absl::string_view key_id);
  // `resolved` (a data-plane method's `key`, see above) if not null, else
  // ResolveKey(field, key_id).
  absl::StatusOr<keystore::KeyRecord> ResolvedOrResolve(const keystore::KeyRecord* resolved,
                                                        absl::string_view field,
                                                        absl::string_view key_id);

  const ResourceNames& resource_names() const { return names_; }

 private:
  struct Decrypted {
    keystore::KeyRecord key;
    SecretBytes plaintext;
  };

  // Resolves a key that must be named directly (alias targets), not via alias.
  absl::StatusOr<keystore::KeyRecord> ResolveKeyNotAlias(absl::string_view field,
                                                         absl::string_view key_id);
  v1::KeyMetadata ToMetadata(const keystore::KeyRecord& key) const;

  // Encrypts `plaintext` under the key's current version, binding `context`.
  // `iv`, if not empty, is the blob's IV (kBlobIvSize bytes, fresh from the
  // HSM's generator); otherwise one is drawn from the HSM.
  absl::StatusOr<std::string> EncryptUnder(const keystore::KeyRecord& key,
                                           absl::string_view plaintext,
                                           const EncryptionContext& context,
                                           absl::string_view iv = {});
  // Parses and decrypts a blob; `expected_key_field`/`expected_key_id`, when
  // the latter is non-empty, name the key the caller says the blob is for.
  // `blob_key`, if not null and the key the blob names, is used instead of
  // reading that key.
  absl::StatusOr<Decrypted> DecryptBlob(absl::string_view blob_bytes,
                                        const EncryptionContext& context,
                                        absl::string_view expected_key_field,
                                        absl::string_view expected_key_id,
                                        const keystore::KeyRecord* blob_key = nullptr);
  // Shared body of GenerateDataKey and GenerateDataKeyWithoutPlaintext;
  // `resolved` as their `key`.
  absl::StatusOr<std::pair<SecretBytes, std::string>> NewDataKey(
      absl::string_view key_id, const google::protobuf::Map<std::string, std::string>& context,
      const std::optional<int>& number_of_bytes, v1::DataKeySpec key_spec,
      const keystore::KeyRecord* resolved, keystore::KeyRecord* key_out);

  // Makes new material current for `key`, crash-safely (intent, HSM object,
  // metadata commit). AUTOMATIC rotations also schedule the next one.
  // Requires control_mu_. Returns the new version id.
  absl::StatusOr<std::string> RotateLocked(keystore::KeyRecord key,
                                           keystore::VersionOrigin origin);
  // The state and origin rules shared by the rotation RPCs.
  absl::Status CheckRotatable(const keystore::KeyRecord& key, absl::string_view name) const;
  // Counts one encryption under `version_id`, persisting a new reservation
  // block first when the current one is used up. Returns the count.
  // Errors: LimitExceededException at the hard limit.
  absl::StatusOr<int64_t> CountEncryption(const std::string& version_id);
  // After a version crossed the usage threshold: rotates its key if the
  // version is still current and no other control-plane change is running.
  void MaybeRotateForUsage(const std::string& key_id, const std::string& version_id);
  // Rotation retry state (requires control_mu_): whether `key_id` is waiting
  // out a backoff, and recording an attempt's outcome (failures back off 1
  // minute, doubling to 1 hour; success clears it).
  bool RotationBackingOff(const std::string& key_id, absl::Time now) const;
  void RecordRotationOutcome(const std::string& key_id, absl::Time now,
                             const absl::Status& status, absl::string_view kind);
  void CrashPoint(absl::string_view point) const {
    if (options_.crash_hook) options_.crash_hook(point);
  }

  // EnableKey and DisableKey: ENABLED <-> DISABLED, a no-op when already there.
  absl::Status SetEnabled(absl::string_view key_id, bool enabled);

  // Removes one key's HSM objects and rows. Requires control_mu_.
  absl::Status EraseKey(const keystore::KeyRecord& key);

  // ---- import (daemon/service/key_import.cc). All but the two token
  // helpers (ImportTokenMac, VerifyImportToken) require control_mu_.
  // Marks every version's material deleted (the key to PENDING_IMPORT
  // unless pending deletion), then destroys the HSM objects, under a
  // delete_material intent. `why` is for the log.
  absl::Status DeleteMaterialLocked(keystore::KeyRecord key, absl::string_view why);
  // Removes the HSM objects of the key's versions marked material_deleted.
  absl::Status DestroyDeletedMaterial(const std::string& key_id);
  // The import token MAC (import_token.h), made in the HSM.
  absl::StatusOr<std::string> ImportTokenMac(const ImportToken& token);
  // Parses `bytes` and checks its MAC: InvalidImportTokenException.
  absl::StatusOr<ImportToken> VerifyImportToken(absl::string_view bytes);
  // The key `key_id` names, if GetParametersForImport may make parameters
  // for it: origin EXTERNAL, not pending deletion, under the limit of unused
  // parameters.
  absl::StatusOr<keystore::KeyRecord> KeyForImportParameters(absl::string_view key_id);
  // Destroys wrapping key pairs the store has no import parameters for.
  absl::Status RemoveOrphanWrappingKeys();

  hsm::Hsm& hsm_;
  keystore::KeyStore& store_;
  const Clock& clock_;
  const ResourceNames names_;
  const ServiceOptions options_;
  absl::Mutex control_mu_;  // serialises control-plane read-modify-write

  struct Usage {
    int64_t used = 0;
    int64_t reserved = 0;  // persisted; used <= reserved
  };
  absl::Mutex usage_mu_;
  absl::flat_hash_map<std::string, Usage> usage_ ABSL_GUARDED_BY(usage_mu_);

  struct Backoff {
    int failures = 0;
    absl::Time next_attempt;
  };
  // Rotation retry state, per key; touched only under control_mu_.
  absl::flat_hash_map<std::string, Backoff> rotation_backoff_;
  // Keys with a RotateKeyOnDemand in progress, and since when.
  absl::flat_hash_map<std::string, absl::Time> on_demand_started_ ABSL_GUARDED_BY(usage_mu_);
};

// The data-plane state rule: OK for ENABLED; DisabledException for DISABLED;
// KMSInvalidStateException otherwise. `name` is how the caller named the key.
absl::Status CheckUsableForCrypto(const keystore::KeyRecord& key, absl::string_view name);

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_KEY_SERVICE_H_
