// ContextHasher: keyed hashes of encryption-context values for the audit log.
//
// The audit log must let an auditor match records that used the same context
// value ("every call with tenant=acme") without ever holding the value in
// clear, and without the dictionary attack a plain hash of a short value
// invites. So each value is written as HMAC-SHA256 under a 32-byte key that
// only kmsd holds, truncated to 16 bytes, in lower-case hex.
//
// The HMAC key is made by the HSM's RNG and kept on disk sealed (AES-256-GCM)
// under a non-extractable HSM AES key, object id kContextSealingKeyId; it is
// unsealed into a SecretBytes at start-up and never logged.
//
// Sealed file layout (60 bytes): IV (12) || ciphertext (32) || GCM tag (16),
// additional authenticated data kContextSealingAad.
//
// Thread-safe after construction (Hash is const; it only copies the keyed
// states made at construction).
#ifndef KMS_DAEMON_AUDIT_CONTEXT_HASHER_H_
#define KMS_DAEMON_AUDIT_CONTEXT_HASHER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/common/secret_bytes.h"
#include "hsm/hsm.h"

namespace kms::audit {

inline constexpr absl::string_view kContextSealingKeyId = "kmsd-audit-context-key";
inline constexpr absl::string_view kContextSealingAad = "kmsd-audit-context-key-v1";
inline constexpr size_t kContextHmacKeySize = 32;

class ContextHasher {
 public:
  // Errors: kInvalidArgument (key not 32 bytes).
  static absl::StatusOr<ContextHasher> FromKey(SecretBytes key);

  ContextHasher(ContextHasher&&) = default;
  ContextHasher& operator=(ContextHasher&&) = default;

  // Lower-case hex of the first 16 bytes of HMAC-SHA256(key, value).
  std::string Hash(absl::string_view value) const;

 private:
  // HMAC's two SHA-256 states with the key's inner and outer pads already
  // absorbed (RFC 2104). Hash copies them rather than re-keying: OpenSSL's
  // one-shot HMAC() costs about 2 us against 0.35 us, and a call hashes
  // every context value. The states derive from the key; OpenSSL wipes them
  // when they are freed.
  struct Pads;
  explicit ContextHasher(std::shared_ptr<const Pads> pads) : pads_(std::move(pads)) {}
  std::shared_ptr<const Pads> pads_;
};

// Unseals the HMAC key from `sealed_path`, or makes one on first use (the HSM
// sealing key too if it is missing) and writes it there atomically (0600,
// fsync'd). If the sealing key exists but the file does not, a new HMAC key is
// made and a WARNING logged: earlier records' context hashes can then no
// longer be matched with new ones.
// Errors: kFailedPrecondition (the file exists but the HSM has no sealing
// key), kDataLoss (the file is not 60 bytes or does not unseal),
// kUnavailable (reading or writing the file failed, or the HSM is briefly
// gone), kInternal (anything else the HSM reported).
absl::StatusOr<ContextHasher> LoadOrCreateContextHasher(hsm::Hsm& hsm,
                                                        const std::string& sealed_path);

}  // namespace kms::audit

#endif  // KMS_DAEMON_AUDIT_CONTEXT_HASHER_H_
