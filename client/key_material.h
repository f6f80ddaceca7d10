// Key material for import into kmsd ("bring your own key", as AWS KMS's
// GetParametersForImport / ImportKeyMaterial): wrapping it for a wrapping
// public key, key material files and their components, and key check values.
//
// Key material is always 32 raw bytes (an AES-256 key). It lives only in
// SecretBytes here; nothing in this file prints, logs or returns it in any
// other form. A key check value (KCV) is the first 3 bytes of
// AES-256-ECB(material, 16 zero bytes), written as 6 upper-case hex digits,
// as kmsd reports it (ImportKeyMaterialResponse.key_check_value): it
// identifies material without revealing it.
//
// A key material file holds exactly the 32 raw bytes: no hex, no base64, no
// newline. In a key ceremony N custodians each hold one component file; the
// material is the XOR of all N, so no one custodian knows the key.
//
// Thread-safe free functions (OpenSSL 3's RNG and EVP calls are).
#ifndef KMS_CLIENT_KEY_MATERIAL_H_
#define KMS_CLIENT_KEY_MATERIAL_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/common/secret_bytes.h"
#include "kms/v1/kms.pb.h"

namespace kms::client {

// The size of importable key material, in bytes.
inline constexpr size_t kKeyMaterialSize = 32;

// The encrypted_key_material of an ImportKeyMaterialRequest: `material`
// wrapped under `public_key_der` (a DER SubjectPublicKeyInfo of an RSA key, as
// GetParametersForImport returns it) as `algorithm` says (hsm/hsm.h,
// WrappingAlgorithm, draws the same bytes):
//   RSAES_OAEP_SHA_1 / _256:
//     RSA-OAEP(material), OAEP hash and MGF1 hash both SHA-1 / SHA-256,
//     empty label; exactly as long as the modulus.
//   RSA_AES_KEY_WRAP_SHA_1 / _256:
//     RSA-OAEP(K) as above, K a fresh random 32-byte AES key, then
//     AES-KWP(K, material) (AesKeyWrapWithPadding; 40 bytes for 32 bytes of
//     material). K is wiped before returning.
// Errors: kInvalidArgument (public_key_der is not a DER SubjectPublicKeyInfo
// of an RSA key, or has trailing bytes; material is not 32 bytes; algorithm
// unspecified or unknown), kInternal (OpenSSL failed otherwise, including
// the RNG).
absl::StatusOr<std::string> WrapKeyMaterial(absl::string_view public_key_der,
                                            v1::AlgorithmSpec algorithm,
                                            const SecretBytes& material);

// AES Key Wrap with Padding (RFC 5649, default alternative IV A65959A6) of
// `plaintext` (1 byte or more) under `kek` (16, 24 or 32 bytes: AES-128/192/
// 256). The output is the plaintext length rounded up to 8, plus 8 bytes.
// The layer RSA_AES_KEY_WRAP_* uses, with a 32-byte kek.
// Errors: kInvalidArgument (kek not 16, 24 or 32 bytes; plaintext empty),
// kInternal (OpenSSL).
absl::StatusOr<std::string> AesKeyWrapWithPadding(const SecretBytes& kek,
                                                  const SecretBytes& plaintext);

// The key material in `path`: exactly 32 raw bytes.
// Errors: kInvalidArgument naming the file and its size if it does not hold
// exactly 32 bytes; the errno's code (kNotFound, kPermissionDenied, ...) if
// it cannot be opened or read.
absl::StatusOr<SecretBytes> ReadKeyMaterialFile(const std::string& path);

// The XOR of `components` (2 or more, each 32 bytes): the material a key
// ceremony's component files make together.
// Errors: kInvalidArgument (fewer than 2 components, or one not 32 bytes).
absl::StatusOr<SecretBytes> CombineKeyComponents(const std::vector<SecretBytes>& components);

// The KCV of `material` (32 bytes) as 6 upper-case hex digits ("DC95C0" for
// 32 zero bytes).
// Errors: kInvalidArgument (material not 32 bytes), kInternal (OpenSSL).
absl::StatusOr<std::string> KeyCheckValue(const SecretBytes& material);

// `text` as a KCV: exactly 6 hex digits, either case; returns them upper-case.
// Errors: kInvalidArgument naming the rule and `text` (a KCV is not secret).
absl::StatusOr<std::string> ParseKeyCheckValue(absl::string_view text);

// Whether two KCVs are the same, ignoring case.
bool SameKeyCheckValue(absl::string_view a, absl::string_view b);

// 32 bytes of new key material from OpenSSL's CSPRNG (RAND_priv_bytes).
// Errors: kInternal if the RNG fails (not seeded).
absl::StatusOr<SecretBytes> GenerateKeyMaterial();

// Creates `path` (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600 whatever the
// umask), writes `material` to it in full, and syncs the file and its
// directory. Never overwrites or follows anything: an existing file or link
// at `path` is an error. A file this call created is removed again if a later
// step fails.
// Errors: kAlreadyExists (something exists at `path`), kInvalidArgument
// (material empty), else the errno's code of the failing step.
absl::Status WriteNewKeyMaterialFile(const std::string& path, const SecretBytes& material);

}  // namespace kms::client

#endif  // KMS_CLIENT_KEY_MATERIAL_H_
