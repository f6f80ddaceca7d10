// SqliteKeyStore beyond the shared contract (which
// key_store_conformance_test.cc checks): the database file, durability
// settings, schema versions, concurrency, and the record checks this
// implementation adds.

#include "daemon/keystore/sqlite_key_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/keystore/key_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/status_matchers.h"

namespace kms::keystore {

// Defined in key_store_conformance_test.cc, in this same test binary:
// declared here so both files print records the same way.
void PrintTo(const KeyRecord& key, std::ostream* os);
void PrintTo(const KeyVersionRecord& version, std::ostream* os);
void PrintTo(const AliasRecord& alias, std::ostream* os);
void PrintTo(const TagRecord& tag, std::ostream* os);
void PrintTo(const ImportParametersRecord& record, std::ostream* os);
void PrintTo(const GrantRecord& grant, std::ostream* os);

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

using testing::IsOk;
using testing::StatusIs;


const absl::Time kT0 = absl::FromUnixMicros(1'800'000'000'123'456);

std::string KeyId(int n) {
  return absl::StrCat(absl::Dec(n, absl::kZeroPad8), "-0000-4000-8000-00000000000a");
}
std::string VersionId(int n) {
  return absl::StrCat(absl::Dec(n, absl::kZeroPad8), "-1111-4000-8000-00000000000b");
}

KeyRecord NewKey(const std::string& key_id) {
  KeyRecord key;
  key.key_id = key_id;
  key.description = absl::StrCat("test key ", key_id);
  key.creation_time = kT0;
  return key;
}

KeyVersionRecord NewVersion(const std::string& version_id, const std::string& key_id,
                            absl::Time created = kT0) {
  KeyVersionRecord version;
  version.version_id = version_id;
  version.key_id = key_id;
  version.creation_time = created;
  return version;
}

AliasRecord NewAlias(const std::string& name, const std::string& key_id) {
  AliasRecord alias;
  alias.alias_name = name;
  alias.key_id = key_id;
  alias.creation_time = kT0;
  alias.last_updated_time = kT0;
  return alias;
}

absl::Status CreateKeyWithVersion(KeyStore& store, const std::string& key_id,
                                  const std::string& version_id) {
  KeyRecord key = NewKey(key_id);
  key.current_version_id = version_id;
  return store.CreateKey(key, NewVersion(version_id, key_id), {});
}

// A second, raw connection to the file, for what the store does not expose.
class RawDatabase {
 public:
  // `create`: make the file if it is missing (to write an old schema).
  explicit RawDatabase(const std::string& path, bool create = false) {
    const int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      sqlite3_close(db_);
      db_ = nullptr;
      return;
    }
    sqlite3_extended_result_codes(db_, 1);
  }
  ~RawDatabase() { sqlite3_close(db_); }
  RawDatabase(const RawDatabase&) = delete;
  RawDatabase& operator=(const RawDatabase&) = delete;

  bool ok() const { return db_ != nullptr; }
  bool Exec(const std::string& sql) { return ExecCode(sql) == SQLITE_OK; }
  // The extended result code of running `sql` (any number of statements).
  int ExecCode(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  }
  std::string LastError() const { return sqlite3_errmsg(db_); }
  // The first column of the first row, as text ("" if none).
  std::string QueryText(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string result;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      if (text != nullptr) result = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
    return result;
  }

 private:
  sqlite3* db_ = nullptr;
};

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class SqliteKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kms_sqlite");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
  }
  std::string DbPath() const { return dir_->path() + "/keystore.db"; }
  std::unique_ptr<SqliteKeyStore> OpenOrDie(const std::string& path) {
    absl::StatusOr<std::unique_ptr<SqliteKeyStore>> store = SqliteKeyStore::Open(path);
    EXPECT_THAT(store.status(), IsOk());
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<testing::TempDir> dir_;
};

// ---- the file

TEST_F(SqliteKeyStoreTest, EveryRecordKindSurvivesCloseAndReopen) {
  KeyRecord key = NewKey(KeyId(1));
  key.current_version_id = VersionId(1);
  key.rotation_enabled = true;
  key.rotation_period_days = 365;
  key.next_rotation_time = kT0 + absl::Hours(24 * 365);
  KeyVersionRecord version = NewVersion(VersionId(1), KeyId(1));
  version.origin = VersionOrigin::kOnDemand;
  version.encryptions_reserved = 1 << 20;
  KeyRecord doomed = NewKey(KeyId(2));
  doomed.state = KeyState::kPendingDeletion;
  doomed.deletion_time = kT0 + absl::Hours(24 * 7);
  doomed.rotation_period_days = 90;  // kept while rotation is off
  KeyRecord importing = NewKey(KeyId(3));
  importing.state = KeyState::kPendingImport;
  importing.origin = KeyOrigin::kExternal;
  const AliasRecord alias = NewAlias("alias/kept", KeyId(1));
  Intent intent;
  intent.kind = "create_version";
  intent.key_id = KeyId(1);
  intent.version_id = VersionId(7);
  intent.creation_time = kT0;
  int64_t intent_id = 0;
  {
    std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(store->CreateKey(key, version, {{"team", "payments"}}), IsOk());
    ASSERT_THAT(store->CreateKey(doomed, std::nullopt, {}), IsOk());
    ASSERT_THAT(store->CreateKey(importing, std::nullopt, {}), IsOk());
    ASSERT_THAT(store->CreateAlias(alias), IsOk());
    absl::StatusOr<int64_t> id = store->AddIntent(intent);
    ASSERT_THAT(id.status(), IsOk());
    intent_id = *id;
  }

  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<Page<KeyRecord>> keys = store->ListKeys(10, "");
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(keys->items, ElementsAre(key, doomed, importing));
  absl::StatusOr<KeyVersionRecord> got_version = store->GetVersion(VersionId(1));
  ASSERT_THAT(got_version.status(), IsOk());
  EXPECT_EQ(*got_version, version);
  absl::StatusOr<AliasRecord> got_alias = store->GetAlias("alias/kept");
  ASSERT_THAT(got_alias.status(), IsOk());
  EXPECT_EQ(*got_alias, alias);
  absl::StatusOr<std::vector<TagRecord>> tags = store->ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"team", "payments"}));
  absl::StatusOr<std::vector<Intent>> intents = store->ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  ASSERT_THAT(*intents, SizeIs(1));
  EXPECT_EQ((*intents)[0].id, intent_id);
  EXPECT_EQ((*intents)[0].kind, intent.kind);
  EXPECT_EQ((*intents)[0].version_id, intent.version_id);
  absl::StatusOr<std::vector<KeyRecord>> due = store->ListKeysDueForDeletion(*doomed.deletion_time);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(doomed));
  due = store->ListKeysDueForRotation(*key.next_rotation_time);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key));
}

TEST_F(SqliteKeyStoreTest, CommittedChangesSurviveProcessDeathWithoutClose) {
  // The child commits and dies without closing the database (as kill -9
  // would): the change sits only in the WAL, and reopening must recover it.
  EXPECT_EXIT(
      {
        absl::StatusOr<std::unique_ptr<SqliteKeyStore>> store = SqliteKeyStore::Open(DbPath());
        const bool ok = store.ok() && CreateKeyWithVersion(**store, KeyId(1), VersionId(1)).ok() &&
                        (*store)->CreateAlias(NewAlias("alias/a", KeyId(1))).ok();
        if (store.ok()) (void)store->release();  // never closed
        std::_Exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");

  std::error_code error;
  EXPECT_GT(std::filesystem::file_size(DbPath() + "-wal", error), 0u) << error.message();
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->GetKey(KeyId(1)).status(), IsOk());
  EXPECT_THAT(store->GetVersion(VersionId(1)).status(), IsOk());
  EXPECT_THAT(store->GetAlias("alias/a").status(), IsOk());
}

TEST_F(SqliteKeyStoreTest, DatabaseFilesAreCreatedMode0600WhateverTheUmask) {
  // With umask 0 SQLite alone would create 0644 files.
  const mode_t old_umask = umask(0);
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  umask(old_umask);
  ASSERT_NE(store, nullptr);
  ASSERT_THAT(CreateKeyWithVersion(*store, KeyId(1), VersionId(1)), IsOk());

  EXPECT_EQ(ModeOf(DbPath()), 0600u);
  // The WAL and shared-memory files hold the same data; SQLite gives them the
  // database file's mode.
  EXPECT_EQ(ModeOf(DbPath() + "-wal"), 0600u);
  EXPECT_EQ(ModeOf(DbPath() + "-shm"), 0600u);
}

TEST_F(SqliteKeyStoreTest, ExistingFileKeepsItsMode) {
  { std::ofstream(DbPath()).flush(); }
  ASSERT_EQ(chmod(DbPath().c_str(), 0640), 0);
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  // An empty file is a new database: the schema goes in.
  ASSERT_THAT(CreateKeyWithVersion(*store, KeyId(1), VersionId(1)), IsOk());
  EXPECT_EQ(ModeOf(DbPath()), 0640u);
}

TEST_F(SqliteKeyStoreTest, FileDatabaseUsesWalAndFullSynchronous) {
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SqliteKeyStore::ConnectionSettings> settings = store->Settings();
  ASSERT_THAT(settings.status(), IsOk());
  EXPECT_EQ(settings->journal_mode, "wal");
  EXPECT_EQ(settings->synchronous, 2);  // FULL
  EXPECT_TRUE(settings->foreign_keys);
  EXPECT_GE(settings->busy_timeout_ms, 1000);
  EXPECT_EQ(settings->schema_version, SqliteKeyStore::LatestSchemaVersion());

  // WAL is a property of the file, so another connection sees it too.
  RawDatabase raw(DbPath());
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.QueryText("PRAGMA journal_mode"), "wal");
}

TEST_F(SqliteKeyStoreTest, MemoryDatabaseEnforcesForeignKeys) {
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(":memory:");
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SqliteKeyStore::ConnectionSettings> settings = store->Settings();
  ASSERT_THAT(settings.status(), IsOk());
  EXPECT_EQ(settings->journal_mode, "memory");
  EXPECT_TRUE(settings->foreign_keys);
  EXPECT_EQ(settings->schema_version, SqliteKeyStore::LatestSchemaVersion());
}

TEST_F(SqliteKeyStoreTest, RefusesDatabaseFromNewerSchema) {
  ASSERT_NE(OpenOrDie(DbPath()), nullptr);
  const int newer = SqliteKeyStore::LatestSchemaVersion() + 1;
  {
    RawDatabase raw(DbPath());
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw.Exec(absl::StrCat("PRAGMA user_version = ", newer)));
  }

  absl::StatusOr<std::unique_ptr<SqliteKeyStore>> store = SqliteKeyStore::Open(DbPath());
  EXPECT_THAT(store.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       absl::StrCat("schema version ", newer)));
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
  EXPECT_THAT(store.status().message(), HasSubstr(DbPath()));

  RawDatabase raw(DbPath());
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.QueryText("PRAGMA user_version"), absl::StrCat(newer)) << "file was changed";
}

TEST_F(SqliteKeyStoreTest, ReopenDoesNotRerunMigrations) {
  {
    std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(CreateKeyWithVersion(*store, KeyId(1), VersionId(1)), IsOk());
  }
  // Running step 1 again would fail ("table keys already exists").
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->GetKey(KeyId(1)).status(), IsOk());
}

// ---- upgrading older databases

// The schema exactly as migration 1 wrote it. Databases in the field look like
// this whatever the code's migrations become, so it is copied, not shared.
constexpr char kSchemaVersion1[] = R"sql(
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
)sql";

// Writes a version-1 database at `path` as kmsd 1 left it (WAL mode), with
// `extra_sql` run before user_version is set. Holds key 1 (enabled, current
// version 1, alias "alias/legacy", tag team=payments), key 2 (pending
// deletion, no material) and one intent.
::testing::AssertionResult WriteVersion1Database(const std::string& path,
                                                 const std::string& extra_sql = "") {
  RawDatabase raw(path, /*create=*/true);
  if (!raw.ok()) return ::testing::AssertionFailure() << "cannot create " << path;
  const int64_t t0 = absl::ToUnixMicros(kT0);
  const std::string sql = absl::StrCat(
      "PRAGMA journal_mode = WAL;", kSchemaVersion1, "INSERT INTO keys VALUES ('", KeyId(1),
      "', 'legacy key', 'ENABLED', 'AWS_KMS', ", "'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ", t0,
      ", NULL, NULL);", "INSERT INTO key_versions VALUES ('", VersionId(1), "', '", KeyId(1), "', ",
      t0, ");", "UPDATE keys SET current_version_id = '", VersionId(1), "' WHERE key_id = '",
      KeyId(1), "';", "INSERT INTO keys VALUES ('", KeyId(2),
      "', 'doomed', 'PENDING_DELETION', 'AWS_KMS', ", "'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ",
      t0, ", ", t0 + 7, ", NULL);", "INSERT INTO aliases VALUES ('alias/legacy', '", KeyId(1),
      "', ", t0, ", ", t0, ");", "INSERT INTO tags VALUES ('", KeyId(1), "', 'team', 'payments');",
      "INSERT INTO intents (kind, key_id, version_id, creation_time_us) VALUES ",
      "('create_version', '", KeyId(1), "', '", VersionId(7), "', ", t0, ");", extra_sql,
      "PRAGMA user_version = 1;");
  if (!raw.Exec(sql)) return ::testing::AssertionFailure() << raw.LastError();
  // As kmsd would have created it; a wider mode only earns a warning.
  if (chmod(path.c_str(), 0600) != 0) return ::testing::AssertionFailure() << "chmod failed";
  return ::testing::AssertionSuccess();
}

TEST_F(SqliteKeyStoreTest, Version1DatabaseUpgradesInPlace) {
  ASSERT_TRUE(WriteVersion1Database(DbPath()));
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SqliteKeyStore::ConnectionSettings> settings = store->Settings();
  ASSERT_THAT(settings.status(), IsOk());
  EXPECT_EQ(settings->schema_version, 4);
  EXPECT_EQ(settings->schema_version, SqliteKeyStore::LatestSchemaVersion());

  // Every record is intact, and the new fields read as their defaults.
  KeyRecord key1 = NewKey(KeyId(1));
  key1.description = "legacy key";
  key1.current_version_id = VersionId(1);
  KeyRecord key2 = NewKey(KeyId(2));
  key2.description = "doomed";
  key2.state = KeyState::kPendingDeletion;
  key2.deletion_time = kT0 + absl::Microseconds(7);
  absl::StatusOr<Page<KeyRecord>> keys = store->ListKeys(10, "");
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(keys->items, ElementsAre(key1, key2));
  for (const KeyRecord& key : keys->items) {
    EXPECT_FALSE(key.rotation_enabled);
    EXPECT_EQ(key.rotation_period_days, 0);
    EXPECT_EQ(key.next_rotation_time, std::nullopt);
  }
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store->ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1))));
  EXPECT_EQ((*versions)[0].origin, VersionOrigin::kCreated);
  EXPECT_EQ((*versions)[0].encryptions_reserved, 0);
  absl::StatusOr<AliasRecord> alias = store->GetAlias("alias/legacy");
  ASSERT_THAT(alias.status(), IsOk());
  EXPECT_EQ(*alias, NewAlias("alias/legacy", KeyId(1)));
  absl::StatusOr<std::vector<TagRecord>> tags = store->ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"team", "payments"}));
  absl::StatusOr<std::vector<Intent>> intents = store->ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  ASSERT_THAT(*intents, SizeIs(1));
  EXPECT_EQ((*intents)[0].version_id, VersionId(7));
  absl::StatusOr<std::vector<KeyRecord>> due = store->ListKeysDueForDeletion(kT0 + absl::Hours(1));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key2));
  due = store->ListKeysDueForRotation(absl::InfiniteFuture());
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, IsEmpty());

  // The old rows take the new features.
  KeyRecord rotated = key1;
  rotated.current_version_id = VersionId(2);
  rotated.rotation_enabled = true;
  rotated.rotation_period_days = 365;
  rotated.next_rotation_time = kT0 + absl::Hours(24 * 365);
  KeyVersionRecord v2 = NewVersion(VersionId(2), KeyId(1), kT0 + absl::Hours(1));
  v2.origin = VersionOrigin::kOnDemand;
  ASSERT_THAT(store->AddVersion(v2, rotated), IsOk());
  ASSERT_THAT(store->ReserveEncryptions(VersionId(1), 42), IsOk());
  store.reset();

  // Reopening finds the latest version and runs nothing.
  store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<KeyRecord> got = store->GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, rotated);
  KeyVersionRecord v1 = NewVersion(VersionId(1), KeyId(1));
  v1.encryptions_reserved = 42;
  versions = store->ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1, v2));

  RawDatabase raw(DbPath());
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.QueryText("PRAGMA user_version"), "4");
  EXPECT_EQ(raw.QueryText("SELECT name FROM sqlite_master WHERE type = 'index' "
                          "AND name = 'keys_due_for_rotation'"),
            "keys_due_for_rotation");
}

TEST_F(SqliteKeyStoreTest, FailedMigrationLeavesTheDatabaseAsItWas) {
  // An index under the name migration 2 creates makes its last step fail,
  // after the ALTER TABLEs have run: they must roll back with it.
  ASSERT_TRUE(WriteVersion1Database(
      DbPath(), "CREATE INDEX keys_due_for_rotation ON keys (creation_time_us);"));

  absl::StatusOr<std::unique_ptr<SqliteKeyStore>> failed = SqliteKeyStore::Open(DbPath());
  EXPECT_THAT(failed.status(),
              StatusIs(absl::StatusCode::kInternal, "migrating to schema version 2"));
  {
    RawDatabase raw(DbPath());
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ(raw.QueryText("PRAGMA user_version"), "1");
    EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM pragma_table_info('keys') "
                            "WHERE name LIKE 'rotation%' OR name = 'next_rotation_time_us'"),
              "0");
    EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM pragma_table_info('key_versions') "
                            "WHERE name IN ('origin', 'encryptions_reserved')"),
              "0");
    ASSERT_TRUE(raw.Exec("DROP INDEX keys_due_for_rotation")) << raw.LastError();
  }

  // With the obstacle gone the upgrade goes through, data intact.
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<KeyRecord> key = store->GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(key->current_version_id, VersionId(1));
  EXPECT_FALSE(key->rotation_enabled);
}

// What migration 2 added, exactly as it wrote it (copied, not shared, for the
// same reason as kSchemaVersion1).
constexpr char kSchemaVersion2Additions[] = R"sql(
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
)sql";

// Writes a version-2 database at `path` as kmsd 2 left it, with `extra_sql`
// run before user_version is set. Holds key 1 (enabled, rotating every 365
// days, current version 1: ON_DEMAND, 5 reserved; alias "alias/legacy", tag
// team=payments), key 2 (pending deletion, no material), key 3 (EXTERNAL,
// pending import, no material) and one intent.
::testing::AssertionResult WriteVersion2Database(const std::string& path,
                                                 const std::string& extra_sql = "") {
  RawDatabase raw(path, /*create=*/true);
  if (!raw.ok()) return ::testing::AssertionFailure() << "cannot create " << path;
  const int64_t t0 = absl::ToUnixMicros(kT0);
  const int64_t next_rotation = absl::ToUnixMicros(kT0 + absl::Hours(24 * 365));
  const std::string sql = absl::StrCat(
      "PRAGMA journal_mode = WAL;", kSchemaVersion1, kSchemaVersion2Additions,
      "INSERT INTO keys VALUES ('", KeyId(1), "', 'legacy key', 'ENABLED', 'AWS_KMS', ",
      "'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ", t0, ", NULL, NULL, 1, 365, ", next_rotation,
      ");", "INSERT INTO key_versions VALUES ('", VersionId(1), "', '", KeyId(1), "', ", t0,
      ", 'ON_DEMAND', 5);", "UPDATE keys SET current_version_id = '", VersionId(1),
      "' WHERE key_id = '", KeyId(1), "';", "INSERT INTO keys VALUES ('", KeyId(2),
      "', 'doomed', 'PENDING_DELETION', 'AWS_KMS', ", "'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ",
      t0, ", ", t0 + 7, ", NULL, 0, 90, NULL);", "INSERT INTO keys VALUES ('", KeyId(3),
      "', 'importing', 'PENDING_IMPORT', 'EXTERNAL', ", "'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ",
      t0, ", NULL, NULL, 0, 0, NULL);", "INSERT INTO aliases VALUES ('alias/legacy', '", KeyId(1),
      "', ", t0, ", ", t0, ");", "INSERT INTO tags VALUES ('", KeyId(1), "', 'team', 'payments');",
      "INSERT INTO intents (kind, key_id, version_id, creation_time_us) VALUES ",
      "('create_version', '", KeyId(1), "', '", VersionId(7), "', ", t0, ");", extra_sql,
      "PRAGMA user_version = 2;");
  if (!raw.Exec(sql)) return ::testing::AssertionFailure() << raw.LastError();
  if (chmod(path.c_str(), 0600) != 0) return ::testing::AssertionFailure() << "chmod failed";
  return ::testing::AssertionSuccess();
}

TEST_F(SqliteKeyStoreTest, Version2DatabaseUpgradesInPlace) {
  ASSERT_TRUE(WriteVersion2Database(DbPath()));
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SqliteKeyStore::ConnectionSettings> settings = store->Settings();
  ASSERT_THAT(settings.status(), IsOk());
  EXPECT_EQ(settings->schema_version, 4);
  EXPECT_EQ(settings->schema_version, SqliteKeyStore::LatestSchemaVersion());

  // Every record is intact, and the new fields read as their defaults.
  KeyRecord key1 = NewKey(KeyId(1));
  key1.description = "legacy key";
  key1.current_version_id = VersionId(1);
  key1.rotation_enabled = true;
  key1.rotation_period_days = 365;
  key1.next_rotation_time = kT0 + absl::Hours(24 * 365);
  KeyRecord key2 = NewKey(KeyId(2));
  key2.description = "doomed";
  key2.state = KeyState::kPendingDeletion;
  key2.deletion_time = kT0 + absl::Microseconds(7);
  key2.rotation_period_days = 90;
  KeyRecord key3 = NewKey(KeyId(3));
  key3.description = "importing";
  key3.state = KeyState::kPendingImport;
  key3.origin = KeyOrigin::kExternal;
  absl::StatusOr<Page<KeyRecord>> keys = store->ListKeys(10, "");
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(keys->items, ElementsAre(key1, key2, key3));
  for (const KeyRecord& key : keys->items) {
    EXPECT_EQ(key.expiration_model, ExpirationModel::kNone);
    EXPECT_EQ(key.valid_to, std::nullopt);
  }
  KeyVersionRecord v1 = NewVersion(VersionId(1), KeyId(1));
  v1.origin = VersionOrigin::kOnDemand;
  v1.encryptions_reserved = 5;
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store->ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1));
  EXPECT_EQ((*versions)[0].key_check_value, "");
  EXPECT_EQ((*versions)[0].fingerprint, "");
  EXPECT_FALSE((*versions)[0].material_deleted);
  absl::StatusOr<AliasRecord> alias = store->GetAlias("alias/legacy");
  ASSERT_THAT(alias.status(), IsOk());
  EXPECT_EQ(*alias, NewAlias("alias/legacy", KeyId(1)));
  absl::StatusOr<std::vector<TagRecord>> tags = store->ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"team", "payments"}));
  absl::StatusOr<std::vector<Intent>> intents = store->ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  ASSERT_THAT(*intents, SizeIs(1));
  EXPECT_EQ((*intents)[0].version_id, VersionId(7));
  absl::StatusOr<std::vector<KeyRecord>> due =
      store->ListKeysDueForRotation(absl::InfiniteFuture());
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key1));
  due = store->ListKeysDueForDeletion(kT0 + absl::Hours(1));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key2));
  due = store->ListKeysWithExpiredMaterial(absl::InfiniteFuture());
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, IsEmpty());
  absl::StatusOr<std::vector<ImportParametersRecord>> parameters = store->ListImportParameters("");
  ASSERT_THAT(parameters.status(), IsOk());
  EXPECT_THAT(*parameters, IsEmpty());

  // The old rows take the new features: key 3 gets its material.
  ImportParametersRecord token;
  token.wrapping_key_id = "wrapping-1";
  token.key_id = KeyId(3);
  token.wrapping_algorithm = "RSAES_OAEP_SHA_256";
  token.wrapping_key_spec = "RSA_3072";
  token.creation_time = kT0;
  token.expiration_time = kT0 + absl::Hours(24);
  ASSERT_THAT(store->AddImportParameters(token), IsOk());
  ImportCommit commit;
  commit.key = key3;
  commit.key.state = KeyState::kEnabled;
  commit.key.current_version_id = VersionId(3);
  commit.key.expiration_model = ExpirationModel::kExpires;
  commit.key.valid_to = kT0 + absl::Hours(24 * 30);
  KeyVersionRecord v3 = NewVersion(VersionId(3), KeyId(3));
  v3.key_check_value = "kcv";
  v3.fingerprint = std::string(16, '\x7f');
  commit.new_version = v3;
  commit.consumed_wrapping_key_id = token.wrapping_key_id;
  ASSERT_THAT(store->CommitImport(commit), IsOk());
  KeyRecord key1_deleted = key1;
  key1_deleted.state = KeyState::kPendingImport;
  ASSERT_THAT(store->MarkMaterialDeleted(key1_deleted), IsOk());
  store.reset();

  // Reopening finds the latest version and runs nothing.
  store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<KeyRecord> got = store->GetKey(KeyId(3));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, commit.key);
  got = store->GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key1_deleted);
  versions = store->FindVersionsByFingerprint(v3.fingerprint);
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v3));
  v1.material_deleted = true;
  versions = store->ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1));
  parameters = store->ListImportParameters("");
  ASSERT_THAT(parameters.status(), IsOk());
  EXPECT_THAT(*parameters, IsEmpty());

  RawDatabase raw(DbPath());
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.QueryText("PRAGMA user_version"), "4");
  EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                          "('keys_material_expiry', 'key_versions_by_fingerprint', "
                          "'import_parameters_by_key', 'import_parameters_by_expiration')"),
            "4");
}

TEST_F(SqliteKeyStoreTest, FailedMigrationToVersion3LeavesTheDatabaseAsItWas) {
  // A table under the name migration 3 creates makes it fail after its
  // ALTER TABLEs have run: they must roll back with it.
  ASSERT_TRUE(WriteVersion2Database(DbPath(), "CREATE TABLE import_parameters (x INTEGER);"));

  absl::StatusOr<std::unique_ptr<SqliteKeyStore>> failed = SqliteKeyStore::Open(DbPath());
  EXPECT_THAT(failed.status(),
              StatusIs(absl::StatusCode::kInternal, "migrating to schema version 3"));
  {
    RawDatabase raw(DbPath());
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ(raw.QueryText("PRAGMA user_version"), "2");
    EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM pragma_table_info('keys') "
                            "WHERE name IN ('expiration_model', 'valid_to_us')"),
              "0");
    EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM pragma_table_info('key_versions') "
                            "WHERE name IN ('key_check_value', 'fingerprint', 'material_deleted')"),
              "0");
    ASSERT_TRUE(raw.Exec("DROP TABLE import_parameters")) << raw.LastError();
  }

  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<KeyRecord> key = store->GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(key->current_version_id, VersionId(1));
  EXPECT_EQ(key->expiration_model, ExpirationModel::kNone);
}

// What migration 3 added, exactly as it wrote it (copied, not shared, for the
// same reason as kSchemaVersion1).
constexpr char kSchemaVersion3Additions[] = R"sql(
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
)sql";

// Writes a version-3 database at `path` as kmsd 3 left it, with `extra_sql`
// run before user_version is set. Holds key 1 (EXTERNAL, enabled, rotating
// every 365 days, material expiring at kT0 + 30 days; current version 1:
// imported, ON_DEMAND, 5 reserved, check value "kcv", fingerprint 16 x 0x7f;
// alias "alias/legacy", tag team=payments), key 2 (pending deletion, no
// material), key 3 (EXTERNAL, pending import, with import parameters
// "wrapping-1") and one intent.
::testing::AssertionResult WriteVersion3Database(const std::string& path,
                                                 const std::string& extra_sql = "") {
  RawDatabase raw(path, /*create=*/true);
  if (!raw.ok()) return ::testing::AssertionFailure() << "cannot create " << path;
  const int64_t t0 = absl::ToUnixMicros(kT0);
  const int64_t next_rotation = absl::ToUnixMicros(kT0 + absl::Hours(24 * 365));
  const int64_t valid_to = absl::ToUnixMicros(kT0 + absl::Hours(24 * 30));
  const std::string sql = absl::StrCat(
      "PRAGMA journal_mode = WAL;", kSchemaVersion1, kSchemaVersion2Additions,
      kSchemaVersion3Additions, "INSERT INTO keys VALUES ('", KeyId(1),
      "', 'legacy key', 'ENABLED', 'EXTERNAL', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ", t0,
      ", NULL, NULL, 1, 365, ", next_rotation, ", 'KEY_MATERIAL_EXPIRES', ", valid_to, ");",
      "INSERT INTO key_versions VALUES ('", VersionId(1), "', '", KeyId(1), "', ", t0,
      ", 'ON_DEMAND', 5, CAST('kcv' AS BLOB), x'7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f', 0);",
      "UPDATE keys SET current_version_id = '", VersionId(1), "' WHERE key_id = '", KeyId(1),
      "';", "INSERT INTO keys VALUES ('", KeyId(2),
      "', 'doomed', 'PENDING_DELETION', 'AWS_KMS', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ", t0,
      ", ", t0 + 7, ", NULL, 0, 90, NULL, 'NONE', NULL);", "INSERT INTO keys VALUES ('", KeyId(3),
      "', 'importing', 'PENDING_IMPORT', 'EXTERNAL', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', ",
      t0, ", NULL, NULL, 0, 0, NULL, 'NONE', NULL);",
      "INSERT INTO import_parameters VALUES ('wrapping-1', '", KeyId(3),
      "', 'RSAES_OAEP_SHA_256', 'RSA_3072', ", t0, ", ", t0 + 1, ");",
      "INSERT INTO aliases VALUES ('alias/legacy', '", KeyId(1), "', ", t0, ", ", t0, ");",
      "INSERT INTO tags VALUES ('", KeyId(1), "', 'team', 'payments');",
      "INSERT INTO intents (kind, key_id, version_id, creation_time_us) VALUES ",
      "('create_version', '", KeyId(1), "', '", VersionId(7), "', ", t0, ");", extra_sql,
      "PRAGMA user_version = 3;");
  if (!raw.Exec(sql)) return ::testing::AssertionFailure() << raw.LastError();
  if (chmod(path.c_str(), 0600) != 0) return ::testing::AssertionFailure() << "chmod failed";
  return ::testing::AssertionSuccess();
}

TEST_F(SqliteKeyStoreTest, Version3DatabaseUpgradesInPlace) {
  ASSERT_TRUE(WriteVersion3Database(DbPath()));
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SqliteKeyStore::ConnectionSettings> settings = store->Settings();
  ASSERT_THAT(settings.status(), IsOk());
  EXPECT_EQ(settings->schema_version, 4);
  EXPECT_EQ(settings->schema_version, SqliteKeyStore::LatestSchemaVersion());

  // Every record is intact, and existing keys have the empty policy.
  KeyRecord key1 = NewKey(KeyId(1));
  key1.description = "legacy key";
  key1.origin = KeyOrigin::kExternal;
  key1.current_version_id = VersionId(1);
  key1.rotation_enabled = true;
  key1.rotation_period_days = 365;
  key1.next_rotation_time = kT0 + absl::Hours(24 * 365);
  key1.expiration_model = ExpirationModel::kExpires;
  key1.valid_to = kT0 + absl::Hours(24 * 30);
  KeyRecord key2 = NewKey(KeyId(2));
  key2.description = "doomed";
  key2.state = KeyState::kPendingDeletion;
  key2.deletion_time = kT0 + absl::Microseconds(7);
  key2.rotation_period_days = 90;
  KeyRecord key3 = NewKey(KeyId(3));
  key3.description = "importing";
  key3.state = KeyState::kPendingImport;
  key3.origin = KeyOrigin::kExternal;
  absl::StatusOr<Page<KeyRecord>> keys = store->ListKeys(10, "");
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(keys->items, ElementsAre(key1, key2, key3));
  for (const KeyRecord& key : keys->items) EXPECT_EQ(key.policy, "");
  KeyVersionRecord v1 = NewVersion(VersionId(1), KeyId(1));
  v1.origin = VersionOrigin::kOnDemand;
  v1.encryptions_reserved = 5;
  v1.key_check_value = "kcv";
  v1.fingerprint = std::string(16, '\x7f');
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store->ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1));
  versions = store->FindVersionsByFingerprint(v1.fingerprint);
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1));
  absl::StatusOr<AliasRecord> alias = store->GetAlias("alias/legacy");
  ASSERT_THAT(alias.status(), IsOk());
  EXPECT_EQ(*alias, NewAlias("alias/legacy", KeyId(1)));
  absl::StatusOr<std::vector<TagRecord>> tags = store->ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"team", "payments"}));
  absl::StatusOr<std::vector<Intent>> intents = store->ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  ASSERT_THAT(*intents, SizeIs(1));
  EXPECT_EQ((*intents)[0].version_id, VersionId(7));
  ImportParametersRecord token;
  token.wrapping_key_id = "wrapping-1";
  token.key_id = KeyId(3);
  token.wrapping_algorithm = "RSAES_OAEP_SHA_256";
  token.wrapping_key_spec = "RSA_3072";
  token.creation_time = kT0;
  token.expiration_time = kT0 + absl::Microseconds(1);
  absl::StatusOr<std::vector<ImportParametersRecord>> parameters = store->ListImportParameters("");
  ASSERT_THAT(parameters.status(), IsOk());
  EXPECT_THAT(*parameters, ElementsAre(token));
  absl::StatusOr<std::vector<KeyRecord>> due =
      store->ListKeysDueForRotation(absl::InfiniteFuture());
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key1));
  due = store->ListKeysDueForDeletion(kT0 + absl::Hours(1));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key2));
  due = store->ListKeysWithExpiredMaterial(absl::InfiniteFuture());
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key1));
  for (const KeyRecord& key : {key1, key2, key3}) {
    absl::StatusOr<int64_t> count = store->CountGrants(key.key_id);
    ASSERT_THAT(count.status(), IsOk());
    EXPECT_EQ(*count, 0);
  }

  // The old rows take the new features: a policy and a grant.
  key1.policy = R"({"Version": "2012-10-17", "Statement": []})";
  ASSERT_THAT(store->UpdateKey(key1), IsOk());
  GrantRecord grant;
  grant.grant_id = std::string(64, 'a');
  grant.key_id = KeyId(1);
  grant.grantee_principal = "arn:aws:iam::111122223333:role/app";
  grant.issuing_principal = "arn:aws:iam::111122223333:user/admin";
  grant.operations = {"Decrypt"};
  grant.encryption_context_subset = {{"team", "payments"}};
  grant.token_hash = std::string(32, '\x01');
  grant.creation_time = kT0;
  ASSERT_THAT(store->AddGrant(grant), IsOk());
  store.reset();

  // Reopening finds the latest version and runs nothing.
  store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<KeyRecord> got = store->GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key1);
  absl::StatusOr<GrantRecord> got_grant = store->FindGrantByTokenHash(grant.token_hash);
  ASSERT_THAT(got_grant.status(), IsOk());
  EXPECT_EQ(*got_grant, grant);
  // Deleting an upgraded key takes its grant along.
  ASSERT_THAT(store->DeleteKey(KeyId(1)), IsOk());
  EXPECT_THAT(store->GetGrant(grant.grant_id).status(), StatusIs(absl::StatusCode::kNotFound));
  store.reset();

  RawDatabase raw(DbPath());
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.QueryText("PRAGMA user_version"), "4");
  EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM grant_operations"), "0");
  EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM grant_context"), "0");
  EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = "
                          "'grants_by_key'"),
            "1");
}

TEST_F(SqliteKeyStoreTest, FailedMigrationToVersion4LeavesTheDatabaseAsItWas) {
  // A table under the last name migration 4 creates makes it fail after its
  // ALTER TABLE and first tables: they must roll back with it.
  ASSERT_TRUE(WriteVersion3Database(DbPath(), "CREATE TABLE grant_context (x INTEGER);"));

  absl::StatusOr<std::unique_ptr<SqliteKeyStore>> failed = SqliteKeyStore::Open(DbPath());
  EXPECT_THAT(failed.status(),
              StatusIs(absl::StatusCode::kInternal, "migrating to schema version 4"));
  {
    RawDatabase raw(DbPath());
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ(raw.QueryText("PRAGMA user_version"), "3");
    EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM pragma_table_info('keys') "
                            "WHERE name = 'policy'"),
              "0");
    EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM sqlite_master "
                            "WHERE name IN ('grants', 'grant_operations', 'grants_by_key')"),
              "0");
    ASSERT_TRUE(raw.Exec("DROP TABLE grant_context")) << raw.LastError();
  }

  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<KeyRecord> key = store->GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(key->current_version_id, VersionId(1));
  EXPECT_EQ(key->policy, "");
}

TEST_F(SqliteKeyStoreTest, ImportStateSurvivesCloseAndReopen) {
  KeyRecord key = NewKey(KeyId(1));
  key.origin = KeyOrigin::kExternal;
  key.current_version_id = VersionId(1);
  key.expiration_model = ExpirationModel::kExpires;
  key.valid_to = kT0 + absl::Hours(24 * 30);
  KeyVersionRecord v1 = NewVersion(VersionId(1), KeyId(1));
  v1.key_check_value = std::string("\0\x80\xff", 3);
  v1.fingerprint = std::string("\0fingerprint\0\x01\x02\xff", 16);
  KeyVersionRecord v2 = NewVersion(VersionId(2), KeyId(1), kT0 + absl::Hours(1));
  v2.key_check_value = "abc";
  v2.fingerprint = std::string(16, 'f');
  v2.material_deleted = true;
  KeyRecord forever = NewKey(KeyId(2));
  forever.origin = KeyOrigin::kExternal;
  forever.expiration_model = ExpirationModel::kDoesNotExpire;
  ImportParametersRecord token;
  token.wrapping_key_id = "wrapping-1";
  token.key_id = KeyId(2);
  token.wrapping_algorithm = "RSA_AES_KEY_WRAP_SHA_256";
  token.wrapping_key_spec = "RSA_4096";
  token.creation_time = kT0;
  token.expiration_time = kT0 + absl::Hours(24);
  {
    std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(store->CreateKey(key, v1, {}), IsOk());
    ASSERT_THAT(store->AddVersion(v2, key), IsOk());
    ASSERT_THAT(store->CreateKey(forever, std::nullopt, {}), IsOk());
    ASSERT_THAT(store->AddImportParameters(token), IsOk());
  }

  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<Page<KeyRecord>> keys = store->ListKeys(10, "");
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(keys->items, ElementsAre(key, forever));
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store->ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1, v2));
  versions = store->FindVersionsByFingerprint(v1.fingerprint);
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1));
  absl::StatusOr<std::vector<KeyRecord>> expired =
      store->ListKeysWithExpiredMaterial(*key.valid_to);
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(*expired, ElementsAre(key));
  absl::StatusOr<ImportParametersRecord> got_token = store->GetImportParameters("wrapping-1");
  ASSERT_THAT(got_token.status(), IsOk());
  EXPECT_EQ(*got_token, token);
  absl::StatusOr<std::vector<ImportParametersRecord>> tokens =
      store->ListExpiredImportParameters(token.expiration_time);
  ASSERT_THAT(tokens.status(), IsOk());
  EXPECT_THAT(*tokens, ElementsAre(token));

  // Stored as BLOBs, not text.
  store.reset();
  RawDatabase raw(DbPath());
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.QueryText("SELECT COUNT(*) FROM key_versions WHERE typeof(key_check_value) = "
                          "'blob' AND typeof(fingerprint) = 'blob'"),
            "2");
}

// ---- the schema's own checks

// Another writer (an operator with the sqlite3 shell, a buggy migration) meets
// the same rules as the store's callers: the schema refuses rows that break
// them.
struct SchemaCheckCase {
  std::string name;
  std::string sql;  // run against key 1 (current version 1, rotation off)
};

void PrintTo(const SchemaCheckCase& c, std::ostream* os) { *os << c.name; }

class SqliteKeyStoreSchemaCheckTest : public ::testing::TestWithParam<SchemaCheckCase> {};

TEST_P(SqliteKeyStoreSchemaCheckTest, RefusesRowBreakingTheRule) {
  auto dir = testing::TempDir::Create("kms_sqlite");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string path = (*dir)->path() + "/keystore.db";
  KeyRecord key = NewKey(KeyId(1));
  key.current_version_id = VersionId(1);
  {
    absl::StatusOr<std::unique_ptr<SqliteKeyStore>> store = SqliteKeyStore::Open(path);
    ASSERT_THAT(store.status(), IsOk());
    ASSERT_THAT((*store)->CreateKey(key, NewVersion(VersionId(1), KeyId(1)), {}), IsOk());
  }
  {
    RawDatabase raw(path);
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ(raw.ExecCode(GetParam().sql), SQLITE_CONSTRAINT_CHECK) << raw.LastError();
  }
  absl::StatusOr<std::unique_ptr<SqliteKeyStore>> store = SqliteKeyStore::Open(path);
  ASSERT_THAT(store.status(), IsOk());
  absl::StatusOr<KeyRecord> got = (*store)->GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
  absl::StatusOr<KeyVersionRecord> version = (*store)->GetVersion(VersionId(1));
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_EQ(*version, NewVersion(VersionId(1), KeyId(1)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SqliteKeyStoreSchemaCheckTest,
    ::testing::Values(
        SchemaCheckCase{"RotationEnabledWithoutNextTime", "UPDATE keys SET rotation_enabled = 1"},
        SchemaCheckCase{"NextTimeWithoutRotation", "UPDATE keys SET next_rotation_time_us = 0"},
        SchemaCheckCase{"RotationEnabledNotABoolean",
                        "UPDATE keys SET rotation_enabled = 2, next_rotation_time_us = 0"},
        SchemaCheckCase{"PeriodNegative", "UPDATE keys SET rotation_period_days = -1"},
        SchemaCheckCase{"PeriodAboveMaximum", "UPDATE keys SET rotation_period_days = 36501"},
        SchemaCheckCase{"UnknownVersionOrigin", "UPDATE key_versions SET origin = 'MANUAL'"},
        SchemaCheckCase{"NegativeReservation",
                        "UPDATE key_versions SET encryptions_reserved = -1"},
        SchemaCheckCase{"UnknownExpirationModel",
                        "UPDATE keys SET expiration_model = 'SOMETIMES'"},
        SchemaCheckCase{"ExpiresWithoutValidTo",
                        "UPDATE keys SET expiration_model = 'KEY_MATERIAL_EXPIRES'"},
        SchemaCheckCase{"ValidToWithoutExpires", "UPDATE keys SET valid_to_us = 0"},
        SchemaCheckCase{"ValidToWithDoesNotExpire",
                        "UPDATE keys SET expiration_model = 'KEY_MATERIAL_DOES_NOT_EXPIRE', "
                        "valid_to_us = 0"},
        SchemaCheckCase{"KeyCheckValueOfTwoBytes",
                        "UPDATE key_versions SET key_check_value = x'0102'"},
        SchemaCheckCase{"FingerprintOfFifteenBytes",
                        "UPDATE key_versions SET fingerprint = zeroblob(15)"},
        SchemaCheckCase{"MaterialDeletedNotABoolean",
                        "UPDATE key_versions SET material_deleted = 2"},
        SchemaCheckCase{"ImportParametersExpiringBeforeCreation",
                        "INSERT INTO import_parameters SELECT 'w', key_id, 'a', 'RSA_2048', 10, 9 "
                        "FROM keys"},
        // 32770 characters; then 16386 characters that are 32772 bytes (the
        // limit is in bytes, which length() of TEXT does not count).
        SchemaCheckCase{"PolicyOverTheLimit", "UPDATE keys SET policy = hex(zeroblob(16385))"},
        SchemaCheckCase{"PolicyOverTheLimitInBytes",
                        "UPDATE keys SET policy = replace(hex(zeroblob(8193)), '00', "
                        "char(233, 233))"},
        SchemaCheckCase{"GrantIdUpperCase",
                        "INSERT INTO grants SELECT 'A' || printf('%063d', 0), key_id, '', '', '', "
                        "'', zeroblob(32), 0 FROM keys"},
        SchemaCheckCase{"GrantIdOf63Characters",
                        "INSERT INTO grants SELECT printf('%063d', 0), key_id, '', '', '', '', "
                        "zeroblob(32), 0 FROM keys"},
        SchemaCheckCase{"TokenHashOf31Bytes",
                        "INSERT INTO grants SELECT printf('%064d', 0), key_id, '', '', '', '', "
                        "zeroblob(31), 0 FROM keys"},
        SchemaCheckCase{"UnknownGrantConstraintKind",
                        "INSERT INTO grants SELECT printf('%064d', 0), key_id, '', '', '', '', "
                        "zeroblob(32), 0 FROM keys; INSERT INTO grant_context VALUES "
                        "(printf('%064d', 0), 'SUPERSET', 'k', 'v')"}),
    [](const ::testing::TestParamInfo<SchemaCheckCase>& info) { return info.param.name; });

// ---- opening bad paths, as a table

struct BadPathCase {
  std::string name;
  // Prepares the directory and returns the path to open.
  std::function<std::string(const std::string& dir)> make;
  absl::StatusCode code;
  std::string message_has;
};

void PrintTo(const BadPathCase& c, std::ostream* os) { *os << c.name; }

class SqliteKeyStoreBadPathTest : public ::testing::TestWithParam<BadPathCase> {};

TEST_P(SqliteKeyStoreBadPathTest, OpenFailsWithClearError) {
  auto dir = testing::TempDir::Create("kms_sqlite");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const BadPathCase& c = GetParam();
  const std::string path = c.make((*dir)->path());
  absl::StatusOr<std::unique_ptr<SqliteKeyStore>> store = SqliteKeyStore::Open(path);
  EXPECT_THAT(store.status(), StatusIs(c.code, c.message_has));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SqliteKeyStoreBadPathTest,
    ::testing::Values(BadPathCase{"MissingDirectory",
                                  [](const std::string& dir) {
                                    return dir + "/no/such/dir/keystore.db";
                                  },
                                  absl::StatusCode::kNotFound, "/no/such/dir' does not exist"},
                      BadPathCase{"PathIsADirectory", [](const std::string& dir) { return dir; },
                                  absl::StatusCode::kFailedPrecondition, "is not a regular file"},
                      BadPathCase{"NotADatabase",
                                  [](const std::string& dir) {
                                    const std::string path = dir + "/notes.txt";
                                    std::ofstream(path) << std::string(4096, 'x');
                                    return path;
                                  },
                                  absl::StatusCode::kInternal, "not a database"},
                      BadPathCase{"EmptyPath", [](const std::string&) { return std::string(); },
                                  absl::StatusCode::kInvalidArgument, "empty"}),
    [](const ::testing::TestParamInfo<BadPathCase>& info) { return info.param.name; });

// ---- concurrency

TEST_F(SqliteKeyStoreTest, ConcurrentWritersAllLand) {
  constexpr int kThreads = 8;
  constexpr int kAliasesPerThread = 50;
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  ASSERT_THAT(CreateKeyWithVersion(*store, KeyId(1), VersionId(1)), IsOk());

  std::vector<absl::Status> first_error(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAliasesPerThread; ++i) {
        const std::string name = absl::StrCat("alias/t", t, "-", i);
        absl::Status status = store->CreateAlias(NewAlias(name, KeyId(1)));
        // Readers interleave with the writers.
        if (status.ok()) status = store->GetAlias(name).status();
        if (status.ok()) status = store->PutTags(KeyId(1), {{absl::StrCat("t", t), name}});
        if (!status.ok() && first_error[t].ok()) first_error[t] = status;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& status : first_error) EXPECT_THAT(status, IsOk());

  // Every alias is there once, seen through a fresh connection too.
  store.reset();
  store = OpenOrDie(DbPath());
  ASSERT_NE(store, nullptr);
  std::set<std::string> names;
  std::string marker;
  int listed = 0;
  do {
    absl::StatusOr<Page<AliasRecord>> page = store->ListAliases(KeyId(1), 64, marker);
    ASSERT_THAT(page.status(), IsOk());
    for (const AliasRecord& alias : page->items) {
      names.insert(alias.alias_name);
      ++listed;
    }
    marker = page->next_marker;
  } while (!marker.empty());
  EXPECT_EQ(listed, kThreads * kAliasesPerThread);
  EXPECT_EQ(names.size(), static_cast<size_t>(kThreads * kAliasesPerThread));
  absl::StatusOr<std::vector<TagRecord>> tags = store->ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, SizeIs(kThreads));
}

// ---- what this implementation adds to the contract

TEST_F(SqliteKeyStoreTest, TimesAreFlooredToTheMicrosecond) {
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(":memory:");
  ASSERT_NE(store, nullptr);
  KeyRecord key = NewKey(KeyId(1));
  key.creation_time = kT0 + absl::Nanoseconds(999);
  ASSERT_THAT(store->CreateKey(key, std::nullopt, {}), IsOk());
  absl::StatusOr<KeyRecord> got = store->GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->creation_time, kT0);
}

TEST_F(SqliteKeyStoreTest, TextMayHoldAnyBytes) {
  std::unique_ptr<SqliteKeyStore> store = OpenOrDie(":memory:");
  ASSERT_NE(store, nullptr);
  const std::string bytes("a\0b\xff\xfe", 5);
  KeyRecord key = NewKey(KeyId(1));
  key.description = bytes;
  ASSERT_THAT(store->CreateKey(key, std::nullopt, {{bytes, bytes}}), IsOk());
  absl::StatusOr<KeyRecord> got = store->GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->description, bytes);
  absl::StatusOr<std::vector<TagRecord>> tags = store->ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{bytes, bytes}));
}

struct InconsistentCase {
  std::string name;
  std::function<absl::Status(SqliteKeyStore&)> call;
  absl::StatusCode code;
  std::string message_has;
};

void PrintTo(const InconsistentCase& c, std::ostream* os) { *os << c.name; }

// Records that contradict themselves are refused, and nothing changes. The
// store starts with keys 1 and 2, each with one current version.
class SqliteKeyStoreInconsistentRecordTest : public ::testing::TestWithParam<InconsistentCase> {};

TEST_P(SqliteKeyStoreInconsistentRecordTest, IsRefused) {
  absl::StatusOr<std::unique_ptr<SqliteKeyStore>> store = SqliteKeyStore::Open(":memory:");
  ASSERT_THAT(store.status(), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(**store, KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(**store, KeyId(2), VersionId(2)), IsOk());

  const InconsistentCase& c = GetParam();
  EXPECT_THAT(c.call(**store), StatusIs(c.code, c.message_has));

  absl::StatusOr<Page<KeyRecord>> keys = (*store)->ListKeys(10, "");
  ASSERT_THAT(keys.status(), IsOk());
  KeyRecord key1 = NewKey(KeyId(1));
  key1.current_version_id = VersionId(1);
  KeyRecord key2 = NewKey(KeyId(2));
  key2.current_version_id = VersionId(2);
  EXPECT_THAT(keys->items, ElementsAre(key1, key2));
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = (*store)->ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1))));
  EXPECT_THAT((*store)->GetKey(KeyId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT((*store)->GetVersion(VersionId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
}

KeyRecord WithCurrent(KeyRecord key, const std::string& version_id) {
  key.current_version_id = version_id;
  return key;
}
KeyRecord WithState(KeyRecord key, KeyState state, std::optional<absl::Time> deletion_time) {
  key.state = state;
  key.deletion_time = deletion_time;
  return key;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SqliteKeyStoreInconsistentRecordTest,
    ::testing::Values(
        InconsistentCase{"CreateKeyWithVersionOfAnotherKey",
                         [](SqliteKeyStore& s) {
                           return s.CreateKey(WithCurrent(NewKey(KeyId(3)), VersionId(3)),
                                              NewVersion(VersionId(3), KeyId(4)), {});
                         },
                         absl::StatusCode::kInvalidArgument, KeyId(4)},
        InconsistentCase{"CreateKeyWithCurrentVersionNotCreated",
                         [](SqliteKeyStore& s) {
                           return s.CreateKey(WithCurrent(NewKey(KeyId(3)), VersionId(3)),
                                              std::nullopt, {});
                         },
                         absl::StatusCode::kInvalidArgument, VersionId(3)},
        InconsistentCase{"CreateKeyPendingDeletionWithoutDeletionTime",
                         [](SqliteKeyStore& s) {
                           return s.CreateKey(WithState(NewKey(KeyId(3)),
                                                        KeyState::kPendingDeletion, std::nullopt),
                                              std::nullopt, {});
                         },
                         absl::StatusCode::kInvalidArgument, "deletion_time"},
        InconsistentCase{"CreateKeyEnabledWithDeletionTime",
                         [](SqliteKeyStore& s) {
                           return s.CreateKey(WithState(NewKey(KeyId(3)), KeyState::kEnabled, kT0),
                                              std::nullopt, {});
                         },
                         absl::StatusCode::kInvalidArgument, "deletion_time"},
        InconsistentCase{"UpdateKeyDisabledWithDeletionTime",
                         [](SqliteKeyStore& s) {
                           return s.UpdateKey(WithState(WithCurrent(NewKey(KeyId(1)), VersionId(1)),
                                                        KeyState::kDisabled, kT0));
                         },
                         absl::StatusCode::kInvalidArgument, "deletion_time"},
        InconsistentCase{"UpdateKeyToVersionOfAnotherKey",
                         [](SqliteKeyStore& s) {
                           return s.UpdateKey(WithCurrent(NewKey(KeyId(1)), VersionId(2)));
                         },
                         absl::StatusCode::kNotFound, VersionId(2)},
        InconsistentCase{"UpdateKeyToMissingVersion",
                         [](SqliteKeyStore& s) {
                           return s.UpdateKey(WithCurrent(NewKey(KeyId(1)), VersionId(9)));
                         },
                         absl::StatusCode::kNotFound, VersionId(9)},
        // Beyond the shared contract: negative reservation counts.
        InconsistentCase{"CreateKeyWithNegativeReservation",
                         [](SqliteKeyStore& s) {
                           KeyVersionRecord version = NewVersion(VersionId(3), KeyId(3));
                           version.encryptions_reserved = -1;
                           return s.CreateKey(WithCurrent(NewKey(KeyId(3)), VersionId(3)), version,
                                              {});
                         },
                         absl::StatusCode::kInvalidArgument, "encryptions_reserved"},
        InconsistentCase{"AddVersionWithNegativeReservation",
                         [](SqliteKeyStore& s) {
                           KeyVersionRecord version = NewVersion(VersionId(3), KeyId(1));
                           version.encryptions_reserved = -1;
                           return s.AddVersion(version,
                                               WithCurrent(NewKey(KeyId(1)), VersionId(3)));
                         },
                         absl::StatusCode::kInvalidArgument, "encryptions_reserved"},
        InconsistentCase{"ReserveNegativeEncryptions",
                         [](SqliteKeyStore& s) { return s.ReserveEncryptions(VersionId(1), -1); },
                         absl::StatusCode::kInvalidArgument, "-1"},
        InconsistentCase{
            "ReserveInt64MinEncryptions",
            [](SqliteKeyStore& s) { return s.ReserveEncryptions(VersionId(1), INT64_MIN); },
            absl::StatusCode::kInvalidArgument, "encryptions_reserved"}),
    [](const ::testing::TestParamInfo<InconsistentCase>& info) { return info.param.name; });

}  // namespace
}  // namespace kms::keystore
