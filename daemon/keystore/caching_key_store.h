// CachingKeyStore: a KeyStore that keeps in memory the reads data-plane
// calls make (GetKey, ListGrantsForKey, GetAlias, GetVersion) and passes
// everything else to the store it wraps.
//
// Why: GenerateDataKey and Decrypt authorise against the key record and the
// key's grants, and Decrypt checks the blob's key version. Read from SQLite,
// those reads were about a tenth of kmsd's CPU per call (statement steps,
// row decoding, the WAL read locks' fcntl calls) and serialised the handler
// threads on the database connection's mutex. The records change only
// through this process, so they can be served from memory.
//
// Correctness rests on one rule: every write reaches the database through
// this object. kmsd opens the database once and wraps it before anything
// else sees it; nothing else in the process writes to it, and DESIGN.md has
// one kmsd own one database. A write made behind the cache's back (another
// process, or the inner store directly) is not seen until the next write
// through the cache clears it.
//
// Invalidation is deliberately coarse: every write clears every cache once
// it has returned, whatever its result. Writes are rare next to the reads:
// they are control-plane calls, with one exception. ReserveEncryptions runs
// on the data plane (at the first encryption under each version after a
// start, then once per rotation.usage_reservation_block encryptions) and
// changes one version's row only, so it forgets just that version's record.
// A read that missed fills the cache only if no write finished while it was
// reading, so a value read before a write can never be put back after the
// write cleared it. A reader that overlaps a write may see the old or the
// new record, as it would from the database.
//
// Only found records are kept (a miss for an unknown id goes to the store
// each time). Memory is bounded: when a new record would take the caches
// past max_bytes (an estimate: the records' strings and fixed parts), or
// its cache past max_entries records, every cache is emptied first. A key's
// policy can be 32 KiB, so the byte bound is the one that matters.
//
// Thread-safe.
#ifndef KMS_DAEMON_KEYSTORE_CACHING_KEY_STORE_H_
#define KMS_DAEMON_KEYSTORE_CACHING_KEY_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "daemon/keystore/forwarding_key_store.h"

namespace kms::keystore {

class CachingKeyStore : public ForwardingKeyStore {
 public:
  struct Options {
    // Records kept per cache (keys, grant lists, aliases, versions).
    size_t max_entries = 100000;
    // Estimated bytes kept in all caches together.
    size_t max_bytes = size_t{64} << 20;
  };

  explicit CachingKeyStore(std::unique_ptr<KeyStore> inner)
      : CachingKeyStore(std::move(inner), Options()) {}
  CachingKeyStore(std::unique_ptr<KeyStore> inner, Options options)
      : ForwardingKeyStore(std::move(inner)), options_(options) {}

  // Cached reads.
  absl::StatusOr<KeyRecord> GetKey(absl::string_view key_id) override;
  absl::StatusOr<std::vector<GrantRecord>> ListGrantsForKey(absl::string_view key_id) override;
  absl::StatusOr<AliasRecord> GetAlias(absl::string_view alias_name) override;
  absl::StatusOr<KeyVersionRecord> GetVersion(absl::string_view version_id) override;

  // Writes: passed on, then the caches are cleared (ReserveEncryptions: the
  // version's record only).
  absl::Status CreateKey(const KeyRecord& key, const std::optional<KeyVersionRecord>& version,
                         const std::vector<TagRecord>& tags) override;
  absl::Status UpdateKey(const KeyRecord& key) override;
  absl::Status AddVersion(const KeyVersionRecord& version, const KeyRecord& key) override;
  absl::Status ReserveEncryptions(absl::string_view version_id, int64_t reserved) override;
  absl::Status DeleteKey(absl::string_view key_id) override;
  absl::Status CommitImport(const ImportCommit& commit) override;
  absl::Status MarkMaterialDeleted(const KeyRecord& key) override;
  absl::Status AddImportParameters(const ImportParametersRecord& record) override;
  absl::Status DeleteImportParameters(absl::string_view wrapping_key_id) override;
  absl::Status CreateAlias(const AliasRecord& alias) override;
  absl::Status UpdateAlias(absl::string_view alias_name, absl::string_view key_id,
                           absl::Time now) override;
  absl::Status DeleteAlias(absl::string_view alias_name) override;
  absl::Status AddGrant(const GrantRecord& grant) override;
  absl::Status DeleteGrant(absl::string_view grant_id) override;
  absl::Status PutTags(absl::string_view key_id, const std::vector<TagRecord>& tags) override;
  absl::Status RemoveTags(absl::string_view key_id,
                          const std::vector<std::string>& tag_keys) override;
  absl::StatusOr<int64_t> AddIntent(const Intent& intent) override;
  absl::Status RemoveIntent(int64_t id) override;

  // How many cached reads were answered from memory, and how many went to
  // the store (tests and diagnostics).
  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
  };
  Stats stats() const;

 private:
  struct Maps {
    absl::flat_hash_map<std::string, KeyRecord> keys;
    absl::flat_hash_map<std::string, std::vector<GrantRecord>> grants;
    absl::flat_hash_map<std::string, AliasRecord> aliases;
    absl::flat_hash_map<std::string, KeyVersionRecord> versions;
  };

  // The record under `id` in maps_.*map, or read() and keep what it found.
  template <typename Map, typename Read>
  auto Cached(Map Maps::*map, absl::string_view id, Read read) -> decltype(read());

  void ClearLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Clears every cache and moves the generation on, so that reads which
  // started before the write do not keep what they found. Returns `result`.
  template <typename Result>
  Result Cleared(Result result);

  const Options options_;
  mutable absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  Maps maps_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // estimated, of everything in maps_
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace kms::keystore

#endif  // KMS_DAEMON_KEYSTORE_CACHING_KEY_STORE_H_
