// Hsm: the daemon's only view of the hardware security module.
//
// Key objects are named by an object id (the token's CKA_ID; kmsd uses the key
// version id). Material created here never leaves the token: there is no call
// that returns a key's value. Every AES key object is created with the
// template DESIGN.md prescribes (token, private, sensitive, never extractable,
// no derive, encrypt/decrypt only), set explicitly, never left to defaults.
//
// Implementations: Pkcs11Hsm (hsm/pkcs11_hsm.h, any PKCS#11 module; SoftHSMv2
// in tests and the embedded default) and FakeHsm (tests/testing/fake_hsm.h,
// for service unit tests). Both pass tests/hsm/hsm_conformance_test.cc,
// tests/hsm/import_conformance_test.cc and
// tests/hsm/signing_conformance_test.cc. RecordingHsm (hsm/recording_hsm.h)
// decorates any of them to report each operation.
//
// Import of key material (AWS KMS "bring your own key") uses RSA wrapping
// key pairs generated here: the private half is sensitive, never extractable
// and unwrap-only, the public half is handed out (GetPublicKeyDer), and
// material wrapped under it is unwrapped straight into an AES key object with
// the same template as GenerateAesKey. Object ids form one namespace across
// AES keys, wrapping key pairs and signing key pairs (both halves of a pair
// carry the same id).
//
// Signing (the audit log's checkpoints) uses ECDSA P-256 key pairs generated
// here: the private half is sensitive, never extractable and sign-only, the
// public half is handed out (GetPublicKeyDer) so anyone can check a
// checkpoint with OpenSSL alone.
//
// Thread-safe. No method searches the token: object handles are looked up in
// an in-memory cache filled once when the HSM is opened.
//
// Errors common to every method: kUnavailable (token, session or module gone;
// retry later), kInternal (anything else the token reported).
#ifndef KMS_HSM_HSM_H_
#define KMS_HSM_HSM_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/common/secret_bytes.h"

namespace kms::hsm {

inline constexpr size_t kGcmIvSize = 12;    // bytes
inline constexpr size_t kGcmTagSize = 16;   // bytes
inline constexpr size_t kAesKeySize = 32;   // AES-256
inline constexpr size_t kKeyCheckValueSize = 3;   // bytes, the usual AES KCV
inline constexpr size_t kKeyFingerprintSize = 16;  // bytes, one AES block

// The block KeyFingerprint encrypts: fixed and kmsd-specific, and distinct
// from the all-zero block of the KCV, so a fingerprint and a KCV of one key
// are unrelated values.
inline constexpr absl::string_view kKeyFingerprintBlock = "kmsd-fingerprint";
static_assert(kKeyFingerprintBlock.size() == 16, "one AES block");

// How imported key material is wrapped, with AWS KMS's names:
//   kRsaesOaepSha1 / kRsaesOaepSha256: the 32 bytes of material encrypted
//     with RSAES-OAEP under the wrapping public key (MGF1 with the same hash,
//     empty label).
//   kRsaAesKeyWrapSha1 / kRsaAesKeyWrapSha256: a fresh AES key (the
//     ephemeral key) RSAES-OAEP-encrypted as above, followed by the material
//     wrapped with AES Key Wrap with Padding (RFC 5649) under the ephemeral
//     key; the RSA part is exactly as long as the modulus.
enum class WrappingAlgorithm {
  kRsaesOaepSha1,
  kRsaesOaepSha256,
  kRsaAesKeyWrapSha1,
  kRsaAesKeyWrapSha256,
};

// Every WrappingAlgorithm, in declaration order.
inline constexpr WrappingAlgorithm kAllWrappingAlgorithms[] = {
    WrappingAlgorithm::kRsaesOaepSha1,
    WrappingAlgorithm::kRsaesOaepSha256,
    WrappingAlgorithm::kRsaAesKeyWrapSha1,
    WrappingAlgorithm::kRsaAesKeyWrapSha256,
};

// The AWS KMS name: "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256",
// "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256".
absl::string_view WrappingAlgorithmName(WrappingAlgorithm algorithm);

// The AES key check value of `key` (16, 24 or 32 bytes), computed in this
// process with OpenSSL: the first 3 bytes of AES-ECB(key, 16 zero bytes), as
// Hsm::KeyCheckValue computes it inside the HSM. For candidate weak material
// (all zero, all 0xFF, one repeated byte), for kmsctl and for tests; never
// for a CMK's material, which kmsd never holds.
// Errors: kInvalidArgument (key not 16, 24 or 32 bytes), kInternal (OpenSSL).
absl::StatusOr<std::string> LocalKeyCheckValue(const SecretBytes& key);

// AES-ECB(key, kKeyFingerprintBlock), as Hsm::KeyFingerprint computes it
// inside the HSM. Same uses and errors as LocalKeyCheckValue.
absl::StatusOr<std::string> LocalKeyFingerprint(const SecretBytes& key);

// The security-relevant attributes of a key object, as the token reports
// them. Used by tests and start-up checks; never includes the value.
struct KeyAttributes {
  bool token = false;
  bool is_private = false;
  bool sensitive = false;
  bool always_sensitive = false;
  bool extractable = true;
  bool never_extractable = false;
  bool derive = true;
  bool encrypt = false;
  bool decrypt = false;
  bool wrap = false;
  bool unwrap = false;
  bool sign = true;
  // CKA_VALUE_LEN, in bytes; 0 for a wrapping key, and 0 for an imported
  // key on a module that does not record it (SoftHSM 2.6.1 leaves it unset
  // on unwrapped keys; UnwrapAesKey checks the length another way there).
  size_t value_len = 0;
  size_t modulus_bits = 0;  // of a wrapping key; 0 for an AES or signing key
};

class Hsm {
 public:
  virtual ~Hsm() = default;

  // Generates a new AES-256 key inside the token under `object_id`.
  // Errors: kAlreadyExists (any object with that id: an AES key, a wrapping
  // key or a signing key), kInvalidArgument (empty id or longer than 64
  // bytes).
  virtual absl::Status GenerateAesKey(absl::string_view object_id) = 0;

  // Destroys the AES key, or both halves of the wrapping or signing key pair,
  // with this id (crypto-erase). Errors: kNotFound (no such key).
  virtual absl::Status DestroyKey(absl::string_view object_id) = 0;

  // True if an AES key object with this id exists (wrapping and signing keys
  // are not AES keys: see ListWrappingKeyIds and ListSigningKeyIds).
  virtual bool HasKey(absl::string_view object_id) = 0;

  // The ids of every AES key object in the token, sorted. Used by the
  // start-up reconciler; served from the handle cache.
  virtual std::vector<std::string> ListKeyIds() = 0;

  // Attributes of an AES key object, or of the private half of a wrapping or
  // signing key pair (modulus_bits and value_len are 0 for a signing key).
  // Errors: kNotFound.
  virtual absl::StatusOr<KeyAttributes> GetKeyAttributes(absl::string_view object_id) = 0;

  // AES-GCM under the key `object_id` with a caller-chosen 12-byte `iv` and
  // additional authenticated data `aad`. Returns ciphertext || 16-byte tag.
  // Errors: kNotFound (no such key), kInvalidArgument (iv not 12 bytes).
  virtual absl::StatusOr<std::string> EncryptGcm(absl::string_view object_id,
                                                 absl::string_view iv,
                                                 absl::string_view plaintext,
                                                 absl::string_view aad) = 0;

  // Reverses EncryptGcm. `ciphertext` includes the tag.
  // Errors: kNotFound (no such key), kInvalidArgument (iv not 12 bytes,
  // ciphertext shorter than a tag, or authentication failed: wrong key, iv,
  // aad or any changed byte; all look the same).
  virtual absl::StatusOr<SecretBytes> DecryptGcm(absl::string_view object_id,
                                                 absl::string_view iv,
                                                 absl::string_view ciphertext,
                                                 absl::string_view aad) = 0;

  // `length` bytes from the token's random number generator.
  // Errors: kInvalidArgument (length 0 or over 65536).
  virtual absl::StatusOr<SecretBytes> GenerateRandom(size_t length) = 0;

  // ---- Import of key material.

  // The wrapping algorithms this HSM can unwrap without the material ever
  // being in the clear outside it, in declaration order. Fixed when the HSM
  // is opened (Pkcs11Hsm probes the token's mechanisms then).
  virtual std::vector<WrappingAlgorithm> SupportedWrappingAlgorithms() = 0;

  // Generates an RSA key pair with public exponent 65537 under `object_id`:
  // the private half is a token object that is private, sensitive, never
  // extractable and can only unwrap; the public half can wrap and encrypt.
  // Errors: kAlreadyExists (an AES key or a wrapping key with that id
  // exists, or a signing key), kInvalidArgument (id not 1..64 bytes,
  // modulus_bits not 2048, 3072 or 4096).
  virtual absl::Status GenerateRsaWrappingKey(absl::string_view object_id,
                                              int modulus_bits) = 0;

  // The ids of every wrapping key pair, sorted. Served from the handle cache.
  virtual std::vector<std::string> ListWrappingKeyIds() = 0;

  // The public half of the wrapping or signing key `object_id` as a DER
  // SubjectPublicKeyInfo: for a wrapping key what AWS KMS's
  // GetParametersForImport returns, for a signing key an id-ecPublicKey on
  // prime256v1 with the uncompressed point (`openssl pkey -pubin -inform DER`
  // reads both). Errors: kNotFound (no wrapping or signing key with that id).
  virtual absl::StatusOr<std::string> GetPublicKeyDer(absl::string_view object_id) = 0;

  // Unwraps `wrapped` (as `algorithm` describes) with the private half of
  // the wrapping key `wrapping_key_id` straight into a new AES key object
  // `new_object_id` with GenerateAesKey's template. The material is never in
  // the clear outside the HSM, and nothing is left behind on any failure
  // (neither the new object nor, for kRsaAesKeyWrap*, the ephemeral key).
  // Imported keys report always_sensitive and never_extractable false: the
  // material existed outside the HSM (PKCS#11 says so for unwrapped keys).
  // Errors:
  //   kInvalidArgument    new_object_id not 1..64 bytes; `wrapped` does not
  //                       unwrap (any corruption, another wrapping key, the
  //                       wrong algorithm: all look the same)
  //   kOutOfRange         it unwrapped, but the material is not 32 bytes (the
  //                       message gives its length, or the range it lies in
  //                       where the module does not record lengths)
  //   kNotFound           no wrapping key `wrapping_key_id` (an AES key id
  //                       is not one)
  //   kAlreadyExists      any object `new_object_id` exists
  //   kFailedPrecondition `algorithm` is not in SupportedWrappingAlgorithms()
  virtual absl::Status UnwrapAesKey(absl::string_view wrapping_key_id,
                                    WrappingAlgorithm algorithm, absl::string_view wrapped,
                                    absl::string_view new_object_id) = 0;

  // The key check value of the AES key `object_id`: the first 3 bytes of
  // AES-ECB(key, 16 zero bytes), computed in the HSM. KeyFingerprint is
  // AES-ECB(key, kKeyFingerprintBlock), 16 bytes, also computed in the HSM.
  // Both are deterministic functions of the material that do not reveal it:
  // a KCV is compared with LocalKeyCheckValue of known-weak candidates
  // (all zero, all 0xFF, one repeated byte) to refuse weak material, and
  // with an operator's expected KCV; the fingerprint, long enough to rule
  // out collisions, detects a re-import of different material and the same
  // material in two CMKs. Errors: kNotFound (no AES key with that id).
  virtual absl::StatusOr<std::string> KeyCheckValue(absl::string_view object_id) = 0;
  virtual absl::StatusOr<std::string> KeyFingerprint(absl::string_view object_id) = 0;

  // ---- Signing (the audit log's checkpoints).

  // Generates an ECDSA P-256 key pair under `object_id`: the private half a
  // token object that is private, sensitive, never extractable and can only
  // sign (CKA_SIGN true; decrypt, unwrap, derive false); the public half
  // verify-only. Object ids share one namespace with AES keys and wrapping
  // key pairs. Errors: kAlreadyExists (any object with that id),
  // kInvalidArgument (id not 1..64 bytes).
  virtual absl::Status GenerateEcSigningKey(absl::string_view object_id) = 0;

  // The ids of every signing key pair, sorted. Served from the handle cache.
  virtual std::vector<std::string> ListSigningKeyIds() = 0;

  // ECDSA P-256 over SHA-256(message): the hash is computed in this process
  // (CKM_ECDSA takes the hash), the signature in the HSM. Returns the DER
  // ECDSA-Sig-Value, so `openssl dgst -sha256 -verify pub.pem -signature s m`
  // checks it. ECDSA is randomised: two signatures of one message differ,
  // and both verify. Any message length, empty included.
  // Errors: kNotFound (no signing key with that id; an AES or wrapping key
  // id is not one).
  virtual absl::StatusOr<std::string> SignEcdsaP256Sha256(absl::string_view object_id,
                                                          absl::string_view message) = 0;
};

}  // namespace kms::hsm

#endif  // KMS_HSM_HSM_H_
