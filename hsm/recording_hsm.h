// RecordingHsm: an Hsm decorator that reports every operation that goes to
// the token, for the audit log ("down to the HSM calls", DESIGN.md) and for
// metrics.
//
//   RecordingHsm hsm(pkcs11_hsm, [&](const HsmCall& call) { audit.RecordHsmCall(call); });
//   hsm.EncryptGcm(...);  // forwarded, then one HsmCall{"C_Encrypt", "CKM_AES_GCM", id, "CKR_OK"}
//
// Each method forwards to the wrapped Hsm, then hands the recorder one
// HsmCall naming the PKCS#11 function and mechanism that do the work, with
// the result. Return values and statuses pass through unchanged. Every call
// of a method that goes to the token is recorded, failures included, even
// one the implementation refused before reaching the module (a bad id, an
// unknown key): a decorator cannot tell the two apart, and an audit wants
// the attempt. Calls answered from the in-memory handle cache (HasKey,
// ListKeyIds, ListWrappingKeyIds, ListSigningKeyIds,
// SupportedWrappingAlgorithms) are not recorded.
//
// An HsmCall never holds a secret or caller data: no plaintext, ciphertext,
// data key, AAD, message, signature or wrapped material; only object ids
// (kmsd's key version ids) and status messages, which by kmsd's rules never
// carry secrets either.
//
// Borrows the wrapped Hsm, which must outlive it. Thread-safe if the wrapped
// Hsm and the recorder are: the recorder runs on the calling thread, after
// the call returns, once per call, possibly concurrently.
#ifndef KMS_HSM_RECORDING_HSM_H_
#define KMS_HSM_RECORDING_HSM_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/common/secret_bytes.h"
#include "hsm/hsm.h"

namespace kms::hsm {

// One operation that went to the HSM.
struct HsmCall {
  // The PKCS#11 function that does the work: "C_Encrypt", "C_Decrypt",
  // "C_GenerateKey", "C_GenerateKeyPair", "C_DestroyObject",
  // "C_GenerateRandom", "C_UnwrapKey", "C_Sign", "C_GetAttributeValue".
  std::string function;
  // "CKM_AES_GCM", "CKM_AES_ECB", "CKM_ECDSA", ...; empty when the function
  // takes none.
  std::string mechanism;
  // The object concerned (for C_UnwrapKey, the new key); empty for
  // C_GenerateRandom.
  std::string object_id;
  // "CKR_OK", or the failure as "<CODE>: <message>" (absl code name, e.g.
  // "NOT_FOUND: no AES key with id 'k'").
  std::string result;

  bool operator==(const HsmCall& other) const {
    return function == other.function && mechanism == other.mechanism &&
           object_id == other.object_id && result == other.result;
  }
};

// The PKCS#11 mechanism that unwraps `algorithm`: "CKM_RSA_PKCS_OAEP" or
// "CKM_RSA_AES_KEY_WRAP" (whatever steps an implementation takes for it).
absl::string_view UnwrapMechanismName(WrappingAlgorithm algorithm);

class RecordingHsm final : public Hsm {
 public:
  using Recorder = std::function<void(const HsmCall&)>;

  // Borrows `inner`. A null `recorder` records nothing.
  RecordingHsm(Hsm& inner, Recorder recorder);
  RecordingHsm(const RecordingHsm&) = delete;
  RecordingHsm& operator=(const RecordingHsm&) = delete;

  // Hsm: as the wrapped Hsm, which gives the errors.
  absl::Status GenerateAesKey(absl::string_view object_id) override;
  absl::Status DestroyKey(absl::string_view object_id) override;
  bool HasKey(absl::string_view object_id) override;
  std::vector<std::string> ListKeyIds() override;
  absl::StatusOr<KeyAttributes> GetKeyAttributes(absl::string_view object_id) override;
  absl::StatusOr<std::string> EncryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view plaintext,
                                         absl::string_view aad) override;
  absl::StatusOr<SecretBytes> DecryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view ciphertext,
                                         absl::string_view aad) override;
  absl::StatusOr<SecretBytes> GenerateRandom(size_t length) override;
  std::vector<WrappingAlgorithm> SupportedWrappingAlgorithms() override;
  absl::Status GenerateRsaWrappingKey(absl::string_view object_id, int modulus_bits) override;
  std::vector<std::string> ListWrappingKeyIds() override;
  absl::StatusOr<std::string> GetPublicKeyDer(absl::string_view object_id) override;
  absl::Status UnwrapAesKey(absl::string_view wrapping_key_id, WrappingAlgorithm algorithm,
                            absl::string_view wrapped,
                            absl::string_view new_object_id) override;
  absl::StatusOr<std::string> KeyCheckValue(absl::string_view object_id) override;
  absl::StatusOr<std::string> KeyFingerprint(absl::string_view object_id) override;
  absl::Status GenerateEcSigningKey(absl::string_view object_id) override;
  std::vector<std::string> ListSigningKeyIds() override;
  absl::StatusOr<std::string> SignEcdsaP256Sha256(absl::string_view object_id,
                                                  absl::string_view message) override;

 private:
  // Reports one call with `status` as its result.
  void Report(absl::string_view function, absl::string_view mechanism,
              absl::string_view object_id, const absl::Status& status) const;

  Hsm& inner_;
  const Recorder recorder_;
};

}  // namespace kms::hsm

#endif  // KMS_HSM_RECORDING_HSM_H_
