// UUIDs: kmsd's key ids and key version ids are random (version 4) UUIDs,
// written in canonical lower-case form ("1234abcd-12ab-34cd-56ef-1234567890ab")
// and stored in ciphertext blobs as their 16 raw bytes. Thread-safe.
#ifndef KMS_DAEMON_COMMON_UUID_H_
#define KMS_DAEMON_COMMON_UUID_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace kms {

inline constexpr size_t kUuidBytes = 16;

// A new random v4 UUID in canonical form, from OpenSSL's CSPRNG. Each thread
// draws random bytes for 64 ids at a time and hands them out in turn (ids are
// not secret); a child process started by fork() draws afresh.
std::string NewUuid();

// The 16 raw bytes of a canonical UUID string; nullopt unless `text` is exactly
// 36 characters of lower-case hex in 8-4-4-4-12 groups.
std::optional<std::string> UuidToBytes(absl::string_view text);

// The canonical form of 16 raw bytes; nullopt unless `bytes` is 16 bytes long.
std::optional<std::string> UuidFromBytes(absl::string_view bytes);

}  // namespace kms

#endif  // KMS_DAEMON_COMMON_UUID_H_
