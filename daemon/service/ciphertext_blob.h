// CiphertextBlob: the self-describing ciphertext kmsd returns from Encrypt,
// GenerateDataKey and ReEncrypt, and its strict parser (a fuzz target:
// tests/fuzz/ciphertext_blob_fuzzer.cc).
//
// Format version 1, all of it written by kmsd, byte by byte:
//
//   offset  size  field
//   0       1     format version, 0x01
//   1       16    key id: the CMK's UUID as 16 raw bytes
//   17      16    key version id: the UUID of the key material used, raw
//   33      12    IV: 96 random bits from the HSM, fresh per encryption
//   45      n     AES-256-GCM ciphertext, n = plaintext length (1..4096)
//   45+n    16    GCM authentication tag
//
// The AES-GCM additional authenticated data is bytes 0..32 (version, key id,
// key version id) followed by the canonical encryption context
// (encryption_context.h). Changing the context, the key id, the version id or
// any other byte makes decryption fail. Decrypt needs no key id: the blob
// names its key and version. Total size 62..4157 bytes.
//
// Thread-safe: a value type.
#ifndef KMS_DAEMON_SERVICE_CIPHERTEXT_BLOB_H_
#define KMS_DAEMON_SERVICE_CIPHERTEXT_BLOB_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kms::service {

inline constexpr uint8_t kBlobFormatV1 = 0x01;
inline constexpr size_t kBlobHeaderSize = 45;   // through the IV
inline constexpr size_t kBlobAadHeaderSize = 33;  // version + key id + version id
inline constexpr size_t kBlobTagSize = 16;
inline constexpr size_t kBlobIvSize = 12;
inline constexpr size_t kMaxBlobPlaintext = 4096;
inline constexpr size_t kMinBlobSize = kBlobHeaderSize + 1 + kBlobTagSize;
inline constexpr size_t kMaxBlobSize = kBlobHeaderSize + kMaxBlobPlaintext + kBlobTagSize;

struct CiphertextBlob {
  std::string key_id;          // canonical UUID text
  std::string key_version_id;  // canonical UUID text
  std::string iv;              // 12 bytes
  std::string ciphertext;      // ciphertext || 16-byte tag

  // Parses a version-1 blob. Errors: kInvalidArgument with the
  // InvalidCiphertextException type and the same message for every cause
  // (wrong length, unknown version, bad UUID bytes).
  static absl::StatusOr<CiphertextBlob> Parse(absl::string_view bytes);

  // The wire form. Requires valid ids and a 12-byte IV (checked by callers
  // that build blobs: the service).
  std::string Serialize() const;

  // Bytes 0..32 of the wire form: the header part of the AAD.
  std::string AadHeader() const;
};

// The AAD for a blob: AadHeader() || CanonicalContext(context).
std::string BlobAad(const CiphertextBlob& blob, absl::string_view canonical_context);

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_CIPHERTEXT_BLOB_H_
