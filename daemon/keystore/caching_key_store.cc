#include "daemon/keystore/caching_key_store.h"

#include <utility>

namespace kms::keystore {
namespace {

// What a cached record costs, roughly: its fixed part and its strings.
size_t ApproxBytes(const KeyRecord& k) {
  return sizeof(k) + k.key_id.size() + k.description.size() + k.policy.size() + k.key_usage.size() +
         k.key_spec.size() + k.current_version_id.size();
}
size_t ApproxBytes(const AliasRecord& a) {
  return sizeof(a) + a.alias_name.size() + a.key_id.size();
}
size_t ApproxBytes(const KeyVersionRecord& v) {
  return sizeof(v) + v.version_id.size() + v.key_id.size() + v.key_check_value.size() +
         v.fingerprint.size();
}
size_t ApproxBytes(const std::vector<GrantRecord>& grants) {
  size_t bytes = sizeof(grants);
  for (const GrantRecord& g : grants) {
    bytes += sizeof(g) + g.grant_id.size() + g.key_id.size() + g.name.size() +
             g.grantee_principal.size() + g.retiring_principal.size() + g.issuing_principal.size() +
             g.token_hash.size();
    for (const std::string& op : g.operations) bytes += sizeof(op) + op.size();
    for (const auto* context : {&g.encryption_context_equals, &g.encryption_context_subset}) {
      for (const auto& [k, v] : *context) bytes += 2 * sizeof(std::string) + k.size() + v.size();
    }
  }
  return bytes;
}

// What one cache entry counts for in bytes_: added when it is stored, given
// back when it alone is forgotten, so the two must agree.
template <typename Record>
size_t EntryBytes(absl::string_view id, const Record& record) {
  return id.size() + ApproxBytes(record);
}

}  // namespace

template <typename Map, typename Read>
auto CachingKeyStore::Cached(Map Maps::*map, absl::string_view id, Read read) -> decltype(read()) {
  uint64_t generation;
  {
    absl::ReaderMutexLock lock(&mu_);
    const Map& cache = maps_.*map;
    if (auto it = cache.find(id); it != cache.end()) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second;
    }
    generation = generation_;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  auto result = read();
  if (result.ok()) {
    absl::MutexLock lock(&mu_);
    // A write finished while we read: what we found may be what it replaced.
    if (generation_ == generation) {
      Map& cache = maps_.*map;
      const size_t bytes = EntryBytes(id, *result);
      if (cache.size() >= options_.max_entries || bytes_ + bytes > options_.max_bytes) {
        ClearLocked();
      }
      if (bytes <= options_.max_bytes && cache.try_emplace(std::string(id), *result).second) {
        bytes_ += bytes;
      }
    }
  }
  return result;
}

void CachingKeyStore::ClearLocked() {
  maps_.keys.clear();
  maps_.grants.clear();
  maps_.aliases.clear();
  maps_.versions.clear();
  bytes_ = 0;
}

template <typename Result>
Result CachingKeyStore::Cleared(Result result) {
  absl::MutexLock lock(&mu_);
  ++generation_;
  ClearLocked();
  return result;
}

CachingKeyStore::Stats CachingKeyStore::stats() const {
  return Stats{hits_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed)};
}

absl::StatusOr<KeyRecord> CachingKeyStore::GetKey(absl::string_view key_id) {
  return Cached(&Maps::keys, key_id, [&] { return ForwardingKeyStore::GetKey(key_id); });
}

absl::StatusOr<std::vector<GrantRecord>> CachingKeyStore::ListGrantsForKey(
    absl::string_view key_id) {
  return Cached(&Maps::grants, key_id,
                [&] { return ForwardingKeyStore::ListGrantsForKey(key_id); });
}

absl::StatusOr<AliasRecord> CachingKeyStore::GetAlias(absl::string_view alias_name) {
  return Cached(&Maps::aliases, alias_name,
                [&] { return ForwardingKeyStore::GetAlias(alias_name); });
}

absl::StatusOr<KeyVersionRecord> CachingKeyStore::GetVersion(absl::string_view version_id) {
  return Cached(&Maps::versions, version_id,
                [&] { return ForwardingKeyStore::GetVersion(version_id); });
}

absl::Status CachingKeyStore::CreateKey(const KeyRecord& key,
                                        const std::optional<KeyVersionRecord>& version,
                                        const std::vector<TagRecord>& tags) {
  return Cleared(ForwardingKeyStore::CreateKey(key, version, tags));
}

absl::Status CachingKeyStore::UpdateKey(const KeyRecord& key) {
  return Cleared(ForwardingKeyStore::UpdateKey(key));
}

absl::Status CachingKeyStore::AddVersion(const KeyVersionRecord& version, const KeyRecord& key) {
  return Cleared(ForwardingKeyStore::AddVersion(version, key));
}

absl::Status CachingKeyStore::ReserveEncryptions(absl::string_view version_id, int64_t reserved) {
  // The one write on the data plane: the first encryption under each version
  // after a start makes one, so clearing everything here kept the caches
  // cold for as long as new versions kept coming (a thousand keys in use).
  // It changes only this version's row, so only that record is forgotten;
  // the generation still moves on, so a GetVersion that overlapped it does
  // not put the old count back.
  absl::Status result = ForwardingKeyStore::ReserveEncryptions(version_id, reserved);
  absl::MutexLock lock(&mu_);
  ++generation_;
  if (auto it = maps_.versions.find(version_id); it != maps_.versions.end()) {
    bytes_ -= EntryBytes(it->first, it->second);
    maps_.versions.erase(it);
  }
  return result;
}

absl::Status CachingKeyStore::DeleteKey(absl::string_view key_id) {
  return Cleared(ForwardingKeyStore::DeleteKey(key_id));
}

absl::Status CachingKeyStore::CommitImport(const ImportCommit& commit) {
  return Cleared(ForwardingKeyStore::CommitImport(commit));
}

absl::Status CachingKeyStore::MarkMaterialDeleted(const KeyRecord& key) {
  return Cleared(ForwardingKeyStore::MarkMaterialDeleted(key));
}

absl::Status CachingKeyStore::AddImportParameters(const ImportParametersRecord& record) {
  return Cleared(ForwardingKeyStore::AddImportParameters(record));
}

absl::Status CachingKeyStore::DeleteImportParameters(absl::string_view wrapping_key_id) {
  return Cleared(ForwardingKeyStore::DeleteImportParameters(wrapping_key_id));
}

absl::Status CachingKeyStore::CreateAlias(const AliasRecord& alias) {
  return Cleared(ForwardingKeyStore::CreateAlias(alias));
}

absl::Status CachingKeyStore::UpdateAlias(absl::string_view alias_name, absl::string_view key_id,
                                          absl::Time now) {
  return Cleared(ForwardingKeyStore::UpdateAlias(alias_name, key_id, now));
}

absl::Status CachingKeyStore::DeleteAlias(absl::string_view alias_name) {
  return Cleared(ForwardingKeyStore::DeleteAlias(alias_name));
}

absl::Status CachingKeyStore::AddGrant(const GrantRecord& grant) {
  return Cleared(ForwardingKeyStore::AddGrant(grant));
}

absl::Status CachingKeyStore::DeleteGrant(absl::string_view grant_id) {
  return Cleared(ForwardingKeyStore::DeleteGrant(grant_id));
}

absl::Status CachingKeyStore::PutTags(absl::string_view key_id,
                                      const std::vector<TagRecord>& tags) {
  return Cleared(ForwardingKeyStore::PutTags(key_id, tags));
}

absl::Status CachingKeyStore::RemoveTags(absl::string_view key_id,
                                         const std::vector<std::string>& tag_keys) {
  return Cleared(ForwardingKeyStore::RemoveTags(key_id, tag_keys));
}

absl::StatusOr<int64_t> CachingKeyStore::AddIntent(const Intent& intent) {
  return Cleared(ForwardingKeyStore::AddIntent(intent));
}

absl::Status CachingKeyStore::RemoveIntent(int64_t id) {
  return Cleared(ForwardingKeyStore::RemoveIntent(id));
}

}  // namespace kms::keystore
