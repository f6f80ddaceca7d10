// SqliteKeyStore: the KeyStore (daemon/keystore/key_store.h) on one SQLite
// database file, or on ":memory:" for tests. It holds metadata only; key
// material stays in the HSM.
//
// Durability: a file database runs in WAL mode with synchronous=FULL, so a
// method that returned OK has reached the disk (the WAL is fsynced at every
// commit) and survives kill -9 or power loss. Every mutating method is one
// BEGIN IMMEDIATE ... COMMIT transaction; on any failure it rolls back and the
// database is unchanged. Foreign keys are enforced (PRAGMA foreign_keys=ON).
//
// Schema: migrations are numbered in sqlite_key_store.cc and tracked with
// PRAGMA user_version. Open applies the missing ones, each in its own
// transaction, and refuses a database written by a newer kmsd. Version 1 is
// the initial schema; version 2 adds key rotation (the keys' rotation columns,
// the versions' origin and encryptions_reserved, with defaults that an
// upgraded version-1 database gets: rotation disabled, period 0, origin
// CREATED, nothing reserved); version 3 adds imported key material (the keys'
// expiration_model and valid_to, the versions' key_check_value, fingerprint
// and material_deleted, and the import_parameters table; existing rows get
// expiration model NONE, no valid_to, empty check value and fingerprint,
// material present); version 4 adds key policies and grants (the keys' policy
// column, '' for existing keys, and the grants, grant_operations and
// grant_context tables: a grant's operations and encryption-context
// constraints are child rows, one per operation or pair, so no string needs
// an encoding).
//
// Times are stored as INTEGER microseconds since the Unix epoch: a time with a
// finer part (absl::Now() has one) reads back floored to the microsecond.
// Every time already on a microsecond round-trips exactly.
//
// Thread-safety: thread-safe. One connection serves every call under a mutex,
// so the process is a single writer; calls are serialised. Another process
// using the same file is tolerated (busy_timeout), not intended: one kmsd
// owns one database.
//
// Errors. The shared contract is in key_store.h; this is how SQLite maps onto
// it, in one function (StatusFromSqlite in the .cc):
//   kUnavailable    database busy or locked (after busy_timeout), disk full,
//                   I/O error, read-only file. Retry later. The message is
//                   generic; the SQLite detail goes to the log.
//   kAlreadyExists  a UNIQUE / PRIMARY KEY conflict, naming the thing
//                   ("alias 'alias/x' already exists").
//   kNotFound       the named key, version, alias or intent does not exist
//                   (including a foreign key naming a missing key).
//   kInvalidArgument  limit < 1 (ListKeys, ListAliases, ListGrants); a record
//                   that contradicts itself or is out of range (CreateKey,
//                   UpdateKey, AddVersion, CommitImport, MarkMaterialDeleted:
//                   see ValidateKey and ValidateVersion in the .cc; AddGrant:
//                   ValidateGrant); a negative reservation. The schema's CHECKs say the same, so
//                   no other writer can store such a row either.
//   kInternal       anything else SQLite reported, with its message (for the
//                   server log; the server strips internal text from replies).
// Per method, beyond kUnavailable / kInternal:
//   CreateKey       kAlreadyExists (key id or version id taken),
//                   kInvalidArgument (version of another key, current_version_id
//                   not the given version, or a key record error: deletion_time
//                   set outside PENDING_DELETION or missing in it,
//                   next_rotation_time set without rotation_enabled or missing
//                   with it, rotation_period_days outside 0..36500, valid_to
//                   set without expiration model KEY_MATERIAL_EXPIRES or
//                   missing with it, policy longer than 32768 bytes; or the
//                   version's encryptions_reserved < 0,
//                   key_check_value neither empty nor 3 bytes, fingerprint
//                   neither empty nor 16 bytes).
//   GetKey          kNotFound.
//   UpdateKey       kNotFound (no such key, or current_version_id is not a
//                   version of this key), kInvalidArgument (a key record error,
//                   as in CreateKey).
//   AddVersion      kNotFound (no such key, or current_version_id is neither
//                   the new version nor another of this key), kAlreadyExists
//                   (version id taken, by any key), kInvalidArgument
//                   (version.key_id differs from the key's, a key record error
//                   as in CreateKey, a version record error as in CreateKey).
//   ListKeysDueForRotation  only the common errors.
//   ReserveEncryptions  kNotFound (no such version), kInvalidArgument
//                   (reserved < 0; the contract would let it be a no-op, but a
//                   negative count can only be a caller's bug).
//   ListKeys        kInvalidArgument (limit < 1).
//   DeleteKey       kNotFound. Versions, aliases, tags, grants and import
//                   parameters go with the key.
//   GetVersion      kNotFound.
//   FindVersionsByFingerprint  kInvalidArgument (empty fingerprint).
//   CommitImport    kNotFound (no such key, restored version not of this key,
//                   no such import parameters, current_version_id not a
//                   version of the key after the change), kAlreadyExists (new
//                   version id taken), kInvalidArgument (both a new and a
//                   restored version, new version of another key, a key or
//                   version record error as in CreateKey).
//   MarkMaterialDeleted  kNotFound (no such key, or current_version_id not a
//                   version of it), kInvalidArgument (a key record error).
//   AddImportParameters  kAlreadyExists (wrapping_key_id taken), kNotFound (no
//                   such key), kInvalidArgument (expiration before creation).
//   GetImportParameters, DeleteImportParameters  kNotFound.
//   ListKeysWithExpiredMaterial, ListImportParameters,
//   ListExpiredImportParameters: only the common errors.
//   CreateAlias     kAlreadyExists (name taken), kNotFound (no such key).
//   UpdateAlias     kNotFound (no such alias, or no such key).
//   DeleteAlias, GetAlias  kNotFound.
//   ListAliases     kInvalidArgument (limit < 1). An unknown key_id filter
//                   gives an empty page.
//   AddGrant        kNotFound (no such key), kAlreadyExists (grant id taken,
//                   or token hash taken: the message says which, without the
//                   hash), kInvalidArgument (grant_id not 64 lower-case hex,
//                   token_hash not 32 bytes, no operations).
//   GetGrant, DeleteGrant, FindGrantByTokenHash  kNotFound.
//   ListGrants      kInvalidArgument (limit < 1). An unknown key gives an
//                   empty page.
//   ListGrantsForKey, CountGrants: only the common errors.
//   PutTags, RemoveTags, ListTags  kNotFound (no such key).
//   RemoveIntent    kNotFound.
//   ListVersions, ListKeysDueForDeletion, AddIntent, ListIntents: only the
//   common errors.
#ifndef KMS_DAEMON_KEYSTORE_SQLITE_KEY_STORE_H_
#define KMS_DAEMON_KEYSTORE_SQLITE_KEY_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/keystore/key_store.h"

// From sqlite3.h, which only the .cc includes.
struct sqlite3;
struct sqlite3_stmt;

namespace kms::keystore {

class SqliteKeyStore final : public KeyStore {
 public:
  // `path`: a database file (created if missing, with its directory's
  // existing permissions; the file itself mode 0600) or ":memory:".
  // Errors: kNotFound (the directory does not exist), kPermissionDenied (the
  // file or directory is not accessible), kFailedPrecondition (the path is
  // not a regular file, or the database has a newer schema than this code),
  // kUnavailable, kInternal (e.g. the file is not a SQLite database).
  static absl::StatusOr<std::unique_ptr<SqliteKeyStore>> Open(const std::string& path);

  // The schema version this code creates and reads (its number of migrations).
  static int LatestSchemaVersion();

  // The connection's effective settings, read back from SQLite (for the
  // start-up log and for tests; synchronous is per connection, so only this
  // connection can tell).
  struct ConnectionSettings {
    std::string journal_mode;  // "wal" for a file, "memory" for ":memory:"
    int synchronous = 0;       // 2 is FULL
    bool foreign_keys = false;
    int busy_timeout_ms = 0;
    int schema_version = 0;  // PRAGMA user_version
  };
  absl::StatusOr<ConnectionSettings> Settings();

  // Implementation detail of the .cc (a cached statement in use); public only
  // so that helpers there can name it.
  class Statement;

  ~SqliteKeyStore() override;
  SqliteKeyStore(const SqliteKeyStore&) = delete;
  SqliteKeyStore& operator=(const SqliteKeyStore&) = delete;

  // ---- KeyStore
  absl::Status CreateKey(const KeyRecord& key, const std::optional<KeyVersionRecord>& version,
                         const std::vector<TagRecord>& tags) override;
  absl::StatusOr<KeyRecord> GetKey(absl::string_view key_id) override;
  absl::Status UpdateKey(const KeyRecord& key) override;
  // Inserts `version` and applies `updated_key` (as UpdateKey, rotation fields
  // included) in one transaction: rotation makes the new version current and
  // moves next_rotation_time on; an import also moves the key out of
  // PENDING_IMPORT.
  absl::Status AddVersion(const KeyVersionRecord& version, const KeyRecord& updated_key) override;
  // Served by the partial index keys_due_for_rotation; ties in
  // next_rotation_time are ordered by key_id.
  absl::StatusOr<std::vector<KeyRecord>> ListKeysDueForRotation(absl::Time t) override;
  // One UPDATE ... MAX(...): reservations arriving out of order never lower
  // the count.
  absl::Status ReserveEncryptions(absl::string_view version_id, int64_t reserved) override;
  absl::StatusOr<Page<KeyRecord>> ListKeys(int limit, absl::string_view marker) override;
  absl::StatusOr<std::vector<KeyRecord>> ListKeysDueForDeletion(absl::Time t) override;
  absl::Status DeleteKey(absl::string_view key_id) override;
  absl::StatusOr<KeyVersionRecord> GetVersion(absl::string_view version_id) override;
  absl::StatusOr<std::vector<KeyVersionRecord>> ListVersions(absl::string_view key_id) override;

  // Served by the index key_versions_by_fingerprint.
  absl::StatusOr<std::vector<KeyVersionRecord>> FindVersionsByFingerprint(
      absl::string_view fingerprint) override;
  // Served by the partial index keys_material_expiry.
  absl::StatusOr<std::vector<KeyRecord>> ListKeysWithExpiredMaterial(absl::Time t) override;
  absl::Status CommitImport(const ImportCommit& commit) override;
  absl::Status MarkMaterialDeleted(const KeyRecord& key) override;
  absl::Status AddImportParameters(const ImportParametersRecord& record) override;
  absl::StatusOr<ImportParametersRecord> GetImportParameters(
      absl::string_view wrapping_key_id) override;
  absl::Status DeleteImportParameters(absl::string_view wrapping_key_id) override;
  absl::StatusOr<std::vector<ImportParametersRecord>> ListImportParameters(
      absl::string_view key_id) override;
  // Earliest expiration_time first, ties by wrapping_key_id.
  absl::StatusOr<std::vector<ImportParametersRecord>> ListExpiredImportParameters(
      absl::Time t) override;

  absl::Status CreateAlias(const AliasRecord& alias) override;
  absl::Status UpdateAlias(absl::string_view alias_name, absl::string_view key_id,
                           absl::Time now) override;
  absl::Status DeleteAlias(absl::string_view alias_name) override;
  absl::StatusOr<AliasRecord> GetAlias(absl::string_view alias_name) override;
  absl::StatusOr<Page<AliasRecord>> ListAliases(const std::optional<std::string>& key_id, int limit,
                                                absl::string_view marker) override;

  // Served by the index grants_by_key; a grant's operations and context
  // pairs come from their tables' primary keys.
  absl::Status AddGrant(const GrantRecord& grant) override;
  absl::StatusOr<GrantRecord> GetGrant(absl::string_view grant_id) override;
  // Served by the UNIQUE index on token_hash.
  absl::StatusOr<GrantRecord> FindGrantByTokenHash(absl::string_view token_hash) override;
  absl::StatusOr<std::vector<GrantRecord>> ListGrantsForKey(absl::string_view key_id) override;
  // Served by the index grants_by_key; the filter is a condition of the
  // query, so rows that do not match are never read into records.
  absl::StatusOr<Page<GrantRecord>> ListGrants(absl::string_view key_id, const GrantFilter& filter,
                                               int limit, absl::string_view marker) override;
  absl::StatusOr<int64_t> CountGrants(absl::string_view key_id) override;
  absl::Status DeleteGrant(absl::string_view grant_id) override;

  absl::Status PutTags(absl::string_view key_id, const std::vector<TagRecord>& tags) override;
  absl::Status RemoveTags(absl::string_view key_id,
                          const std::vector<std::string>& tag_keys) override;
  absl::StatusOr<std::vector<TagRecord>> ListTags(absl::string_view key_id) override;

  absl::StatusOr<int64_t> AddIntent(const Intent& intent) override;
  absl::Status RemoveIntent(int64_t id) override;
  absl::StatusOr<std::vector<Intent>> ListIntents() override;

 private:
  enum class TransactionMode { kRead, kWrite };

  explicit SqliteKeyStore(sqlite3* db);

  // Sets the connection up (pragmas), refuses a newer schema, migrates.
  absl::Status Initialize(bool in_memory, const std::string& path);
  absl::Status Migrate(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int> SchemaVersion() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The cached prepared statement for `sql` (a string literal in the .cc),
  // prepared on first use.
  absl::StatusOr<Statement> Prepare(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Prepares and runs a statement that returns no rows.
  absl::Status Execute(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Runs `body` between BEGIN (kRead: DEFERRED, kWrite: IMMEDIATE) and
  // COMMIT; rolls back if `body` or COMMIT fails and returns that error.
  template <typename Body>
  absl::Status InTransaction(TransactionMode mode, Body body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // kNotFound unless the key exists.
  absl::Status CheckKeyExists(absl::string_view key_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UpdateKeyLocked(const KeyRecord& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertVersion(const KeyVersionRecord& version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UpsertTags(absl::string_view key_id, const std::vector<TagRecord>& tags)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts the grant's operations and encryption-context constraints (the
  // grants row itself must exist).
  absl::Status InsertGrantChildren(const GrantRecord& grant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills in the operations and encryption-context constraints of grants
  // read from the grants table (which holds the other fields). Called after
  // the grants SELECT is done, so no cached statement is in use twice.
  absl::Status ReadGrantChildren(std::vector<GrantRecord>& grants)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  // SQL text -> statement, finalized in the destructor.
  std::unordered_map<std::string, sqlite3_stmt*> statements_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kms::keystore

#endif  // KMS_DAEMON_KEYSTORE_SQLITE_KEY_STORE_H_
