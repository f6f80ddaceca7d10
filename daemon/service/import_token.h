// ImportToken: what GetParametersForImport hands out and ImportKeyMaterial
// takes back, and its strict parser.
//
// The token is opaque to callers; kmsd reads it back. It names the key it was
// issued for, the wrapping key pair in the HSM and the wrapping algorithm, and
// when it expires. Its integrity comes from a MAC made in the HSM (the service
// computes it: AES-GMAC under an HSM-held key, see KeyService), so a caller
// cannot point a token at another key, another wrapping key, another
// algorithm or a later expiry. Single use is enforced by the keystore: the
// token's ImportParametersRecord is removed when an import succeeds.
//
// Format version 1, byte by byte:
//
//   offset  size  field
//   0       1     format version, 0x01
//   1       16    wrapping key id: the UUID of the RSA pair, 16 raw bytes
//   17      16    key id: the CMK's UUID, 16 raw bytes
//   33      1     wrapping algorithm: 1 RSAES_OAEP_SHA_1, 2 RSAES_OAEP_SHA_256,
//                 3 RSA_AES_KEY_WRAP_SHA_1, 4 RSA_AES_KEY_WRAP_SHA_256
//   34      8     expiry, microseconds since the Unix epoch, signed big-endian
//   42      12    MAC IV: 96 random bits from the HSM
//   54      16    MAC: the AES-GCM tag of an empty plaintext under the token
//                 key, IV as above, AAD = kImportTokenMacLabel || bytes 0..41
//
// 70 bytes in all. Thread-safe: a value type.
#ifndef KMS_DAEMON_SERVICE_IMPORT_TOKEN_H_
#define KMS_DAEMON_SERVICE_IMPORT_TOKEN_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hsm/hsm.h"

namespace kms::service {

inline constexpr uint8_t kImportTokenFormatV1 = 0x01;
inline constexpr size_t kImportTokenBodySize = 42;  // through the expiry
inline constexpr size_t kImportTokenMacIvSize = 12;
inline constexpr size_t kImportTokenMacSize = 16;
inline constexpr size_t kImportTokenSize =
    kImportTokenBodySize + kImportTokenMacIvSize + kImportTokenMacSize;
// Domain separation: the token key MACs nothing else, but the label keeps a
// token body from ever being mistaken for other authenticated data.
inline constexpr absl::string_view kImportTokenMacLabel = "kmsd import token v1";

struct ImportToken {
  std::string wrapping_key_id;  // canonical UUID text
  std::string key_id;           // canonical UUID text
  hsm::WrappingAlgorithm algorithm = hsm::WrappingAlgorithm::kRsaesOaepSha1;
  absl::Time expiration_time;   // whole microseconds
  std::string mac_iv;           // 12 bytes
  std::string mac;              // 16 bytes

  // Parses a version-1 token. Does not check the MAC (the service does, in
  // the HSM). Errors: kInvalidArgument with the InvalidImportTokenException
  // type and one message for every cause (wrong length, unknown version or
  // algorithm, bad UUID bytes).
  static absl::StatusOr<ImportToken> Parse(absl::string_view bytes);

  // Bytes 0..41: what the MAC covers (after kImportTokenMacLabel). Requires
  // valid ids (checked by the service, which makes them).
  std::string Body() const;
  // The AAD of the MAC computation: kImportTokenMacLabel || Body().
  std::string MacAad() const;
  // The wire form: Body() || mac_iv || mac.
  std::string Serialize() const;
};

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_IMPORT_TOKEN_H_
