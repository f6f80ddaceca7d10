// Encryption context: the string pairs bound to every ciphertext as
// authenticated data, and their canonical byte form.
//
// Canonical form (what goes into the AES-GCM AAD after the blob header), with
// pairs sorted by key bytes so the order a caller gives them in never matters:
//
//   u32 count                        big-endian number of pairs
//   repeated count times:
//     u32 key_length   key bytes     big-endian length, then the key
//     u32 value_length value bytes   big-endian length, then the value
//
// Length prefixes make the encoding injective: no two different contexts
// share a canonical form ({"a":"bc"} and {"ab":"c"} differ).
// Thread-safe: values and free functions.
#ifndef KMS_DAEMON_SERVICE_ENCRYPTION_CONTEXT_H_
#define KMS_DAEMON_SERVICE_ENCRYPTION_CONTEXT_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace kms::service {

using EncryptionContext = std::map<std::string, std::string>;

inline constexpr size_t kMaxContextPairs = 64;
inline constexpr size_t kMaxContextKeyBytes = 256;
inline constexpr size_t kMaxContextBytes = 8192;  // all keys and values together

// Copies a request's context into sorted form.
EncryptionContext ContextFromProto(const google::protobuf::Map<std::string, std::string>& map);

// Checks the context's limits. Errors: kInvalidArgument (ValidationException)
// naming `field` and the rule broken: more than 64 pairs, an empty key, a key
// over 256 bytes, or more than 8192 bytes of keys and values in all.
absl::Status ValidateContext(const EncryptionContext& context, absl::string_view field);

// The canonical byte form described above.
std::string CanonicalContext(const EncryptionContext& context);

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_ENCRYPTION_CONTEXT_H_
