// CachingKeyStore's own behaviour: what it keeps, when it forgets, and the
// race between a read that missed and a write. (The KeyStore contract itself
// runs against it in key_store_conformance_test.cc, as "CachedSqliteFile".)

#include "daemon/keystore/caching_key_store.h"

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "daemon/keystore/forwarding_key_store.h"
#include "daemon/keystore/sqlite_key_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/status_matchers.h"

namespace kms::keystore {
namespace {

using testing::IsOk;
using testing::StatusIs;

const absl::Time kT0 = absl::FromUnixMicros(1'800'000'000'000'000);

std::string KeyId(int n) { return absl::StrCat("0000000", n, "-0000-4000-8000-00000000000a"); }
std::string VersionId(int n) { return absl::StrCat("0000000", n, "-1111-4000-8000-00000000000b"); }

KeyRecord NewKey(int n) {
  KeyRecord key;
  key.key_id = KeyId(n);
  key.creation_time = kT0;
  key.current_version_id = VersionId(n);
  return key;
}

KeyVersionRecord NewVersion(int n, int key) {
  KeyVersionRecord version;
  version.version_id = VersionId(n);
  version.key_id = KeyId(key);
  version.creation_time = kT0;
  return version;
}

GrantRecord NewGrant(int n, int key) {
  GrantRecord grant;
  grant.grant_id = absl::StrCat(std::string(63, 'e'), n);
  grant.key_id = KeyId(key);
  grant.grantee_principal = "app";
  grant.issuing_principal = "admin";
  grant.operations = {"Decrypt"};
  grant.token_hash = std::string(31, '\x01') + static_cast<char>(n);
  grant.creation_time = kT0;
  return grant;
}

AliasRecord NewAlias(const std::string& name, int key) {
  AliasRecord alias;
  alias.alias_name = name;
  alias.key_id = KeyId(key);
  alias.creation_time = kT0;
  alias.last_updated_time = kT0;
  return alias;
}

// A real store whose GetKey or GetVersion can be held after it has read, so
// a test can run a write between a cache miss's read and its fill.
class PausingStore : public ForwardingKeyStore {
 public:
  using ForwardingKeyStore::ForwardingKeyStore;

  void PauseNextGetKey() { pause_key_ = true; }
  void PauseNextGetVersion() { pause_version_ = true; }
  absl::Notification& read_done() { return read_done_; }
  absl::Notification& resume() { return resume_; }

  absl::StatusOr<KeyRecord> GetKey(absl::string_view key_id) override {
    absl::StatusOr<KeyRecord> key = ForwardingKeyStore::GetKey(key_id);
    MaybePause(pause_key_);
    return key;
  }

  absl::StatusOr<KeyVersionRecord> GetVersion(absl::string_view version_id) override {
    absl::StatusOr<KeyVersionRecord> version = ForwardingKeyStore::GetVersion(version_id);
    MaybePause(pause_version_);
    return version;
  }

 private:
  void MaybePause(bool& pause) {
    if (!pause) return;
    pause = false;
    read_done_.Notify();
    resume_.WaitForNotification();
  }

  // Set and read by the test's threads in turn.
  bool pause_key_ = false;
  bool pause_version_ = false;
  absl::Notification read_done_;
  absl::Notification resume_;
};

class CachingKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(CachingKeyStore::Options()); }

  void Open(CachingKeyStore::Options options) {
    cache_.reset();
    if (dir_ == nullptr) {
      auto dir = testing::TempDir::Create("kms_caching_store");
      ASSERT_TRUE(dir.ok()) << dir.status();
      dir_ = *std::move(dir);
    }
    absl::StatusOr<std::unique_ptr<SqliteKeyStore>> sqlite =
        SqliteKeyStore::Open(dir_->path() + "/keystore.db");
    ASSERT_THAT(sqlite.status(), IsOk());
    auto pausing = std::make_unique<PausingStore>(*std::move(sqlite));
    pausing_ = pausing.get();
    cache_ = std::make_unique<CachingKeyStore>(std::move(pausing), options);
  }

  // Key n with version n, grant n and alias "alias/key-n".
  void AddKey(int n) {
    ASSERT_THAT(cache_->CreateKey(NewKey(n), NewVersion(n, n), {}), IsOk());
    ASSERT_THAT(cache_->AddGrant(NewGrant(n, n)), IsOk());
    ASSERT_THAT(cache_->CreateAlias(NewAlias(absl::StrCat("alias/key-", n), n)), IsOk());
  }

  // Reads key 1 through all four caches.
  void ReadAllOfKey1() {
    ASSERT_THAT(cache_->GetKey(KeyId(1)).status(), IsOk());
    ASSERT_THAT(cache_->ListGrantsForKey(KeyId(1)).status(), IsOk());
    ASSERT_THAT(cache_->GetAlias("alias/key-1").status(), IsOk());
    ASSERT_THAT(cache_->GetVersion(VersionId(1)).status(), IsOk());
  }

  // Runs `read` on another thread, holds it after the store has answered and
  // before the cache keeps the answer, runs `write` in that gap, then lets the
  // read finish; returns what the read returned. Arm the pause first
  // (PauseNextGetKey or PauseNextGetVersion).
  template <typename Read>
  auto ReadAcrossWrite(Read read, const std::function<absl::Status()>& write) -> decltype(read()) {
    decltype(read()) seen;
    std::thread reader([&] { seen = read(); });
    pausing_->read_done().WaitForNotification();
    // EXPECT, not ASSERT: the reader must be joined either way.
    EXPECT_THAT(write(), IsOk());
    pausing_->resume().Notify();
    reader.join();
    return seen;
  }

  CachingKeyStore& cache() { return *cache_; }
  // The database behind the cache, for writes the cache does not see.
  KeyStore& database() { return pausing_->inner(); }

  std::unique_ptr<testing::TempDir> dir_;
  PausingStore* pausing_ = nullptr;
  std::unique_ptr<CachingKeyStore> cache_;
};

TEST_F(CachingKeyStoreTest, RepeatedReadsAreAnsweredFromMemory) {
  AddKey(1);
  ReadAllOfKey1();
  EXPECT_EQ(cache().stats().misses, 4u);
  EXPECT_EQ(cache().stats().hits, 0u);

  ReadAllOfKey1();
  EXPECT_EQ(cache().stats().misses, 4u);
  EXPECT_EQ(cache().stats().hits, 4u);

  absl::StatusOr<std::vector<GrantRecord>> grants = cache().ListGrantsForKey(KeyId(1));
  ASSERT_THAT(grants.status(), IsOk());
  EXPECT_THAT(*grants, ::testing::ElementsAre(NewGrant(1, 1)));
  absl::StatusOr<AliasRecord> alias = cache().GetAlias("alias/key-1");
  ASSERT_THAT(alias.status(), IsOk());
  EXPECT_EQ(alias->key_id, KeyId(1));
}

TEST_F(CachingKeyStoreTest, AWriteBehindTheCacheIsNotSeenUntilTheNextWriteThroughIt) {
  // The rule the cache rests on: every write goes through it. This shows
  // what breaking it does, so that nobody wires a second writer in.
  AddKey(1);
  ReadAllOfKey1();
  KeyRecord disabled = NewKey(1);
  disabled.state = KeyState::kDisabled;
  ASSERT_THAT(database().UpdateKey(disabled), IsOk());
  EXPECT_EQ(cache().GetKey(KeyId(1))->state, KeyState::kEnabled);

  AddKey(2);  // any write through the cache
  EXPECT_EQ(cache().GetKey(KeyId(1))->state, KeyState::kDisabled);
}

// Each write the cache passes on and answers by clearing every cache
// (ReserveEncryptions, which forgets less, has tests of its own below).
struct Write {
  std::string name;
  std::function<absl::Status(KeyStore&)> run;
};

std::vector<Write> Writes() {
  KeyRecord disabled = NewKey(1);
  disabled.state = KeyState::kDisabled;
  KeyRecord rotated = NewKey(1);
  rotated.current_version_id = VersionId(9);
  ImportParametersRecord parameters;
  parameters.wrapping_key_id = "w";
  parameters.key_id = KeyId(1);
  parameters.creation_time = kT0;
  parameters.expiration_time = kT0 + absl::Hours(24);
  Intent intent;
  intent.kind = "create_version";
  intent.key_id = KeyId(1);
  ImportCommit commit;
  commit.key = NewKey(1);
  commit.consumed_wrapping_key_id = "w";
  return {
      {"CreateKey", [](KeyStore& s) { return s.CreateKey(NewKey(3), NewVersion(3, 3), {}); }},
      {"UpdateKey", [=](KeyStore& s) { return s.UpdateKey(disabled); }},
      {"AddVersion", [=](KeyStore& s) { return s.AddVersion(NewVersion(9, 1), rotated); }},
      {"DeleteKey", [](KeyStore& s) { return s.DeleteKey(KeyId(1)); }},
      {"CommitImport",
       [=](KeyStore& s) {
         absl::Status added = s.AddImportParameters(parameters);
         if (!added.ok()) return added;
         return s.CommitImport(commit);
       }},
      {"MarkMaterialDeleted", [](KeyStore& s) { return s.MarkMaterialDeleted(NewKey(1)); }},
      {"AddImportParameters", [=](KeyStore& s) { return s.AddImportParameters(parameters); }},
      {"DeleteImportParameters",
       [=](KeyStore& s) {
         absl::Status added = s.AddImportParameters(parameters);
         if (!added.ok()) return added;
         return s.DeleteImportParameters("w");
       }},
      {"CreateAlias", [](KeyStore& s) { return s.CreateAlias(NewAlias("alias/other", 1)); }},
      {"UpdateAlias",
       [](KeyStore& s) { return s.UpdateAlias("alias/key-1", KeyId(1), kT0 + absl::Hours(1)); }},
      {"DeleteAlias", [](KeyStore& s) { return s.DeleteAlias("alias/key-1"); }},
      {"AddGrant", [](KeyStore& s) { return s.AddGrant(NewGrant(7, 1)); }},
      {"DeleteGrant", [](KeyStore& s) { return s.DeleteGrant(NewGrant(1, 1).grant_id); }},
      {"PutTags",
       [](KeyStore& s) {
         return s.PutTags(KeyId(1), {{"team", "payments"}});
       }},
      {"RemoveTags", [](KeyStore& s) { return s.RemoveTags(KeyId(1), {"team"}); }},
      {"AddIntent", [=](KeyStore& s) { return s.AddIntent(intent).status(); }},
      {"RemoveIntent",
       [=](KeyStore& s) {
         absl::StatusOr<int64_t> id = s.AddIntent(intent);
         if (!id.ok()) return id.status();
         return s.RemoveIntent(*id);
       }},
  };
}

class CachingKeyStoreWriteTest : public CachingKeyStoreTest,
                                 public ::testing::WithParamInterface<Write> {};

TEST_P(CachingKeyStoreWriteTest, ClearsEveryCache) {
  AddKey(1);
  ReadAllOfKey1();
  ASSERT_EQ(cache().stats().misses, 4u);

  ASSERT_THAT(GetParam().run(cache()), IsOk());

  const uint64_t misses_before = cache().stats().misses;
  (void)cache().GetKey(KeyId(1));
  (void)cache().ListGrantsForKey(KeyId(1));
  (void)cache().GetAlias("alias/key-1");
  (void)cache().GetVersion(VersionId(1));
  EXPECT_EQ(cache().stats().misses - misses_before, 4u);
  EXPECT_EQ(cache().stats().hits, 0u);
}

TEST_F(CachingKeyStoreTest, AReservationIsSeenByTheNextGetVersion) {
  AddKey(1);
  ASSERT_EQ(cache().GetVersion(VersionId(1))->encryptions_reserved, 0);
  ASSERT_THAT(cache().ReserveEncryptions(VersionId(1), 10000), IsOk());
  EXPECT_EQ(cache().GetVersion(VersionId(1))->encryptions_reserved, 10000);
}

TEST_F(CachingKeyStoreTest, AReservationForgetsOnlyItsVersion) {
  // The data plane reserves at the first encryption under each version, so
  // with many keys in use a reservation that cleared everything would keep
  // the caches cold.
  AddKey(1);
  AddKey(2);
  ReadAllOfKey1();
  ASSERT_THAT(cache().GetVersion(VersionId(2)).status(), IsOk());
  ASSERT_EQ(cache().stats().misses, 5u);

  ASSERT_THAT(cache().ReserveEncryptions(VersionId(1), 10000), IsOk());

  ASSERT_THAT(cache().GetKey(KeyId(1)).status(), IsOk());
  ASSERT_THAT(cache().ListGrantsForKey(KeyId(1)).status(), IsOk());
  ASSERT_THAT(cache().GetAlias("alias/key-1").status(), IsOk());
  ASSERT_THAT(cache().GetVersion(VersionId(2)).status(), IsOk());
  EXPECT_EQ(cache().stats().misses, 5u);
  EXPECT_EQ(cache().stats().hits, 4u);

  EXPECT_EQ(cache().GetVersion(VersionId(1))->encryptions_reserved, 10000);
  EXPECT_EQ(cache().stats().misses, 6u);
}

TEST_F(CachingKeyStoreTest, AFailedReservationChangesNothingCached) {
  AddKey(1);
  ReadAllOfKey1();
  EXPECT_THAT(cache().ReserveEncryptions(VersionId(5), 10000),
              StatusIs(absl::StatusCode::kNotFound));
  ReadAllOfKey1();
  EXPECT_EQ(cache().stats().misses, 4u);
  EXPECT_EQ(cache().stats().hits, 4u);
}

TEST_F(CachingKeyStoreTest, AGetVersionThatOverlapsAReservationDoesNotKeepTheOldCount) {
  AddKey(1);
  pausing_->PauseNextGetVersion();
  // The reservation lands after the reader has read version 1 with nothing
  // reserved and before it stores what it read.
  absl::StatusOr<KeyVersionRecord> seen_by_reader =
      ReadAcrossWrite([&] { return cache().GetVersion(VersionId(1)); },
                      [&] { return cache().ReserveEncryptions(VersionId(1), 10000); });

  ASSERT_THAT(seen_by_reader.status(), IsOk());
  EXPECT_EQ(seen_by_reader->encryptions_reserved, 0);  // it overlapped the write
  EXPECT_EQ(cache().GetVersion(VersionId(1))->encryptions_reserved, 10000);
}

TEST_F(CachingKeyStoreTest, AReservationReturnsTheBytesOfTheRecordItForgets) {
  // Forgetting a record must give its bytes back, or repeated reservations
  // would walk the estimate up to the bound and empty the caches for nothing.
  CachingKeyStore::Options options;
  options.max_bytes = 4096;
  Open(options);
  AddKey(1);
  ReadAllOfKey1();
  for (int i = 1; i <= 200; ++i) {
    ASSERT_THAT(cache().ReserveEncryptions(VersionId(1), i), IsOk());
    ASSERT_THAT(cache().GetVersion(VersionId(1)).status(), IsOk());
  }
  const uint64_t misses_before = cache().stats().misses;
  ASSERT_THAT(cache().GetKey(KeyId(1)).status(), IsOk());
  EXPECT_EQ(cache().stats().misses, misses_before);  // key 1 was never emptied out
}

INSTANTIATE_TEST_SUITE_P(AllWrites, CachingKeyStoreWriteTest, ::testing::ValuesIn(Writes()),
                         [](const ::testing::TestParamInfo<Write>& info) {
                           return info.param.name;
                         });

TEST_F(CachingKeyStoreTest, AReadThatOverlapsAWriteDoesNotKeepWhatItFound) {
  AddKey(1);
  pausing_->PauseNextGetKey();
  KeyRecord disabled = NewKey(1);
  disabled.state = KeyState::kDisabled;
  // The update lands after the reader has read key 1 as enabled and before
  // it stores what it read.
  absl::StatusOr<KeyRecord> seen_by_reader = ReadAcrossWrite(
      [&] { return cache().GetKey(KeyId(1)); }, [&] { return cache().UpdateKey(disabled); });

  ASSERT_THAT(seen_by_reader.status(), IsOk());
  EXPECT_EQ(seen_by_reader->state, KeyState::kEnabled);  // it overlapped the write
  // Had the reader stored its record, this would be the stale "enabled".
  EXPECT_EQ(cache().GetKey(KeyId(1))->state, KeyState::kDisabled);
}

TEST_F(CachingKeyStoreTest, UnknownIdsAreAskedForEachTime) {
  EXPECT_THAT(cache().GetKey(KeyId(5)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(cache().GetAlias("alias/none").status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(cache().GetKey(KeyId(5)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(cache().stats().misses, 3u);
  EXPECT_EQ(cache().stats().hits, 0u);
}

TEST_F(CachingKeyStoreTest, CachesAreEmptiedBeforeTheyPassTheByteBound) {
  CachingKeyStore::Options options;
  options.max_bytes = 30000;
  Open(options);
  for (int n : {1, 2, 3}) {
    KeyRecord key = NewKey(n);
    // Key 3's policy alone is more than the bound.
    key.policy = std::string(n == 3 ? 31000 : 20000, 'p');
    ASSERT_THAT(cache().CreateKey(key, NewVersion(n, n), {}), IsOk());
  }
  ASSERT_THAT(cache().GetKey(KeyId(1)).status(), IsOk());  // kept
  ASSERT_THAT(cache().GetKey(KeyId(1)).status(), IsOk());  // hit
  ASSERT_THAT(cache().GetKey(KeyId(2)).status(), IsOk());  // empties, then kept
  ASSERT_THAT(cache().GetKey(KeyId(2)).status(), IsOk());  // hit
  ASSERT_THAT(cache().GetKey(KeyId(1)).status(), IsOk());  // was emptied: a miss
  EXPECT_EQ(cache().stats().hits, 2u);
  EXPECT_EQ(cache().stats().misses, 3u);

  // Never kept, but answered every time.
  absl::StatusOr<KeyRecord> big = cache().GetKey(KeyId(3));
  ASSERT_THAT(big.status(), IsOk());
  EXPECT_EQ(big->policy.size(), 31000u);
  ASSERT_THAT(cache().GetKey(KeyId(3)).status(), IsOk());
  EXPECT_EQ(cache().stats().misses, 5u);
}

TEST_F(CachingKeyStoreTest, AFullCacheIsEmptiedBeforeTheNextRecord) {
  CachingKeyStore::Options options;
  options.max_entries = 2;
  Open(options);
  AddKey(1);
  AddKey(2);
  AddKey(3);
  for (int n : {1, 2, 3}) ASSERT_THAT(cache().GetKey(KeyId(n)).status(), IsOk());
  // Key 3 found the cache full and emptied it: only key 3 is kept.
  ASSERT_THAT(cache().GetKey(KeyId(3)).status(), IsOk());
  ASSERT_THAT(cache().GetKey(KeyId(1)).status(), IsOk());
  EXPECT_EQ(cache().stats().hits, 1u);
  EXPECT_EQ(cache().stats().misses, 4u);
}

}  // namespace
}  // namespace kms::keystore
