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

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/clock.h"
#include "daemon/common/secret_bytes.h"
#include "daemon/keystore/key_store.h"
#include "daemon/service/ciphertext_blob.h"
#include "daemon/service/encryption_context.h"
#include "daemon/service/validation.h"
#include "hsm/hsm.h"
#include "kms/v1/kms.pb.h"

namespace kms::service {

struct ServiceOptions {
  // Resource names are "<prefix>:key/<id>" and "<prefix>:alias/<name>".
  std::string resource_name_prefix = "arn:kmsd:kms:local:000000000000";
};

class KeyService {
 public:
  KeyService(hsm::Hsm& hsm, keystore::KeyStore& store, const Clock& clock,
             ServiceOptions options = {});
  KeyService(const KeyService&) = delete;
  KeyService& operator=(const KeyService&) = delete;

  // Start-up: rolls back or completes every intent a crash left behind
  // (removing HSM objects that never got a metadata row), then erases keys
  // whose deletion date has passed. Call once before serving.
  absl::Status Recover();

  // Erases every key whose deletion date is at or before Clock::Now(): its HSM
  // objects are destroyed, then its metadata, aliases and tags. Returns how
  // many keys were erased. A failure leaves the key PENDING_DELETION for the
  // next call. The daemon calls this periodically.
  absl::StatusOr<int> DeleteDueKeys();

  // ---- control plane: keys
  // CreateKey: ValidationException (description, usage, spec, origin),
  // TagException.
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

  // ---- data plane. Keys must be ENABLED: DisabledException for a disabled
  // key, KMSInvalidStateException for one pending deletion or import.
  // Encrypt: plaintext 1..4096 bytes.
  absl::StatusOr<v1::EncryptResponse> Encrypt(const v1::EncryptRequest& request);
  // Decrypt: InvalidCiphertextException for any blob that does not parse or
  // authenticate (including a wrong context and a blob naming an unknown key);
  // IncorrectKeyException when key_id is given and the blob is another key's.
  absl::StatusOr<v1::DecryptResponse> Decrypt(const v1::DecryptRequest& request);
  absl::StatusOr<v1::ReEncryptResponse> ReEncrypt(const v1::ReEncryptRequest& request);
  // GenerateDataKey*: exactly one of key_spec and number_of_bytes (1..1024).
  absl::StatusOr<v1::GenerateDataKeyResponse> GenerateDataKey(
      const v1::GenerateDataKeyRequest& request);
  absl::StatusOr<v1::GenerateDataKeyWithoutPlaintextResponse> GenerateDataKeyWithoutPlaintext(
      const v1::GenerateDataKeyWithoutPlaintextRequest& request);
  // GenerateRandom: number_of_bytes 1..1024, from the HSM.
  absl::StatusOr<v1::GenerateRandomResponse> GenerateRandom(
      const v1::GenerateRandomRequest& request);

  const ResourceNames& resource_names() const { return names_; }

 private:
  struct Decrypted {
    keystore::KeyRecord key;
    SecretBytes plaintext;
  };

  // Resolves a key_id argument (key id, alias, or resource name) to the key.
  // NotFoundException names what was asked for.
  absl::StatusOr<keystore::KeyRecord> ResolveKey(absl::string_view field,
                                                 absl::string_view key_id);
  // Resolves a key that must be named directly (alias targets), not via alias.
  absl::StatusOr<keystore::KeyRecord> ResolveKeyNotAlias(absl::string_view field,
                                                         absl::string_view key_id);
  v1::KeyMetadata ToMetadata(const keystore::KeyRecord& key) const;

  // Encrypts `plaintext` under the key's current version, binding `context`.
  absl::StatusOr<std::string> EncryptUnder(const keystore::KeyRecord& key,
                                           absl::string_view plaintext,
                                           const EncryptionContext& context);
  // Parses and decrypts a blob; `expected_key_field`/`expected_key_id`, when
  // the latter is non-empty, name the key the caller says the blob is for.
  absl::StatusOr<Decrypted> DecryptBlob(absl::string_view blob_bytes,
                                        const EncryptionContext& context,
                                        absl::string_view expected_key_field,
                                        absl::string_view expected_key_id);
  // Shared body of GenerateDataKey and GenerateDataKeyWithoutPlaintext.
  absl::StatusOr<std::pair<SecretBytes, std::string>> NewDataKey(
      absl::string_view key_id, const google::protobuf::Map<std::string, std::string>& context,
      const std::optional<int>& number_of_bytes, v1::DataKeySpec key_spec,
      keystore::KeyRecord* key_out);

  // EnableKey and DisableKey: ENABLED <-> DISABLED, a no-op when already there.
  absl::Status SetEnabled(absl::string_view key_id, bool enabled);

  // Removes one key's HSM objects and rows. Requires control_mu_.
  absl::Status EraseKey(const keystore::KeyRecord& key);

  hsm::Hsm& hsm_;
  keystore::KeyStore& store_;
  const Clock& clock_;
  const ResourceNames names_;
  absl::Mutex control_mu_;  // serialises control-plane read-modify-write
};

// The data-plane state rule: OK for ENABLED; DisabledException for DISABLED;
// KMSInvalidStateException otherwise. `name` is how the caller named the key.
absl::Status CheckUsableForCrypto(const keystore::KeyRecord& key, absl::string_view name);

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_KEY_SERVICE_H_
