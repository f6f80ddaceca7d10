// ForwardingKeyStore: a KeyStore that passes every call to another one. It is
// the base for stores that change a few methods and keep the rest: the
// caching store (caching_key_store.h), and test stores that pause or fail
// one method of a real store.
#ifndef KMS_DAEMON_KEYSTORE_FORWARDING_KEY_STORE_H_
#define KMS_DAEMON_KEYSTORE_FORWARDING_KEY_STORE_H_

#include <memory>
#include <utility>

#include "daemon/keystore/key_store.h"

namespace kms::keystore {

class ForwardingKeyStore : public KeyStore {
 public:
  explicit ForwardingKeyStore(std::unique_ptr<KeyStore> inner) : inner_(std::move(inner)) {}

  KeyStore& inner() { return *inner_; }

  absl::Status CreateKey(const KeyRecord& key, const std::optional<KeyVersionRecord>& version,
                         const std::vector<TagRecord>& tags) override {
    return inner_->CreateKey(key, version, tags);
  }
  absl::StatusOr<KeyRecord> GetKey(absl::string_view key_id) override {
    return inner_->GetKey(key_id);
  }
  absl::Status UpdateKey(const KeyRecord& key) override { return inner_->UpdateKey(key); }
  absl::Status AddVersion(const KeyVersionRecord& version, const KeyRecord& key) override {
    return inner_->AddVersion(version, key);
  }
  absl::StatusOr<std::vector<KeyRecord>> ListKeysDueForRotation(absl::Time t) override {
    return inner_->ListKeysDueForRotation(t);
  }
  absl::Status ReserveEncryptions(absl::string_view version_id, int64_t reserved) override {
    return inner_->ReserveEncryptions(version_id, reserved);
  }
  absl::StatusOr<Page<KeyRecord>> ListKeys(int limit, absl::string_view marker) override {
    return inner_->ListKeys(limit, marker);
  }
  absl::StatusOr<std::vector<KeyRecord>> ListKeysDueForDeletion(absl::Time t) override {
    return inner_->ListKeysDueForDeletion(t);
  }
  absl::Status DeleteKey(absl::string_view key_id) override { return inner_->DeleteKey(key_id); }
  absl::StatusOr<KeyVersionRecord> GetVersion(absl::string_view version_id) override {
    return inner_->GetVersion(version_id);
  }
  absl::StatusOr<std::vector<KeyVersionRecord>> ListVersions(absl::string_view key_id) override {
    return inner_->ListVersions(key_id);
  }
  absl::StatusOr<std::vector<KeyVersionRecord>> FindVersionsByFingerprint(
      absl::string_view fingerprint) override {
    return inner_->FindVersionsByFingerprint(fingerprint);
  }
  absl::StatusOr<std::vector<KeyRecord>> ListKeysWithExpiredMaterial(absl::Time t) override {
    return inner_->ListKeysWithExpiredMaterial(t);
  }
  absl::Status CommitImport(const ImportCommit& commit) override {
    return inner_->CommitImport(commit);
  }
  absl::Status MarkMaterialDeleted(const KeyRecord& key) override {
    return inner_->MarkMaterialDeleted(key);
  }
  absl::Status AddImportParameters(const ImportParametersRecord& record) override {
    return inner_->AddImportParameters(record);
  }
  absl::StatusOr<ImportParametersRecord> GetImportParameters(
      absl::string_view wrapping_key_id) override {
    return inner_->GetImportParameters(wrapping_key_id);
  }
  absl::Status DeleteImportParameters(absl::string_view wrapping_key_id) override {
    return inner_->DeleteImportParameters(wrapping_key_id);
  }
  absl::StatusOr<std::vector<ImportParametersRecord>> ListImportParameters(
      absl::string_view key_id) override {
    return inner_->ListImportParameters(key_id);
  }
  absl::StatusOr<std::vector<ImportParametersRecord>> ListExpiredImportParameters(
      absl::Time t) override {
    return inner_->ListExpiredImportParameters(t);
  }
  absl::Status CreateAlias(const AliasRecord& alias) override { return inner_->CreateAlias(alias); }
  absl::Status UpdateAlias(absl::string_view alias_name, absl::string_view key_id,
                           absl::Time now) override {
    return inner_->UpdateAlias(alias_name, key_id, now);
  }
  absl::Status DeleteAlias(absl::string_view alias_name) override {
    return inner_->DeleteAlias(alias_name);
  }
  absl::StatusOr<AliasRecord> GetAlias(absl::string_view alias_name) override {
    return inner_->GetAlias(alias_name);
  }
  absl::StatusOr<Page<AliasRecord>> ListAliases(const std::optional<std::string>& key_id, int limit,
                                                absl::string_view marker) override {
    return inner_->ListAliases(key_id, limit, marker);
  }
  absl::Status AddGrant(const GrantRecord& grant) override { return inner_->AddGrant(grant); }
  absl::StatusOr<GrantRecord> GetGrant(absl::string_view grant_id) override {
    return inner_->GetGrant(grant_id);
  }
  absl::StatusOr<GrantRecord> FindGrantByTokenHash(absl::string_view token_hash) override {
    return inner_->FindGrantByTokenHash(token_hash);
  }
  absl::StatusOr<std::vector<GrantRecord>> ListGrantsForKey(absl::string_view key_id) override {
    return inner_->ListGrantsForKey(key_id);
  }
  absl::StatusOr<Page<GrantRecord>> ListGrants(absl::string_view key_id, const GrantFilter& filter,
                                               int limit, absl::string_view marker) override {
    return inner_->ListGrants(key_id, filter, limit, marker);
  }
  absl::StatusOr<int64_t> CountGrants(absl::string_view key_id) override {
    return inner_->CountGrants(key_id);
  }
  absl::Status DeleteGrant(absl::string_view grant_id) override {
    return inner_->DeleteGrant(grant_id);
  }
  absl::Status PutTags(absl::string_view key_id, const std::vector<TagRecord>& tags) override {
    return inner_->PutTags(key_id, tags);
  }
  absl::Status RemoveTags(absl::string_view key_id,
                          const std::vector<std::string>& tag_keys) override {
    return inner_->RemoveTags(key_id, tag_keys);
  }
  absl::StatusOr<std::vector<TagRecord>> ListTags(absl::string_view key_id) override {
    return inner_->ListTags(key_id);
  }
  absl::StatusOr<int64_t> AddIntent(const Intent& intent) override {
    return inner_->AddIntent(intent);
  }
  absl::Status RemoveIntent(int64_t id) override { return inner_->RemoveIntent(id); }
  absl::StatusOr<std::vector<Intent>> ListIntents() override { return inner_->ListIntents(); }

 private:
  std::unique_ptr<KeyStore> inner_;
};

}  // namespace kms::keystore

#endif  // KMS_DAEMON_KEYSTORE_FORWARDING_KEY_STORE_H_
