#include "daemon/keystore/sqlite_key_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include "absl/memory/memory.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"

namespace kms::keystore {
namespace {

// ---- schema
//
// Step i (counting from 1) takes a database from user_version i-1 to i, inside
// one transaction together with the user_version bump. Append only: a step
// that has shipped is never edited, because databases in the field ran it.
//
// Times are INTEGER microseconds since the Unix epoch. STRICT tables make
// SQLite refuse a value of the wrong type instead of converting it.
constexpr const char* kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE keys (
  key_id TEXT NOT NULL PRIMARY KEY,
  description TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('ENABLED', 'DISABLED', 'PENDING_DELETION', 'PENDING_IMPORT')),
  origin TEXT NOT NULL CHECK (origin IN ('AWS_KMS', 'EXTERNAL')),
  key_usage TEXT NOT NULL,
  key_spec TEXT NOT NULL,
  creation_time_us INTEGER NOT NULL,
  deletion_time_us INTEGER,
  -- NULL while the key has no material.
  current_version_id TEXT,
  CHECK ((state = 'PENDING_DELETION') = (deletion_time_us IS NOT NULL)),
  -- The current version must be a version of this very key.
  FOREIGN KEY (key_id, current_version_id) REFERENCES key_versions (key_id, version_id)
) STRICT;

CREATE INDEX keys_pending_deletion ON keys (deletion_time_us)
  WHERE state = 'PENDING_DELETION';

CREATE TABLE key_versions (
  -- Globally unique: it is also the HSM object's CKA_ID.
  version_id TEXT NOT NULL PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  creation_time_us INTEGER NOT NULL,
  -- Target of keys' current-version foreign key; also serves ListVersions.
  UNIQUE (key_id, version_id)
) STRICT;

CREATE TABLE aliases (
  alias_name TEXT NOT NULL PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  creation_time_us INTEGER NOT NULL,
  last_updated_time_us INTEGER NOT NULL
) STRICT;

CREATE INDEX aliases_by_key ON aliases (key_id, alias_name);

CREATE TABLE tags (
  key_id TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  tag_key TEXT NOT NULL,
  tag_value TEXT NOT NULL,
  PRIMARY KEY (key_id, tag_key)
) STRICT, WITHOUT ROWID;

-- No foreign key: an intent is written before the key exists (create) and
-- outlives it (delete). AUTOINCREMENT: ids never repeat, even after the
-- newest intent is removed, so "oldest first" is "lowest id first".
CREATE TABLE intents (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  key_id TEXT NOT NULL,
  version_id TEXT NOT NULL,
  creation_time_us INTEGER NOT NULL
) STRICT;
)sql",
    // 2: key rotation. ALTER TABLE cannot add a table-level CHECK, but SQLite
    // lets a column's CHECK name other columns, so the rotation invariant
    // rides on next_rotation_time_us. SQLite (3.37 and later) tests added
    // CHECKs against the existing rows, which the defaults satisfy.
    R"sql(
ALTER TABLE keys ADD COLUMN rotation_enabled INTEGER NOT NULL DEFAULT 0
  CHECK (rotation_enabled IN (0, 1));
-- Kept while rotation is disabled (0: never set).
ALTER TABLE keys ADD COLUMN rotation_period_days INTEGER NOT NULL DEFAULT 0
  CHECK (rotation_period_days BETWEEN 0 AND 36500);
ALTER TABLE keys ADD COLUMN next_rotation_time_us INTEGER
  CHECK ((next_rotation_time_us IS NOT NULL) = (rotation_enabled = 1));

-- Serves ListKeysDueForRotation, order included (no sort step).
CREATE INDEX keys_due_for_rotation ON keys (next_rotation_time_us, key_id)
  WHERE state = 'ENABLED' AND rotation_enabled = 1;

ALTER TABLE key_versions ADD COLUMN origin TEXT NOT NULL DEFAULT 'CREATED'
  CHECK (origin IN ('CREATED', 'AUTOMATIC', 'ON_DEMAND', 'USAGE_LIMIT'));
ALTER TABLE key_versions ADD COLUMN encryptions_reserved INTEGER NOT NULL DEFAULT 0
  CHECK (encryptions_reserved >= 0);
)sql",
    // 3: imported key material. As in step 2, the invariants ride on column
    // CHECKs (valid_to_us's CHECK names expiration_model), and the defaults
    // satisfy them for existing rows: no expiration model, no valid_to, no
    // check value or fingerprint (material kmsd generated), material present.
    R"sql(
ALTER TABLE keys ADD COLUMN expiration_model TEXT NOT NULL DEFAULT 'NONE'
  CHECK (expiration_model IN ('NONE', 'KEY_MATERIAL_EXPIRES', 'KEY_MATERIAL_DOES_NOT_EXPIRE'));
ALTER TABLE keys ADD COLUMN valid_to_us INTEGER
  CHECK ((valid_to_us IS NOT NULL) = (expiration_model = 'KEY_MATERIAL_EXPIRES'));

-- Serves ListKeysWithExpiredMaterial, order included (no sort step).
CREATE INDEX keys_material_expiry ON keys (valid_to_us, key_id)
  WHERE valid_to_us IS NOT NULL;

-- Both computed in the HSM; empty for material kmsd generated.
ALTER TABLE key_versions ADD COLUMN key_check_value BLOB NOT NULL DEFAULT x''
  CHECK (length(key_check_value) IN (0, 3));
ALTER TABLE key_versions ADD COLUMN fingerprint BLOB NOT NULL DEFAULT x''
  CHECK (length(fingerprint) IN (0, 16));
ALTER TABLE key_versions ADD COLUMN material_deleted INTEGER NOT NULL DEFAULT 0
  CHECK (material_deleted IN (0, 1));

-- Serves FindVersionsByFingerprint, order included. version_id is spelled
-- out: a rowid table's secondary index carries the rowid, not the key.
CREATE INDEX key_versions_by_fingerprint ON key_versions (fingerprint, version_id);

-- Outstanding GetParametersForImport tokens. wrapping_key_id is also the HSM
-- object id of the RSA wrapping key pair.
CREATE TABLE import_parameters (
  wrapping_key_id TEXT NOT NULL PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  wrapping_algorithm TEXT NOT NULL,
  wrapping_key_spec TEXT NOT NULL,
  creation_time_us INTEGER NOT NULL,
  expiration_time_us INTEGER NOT NULL,
  CHECK (expiration_time_us >= creation_time_us)
) STRICT;

-- Serve ListImportParameters of one key and ListExpiredImportParameters,
-- orders included.
CREATE INDEX import_parameters_by_key
  ON import_parameters (key_id, creation_time_us, wrapping_key_id);
CREATE INDEX import_parameters_by_expiration
  ON import_parameters (expiration_time_us, wrapping_key_id);
)sql",
    // 4: key policies and grants. Existing keys get the empty policy (no
    // statements). The policy is opaque text; its limit is in bytes, hence the
    // CAST (length() of TEXT counts characters, up to the first NUL).
    //
    // A grant's list and maps are child rows, so that no string, whatever it
    // holds, needs an encoding: its operations in grant_operations, in the
    // caller's order (position 0, 1, ...), and its encryption-context
    // constraints in grant_context, one row per pair, kind 'EQUALS'
    // (encryption_context_equals) or 'SUBSET' (encryption_context_subset).
    // Deleting a key cascades to its grants, and a grant to its child rows.
    R"sql(
ALTER TABLE keys ADD COLUMN policy TEXT NOT NULL DEFAULT ''
  CHECK (length(CAST(policy AS BLOB)) <= 32768);

CREATE TABLE grants (
  grant_id TEXT NOT NULL PRIMARY KEY
    CHECK (length(grant_id) = 64 AND grant_id NOT GLOB '*[^0-9a-f]*'),
  key_id TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  grantee_principal TEXT NOT NULL,
  retiring_principal TEXT NOT NULL,
  issuing_principal TEXT NOT NULL,
  -- SHA-256 of the grant token; the UNIQUE index serves FindGrantByTokenHash.
  token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  creation_time_us INTEGER NOT NULL
) STRICT;

-- Serves ListGrants, ListGrantsForKey and CountGrants, order included, and
-- the cascade from keys.
CREATE INDEX grants_by_key ON grants (key_id, grant_id);

CREATE TABLE grant_operations (
  grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
  position INTEGER NOT NULL CHECK (position >= 0),
  operation TEXT NOT NULL,
  PRIMARY KEY (grant_id, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE grant_context (
  grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('EQUALS', 'SUBSET')),
  context_key TEXT NOT NULL,
  context_value TEXT NOT NULL,
  PRIMARY KEY (grant_id, kind, context_key)
) STRICT, WITHOUT ROWID;
)sql",
};
constexpr int kLatestSchemaVersion = static_cast<int>(std::size(kMigrations));

// Long enough to ride out another process's checkpoint or backup; every call
// holds the store's mutex meanwhile, so it is also the worst added latency.
constexpr int kBusyTimeoutMs = 5000;

// ---- SQL. Every value is a bound parameter; the only text spliced into SQL
// is the schema version number in Migrate.

// What a statement acts on, so that a constraint failure can name it. An empty
// message means such a failure is not expected there and becomes kInternal.
struct Subject {
  std::string already_exists;  // for a UNIQUE or PRIMARY KEY conflict
  std::string not_found;       // for a FOREIGN KEY failure
};

// The one place SQLite result codes become absl::Status. `rc` is an extended
// result code; `context` says what was being done, for the log.
absl::Status StatusFromSqlite(sqlite3* db, int rc, absl::string_view context,
                              const Subject& subject = {}) {
  // sqlite3_errmsg describes the connection's most recent failure, which is
  // this one as long as the caller maps it at once (all callers hold mu_).
  const std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      if (!subject.already_exists.empty()) return absl::AlreadyExistsError(subject.already_exists);
      break;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      if (!subject.not_found.empty()) return absl::NotFoundError(subject.not_found);
      break;
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      KMS_LOG(WARNING) << "keystore " << context << ": " << detail << " (" << rc << ")";
      return absl::UnavailableError("keystore database is busy; retry");
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
      KMS_LOG(WARNING) << "keystore " << context << ": " << detail << " (" << rc << ")";
      return absl::UnavailableError(
          "keystore database cannot be written (disk full, I/O error or read-only); retry");
    default:
      // The server logs kInternal text and replaces it in the reply.
      return absl::InternalError(absl::StrCat("keystore ", context, ": ", detail, " (", rc, ")"));
  }
}

absl::Status CheckLimit(int limit) {
  if (limit < 1) return absl::InvalidArgumentError(absl::StrCat("limit must be >= 1, got ", limit));
  return absl::OkStatus();
}

absl::Status CheckNotNewer(int version) {
  if (version <= kLatestSchemaVersion) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the database has schema version ", version,
                   ", newer than the latest this kmsd knows (", kLatestSchemaVersion,
                   "); it was written by a newer kmsd: run that version, or restore a backup taken "
                   "before the upgrade"));
}

constexpr int kMaxRotationPeriodDays = 36500;

// The invariants every stored key keeps. The schema checks them too; checking
// here first gives kInvalidArgument with a message instead of kInternal.
absl::Status ValidateKey(const KeyRecord& key) {
  const bool pending_deletion = key.state == KeyState::kPendingDeletion;
  if (pending_deletion != key.deletion_time.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key.key_id, "': deletion_time must be set exactly when the state is ",
        "PENDING_DELETION, got state ", KeyStateName(key.state),
        key.deletion_time.has_value() ? " with a deletion_time" : " without a deletion_time"));
  }
  if (key.rotation_enabled != key.next_rotation_time.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key.key_id, "': next_rotation_time must be set exactly when rotation is ",
        "enabled, got rotation ", key.rotation_enabled ? "enabled" : "disabled",
        key.next_rotation_time.has_value() ? " with a next_rotation_time"
                                           : " without a next_rotation_time"));
  }
  if (key.rotation_period_days < 0 || key.rotation_period_days > kMaxRotationPeriodDays) {
    return absl::InvalidArgumentError(
        absl::StrCat("key '", key.key_id, "': rotation period must be 0..", kMaxRotationPeriodDays,
                     " days, got ", key.rotation_period_days));
  }
  if (key.policy.size() > kMaxPolicyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("key '", key.key_id,
                                                   "': policy must be at most ", kMaxPolicyBytes,
                                                   " bytes, got ", key.policy.size()));
  }
  if ((key.expiration_model == ExpirationModel::kExpires) != key.valid_to.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key.key_id, "': valid_to must be set exactly when the expiration model is ",
        ExpirationModelName(ExpirationModel::kExpires), ", got ",
        ExpirationModelName(key.expiration_model),
        key.valid_to.has_value() ? " with a valid_to" : " without a valid_to"));
  }
  return absl::OkStatus();
}

absl::Status CheckEncryptionsReserved(absl::string_view version_id, int64_t reserved) {
  if (reserved < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key version '", version_id, "': encryptions_reserved must be >= 0, got ", reserved));
  }
  return absl::OkStatus();
}

constexpr size_t kKeyCheckValueSize = 3;
constexpr size_t kFingerprintSize = 16;

// A version as CreateKey, AddVersion and CommitImport store it. Messages give
// sizes only, never the bytes.
absl::Status ValidateVersion(const KeyVersionRecord& version) {
  KMS_RETURN_IF_ERROR(CheckEncryptionsReserved(version.version_id, version.encryptions_reserved));
  if (!version.key_check_value.empty() && version.key_check_value.size() != kKeyCheckValueSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("key version '", version.version_id, "': key_check_value must be empty or ",
                     kKeyCheckValueSize, " bytes, got ", version.key_check_value.size()));
  }
  if (!version.fingerprint.empty() && version.fingerprint.size() != kFingerprintSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("key version '", version.version_id, "': fingerprint must be empty or ",
                     kFingerprintSize, " bytes, got ", version.fingerprint.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateImportParameters(const ImportParametersRecord& record) {
  if (record.expiration_time < record.creation_time) {
    return absl::InvalidArgumentError(absl::StrCat(
        "import parameters '", record.wrapping_key_id,
        "': expiration_time must not be before creation_time, got expiration ",
        absl::FormatTime(record.expiration_time), " and creation ",
        absl::FormatTime(record.creation_time)));
  }
  return absl::OkStatus();
}

constexpr size_t kGrantIdSize = 64;
constexpr size_t kTokenHashSize = 32;

// A grant as AddGrant stores it. Messages give the token hash's size only.
absl::Status ValidateGrant(const GrantRecord& grant) {
  const bool lower_hex =
      std::all_of(grant.grant_id.begin(), grant.grant_id.end(),
                  [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (grant.grant_id.size() != kGrantIdSize || !lower_hex) {
    return absl::InvalidArgumentError(
        absl::StrCat("grant_id must be ", kGrantIdSize, " lower-case hex characters, got '",
                     absl::CHexEscape(grant.grant_id), "'"));
  }
  if (grant.token_hash.size() != kTokenHashSize) {
    return absl::InvalidArgumentError(absl::StrCat("grant '", grant.grant_id,
                                                   "': token_hash must be ", kTokenHashSize,
                                                   " bytes, got ", grant.token_hash.size()));
  }
  if (grant.operations.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("grant '", grant.grant_id, "': operations must not be empty"));
  }
  return absl::OkStatus();
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Creates the database file with mode 0600 if it is missing. SQLite would
// create it 0644 (less the umask); the WAL and shm files SQLite creates later
// copy the database file's mode, so this covers all three.
absl::Status CreateDatabaseFile(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("keystore database path is empty");
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("keystore database '", path, "' is not a regular file"));
    }
    if ((st.st_mode & 077) != 0) {
      KMS_LOG(WARNING) << "keystore database " << path
                       << " is accessible to group or others; expected mode 0600";
    }
    return absl::OkStatus();
  }
  const std::string dir = DirectoryOf(path);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) return absl::OkStatus();  // created meanwhile; SQLite will check it
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat("cannot create keystore database '", path,
                                              "': directory '", dir, "' does not exist"));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("cannot create keystore database '", path, "'"));
  }
  // A umask may only remove bits, but an odd one could remove the owner's;
  // make the mode exact.
  const int chmod_rc = fchmod(fd, 0600);
  const int chmod_err = errno;
  close(fd);
  if (chmod_rc != 0) {
    return absl::ErrnoToStatus(chmod_err, absl::StrCat("cannot set mode 0600 on '", path, "'"));
  }
  // Make the new directory entry durable, as SQLite does for its own files.
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace

// ---- Statement

class SqliteKeyStore::Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        next_param_(other.next_param_),
        bind_rc_(other.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  // Resetting releases the statement's read snapshot; clearing the bindings
  // drops its copies of the caller's values.
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  // Binders fill the parameters left to right. A failure is kept and
  // reported by the next Step.
  Statement& BindText(absl::string_view text) {
    // An empty string_view may have a null data(), which SQLite binds as NULL.
    const char* data = text.data() != nullptr ? text.data() : "";
    Note(sqlite3_bind_text64(stmt_, next_param_++, data, text.size(), SQLITE_TRANSIENT,
                             SQLITE_UTF8));
    return *this;
  }
  // Binds NULL for an empty string (an optional reference).
  Statement& BindTextOrNull(absl::string_view text) {
    if (text.empty()) {
      Note(sqlite3_bind_null(stmt_, next_param_++));
      return *this;
    }
    return BindText(text);
  }
  // Binds a BLOB, an empty one included (never NULL).
  Statement& BindBlob(absl::string_view bytes) {
    // A null pointer would bind NULL, whatever the size.
    const char* data = bytes.data() != nullptr ? bytes.data() : "";
    Note(sqlite3_bind_blob64(stmt_, next_param_++, data, bytes.size(), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& BindInt(int64_t value) {
    Note(sqlite3_bind_int64(stmt_, next_param_++, value));
    return *this;
  }
  Statement& BindTime(absl::Time t) { return BindInt(absl::ToUnixMicros(t)); }
  Statement& BindTime(const std::optional<absl::Time>& t) {
    if (!t.has_value()) {
      Note(sqlite3_bind_null(stmt_, next_param_++));
      return *this;
    }
    return BindTime(*t);
  }

  // Advances: true with a row to read, false when done.
  absl::StatusOr<bool> Step(absl::string_view context, const Subject& subject = {}) {
    if (bind_rc_ != SQLITE_OK) return StatusFromSqlite(db_, bind_rc_, context, subject);
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return StatusFromSqlite(db_, rc, context, subject);
  }
  // Runs a statement that returns no rows.
  absl::Status Run(absl::string_view context, const Subject& subject = {}) {
    KMS_ASSIGN_OR_RETURN(const bool row, Step(context, subject));
    if (row) {
      return absl::InternalError(absl::StrCat("keystore ", context, ": unexpected row"));
    }
    return absl::OkStatus();
  }
  // Rows changed by the last Run (not counting foreign key cascades).
  int64_t Changes() const { return sqlite3_changes64(db_); }

  std::string Text(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    if (text == nullptr) return "";  // NULL
    return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  // A BLOB column's bytes ("" for an empty BLOB or NULL).
  std::string Blob(int column) const {
    const void* data = sqlite3_column_blob(stmt_, column);
    if (data == nullptr) return "";
    return std::string(static_cast<const char*>(data),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  bool IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  absl::Time Time(int column) const { return absl::FromUnixMicros(Int(column)); }
  std::optional<absl::Time> OptionalTime(int column) const {
    if (IsNull(column)) return std::nullopt;
    return Time(column);
  }

 private:
  void Note(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int next_param_ = 1;
  int bind_rc_ = SQLITE_OK;
};

// ---- opening

SqliteKeyStore::SqliteKeyStore(sqlite3* db) : db_(db) {}

SqliteKeyStore::~SqliteKeyStore() {
  absl::MutexLock lock(&mu_);
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  // Closing the last connection checkpoints the WAL into the database file.
  const int rc = sqlite3_close(db_);
  if (rc != SQLITE_OK) {
    KMS_LOG(ERROR) << "keystore: closing the database failed: " << sqlite3_errstr(rc);
  }
}

int SqliteKeyStore::LatestSchemaVersion() { return kLatestSchemaVersion; }

absl::StatusOr<std::unique_ptr<SqliteKeyStore>> SqliteKeyStore::Open(const std::string& path) {
  const bool in_memory = path == ":memory:";
  if (!in_memory) KMS_RETURN_IF_ERROR(CreateDatabaseFile(path));
  // NOMUTEX: the store's own mutex already serialises every use of the
  // connection. No SQLITE_OPEN_CREATE for a file: it exists by now, with the
  // mode chosen above.
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  if (in_memory) flags |= SQLITE_OPEN_CREATE;
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = StatusFromSqlite(db, rc, absl::StrCat("opening database '", path, "'"));
    sqlite3_close(db);  // sqlite3_open_v2 allocates a handle even when it fails
    return status;
  }
  // From here the store owns `db` and closes it if anything below fails.
  auto store = absl::WrapUnique(new SqliteKeyStore(db));
  if (absl::Status status = store->Initialize(in_memory, path); !status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("opening keystore database '", path, "': ", status.message()));
  }
  return store;
}

absl::Status SqliteKeyStore::Initialize(bool in_memory, const std::string& path) {
  absl::MutexLock lock(&mu_);
  // Extended codes tell a UNIQUE conflict from a FOREIGN KEY failure.
  sqlite3_extended_result_codes(db_, 1);
  if (const int rc = sqlite3_busy_timeout(db_, kBusyTimeoutMs); rc != SQLITE_OK) {
    return StatusFromSqlite(db_, rc, "setting busy_timeout");
  }
  // Per connection, and a no-op inside a transaction: set it first.
  KMS_RETURN_IF_ERROR(Execute("PRAGMA foreign_keys = ON"));
  {
    KMS_ASSIGN_OR_RETURN(Statement check, Prepare("PRAGMA foreign_keys"));
    KMS_ASSIGN_OR_RETURN(const bool row, check.Step("reading foreign_keys"));
    if (!row || check.Int(0) != 1) {
      return absl::InternalError("keystore: this SQLite build does not enforce foreign keys");
    }
  }
  // Refuse a newer database before changing anything in it.
  KMS_ASSIGN_OR_RETURN(const int version, SchemaVersion());
  KMS_RETURN_IF_ERROR(CheckNotNewer(version));
  if (!in_memory) {
    KMS_ASSIGN_OR_RETURN(Statement wal, Prepare("PRAGMA journal_mode = WAL"));
    KMS_ASSIGN_OR_RETURN(const bool row, wal.Step("setting journal_mode"));
    // SQLite answers with the mode it ended up in, which is not WAL when the
    // file system cannot provide it.
    if (!row || wal.Text(0) != "wal") {
      return absl::FailedPreconditionError(absl::StrCat("cannot use WAL journal mode (got '",
                                                        row ? wal.Text(0) : std::string(),
                                                        "'); is it on a network file system?"));
    }
  }
  // FULL: every commit fsyncs the WAL, so an acknowledged change survives a
  // power loss (NORMAL would only protect against a process crash).
  KMS_RETURN_IF_ERROR(Execute("PRAGMA synchronous = FULL"));
  return Migrate(path);
}

absl::StatusOr<int> SqliteKeyStore::SchemaVersion() {
  KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("PRAGMA user_version"));
  KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading user_version"));
  if (!row) return absl::InternalError("keystore: PRAGMA user_version returned no row");
  return static_cast<int>(stmt.Int(0));
}

absl::Status SqliteKeyStore::Migrate(const std::string& path) {
  for (;;) {
    int from = 0;
    // Re-read the version inside each write transaction, so a second process
    // migrating at the same time cannot make a step run twice.
    KMS_RETURN_IF_ERROR(InTransaction(
        TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
          KMS_ASSIGN_OR_RETURN(from, SchemaVersion());
          KMS_RETURN_IF_ERROR(CheckNotNewer(from));
          if (from == kLatestSchemaVersion) return absl::OkStatus();
          const std::string context = absl::StrCat("migrating to schema version ", from + 1);
          int rc = sqlite3_exec(db_, kMigrations[from], nullptr, nullptr, nullptr);
          if (rc != SQLITE_OK) return StatusFromSqlite(db_, rc, context);
          // PRAGMA takes no bound parameters; the number comes from this code.
          const std::string bump = absl::StrCat("PRAGMA user_version = ", from + 1);
          rc = sqlite3_exec(db_, bump.c_str(), nullptr, nullptr, nullptr);
          if (rc != SQLITE_OK) return StatusFromSqlite(db_, rc, context);
          return absl::OkStatus();
        }));
    if (from == kLatestSchemaVersion) return absl::OkStatus();
    if (path != ":memory:") {
      KMS_LOG(INFO) << "keystore " << path << ": schema version " << from << " -> " << from + 1;
    }
  }
}

absl::StatusOr<SqliteKeyStore::ConnectionSettings> SqliteKeyStore::Settings() {
  absl::MutexLock lock(&mu_);
  ConnectionSettings settings;
  {
    KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("PRAGMA journal_mode"));
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading journal_mode"));
    if (row) settings.journal_mode = stmt.Text(0);
  }
  struct IntPragma {
    const char* sql;
    int* out;
  };
  int foreign_keys = 0;
  for (const IntPragma& pragma : {IntPragma{"PRAGMA synchronous", &settings.synchronous},
                                  IntPragma{"PRAGMA foreign_keys", &foreign_keys},
                                  IntPragma{"PRAGMA busy_timeout", &settings.busy_timeout_ms},
                                  IntPragma{"PRAGMA user_version", &settings.schema_version}}) {
    KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare(pragma.sql));
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step(pragma.sql));
    if (row) *pragma.out = static_cast<int>(stmt.Int(0));
  }
  settings.foreign_keys = foreign_keys == 1;
  return settings;
}

namespace {

// Every key SELECT lists these columns, in this order, for ReadKey. A macro so
// that the SQL stays one string literal (Prepare caches by its text).
#define KMS_KEY_COLUMNS                                                            \
  "key_id, description, state, origin, key_usage, key_spec, creation_time_us, "    \
  "deletion_time_us, current_version_id, rotation_enabled, rotation_period_days, " \
  "next_rotation_time_us, expiration_model, valid_to_us, policy"
absl::StatusOr<KeyRecord> ReadKey(const SqliteKeyStore::Statement& row) {
  KeyRecord key;
  key.key_id = row.Text(0);
  key.description = row.Text(1);
  KMS_ASSIGN_OR_RETURN(key.state, ParseKeyState(row.Text(2)));
  KMS_ASSIGN_OR_RETURN(key.origin, ParseKeyOrigin(row.Text(3)));
  key.key_usage = row.Text(4);
  key.key_spec = row.Text(5);
  key.creation_time = row.Time(6);
  key.deletion_time = row.OptionalTime(7);
  key.current_version_id = row.Text(8);  // NULL reads as ""
  key.rotation_enabled = row.Int(9) != 0;
  // The schema keeps it in 0..36500.
  key.rotation_period_days = static_cast<int>(row.Int(10));
  key.next_rotation_time = row.OptionalTime(11);
  KMS_ASSIGN_OR_RETURN(key.expiration_model, ParseExpirationModel(row.Text(12)));
  key.valid_to = row.OptionalTime(13);
  key.policy = row.Text(14);
  return key;
}

// The same for key versions and ReadVersion.
#define KMS_VERSION_COLUMNS                                                   \
  "version_id, key_id, creation_time_us, origin, encryptions_reserved, " \
  "key_check_value, fingerprint, material_deleted"
absl::StatusOr<KeyVersionRecord> ReadVersion(const SqliteKeyStore::Statement& row) {
  KeyVersionRecord version;
  version.version_id = row.Text(0);
  version.key_id = row.Text(1);
  version.creation_time = row.Time(2);
  KMS_ASSIGN_OR_RETURN(version.origin, ParseVersionOrigin(row.Text(3)));
  version.encryptions_reserved = row.Int(4);
  version.key_check_value = row.Blob(5);
  version.fingerprint = row.Blob(6);
  version.material_deleted = row.Int(7) != 0;
  return version;
}

// The same for import parameters and ReadImportParameters.
#define KMS_IMPORT_PARAMETERS_COLUMNS                                 \
  "wrapping_key_id, key_id, wrapping_algorithm, wrapping_key_spec, " \
  "creation_time_us, expiration_time_us"
ImportParametersRecord ReadImportParameters(const SqliteKeyStore::Statement& row) {
  ImportParametersRecord record;
  record.wrapping_key_id = row.Text(0);
  record.key_id = row.Text(1);
  record.wrapping_algorithm = row.Text(2);
  record.wrapping_key_spec = row.Text(3);
  record.creation_time = row.Time(4);
  record.expiration_time = row.Time(5);
  return record;
}

// The same for grants: the grants row of ReadGrantRows. Operations and
// encryption-context constraints live in their own tables
// (SqliteKeyStore::ReadGrantChildren).
#define KMS_GRANT_COLUMNS                                                           \
  "grant_id, key_id, name, grantee_principal, retiring_principal, issuing_principal, " \
  "token_hash, creation_time_us"
GrantRecord ReadGrantRow(const SqliteKeyStore::Statement& row) {
  GrantRecord grant;
  grant.grant_id = row.Text(0);
  grant.key_id = row.Text(1);
  grant.name = row.Text(2);
  grant.grantee_principal = row.Text(3);
  grant.retiring_principal = row.Text(4);
  grant.issuing_principal = row.Text(5);
  grant.token_hash = row.Blob(6);
  grant.creation_time = row.Time(7);
  return grant;
}

// Every row `stmt` (a SELECT of KMS_GRANT_COLUMNS, parameters bound) returns,
// without children.
absl::StatusOr<std::vector<GrantRecord>> ReadGrantRows(SqliteKeyStore::Statement& stmt,
                                                       absl::string_view context) {
  std::vector<GrantRecord> grants;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step(context));
    if (!row) break;
    grants.push_back(ReadGrantRow(stmt));
  }
  return grants;
}

// grant_context.kind of each of a grant's two maps.
constexpr absl::string_view kContextEquals = "EQUALS";
constexpr absl::string_view kContextSubset = "SUBSET";

// Columns: alias_name, key_id, creation_time_us, last_updated_time_us.
AliasRecord ReadAlias(const SqliteKeyStore::Statement& row) {
  AliasRecord alias;
  alias.alias_name = row.Text(0);
  alias.key_id = row.Text(1);
  alias.creation_time = row.Time(2);
  alias.last_updated_time = row.Time(3);
  return alias;
}

}  // namespace

// ---- plumbing

absl::StatusOr<SqliteKeyStore::Statement> SqliteKeyStore::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    // PERSISTENT: these live as long as the connection.
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) return StatusFromSqlite(db_, rc, absl::StrCat("preparing: ", sql));
    if (stmt == nullptr || (tail != nullptr && *tail != '\0')) {
      sqlite3_finalize(stmt);
      return absl::InternalError(absl::StrCat("keystore: not exactly one SQL statement: ", sql));
    }
    it = statements_.emplace(sql, stmt).first;
  }
  return Statement(db_, it->second);
}

absl::Status SqliteKeyStore::Execute(const char* sql) {
  KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare(sql));
  return stmt.Run(sql);
}

template <typename Body>
absl::Status SqliteKeyStore::InTransaction(TransactionMode mode, Body body) {
  // IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so
  // a writer never fails half way with SQLITE_BUSY on lock upgrade.
  KMS_RETURN_IF_ERROR(Execute(mode == TransactionMode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN"));
  absl::Status status = body();
  if (status.ok()) status = Execute("COMMIT");
  // A failed COMMIT can leave the transaction open (SQLITE_BUSY); roll back
  // whatever is still open so the next call starts clean.
  if (!status.ok() && sqlite3_get_autocommit(db_) == 0) {
    const absl::Status rollback = Execute("ROLLBACK");
    if (!rollback.ok()) KMS_LOG(ERROR) << "keystore: ROLLBACK failed: " << rollback;
  }
  return status;
}

absl::Status SqliteKeyStore::CheckKeyExists(absl::string_view key_id) {
  KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("SELECT 1 FROM keys WHERE key_id = ?"));
  stmt.BindText(key_id);
  KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("looking up key"));
  if (!row) return absl::NotFoundError(absl::StrCat("key '", key_id, "' not found"));
  return absl::OkStatus();
}

absl::Status SqliteKeyStore::UpdateKeyLocked(const KeyRecord& key) {
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("UPDATE keys SET description = ?, state = ?, deletion_time_us = ?, "
                               "current_version_id = ?, rotation_enabled = ?, "
                               "rotation_period_days = ?, next_rotation_time_us = ?, "
                               "expiration_model = ?, valid_to_us = ?, policy = ? "
                               "WHERE key_id = ?"));
  stmt.BindText(key.description)
      .BindText(KeyStateName(key.state))
      .BindTime(key.deletion_time)
      .BindTextOrNull(key.current_version_id)
      .BindInt(key.rotation_enabled ? 1 : 0)
      .BindInt(key.rotation_period_days)
      .BindTime(key.next_rotation_time)
      .BindText(ExpirationModelName(key.expiration_model))
      .BindTime(key.valid_to)
      .BindText(key.policy)
      .BindText(key.key_id);
  KMS_RETURN_IF_ERROR(stmt.Run(
      "updating key", Subject{/*already_exists=*/"",
                              /*not_found=*/absl::StrCat("key '", key.key_id, "' has no version '",
                                                         key.current_version_id, "'")}));
  if (stmt.Changes() == 0) {
    return absl::NotFoundError(absl::StrCat("key '", key.key_id, "' not found"));
  }
  return absl::OkStatus();
}

absl::Status SqliteKeyStore::InsertVersion(const KeyVersionRecord& version) {
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("INSERT INTO key_versions (" KMS_VERSION_COLUMNS
                               ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  stmt.BindText(version.version_id)
      .BindText(version.key_id)
      .BindTime(version.creation_time)
      .BindText(VersionOriginName(version.origin))
      .BindInt(version.encryptions_reserved)
      .BindBlob(version.key_check_value)
      .BindBlob(version.fingerprint)
      .BindInt(version.material_deleted ? 1 : 0);
  return stmt.Run("inserting key version",
                  Subject{/*already_exists=*/
                          absl::StrCat("key version '", version.version_id, "' already exists"),
                          /*not_found=*/absl::StrCat("key '", version.key_id, "' not found")});
}

absl::Status SqliteKeyStore::UpsertTags(absl::string_view key_id,
                                        const std::vector<TagRecord>& tags) {
  for (const TagRecord& tag : tags) {
    KMS_ASSIGN_OR_RETURN(Statement stmt,
                         Prepare("INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?, ?, ?) "
                                 "ON CONFLICT (key_id, tag_key) DO UPDATE SET "
                                 "tag_value = excluded.tag_value"));
    stmt.BindText(key_id).BindText(tag.key).BindText(tag.value);
    KMS_RETURN_IF_ERROR(stmt.Run(
        "writing tag", Subject{/*already_exists=*/"",
                               /*not_found=*/absl::StrCat("key '", key_id, "' not found")}));
  }
  return absl::OkStatus();
}

// ---- keys and versions

absl::Status SqliteKeyStore::CreateKey(const KeyRecord& key,
                                       const std::optional<KeyVersionRecord>& version,
                                       const std::vector<TagRecord>& tags) {
  KMS_RETURN_IF_ERROR(ValidateKey(key));
  if (version.has_value()) KMS_RETURN_IF_ERROR(ValidateVersion(*version));
  if (version.has_value() && version->key_id != key.key_id) {
    return absl::InvalidArgumentError(absl::StrCat("version '", version->version_id,
                                                   "' names key '", version->key_id,
                                                   "', not the key created, '", key.key_id, "'"));
  }
  if (!key.current_version_id.empty() &&
      (!version.has_value() || version->version_id != key.current_version_id)) {
    return absl::InvalidArgumentError(absl::StrCat("key '", key.key_id, "': current_version_id '",
                                                   key.current_version_id,
                                                   "' is not the version created with it"));
  }
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        {
          // The current version is set after the version row exists: the foreign
          // key from keys to key_versions is checked per statement.
          KMS_ASSIGN_OR_RETURN(Statement stmt,
                               Prepare("INSERT INTO keys (" KMS_KEY_COLUMNS ") "
                                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)"));
          stmt.BindText(key.key_id)
              .BindText(key.description)
              .BindText(KeyStateName(key.state))
              .BindText(KeyOriginName(key.origin))
              .BindText(key.key_usage)
              .BindText(key.key_spec)
              .BindTime(key.creation_time)
              .BindTime(key.deletion_time)
              .BindInt(key.rotation_enabled ? 1 : 0)
              .BindInt(key.rotation_period_days)
              .BindTime(key.next_rotation_time)
              .BindText(ExpirationModelName(key.expiration_model))
              .BindTime(key.valid_to)
              .BindText(key.policy);
          KMS_RETURN_IF_ERROR(stmt.Run(
              "inserting key",
              Subject{/*already_exists=*/absl::StrCat("key '", key.key_id, "' already exists"),
                      /*not_found=*/""}));
        }
        if (version.has_value()) KMS_RETURN_IF_ERROR(InsertVersion(*version));
        if (!key.current_version_id.empty()) KMS_RETURN_IF_ERROR(UpdateKeyLocked(key));
        return UpsertTags(key.key_id, tags);
      });
}

absl::StatusOr<KeyRecord> SqliteKeyStore::GetKey(absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT " KMS_KEY_COLUMNS " FROM keys WHERE key_id = ?"));
  stmt.BindText(key_id);
  KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading key"));
  if (!row) return absl::NotFoundError(absl::StrCat("key '", key_id, "' not found"));
  return ReadKey(stmt);
}

absl::Status SqliteKeyStore::UpdateKey(const KeyRecord& key) {
  KMS_RETURN_IF_ERROR(ValidateKey(key));
  absl::MutexLock lock(&mu_);
  return InTransaction(TransactionMode::kWrite,
                       [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return UpdateKeyLocked(key); });
}

absl::StatusOr<Page<KeyRecord>> SqliteKeyStore::ListKeys(int limit, absl::string_view marker) {
  KMS_RETURN_IF_ERROR(CheckLimit(limit));
  absl::MutexLock lock(&mu_);
  // Separate statements rather than "key_id > ''" for the first page, so that
  // no key id, however odd, is skipped.
  KMS_ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare(marker.empty() ? "SELECT " KMS_KEY_COLUMNS " FROM keys ORDER BY key_id LIMIT ?"
                             : "SELECT " KMS_KEY_COLUMNS
                               " FROM keys WHERE key_id > ? ORDER BY key_id LIMIT ?"));
  if (!marker.empty()) stmt.BindText(marker);
  // One row more than asked for tells whether another page follows.
  stmt.BindInt(int64_t{limit} + 1);
  Page<KeyRecord> page;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing keys"));
    if (!row) break;
    if (page.items.size() == static_cast<size_t>(limit)) {
      page.next_marker = page.items.back().key_id;
      break;
    }
    KMS_ASSIGN_OR_RETURN(KeyRecord key, ReadKey(stmt));
    page.items.push_back(std::move(key));
  }
  return page;
}

absl::StatusOr<std::vector<KeyRecord>> SqliteKeyStore::ListKeysDueForDeletion(absl::Time t) {
  absl::MutexLock lock(&mu_);
  // The state is a literal so that the partial index keys_pending_deletion
  // applies.
  KMS_ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("SELECT " KMS_KEY_COLUMNS " FROM keys WHERE state = 'PENDING_DELETION' "
              "AND deletion_time_us <= ? ORDER BY deletion_time_us, key_id"));
  stmt.BindTime(t);
  std::vector<KeyRecord> keys;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing keys due for deletion"));
    if (!row) break;
    KMS_ASSIGN_OR_RETURN(KeyRecord key, ReadKey(stmt));
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::Status SqliteKeyStore::DeleteKey(absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        // Versions, aliases, tags, grants (with their operations and
        // constraints) and import parameters go by ON DELETE CASCADE.
        KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("DELETE FROM keys WHERE key_id = ?"));
        stmt.BindText(key_id);
        KMS_RETURN_IF_ERROR(stmt.Run("deleting key"));
        if (stmt.Changes() == 0) {
          return absl::NotFoundError(absl::StrCat("key '", key_id, "' not found"));
        }
        return absl::OkStatus();
      });
}

absl::Status SqliteKeyStore::AddVersion(const KeyVersionRecord& version,
                                        const KeyRecord& updated_key) {
  KMS_RETURN_IF_ERROR(ValidateKey(updated_key));
  KMS_RETURN_IF_ERROR(ValidateVersion(version));
  if (version.key_id != updated_key.key_id) {
    return absl::InvalidArgumentError(absl::StrCat("version '", version.version_id, "' names key '",
                                                   version.key_id, "', not the key updated, '",
                                                   updated_key.key_id, "'"));
  }
  absl::MutexLock lock(&mu_);
  // The version goes in first: the key's new current_version_id must name an
  // existing row. A failed key update rolls the insert back.
  return InTransaction(TransactionMode::kWrite,
                       [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
                         KMS_RETURN_IF_ERROR(InsertVersion(version));
                         return UpdateKeyLocked(updated_key);
                       });
}

absl::StatusOr<std::vector<KeyRecord>> SqliteKeyStore::ListKeysDueForRotation(absl::Time t) {
  absl::MutexLock lock(&mu_);
  // The WHERE repeats the partial index's terms literally (SQLite only uses a
  // partial index when the query implies its condition), and the index's
  // column order gives the ORDER BY without a sort.
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT " KMS_KEY_COLUMNS " FROM keys WHERE state = 'ENABLED' "
                               "AND rotation_enabled = 1 AND next_rotation_time_us <= ? "
                               "ORDER BY next_rotation_time_us, key_id"));
  stmt.BindTime(t);
  std::vector<KeyRecord> keys;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing keys due for rotation"));
    if (!row) break;
    KMS_ASSIGN_OR_RETURN(KeyRecord key, ReadKey(stmt));
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::Status SqliteKeyStore::ReserveEncryptions(absl::string_view version_id, int64_t reserved) {
  KMS_RETURN_IF_ERROR(CheckEncryptionsReserved(version_id, reserved));
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        // MAX in the statement, not a read then a write: the count can only
        // grow, even if a caller's reservations arrive out of order.
        KMS_ASSIGN_OR_RETURN(Statement stmt,
                             Prepare("UPDATE key_versions SET encryptions_reserved = "
                                     "MAX(encryptions_reserved, ?) WHERE version_id = ?"));
        stmt.BindInt(reserved).BindText(version_id);
        KMS_RETURN_IF_ERROR(stmt.Run("reserving encryptions"));
        // Counts the matched row even when MAX kept the old value.
        if (stmt.Changes() == 0) {
          return absl::NotFoundError(absl::StrCat("key version '", version_id, "' not found"));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<KeyVersionRecord> SqliteKeyStore::GetVersion(absl::string_view version_id) {
  absl::MutexLock lock(&mu_);
  KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("SELECT " KMS_VERSION_COLUMNS " FROM key_versions "
                                               "WHERE version_id = ?"));
  stmt.BindText(version_id);
  KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading key version"));
  if (!row) {
    return absl::NotFoundError(absl::StrCat("key version '", version_id, "' not found"));
  }
  return ReadVersion(stmt);
}

absl::StatusOr<std::vector<KeyVersionRecord>> SqliteKeyStore::ListVersions(
    absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  // rowid breaks ties between versions created in the same microsecond.
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT " KMS_VERSION_COLUMNS " FROM key_versions "
                               "WHERE key_id = ? ORDER BY creation_time_us, rowid"));
  stmt.BindText(key_id);
  std::vector<KeyVersionRecord> versions;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing key versions"));
    if (!row) break;
    KMS_ASSIGN_OR_RETURN(KeyVersionRecord version, ReadVersion(stmt));
    versions.push_back(std::move(version));
  }
  return versions;
}

// ---- imported material

absl::StatusOr<std::vector<KeyVersionRecord>> SqliteKeyStore::FindVersionsByFingerprint(
    absl::string_view fingerprint) {
  // Every generated version has the empty fingerprint: searching for it would
  // match them all.
  if (fingerprint.empty()) return absl::InvalidArgumentError("fingerprint must not be empty");
  absl::MutexLock lock(&mu_);
  // key_versions_by_fingerprint gives the rows in version_id order.
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT " KMS_VERSION_COLUMNS " FROM key_versions "
                               "WHERE fingerprint = ? ORDER BY version_id"));
  stmt.BindBlob(fingerprint);
  std::vector<KeyVersionRecord> versions;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("finding key versions by fingerprint"));
    if (!row) break;
    KMS_ASSIGN_OR_RETURN(KeyVersionRecord version, ReadVersion(stmt));
    versions.push_back(std::move(version));
  }
  return versions;
}

absl::StatusOr<std::vector<KeyRecord>> SqliteKeyStore::ListKeysWithExpiredMaterial(
    absl::Time t) {
  absl::MutexLock lock(&mu_);
  // "valid_to_us IS NOT NULL" repeats the partial index keys_material_expiry's
  // condition, whose column order gives the ORDER BY. The EXISTS probes the
  // key's versions through their UNIQUE (key_id, version_id) index.
  KMS_ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("SELECT " KMS_KEY_COLUMNS " FROM keys WHERE valid_to_us IS NOT NULL "
              "AND valid_to_us <= ? AND EXISTS (SELECT 1 FROM key_versions AS v "
              "WHERE v.key_id = keys.key_id AND v.material_deleted = 0) "
              "ORDER BY valid_to_us, key_id"));
  stmt.BindTime(t);
  std::vector<KeyRecord> keys;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing keys with expired material"));
    if (!row) break;
    KMS_ASSIGN_OR_RETURN(KeyRecord key, ReadKey(stmt));
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::Status SqliteKeyStore::CommitImport(const ImportCommit& commit) {
  const KeyRecord& key = commit.key;
  KMS_RETURN_IF_ERROR(ValidateKey(key));
  if (commit.new_version.has_value()) {
    if (!commit.restored_version_id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "import into key '", key.key_id, "': either a new version ('",
          commit.new_version->version_id, "') or a restored one ('", commit.restored_version_id,
          "'), not both"));
    }
    KMS_RETURN_IF_ERROR(ValidateVersion(*commit.new_version));
    if (commit.new_version->key_id != key.key_id) {
      return absl::InvalidArgumentError(
          absl::StrCat("version '", commit.new_version->version_id, "' names key '",
                       commit.new_version->key_id, "', not the key imported into, '", key.key_id,
                       "'"));
    }
  }
  absl::MutexLock lock(&mu_);
  // The versions change first: the key's new current_version_id may name the
  // new version. Any failure, the import parameters' last, rolls it all back.
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        // Explicit, so that an unknown key reads as such rather than as a
        // missing version to restore.
        KMS_RETURN_IF_ERROR(CheckKeyExists(key.key_id));
        if (commit.new_version.has_value()) {
          KMS_RETURN_IF_ERROR(InsertVersion(*commit.new_version));
        } else if (!commit.restored_version_id.empty()) {
          KMS_ASSIGN_OR_RETURN(Statement stmt,
                               Prepare("UPDATE key_versions SET material_deleted = 0 "
                                       "WHERE version_id = ? AND key_id = ?"));
          stmt.BindText(commit.restored_version_id).BindText(key.key_id);
          KMS_RETURN_IF_ERROR(stmt.Run("restoring key version"));
          if (stmt.Changes() == 0) {
            return absl::NotFoundError(absl::StrCat("key '", key.key_id, "' has no version '",
                                                    commit.restored_version_id, "'"));
          }
        }
        KMS_RETURN_IF_ERROR(UpdateKeyLocked(key));
        KMS_ASSIGN_OR_RETURN(
            Statement stmt, Prepare("DELETE FROM import_parameters WHERE wrapping_key_id = ?"));
        stmt.BindText(commit.consumed_wrapping_key_id);
        KMS_RETURN_IF_ERROR(stmt.Run("consuming import parameters"));
        if (stmt.Changes() == 0) {
          return absl::NotFoundError(absl::StrCat("import parameters '",
                                                  commit.consumed_wrapping_key_id, "' not found"));
        }
        return absl::OkStatus();
      });
}

absl::Status SqliteKeyStore::MarkMaterialDeleted(const KeyRecord& key) {
  KMS_RETURN_IF_ERROR(ValidateKey(key));
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_RETURN_IF_ERROR(UpdateKeyLocked(key));
        KMS_ASSIGN_OR_RETURN(Statement stmt,
                             Prepare("UPDATE key_versions SET material_deleted = 1 "
                                     "WHERE key_id = ?"));
        stmt.BindText(key.key_id);
        return stmt.Run("marking key material deleted");
      });
}

absl::Status SqliteKeyStore::AddImportParameters(const ImportParametersRecord& record) {
  KMS_RETURN_IF_ERROR(ValidateImportParameters(record));
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(Statement stmt,
                             Prepare("INSERT INTO import_parameters (" KMS_IMPORT_PARAMETERS_COLUMNS
                                     ") VALUES (?, ?, ?, ?, ?, ?)"));
        stmt.BindText(record.wrapping_key_id)
            .BindText(record.key_id)
            .BindText(record.wrapping_algorithm)
            .BindText(record.wrapping_key_spec)
            .BindTime(record.creation_time)
            .BindTime(record.expiration_time);
        return stmt.Run(
            "inserting import parameters",
            Subject{/*already_exists=*/absl::StrCat("import parameters '", record.wrapping_key_id,
                                                    "' already exist"),
                    /*not_found=*/absl::StrCat("key '", record.key_id, "' not found")});
      });
}

absl::StatusOr<ImportParametersRecord> SqliteKeyStore::GetImportParameters(
    absl::string_view wrapping_key_id) {
  absl::MutexLock lock(&mu_);
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT " KMS_IMPORT_PARAMETERS_COLUMNS
                               " FROM import_parameters WHERE wrapping_key_id = ?"));
  stmt.BindText(wrapping_key_id);
  KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading import parameters"));
  if (!row) {
    return absl::NotFoundError(
        absl::StrCat("import parameters '", wrapping_key_id, "' not found"));
  }
  return ReadImportParameters(stmt);
}

absl::Status SqliteKeyStore::DeleteImportParameters(absl::string_view wrapping_key_id) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(
            Statement stmt, Prepare("DELETE FROM import_parameters WHERE wrapping_key_id = ?"));
        stmt.BindText(wrapping_key_id);
        KMS_RETURN_IF_ERROR(stmt.Run("deleting import parameters"));
        if (stmt.Changes() == 0) {
          return absl::NotFoundError(
              absl::StrCat("import parameters '", wrapping_key_id, "' not found"));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<ImportParametersRecord>> SqliteKeyStore::ListImportParameters(
    absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  // One key's: import_parameters_by_key gives the order. Every key's: a sort,
  // of the few tokens outstanding.
  KMS_ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare(key_id.empty() ? "SELECT " KMS_IMPORT_PARAMETERS_COLUMNS
                               " FROM import_parameters ORDER BY creation_time_us, wrapping_key_id"
                             : "SELECT " KMS_IMPORT_PARAMETERS_COLUMNS
                               " FROM import_parameters WHERE key_id = ? "
                               "ORDER BY creation_time_us, wrapping_key_id"));
  if (!key_id.empty()) stmt.BindText(key_id);
  std::vector<ImportParametersRecord> records;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing import parameters"));
    if (!row) break;
    records.push_back(ReadImportParameters(stmt));
  }
  return records;
}

absl::StatusOr<std::vector<ImportParametersRecord>> SqliteKeyStore::ListExpiredImportParameters(
    absl::Time t) {
  absl::MutexLock lock(&mu_);
  // "Oldest first": earliest expiration_time, ties by wrapping_key_id, the
  // order of import_parameters_by_expiration.
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT " KMS_IMPORT_PARAMETERS_COLUMNS
                               " FROM import_parameters WHERE expiration_time_us <= ? "
                               "ORDER BY expiration_time_us, wrapping_key_id"));
  stmt.BindTime(t);
  std::vector<ImportParametersRecord> records;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing expired import parameters"));
    if (!row) break;
    records.push_back(ReadImportParameters(stmt));
  }
  return records;
}

// ---- aliases

absl::Status SqliteKeyStore::CreateAlias(const AliasRecord& alias) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(Statement stmt,
                             Prepare("INSERT INTO aliases (alias_name, key_id, creation_time_us, "
                                     "last_updated_time_us) VALUES (?, ?, ?, ?)"));
        stmt.BindText(alias.alias_name)
            .BindText(alias.key_id)
            .BindTime(alias.creation_time)
            .BindTime(alias.last_updated_time);
        return stmt.Run("inserting alias",
                        Subject{/*already_exists=*/absl::StrCat("alias '", alias.alias_name,
                                                                "' already exists"),
                                /*not_found=*/absl::StrCat("key '", alias.key_id, "' not found")});
      });
}

absl::Status SqliteKeyStore::UpdateAlias(absl::string_view alias_name, absl::string_view key_id,
                                         absl::Time now) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(
            Statement stmt,
            Prepare(
                "UPDATE aliases SET key_id = ?, last_updated_time_us = ? WHERE alias_name = ?"));
        stmt.BindText(key_id).BindTime(now).BindText(alias_name);
        KMS_RETURN_IF_ERROR(stmt.Run(
            "updating alias", Subject{/*already_exists=*/"",
                                      /*not_found=*/absl::StrCat("key '", key_id, "' not found")}));
        if (stmt.Changes() == 0) {
          return absl::NotFoundError(absl::StrCat("alias '", alias_name, "' not found"));
        }
        return absl::OkStatus();
      });
}

absl::Status SqliteKeyStore::DeleteAlias(absl::string_view alias_name) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("DELETE FROM aliases WHERE alias_name = ?"));
        stmt.BindText(alias_name);
        KMS_RETURN_IF_ERROR(stmt.Run("deleting alias"));
        if (stmt.Changes() == 0) {
          return absl::NotFoundError(absl::StrCat("alias '", alias_name, "' not found"));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<AliasRecord> SqliteKeyStore::GetAlias(absl::string_view alias_name) {
  absl::MutexLock lock(&mu_);
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT alias_name, key_id, creation_time_us, "
                               "last_updated_time_us FROM aliases WHERE alias_name = ?"));
  stmt.BindText(alias_name);
  KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading alias"));
  if (!row) return absl::NotFoundError(absl::StrCat("alias '", alias_name, "' not found"));
  return ReadAlias(stmt);
}

absl::StatusOr<Page<AliasRecord>> SqliteKeyStore::ListAliases(
    const std::optional<std::string>& key_id, int limit, absl::string_view marker) {
  KMS_RETURN_IF_ERROR(CheckLimit(limit));
  // [filtered][with marker]; parameters in the order key_id, marker, limit.
  static constexpr const char* kSql[2][2] = {
      {"SELECT alias_name, key_id, creation_time_us, last_updated_time_us FROM aliases "
       "ORDER BY alias_name LIMIT ?",
       "SELECT alias_name, key_id, creation_time_us, last_updated_time_us FROM aliases "
       "WHERE alias_name > ? ORDER BY alias_name LIMIT ?"},
      {"SELECT alias_name, key_id, creation_time_us, last_updated_time_us FROM aliases "
       "WHERE key_id = ? ORDER BY alias_name LIMIT ?",
       "SELECT alias_name, key_id, creation_time_us, last_updated_time_us FROM aliases "
       "WHERE key_id = ? AND alias_name > ? ORDER BY alias_name LIMIT ?"}};
  absl::MutexLock lock(&mu_);
  KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql[key_id.has_value()][!marker.empty()]));
  if (key_id.has_value()) stmt.BindText(*key_id);
  if (!marker.empty()) stmt.BindText(marker);
  stmt.BindInt(int64_t{limit} + 1);
  Page<AliasRecord> page;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing aliases"));
    if (!row) break;
    if (page.items.size() == static_cast<size_t>(limit)) {
      page.next_marker = page.items.back().alias_name;
      break;
    }
    page.items.push_back(ReadAlias(stmt));
  }
  return page;
}

// ---- grants

absl::Status SqliteKeyStore::InsertGrantChildren(const GrantRecord& grant) {
  int64_t position = 0;
  for (const std::string& operation : grant.operations) {
    KMS_ASSIGN_OR_RETURN(Statement stmt,
                         Prepare("INSERT INTO grant_operations (grant_id, position, operation) "
                                 "VALUES (?, ?, ?)"));
    stmt.BindText(grant.grant_id).BindInt(position++).BindText(operation);
    KMS_RETURN_IF_ERROR(stmt.Run("inserting grant operation"));
  }
  for (const auto& [kind, context] :
       {std::pair<absl::string_view, const std::map<std::string, std::string>*>{
            kContextEquals, &grant.encryption_context_equals},
        {kContextSubset, &grant.encryption_context_subset}}) {
    for (const auto& [key, value] : *context) {
      KMS_ASSIGN_OR_RETURN(Statement stmt,
                           Prepare("INSERT INTO grant_context (grant_id, kind, context_key, "
                                   "context_value) VALUES (?, ?, ?, ?)"));
      stmt.BindText(grant.grant_id).BindText(kind).BindText(key).BindText(value);
      KMS_RETURN_IF_ERROR(stmt.Run("inserting grant constraint"));
    }
  }
  return absl::OkStatus();
}

absl::Status SqliteKeyStore::ReadGrantChildren(std::vector<GrantRecord>& grants) {
  for (GrantRecord& grant : grants) {
    {
      KMS_ASSIGN_OR_RETURN(Statement stmt,
                           Prepare("SELECT operation FROM grant_operations WHERE grant_id = ? "
                                   "ORDER BY position"));
      stmt.BindText(grant.grant_id);
      for (;;) {
        KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading grant operations"));
        if (!row) break;
        grant.operations.push_back(stmt.Text(0));
      }
    }
    KMS_ASSIGN_OR_RETURN(Statement stmt,
                         Prepare("SELECT kind, context_key, context_value FROM grant_context "
                                 "WHERE grant_id = ?"));
    stmt.BindText(grant.grant_id);
    for (;;) {
      KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("reading grant constraints"));
      if (!row) break;
      const std::string kind = stmt.Text(0);
      if (kind == kContextEquals) {
        grant.encryption_context_equals.emplace(stmt.Text(1), stmt.Text(2));
      } else if (kind == kContextSubset) {
        grant.encryption_context_subset.emplace(stmt.Text(1), stmt.Text(2));
      } else {
        return absl::InternalError(absl::StrCat("unknown grant constraint kind in store: ", kind));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status SqliteKeyStore::AddGrant(const GrantRecord& grant) {
  KMS_RETURN_IF_ERROR(ValidateGrant(grant));
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        // Explicit checks before the insert, so that each failure says which
        // rule it broke (one UNIQUE failure could be the id or the hash).
        KMS_RETURN_IF_ERROR(CheckKeyExists(grant.key_id));
        {
          KMS_ASSIGN_OR_RETURN(Statement stmt,
                               Prepare("SELECT 1 FROM grants WHERE grant_id = ?"));
          stmt.BindText(grant.grant_id);
          KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("looking up grant"));
          if (row) {
            return absl::AlreadyExistsError(
                absl::StrCat("grant '", grant.grant_id, "' already exists"));
          }
        }
        {
          KMS_ASSIGN_OR_RETURN(Statement stmt,
                               Prepare("SELECT 1 FROM grants WHERE token_hash = ?"));
          stmt.BindBlob(grant.token_hash);
          KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("looking up grant token hash"));
          if (row) {
            return absl::AlreadyExistsError(absl::StrCat(
                "grant '", grant.grant_id, "': another grant has the same token hash"));
          }
        }
        {
          KMS_ASSIGN_OR_RETURN(Statement stmt,
                               Prepare("INSERT INTO grants (" KMS_GRANT_COLUMNS
                                       ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
          stmt.BindText(grant.grant_id)
              .BindText(grant.key_id)
              .BindText(grant.name)
              .BindText(grant.grantee_principal)
              .BindText(grant.retiring_principal)
              .BindText(grant.issuing_principal)
              .BindBlob(grant.token_hash)
              .BindTime(grant.creation_time);
          KMS_RETURN_IF_ERROR(stmt.Run(
              "inserting grant",
              Subject{/*already_exists=*/absl::StrCat("grant '", grant.grant_id,
                                                      "' or its token hash already exists"),
                      /*not_found=*/absl::StrCat("key '", grant.key_id, "' not found")}));
        }
        return InsertGrantChildren(grant);
      });
}

absl::StatusOr<GrantRecord> SqliteKeyStore::GetGrant(absl::string_view grant_id) {
  absl::MutexLock lock(&mu_);
  std::vector<GrantRecord> grants;
  // A read transaction, so that the row and its children come from one
  // snapshot.
  KMS_RETURN_IF_ERROR(InTransaction(
      TransactionMode::kRead, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        {
          KMS_ASSIGN_OR_RETURN(
              Statement stmt,
              Prepare("SELECT " KMS_GRANT_COLUMNS " FROM grants WHERE grant_id = ?"));
          stmt.BindText(grant_id);
          KMS_ASSIGN_OR_RETURN(grants, ReadGrantRows(stmt, "reading grant"));
        }
        return ReadGrantChildren(grants);
      }));
  if (grants.empty()) return absl::NotFoundError(absl::StrCat("grant '", grant_id, "' not found"));
  return std::move(grants.front());
}

absl::StatusOr<GrantRecord> SqliteKeyStore::FindGrantByTokenHash(absl::string_view token_hash) {
  absl::MutexLock lock(&mu_);
  std::vector<GrantRecord> grants;
  KMS_RETURN_IF_ERROR(InTransaction(
      TransactionMode::kRead, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        {
          KMS_ASSIGN_OR_RETURN(
              Statement stmt,
              Prepare("SELECT " KMS_GRANT_COLUMNS " FROM grants WHERE token_hash = ?"));
          stmt.BindBlob(token_hash);
          KMS_ASSIGN_OR_RETURN(grants, ReadGrantRows(stmt, "finding grant by token hash"));
        }
        return ReadGrantChildren(grants);
      }));
  // The hash is derived from a bearer token: its size only, never its bytes.
  if (grants.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no grant has this token hash (", token_hash.size(), " bytes)"));
  }
  return std::move(grants.front());
}

absl::StatusOr<std::vector<GrantRecord>> SqliteKeyStore::ListGrantsForKey(
    absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  std::vector<GrantRecord> grants;
  KMS_RETURN_IF_ERROR(InTransaction(
      TransactionMode::kRead, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        {
          KMS_ASSIGN_OR_RETURN(Statement stmt,
                               Prepare("SELECT " KMS_GRANT_COLUMNS
                                       " FROM grants WHERE key_id = ? ORDER BY grant_id"));
          stmt.BindText(key_id);
          KMS_ASSIGN_OR_RETURN(grants, ReadGrantRows(stmt, "listing grants of key"));
        }
        return ReadGrantChildren(grants);
      }));
  return grants;
}

absl::StatusOr<Page<GrantRecord>> SqliteKeyStore::ListGrants(absl::string_view key_id,
                                                             const GrantFilter& filter, int limit,
                                                             absl::string_view marker) {
  KMS_RETURN_IF_ERROR(CheckLimit(limit));
  // As in ListKeys: no "grant_id > ''" for the first page. Each condition is
  // there only when it is used, so there are at most 8 statement texts to
  // prepare (and cache), and a grant_id filter is an index lookup.
  std::string sql = "SELECT " KMS_GRANT_COLUMNS " FROM grants WHERE key_id = ?";
  if (!marker.empty()) sql += " AND grant_id > ?";
  if (!filter.grant_id.empty()) sql += " AND grant_id = ?";
  if (!filter.grantee_principal.empty()) sql += " AND grantee_principal = ?";
  sql += " ORDER BY grant_id LIMIT ?";
  absl::MutexLock lock(&mu_);
  Page<GrantRecord> page;
  KMS_RETURN_IF_ERROR(InTransaction(
      TransactionMode::kRead, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        {
          KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare(sql.c_str()));
          stmt.BindText(key_id);
          if (!marker.empty()) stmt.BindText(marker);
          if (!filter.grant_id.empty()) stmt.BindText(filter.grant_id);
          if (!filter.grantee_principal.empty()) stmt.BindText(filter.grantee_principal);
          // One row more than asked for tells whether another page follows.
          stmt.BindInt(int64_t{limit} + 1);
          KMS_ASSIGN_OR_RETURN(page.items, ReadGrantRows(stmt, "listing grants"));
        }
        if (page.items.size() > static_cast<size_t>(limit)) {
          page.items.resize(static_cast<size_t>(limit));
          page.next_marker = page.items.back().grant_id;
        }
        return ReadGrantChildren(page.items);
      }));
  return page;
}

absl::StatusOr<int64_t> SqliteKeyStore::CountGrants(absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("SELECT COUNT(*) FROM grants WHERE key_id = ?"));
  stmt.BindText(key_id);
  KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("counting grants"));
  if (!row) return absl::InternalError("keystore: COUNT(*) returned no row");
  return stmt.Int(0);
}

absl::Status SqliteKeyStore::DeleteGrant(absl::string_view grant_id) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        // Its operations and constraints go by ON DELETE CASCADE.
        KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("DELETE FROM grants WHERE grant_id = ?"));
        stmt.BindText(grant_id);
        KMS_RETURN_IF_ERROR(stmt.Run("deleting grant"));
        if (stmt.Changes() == 0) {
          return absl::NotFoundError(absl::StrCat("grant '", grant_id, "' not found"));
        }
        return absl::OkStatus();
      });
}

// ---- tags

absl::Status SqliteKeyStore::PutTags(absl::string_view key_id, const std::vector<TagRecord>& tags) {
  absl::MutexLock lock(&mu_);
  return InTransaction(TransactionMode::kWrite,
                       [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
                         // Explicit, because an empty list would never trip the foreign key.
                         KMS_RETURN_IF_ERROR(CheckKeyExists(key_id));
                         return UpsertTags(key_id, tags);
                       });
}

absl::Status SqliteKeyStore::RemoveTags(absl::string_view key_id,
                                        const std::vector<std::string>& tag_keys) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_RETURN_IF_ERROR(CheckKeyExists(key_id));
        for (const std::string& tag_key : tag_keys) {
          KMS_ASSIGN_OR_RETURN(Statement stmt,
                               Prepare("DELETE FROM tags WHERE key_id = ? AND tag_key = ?"));
          stmt.BindText(key_id).BindText(tag_key);
          KMS_RETURN_IF_ERROR(stmt.Run("removing tag"));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<TagRecord>> SqliteKeyStore::ListTags(absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  std::vector<TagRecord> tags;
  // A read transaction, so "key exists" and its tags come from one snapshot.
  KMS_RETURN_IF_ERROR(InTransaction(
      TransactionMode::kRead, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_RETURN_IF_ERROR(CheckKeyExists(key_id));
        KMS_ASSIGN_OR_RETURN(
            Statement stmt,
            Prepare("SELECT tag_key, tag_value FROM tags WHERE key_id = ? ORDER BY tag_key"));
        stmt.BindText(key_id);
        for (;;) {
          KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing tags"));
          if (!row) break;
          tags.push_back(TagRecord{stmt.Text(0), stmt.Text(1)});
        }
        return absl::OkStatus();
      }));
  return tags;
}

// ---- intents

absl::StatusOr<int64_t> SqliteKeyStore::AddIntent(const Intent& intent) {
  absl::MutexLock lock(&mu_);
  int64_t id = 0;
  KMS_RETURN_IF_ERROR(InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(
            Statement stmt,
            Prepare("INSERT INTO intents (kind, key_id, version_id, creation_time_us) "
                    "VALUES (?, ?, ?, ?)"));
        stmt.BindText(intent.kind)
            .BindText(intent.key_id)
            .BindText(intent.version_id)
            .BindTime(intent.creation_time);
        KMS_RETURN_IF_ERROR(stmt.Run("inserting intent"));
        // Safe: this connection is used only under mu_, so no other insert ran.
        id = sqlite3_last_insert_rowid(db_);
        return absl::OkStatus();
      }));
  return id;
}

absl::Status SqliteKeyStore::RemoveIntent(int64_t id) {
  absl::MutexLock lock(&mu_);
  return InTransaction(
      TransactionMode::kWrite, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(Statement stmt, Prepare("DELETE FROM intents WHERE id = ?"));
        stmt.BindInt(id);
        KMS_RETURN_IF_ERROR(stmt.Run("removing intent"));
        if (stmt.Changes() == 0)
          return absl::NotFoundError(absl::StrCat("intent ", id, " not found"));
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<Intent>> SqliteKeyStore::ListIntents() {
  absl::MutexLock lock(&mu_);
  KMS_ASSIGN_OR_RETURN(Statement stmt,
                       Prepare("SELECT id, kind, key_id, version_id, creation_time_us "
                               "FROM intents ORDER BY id"));
  std::vector<Intent> intents;
  for (;;) {
    KMS_ASSIGN_OR_RETURN(const bool row, stmt.Step("listing intents"));
    if (!row) break;
    Intent intent;
    intent.id = stmt.Int(0);
    intent.kind = stmt.Text(1);
    intent.key_id = stmt.Text(2);
    intent.version_id = stmt.Text(3);
    intent.creation_time = stmt.Time(4);
    intents.push_back(std::move(intent));
  }
  return intents;
}

#undef KMS_GRANT_COLUMNS
#undef KMS_IMPORT_PARAMETERS_COLUMNS
#undef KMS_VERSION_COLUMNS
#undef KMS_KEY_COLUMNS

}  // namespace kms::keystore
