// FakeHsm: an in-memory Hsm for service unit tests.
//
// AES-256-GCM in OpenSSL (EVP), keys from RAND_bytes held in SecretBytes.
// Reports the attributes Pkcs11Hsm's template produces (token, private,
// sensitive, never extractable, encrypt/decrypt only, 32 bytes) and the same
// error codes for the same inputs as the interface comments in hsm/hsm.h
// promise; tests/hsm/hsm_conformance_test.cc runs one suite against both so
// they cannot drift apart. It never returns kUnavailable or kInternal; wrap it
// in FaultInjectingHsm for those.
//
// Import: RSA wrapping keys are OpenSSL EVP_PKEYs in memory; unwrapping is
// RSA-OAEP (SHA-1 or SHA-256, MGF1 with the same hash) and AES Key Wrap with
// Padding in OpenSSL. Being a fake, it supports all four wrapping algorithms
// whatever a real token can do, so tests that compare it with a real HSM use
// only the algorithms both report.
//
// Signing: ECDSA P-256 key pairs are OpenSSL EVP_PKEYs in memory, signing
// with EVP_DigestSign (SHA-256), which gives the same DER ECDSA-Sig-Value
// Pkcs11Hsm assembles from CKM_ECDSA's r || s.
//
// Owns its keys; they vanish with it. Thread-safe.
#ifndef KMS_TESTS_TESTING_FAKE_HSM_H_
#define KMS_TESTS_TESTING_FAKE_HSM_H_

#include <openssl/evp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/secret_bytes.h"
#include "hsm/hsm.h"

namespace kms::testing {

class FakeHsm final : public hsm::Hsm {
 public:
  FakeHsm() = default;
  FakeHsm(const FakeHsm&) = delete;
  FakeHsm& operator=(const FakeHsm&) = delete;

  absl::Status GenerateAesKey(absl::string_view object_id) override;
  absl::Status DestroyKey(absl::string_view object_id) override;
  bool HasKey(absl::string_view object_id) override;
  std::vector<std::string> ListKeyIds() override;
  absl::StatusOr<hsm::KeyAttributes> GetKeyAttributes(absl::string_view object_id) override;
  absl::StatusOr<std::string> EncryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view plaintext,
                                         absl::string_view aad) override;
  absl::StatusOr<SecretBytes> DecryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view ciphertext,
                                         absl::string_view aad) override;
  absl::StatusOr<SecretBytes> GenerateRandom(size_t length) override;
  std::vector<hsm::WrappingAlgorithm> SupportedWrappingAlgorithms() override;
  absl::Status GenerateRsaWrappingKey(absl::string_view object_id, int modulus_bits) override;
  std::vector<std::string> ListWrappingKeyIds() override;
  absl::StatusOr<std::string> GetPublicKeyDer(absl::string_view object_id) override;
  absl::Status UnwrapAesKey(absl::string_view wrapping_key_id, hsm::WrappingAlgorithm algorithm,
                            absl::string_view wrapped,
                            absl::string_view new_object_id) override;
  absl::StatusOr<std::string> KeyCheckValue(absl::string_view object_id) override;
  absl::StatusOr<std::string> KeyFingerprint(absl::string_view object_id) override;
  absl::Status GenerateEcSigningKey(absl::string_view object_id) override;
  std::vector<std::string> ListSigningKeyIds() override;
  absl::StatusOr<std::string> SignEcdsaP256Sha256(absl::string_view object_id,
                                                  absl::string_view message) override;

 private:
  struct AesKey {
    SecretBytes material;
    bool imported = false;  // unwrapped: never "always sensitive"
  };
  using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

  bool IdTaken(const std::string& id) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return keys_.count(id) > 0 || wrapping_keys_.count(id) > 0 || signing_keys_.count(id) > 0;
  }
  // " (that id names an AES key)" and the like; "" if the id is free.
  std::string OtherKindNote(const std::string& id) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<std::string, AesKey> keys_ ABSL_GUARDED_BY(mu_);          // by object id
  std::map<std::string, Pkey> wrapping_keys_ ABSL_GUARDED_BY(mu_);   // by object id
  std::map<std::string, Pkey> signing_keys_ ABSL_GUARDED_BY(mu_);    // by object id
};

}  // namespace kms::testing

#endif  // KMS_TESTS_TESTING_FAKE_HSM_H_
