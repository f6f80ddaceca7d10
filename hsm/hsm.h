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
// for service unit tests). Both pass tests/hsm/hsm_conformance_test.cc.
//
// Thread-safe. No method searches the token: object handles are looked up in
// an in-memory cache filled once when the HSM is opened.
//
// Errors common to every method: kUnavailable (token, session or module gone;
// retry later), kInternal (anything else the token reported).
#ifndef KMS_HSM_HSM_H_
#define KMS_HSM_HSM_H_

#include <cstddef>
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
  size_t value_len = 0;  // CKA_VALUE_LEN, in bytes
};

class Hsm {
 public:
  virtual ~Hsm() = default;

  // Generates a new AES-256 key inside the token under `object_id`.
  // Errors: kAlreadyExists (an object with that id exists), kInvalidArgument
  // (empty id or longer than 64 bytes).
  virtual absl::Status GenerateAesKey(absl::string_view object_id) = 0;

  // Destroys the key object (crypto-erase). Errors: kNotFound (no such key).
  virtual absl::Status DestroyKey(absl::string_view object_id) = 0;

  // True if a key object with this id exists.
  virtual bool HasKey(absl::string_view object_id) = 0;

  // The ids of every AES key object in the token, sorted. Used by the
  // start-up reconciler; served from the handle cache.
  virtual std::vector<std::string> ListKeyIds() = 0;

  // Attributes of a key object. Errors: kNotFound.
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
};

}  // namespace kms::hsm

#endif  // KMS_HSM_HSM_H_
