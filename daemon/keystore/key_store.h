// KeyStore: durable metadata for keys (policies included), key versions,
// aliases, tags, grants and crash-recovery intents. The HSM holds every secret; the KeyStore holds
// everything else and no secret at all.
//
// Implementations: SqliteKeyStore (daemon/keystore/sqlite_key_store.h). Every
// implementation passes tests/daemon/keystore/key_store_conformance_test.cc.
//
// Thread-safe. Each method is atomic: it commits durably before returning OK,
// or changes nothing. Callers serialise read-modify-write sequences themselves
// (the service holds a mutex around control-plane changes).
//
// Errors common to every method: kUnavailable (database busy or gone; retry),
// kInternal (anything else the database reported).
//
// Rules every implementation enforces (kInvalidArgument unless noted):
//  - times are kept to the microsecond; callers pass microsecond-aligned times
//    if they need to compare what they wrote with what they read;
//  - deletion_time is set exactly when state is kPendingDeletion;
//  - next_rotation_time is set exactly when rotation_enabled; the rotation
//    period is 0..36500 days;
//  - valid_to is set exactly when expiration_model is kExpires;
//  - a version's key_check_value is empty or 3 bytes, its fingerprint empty
//    or 16 bytes;
//  - a key's policy is at most kMaxPolicyBytes (32768) bytes; it is stored
//    and returned byte for byte, never parsed;
//  - a grant's grant_id is 64 lower-case hex characters, its token_hash 32
//    bytes, and it has at least one operation;
//  - CreateKey's version belongs to the key and is its current_version_id;
//  - UpdateKey's current_version_id names a version of the same key (else
//    kNotFound);
//  - list markers need not exist (listing resumes after where they would
//    sort); ListAliases with an unknown key filter gives an empty page, and
//    so do ListGrants, ListGrantsForKey (empty list) and CountGrants (0) for
//    an unknown key;
//  - duplicate tag keys in one PutTags: the last wins; intent ids are never
//    reused.
#ifndef KMS_DAEMON_KEYSTORE_KEY_STORE_H_
#define KMS_DAEMON_KEYSTORE_KEY_STORE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kms::keystore {

enum class KeyState { kEnabled, kDisabled, kPendingDeletion, kPendingImport };
enum class KeyOrigin { kKms, kExternal };
// How a key version came to be: with its key, or by which kind of rotation.
enum class VersionOrigin { kCreated, kAutomatic, kOnDemand, kUsageLimit };
// Whether a key's imported material expires (AWS ExpirationModelType);
// kNone until material is first imported.
enum class ExpirationModel { kNone, kExpires, kDoesNotExpire };

// Stable names used in storage ("ENABLED", "AWS_KMS", ...).
absl::string_view KeyStateName(KeyState state);
absl::StatusOr<KeyState> ParseKeyState(absl::string_view name);
absl::string_view KeyOriginName(KeyOrigin origin);
absl::StatusOr<KeyOrigin> ParseKeyOrigin(absl::string_view name);
// "CREATED", "AUTOMATIC", "ON_DEMAND", "USAGE_LIMIT".
absl::string_view VersionOriginName(VersionOrigin origin);
absl::StatusOr<VersionOrigin> ParseVersionOrigin(absl::string_view name);
// "NONE", "KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE".
absl::string_view ExpirationModelName(ExpirationModel model);
absl::StatusOr<ExpirationModel> ParseExpirationModel(absl::string_view name);

// The largest key policy a store accepts, in bytes (AWS KMS's limit).
inline constexpr size_t kMaxPolicyBytes = 32768;

struct KeyRecord {
  std::string key_id;  // a UUID, lower-case, canonical form
  std::string description;
  // The key policy document (JSON text) exactly as set; opaque to the store.
  // Empty for keys created before schema 4: they have no statements.
  std::string policy;
  KeyState state = KeyState::kEnabled;
  KeyOrigin origin = KeyOrigin::kKms;
  std::string key_usage = "ENCRYPT_DECRYPT";
  std::string key_spec = "SYMMETRIC_DEFAULT";
  absl::Time creation_time = absl::UnixEpoch();
  // Set only in kPendingDeletion: when the key's material is destroyed.
  std::optional<absl::Time> deletion_time;
  // The version new encryptions use; empty while the key has no material.
  std::string current_version_id;
  // Scheduled rotation. rotation_period_days is kept while rotation is
  // disabled (0: never set); next_rotation_time is set exactly when
  // rotation_enabled is true.
  bool rotation_enabled = false;
  int rotation_period_days = 0;
  std::optional<absl::Time> next_rotation_time;
  // Imported material (origin kExternal): whether it expires, and when.
  ExpirationModel expiration_model = ExpirationModel::kNone;
  std::optional<absl::Time> valid_to;

  bool operator==(const KeyRecord& o) const {
    return key_id == o.key_id && description == o.description && policy == o.policy &&
           state == o.state &&
           origin == o.origin && key_usage == o.key_usage && key_spec == o.key_spec &&
           creation_time == o.creation_time && deletion_time == o.deletion_time &&
           current_version_id == o.current_version_id &&
           rotation_enabled == o.rotation_enabled &&
           rotation_period_days == o.rotation_period_days &&
           next_rotation_time == o.next_rotation_time &&
           expiration_model == o.expiration_model && valid_to == o.valid_to;
  }
};

// One piece of key material. Its HSM object's CKA_ID is version_id.
struct KeyVersionRecord {
  std::string version_id;  // a UUID
  std::string key_id;
  absl::Time creation_time = absl::UnixEpoch();
  VersionOrigin origin = VersionOrigin::kCreated;
  // Encryptions reserved under this version: never fewer than were made,
  // because the service persists a reservation before using it.
  int64_t encryptions_reserved = 0;
  // Imported material only (empty for material kmsd generated): its key
  // check value (3 bytes) and fingerprint (16 bytes), both computed in the
  // HSM (hsm::Hsm::KeyCheckValue, KeyFingerprint). Neither reveals the key.
  std::string key_check_value;
  std::string fingerprint;
  // Imported material that was deleted (DeleteImportedKeyMaterial) or
  // expired: its HSM object is gone until the same material is re-imported.
  bool material_deleted = false;

  bool operator==(const KeyVersionRecord& o) const {
    return version_id == o.version_id && key_id == o.key_id &&
           creation_time == o.creation_time && origin == o.origin &&
           encryptions_reserved == o.encryptions_reserved &&
           key_check_value == o.key_check_value && fingerprint == o.fingerprint &&
           material_deleted == o.material_deleted;
  }
};

struct AliasRecord {
  std::string alias_name;  // "alias/..."
  std::string key_id;
  absl::Time creation_time = absl::UnixEpoch();
  absl::Time last_updated_time = absl::UnixEpoch();

  bool operator==(const AliasRecord& o) const {
    return alias_name == o.alias_name && key_id == o.key_id &&
           creation_time == o.creation_time && last_updated_time == o.last_updated_time;
  }
};

struct TagRecord {
  std::string key;
  std::string value;
  bool operator==(const TagRecord& o) const { return key == o.key && value == o.value; }
};

// A multi-step change in progress (DESIGN.md "Durability and crash safety"):
// written before an HSM step, removed after the metadata commit. On start-up
// the reconciler finishes or rolls back every intent it finds.
struct Intent {
  int64_t id = 0;           // assigned by AddIntent
  std::string kind;         // e.g. "create_version"
  std::string key_id;
  std::string version_id;   // the HSM object id concerned
  absl::Time creation_time = absl::UnixEpoch();
};

// An outstanding GetParametersForImport: the RSA wrapping key pair in the
// HSM (object id wrapping_key_id) and what its import token was issued for.
// Removed when the token is used or has expired (the HSM pair with it).
struct ImportParametersRecord {
  std::string wrapping_key_id;     // a UUID; the HSM object id of the pair
  std::string key_id;              // the key the token was issued for
  std::string wrapping_algorithm;  // AWS name, e.g. "RSA_AES_KEY_WRAP_SHA_1"
  std::string wrapping_key_spec;   // "RSA_2048", "RSA_3072" or "RSA_4096"
  absl::Time creation_time = absl::UnixEpoch();
  absl::Time expiration_time = absl::UnixEpoch();

  bool operator==(const ImportParametersRecord& o) const {
    return wrapping_key_id == o.wrapping_key_id && key_id == o.key_id &&
           wrapping_algorithm == o.wrapping_algorithm &&
           wrapping_key_spec == o.wrapping_key_spec && creation_time == o.creation_time &&
           expiration_time == o.expiration_time;
  }
};

// The metadata side of a successful ImportKeyMaterial, committed in one
// transaction: the key's new mutable fields, at most one of a new version
// or a restored one, and the import parameters the token named (consumed:
// a token is single-use).
struct ImportCommit {
  KeyRecord key;  // replaces the key's mutable fields, as UpdateKey
  // First material, or NEW_KEY_MATERIAL: added, as AddVersion.
  std::optional<KeyVersionRecord> new_version;
  // A re-import that brings back deleted material: this version's
  // material_deleted is cleared. Empty otherwise.
  std::string restored_version_id;
  std::string consumed_wrapping_key_id;  // its ImportParametersRecord is removed
};

// A grant (AWS KMS CreateGrant): delegated use of one key by one principal.
// Immutable once stored: it is added, read and deleted, never updated.
struct GrantRecord {
  std::string grant_id;            // 64 lower-case hex characters
  std::string key_id;
  std::string name;                // optional
  std::string grantee_principal;
  std::string retiring_principal;  // optional
  std::string issuing_principal;   // who created it
  std::vector<std::string> operations;  // grant operation names ("Decrypt", ...), order kept
  // Grant constraints: the encryption context must equal, or contain, these
  // pairs. Any strings (empty ones, separators, any bytes) round-trip exactly.
  std::map<std::string, std::string> encryption_context_equals;
  std::map<std::string, std::string> encryption_context_subset;
  // SHA-256 of the grant token: 32 bytes. The token itself is never stored.
  std::string token_hash;
  absl::Time creation_time = absl::UnixEpoch();

  bool operator==(const GrantRecord& o) const {
    return grant_id == o.grant_id && key_id == o.key_id && name == o.name &&
           grantee_principal == o.grantee_principal &&
           retiring_principal == o.retiring_principal &&
           issuing_principal == o.issuing_principal && operations == o.operations &&
           encryption_context_equals == o.encryption_context_equals &&
           encryption_context_subset == o.encryption_context_subset &&
           token_hash == o.token_hash && creation_time == o.creation_time;
  }
};

// Which grants ListGrants returns: those that match every field set; an
// empty field matches any grant.
struct GrantFilter {
  std::string grant_id;
  std::string grantee_principal;
};

template <typename T>
struct Page {
  std::vector<T> items;
  // Pass as `marker` to get the next page; empty when this is the last page.
  std::string next_marker;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // ---- keys and versions

  // Inserts `key` (its policy included), its first `version` (absent for a
  // key without material) and its `tags`, in one transaction.
  // Errors: kAlreadyExists (key id or version id taken), kInvalidArgument
  // (policy longer than kMaxPolicyBytes).
  virtual absl::Status CreateKey(const KeyRecord& key,
                                 const std::optional<KeyVersionRecord>& version,
                                 const std::vector<TagRecord>& tags) = 0;

  // Errors: kNotFound.
  virtual absl::StatusOr<KeyRecord> GetKey(absl::string_view key_id) = 0;

  // Replaces the mutable fields of the key named by key.key_id: description,
  // policy, state, deletion_time, current_version_id, the rotation fields and
  // the import expiry (expiration_model, valid_to). Every method below that
  // "replaces the key's mutable fields" replaces the same set, policy
  // included: pass the record as read, with the changes made.
  // Errors: kNotFound, kInvalidArgument (policy longer than kMaxPolicyBytes).
  virtual absl::Status UpdateKey(const KeyRecord& key) = 0;

  // Adds `version` to its key and replaces the key's mutable fields with
  // `key`'s (typically making the new version current), in one transaction.
  // Errors: kNotFound (no such key, or key.current_version_id names neither
  // this version nor another of the key's), kAlreadyExists (version id
  // taken), kInvalidArgument (version.key_id != key.key_id, or a negative
  // encryptions_reserved).
  virtual absl::Status AddVersion(const KeyVersionRecord& version, const KeyRecord& key) = 0;

  // Keys in kEnabled with rotation enabled and next_rotation_time at or
  // before `t`, earliest due first (ties by key_id).
  virtual absl::StatusOr<std::vector<KeyRecord>> ListKeysDueForRotation(absl::Time t) = 0;

  // Raises the version's encryptions_reserved to `reserved`; a value at or
  // below the stored one changes nothing (it never decreases).
  // Errors: kNotFound, kInvalidArgument (negative `reserved`).
  virtual absl::Status ReserveEncryptions(absl::string_view version_id, int64_t reserved) = 0;

  // Keys ordered by key_id, at most `limit` (>= 1), starting after `marker`
  // (empty: from the start). Errors: kInvalidArgument (limit < 1).
  virtual absl::StatusOr<Page<KeyRecord>> ListKeys(int limit, absl::string_view marker) = 0;

  // Keys in kPendingDeletion whose deletion_time is at or before `t`.
  virtual absl::StatusOr<std::vector<KeyRecord>> ListKeysDueForDeletion(absl::Time t) = 0;

  // Removes the key with its versions, aliases, tags, grants and import
  // parameters, in one transaction. (The caller destroys the HSM objects those name
  // first: once the rows are gone nothing points at them.)
  // Errors: kNotFound.
  virtual absl::Status DeleteKey(absl::string_view key_id) = 0;

  // Errors: kNotFound.
  virtual absl::StatusOr<KeyVersionRecord> GetVersion(absl::string_view version_id) = 0;

  // The key's versions, oldest first (empty for an unknown key).
  virtual absl::StatusOr<std::vector<KeyVersionRecord>> ListVersions(
      absl::string_view key_id) = 0;

  // ---- imported material

  // Versions (of any key) whose fingerprint is `fingerprint`, ordered by
  // version_id. Errors: kInvalidArgument (fingerprint empty).
  virtual absl::StatusOr<std::vector<KeyVersionRecord>> FindVersionsByFingerprint(
      absl::string_view fingerprint) = 0;

  // Keys whose valid_to is at or before `t` and that still have a version
  // whose material is not deleted, earliest valid_to first (ties by key_id).
  virtual absl::StatusOr<std::vector<KeyRecord>> ListKeysWithExpiredMaterial(absl::Time t) = 0;

  // Applies `commit` in one transaction (neither a new nor a restored
  // version is fine: a re-import of material that is present only updates
  // the key). Errors: kNotFound (no such key, no such version of this key
  // to restore, no such import parameters, or key.current_version_id names
  // no version of the key), kAlreadyExists (new version id taken),
  // kInvalidArgument (new_version and restored_version_id both set, the new
  // version belongs to another key, or any rule of UpdateKey/AddVersion).
  virtual absl::Status CommitImport(const ImportCommit& commit) = 0;

  // Marks every version of key.key_id material_deleted and replaces the
  // key's mutable fields with `key`'s, in one transaction.
  // Errors: kNotFound (no such key), and the rules of UpdateKey.
  virtual absl::Status MarkMaterialDeleted(const KeyRecord& key) = 0;

  // Errors: kAlreadyExists (wrapping_key_id taken), kNotFound (no such key),
  // kInvalidArgument (expiration_time before creation_time).
  virtual absl::Status AddImportParameters(const ImportParametersRecord& record) = 0;
  // Errors: kNotFound.
  virtual absl::StatusOr<ImportParametersRecord> GetImportParameters(
      absl::string_view wrapping_key_id) = 0;
  // Errors: kNotFound.
  virtual absl::Status DeleteImportParameters(absl::string_view wrapping_key_id) = 0;
  // Import parameters of one key, or of every key when `key_id` is empty,
  // ordered by creation_time then wrapping_key_id.
  virtual absl::StatusOr<std::vector<ImportParametersRecord>> ListImportParameters(
      absl::string_view key_id) = 0;
  // Import parameters whose expiration_time is at or before `t`, earliest
  // expiration first (ties by wrapping_key_id).
  virtual absl::StatusOr<std::vector<ImportParametersRecord>> ListExpiredImportParameters(
      absl::Time t) = 0;

  // ---- aliases

  // Errors: kAlreadyExists (name taken), kNotFound (no such key).
  virtual absl::Status CreateAlias(const AliasRecord& alias) = 0;

  // Points an existing alias at `key_id`, setting last_updated_time to `now`.
  // Errors: kNotFound (no such alias or key).
  virtual absl::Status UpdateAlias(absl::string_view alias_name, absl::string_view key_id,
                                   absl::Time now) = 0;

  // Errors: kNotFound.
  virtual absl::Status DeleteAlias(absl::string_view alias_name) = 0;

  // Errors: kNotFound.
  virtual absl::StatusOr<AliasRecord> GetAlias(absl::string_view alias_name) = 0;

  // Aliases ordered by name, of one key if `key_id` is set, at most `limit`
  // (>= 1) after `marker`. Errors: kInvalidArgument (limit < 1).
  virtual absl::StatusOr<Page<AliasRecord>> ListAliases(
      const std::optional<std::string>& key_id, int limit, absl::string_view marker) = 0;

  // ---- grants

  // Stores a grant. Errors: kNotFound (no such key), kAlreadyExists (grant
  // id or token hash already stored), kInvalidArgument (grant_id not 64 hex,
  // token_hash not 32 bytes, no operations).
  virtual absl::Status AddGrant(const GrantRecord& grant) = 0;
  // Errors: kNotFound.
  virtual absl::StatusOr<GrantRecord> GetGrant(absl::string_view grant_id) = 0;
  // The grant whose token hashes to `token_hash`. Errors: kNotFound (also for
  // a hash that is not 32 bytes).
  virtual absl::StatusOr<GrantRecord> FindGrantByTokenHash(absl::string_view token_hash) = 0;
  // Every grant on the key, by grant_id; empty (not an error) if none or no
  // such key.
  virtual absl::StatusOr<std::vector<GrantRecord>> ListGrantsForKey(
      absl::string_view key_id) = 0;
  // A page of the key's grants that match `filter`, by grant_id, at most
  // `limit` (>= 1), resuming after `marker` (empty: from the start). The
  // filter applies before the limit: a page is short only when it is the
  // last, and next_marker is set only when another matching grant follows.
  // An unknown key gives an empty page. Errors: kInvalidArgument (limit < 1).
  virtual absl::StatusOr<Page<GrantRecord>> ListGrants(absl::string_view key_id,
                                                       const GrantFilter& filter, int limit,
                                                       absl::string_view marker) = 0;
  // How many grants the key has (0 for an unknown key).
  virtual absl::StatusOr<int64_t> CountGrants(absl::string_view key_id) = 0;
  // Errors: kNotFound.
  virtual absl::Status DeleteGrant(absl::string_view grant_id) = 0;

  // ---- tags

  // Adds or overwrites tags of the key. Errors: kNotFound (no such key).
  virtual absl::Status PutTags(absl::string_view key_id,
                               const std::vector<TagRecord>& tags) = 0;

  // Removes the named tags; names that are not set are ignored.
  // Errors: kNotFound (no such key).
  virtual absl::Status RemoveTags(absl::string_view key_id,
                                  const std::vector<std::string>& tag_keys) = 0;

  // The key's tags ordered by tag key. Errors: kNotFound (no such key).
  virtual absl::StatusOr<std::vector<TagRecord>> ListTags(absl::string_view key_id) = 0;

  // ---- intents

  // Stores `intent` (its id is ignored) and returns its new id.
  virtual absl::StatusOr<int64_t> AddIntent(const Intent& intent) = 0;
  // Errors: kNotFound.
  virtual absl::Status RemoveIntent(int64_t id) = 0;
  // Every stored intent, oldest first.
  virtual absl::StatusOr<std::vector<Intent>> ListIntents() = 0;
};

}  // namespace kms::keystore

#endif  // KMS_DAEMON_KEYSTORE_KEY_STORE_H_
