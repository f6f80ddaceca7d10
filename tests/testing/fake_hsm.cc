#include "tests/testing/fake_hsm.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/status_macros.h"

namespace kms::testing {
namespace {

// The same limits and messages as Pkcs11Hsm.
constexpr size_t kMaxObjectIdSize = 64;
constexpr size_t kMaxRandomSize = 65536;

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

absl::Status NoSuchKey(absl::string_view object_id) {
  return absl::NotFoundError(
      absl::StrCat("no AES key with id '", absl::CHexEscape(object_id), "'"));
}

absl::Status CheckIv(absl::string_view iv) {
  if (iv.size() != hsm::kGcmIvSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("GCM IV must be ", hsm::kGcmIvSize, " bytes, got ", iv.size()));
  }
  return absl::OkStatus();
}

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

absl::Status CheckEvpSize(absl::string_view what, size_t size) {
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(what, " too long: ", size, " bytes"));
  }
  return absl::OkStatus();
}

// A cipher context set up for AES-256-GCM with `key` and `iv`, with `aad`
// already fed in.
absl::StatusOr<CipherContext> GcmContext(bool encrypt, const SecretBytes& key,
                                         absl::string_view iv, absl::string_view aad) {
  KMS_RETURN_IF_ERROR(CheckEvpSize("AAD", aad.size()));
  CipherContext ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  const int enc = encrypt ? 1 : 0;
  int ignored = 0;
  if (ctx == nullptr ||
      EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()),
                          nullptr) != 1 ||
      EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, key.data(), Bytes(iv), enc) != 1 ||
      (!aad.empty() && EVP_CipherUpdate(ctx.get(), nullptr, &ignored, Bytes(aad),
                                        static_cast<int>(aad.size())) != 1)) {
    return absl::InternalError("OpenSSL AES-GCM set-up failed");
  }
  return ctx;
}

absl::Status CheckObjectId(absl::string_view object_id) {
  if (object_id.empty() || object_id.size() > kMaxObjectIdSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "object id must be 1..", kMaxObjectIdSize, " bytes, got ", object_id.size()));
  }
  return absl::OkStatus();
}

absl::Status IdExists(absl::string_view object_id) {
  return absl::AlreadyExistsError(
      absl::StrCat("a key with id '", absl::CHexEscape(object_id), "' already exists"));
}

absl::Status NoSuchWrappingKey(absl::string_view object_id, absl::string_view note) {
  return absl::NotFoundError(
      absl::StrCat("no RSA wrapping key with id '", absl::CHexEscape(object_id), "'", note));
}

// Every unwrap failure looks the same to the caller, as on a token.
absl::Status DidNotUnwrap() {
  ERR_clear_error();
  return absl::InvalidArgumentError("wrapped key material did not unwrap");
}

// RSAES-OAEP decryption of `ciphertext` with `md` for both OAEP and MGF1.
absl::StatusOr<SecretBytes> OaepDecrypt(EVP_PKEY* key, const EVP_MD* md,
                                        absl::string_view ciphertext) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new(key, nullptr), &EVP_PKEY_CTX_free);
  size_t size = 0;
  if (ctx == nullptr || EVP_PKEY_decrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
      EVP_PKEY_decrypt(ctx.get(), nullptr, &size, Bytes(ciphertext), ciphertext.size()) != 1) {
    ERR_clear_error();
    return absl::InternalError("OpenSSL RSA-OAEP set-up failed");
  }
  SecretBytes plaintext(size);
  if (EVP_PKEY_decrypt(ctx.get(), plaintext.mutable_data(), &size, Bytes(ciphertext),
                       ciphertext.size()) != 1) {
    return DidNotUnwrap();
  }
  plaintext.Truncate(size);
  return plaintext;
}

// AES Key Wrap with Padding (RFC 5649) unwrap of `wrapped` under `kek`.
absl::StatusOr<SecretBytes> KwpUnwrap(const SecretBytes& kek, absl::string_view wrapped) {
  const EVP_CIPHER* cipher = nullptr;
  switch (kek.size()) {
    case 16: cipher = EVP_aes_128_wrap_pad(); break;
    case 24: cipher = EVP_aes_192_wrap_pad(); break;
    case 32: cipher = EVP_aes_256_wrap_pad(); break;
    default: return DidNotUnwrap();
  }
  if (wrapped.size() < 16 || wrapped.size() % 8 != 0) return DidNotUnwrap();
  KMS_RETURN_IF_ERROR(CheckEvpSize("wrapped key", wrapped.size()));
  CipherContext ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  if (ctx == nullptr) return absl::InternalError("OpenSSL: no cipher context");
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  SecretBytes material(wrapped.size());
  int size = 0;
  int final_size = 0;
  if (EVP_DecryptInit_ex(ctx.get(), cipher, nullptr, kek.data(), nullptr) != 1 ||
      EVP_DecryptUpdate(ctx.get(), material.mutable_data(), &size, Bytes(wrapped),
                        static_cast<int>(wrapped.size())) != 1 ||
      size <= 0 ||
      EVP_DecryptFinal_ex(ctx.get(), material.mutable_data() + size, &final_size) != 1) {
    return DidNotUnwrap();
  }
  material.Truncate(static_cast<size_t>(size + final_size));
  return material;
}

}  // namespace

absl::Status FakeHsm::GenerateAesKey(absl::string_view object_id) {
  KMS_RETURN_IF_ERROR(CheckObjectId(object_id));
  SecretBytes key(hsm::kAesKeySize);
  if (RAND_bytes(key.mutable_data(), static_cast<int>(key.size())) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  absl::MutexLock lock(&mu_);
  std::string id(object_id);
  if (IdTaken(id)) return IdExists(object_id);
  keys_[id].material = std::move(key);
  return absl::OkStatus();
}

absl::Status FakeHsm::DestroyKey(absl::string_view object_id) {
  absl::MutexLock lock(&mu_);
  const std::string id(object_id);
  // SecretBytes wipes an AES key; EVP_PKEY_free clears RSA private parts.
  if (keys_.erase(id) > 0 || wrapping_keys_.erase(id) > 0 || signing_keys_.erase(id) > 0) {
    return absl::OkStatus();
  }
  return NoSuchKey(object_id);
}

bool FakeHsm::HasKey(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  return keys_.count(std::string(object_id)) > 0;
}

std::vector<std::string> FakeHsm::ListKeyIds() {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> ids;
  ids.reserve(keys_.size());
  for (const auto& [id, key] : keys_) ids.push_back(id);  // std::map: sorted
  return ids;
}

absl::StatusOr<hsm::KeyAttributes> FakeHsm::GetKeyAttributes(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  const std::string id(object_id);
  hsm::KeyAttributes attributes;
  attributes.token = true;
  attributes.is_private = true;
  attributes.sensitive = true;
  attributes.extractable = false;
  attributes.derive = false;
  attributes.wrap = false;
  attributes.sign = false;
  if (signing_keys_.count(id) > 0) {
    // What Pkcs11Hsm's signing private-key template yields on a real token.
    attributes.always_sensitive = true;
    attributes.never_extractable = true;
    attributes.encrypt = false;
    attributes.decrypt = false;
    attributes.unwrap = false;
    attributes.sign = true;
    return attributes;
  }
  if (auto it = wrapping_keys_.find(id); it != wrapping_keys_.end()) {
    // What Pkcs11Hsm's private-key template yields on a real token.
    attributes.always_sensitive = true;
    attributes.never_extractable = true;
    attributes.encrypt = false;
    attributes.decrypt = false;
    attributes.unwrap = true;
    attributes.modulus_bits = static_cast<size_t>(EVP_PKEY_get_bits(it->second.get()));
    return attributes;
  }
  auto it = keys_.find(id);
  if (it == keys_.end()) return NoSuchKey(object_id);
  // What Pkcs11Hsm's AES template yields on a real token. PKCS#11 marks an
  // unwrapped key as neither always sensitive nor never extractable.
  attributes.always_sensitive = !it->second.imported;
  attributes.never_extractable = !it->second.imported;
  attributes.encrypt = true;
  attributes.decrypt = true;
  attributes.unwrap = false;
  attributes.value_len = it->second.material.size();
  return attributes;
}

absl::StatusOr<std::string> FakeHsm::EncryptGcm(absl::string_view object_id,
                                                absl::string_view iv,
                                                absl::string_view plaintext,
                                                absl::string_view aad) {
  KMS_RETURN_IF_ERROR(CheckIv(iv));
  KMS_RETURN_IF_ERROR(CheckEvpSize("plaintext", plaintext.size()));
  absl::ReaderMutexLock lock(&mu_);
  auto it = keys_.find(std::string(object_id));
  if (it == keys_.end()) return NoSuchKey(object_id);

  KMS_ASSIGN_OR_RETURN(CipherContext ctx, GcmContext(/*encrypt=*/true, it->second.material, iv,
                                                     aad));
  std::string ciphertext(plaintext.size() + hsm::kGcmTagSize, '\0');
  auto* out = reinterpret_cast<unsigned char*>(ciphertext.data());
  int size = 0;
  int final_size = 0;
  if ((!plaintext.empty() && EVP_EncryptUpdate(ctx.get(), out, &size, Bytes(plaintext),
                                               static_cast<int>(plaintext.size())) != 1) ||
      EVP_EncryptFinal_ex(ctx.get(), out + size, &final_size) != 1 ||
      static_cast<size_t>(size + final_size) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, hsm::kGcmTagSize,
                          out + plaintext.size()) != 1) {
    return absl::InternalError("OpenSSL AES-GCM encryption failed");
  }
  return ciphertext;
}

absl::StatusOr<SecretBytes> FakeHsm::DecryptGcm(absl::string_view object_id,
                                                absl::string_view iv,
                                                absl::string_view ciphertext,
                                                absl::string_view aad) {
  KMS_RETURN_IF_ERROR(CheckIv(iv));
  if (ciphertext.size() < hsm::kGcmTagSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("ciphertext must hold at least the ", hsm::kGcmTagSize,
                     "-byte GCM tag, got ", ciphertext.size(), " bytes"));
  }
  KMS_RETURN_IF_ERROR(CheckEvpSize("ciphertext", ciphertext.size()));
  absl::ReaderMutexLock lock(&mu_);
  auto it = keys_.find(std::string(object_id));
  if (it == keys_.end()) return NoSuchKey(object_id);

  KMS_ASSIGN_OR_RETURN(CipherContext ctx, GcmContext(/*encrypt=*/false, it->second.material, iv,
                                                     aad));
  const size_t body_size = ciphertext.size() - hsm::kGcmTagSize;
  // EVP writes the plaintext straight into SecretBytes; on failure it is
  // wiped when `plaintext` goes out of scope.
  SecretBytes plaintext(body_size);
  std::string tag(ciphertext.substr(body_size));
  int size = 0;
  int final_size = 0;
  if (body_size > 0 && EVP_DecryptUpdate(ctx.get(), plaintext.mutable_data(), &size,
                                         Bytes(ciphertext), static_cast<int>(body_size)) != 1) {
    return absl::InternalError("OpenSSL AES-GCM decryption failed");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, hsm::kGcmTagSize, tag.data()) != 1) {
    return absl::InternalError("OpenSSL AES-GCM set tag failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plaintext.mutable_data() + size, &final_size) != 1) {
    return absl::InvalidArgumentError("AES-GCM: ciphertext did not authenticate");
  }
  return plaintext;
}

absl::StatusOr<SecretBytes> FakeHsm::GenerateRandom(size_t length) {
  if (length == 0 || length > kMaxRandomSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("random length must be 1..", kMaxRandomSize, " bytes, got ", length));
  }
  SecretBytes random(length);
  if (RAND_bytes(random.mutable_data(), static_cast<int>(length)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return random;
}

std::vector<hsm::WrappingAlgorithm> FakeHsm::SupportedWrappingAlgorithms() {
  return std::vector<hsm::WrappingAlgorithm>(std::begin(hsm::kAllWrappingAlgorithms),
                                             std::end(hsm::kAllWrappingAlgorithms));
}

absl::Status FakeHsm::GenerateRsaWrappingKey(absl::string_view object_id, int modulus_bits) {
  KMS_RETURN_IF_ERROR(CheckObjectId(object_id));
  if (modulus_bits != 2048 && modulus_bits != 3072 && modulus_bits != 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RSA wrapping key size must be 2048, 3072 or 4096 bits, got ", modulus_bits));
  }
  const std::string id(object_id);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (IdTaken(id)) return IdExists(object_id);
  }
  // Generated outside the lock (it takes a while); the id is checked again.
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(modulus_bits)),
           &EVP_PKEY_free);
  if (key == nullptr) return absl::InternalError("OpenSSL RSA key generation failed");
  absl::MutexLock lock(&mu_);
  if (IdTaken(id)) return IdExists(object_id);
  wrapping_keys_.emplace(id, std::move(key));
  return absl::OkStatus();
}

std::vector<std::string> FakeHsm::ListWrappingKeyIds() {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [id, key] : wrapping_keys_) ids.push_back(id);  // std::map: sorted
  return ids;
}

std::string FakeHsm::OtherKindNote(const std::string& id) const {
  if (keys_.count(id) > 0) return " (that id names an AES key)";
  if (wrapping_keys_.count(id) > 0) return " (that id names a wrapping key)";
  if (signing_keys_.count(id) > 0) return " (that id names a signing key)";
  return "";
}

absl::StatusOr<std::string> FakeHsm::GetPublicKeyDer(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  const std::string id(object_id);
  EVP_PKEY* key = nullptr;
  if (auto it = wrapping_keys_.find(id); it != wrapping_keys_.end()) key = it->second.get();
  if (auto it = signing_keys_.find(id); it != signing_keys_.end()) key = it->second.get();
  if (key == nullptr) {
    return absl::NotFoundError(absl::StrCat("no wrapping or signing key with id '",
                                            absl::CHexEscape(object_id), "'",
                                            OtherKindNote(id)));
  }
  // i2d_PUBKEY writes only the public half: SubjectPublicKeyInfo (for an EC
  // key, named curve and uncompressed point, as Pkcs11Hsm builds it).
  unsigned char* der = nullptr;
  const int size = i2d_PUBKEY(key, &der);
  if (size <= 0) return absl::InternalError("OpenSSL i2d_PUBKEY failed");
  std::string result(reinterpret_cast<const char*>(der), static_cast<size_t>(size));
  OPENSSL_free(der);
  return result;
}

absl::Status FakeHsm::UnwrapAesKey(absl::string_view wrapping_key_id,
                                   hsm::WrappingAlgorithm algorithm, absl::string_view wrapped,
                                   absl::string_view new_object_id) {
  KMS_RETURN_IF_ERROR(CheckObjectId(new_object_id));
  // Exclusive throughout, so the new id cannot be taken between the check
  // and the insertion; a fake need not be fast.
  absl::MutexLock lock(&mu_);
  const std::string new_id(new_object_id);
  if (IdTaken(new_id)) return IdExists(new_object_id);
  auto it = wrapping_keys_.find(std::string(wrapping_key_id));
  if (it == wrapping_keys_.end()) {
    return NoSuchWrappingKey(wrapping_key_id, OtherKindNote(std::string(wrapping_key_id)));
  }
  EVP_PKEY* rsa = it->second.get();

  const bool sha256 = algorithm == hsm::WrappingAlgorithm::kRsaesOaepSha256 ||
                      algorithm == hsm::WrappingAlgorithm::kRsaAesKeyWrapSha256;
  const EVP_MD* md = sha256 ? EVP_sha256() : EVP_sha1();
  SecretBytes material;
  if (algorithm == hsm::WrappingAlgorithm::kRsaesOaepSha1 ||
      algorithm == hsm::WrappingAlgorithm::kRsaesOaepSha256) {
    KMS_ASSIGN_OR_RETURN(material, OaepDecrypt(rsa, md, wrapped));
  } else {
    const size_t rsa_size = static_cast<size_t>(EVP_PKEY_get_size(rsa));
    if (wrapped.size() <= rsa_size) return DidNotUnwrap();
    KMS_ASSIGN_OR_RETURN(SecretBytes ephemeral, OaepDecrypt(rsa, md, wrapped.substr(0, rsa_size)));
    KMS_ASSIGN_OR_RETURN(material, KwpUnwrap(ephemeral, wrapped.substr(rsa_size)));
  }
  if (material.size() != hsm::kAesKeySize) {
    return absl::OutOfRangeError(absl::StrCat("key material must be ", hsm::kAesKeySize,
                                                   " bytes, got ", material.size()));
  }
  AesKey& key = keys_[new_id];
  key.material = std::move(material);
  key.imported = true;
  return absl::OkStatus();
}

absl::StatusOr<std::string> FakeHsm::KeyCheckValue(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = keys_.find(std::string(object_id));
  if (it == keys_.end()) return NoSuchKey(object_id);
  return hsm::LocalKeyCheckValue(it->second.material);
}

absl::StatusOr<std::string> FakeHsm::KeyFingerprint(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = keys_.find(std::string(object_id));
  if (it == keys_.end()) return NoSuchKey(object_id);
  return hsm::LocalKeyFingerprint(it->second.material);
}

absl::Status FakeHsm::GenerateEcSigningKey(absl::string_view object_id) {
  KMS_RETURN_IF_ERROR(CheckObjectId(object_id));
  const std::string id(object_id);
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "prime256v1"), &EVP_PKEY_free);
  if (key == nullptr) return absl::InternalError("OpenSSL EC key generation failed");
  absl::MutexLock lock(&mu_);
  if (IdTaken(id)) return IdExists(object_id);
  signing_keys_.emplace(id, std::move(key));
  return absl::OkStatus();
}

std::vector<std::string> FakeHsm::ListSigningKeyIds() {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [id, key] : signing_keys_) ids.push_back(id);  // std::map: sorted
  return ids;
}

absl::StatusOr<std::string> FakeHsm::SignEcdsaP256Sha256(absl::string_view object_id,
                                                         absl::string_view message) {
  absl::ReaderMutexLock lock(&mu_);
  const std::string id(object_id);
  auto it = signing_keys_.find(id);
  if (it == signing_keys_.end()) {
    return absl::NotFoundError(absl::StrCat("no signing key with id '",
                                            absl::CHexEscape(object_id), "'",
                                            OtherKindNote(id)));
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free);
  size_t size = 0;
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, it->second.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &size, Bytes(message), message.size()) != 1) {
    ERR_clear_error();
    return absl::InternalError("OpenSSL ECDSA set-up failed");
  }
  std::string signature(size, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     Bytes(message), message.size()) != 1) {
    ERR_clear_error();
    return absl::InternalError("OpenSSL ECDSA signing failed");
  }
  signature.resize(size);  // DER: its length varies with r and s
  return signature;
}

}  // namespace kms::testing
