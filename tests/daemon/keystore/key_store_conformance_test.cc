// The KeyStore conformance suite: the contract of daemon/keystore/key_store.h,
// run against every implementation. An implementation joins by adding one
// entry to AllStores() (a name and a function that opens an empty store in
// a fresh directory); every TEST_P below then runs against it.
//
// Behaviour that only one implementation has belongs in that
// implementation's own test (e.g. sqlite_key_store_test.cc), not here.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/keystore/caching_key_store.h"
#include "daemon/keystore/key_store.h"
#include "daemon/keystore/sqlite_key_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/status_matchers.h"

namespace kms::keystore {

// Readable records in failure messages. Found by argument-dependent lookup, so
// they live in the records' namespace; sqlite_key_store_test.cc (same test
// binary) declares and shares them.
void PrintTo(const KeyRecord& key, std::ostream* os) {
  *os << "{key_id=" << key.key_id << " description='" << key.description
      << "' state=" << KeyStateName(key.state) << " origin=" << KeyOriginName(key.origin)
      << " usage=" << key.key_usage << " spec=" << key.key_spec
      << " created=" << absl::FormatTime(key.creation_time) << " deletion="
      << (key.deletion_time ? absl::FormatTime(*key.deletion_time) : std::string("none"))
      << " current_version=" << key.current_version_id
      << " rotation=" << (key.rotation_enabled ? "on" : "off")
      << " period_days=" << key.rotation_period_days << " next_rotation="
      << (key.next_rotation_time ? absl::FormatTime(*key.next_rotation_time) : std::string("none"))
      << " expiration_model=" << ExpirationModelName(key.expiration_model) << " valid_to="
      << (key.valid_to ? absl::FormatTime(*key.valid_to) : std::string("none"))
      << " policy='" << absl::CHexEscape(key.policy.substr(0, 64))
      << (key.policy.size() > 64 ? absl::StrCat("...' (", key.policy.size(), " bytes)") : "'")
      << "}";
}
void PrintTo(const GrantRecord& grant, std::ostream* os) {
  // A token hash does not reveal the token: printable.
  *os << "{grant_id=" << grant.grant_id << " key_id=" << grant.key_id << " name='"
      << absl::CHexEscape(grant.name) << "' grantee=" << grant.grantee_principal
      << " retiring=" << grant.retiring_principal << " issuing=" << grant.issuing_principal
      << " operations=[";
  for (const std::string& operation : grant.operations) *os << operation << ",";
  *os << "] equals={";
  for (const auto& [k, v] : grant.encryption_context_equals) {
    *os << "'" << absl::CHexEscape(k) << "':'" << absl::CHexEscape(v) << "',";
  }
  *os << "} subset={";
  for (const auto& [k, v] : grant.encryption_context_subset) {
    *os << "'" << absl::CHexEscape(k) << "':'" << absl::CHexEscape(v) << "',";
  }
  *os << "} token_hash=" << absl::BytesToHexString(grant.token_hash)
      << " created=" << absl::FormatTime(grant.creation_time) << "}";
}
void PrintTo(const KeyVersionRecord& version, std::ostream* os) {
  // Check values and fingerprints do not reveal key material: printable.
  *os << "{version_id=" << version.version_id << " key_id=" << version.key_id
      << " created=" << absl::FormatTime(version.creation_time)
      << " origin=" << VersionOriginName(version.origin)
      << " reserved=" << version.encryptions_reserved
      << " kcv=" << absl::BytesToHexString(version.key_check_value)
      << " fingerprint=" << absl::BytesToHexString(version.fingerprint)
      << " material_deleted=" << version.material_deleted << "}";
}
void PrintTo(const ImportParametersRecord& record, std::ostream* os) {
  *os << "{wrapping_key_id=" << record.wrapping_key_id << " key_id=" << record.key_id
      << " algorithm=" << record.wrapping_algorithm << " spec=" << record.wrapping_key_spec
      << " created=" << absl::FormatTime(record.creation_time)
      << " expires=" << absl::FormatTime(record.expiration_time) << "}";
}
void PrintTo(const AliasRecord& alias, std::ostream* os) {
  *os << "{alias_name=" << alias.alias_name << " key_id=" << alias.key_id
      << " created=" << absl::FormatTime(alias.creation_time)
      << " updated=" << absl::FormatTime(alias.last_updated_time) << "}";
}
void PrintTo(const TagRecord& tag, std::ostream* os) {
  *os << "{" << tag.key << "=" << tag.value << "}";
}

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

using testing::IsOk;
using testing::StatusIs;

// ---- the implementations under test


struct StoreKind {
  std::string name;
  // Whether a store opened again on the same directory has what the last one
  // committed (tests of durability skip the others).
  bool persistent;
  // Opens the store kept in `dir`, a directory the test owns (empty at first).
  std::function<absl::StatusOr<std::unique_ptr<KeyStore>>(const std::string& dir)> open;
};

std::vector<StoreKind> AllStores() {
  return {
      {"SqliteMemory", /*persistent=*/false,
       [](const std::string&) -> absl::StatusOr<std::unique_ptr<KeyStore>> {
         return SqliteKeyStore::Open(":memory:");
       }},
      {"SqliteFile", /*persistent=*/true,
       [](const std::string& dir) -> absl::StatusOr<std::unique_ptr<KeyStore>> {
         return SqliteKeyStore::Open(dir + "/keystore.db");
       }},
      // What kmsd runs: the cache in front of a file database.
      {"CachedSqliteFile", /*persistent=*/true,
       [](const std::string& dir) -> absl::StatusOr<std::unique_ptr<KeyStore>> {
         absl::StatusOr<std::unique_ptr<SqliteKeyStore>> inner =
             SqliteKeyStore::Open(dir + "/keystore.db");
         if (!inner.ok()) return inner.status();
         return std::make_unique<CachingKeyStore>(*std::move(inner));
       }},
  };
}

// Parameters print as their names (test listings, ctest names).
void PrintTo(const StoreKind& kind, std::ostream* os) { *os << kind.name; }

const StoreKind& KindOf(const StoreKind& kind) { return kind; }
template <typename Case>
const StoreKind& KindOf(const std::tuple<StoreKind, Case>& param) {
  return std::get<0>(param);
}

// A fresh store per test, of the kind named by the parameter.
template <typename Param>
class StoreTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kms_keystore");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    absl::StatusOr<std::unique_ptr<KeyStore>> store = KindOf(this->GetParam()).open(dir_->path());
    ASSERT_THAT(store.status(), IsOk());
    store_ = *std::move(store);
  }
  KeyStore& store() { return *store_; }
  bool persistent() const { return KindOf(this->GetParam()).persistent; }

  // Closes the store and opens it again on the same directory.
  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<KeyStore>> store = KindOf(this->GetParam()).open(dir_->path());
    ASSERT_THAT(store.status(), IsOk());
    store_ = *std::move(store);
  }

 private:
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<KeyStore> store_;
};

std::string KindName(const ::testing::TestParamInfo<StoreKind>& info) { return info.param.name; }
template <typename Case>
std::string KindAndCaseName(const ::testing::TestParamInfo<std::tuple<StoreKind, Case>>& info) {
  return absl::StrCat(std::get<0>(info.param).name, "_", std::get<1>(info.param).name);
}

// ---- records

// Every time is on a whole microsecond: the contract's resolution.
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

KeyVersionRecord NewVersion(const std::string& version_id, const std::string& key_id) {
  KeyVersionRecord version;
  version.version_id = version_id;
  version.key_id = key_id;
  version.creation_time = kT0;
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

// Creates an enabled key whose current version is `version_id`.
absl::Status CreateKeyWithVersion(KeyStore& store, const std::string& key_id,
                                  const std::string& version_id,
                                  const std::vector<TagRecord>& tags = {}) {
  KeyRecord key = NewKey(key_id);
  key.current_version_id = version_id;
  return store.CreateKey(key, NewVersion(version_id, key_id), tags);
}

KeyRecord WithCurrent(KeyRecord key, const std::string& version_id) {
  key.current_version_id = version_id;
  return key;
}

// `key` with rotation on: every `period_days`, next at `next`.
KeyRecord WithRotation(KeyRecord key, int period_days, absl::Time next) {
  key.rotation_enabled = true;
  key.rotation_period_days = period_days;
  key.next_rotation_time = next;
  return key;
}

KeyVersionRecord NewVersion(const std::string& version_id, const std::string& key_id,
                            VersionOrigin origin, absl::Time created,
                            int64_t encryptions_reserved = 0) {
  KeyVersionRecord version = NewVersion(version_id, key_id);
  version.origin = origin;
  version.creation_time = created;
  version.encryptions_reserved = encryptions_reserved;
  return version;
}

std::vector<std::string> KeyIdsOf(const std::vector<KeyRecord>& keys) {
  std::vector<std::string> ids;
  for (const KeyRecord& key : keys) ids.push_back(key.key_id);
  return ids;
}

// A valid grant id: 64 lower-case hex characters, ordered as `n`.
std::string GrantId(int n) {
  return absl::StrCat(std::string(56, 'e'), absl::Hex(n, absl::kZeroPad8));
}

// A 32-byte token hash, different for every `n`, with bytes that are not text.
std::string TokenHash(int n) {
  std::string hash(32, '\xa5');
  hash[0] = '\0';
  hash[30] = static_cast<char>(n >> 8);
  hash[31] = static_cast<char>(n);
  return hash;
}

// Grant `n` on `key_id`: token hash TokenHash(n), two operations.
GrantRecord NewGrant(int n, const std::string& key_id) {
  GrantRecord grant;
  grant.grant_id = GrantId(n);
  grant.key_id = key_id;
  grant.name = absl::StrCat("grant-", n);
  grant.grantee_principal = "arn:aws:iam::111122223333:role/app";
  grant.issuing_principal = "arn:aws:iam::111122223333:user/admin";
  grant.operations = {"Encrypt", "Decrypt"};
  grant.token_hash = TokenHash(n);
  grant.creation_time = kT0;
  return grant;
}

std::vector<std::string> GrantIdsOf(const std::vector<GrantRecord>& grants) {
  std::vector<std::string> ids;
  for (const GrantRecord& grant : grants) ids.push_back(grant.grant_id);
  return ids;
}

std::vector<std::string> AliasNamesOf(const std::vector<AliasRecord>& aliases) {
  std::vector<std::string> names;
  for (const AliasRecord& alias : aliases) names.push_back(alias.alias_name);
  return names;
}

// ======================================================================
// Keys and versions

using KeyStoreConformanceTest = StoreTest<StoreKind>;

TEST_P(KeyStoreConformanceTest, CreateKeyStoresKeyVersionAndTags) {
  KeyRecord key = NewKey(KeyId(1));
  key.description = "payments CMK";
  key.key_usage = "ENCRYPT_DECRYPT";
  key.key_spec = "SYMMETRIC_DEFAULT";
  key.current_version_id = VersionId(1);
  const KeyVersionRecord version = NewVersion(VersionId(1), KeyId(1));
  ASSERT_THAT(store().CreateKey(key, version, {{"team", "payments"}, {"env", "prod"}}), IsOk());

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);

  absl::StatusOr<KeyVersionRecord> got_version = store().GetVersion(VersionId(1));
  ASSERT_THAT(got_version.status(), IsOk());
  EXPECT_EQ(*got_version, version);

  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(version));

  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"env", "prod"}, TagRecord{"team", "payments"}));
}

TEST_P(KeyStoreConformanceTest, KeyWithoutMaterialHasEmptyCurrentVersion) {
  KeyRecord key = NewKey(KeyId(1));
  key.state = KeyState::kPendingImport;
  key.origin = KeyOrigin::kExternal;
  key.description = "";
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
  EXPECT_EQ(got->current_version_id, "");

  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, IsEmpty());
  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, IsEmpty());
}

TEST_P(KeyStoreConformanceTest, CreateKeyWithTakenKeyIdChangesNothing) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1), {{"a", "1"}}), IsOk());

  KeyRecord again = NewKey(KeyId(1));
  again.description = "second";
  again.current_version_id = VersionId(2);
  EXPECT_THAT(store().CreateKey(again, NewVersion(VersionId(2), KeyId(1)), {{"b", "2"}}),
              StatusIs(absl::StatusCode::kAlreadyExists, KeyId(1)));

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->description, NewKey(KeyId(1)).description);
  EXPECT_EQ(got->current_version_id, VersionId(1));
  EXPECT_THAT(store().GetVersion(VersionId(2)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"a", "1"}));
}

TEST_P(KeyStoreConformanceTest, CreateKeyWithTakenVersionIdLeavesNothingBehind) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());

  // The key row and the tags are written before the version clashes; the
  // whole call must roll back.
  EXPECT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(1), {{"team", "x"}}),
              StatusIs(absl::StatusCode::kAlreadyExists, VersionId(1)));

  EXPECT_THAT(store().GetKey(KeyId(2)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().ListTags(KeyId(2)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(2));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, IsEmpty());
  absl::StatusOr<KeyVersionRecord> version = store().GetVersion(VersionId(1));
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_EQ(version->key_id, KeyId(1));
  absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(100, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(page->items), ElementsAre(KeyId(1)));

  // The failed call left no trace that would block a correct retry.
  EXPECT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2), {{"team", "x"}}), IsOk());
}

TEST_P(KeyStoreConformanceTest, UpdateKeyReplacesOnlyMutableFields) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  const KeyRecord original = NewKey(KeyId(1));

  KeyRecord update = original;
  update.description = "retired";
  update.state = KeyState::kPendingDeletion;
  update.deletion_time = kT0 + absl::Hours(24 * 7);
  update.current_version_id = VersionId(1);
  // Immutable fields: must be ignored.
  update.origin = KeyOrigin::kExternal;
  update.key_usage = "SIGN_VERIFY";
  update.key_spec = "ECC_NIST_P256";
  update.creation_time = kT0 + absl::Hours(1);
  ASSERT_THAT(store().UpdateKey(update), IsOk());

  KeyRecord want = original;
  want.description = "retired";
  want.state = KeyState::kPendingDeletion;
  want.deletion_time = kT0 + absl::Hours(24 * 7);
  want.current_version_id = VersionId(1);
  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, want);

  // Cancelling the deletion clears the deletion time again.
  want.state = KeyState::kDisabled;
  want.deletion_time = std::nullopt;
  ASSERT_THAT(store().UpdateKey(want), IsOk());
  got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, want);
}

TEST_P(KeyStoreConformanceTest, UpdateKeyCanClearCurrentVersion) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  KeyRecord key = NewKey(KeyId(1));
  key.state = KeyState::kPendingImport;
  key.current_version_id = "";
  ASSERT_THAT(store().UpdateKey(key), IsOk());
  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
}

TEST_P(KeyStoreConformanceTest, DeleteKeyRemovesItsVersionsAliasesAndTags) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1), {{"a", "1"}}), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2), {{"b", "2"}}), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/one", KeyId(1))), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/uno", KeyId(1))), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/two", KeyId(2))), IsOk());

  ASSERT_THAT(store().DeleteKey(KeyId(1)), IsOk());

  EXPECT_THAT(store().GetKey(KeyId(1)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().GetVersion(VersionId(1)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, IsEmpty());
  EXPECT_THAT(store().GetAlias("alias/one").status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().GetAlias("alias/uno").status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().ListTags(KeyId(1)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<Page<AliasRecord>> aliases = store().ListAliases(std::nullopt, 100, "");
  ASSERT_THAT(aliases.status(), IsOk());
  EXPECT_THAT(AliasNamesOf(aliases->items), ElementsAre("alias/two"));

  // The other key is untouched.
  EXPECT_THAT(store().GetKey(KeyId(2)).status(), IsOk());
  EXPECT_THAT(store().GetVersion(VersionId(2)).status(), IsOk());
  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(2));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"b", "2"}));

  // Nothing of the old key comes back with a new key of the same id.
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, IsEmpty());
  aliases = store().ListAliases(KeyId(1), 100, "");
  ASSERT_THAT(aliases.status(), IsOk());
  EXPECT_THAT(aliases->items, IsEmpty());
}

TEST_P(KeyStoreConformanceTest, ListVersionsOfUnknownKeyIsEmpty) {
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(9));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, IsEmpty());
}

TEST_P(KeyStoreConformanceTest, StringsAreStoredVerbatim) {
  // Quotes, SQL fragments, non-ASCII: all data, never syntax.
  const std::string odd = "it's \"odd\"; DROP TABLE keys; -- \xc3\xa9\xe2\x82\xac";
  KeyRecord key = NewKey(KeyId(1));
  key.description = odd;
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {{odd, odd}, {"", ""}}), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/" + odd, KeyId(1))), IsOk());

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->description, odd);
  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"", ""}, TagRecord{odd, odd}));
  EXPECT_THAT(store().GetAlias("alias/" + odd).status(), IsOk());
}

// ---- pagination

TEST_P(KeyStoreConformanceTest, ListKeysWalksEveryPageExactlyOnce) {
  // Inserted out of order; listed in key_id order.
  std::vector<std::string> all;
  for (int i = 0; i < 25; ++i) {
    const int n = (i * 7) % 25;
    all.push_back(KeyId(n));
    ASSERT_THAT(store().CreateKey(NewKey(KeyId(n)), std::nullopt, {}), IsOk());
  }
  std::sort(all.begin(), all.end());

  std::vector<std::string> seen;
  std::vector<size_t> page_sizes;
  std::string marker;
  do {
    ASSERT_LT(page_sizes.size(), 10u) << "pagination does not end";
    absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(10, marker);
    ASSERT_THAT(page.status(), IsOk());
    page_sizes.push_back(page->items.size());
    for (const KeyRecord& key : page->items) seen.push_back(key.key_id);
    if (!page->next_marker.empty()) {
      EXPECT_EQ(page->next_marker, page->items.back().key_id);
    }
    marker = page->next_marker;
  } while (!marker.empty());

  EXPECT_THAT(page_sizes, ElementsAre(10, 10, 5));
  EXPECT_EQ(seen, all);  // every key, once, in order
}

TEST_P(KeyStoreConformanceTest, ListKeysFullLastPageHasNoNextMarker) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_THAT(store().CreateKey(NewKey(KeyId(i)), std::nullopt, {}), IsOk());
  }
  absl::StatusOr<Page<KeyRecord>> first = store().ListKeys(10, "");
  ASSERT_THAT(first.status(), IsOk());
  ASSERT_EQ(first->next_marker, KeyId(9));
  absl::StatusOr<Page<KeyRecord>> second = store().ListKeys(10, first->next_marker);
  ASSERT_THAT(second.status(), IsOk());
  EXPECT_THAT(second->items, SizeIs(10));
  EXPECT_EQ(second->next_marker, "");

  absl::StatusOr<Page<KeyRecord>> all = store().ListKeys(1000, "");
  ASSERT_THAT(all.status(), IsOk());
  EXPECT_THAT(all->items, SizeIs(20));
  EXPECT_EQ(all->next_marker, "");

  absl::StatusOr<Page<KeyRecord>> max = store().ListKeys(INT_MAX, "");
  ASSERT_THAT(max.status(), IsOk());
  EXPECT_THAT(max->items, SizeIs(20));
}

TEST_P(KeyStoreConformanceTest, ListKeysMarkerIsExclusiveAndNeedNotExist) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_THAT(store().CreateKey(NewKey(KeyId(i)), std::nullopt, {}), IsOk());
  }
  absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(2, "");
  ASSERT_THAT(page.status(), IsOk());
  ASSERT_EQ(page->next_marker, KeyId(1));
  // The marker's key disappears between pages: listing still resumes after it.
  ASSERT_THAT(store().DeleteKey(KeyId(1)), IsOk());
  page = store().ListKeys(2, page->next_marker);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(page->items), ElementsAre(KeyId(2), KeyId(3)));
}

TEST_P(KeyStoreConformanceTest, ListKeysOfEmptyStoreIsOneEmptyPage) {
  absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  EXPECT_EQ(page->next_marker, "");
}

// ---- deletion schedule

TEST_P(KeyStoreConformanceTest, ListKeysDueForDeletionReturnsOnlyDueKeys) {
  const absl::Time t = kT0 + absl::Hours(24 * 30);
  auto make = [&](int n, KeyState state, std::optional<absl::Time> deletion_time) {
    KeyRecord key = NewKey(KeyId(n));
    key.state = state;
    key.deletion_time = deletion_time;
    return store().CreateKey(key, std::nullopt, {});
  };
  ASSERT_THAT(make(1, KeyState::kPendingDeletion, t), IsOk());
  ASSERT_THAT(make(2, KeyState::kPendingDeletion, t - absl::Hours(1)), IsOk());
  ASSERT_THAT(make(3, KeyState::kPendingDeletion, t + absl::Microseconds(1)), IsOk());
  ASSERT_THAT(make(4, KeyState::kEnabled, std::nullopt), IsOk());
  ASSERT_THAT(make(5, KeyState::kDisabled, std::nullopt), IsOk());
  ASSERT_THAT(make(6, KeyState::kPendingImport, std::nullopt), IsOk());
  // Scheduled, then cancelled: no longer due.
  ASSERT_THAT(make(7, KeyState::kPendingDeletion, t - absl::Hours(2)), IsOk());
  KeyRecord cancelled = NewKey(KeyId(7));
  cancelled.state = KeyState::kDisabled;
  ASSERT_THAT(store().UpdateKey(cancelled), IsOk());

  absl::StatusOr<std::vector<KeyRecord>> due = store().ListKeysDueForDeletion(t);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(*due), UnorderedElementsAre(KeyId(1), KeyId(2)));
  for (const KeyRecord& key : *due) {
    EXPECT_EQ(key.state, KeyState::kPendingDeletion);
    ASSERT_TRUE(key.deletion_time.has_value());
    EXPECT_LE(*key.deletion_time, t);
  }
}

struct DueCase {
  std::string name;
  KeyState state;
  std::optional<absl::Duration> deletion_offset;  // from the query time
  bool due;
};

void PrintTo(const DueCase& c, std::ostream* os) { *os << c.name; }

using KeyStoreDueForDeletionTest = StoreTest<std::tuple<StoreKind, DueCase>>;

TEST_P(KeyStoreDueForDeletionTest, IncludesExactlyTheKeysDueAtT) {
  const DueCase& c = std::get<1>(GetParam());
  const absl::Time t = kT0 + absl::Hours(24 * 30);
  KeyRecord key = NewKey(KeyId(1));
  key.state = c.state;
  if (c.deletion_offset.has_value()) key.deletion_time = t + *c.deletion_offset;
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());

  absl::StatusOr<std::vector<KeyRecord>> due = store().ListKeysDueForDeletion(t);
  ASSERT_THAT(due.status(), IsOk());
  if (c.due) {
    EXPECT_THAT(*due, ElementsAre(key));
  } else {
    EXPECT_THAT(*due, IsEmpty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, KeyStoreDueForDeletionTest,
    ::testing::Combine(
        ::testing::ValuesIn(AllStores()),
        ::testing::Values(
            DueCase{"ExactlyAtT", KeyState::kPendingDeletion, absl::ZeroDuration(), true},
            DueCase{"OneMicrosecondBefore", KeyState::kPendingDeletion, -absl::Microseconds(1),
                    true},
            DueCase{"LongBefore", KeyState::kPendingDeletion, -absl::Hours(24 * 365), true},
            DueCase{"OneMicrosecondAfter", KeyState::kPendingDeletion, absl::Microseconds(1),
                    false},
            DueCase{"LongAfter", KeyState::kPendingDeletion, absl::Hours(24 * 7), false},
            DueCase{"Enabled", KeyState::kEnabled, std::nullopt, false},
            DueCase{"Disabled", KeyState::kDisabled, std::nullopt, false},
            DueCase{"PendingImport", KeyState::kPendingImport, std::nullopt, false})),
    KindAndCaseName<DueCase>);

// ---- times

struct TimeCase {
  std::string name;
  absl::Time time;
};

void PrintTo(const TimeCase& c, std::ostream* os) { *os << c.name; }

using KeyStoreTimeTest = StoreTest<std::tuple<StoreKind, TimeCase>>;

TEST_P(KeyStoreTimeTest, TimesRoundTripExactly) {
  const absl::Time t = std::get<1>(GetParam()).time;

  KeyRecord key = NewKey(KeyId(1));
  key.creation_time = t;
  key.state = KeyState::kPendingDeletion;
  key.deletion_time = t;
  key.current_version_id = VersionId(1);
  KeyVersionRecord version = NewVersion(VersionId(1), KeyId(1));
  version.creation_time = t;
  ASSERT_THAT(store().CreateKey(key, version, {}), IsOk());
  const KeyRecord rotating = WithRotation(NewKey(KeyId(2)), 365, t);
  ASSERT_THAT(store().CreateKey(rotating, std::nullopt, {}), IsOk());
  AliasRecord alias = NewAlias("alias/t", KeyId(1));
  alias.creation_time = t;
  alias.last_updated_time = t;
  ASSERT_THAT(store().CreateAlias(alias), IsOk());
  Intent intent;
  intent.kind = "create_version";
  intent.key_id = KeyId(1);
  intent.version_id = VersionId(1);
  intent.creation_time = t;
  ASSERT_THAT(store().AddIntent(intent).status(), IsOk());

  absl::StatusOr<KeyRecord> got_key = store().GetKey(KeyId(1));
  ASSERT_THAT(got_key.status(), IsOk());
  EXPECT_EQ(*got_key, key);
  absl::StatusOr<KeyVersionRecord> got_version = store().GetVersion(VersionId(1));
  ASSERT_THAT(got_version.status(), IsOk());
  EXPECT_EQ(*got_version, version);
  absl::StatusOr<AliasRecord> got_alias = store().GetAlias("alias/t");
  ASSERT_THAT(got_alias.status(), IsOk());
  EXPECT_EQ(*got_alias, alias);
  absl::StatusOr<std::vector<Intent>> intents = store().ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  ASSERT_THAT(*intents, SizeIs(1));
  EXPECT_EQ((*intents)[0].creation_time, t);

  // The deletion time compares exactly too.
  absl::StatusOr<std::vector<KeyRecord>> due = store().ListKeysDueForDeletion(t);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(*due), ElementsAre(KeyId(1)));
  due = store().ListKeysDueForDeletion(t - absl::Microseconds(1));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, IsEmpty());

  // So does the next rotation time.
  got_key = store().GetKey(KeyId(2));
  ASSERT_THAT(got_key.status(), IsOk());
  EXPECT_EQ(*got_key, rotating);
  due = store().ListKeysDueForRotation(t);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(*due), ElementsAre(KeyId(2)));
  due = store().ListKeysDueForRotation(t - absl::Microseconds(1));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, IsEmpty());

  ASSERT_THAT(store().UpdateAlias("alias/t", KeyId(2), t + absl::Microseconds(1)), IsOk());
  got_alias = store().GetAlias("alias/t");
  ASSERT_THAT(got_alias.status(), IsOk());
  EXPECT_EQ(got_alias->creation_time, t);
  EXPECT_EQ(got_alias->last_updated_time, t + absl::Microseconds(1));

  // So do the expiry of imported material and of import parameters.
  KeyRecord expiring = WithCurrent(NewKey(KeyId(3)), VersionId(3));
  expiring.origin = KeyOrigin::kExternal;
  expiring.expiration_model = ExpirationModel::kExpires;
  expiring.valid_to = t;
  ASSERT_THAT(store().CreateKey(expiring, NewVersion(VersionId(3), KeyId(3)), {}), IsOk());
  got_key = store().GetKey(KeyId(3));
  ASSERT_THAT(got_key.status(), IsOk());
  EXPECT_EQ(*got_key, expiring);
  due = store().ListKeysWithExpiredMaterial(t);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(*due), ElementsAre(KeyId(3)));
  due = store().ListKeysWithExpiredMaterial(t - absl::Microseconds(1));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, IsEmpty());
  ImportParametersRecord parameters;
  parameters.wrapping_key_id = "w";
  parameters.key_id = KeyId(3);
  parameters.creation_time = t;
  parameters.expiration_time = t;
  ASSERT_THAT(store().AddImportParameters(parameters), IsOk());
  absl::StatusOr<ImportParametersRecord> got_parameters = store().GetImportParameters("w");
  ASSERT_THAT(got_parameters.status(), IsOk());
  EXPECT_EQ(*got_parameters, parameters);
  absl::StatusOr<std::vector<ImportParametersRecord>> expired =
      store().ListExpiredImportParameters(t);
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(*expired, ElementsAre(parameters));
  expired = store().ListExpiredImportParameters(t - absl::Microseconds(1));
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(*expired, IsEmpty());

  // And a grant's creation time, through every read path.
  GrantRecord grant = NewGrant(1, KeyId(1));
  grant.creation_time = t;
  ASSERT_THAT(store().AddGrant(grant), IsOk());
  absl::StatusOr<GrantRecord> got_grant = store().GetGrant(GrantId(1));
  ASSERT_THAT(got_grant.status(), IsOk());
  EXPECT_EQ(*got_grant, grant);
  got_grant = store().FindGrantByTokenHash(grant.token_hash);
  ASSERT_THAT(got_grant.status(), IsOk());
  EXPECT_EQ(got_grant->creation_time, t);
  absl::StatusOr<Page<GrantRecord>> grants = store().ListGrants(KeyId(1), {}, 10, "");
  ASSERT_THAT(grants.status(), IsOk());
  EXPECT_THAT(grants->items, ElementsAre(grant));
}

INSTANTIATE_TEST_SUITE_P(
    Stores, KeyStoreTimeTest,
    ::testing::Combine(
        ::testing::ValuesIn(AllStores()),
        ::testing::Values(
            TimeCase{"Epoch", absl::UnixEpoch()},
            TimeCase{"OneMicrosecondBeforeEpoch", absl::FromUnixMicros(-1)},
            TimeCase{"Year1969", absl::FromUnixMicros(-14'182'940'000'001)}, TimeCase{"Now", kT0},
            TimeCase{"Year0001", absl::FromUnixMicros(-62'135'596'800'000'000)},
            TimeCase{"LastMicrosecondOfYear9999", absl::FromUnixMicros(253'402'300'799'999'999)})),
    KindAndCaseName<TimeCase>);

// ======================================================================
// Versions and rotation

TEST_P(KeyStoreConformanceTest, CreateKeyStoresRotationSettings) {
  const KeyRecord rotating =
      WithRotation(WithCurrent(NewKey(KeyId(1)), VersionId(1)), 365, kT0 + absl::Hours(24 * 365));
  // A period kept from an earlier schedule, with rotation off.
  KeyRecord paused = NewKey(KeyId(2));
  paused.rotation_period_days = 90;
  ASSERT_THAT(store().CreateKey(rotating, NewVersion(VersionId(1), KeyId(1)), {}), IsOk());
  ASSERT_THAT(store().CreateKey(paused, std::nullopt, {}), IsOk());

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, rotating);
  got = store().GetKey(KeyId(2));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, paused);
  absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, ElementsAre(rotating, paused));
}

TEST_P(KeyStoreConformanceTest, UpdateKeyRoundTripsRotationSettings) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  struct Step {
    std::string name;
    bool enabled;
    int period_days;
    std::optional<absl::Time> next;
  };
  const std::vector<Step> steps = {
      {"enable", true, 365, kT0 + absl::Hours(24 * 365)},
      {"shorten the period", true, 90, kT0 + absl::Hours(24 * 90)},
      {"disable, keeping the period", false, 90, std::nullopt},
      {"enable again", true, 2560, kT0 + absl::Hours(24 * 2560)},
      {"disable and forget the period", false, 0, std::nullopt},
  };
  KeyRecord want = WithCurrent(NewKey(KeyId(1)), VersionId(1));
  for (const Step& step : steps) {
    SCOPED_TRACE(step.name);
    want.rotation_enabled = step.enabled;
    want.rotation_period_days = step.period_days;
    want.next_rotation_time = step.next;
    ASSERT_THAT(store().UpdateKey(want), IsOk());
    absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(*got, want);
    absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(10, "");
    ASSERT_THAT(page.status(), IsOk());
    EXPECT_THAT(page->items, ElementsAre(want));
  }
}

TEST_P(KeyStoreConformanceTest, AddVersionMakesItCurrentAndMovesTheSchedule) {
  const absl::Duration period = absl::Hours(24 * 30);
  KeyRecord key = WithRotation(WithCurrent(NewKey(KeyId(1)), VersionId(1)), 30, kT0 + period);
  const KeyVersionRecord v1 = NewVersion(VersionId(1), KeyId(1));
  ASSERT_THAT(store().CreateKey(key, v1, {}), IsOk());

  // Scheduled rotation: the new version is current, the next one a period on.
  const KeyVersionRecord v2 =
      NewVersion(VersionId(2), KeyId(1), VersionOrigin::kAutomatic, kT0 + period);
  key.current_version_id = VersionId(2);
  key.next_rotation_time = kT0 + 2 * period;
  ASSERT_THAT(store().AddVersion(v2, key), IsOk());

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
  absl::StatusOr<KeyVersionRecord> got_version = store().GetVersion(VersionId(2));
  ASSERT_THAT(got_version.status(), IsOk());
  EXPECT_EQ(*got_version, v2);
  absl::StatusOr<std::vector<KeyRecord>> due = store().ListKeysDueForRotation(kT0 + period);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, IsEmpty());
  due = store().ListKeysDueForRotation(kT0 + 2 * period);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key));

  // A usage-limit rotation that also turns the schedule off, keeping the
  // period.
  const KeyVersionRecord v3 =
      NewVersion(VersionId(3), KeyId(1), VersionOrigin::kUsageLimit, kT0 + period + absl::Hours(1));
  key.current_version_id = VersionId(3);
  key.rotation_enabled = false;
  key.next_rotation_time = std::nullopt;
  ASSERT_THAT(store().AddVersion(v3, key), IsOk());
  got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
  EXPECT_EQ(got->rotation_period_days, 30);

  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1, v2, v3));
}

TEST_P(KeyStoreConformanceTest, AddVersionsInOneMicrosecondListInInsertionOrder) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  const KeyVersionRecord v2 =
      NewVersion(VersionId(2), KeyId(1), VersionOrigin::kOnDemand, kT0 + absl::Hours(1));
  const KeyVersionRecord v3 =
      NewVersion(VersionId(3), KeyId(1), VersionOrigin::kOnDemand, kT0 + absl::Hours(1));
  KeyRecord key = WithCurrent(NewKey(KeyId(1)), VersionId(2));
  ASSERT_THAT(store().AddVersion(v2, key), IsOk());
  key.current_version_id = VersionId(3);
  ASSERT_THAT(store().AddVersion(v3, key), IsOk());

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1)), v2, v3));

  // Every version goes with the key.
  ASSERT_THAT(store().DeleteKey(KeyId(1)), IsOk());
  for (int v = 1; v <= 3; ++v) {
    EXPECT_THAT(store().GetVersion(VersionId(v)).status(), StatusIs(absl::StatusCode::kNotFound));
  }
}

TEST_P(KeyStoreConformanceTest, AddVersionCompletesAnImport) {
  KeyRecord key = NewKey(KeyId(1));
  key.state = KeyState::kPendingImport;
  key.origin = KeyOrigin::kExternal;
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());

  key.state = KeyState::kEnabled;
  key.current_version_id = VersionId(1);
  ASSERT_THAT(store().AddVersion(NewVersion(VersionId(1), KeyId(1)), key), IsOk());
  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
}

TEST_P(KeyStoreConformanceTest, ListVersionsIsOldestFirstWithOriginsAndReservations) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(9)), IsOk());
  const absl::Duration day = absl::Hours(24);
  // Added in this order; v4 is older than v3 (a clock stepped back), so
  // "oldest first" is not "first added first".
  std::vector<KeyVersionRecord> added = {
      NewVersion(VersionId(2), KeyId(1), VersionOrigin::kAutomatic, kT0 + 1 * day),
      NewVersion(VersionId(3), KeyId(1), VersionOrigin::kOnDemand, kT0 + 3 * day),
      NewVersion(VersionId(4), KeyId(1), VersionOrigin::kUsageLimit, kT0 + 2 * day, 7),
  };
  for (const KeyVersionRecord& version : added) {
    ASSERT_THAT(store().AddVersion(version, WithCurrent(NewKey(KeyId(1)), version.version_id)),
                IsOk());
  }
  ASSERT_THAT(store().ReserveEncryptions(VersionId(1), 1000), IsOk());
  ASSERT_THAT(store().ReserveEncryptions(VersionId(2), int64_t{1} << 32), IsOk());

  KeyVersionRecord v1 = NewVersion(VersionId(1), KeyId(1));
  v1.encryptions_reserved = 1000;
  KeyVersionRecord v2 = added[0];
  v2.encryptions_reserved = int64_t{1} << 32;
  const std::vector<KeyVersionRecord> want = {v1, v2, added[2], added[1]};
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_EQ(*versions, want);
  for (const KeyVersionRecord& version : want) {
    absl::StatusOr<KeyVersionRecord> got = store().GetVersion(version.version_id);
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(*got, version);
  }
  versions = store().ListVersions(KeyId(2));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(9), KeyId(2))));
}

TEST_P(KeyStoreConformanceTest, ReserveEncryptionsRaisesAndNeverLowers) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(store().AddVersion(NewVersion(VersionId(2), KeyId(1)),
                                 WithCurrent(NewKey(KeyId(1)), VersionId(2))),
              IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(3)), IsOk());
  struct Step {
    int64_t reserve;
    int64_t want;
  };
  const std::vector<Step> steps = {
      {10, 10},
      {5, 10},
      {10, 10},
      {0, 10},
      {11, 11},
      {int64_t{1} << 32, int64_t{1} << 32},
      {12, int64_t{1} << 32},
      {INT64_MAX, INT64_MAX},
      {1, INT64_MAX},
  };
  for (const Step& step : steps) {
    SCOPED_TRACE(absl::StrCat("reserve ", step.reserve));
    ASSERT_THAT(store().ReserveEncryptions(VersionId(1), step.reserve), IsOk());
    absl::StatusOr<KeyVersionRecord> got = store().GetVersion(VersionId(1));
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(got->encryptions_reserved, step.want);
  }
  // Other versions, of the same key or another, are untouched.
  for (int v : {2, 3}) {
    absl::StatusOr<KeyVersionRecord> got = store().GetVersion(VersionId(v));
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(got->encryptions_reserved, 0) << VersionId(v);
  }
  EXPECT_THAT(store().ReserveEncryptions(VersionId(9), 1),
              StatusIs(absl::StatusCode::kNotFound, VersionId(9)));
}

TEST_P(KeyStoreConformanceTest, RotationStateSurvivesReopen) {
  if (!persistent()) GTEST_SKIP() << "the store does not outlive its connection";
  KeyRecord key =
      WithRotation(WithCurrent(NewKey(KeyId(1)), VersionId(1)), 7, kT0 + absl::Hours(24 * 7));
  ASSERT_THAT(store().CreateKey(key, NewVersion(VersionId(1), KeyId(1)), {}), IsOk());
  KeyVersionRecord v2 =
      NewVersion(VersionId(2), KeyId(1), VersionOrigin::kAutomatic, kT0 + absl::Hours(24 * 7));
  key.current_version_id = VersionId(2);
  key.next_rotation_time = kT0 + absl::Hours(24 * 14);
  ASSERT_THAT(store().AddVersion(v2, key), IsOk());
  ASSERT_THAT(store().ReserveEncryptions(VersionId(2), 4096), IsOk());
  v2.encryptions_reserved = 4096;

  Reopen();
  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1)), v2));
  absl::StatusOr<std::vector<KeyRecord>> due =
      store().ListKeysDueForRotation(kT0 + absl::Hours(24 * 14));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(key));

  // A reservation after the reopen still never lowers the count.
  ASSERT_THAT(store().ReserveEncryptions(VersionId(2), 100), IsOk());
  absl::StatusOr<KeyVersionRecord> got_version = store().GetVersion(VersionId(2));
  ASSERT_THAT(got_version.status(), IsOk());
  EXPECT_EQ(got_version->encryptions_reserved, 4096);
}

// ---- rotation schedule

TEST_P(KeyStoreConformanceTest, ListKeysDueForRotationIsEarliestFirst) {
  const absl::Time t = kT0 + absl::Hours(24 * 365);
  // Due times out of key-id order.
  const std::vector<KeyRecord> keys = {
      WithRotation(NewKey(KeyId(1)), 30, t - absl::Hours(1)),
      WithRotation(NewKey(KeyId(2)), 30, t - absl::Hours(3)),
      WithRotation(NewKey(KeyId(3)), 30, t - absl::Hours(2)),
      WithRotation(NewKey(KeyId(4)), 30, t),
      WithRotation(NewKey(KeyId(5)), 30, t + absl::Microseconds(1)),
      NewKey(KeyId(6)),
  };
  for (const KeyRecord& key : keys) {
    ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());
  }
  absl::StatusOr<std::vector<KeyRecord>> due = store().ListKeysDueForRotation(t);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(keys[1], keys[2], keys[0], keys[3]));

  // Rotated (schedule moved on) or rotation turned off: no longer due.
  KeyRecord rotated = keys[1];
  rotated.next_rotation_time = t + absl::Hours(24 * 30);
  ASSERT_THAT(store().UpdateKey(rotated), IsOk());
  KeyRecord stopped = keys[2];
  stopped.rotation_enabled = false;
  stopped.next_rotation_time = std::nullopt;
  ASSERT_THAT(store().UpdateKey(stopped), IsOk());
  due = store().ListKeysDueForRotation(t);
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(keys[0], keys[3]));
}

struct RotationDueCase {
  std::string name;
  KeyState state;
  bool rotation_enabled;
  absl::Duration next_rotation_offset;  // from the query time, if enabled
  bool due;
};

void PrintTo(const RotationDueCase& c, std::ostream* os) { *os << c.name; }

using KeyStoreDueForRotationTest = StoreTest<std::tuple<StoreKind, RotationDueCase>>;

TEST_P(KeyStoreDueForRotationTest, IncludesExactlyTheKeysDueAtT) {
  const RotationDueCase& c = std::get<1>(GetParam());
  const absl::Time t = kT0 + absl::Hours(24 * 365);
  KeyRecord key = NewKey(KeyId(1));
  key.state = c.state;
  if (c.state == KeyState::kPendingDeletion) key.deletion_time = t + absl::Hours(24 * 7);
  key.rotation_period_days = 365;
  if (c.rotation_enabled) {
    key.rotation_enabled = true;
    key.next_rotation_time = t + c.next_rotation_offset;
  }
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());

  absl::StatusOr<std::vector<KeyRecord>> due = store().ListKeysDueForRotation(t);
  ASSERT_THAT(due.status(), IsOk());
  if (c.due) {
    EXPECT_THAT(*due, ElementsAre(key));
  } else {
    EXPECT_THAT(*due, IsEmpty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, KeyStoreDueForRotationTest,
    ::testing::Combine(
        ::testing::ValuesIn(AllStores()),
        ::testing::Values(
            RotationDueCase{"ExactlyAtT", KeyState::kEnabled, true, absl::ZeroDuration(), true},
            RotationDueCase{"OneMicrosecondBefore", KeyState::kEnabled, true,
                            -absl::Microseconds(1), true},
            RotationDueCase{"LongBefore", KeyState::kEnabled, true, -absl::Hours(24 * 365), true},
            RotationDueCase{"OneMicrosecondAfter", KeyState::kEnabled, true, absl::Microseconds(1),
                            false},
            RotationDueCase{"LongAfter", KeyState::kEnabled, true, absl::Hours(24 * 30), false},
            RotationDueCase{"RotationDisabled", KeyState::kEnabled, false, absl::ZeroDuration(),
                            false},
            RotationDueCase{"KeyDisabled", KeyState::kDisabled, true, -absl::Hours(1), false},
            RotationDueCase{"KeyPendingDeletion", KeyState::kPendingDeletion, true, -absl::Hours(1),
                            false},
            RotationDueCase{"KeyPendingImport", KeyState::kPendingImport, true, -absl::Hours(1),
                            false})),
    KindAndCaseName<RotationDueCase>);

// ---- AddVersion that fails changes nothing

struct AddVersionFailureCase {
  std::string name;
  KeyVersionRecord version;
  KeyRecord key;
  absl::StatusCode code;
  std::string message_has;
};

void PrintTo(const AddVersionFailureCase& c, std::ostream* os) { *os << c.name; }

// Key 1: current version 1, rotating every 30 days. Key 2: current version 2.
KeyRecord RotatingKey1() {
  return WithRotation(WithCurrent(NewKey(KeyId(1)), VersionId(1)), 30, kT0 + absl::Hours(24 * 30));
}
KeyRecord Key2() { return WithCurrent(NewKey(KeyId(2)), VersionId(2)); }

// What a rotation of `key_id` to `current` would write: every mutable field
// differs from key 1's, so a partial write would show.
KeyRecord RotatedKey(const std::string& key_id, const std::string& current) {
  KeyRecord key =
      WithRotation(WithCurrent(NewKey(key_id), current), 60, kT0 + absl::Hours(24 * 60));
  key.description = "rotated";
  key.state = KeyState::kDisabled;
  return key;
}

using KeyStoreAddVersionFailureTest = StoreTest<std::tuple<StoreKind, AddVersionFailureCase>>;

TEST_P(KeyStoreAddVersionFailureTest, ChangesNothing) {
  ASSERT_THAT(store().CreateKey(RotatingKey1(), NewVersion(VersionId(1), KeyId(1)), {}), IsOk());
  ASSERT_THAT(store().CreateKey(Key2(), NewVersion(VersionId(2), KeyId(2)), {}), IsOk());

  const AddVersionFailureCase& c = std::get<1>(GetParam());
  EXPECT_THAT(store().AddVersion(c.version, c.key), StatusIs(c.code, c.message_has));

  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, RotatingKey1());
  key = store().GetKey(KeyId(2));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, Key2());
  EXPECT_THAT(store().GetKey(KeyId(9)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1))));
  versions = store().ListVersions(KeyId(2));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(2), KeyId(2))));
  versions = store().ListVersions(KeyId(9));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, IsEmpty());
  EXPECT_THAT(store().GetVersion(VersionId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<KeyRecord>> due =
      store().ListKeysDueForRotation(kT0 + absl::Hours(24 * 30));
  ASSERT_THAT(due.status(), IsOk());
  EXPECT_THAT(*due, ElementsAre(RotatingKey1()));

  // Nothing left behind blocks a correct retry.
  ASSERT_THAT(
      store().AddVersion(NewVersion(VersionId(3), KeyId(1)), RotatedKey(KeyId(1), VersionId(3))),
      IsOk());
}

std::vector<AddVersionFailureCase> AddVersionFailureCases() {
  using absl::StatusCode;
  const KeyVersionRecord v3 = NewVersion(VersionId(3), KeyId(1), VersionOrigin::kAutomatic, kT0);
  return {
      {"VersionIdTakenBySameKey", NewVersion(VersionId(1), KeyId(1)),
       RotatedKey(KeyId(1), VersionId(1)), StatusCode::kAlreadyExists, VersionId(1)},
      {"VersionIdTakenByAnotherKey", NewVersion(VersionId(2), KeyId(1)),
       RotatedKey(KeyId(1), VersionId(2)), StatusCode::kAlreadyExists, VersionId(2)},
      {"VersionOfAnotherKey", NewVersion(VersionId(3), KeyId(2)),
       RotatedKey(KeyId(1), VersionId(3)), StatusCode::kInvalidArgument, KeyId(2)},
      {"UnknownKey", NewVersion(VersionId(3), KeyId(9)), RotatedKey(KeyId(9), VersionId(3)),
       StatusCode::kNotFound, KeyId(9)},
      // These fail after the version is in: the insert must roll back.
      {"CurrentVersionOfAnotherKey", v3, RotatedKey(KeyId(1), VersionId(2)), StatusCode::kNotFound,
       VersionId(2)},
      {"CurrentVersionMissing", v3, RotatedKey(KeyId(1), VersionId(8)), StatusCode::kNotFound,
       VersionId(8)},
  };
}

INSTANTIATE_TEST_SUITE_P(Stores, KeyStoreAddVersionFailureTest,
                         ::testing::Combine(::testing::ValuesIn(AllStores()),
                                            ::testing::ValuesIn(AddVersionFailureCases())),
                         KindAndCaseName<AddVersionFailureCase>);

// ---- key records that contradict themselves

std::string WrappingKeyId(int n) {
  return absl::StrCat(absl::Dec(n, absl::kZeroPad8), "-2222-4000-8000-00000000000c");
}

// Import parameters `wrapping_key_id` for `key_id`, issued at `created` and
// valid for a day.
ImportParametersRecord NewImportParameters(const std::string& wrapping_key_id,
                                           const std::string& key_id, absl::Time created = kT0) {
  ImportParametersRecord record;
  record.wrapping_key_id = wrapping_key_id;
  record.key_id = key_id;
  record.wrapping_algorithm = "RSAES_OAEP_SHA_256";
  record.wrapping_key_spec = "RSA_2048";
  record.creation_time = created;
  record.expiration_time = created + absl::Hours(24);
  return record;
}

// A method that writes a key record: CreateKey (key 3 with version 3),
// UpdateKey (key 1), AddVersion (version 3 to key 1), CommitImport (version
// 3 to key 1, consuming import parameters 1) or MarkMaterialDeleted (key 1).
enum class KeyWriter { kCreateKey, kUpdateKey, kAddVersion, kCommitImport, kMarkMaterialDeleted };

absl::Status WriteKey(KeyStore& store, KeyWriter writer, const KeyRecord& key,
                      const KeyVersionRecord& version) {
  switch (writer) {
    case KeyWriter::kCreateKey:
      return store.CreateKey(key, version, {});
    case KeyWriter::kUpdateKey:
      return store.UpdateKey(key);
    case KeyWriter::kAddVersion:
      return store.AddVersion(version, key);
    case KeyWriter::kCommitImport: {
      ImportCommit commit;
      commit.key = key;
      commit.new_version = version;
      commit.consumed_wrapping_key_id = WrappingKeyId(1);
      return store.CommitImport(commit);
    }
    case KeyWriter::kMarkMaterialDeleted:
      return store.MarkMaterialDeleted(key);
  }
  return absl::InternalError("unknown writer");
}
absl::Status WriteKey(KeyStore& store, KeyWriter writer, const KeyRecord& key) {
  return WriteKey(store, writer, key, NewVersion(key.current_version_id, key.key_id));
}

KeyRecord KeyFor(KeyWriter writer) {
  switch (writer) {
    case KeyWriter::kCreateKey:
      return WithCurrent(NewKey(KeyId(3)), VersionId(3));
    case KeyWriter::kUpdateKey:
    case KeyWriter::kMarkMaterialDeleted:
      return WithCurrent(NewKey(KeyId(1)), VersionId(1));
    case KeyWriter::kAddVersion:
    case KeyWriter::kCommitImport:
      return WithCurrent(NewKey(KeyId(1)), VersionId(3));
  }
  return KeyRecord();
}

struct InvalidKeyCase {
  std::string name;
  KeyWriter writer;
  std::function<void(KeyRecord&)> spoil;
  std::string message_has;  // the rule's field or the offending value
};

void PrintTo(const InvalidKeyCase& c, std::ostream* os) { *os << c.name; }

using KeyStoreInvalidKeyTest = StoreTest<std::tuple<StoreKind, InvalidKeyCase>>;

TEST_P(KeyStoreInvalidKeyTest, IsRefusedAndChangesNothing) {
  const KeyRecord key1 = WithCurrent(NewKey(KeyId(1)), VersionId(1));
  ASSERT_THAT(store().CreateKey(key1, NewVersion(VersionId(1), KeyId(1)), {}), IsOk());
  const ImportParametersRecord parameters = NewImportParameters(WrappingKeyId(1), KeyId(1));
  ASSERT_THAT(store().AddImportParameters(parameters), IsOk());

  const InvalidKeyCase& c = std::get<1>(GetParam());
  KeyRecord key = KeyFor(c.writer);
  c.spoil(key);
  EXPECT_THAT(WriteKey(store(), c.writer, key),
              StatusIs(absl::StatusCode::kInvalidArgument, c.message_has));

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key1);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1))));
  EXPECT_THAT(store().GetKey(KeyId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().GetVersion(VersionId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<ImportParametersRecord> got_parameters =
      store().GetImportParameters(WrappingKeyId(1));
  ASSERT_THAT(got_parameters.status(), IsOk());
  EXPECT_EQ(*got_parameters, parameters);
}

// Every rule, through every method that writes a key record.
std::vector<InvalidKeyCase> InvalidKeyCases() {
  struct Spoiler {
    std::string name;
    std::function<void(KeyRecord&)> spoil;
    std::string message_has;
  };
  const std::vector<Spoiler> spoilers = {
      {"RotationEnabledWithoutNextTime",
       [](KeyRecord& k) {
         k.rotation_enabled = true;
         k.rotation_period_days = 365;
       },
       "next_rotation_time"},
      {"NextTimeWithRotationDisabled",
       [](KeyRecord& k) {
         k.rotation_period_days = 365;
         k.next_rotation_time = kT0;
       },
       "next_rotation_time"},
      {"PeriodNegative", [](KeyRecord& k) { k.rotation_period_days = -1; }, "-1"},
      {"PeriodAboveMaximum", [](KeyRecord& k) { k = WithRotation(k, 36501, kT0 + absl::Hours(1)); },
       "36501"},
      {"PeriodIntMin", [](KeyRecord& k) { k.rotation_period_days = INT_MIN; },
       absl::StrCat(INT_MIN)},
      {"DeletionTimeOutsidePendingDeletion", [](KeyRecord& k) { k.deletion_time = kT0; },
       "deletion_time"},
      {"PendingDeletionWithoutDeletionTime",
       [](KeyRecord& k) { k.state = KeyState::kPendingDeletion; }, "deletion_time"},
      {"ExpiresWithoutValidTo",
       [](KeyRecord& k) { k.expiration_model = ExpirationModel::kExpires; }, "valid_to"},
      {"ValidToWithDoesNotExpire",
       [](KeyRecord& k) {
         k.expiration_model = ExpirationModel::kDoesNotExpire;
         k.valid_to = kT0 + absl::Hours(1);
       },
       "valid_to"},
      {"ValidToWithoutExpirationModel", [](KeyRecord& k) { k.valid_to = kT0 + absl::Hours(1); },
       "valid_to"},
      {"PolicyOneByteOverTheLimit", [](KeyRecord& k) { k.policy = std::string(32769, 'p'); },
       "32769"},
      // The limit is in bytes: 16385 two-byte characters are 32770 bytes.
      {"PolicyOfMultiByteCharactersOverTheLimit",
       [](KeyRecord& k) {
         k.policy.clear();
         for (int i = 0; i < 16385; ++i) k.policy += "\xc3\xa9";
       },
       "32770"},
  };
  const std::vector<std::pair<std::string, KeyWriter>> writers = {
      {"CreateKey", KeyWriter::kCreateKey},
      {"UpdateKey", KeyWriter::kUpdateKey},
      {"AddVersion", KeyWriter::kAddVersion},
      {"CommitImport", KeyWriter::kCommitImport},
      {"MarkMaterialDeleted", KeyWriter::kMarkMaterialDeleted}};
  std::vector<InvalidKeyCase> cases;
  for (const auto& [writer_name, writer] : writers) {
    for (const Spoiler& spoiler : spoilers) {
      cases.push_back(
          {absl::StrCat(writer_name, spoiler.name), writer, spoiler.spoil, spoiler.message_has});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Stores, KeyStoreInvalidKeyTest,
                         ::testing::Combine(::testing::ValuesIn(AllStores()),
                                            ::testing::ValuesIn(InvalidKeyCases())),
                         KindAndCaseName<InvalidKeyCase>);

TEST_P(KeyStoreConformanceTest, RotationPeriodBoundsAreAccepted) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  int next_version = 2;
  for (const int period : {0, 1, 36500}) {
    for (const bool enabled : {false, true}) {
      SCOPED_TRACE(absl::StrCat("period ", period, enabled ? ", enabled" : ", disabled"));
      KeyRecord key = WithCurrent(NewKey(KeyId(1)), VersionId(1));
      key.rotation_period_days = period;
      if (enabled) key = WithRotation(key, period, kT0 + absl::Hours(24) * period);
      ASSERT_THAT(store().UpdateKey(key), IsOk());

      key.current_version_id = VersionId(next_version++);
      ASSERT_THAT(store().AddVersion(NewVersion(key.current_version_id, KeyId(1)), key), IsOk());
      absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
      ASSERT_THAT(got.status(), IsOk());
      EXPECT_EQ(*got, key);

      KeyRecord created = key;
      created.key_id = KeyId(100 + next_version);
      created.current_version_id = VersionId(100 + next_version);
      ASSERT_THAT(
          store().CreateKey(created, NewVersion(created.current_version_id, created.key_id), {}),
          IsOk());
      got = store().GetKey(created.key_id);
      ASSERT_THAT(got.status(), IsOk());
      EXPECT_EQ(*got, created);
    }
  }
}

// ---- version records that break the rules

struct InvalidVersionCase {
  std::string name;
  KeyWriter writer;  // kCreateKey, kAddVersion or kCommitImport
  std::function<void(KeyVersionRecord&)> spoil;
  std::string message_has;
};

void PrintTo(const InvalidVersionCase& c, std::ostream* os) { *os << c.name; }

using KeyStoreInvalidVersionTest = StoreTest<std::tuple<StoreKind, InvalidVersionCase>>;

TEST_P(KeyStoreInvalidVersionTest, IsRefusedAndChangesNothing) {
  const KeyRecord key1 = WithCurrent(NewKey(KeyId(1)), VersionId(1));
  ASSERT_THAT(store().CreateKey(key1, NewVersion(VersionId(1), KeyId(1)), {}), IsOk());
  const ImportParametersRecord parameters = NewImportParameters(WrappingKeyId(1), KeyId(1));
  ASSERT_THAT(store().AddImportParameters(parameters), IsOk());

  const InvalidVersionCase& c = std::get<1>(GetParam());
  const KeyRecord key = KeyFor(c.writer);
  KeyVersionRecord version = NewVersion(key.current_version_id, key.key_id);
  c.spoil(version);
  EXPECT_THAT(WriteKey(store(), c.writer, key, version),
              StatusIs(absl::StatusCode::kInvalidArgument, c.message_has));

  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key1);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1))));
  EXPECT_THAT(store().GetKey(KeyId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().GetVersion(VersionId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().GetImportParameters(WrappingKeyId(1)).status(), IsOk());
}

std::vector<InvalidVersionCase> InvalidVersionCases() {
  struct Spoiler {
    std::string name;
    std::function<void(KeyVersionRecord&)> spoil;
    std::string message_has;
  };
  const std::vector<Spoiler> spoilers = {
      {"KeyCheckValueOfOneByte", [](KeyVersionRecord& v) { v.key_check_value = "k"; },
       "key_check_value"},
      {"KeyCheckValueOfTwoBytes",
       [](KeyVersionRecord& v) { v.key_check_value = std::string("\0k", 2); }, "key_check_value"},
      {"KeyCheckValueOfFourBytes", [](KeyVersionRecord& v) { v.key_check_value = "kcv4"; },
       "key_check_value"},
      {"FingerprintOfFifteenBytes",
       [](KeyVersionRecord& v) { v.fingerprint = std::string(15, '\xf1'); }, "fingerprint"},
      {"FingerprintOfSeventeenBytes",
       [](KeyVersionRecord& v) { v.fingerprint = std::string(17, '\0'); }, "fingerprint"},
      {"FingerprintOfThreeBytes", [](KeyVersionRecord& v) { v.fingerprint = "abc"; },
       "fingerprint"},
  };
  const std::vector<std::pair<std::string, KeyWriter>> writers = {
      {"CreateKey", KeyWriter::kCreateKey},
      {"AddVersion", KeyWriter::kAddVersion},
      {"CommitImport", KeyWriter::kCommitImport}};
  std::vector<InvalidVersionCase> cases;
  for (const auto& [writer_name, writer] : writers) {
    for (const Spoiler& spoiler : spoilers) {
      cases.push_back(
          {absl::StrCat(writer_name, spoiler.name), writer, spoiler.spoil, spoiler.message_has});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Stores, KeyStoreInvalidVersionTest,
                         ::testing::Combine(::testing::ValuesIn(AllStores()),
                                            ::testing::ValuesIn(InvalidVersionCases())),
                         KindAndCaseName<InvalidVersionCase>);

// ======================================================================
// Imported material

// Raw bytes, NUL and high bytes included: stored verbatim, never as text.
std::string KeyCheckValue(int n) { return std::string("\0\xff", 2) + static_cast<char>(n); }
std::string Fingerprint(int n) {
  std::string fingerprint(16, '\xa5');
  fingerprint[0] = '\0';
  fingerprint[15] = static_cast<char>(n);
  return fingerprint;
}

// An imported version: with its check value and fingerprint number `n`.
KeyVersionRecord ImportedVersion(const std::string& version_id, const std::string& key_id,
                                 int n) {
  KeyVersionRecord version = NewVersion(version_id, key_id);
  version.key_check_value = KeyCheckValue(n);
  version.fingerprint = Fingerprint(n);
  return version;
}

// An EXTERNAL key waiting for its first material.
KeyRecord ExternalKey(const std::string& key_id) {
  KeyRecord key = NewKey(key_id);
  key.origin = KeyOrigin::kExternal;
  key.state = KeyState::kPendingImport;
  return key;
}

// `key` enabled on imported material that expires at `valid_to`.
KeyRecord Imported(KeyRecord key, const std::string& current, absl::Time valid_to) {
  key.state = KeyState::kEnabled;
  key.current_version_id = current;
  key.expiration_model = ExpirationModel::kExpires;
  key.valid_to = valid_to;
  return key;
}

TEST_P(KeyStoreConformanceTest, ImportedFieldsRoundTripThroughEveryReadPath) {
  const absl::Time valid_to = kT0 + absl::Hours(24 * 30);
  const KeyRecord expiring = Imported(ExternalKey(KeyId(1)), VersionId(1), valid_to);
  KeyVersionRecord v1 = ImportedVersion(VersionId(1), KeyId(1), 1);
  v1.encryptions_reserved = 7;
  ASSERT_THAT(store().CreateKey(expiring, v1, {}), IsOk());
  KeyRecord doomed = WithCurrent(ExternalKey(KeyId(2)), VersionId(2));
  doomed.state = KeyState::kPendingDeletion;
  doomed.deletion_time = kT0 + absl::Hours(24 * 7);
  doomed.expiration_model = ExpirationModel::kDoesNotExpire;
  KeyVersionRecord v2 = ImportedVersion(VersionId(2), KeyId(2), 2);
  v2.material_deleted = true;
  ASSERT_THAT(store().CreateKey(doomed, v2, {}), IsOk());
  KeyRecord rotating = WithRotation(WithCurrent(NewKey(KeyId(3)), VersionId(3)), 90, kT0);
  ASSERT_THAT(store().CreateKey(rotating, NewVersion(VersionId(3), KeyId(3)), {}), IsOk());

  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, expiring);
  key = store().GetKey(KeyId(2));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, doomed);
  absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, ElementsAre(expiring, doomed, rotating));
  absl::StatusOr<std::vector<KeyRecord>> keys = store().ListKeysWithExpiredMaterial(valid_to);
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(*keys, ElementsAre(expiring));
  keys = store().ListKeysDueForDeletion(*doomed.deletion_time);
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(*keys, ElementsAre(doomed));
  keys = store().ListKeysDueForRotation(kT0);
  ASSERT_THAT(keys.status(), IsOk());
  EXPECT_THAT(*keys, ElementsAre(rotating));

  absl::StatusOr<KeyVersionRecord> version = store().GetVersion(VersionId(1));
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_EQ(*version, v1);
  version = store().GetVersion(VersionId(2));
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_EQ(*version, v2);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(2));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v2));
  versions = store().FindVersionsByFingerprint(Fingerprint(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1));

  // UpdateKey and AddVersion carry the new fields too.
  KeyRecord updated = expiring;
  updated.expiration_model = ExpirationModel::kDoesNotExpire;
  updated.valid_to = std::nullopt;
  ASSERT_THAT(store().UpdateKey(updated), IsOk());
  key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, updated);
  KeyRecord readded = WithCurrent(expiring, VersionId(4));
  readded.valid_to = valid_to + absl::Microseconds(1);
  KeyVersionRecord v4 = ImportedVersion(VersionId(4), KeyId(1), 4);
  v4.origin = VersionOrigin::kOnDemand;
  v4.creation_time = kT0 + absl::Hours(1);
  ASSERT_THAT(store().AddVersion(v4, readded), IsOk());
  key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, readded);
  versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1, v4));

  if (!persistent()) return;
  Reopen();
  page = store().ListKeys(10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, ElementsAre(readded, doomed, rotating));
  versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1, v4));
  version = store().GetVersion(VersionId(2));
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_EQ(*version, v2);
}

TEST_P(KeyStoreConformanceTest, FindVersionsByFingerprintSearchesEveryKey) {
  // Fingerprint 1 is on versions 5 (key 1, written first), 2 (key 2, material
  // deleted) and 7 (key 3); fingerprint 2 on version 6 only. Version 1 was
  // generated: no fingerprint.
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  const KeyVersionRecord v5 = ImportedVersion(VersionId(5), KeyId(1), 1);
  ASSERT_THAT(store().AddVersion(v5, WithCurrent(NewKey(KeyId(1)), VersionId(5))), IsOk());
  KeyVersionRecord v2 = ImportedVersion(VersionId(2), KeyId(2), 1);
  v2.material_deleted = true;
  ASSERT_THAT(store().CreateKey(WithCurrent(ExternalKey(KeyId(2)), VersionId(2)), v2, {}), IsOk());
  const KeyVersionRecord v6 = ImportedVersion(VersionId(6), KeyId(2), 2);
  ASSERT_THAT(store().AddVersion(v6, WithCurrent(ExternalKey(KeyId(2)), VersionId(6))), IsOk());
  const KeyVersionRecord v7 = ImportedVersion(VersionId(7), KeyId(3), 1);
  ASSERT_THAT(store().CreateKey(WithCurrent(ExternalKey(KeyId(3)), VersionId(7)), v7, {}), IsOk());

  absl::StatusOr<std::vector<KeyVersionRecord>> found =
      store().FindVersionsByFingerprint(Fingerprint(1));
  ASSERT_THAT(found.status(), IsOk());
  EXPECT_THAT(*found, ElementsAre(v2, v5, v7));
  found = store().FindVersionsByFingerprint(Fingerprint(2));
  ASSERT_THAT(found.status(), IsOk());
  EXPECT_THAT(*found, ElementsAre(v6));
  found = store().FindVersionsByFingerprint(Fingerprint(3));
  ASSERT_THAT(found.status(), IsOk());
  EXPECT_THAT(*found, IsEmpty());
  // A prefix is not a match.
  found = store().FindVersionsByFingerprint(Fingerprint(1).substr(0, 15));
  ASSERT_THAT(found.status(), IsOk());
  EXPECT_THAT(*found, IsEmpty());
  // The empty fingerprint of generated material is not searchable.
  EXPECT_THAT(store().FindVersionsByFingerprint("").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "fingerprint"));
}

TEST_P(KeyStoreConformanceTest, ListKeysWithExpiredMaterialIsEarliestFirst) {
  const absl::Time t = kT0 + absl::Hours(24 * 30);
  // Written out of order: key 4 expires last, keys 2 and 3 tie.
  const struct {
    int n;
    absl::Time valid_to;
  } keys[] = {{4, t}, {3, t - absl::Hours(2)}, {5, t + absl::Microseconds(1)},
              {2, t - absl::Hours(2)}, {1, t - absl::Hours(1)}};
  for (const auto& k : keys) {
    ASSERT_THAT(store().CreateKey(Imported(ExternalKey(KeyId(k.n)), VersionId(k.n), k.valid_to),
                                  ImportedVersion(VersionId(k.n), KeyId(k.n), k.n), {}),
                IsOk());
  }
  absl::StatusOr<std::vector<KeyRecord>> expired = store().ListKeysWithExpiredMaterial(t);
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(*expired), ElementsAre(KeyId(2), KeyId(3), KeyId(1), KeyId(4)));
  for (const KeyRecord& key : *expired) {
    EXPECT_EQ(key, Imported(ExternalKey(key.key_id), key.current_version_id, *key.valid_to));
  }

  // Once their material is deleted, keys 2 and 4 are done with.
  for (int n : {2, 4}) {
    KeyRecord key = WithCurrent(ExternalKey(KeyId(n)), VersionId(n));
    key.expiration_model = ExpirationModel::kExpires;
    key.valid_to = t;
    ASSERT_THAT(store().MarkMaterialDeleted(key), IsOk());
  }
  expired = store().ListKeysWithExpiredMaterial(t);
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(*expired), ElementsAre(KeyId(3), KeyId(1)));
  expired = store().ListKeysWithExpiredMaterial(absl::InfiniteFuture());
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(KeyIdsOf(*expired), ElementsAre(KeyId(3), KeyId(1), KeyId(5)));
  expired = store().ListKeysWithExpiredMaterial(absl::InfinitePast());
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(*expired, IsEmpty());
}

struct ExpiredMaterialCase {
  std::string name;
  ExpirationModel model;
  std::optional<absl::Duration> valid_to_offset;  // from the query time
  // The key's versions, by material_deleted (none: the key has no material).
  std::vector<bool> versions_deleted;
  bool listed;
};

void PrintTo(const ExpiredMaterialCase& c, std::ostream* os) { *os << c.name; }

using KeyStoreExpiredMaterialTest = StoreTest<std::tuple<StoreKind, ExpiredMaterialCase>>;

TEST_P(KeyStoreExpiredMaterialTest, IncludesExactlyTheKeysExpiredAtT) {
  const ExpiredMaterialCase& c = std::get<1>(GetParam());
  const absl::Time t = kT0 + absl::Hours(24 * 30);
  KeyRecord key = ExternalKey(KeyId(1));
  key.expiration_model = c.model;
  if (c.valid_to_offset.has_value()) key.valid_to = t + *c.valid_to_offset;
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());
  for (size_t i = 0; i < c.versions_deleted.size(); ++i) {
    KeyVersionRecord version = ImportedVersion(VersionId(static_cast<int>(i) + 1), KeyId(1), 1);
    version.material_deleted = c.versions_deleted[i];
    key.current_version_id = version.version_id;
    ASSERT_THAT(store().AddVersion(version, key), IsOk());
  }

  absl::StatusOr<std::vector<KeyRecord>> expired = store().ListKeysWithExpiredMaterial(t);
  ASSERT_THAT(expired.status(), IsOk());
  if (c.listed) {
    EXPECT_THAT(*expired, ElementsAre(key));
  } else {
    EXPECT_THAT(*expired, IsEmpty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, KeyStoreExpiredMaterialTest,
    ::testing::Combine(
        ::testing::ValuesIn(AllStores()),
        ::testing::Values(
            ExpiredMaterialCase{"ExactlyAtT", ExpirationModel::kExpires, absl::ZeroDuration(),
                                {false}, true},
            ExpiredMaterialCase{"OneMicrosecondBefore", ExpirationModel::kExpires,
                                -absl::Microseconds(1), {false}, true},
            ExpiredMaterialCase{"OneMicrosecondAfter", ExpirationModel::kExpires,
                                absl::Microseconds(1), {false}, false},
            ExpiredMaterialCase{"DoesNotExpire", ExpirationModel::kDoesNotExpire, std::nullopt,
                                {false}, false},
            ExpiredMaterialCase{"NoExpirationModel", ExpirationModel::kNone, std::nullopt,
                                {false}, false},
            ExpiredMaterialCase{"NoVersions", ExpirationModel::kExpires, -absl::Hours(1), {},
                                false},
            ExpiredMaterialCase{"EveryVersionDeleted", ExpirationModel::kExpires,
                                -absl::Hours(1), {true, true}, false},
            ExpiredMaterialCase{"OneVersionLeft", ExpirationModel::kExpires, -absl::Hours(1),
                                {true, false, true}, true})),
    KindAndCaseName<ExpiredMaterialCase>);

// ---- CommitImport

TEST_P(KeyStoreConformanceTest, CommitImportOfFirstMaterialAddsTheVersion) {
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(1)), std::nullopt, {}), IsOk());
  const ImportParametersRecord used = NewImportParameters(WrappingKeyId(1), KeyId(1));
  const ImportParametersRecord other =
      NewImportParameters(WrappingKeyId(2), KeyId(1), kT0 + absl::Minutes(1));
  ASSERT_THAT(store().AddImportParameters(used), IsOk());
  ASSERT_THAT(store().AddImportParameters(other), IsOk());

  ImportCommit commit;
  commit.key = Imported(ExternalKey(KeyId(1)), VersionId(1), kT0 + absl::Hours(24 * 365));
  commit.new_version = ImportedVersion(VersionId(1), KeyId(1), 1);
  commit.consumed_wrapping_key_id = WrappingKeyId(1);
  ASSERT_THAT(store().CommitImport(commit), IsOk());

  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, commit.key);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(*commit.new_version));
  // The token is single-use; the key's other one stays.
  EXPECT_THAT(store().GetImportParameters(WrappingKeyId(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<ImportParametersRecord>> parameters =
      store().ListImportParameters(KeyId(1));
  ASSERT_THAT(parameters.status(), IsOk());
  EXPECT_THAT(*parameters, ElementsAre(other));
}

TEST_P(KeyStoreConformanceTest, CommitImportRestoresDeletedMaterial) {
  // Key 1 with versions 1 and 2, both deleted; key 2 with version 3, deleted.
  KeyRecord key1 = Imported(ExternalKey(KeyId(1)), VersionId(1), kT0 + absl::Hours(1));
  ASSERT_THAT(store().CreateKey(key1, ImportedVersion(VersionId(1), KeyId(1), 1), {}), IsOk());
  ASSERT_THAT(store().AddVersion(ImportedVersion(VersionId(2), KeyId(1), 2),
                                 WithCurrent(key1, VersionId(2))),
              IsOk());
  const KeyRecord key2 = Imported(ExternalKey(KeyId(2)), VersionId(3), kT0 + absl::Hours(1));
  ASSERT_THAT(store().CreateKey(key2, ImportedVersion(VersionId(3), KeyId(2), 3), {}), IsOk());
  KeyRecord pending1 = WithCurrent(ExternalKey(KeyId(1)), VersionId(2));
  ASSERT_THAT(store().MarkMaterialDeleted(pending1), IsOk());
  KeyRecord pending2 = WithCurrent(ExternalKey(KeyId(2)), VersionId(3));
  ASSERT_THAT(store().MarkMaterialDeleted(pending2), IsOk());
  ASSERT_THAT(store().AddImportParameters(NewImportParameters(WrappingKeyId(1), KeyId(1))),
              IsOk());

  // Version 1's material comes back and becomes current again.
  ImportCommit commit;
  commit.key = Imported(ExternalKey(KeyId(1)), VersionId(1), kT0 + absl::Hours(48));
  commit.restored_version_id = VersionId(1);
  commit.consumed_wrapping_key_id = WrappingKeyId(1);
  ASSERT_THAT(store().CommitImport(commit), IsOk());

  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, commit.key);
  KeyVersionRecord v2 = ImportedVersion(VersionId(2), KeyId(1), 2);
  v2.material_deleted = true;
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(ImportedVersion(VersionId(1), KeyId(1), 1), v2));
  // The other key is untouched.
  key = store().GetKey(KeyId(2));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, pending2);
  KeyVersionRecord v3 = ImportedVersion(VersionId(3), KeyId(2), 3);
  v3.material_deleted = true;
  absl::StatusOr<KeyVersionRecord> version = store().GetVersion(VersionId(3));
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_EQ(*version, v3);
  EXPECT_THAT(store().GetImportParameters(WrappingKeyId(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(KeyStoreConformanceTest, CommitImportOfPresentMaterialOnlyUpdatesTheKey) {
  const KeyRecord key1 = Imported(ExternalKey(KeyId(1)), VersionId(1), kT0 + absl::Hours(1));
  const KeyVersionRecord v1 = ImportedVersion(VersionId(1), KeyId(1), 1);
  ASSERT_THAT(store().CreateKey(key1, v1, {}), IsOk());
  ASSERT_THAT(store().AddImportParameters(NewImportParameters(WrappingKeyId(1), KeyId(1))),
              IsOk());

  ImportCommit commit;
  commit.key = key1;
  commit.key.expiration_model = ExpirationModel::kDoesNotExpire;
  commit.key.valid_to = std::nullopt;
  commit.consumed_wrapping_key_id = WrappingKeyId(1);
  ASSERT_THAT(store().CommitImport(commit), IsOk());

  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, commit.key);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(v1));
  EXPECT_THAT(store().GetImportParameters(WrappingKeyId(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

struct CommitImportFailureCase {
  std::string name;
  std::function<void(ImportCommit&)> spoil;  // of a valid new-version commit
  absl::StatusCode code;
  std::string message_has;
};

void PrintTo(const CommitImportFailureCase& c, std::ostream* os) { *os << c.name; }

// Key 1: EXTERNAL, pending import, current version 1 whose material is
// deleted. Key 2: enabled, current version 2. Import parameters 1 for key 1
// and 2 for key 2.
KeyRecord PendingKey1() {
  KeyRecord key = WithCurrent(ExternalKey(KeyId(1)), VersionId(1));
  key.expiration_model = ExpirationModel::kExpires;
  key.valid_to = kT0 + absl::Hours(1);
  return key;
}
KeyVersionRecord DeletedVersion1() {
  KeyVersionRecord version = ImportedVersion(VersionId(1), KeyId(1), 1);
  version.material_deleted = true;
  return version;
}

// A commit that would succeed: version 3 for key 1, consuming parameters 1.
ImportCommit GoodCommit() {
  ImportCommit commit;
  commit.key = Imported(ExternalKey(KeyId(1)), VersionId(3), kT0 + absl::Hours(24));
  commit.key.description = "imported";
  commit.new_version = ImportedVersion(VersionId(3), KeyId(1), 3);
  commit.consumed_wrapping_key_id = WrappingKeyId(1);
  return commit;
}

using KeyStoreCommitImportFailureTest = StoreTest<std::tuple<StoreKind, CommitImportFailureCase>>;

TEST_P(KeyStoreCommitImportFailureTest, ChangesNothing) {
  ASSERT_THAT(store().CreateKey(PendingKey1(), DeletedVersion1(), {}), IsOk());
  ASSERT_THAT(store().CreateKey(Key2(), NewVersion(VersionId(2), KeyId(2)), {}), IsOk());
  const ImportParametersRecord parameters1 = NewImportParameters(WrappingKeyId(1), KeyId(1));
  const ImportParametersRecord parameters2 = NewImportParameters(WrappingKeyId(2), KeyId(2));
  ASSERT_THAT(store().AddImportParameters(parameters1), IsOk());
  ASSERT_THAT(store().AddImportParameters(parameters2), IsOk());

  const CommitImportFailureCase& c = std::get<1>(GetParam());
  ImportCommit commit = GoodCommit();
  c.spoil(commit);
  EXPECT_THAT(store().CommitImport(commit), StatusIs(c.code, c.message_has));

  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, PendingKey1());
  key = store().GetKey(KeyId(2));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, Key2());
  EXPECT_THAT(store().GetKey(KeyId(9)).status(), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(DeletedVersion1()));
  versions = store().ListVersions(KeyId(2));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(2), KeyId(2))));
  EXPECT_THAT(store().GetVersion(VersionId(3)).status(), StatusIs(absl::StatusCode::kNotFound));
  // The token was not consumed.
  absl::StatusOr<std::vector<ImportParametersRecord>> parameters =
      store().ListImportParameters("");
  ASSERT_THAT(parameters.status(), IsOk());
  EXPECT_THAT(*parameters, ElementsAre(parameters1, parameters2));

  // Nothing left behind blocks a correct retry.
  ASSERT_THAT(store().CommitImport(GoodCommit()), IsOk());
}

std::vector<CommitImportFailureCase> CommitImportFailureCases() {
  using absl::StatusCode;
  return {
      {"UnknownKey",
       [](ImportCommit& c) {
         c.key.key_id = KeyId(9);
         c.new_version->key_id = KeyId(9);
       },
       StatusCode::kNotFound, KeyId(9)},
      {"UnknownKeyToRestore",
       [](ImportCommit& c) {
         c.key = WithCurrent(ExternalKey(KeyId(9)), "");
         c.new_version.reset();
         c.restored_version_id = VersionId(1);
       },
       StatusCode::kNotFound, KeyId(9)},
      {"NewVersionIdTaken",
       [](ImportCommit& c) {
         c.new_version->version_id = VersionId(2);
         c.key.current_version_id = VersionId(2);
       },
       StatusCode::kAlreadyExists, VersionId(2)},
      {"NewVersionOfAnotherKey", [](ImportCommit& c) { c.new_version->key_id = KeyId(2); },
       StatusCode::kInvalidArgument, KeyId(2)},
      {"NewAndRestoredVersion", [](ImportCommit& c) { c.restored_version_id = VersionId(1); },
       StatusCode::kInvalidArgument, VersionId(1)},
      {"RestoredVersionOfAnotherKey",
       [](ImportCommit& c) {
         c.new_version.reset();
         c.restored_version_id = VersionId(2);
         c.key.current_version_id = VersionId(1);
       },
       StatusCode::kNotFound, VersionId(2)},
      {"RestoredVersionMissing",
       [](ImportCommit& c) {
         c.new_version.reset();
         c.restored_version_id = VersionId(8);
         c.key.current_version_id = VersionId(1);
       },
       StatusCode::kNotFound, VersionId(8)},
      // These fail after the version is in or restored: it must roll back.
      {"CurrentVersionMissing", [](ImportCommit& c) { c.key.current_version_id = VersionId(8); },
       StatusCode::kNotFound, VersionId(8)},
      {"CurrentVersionOfAnotherKey",
       [](ImportCommit& c) { c.key.current_version_id = VersionId(2); }, StatusCode::kNotFound,
       VersionId(2)},
      {"RestoreWithCurrentVersionMissing",
       [](ImportCommit& c) {
         c.new_version.reset();
         c.restored_version_id = VersionId(1);
         c.key.current_version_id = VersionId(8);
       },
       StatusCode::kNotFound, VersionId(8)},
      {"ImportParametersMissing",
       [](ImportCommit& c) { c.consumed_wrapping_key_id = WrappingKeyId(9); },
       StatusCode::kNotFound, WrappingKeyId(9)},
      {"RestoreWithImportParametersMissing",
       [](ImportCommit& c) {
         c.new_version.reset();
         c.restored_version_id = VersionId(1);
         c.key.current_version_id = VersionId(1);
         c.consumed_wrapping_key_id = WrappingKeyId(9);
       },
       StatusCode::kNotFound, WrappingKeyId(9)},
      {"KeyOnlyWithImportParametersMissing",
       [](ImportCommit& c) {
         c.new_version.reset();
         c.key.current_version_id = VersionId(1);
         c.consumed_wrapping_key_id = WrappingKeyId(9);
       },
       StatusCode::kNotFound, WrappingKeyId(9)},
      {"NoImportParametersNamed", [](ImportCommit& c) { c.consumed_wrapping_key_id = ""; },
       StatusCode::kNotFound, "import parameters"},
      {"InvalidKeyRecord", [](ImportCommit& c) { c.key.valid_to = std::nullopt; },
       StatusCode::kInvalidArgument, "valid_to"},
      {"InvalidVersionRecord", [](ImportCommit& c) { c.new_version->fingerprint = "short"; },
       StatusCode::kInvalidArgument, "fingerprint"},
  };
}

INSTANTIATE_TEST_SUITE_P(Stores, KeyStoreCommitImportFailureTest,
                         ::testing::Combine(::testing::ValuesIn(AllStores()),
                                            ::testing::ValuesIn(CommitImportFailureCases())),
                         KindAndCaseName<CommitImportFailureCase>);

// ---- MarkMaterialDeleted

TEST_P(KeyStoreConformanceTest, MarkMaterialDeletedMarksEveryVersionOfTheKeyOnly) {
  const KeyRecord key1 = Imported(ExternalKey(KeyId(1)), VersionId(1), kT0 + absl::Hours(1));
  ASSERT_THAT(store().CreateKey(key1, ImportedVersion(VersionId(1), KeyId(1), 1), {}), IsOk());
  ASSERT_THAT(store().AddVersion(ImportedVersion(VersionId(2), KeyId(1), 2),
                                 WithCurrent(key1, VersionId(2))),
              IsOk());
  const KeyRecord key2 = Imported(ExternalKey(KeyId(2)), VersionId(3), kT0 + absl::Hours(1));
  const KeyVersionRecord v3 = ImportedVersion(VersionId(3), KeyId(2), 3);
  ASSERT_THAT(store().CreateKey(key2, v3, {}), IsOk());

  KeyRecord pending = WithCurrent(ExternalKey(KeyId(1)), VersionId(2));
  pending.expiration_model = ExpirationModel::kExpires;
  pending.valid_to = kT0 + absl::Hours(1);
  ASSERT_THAT(store().MarkMaterialDeleted(pending), IsOk());

  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, pending);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  ASSERT_THAT(*versions, SizeIs(2));
  for (const KeyVersionRecord& version : *versions) EXPECT_TRUE(version.material_deleted);
  // Deleted versions stay findable: a re-import of the same material finds them.
  versions = store().FindVersionsByFingerprint(Fingerprint(2));
  ASSERT_THAT(versions.status(), IsOk());
  ASSERT_THAT(*versions, SizeIs(1));
  EXPECT_TRUE((*versions)[0].material_deleted);
  key = store().GetKey(KeyId(2));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_EQ(*key, key2);
  absl::StatusOr<KeyVersionRecord> version = store().GetVersion(VersionId(3));
  ASSERT_THAT(version.status(), IsOk());
  EXPECT_EQ(*version, v3);

  // Again is harmless; a key without versions works too.
  ASSERT_THAT(store().MarkMaterialDeleted(pending), IsOk());
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(4)), std::nullopt, {}), IsOk());
  ASSERT_THAT(store().MarkMaterialDeleted(ExternalKey(KeyId(4))), IsOk());
}

// ---- import parameters

TEST_P(KeyStoreConformanceTest, ImportParametersAddGetDelete) {
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(1)), std::nullopt, {}), IsOk());
  ImportParametersRecord record = NewImportParameters(WrappingKeyId(1), KeyId(1));
  record.wrapping_algorithm = "RSA_AES_KEY_WRAP_SHA_256";
  record.wrapping_key_spec = "RSA_4096";
  ASSERT_THAT(store().AddImportParameters(record), IsOk());
  // Expiring at once is allowed.
  ImportParametersRecord instant = NewImportParameters(WrappingKeyId(2), KeyId(1));
  instant.expiration_time = instant.creation_time;
  ASSERT_THAT(store().AddImportParameters(instant), IsOk());

  absl::StatusOr<ImportParametersRecord> got = store().GetImportParameters(WrappingKeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, record);
  got = store().GetImportParameters(WrappingKeyId(2));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, instant);

  // A taken id keeps the first record.
  ImportParametersRecord clash = NewImportParameters(WrappingKeyId(1), KeyId(1));
  EXPECT_THAT(store().AddImportParameters(clash),
              StatusIs(absl::StatusCode::kAlreadyExists, WrappingKeyId(1)));
  got = store().GetImportParameters(WrappingKeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, record);

  ASSERT_THAT(store().DeleteImportParameters(WrappingKeyId(1)), IsOk());
  EXPECT_THAT(store().GetImportParameters(WrappingKeyId(1)).status(),
              StatusIs(absl::StatusCode::kNotFound, WrappingKeyId(1)));
  EXPECT_THAT(store().DeleteImportParameters(WrappingKeyId(1)),
              StatusIs(absl::StatusCode::kNotFound, WrappingKeyId(1)));
  got = store().GetImportParameters(WrappingKeyId(2));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, instant);
}

TEST_P(KeyStoreConformanceTest, AddImportParametersRefusesBadRecords) {
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(1)), std::nullopt, {}), IsOk());
  ImportParametersRecord backwards = NewImportParameters(WrappingKeyId(1), KeyId(1));
  backwards.expiration_time = backwards.creation_time - absl::Microseconds(1);
  EXPECT_THAT(store().AddImportParameters(backwards),
              StatusIs(absl::StatusCode::kInvalidArgument, "expiration_time"));
  EXPECT_THAT(store().AddImportParameters(NewImportParameters(WrappingKeyId(2), KeyId(9))),
              StatusIs(absl::StatusCode::kNotFound, KeyId(9)));
  absl::StatusOr<std::vector<ImportParametersRecord>> all = store().ListImportParameters("");
  ASSERT_THAT(all.status(), IsOk());
  EXPECT_THAT(*all, IsEmpty());
}

TEST_P(KeyStoreConformanceTest, ListImportParametersIsByCreationTimeThenId) {
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(1)), std::nullopt, {}), IsOk());
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(2)), std::nullopt, {}), IsOk());
  // Written out of order; 3 and 1 tie on creation time.
  const ImportParametersRecord p4 = NewImportParameters(WrappingKeyId(4), KeyId(1), kT0);
  const ImportParametersRecord p3 =
      NewImportParameters(WrappingKeyId(3), KeyId(1), kT0 - absl::Hours(1));
  const ImportParametersRecord p2 =
      NewImportParameters(WrappingKeyId(2), KeyId(2), kT0 - absl::Hours(2));
  const ImportParametersRecord p1 =
      NewImportParameters(WrappingKeyId(1), KeyId(1), kT0 - absl::Hours(1));
  for (const ImportParametersRecord& p : {p4, p3, p2, p1}) {
    ASSERT_THAT(store().AddImportParameters(p), IsOk());
  }

  absl::StatusOr<std::vector<ImportParametersRecord>> listed = store().ListImportParameters("");
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(p2, p1, p3, p4));
  listed = store().ListImportParameters(KeyId(1));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(p1, p3, p4));
  listed = store().ListImportParameters(KeyId(2));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(p2));
  listed = store().ListImportParameters(KeyId(9));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, IsEmpty());
}

TEST_P(KeyStoreConformanceTest, ListExpiredImportParametersIncludesExactlyThoseDue) {
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(1)), std::nullopt, {}), IsOk());
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(2)), std::nullopt, {}), IsOk());
  const absl::Time t = kT0 + absl::Hours(24);
  // Each valid for a day, so creation and expiration order agree; 2 and 1
  // tie.
  const ImportParametersRecord at_t = NewImportParameters(WrappingKeyId(3), KeyId(1), kT0);
  const ImportParametersRecord after_t =
      NewImportParameters(WrappingKeyId(4), KeyId(2), kT0 + absl::Microseconds(1));
  const ImportParametersRecord before_t =
      NewImportParameters(WrappingKeyId(2), KeyId(2), kT0 - absl::Microseconds(1));
  const ImportParametersRecord tie =
      NewImportParameters(WrappingKeyId(1), KeyId(1), kT0 - absl::Microseconds(1));
  for (const ImportParametersRecord& p : {at_t, after_t, before_t, tie}) {
    ASSERT_THAT(store().AddImportParameters(p), IsOk());
  }

  absl::StatusOr<std::vector<ImportParametersRecord>> expired =
      store().ListExpiredImportParameters(t);
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(*expired, ElementsAre(tie, before_t, at_t));
  expired = store().ListExpiredImportParameters(t - absl::Microseconds(2));
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(*expired, IsEmpty());
  expired = store().ListExpiredImportParameters(absl::InfiniteFuture());
  ASSERT_THAT(expired.status(), IsOk());
  EXPECT_THAT(*expired, ElementsAre(tie, before_t, at_t, after_t));
}

TEST_P(KeyStoreConformanceTest, DeleteKeyRemovesItsImportParameters) {
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(1)), std::nullopt, {}), IsOk());
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(2)), std::nullopt, {}), IsOk());
  ASSERT_THAT(store().AddImportParameters(NewImportParameters(WrappingKeyId(1), KeyId(1))),
              IsOk());
  ASSERT_THAT(store().AddImportParameters(NewImportParameters(WrappingKeyId(3), KeyId(1))),
              IsOk());
  const ImportParametersRecord kept = NewImportParameters(WrappingKeyId(2), KeyId(2));
  ASSERT_THAT(store().AddImportParameters(kept), IsOk());

  ASSERT_THAT(store().DeleteKey(KeyId(1)), IsOk());

  EXPECT_THAT(store().GetImportParameters(WrappingKeyId(1)).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().GetImportParameters(WrappingKeyId(3)).status(),
              StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<ImportParametersRecord>> listed = store().ListImportParameters("");
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(kept));
  listed = store().ListExpiredImportParameters(absl::InfiniteFuture());
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(kept));

  // Nothing comes back with a new key of the same id.
  ASSERT_THAT(store().CreateKey(ExternalKey(KeyId(1)), std::nullopt, {}), IsOk());
  listed = store().ListImportParameters(KeyId(1));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, IsEmpty());
}

// ======================================================================
// Aliases

TEST_P(KeyStoreConformanceTest, CreateAliasThenGetAlias) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  AliasRecord alias = NewAlias("alias/payments", KeyId(1));
  alias.last_updated_time = kT0 + absl::Seconds(1);
  ASSERT_THAT(store().CreateAlias(alias), IsOk());
  absl::StatusOr<AliasRecord> got = store().GetAlias("alias/payments");
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, alias);
}

TEST_P(KeyStoreConformanceTest, CreateAliasWithTakenNameFailsAndKeepsTheOld) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/x", KeyId(1))), IsOk());

  EXPECT_THAT(store().CreateAlias(NewAlias("alias/x", KeyId(2))),
              StatusIs(absl::StatusCode::kAlreadyExists, "alias/x"));
  absl::StatusOr<AliasRecord> got = store().GetAlias("alias/x");
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->key_id, KeyId(1));
}

TEST_P(KeyStoreConformanceTest, CreateAliasForMissingKeyFails) {
  EXPECT_THAT(store().CreateAlias(NewAlias("alias/x", KeyId(9))),
              StatusIs(absl::StatusCode::kNotFound, KeyId(9)));
  EXPECT_THAT(store().GetAlias("alias/x").status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(KeyStoreConformanceTest, UpdateAliasRepointsItAndKeepsCreationTime) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/x", KeyId(1))), IsOk());

  const absl::Time later = kT0 + absl::Minutes(5);
  ASSERT_THAT(store().UpdateAlias("alias/x", KeyId(2), later), IsOk());
  AliasRecord want = NewAlias("alias/x", KeyId(2));
  want.last_updated_time = later;
  absl::StatusOr<AliasRecord> got = store().GetAlias("alias/x");
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, want);
}

TEST_P(KeyStoreConformanceTest, UpdateAliasToMissingKeyChangesNothing) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/x", KeyId(1))), IsOk());

  EXPECT_THAT(store().UpdateAlias("alias/x", KeyId(9), kT0 + absl::Minutes(5)),
              StatusIs(absl::StatusCode::kNotFound, KeyId(9)));
  absl::StatusOr<AliasRecord> got = store().GetAlias("alias/x");
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, NewAlias("alias/x", KeyId(1)));
}

TEST_P(KeyStoreConformanceTest, DeleteAliasRemovesOnlyIt) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/a", KeyId(1))), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/b", KeyId(1))), IsOk());

  ASSERT_THAT(store().DeleteAlias("alias/a"), IsOk());
  EXPECT_THAT(store().GetAlias("alias/a").status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().DeleteAlias("alias/a"), StatusIs(absl::StatusCode::kNotFound, "alias/a"));
  EXPECT_THAT(store().GetAlias("alias/b").status(), IsOk());
  EXPECT_THAT(store().GetKey(KeyId(1)).status(), IsOk());
}

TEST_P(KeyStoreConformanceTest, ListAliasesIsOrderedAndFiltersByKey) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(3), VersionId(3)), IsOk());
  const std::vector<std::pair<std::string, std::string>> aliases = {{"alias/d", KeyId(2)},
                                                                    {"alias/b", KeyId(2)},
                                                                    {"alias/e", KeyId(1)},
                                                                    {"alias/a", KeyId(1)},
                                                                    {"alias/c", KeyId(1)}};
  for (const auto& [name, key_id] : aliases) {
    ASSERT_THAT(store().CreateAlias(NewAlias(name, key_id)), IsOk());
  }

  absl::StatusOr<Page<AliasRecord>> all = store().ListAliases(std::nullopt, 100, "");
  ASSERT_THAT(all.status(), IsOk());
  EXPECT_THAT(AliasNamesOf(all->items),
              ElementsAre("alias/a", "alias/b", "alias/c", "alias/d", "alias/e"));
  EXPECT_EQ(all->next_marker, "");

  absl::StatusOr<Page<AliasRecord>> of_one = store().ListAliases(KeyId(1), 100, "");
  ASSERT_THAT(of_one.status(), IsOk());
  EXPECT_THAT(AliasNamesOf(of_one->items), ElementsAre("alias/a", "alias/c", "alias/e"));
  for (const AliasRecord& alias : of_one->items) EXPECT_EQ(alias.key_id, KeyId(1));

  absl::StatusOr<Page<AliasRecord>> of_none = store().ListAliases(KeyId(3), 100, "");
  ASSERT_THAT(of_none.status(), IsOk());
  EXPECT_THAT(of_none->items, IsEmpty());
  EXPECT_EQ(of_none->next_marker, "");

  absl::StatusOr<Page<AliasRecord>> of_unknown = store().ListAliases(KeyId(9), 100, "");
  ASSERT_THAT(of_unknown.status(), IsOk());
  EXPECT_THAT(of_unknown->items, IsEmpty());
}

TEST_P(KeyStoreConformanceTest, ListAliasesWalksEveryPageExactlyOnce) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  std::vector<std::string> all;
  std::vector<std::string> of_key_1;
  for (int i = 0; i < 23; ++i) {
    const std::string name = absl::StrCat("alias/", absl::Dec((i * 5) % 23, absl::kZeroPad3));
    const std::string key_id = (i % 3 == 0) ? KeyId(2) : KeyId(1);
    ASSERT_THAT(store().CreateAlias(NewAlias(name, key_id)), IsOk());
    all.push_back(name);
    if (key_id == KeyId(1)) of_key_1.push_back(name);
  }
  std::sort(all.begin(), all.end());
  std::sort(of_key_1.begin(), of_key_1.end());

  for (const std::optional<std::string>& filter :
       {std::optional<std::string>(), std::optional<std::string>(KeyId(1))}) {
    SCOPED_TRACE(filter.value_or("no filter"));
    std::vector<std::string> seen;
    std::string marker;
    int pages = 0;
    do {
      ASSERT_LT(pages++, 20) << "pagination does not end";
      absl::StatusOr<Page<AliasRecord>> page = store().ListAliases(filter, 5, marker);
      ASSERT_THAT(page.status(), IsOk());
      EXPECT_LE(page->items.size(), 5u);
      for (const AliasRecord& alias : page->items) seen.push_back(alias.alias_name);
      marker = page->next_marker;
    } while (!marker.empty());
    EXPECT_EQ(seen, filter.has_value() ? of_key_1 : all);
  }
}

// ======================================================================
// Tags

TEST_P(KeyStoreConformanceTest, PutTagsAddsAndOverwrites) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1), {{"team", "a"}}), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2), {{"team", "other"}}), IsOk());

  ASSERT_THAT(store().PutTags(KeyId(1), {{"team", "b"}, {"cost-center", "42"}}), IsOk());
  ASSERT_THAT(store().PutTags(KeyId(1), {}), IsOk());

  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"cost-center", "42"}, TagRecord{"team", "b"}));
  tags = store().ListTags(KeyId(2));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"team", "other"}));
}

TEST_P(KeyStoreConformanceTest, RemoveTagsIgnoresNamesThatAreNotSet) {
  ASSERT_THAT(
      CreateKeyWithVersion(store(), KeyId(1), VersionId(1), {{"a", "1"}, {"b", "2"}, {"c", "3"}}),
      IsOk());
  ASSERT_THAT(store().RemoveTags(KeyId(1), {"b", "no-such-tag", "b"}), IsOk());
  ASSERT_THAT(store().RemoveTags(KeyId(1), {}), IsOk());
  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"a", "1"}, TagRecord{"c", "3"}));
}

TEST_P(KeyStoreConformanceTest, ListTagsIsOrderedByTagKey) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(
      store().PutTags(KeyId(1), {{"zeta", "1"}, {"Alpha", "2"}, {"alpha", "3"}, {"mid", "4"}}),
      IsOk());
  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  // Byte order: upper case before lower case.
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"Alpha", "2"}, TagRecord{"alpha", "3"},
                                 TagRecord{"mid", "4"}, TagRecord{"zeta", "1"}));
}

// ======================================================================
// Intents

TEST_P(KeyStoreConformanceTest, IntentsGetIncreasingIdsAndListOldestFirst) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    Intent intent;
    intent.kind = i == 1 ? "delete_key" : "create_version";
    intent.key_id = KeyId(i);  // no such key: an intent may precede its key
    intent.version_id = VersionId(i);
    intent.creation_time = kT0 + absl::Seconds(i);
    absl::StatusOr<int64_t> id = store().AddIntent(intent);
    ASSERT_THAT(id.status(), IsOk());
    if (!ids.empty()) {
      EXPECT_GT(*id, ids.back());
    }
    ids.push_back(*id);
  }

  absl::StatusOr<std::vector<Intent>> intents = store().ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  ASSERT_THAT(*intents, SizeIs(3));
  for (int i = 0; i < 3; ++i) {
    const Intent& got = (*intents)[i];
    EXPECT_EQ(got.id, ids[i]);
    EXPECT_EQ(got.kind, i == 1 ? "delete_key" : "create_version");
    EXPECT_EQ(got.key_id, KeyId(i));
    EXPECT_EQ(got.version_id, VersionId(i));
    EXPECT_EQ(got.creation_time, kT0 + absl::Seconds(i));
  }
}

TEST_P(KeyStoreConformanceTest, RemoveIntentRemovesOnlyIt) {
  Intent intent;
  intent.kind = "create_version";
  absl::StatusOr<int64_t> first = store().AddIntent(intent);
  absl::StatusOr<int64_t> second = store().AddIntent(intent);
  ASSERT_THAT(first.status(), IsOk());
  ASSERT_THAT(second.status(), IsOk());

  ASSERT_THAT(store().RemoveIntent(*first), IsOk());
  EXPECT_THAT(store().RemoveIntent(*first), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<std::vector<Intent>> intents = store().ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  ASSERT_THAT(*intents, SizeIs(1));
  EXPECT_EQ((*intents)[0].id, *second);
}

TEST_P(KeyStoreConformanceTest, IntentIdsAreNeverReused) {
  Intent intent;
  intent.kind = "create_version";
  absl::StatusOr<int64_t> first = store().AddIntent(intent);
  ASSERT_THAT(first.status(), IsOk());
  ASSERT_THAT(store().RemoveIntent(*first), IsOk());
  // Removing the newest intent must not hand its id out again, or "oldest
  // first" and log lines naming intents would become ambiguous.
  absl::StatusOr<int64_t> second = store().AddIntent(intent);
  ASSERT_THAT(second.status(), IsOk());
  EXPECT_GT(*second, *first);
}

// ======================================================================
// Key policies

// A policy as the service would store it: JSON, whitespace and non-ASCII
// kept as given (the store never parses it).
std::string Policy(absl::string_view who) {
  return absl::StrCat("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\"Sid\": \"", who,
                      " \xc3\xa9\xe2\x82\xac\", \"Effect\": \"Allow\", ",
                      "\"Action\": \"kms:*\"}]\n}");
}

TEST_P(KeyStoreConformanceTest, PolicyRoundTripsThroughEveryReadPath) {
  KeyRecord rotating = WithCurrent(WithRotation(NewKey(KeyId(1)), 365, kT0), VersionId(1));
  rotating.policy = Policy("rotating");
  ASSERT_THAT(store().CreateKey(rotating, NewVersion(VersionId(1), KeyId(1)), {}), IsOk());
  KeyRecord doomed = NewKey(KeyId(2));
  doomed.state = KeyState::kPendingDeletion;
  doomed.deletion_time = kT0;
  doomed.policy = Policy("doomed");
  ASSERT_THAT(store().CreateKey(doomed, std::nullopt, {}), IsOk());
  KeyRecord expiring = WithCurrent(NewKey(KeyId(3)), VersionId(3));
  expiring.origin = KeyOrigin::kExternal;
  expiring.expiration_model = ExpirationModel::kExpires;
  expiring.valid_to = kT0;
  expiring.policy = Policy("expiring");
  ASSERT_THAT(store().CreateKey(expiring, NewVersion(VersionId(3), KeyId(3)), {}), IsOk());
  const KeyRecord plain = NewKey(KeyId(4));  // no policy
  ASSERT_THAT(store().CreateKey(plain, std::nullopt, {}), IsOk());

  auto expect_everywhere = [&](const std::string& when) {
    SCOPED_TRACE(when);
    for (const KeyRecord* key :
         std::vector<const KeyRecord*>{&rotating, &doomed, &expiring, &plain}) {
      absl::StatusOr<KeyRecord> got = store().GetKey(key->key_id);
      ASSERT_THAT(got.status(), IsOk());
      EXPECT_EQ(*got, *key);
    }
    absl::StatusOr<Page<KeyRecord>> page = store().ListKeys(10, "");
    ASSERT_THAT(page.status(), IsOk());
    EXPECT_THAT(page->items, ElementsAre(rotating, doomed, expiring, plain));
    absl::StatusOr<std::vector<KeyRecord>> due = store().ListKeysDueForRotation(kT0);
    ASSERT_THAT(due.status(), IsOk());
    EXPECT_THAT(*due, ElementsAre(rotating));
    due = store().ListKeysDueForDeletion(kT0);
    ASSERT_THAT(due.status(), IsOk());
    EXPECT_THAT(*due, ElementsAre(doomed));
    due = store().ListKeysWithExpiredMaterial(kT0);
    ASSERT_THAT(due.status(), IsOk());
    EXPECT_THAT(*due, ElementsAre(expiring));
  };
  expect_everywhere("as created");
  EXPECT_EQ(plain.policy, "");

  // Every method that replaces a key's mutable fields replaces its policy.
  rotating.policy = Policy("updated");
  ASSERT_THAT(store().UpdateKey(rotating), IsOk());
  expect_everywhere("after UpdateKey");
  rotating.policy = Policy("rotated");
  rotating.current_version_id = VersionId(2);
  ASSERT_THAT(store().AddVersion(NewVersion(VersionId(2), KeyId(1)), rotating), IsOk());
  expect_everywhere("after AddVersion");
  expiring.policy = "";
  ASSERT_THAT(store().MarkMaterialDeleted(expiring), IsOk());
  expiring.policy = Policy("restored");
  ImportCommit commit;
  commit.key = expiring;
  commit.restored_version_id = VersionId(3);
  commit.consumed_wrapping_key_id = "w";
  ImportParametersRecord parameters;
  parameters.wrapping_key_id = "w";
  parameters.key_id = KeyId(3);
  ASSERT_THAT(store().AddImportParameters(parameters), IsOk());
  ASSERT_THAT(store().CommitImport(commit), IsOk());
  expect_everywhere("after CommitImport");

  if (persistent()) {
    Reopen();
    expect_everywhere("after reopening");
  }
}

TEST_P(KeyStoreConformanceTest, PolicyLimitIs32768Bytes) {
  KeyRecord key = NewKey(KeyId(1));
  key.policy = std::string(kMaxPolicyBytes, '{');
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());
  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);

  // 16384 two-byte characters: exactly the limit in bytes.
  key.policy.clear();
  for (int i = 0; i < 16384; ++i) key.policy += "\xc3\xa9";
  ASSERT_EQ(key.policy.size(), kMaxPolicyBytes);
  ASSERT_THAT(store().UpdateKey(key), IsOk());
  got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);

  // One byte more is refused, and changes nothing.
  KeyRecord too_long = key;
  too_long.policy += "x";
  EXPECT_THAT(store().UpdateKey(too_long),
              StatusIs(absl::StatusCode::kInvalidArgument, "32768"));
  KeyRecord other = NewKey(KeyId(2));
  other.policy = std::string(kMaxPolicyBytes + 1, ' ');
  EXPECT_THAT(store().CreateKey(other, std::nullopt, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "policy"));
  got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, key);
  EXPECT_THAT(store().GetKey(KeyId(2)).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(KeyStoreConformanceTest, PolicyIsStoredByteForByte) {
  // Not JSON, not UTF-8, NUL bytes: the store does not look.
  KeyRecord key = NewKey(KeyId(1));
  static constexpr char kPolicy[] = "{\0}\xff\xfe not json \"'; DROP TABLE keys; --";
  key.policy = std::string(kPolicy, sizeof(kPolicy) - 1);  // the NUL inside included
  ASSERT_EQ(key.policy[1], '\0');
  ASSERT_THAT(store().CreateKey(key, std::nullopt, {}), IsOk());
  absl::StatusOr<KeyRecord> got = store().GetKey(KeyId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->policy, key.policy);
}

// ======================================================================
// Grants

TEST_P(KeyStoreConformanceTest, GrantAddGetFindDelete) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  GrantRecord g1 = NewGrant(1, KeyId(1));
  g1.retiring_principal = "arn:aws:iam::111122223333:role/retirer";
  g1.encryption_context_equals = {{"purpose", "backup"}};
  const GrantRecord g2 = NewGrant(2, KeyId(1));
  GrantRecord g3 = NewGrant(3, KeyId(2));
  g3.name = "";
  g3.operations = {"GenerateDataKey"};
  g3.encryption_context_subset = {{"team", "payments"}};
  const std::vector<const GrantRecord*> all = {&g1, &g2, &g3};
  for (const GrantRecord* g : all) ASSERT_THAT(store().AddGrant(*g), IsOk());

  for (const GrantRecord* g : all) {
    absl::StatusOr<GrantRecord> got = store().GetGrant(g->grant_id);
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(*got, *g);
    got = store().FindGrantByTokenHash(g->token_hash);
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(*got, *g);
  }
  absl::StatusOr<std::vector<GrantRecord>> listed = store().ListGrantsForKey(KeyId(1));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(g1, g2));
  absl::StatusOr<int64_t> count = store().CountGrants(KeyId(1));
  ASSERT_THAT(count.status(), IsOk());
  EXPECT_EQ(*count, 2);

  ASSERT_THAT(store().DeleteGrant(GrantId(1)), IsOk());
  EXPECT_THAT(store().GetGrant(GrantId(1)).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().FindGrantByTokenHash(g1.token_hash).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().DeleteGrant(GrantId(1)), StatusIs(absl::StatusCode::kNotFound, GrantId(1)));
  listed = store().ListGrantsForKey(KeyId(1));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(g2));
  count = store().CountGrants(KeyId(1));
  ASSERT_THAT(count.status(), IsOk());
  EXPECT_EQ(*count, 1);
  listed = store().ListGrantsForKey(KeyId(2));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, ElementsAre(g3));

  // A deleted grant's id and token hash are free again, and nothing of the
  // old grant (operations, constraints) comes back with the new one.
  GrantRecord again = NewGrant(1, KeyId(2));
  again.operations = {"Decrypt"};
  ASSERT_THAT(store().AddGrant(again), IsOk());
  absl::StatusOr<GrantRecord> got = store().GetGrant(GrantId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, again);

  if (persistent()) {
    Reopen();
    got = store().FindGrantByTokenHash(again.token_hash);
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(*got, again);
    listed = store().ListGrantsForKey(KeyId(1));
    ASSERT_THAT(listed.status(), IsOk());
    EXPECT_THAT(*listed, ElementsAre(g2));
  }
}

TEST_P(KeyStoreConformanceTest, GrantsOfAnUnknownKeyAreNoneNotAnError) {
  absl::StatusOr<std::vector<GrantRecord>> listed = store().ListGrantsForKey(KeyId(9));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, IsEmpty());
  absl::StatusOr<Page<GrantRecord>> page = store().ListGrants(KeyId(9), {}, 10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  EXPECT_EQ(page->next_marker, "");
  absl::StatusOr<int64_t> count = store().CountGrants(KeyId(9));
  ASSERT_THAT(count.status(), IsOk());
  EXPECT_EQ(*count, 0);
  // A key without grants, likewise.
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  page = store().ListGrants(KeyId(1), {}, 1, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  EXPECT_EQ(page->next_marker, "");
}

TEST_P(KeyStoreConformanceTest, ListGrantsWalksEveryPageExactlyOnce) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  // Key 1 has the even grants, inserted out of order; key 2's odd ones sort
  // between them and must never show up in key 1's pages.
  std::vector<GrantRecord> want;
  for (int n : {8, 2, 14, 4, 10, 6, 12}) {
    GrantRecord grant = NewGrant(n, KeyId(1));
    grant.operations = {absl::StrCat("Op", n), "Decrypt"};
    grant.encryption_context_equals = {{"n", absl::StrCat(n)}};
    ASSERT_THAT(store().AddGrant(grant), IsOk());
    want.push_back(grant);
  }
  for (int n : {3, 7, 11}) ASSERT_THAT(store().AddGrant(NewGrant(n, KeyId(2))), IsOk());
  std::sort(want.begin(), want.end(),
            [](const GrantRecord& a, const GrantRecord& b) { return a.grant_id < b.grant_id; });

  absl::StatusOr<std::vector<GrantRecord>> all = store().ListGrantsForKey(KeyId(1));
  ASSERT_THAT(all.status(), IsOk());
  EXPECT_EQ(*all, want);
  absl::StatusOr<int64_t> count = store().CountGrants(KeyId(1));
  ASSERT_THAT(count.status(), IsOk());
  EXPECT_EQ(*count, 7);
  count = store().CountGrants(KeyId(2));
  ASSERT_THAT(count.status(), IsOk());
  EXPECT_EQ(*count, 3);

  for (int limit = 1; limit <= 8; ++limit) {
    SCOPED_TRACE(absl::StrCat("limit ", limit));
    std::vector<GrantRecord> seen;
    std::string marker;
    int pages = 0;
    do {
      absl::StatusOr<Page<GrantRecord>> page = store().ListGrants(KeyId(1), {}, limit, marker);
      ASSERT_THAT(page.status(), IsOk());
      ASSERT_LE(page->items.size(), static_cast<size_t>(limit));
      // Only the last page may be short, and it has no next marker.
      if (!page->next_marker.empty()) {
        EXPECT_EQ(page->items.size(), static_cast<size_t>(limit));
        EXPECT_EQ(page->next_marker, page->items.back().grant_id);
      }
      seen.insert(seen.end(), page->items.begin(), page->items.end());
      marker = page->next_marker;
      ASSERT_LT(++pages, 20) << "no end";
    } while (!marker.empty());
    EXPECT_EQ(seen, want);
    EXPECT_EQ(pages, (7 + limit - 1) / limit);
  }

  // The marker is exclusive and need not name a grant.
  absl::StatusOr<Page<GrantRecord>> page = store().ListGrants(KeyId(1), {}, 2, GrantId(4));
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(GrantIdsOf(page->items), ElementsAre(GrantId(6), GrantId(8)));
  page = store().ListGrants(KeyId(1), {}, 2, GrantId(5));
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(GrantIdsOf(page->items), ElementsAre(GrantId(6), GrantId(8)));
  page = store().ListGrants(KeyId(1), {}, 2, GrantId(14));
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  EXPECT_EQ(page->next_marker, "");
}

TEST_P(KeyStoreConformanceTest, ListGrantsFiltersBeforeItPages) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  // Key 1: grants 1..12, every third to "carol", so her grants are spread
  // thin among the others'. Key 2: one more of hers, which must not show.
  const std::string carol = "arn:aws:iam::111122223333:role/carol";
  std::vector<GrantRecord> carols;
  for (int n = 1; n <= 12; ++n) {
    GrantRecord grant = NewGrant(n, KeyId(1));
    if (n % 3 == 0) grant.grantee_principal = carol;
    ASSERT_THAT(store().AddGrant(grant), IsOk());
    if (n % 3 == 0) carols.push_back(grant);
  }
  GrantRecord elsewhere = NewGrant(20, KeyId(2));
  elsewhere.grantee_principal = carol;
  ASSERT_THAT(store().AddGrant(elsewhere), IsOk());

  GrantFilter by_grantee;
  by_grantee.grantee_principal = carol;
  for (int limit = 1; limit <= 5; ++limit) {
    SCOPED_TRACE(absl::StrCat("limit ", limit));
    std::vector<GrantRecord> seen;
    std::string marker;
    int pages = 0;
    do {
      absl::StatusOr<Page<GrantRecord>> page =
          store().ListGrants(KeyId(1), by_grantee, limit, marker);
      ASSERT_THAT(page.status(), IsOk());
      // Full pages until the last; a marker only when more of hers follow.
      if (!page->next_marker.empty()) {
        EXPECT_EQ(page->items.size(), static_cast<size_t>(limit));
        EXPECT_EQ(page->next_marker, page->items.back().grant_id);
      } else {
        EXPECT_FALSE(page->items.empty());
      }
      seen.insert(seen.end(), page->items.begin(), page->items.end());
      marker = page->next_marker;
      ASSERT_LT(++pages, 20) << "no end";
    } while (!marker.empty());
    EXPECT_EQ(seen, carols);  // every field, operations included
    EXPECT_EQ(pages, (4 + limit - 1) / limit);
  }

  // By grant id: that grant, on its key only, and with the other filter too.
  GrantFilter by_id;
  by_id.grant_id = GrantId(6);
  absl::StatusOr<Page<GrantRecord>> page = store().ListGrants(KeyId(1), by_id, 1, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, ElementsAre(carols[1]));
  EXPECT_EQ(page->next_marker, "");
  page = store().ListGrants(KeyId(2), by_id, 10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  page = store().ListGrants(KeyId(1), by_id, 10, GrantId(6));  // after it
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  by_id.grantee_principal = carol;
  page = store().ListGrants(KeyId(1), by_id, 10, GrantId(5));
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(GrantIdsOf(page->items), ElementsAre(GrantId(6)));
  by_id.grant_id = GrantId(5);  // not hers
  page = store().ListGrants(KeyId(1), by_id, 10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  GrantFilter nobody;
  nobody.grantee_principal = "arn:aws:iam::111122223333:role/nobody";
  page = store().ListGrants(KeyId(1), nobody, 10, "");
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(page->items, IsEmpty());
  EXPECT_EQ(page->next_marker, "");
}

TEST_P(KeyStoreConformanceTest, GrantStringsAndMapsRoundTripExactly) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  GrantRecord grant = NewGrant(1, KeyId(1));
  grant.name = "n\xc3\xa4me 'quoted' \"x\"; --";
  grant.grantee_principal = "arn:aws:iam::111122223333:role/\xe2\x82\xac";
  grant.retiring_principal = "";
  // Kept in the caller's order, which is not sorted.
  grant.operations = {"GenerateDataKey", "Decrypt", "Encrypt", "ReEncryptFrom", "CreateGrant"};
  // Whatever separator or length prefix an encoding might use, and the same
  // keys in both maps with different values: the maps must not mix.
  const std::string nul_key("nul\0key", 7);
  const std::string nul_value("v\0", 2);
  grant.encryption_context_equals = {
      {"", ""},
      {"a=b", "c,d"},
      {"k;1:2|x", ""},
      {"3:abc", "0:"},
      {"\n\t\\", "\\\""},
      {nul_key, nul_value},
      {"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "\xe5\x80\xa4 \xf0\x9f\x94\x91"},
      {"'; DROP TABLE grants; --", "x"},
  };
  grant.encryption_context_subset = {
      {"", "empty key"},
      {"a=b", "other"},
      {nul_key, ""},
      {"\xf0\x9f\x94\x91", ""},
  };
  ASSERT_THAT(store().AddGrant(grant), IsOk());
  // A grant with one map only: nothing of the first grant leaks into it.
  GrantRecord subset_only = NewGrant(2, KeyId(1));
  subset_only.operations = {"Decrypt", "Decrypt"};
  subset_only.encryption_context_subset = {{"a=b", "c,d"}};
  ASSERT_THAT(store().AddGrant(subset_only), IsOk());
  GrantRecord bare = NewGrant(3, KeyId(1));
  bare.operations = {"RetireGrant"};
  ASSERT_THAT(store().AddGrant(bare), IsOk());

  auto expect_exact = [&](const std::string& when) {
    SCOPED_TRACE(when);
    absl::StatusOr<GrantRecord> got = store().GetGrant(GrantId(1));
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(*got, grant);
    EXPECT_EQ(got->encryption_context_equals.at(nul_key), nul_value);
    got = store().FindGrantByTokenHash(grant.token_hash);
    ASSERT_THAT(got.status(), IsOk());
    EXPECT_EQ(*got, grant);
    absl::StatusOr<std::vector<GrantRecord>> listed = store().ListGrantsForKey(KeyId(1));
    ASSERT_THAT(listed.status(), IsOk());
    EXPECT_THAT(*listed, ElementsAre(grant, subset_only, bare));
    absl::StatusOr<Page<GrantRecord>> page = store().ListGrants(KeyId(1), {}, 1, "");
    ASSERT_THAT(page.status(), IsOk());
    EXPECT_THAT(page->items, ElementsAre(grant));
    page = store().ListGrants(KeyId(1), {}, 5, page->next_marker);
    ASSERT_THAT(page.status(), IsOk());
    EXPECT_THAT(page->items, ElementsAre(subset_only, bare));
  };
  expect_exact("as added");
  if (persistent()) {
    Reopen();
    expect_exact("after reopening");
  }
}

TEST_P(KeyStoreConformanceTest, DeleteKeyRemovesItsGrants) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(2), VersionId(2)), IsOk());
  GrantRecord g1 = NewGrant(1, KeyId(1));
  g1.encryption_context_equals = {{"a", "1"}};
  g1.encryption_context_subset = {{"b", "2"}};
  ASSERT_THAT(store().AddGrant(g1), IsOk());
  ASSERT_THAT(store().AddGrant(NewGrant(2, KeyId(1))), IsOk());
  const GrantRecord g3 = NewGrant(3, KeyId(2));
  ASSERT_THAT(store().AddGrant(g3), IsOk());

  ASSERT_THAT(store().DeleteKey(KeyId(1)), IsOk());

  for (int n : {1, 2}) {
    EXPECT_THAT(store().GetGrant(GrantId(n)).status(), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(store().FindGrantByTokenHash(TokenHash(n)).status(),
                StatusIs(absl::StatusCode::kNotFound));
  }
  absl::StatusOr<std::vector<GrantRecord>> listed = store().ListGrantsForKey(KeyId(1));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, IsEmpty());
  absl::StatusOr<int64_t> count = store().CountGrants(KeyId(1));
  ASSERT_THAT(count.status(), IsOk());
  EXPECT_EQ(*count, 0);
  // The other key's grant is untouched.
  absl::StatusOr<GrantRecord> got = store().GetGrant(GrantId(3));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, g3);

  // Nothing of the old grants comes back with a new key of the same id, and
  // their ids and token hashes are free again.
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  listed = store().ListGrantsForKey(KeyId(1));
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_THAT(*listed, IsEmpty());
  const GrantRecord fresh = NewGrant(1, KeyId(1));
  ASSERT_THAT(store().AddGrant(fresh), IsOk());
  got = store().GetGrant(GrantId(1));
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(*got, fresh);
}

// ======================================================================
// Errors, as tables

struct ErrorCase {
  std::string name;
  std::function<absl::Status(KeyStore&)> call;
  absl::StatusCode code;
  std::string message_has;  // the offending name must appear in the message
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

// Each case runs against a store holding key 1 (current version 1, tag
// "t"), alias "alias/present" -> key 1, grant 1 on key 1, and one intent.
using KeyStoreErrorTest = StoreTest<std::tuple<StoreKind, ErrorCase>>;

TEST_P(KeyStoreErrorTest, FailsWithDocumentedCode) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1), {{"t", "v"}}), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/present", KeyId(1))), IsOk());
  ASSERT_THAT(store().AddIntent(Intent{}).status(), IsOk());
  ASSERT_THAT(store().AddGrant(NewGrant(1, KeyId(1))), IsOk());

  const ErrorCase& c = std::get<1>(GetParam());
  EXPECT_THAT(c.call(store()), StatusIs(c.code, c.message_has));

  // The failed call changed nothing.
  absl::StatusOr<KeyRecord> key = store().GetKey(KeyId(1));
  ASSERT_THAT(key.status(), IsOk());
  KeyRecord want = NewKey(KeyId(1));
  want.current_version_id = VersionId(1);
  EXPECT_EQ(*key, want);
  absl::StatusOr<std::vector<KeyVersionRecord>> versions = store().ListVersions(KeyId(1));
  ASSERT_THAT(versions.status(), IsOk());
  EXPECT_THAT(*versions, ElementsAre(NewVersion(VersionId(1), KeyId(1))));
  absl::StatusOr<AliasRecord> alias = store().GetAlias("alias/present");
  ASSERT_THAT(alias.status(), IsOk());
  EXPECT_EQ(*alias, NewAlias("alias/present", KeyId(1)));
  absl::StatusOr<std::vector<TagRecord>> tags = store().ListTags(KeyId(1));
  ASSERT_THAT(tags.status(), IsOk());
  EXPECT_THAT(*tags, ElementsAre(TagRecord{"t", "v"}));
  absl::StatusOr<std::vector<Intent>> intents = store().ListIntents();
  ASSERT_THAT(intents.status(), IsOk());
  EXPECT_THAT(*intents, SizeIs(1));
  absl::StatusOr<std::vector<GrantRecord>> grants = store().ListGrantsForKey(KeyId(1));
  ASSERT_THAT(grants.status(), IsOk());
  EXPECT_THAT(*grants, ElementsAre(NewGrant(1, KeyId(1))));
  EXPECT_THAT(store().GetGrant(GrantId(2)).status(), StatusIs(absl::StatusCode::kNotFound));
}

// AddGrant of grant 2 on key 1, spoiled by `spoil`.
std::function<absl::Status(KeyStore&)> AddSpoiledGrant(std::function<void(GrantRecord&)> spoil) {
  return [spoil](KeyStore& s) {
    GrantRecord grant = NewGrant(2, KeyId(1));
    spoil(grant);
    return s.AddGrant(grant);
  };
}

std::vector<ErrorCase> ErrorCases() {
  using absl::StatusCode;
  const std::string missing = KeyId(9);
  return {
      // kAlreadyExists
      {"CreateKeyWithTakenKeyId",
       [](KeyStore& s) { return CreateKeyWithVersion(s, KeyId(1), VersionId(2)); },
       StatusCode::kAlreadyExists, KeyId(1)},
      {"CreateKeyWithTakenVersionId",
       [](KeyStore& s) { return CreateKeyWithVersion(s, KeyId(2), VersionId(1)); },
       StatusCode::kAlreadyExists, VersionId(1)},
      {"CreateAliasWithTakenName",
       [](KeyStore& s) { return s.CreateAlias(NewAlias("alias/present", KeyId(1))); },
       StatusCode::kAlreadyExists, "alias/present"},
      {"AddGrantWithTakenGrantId",
       AddSpoiledGrant([](GrantRecord& g) { g.grant_id = GrantId(1); }),
       StatusCode::kAlreadyExists, GrantId(1)},
      {"AddGrantWithTakenTokenHash",
       AddSpoiledGrant([](GrantRecord& g) { g.token_hash = TokenHash(1); }),
       StatusCode::kAlreadyExists, "token hash"},
      // kNotFound
      {"GetKey", [=](KeyStore& s) { return s.GetKey(missing).status(); }, StatusCode::kNotFound,
       missing},
      {"UpdateKey", [=](KeyStore& s) { return s.UpdateKey(NewKey(missing)); },
       StatusCode::kNotFound, missing},
      {"DeleteKey", [=](KeyStore& s) { return s.DeleteKey(missing); }, StatusCode::kNotFound,
       missing},
      {"GetVersion", [](KeyStore& s) { return s.GetVersion(VersionId(9)).status(); },
       StatusCode::kNotFound, VersionId(9)},
      {"ReserveEncryptionsOfMissingVersion",
       [](KeyStore& s) { return s.ReserveEncryptions(VersionId(9), 1); }, StatusCode::kNotFound,
       VersionId(9)},
      {"CreateAliasForMissingKey",
       [=](KeyStore& s) { return s.CreateAlias(NewAlias("alias/new", missing)); },
       StatusCode::kNotFound, missing},
      {"UpdateMissingAlias",
       [](KeyStore& s) { return s.UpdateAlias("alias/missing", KeyId(1), kT0); },
       StatusCode::kNotFound, "alias/missing"},
      {"UpdateAliasToMissingKey",
       [=](KeyStore& s) { return s.UpdateAlias("alias/present", missing, kT0); },
       StatusCode::kNotFound, missing},
      {"DeleteMissingAlias", [](KeyStore& s) { return s.DeleteAlias("alias/missing"); },
       StatusCode::kNotFound, "alias/missing"},
      {"GetMissingAlias", [](KeyStore& s) { return s.GetAlias("alias/missing").status(); },
       StatusCode::kNotFound, "alias/missing"},
      {"PutTagsOnMissingKey",
       [=](KeyStore& s) {
         return s.PutTags(missing, {{"t", "w"}});
       },
       StatusCode::kNotFound, missing},
      {"PutNoTagsOnMissingKey", [=](KeyStore& s) { return s.PutTags(missing, {}); },
       StatusCode::kNotFound, missing},
      {"RemoveTagsOfMissingKey", [=](KeyStore& s) { return s.RemoveTags(missing, {"t"}); },
       StatusCode::kNotFound, missing},
      {"ListTagsOfMissingKey", [=](KeyStore& s) { return s.ListTags(missing).status(); },
       StatusCode::kNotFound, missing},
      {"RemoveMissingIntent", [](KeyStore& s) { return s.RemoveIntent(987654321); },
       StatusCode::kNotFound, "987654321"},
      {"MarkMaterialDeletedOfMissingKey",
       [=](KeyStore& s) { return s.MarkMaterialDeleted(NewKey(missing)); },
       StatusCode::kNotFound, missing},
      // Fails on the key; the versions must stay as they were.
      {"MarkMaterialDeletedWithMissingCurrentVersion",
       [](KeyStore& s) {
         return s.MarkMaterialDeleted(WithCurrent(NewKey(KeyId(1)), VersionId(9)));
       },
       StatusCode::kNotFound, VersionId(9)},
      {"CommitImportForMissingKey",
       [=](KeyStore& s) {
         ImportCommit commit;
         commit.key = NewKey(missing);
         commit.consumed_wrapping_key_id = WrappingKeyId(1);
         return s.CommitImport(commit);
       },
       StatusCode::kNotFound, missing},
      {"AddImportParametersForMissingKey",
       [=](KeyStore& s) {
         return s.AddImportParameters(NewImportParameters(WrappingKeyId(1), missing));
       },
       StatusCode::kNotFound, missing},
      {"GetMissingImportParameters",
       [](KeyStore& s) { return s.GetImportParameters(WrappingKeyId(9)).status(); },
       StatusCode::kNotFound, WrappingKeyId(9)},
      {"DeleteMissingImportParameters",
       [](KeyStore& s) { return s.DeleteImportParameters(WrappingKeyId(9)); },
       StatusCode::kNotFound, WrappingKeyId(9)},
      {"AddGrantForMissingKey",
       AddSpoiledGrant([=](GrantRecord& g) { g.key_id = missing; }), StatusCode::kNotFound,
       missing},
      {"GetMissingGrant", [](KeyStore& s) { return s.GetGrant(GrantId(9)).status(); },
       StatusCode::kNotFound, GrantId(9)},
      {"DeleteMissingGrant", [](KeyStore& s) { return s.DeleteGrant(GrantId(9)); },
       StatusCode::kNotFound, GrantId(9)},
      {"FindGrantByMissingTokenHash",
       [](KeyStore& s) { return s.FindGrantByTokenHash(TokenHash(9)).status(); },
       StatusCode::kNotFound, "token hash"},
      {"FindGrantByTokenHashOfWrongSize",
       [](KeyStore& s) { return s.FindGrantByTokenHash(TokenHash(1).substr(1)).status(); },
       StatusCode::kNotFound, ""},
      {"FindGrantByEmptyTokenHash",
       [](KeyStore& s) { return s.FindGrantByTokenHash("").status(); }, StatusCode::kNotFound,
       ""},
      // kInvalidArgument
      {"FindVersionsByEmptyFingerprint",
       [](KeyStore& s) { return s.FindVersionsByFingerprint("").status(); },
       StatusCode::kInvalidArgument, "fingerprint"},
      {"AddGrantWithEmptyGrantId", AddSpoiledGrant([](GrantRecord& g) { g.grant_id = ""; }),
       StatusCode::kInvalidArgument, "grant_id"},
      {"AddGrantWithGrantIdOf63",
       AddSpoiledGrant([](GrantRecord& g) { g.grant_id.pop_back(); }),
       StatusCode::kInvalidArgument, "grant_id"},
      {"AddGrantWithGrantIdOf65",
       AddSpoiledGrant([](GrantRecord& g) { g.grant_id += "0"; }),
       StatusCode::kInvalidArgument, "grant_id"},
      {"AddGrantWithUpperCaseGrantId",
       AddSpoiledGrant([](GrantRecord& g) { g.grant_id[0] = 'E'; }),
       StatusCode::kInvalidArgument, "grant_id"},
      {"AddGrantWithNonHexGrantId",
       AddSpoiledGrant([](GrantRecord& g) { g.grant_id[10] = 'g'; }),
       StatusCode::kInvalidArgument, "grant_id"},
      {"AddGrantWithNulInGrantId",
       AddSpoiledGrant([](GrantRecord& g) { g.grant_id[63] = '\0'; }),
       StatusCode::kInvalidArgument, "grant_id"},
      {"AddGrantWithEmptyTokenHash", AddSpoiledGrant([](GrantRecord& g) { g.token_hash = ""; }),
       StatusCode::kInvalidArgument, "token_hash"},
      {"AddGrantWithTokenHashOf31",
       AddSpoiledGrant([](GrantRecord& g) { g.token_hash.pop_back(); }),
       StatusCode::kInvalidArgument, "token_hash"},
      {"AddGrantWithTokenHashOf33",
       AddSpoiledGrant([](GrantRecord& g) { g.token_hash += "x"; }),
       StatusCode::kInvalidArgument, "token_hash"},
      {"AddGrantWithoutOperations",
       AddSpoiledGrant([](GrantRecord& g) { g.operations.clear(); }),
       StatusCode::kInvalidArgument, "operations"},
      // Validation before lookups: a bad grant for a missing key is refused
      // as bad.
      {"AddInvalidGrantForMissingKey",
       AddSpoiledGrant([=](GrantRecord& g) {
         g.key_id = missing;
         g.operations.clear();
       }),
       StatusCode::kInvalidArgument, "operations"},
  };
}

INSTANTIATE_TEST_SUITE_P(Stores, KeyStoreErrorTest,
                         ::testing::Combine(::testing::ValuesIn(AllStores()),
                                            ::testing::ValuesIn(ErrorCases())),
                         KindAndCaseName<ErrorCase>);

struct ListerCase {
  std::string name;
  std::function<absl::Status(KeyStore&, int limit)> list;
};

void PrintTo(const ListerCase& c, std::ostream* os) { *os << c.name; }

using KeyStoreLimitTest = StoreTest<std::tuple<StoreKind, ListerCase>>;

TEST_P(KeyStoreLimitTest, RejectsLimitBelowOne) {
  ASSERT_THAT(CreateKeyWithVersion(store(), KeyId(1), VersionId(1)), IsOk());
  ASSERT_THAT(store().CreateAlias(NewAlias("alias/a", KeyId(1))), IsOk());
  const ListerCase& c = std::get<1>(GetParam());
  for (int limit : {0, -1, INT_MIN}) {
    SCOPED_TRACE(limit);
    EXPECT_THAT(c.list(store(), limit), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_THAT(c.list(store(), 1), IsOk());
}

INSTANTIATE_TEST_SUITE_P(
    Stores, KeyStoreLimitTest,
    ::testing::Combine(
        ::testing::ValuesIn(AllStores()),
        ::testing::Values(
            ListerCase{"ListKeys",
                       [](KeyStore& s, int limit) { return s.ListKeys(limit, "").status(); }},
            ListerCase{"ListKeysAfterMarker",
                       [](KeyStore& s, int limit) { return s.ListKeys(limit, KeyId(0)).status(); }},
            ListerCase{"ListAliases",
                       [](KeyStore& s,
                          int limit) { return s.ListAliases(std::nullopt, limit, "").status(); }},
            ListerCase{"ListAliasesOfKey",
                       [](KeyStore& s,
                          int limit) { return s.ListAliases(KeyId(1), limit, "").status(); }},
            ListerCase{"ListGrants",
                       [](KeyStore& s, int limit) {
                         return s.ListGrants(KeyId(1), {}, limit, "").status();
                       }},
            ListerCase{"ListGrantsAfterMarker",
                       [](KeyStore& s, int limit) {
                         return s.ListGrants(KeyId(1), {}, limit, GrantId(0)).status();
                       }},
            ListerCase{"ListGrantsOfUnknownKey", [](KeyStore& s, int limit) {
                         return s.ListGrants(KeyId(9), {}, limit, "").status();
                       }})),
    KindAndCaseName<ListerCase>);

INSTANTIATE_TEST_SUITE_P(Stores, KeyStoreConformanceTest, ::testing::ValuesIn(AllStores()),
                         KindName);

}  // namespace
}  // namespace kms::keystore
