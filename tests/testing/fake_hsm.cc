#include "tests/testing/fake_hsm.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

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

}  // namespace

absl::Status FakeHsm::GenerateAesKey(absl::string_view object_id) {
  if (object_id.empty() || object_id.size() > kMaxObjectIdSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "object id must be 1..", kMaxObjectIdSize, " bytes, got ", object_id.size()));
  }
  SecretBytes key(hsm::kAesKeySize);
  if (RAND_bytes(key.mutable_data(), static_cast<int>(key.size())) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = keys_.try_emplace(std::string(object_id));
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrCat("an AES key with id '", absl::CHexEscape(object_id), "' already exists"));
  }
  it->second = std::move(key);
  return absl::OkStatus();
}

absl::Status FakeHsm::DestroyKey(absl::string_view object_id) {
  absl::MutexLock lock(&mu_);
  auto it = keys_.find(std::string(object_id));
  if (it == keys_.end()) return NoSuchKey(object_id);
  keys_.erase(it);  // SecretBytes wipes the key
  return absl::OkStatus();
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
  if (keys_.count(std::string(object_id)) == 0) return NoSuchKey(object_id);
  // What Pkcs11Hsm's template yields on a real token.
  hsm::KeyAttributes attributes;
  attributes.token = true;
  attributes.is_private = true;
  attributes.sensitive = true;
  attributes.always_sensitive = true;
  attributes.extractable = false;
  attributes.never_extractable = true;
  attributes.derive = false;
  attributes.encrypt = true;
  attributes.decrypt = true;
  attributes.wrap = false;
  attributes.unwrap = false;
  attributes.value_len = hsm::kAesKeySize;
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

  KMS_ASSIGN_OR_RETURN(CipherContext ctx, GcmContext(/*encrypt=*/true, it->second, iv, aad));
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

  KMS_ASSIGN_OR_RETURN(CipherContext ctx, GcmContext(/*encrypt=*/false, it->second, iv, aad));
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

}  // namespace kms::testing
