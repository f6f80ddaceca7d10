#include "hsm/recording_hsm.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kms::hsm {
absl::string_view UnwrapMechanismName(WrappingAlgorithm algorithm) {
  switch (algorithm) {
    case WrappingAlgorithm::kRsaesOaepSha1:
    case WrappingAlgorithm::kRsaesOaepSha256:
      return "CKM_RSA_PKCS_OAEP";
    case WrappingAlgorithm::kRsaAesKeyWrapSha1:
    case WrappingAlgorithm::kRsaAesKeyWrapSha256:
      return "CKM_RSA_AES_KEY_WRAP";
  }
  return "";
}

RecordingHsm::RecordingHsm(Hsm& inner, Recorder recorder)
    : inner_(inner), recorder_(std::move(recorder)) {}

void RecordingHsm::Report(absl::string_view function, absl::string_view mechanism,
                          absl::string_view object_id, const absl::Status& status) const {
  if (!recorder_) return;
  HsmCall call;
  call.function = std::string(function);
  call.mechanism = std::string(mechanism);
  call.object_id = std::string(object_id);
  // Code and message only: Status::ToString would add payloads (the AWS
  // error type and the like), which are not the HSM's answer.
  call.result = status.ok() ? "CKR_OK"
                            : absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                           status.message());
  recorder_(call);
}

// Each recorded method: forward, report, return the result untouched. The
// arguments reported are ids only; see the header on secrets.

absl::Status RecordingHsm::GenerateAesKey(absl::string_view object_id) {
  absl::Status status = inner_.GenerateAesKey(object_id);
  Report("C_GenerateKey", "CKM_AES_KEY_GEN", object_id, status);
  return status;
}

absl::Status RecordingHsm::DestroyKey(absl::string_view object_id) {
  absl::Status status = inner_.DestroyKey(object_id);
  Report("C_DestroyObject", "", object_id, status);
  return status;
}

bool RecordingHsm::HasKey(absl::string_view object_id) { return inner_.HasKey(object_id); }

std::vector<std::string> RecordingHsm::ListKeyIds() { return inner_.ListKeyIds(); }

absl::StatusOr<KeyAttributes> RecordingHsm::GetKeyAttributes(absl::string_view object_id) {
  absl::StatusOr<KeyAttributes> result = inner_.GetKeyAttributes(object_id);
  Report("C_GetAttributeValue", "", object_id, result.status());
  return result;
}

absl::StatusOr<std::string> RecordingHsm::EncryptGcm(absl::string_view object_id,
                                                     absl::string_view iv,
                                                     absl::string_view plaintext,
                                                     absl::string_view aad) {
  absl::StatusOr<std::string> result = inner_.EncryptGcm(object_id, iv, plaintext, aad);
  Report("C_Encrypt", "CKM_AES_GCM", object_id, result.status());
  return result;
}

absl::StatusOr<SecretBytes> RecordingHsm::DecryptGcm(absl::string_view object_id,
                                                     absl::string_view iv,
                                                     absl::string_view ciphertext,
                                                     absl::string_view aad) {
  absl::StatusOr<SecretBytes> result = inner_.DecryptGcm(object_id, iv, ciphertext, aad);
  Report("C_Decrypt", "CKM_AES_GCM", object_id, result.status());
  return result;
}

absl::StatusOr<SecretBytes> RecordingHsm::GenerateRandom(size_t length) {
  absl::StatusOr<SecretBytes> result = inner_.GenerateRandom(length);
  Report("C_GenerateRandom", "", "", result.status());
  return result;
}

std::vector<WrappingAlgorithm> RecordingHsm::SupportedWrappingAlgorithms() {
  return inner_.SupportedWrappingAlgorithms();
}

absl::Status RecordingHsm::GenerateRsaWrappingKey(absl::string_view object_id,
                                                  int modulus_bits) {
  absl::Status status = inner_.GenerateRsaWrappingKey(object_id, modulus_bits);
  Report("C_GenerateKeyPair", "CKM_RSA_PKCS_KEY_PAIR_GEN", object_id, status);
  return status;
}

std::vector<std::string> RecordingHsm::ListWrappingKeyIds() {
  return inner_.ListWrappingKeyIds();
}

absl::StatusOr<std::string> RecordingHsm::GetPublicKeyDer(absl::string_view object_id) {
  absl::StatusOr<std::string> result = inner_.GetPublicKeyDer(object_id);
  Report("C_GetAttributeValue", "", object_id, result.status());
  return result;
}

absl::Status RecordingHsm::UnwrapAesKey(absl::string_view wrapping_key_id,
                                        WrappingAlgorithm algorithm, absl::string_view wrapped,
                                        absl::string_view new_object_id) {
  absl::Status status = inner_.UnwrapAesKey(wrapping_key_id, algorithm, wrapped, new_object_id);
  Report("C_UnwrapKey", UnwrapMechanismName(algorithm), new_object_id, status);
  return status;
}

absl::StatusOr<std::string> RecordingHsm::KeyCheckValue(absl::string_view object_id) {
  absl::StatusOr<std::string> result = inner_.KeyCheckValue(object_id);
  Report("C_Encrypt", "CKM_AES_ECB", object_id, result.status());
  return result;
}

absl::StatusOr<std::string> RecordingHsm::KeyFingerprint(absl::string_view object_id) {
  absl::StatusOr<std::string> result = inner_.KeyFingerprint(object_id);
  Report("C_Encrypt", "CKM_AES_ECB", object_id, result.status());
  return result;
}

absl::Status RecordingHsm::GenerateEcSigningKey(absl::string_view object_id) {
  absl::Status status = inner_.GenerateEcSigningKey(object_id);
  Report("C_GenerateKeyPair", "CKM_EC_KEY_PAIR_GEN", object_id, status);
  return status;
}

std::vector<std::string> RecordingHsm::ListSigningKeyIds() { return inner_.ListSigningKeyIds(); }

absl::StatusOr<std::string> RecordingHsm::SignEcdsaP256Sha256(absl::string_view object_id,
                                                              absl::string_view message) {
  absl::StatusOr<std::string> result = inner_.SignEcdsaP256Sha256(object_id, message);
  Report("C_Sign", "CKM_ECDSA", object_id, result.status());
  return result;
}

}  // namespace kms::hsm
