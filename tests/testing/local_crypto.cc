#include "tests/testing/local_crypto.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "daemon/common/secret_bytes.h"
#include "gtest/gtest.h"

namespace kms::testing {

using hsm::WrappingAlgorithm;
using hsm::kAesKeySize;
using hsm::kGcmTagSize;

namespace {
using PkeyContext = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;
using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

Pkey ParsePublicKey(absl::string_view der) {
  const unsigned char* p = Bytes(der);
  Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())), &EVP_PKEY_free);
  // The whole input must be one SubjectPublicKeyInfo.
  if (key != nullptr && p != Bytes(der) + der.size()) key.reset();
  return key;
}

namespace {

bool UsesSha256(WrappingAlgorithm algorithm) {
  return algorithm == WrappingAlgorithm::kRsaesOaepSha256 ||
         algorithm == WrappingAlgorithm::kRsaAesKeyWrapSha256;
}

}  // namespace

bool IsRsaAesKeyWrap(WrappingAlgorithm algorithm) {
  return algorithm == WrappingAlgorithm::kRsaAesKeyWrapSha1 ||
         algorithm == WrappingAlgorithm::kRsaAesKeyWrapSha256;
}

namespace {

std::string OaepEncrypt(EVP_PKEY* key, const EVP_MD* md, absl::string_view plaintext) {
  PkeyContext ctx(EVP_PKEY_CTX_new(key, nullptr), &EVP_PKEY_CTX_free);
  size_t size = 0;
  if (ctx == nullptr || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &size, Bytes(plaintext), plaintext.size()) != 1) {
    ADD_FAILURE() << "OpenSSL OAEP set-up failed";
    return "";
  }
  std::string out(size, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &size,
                       Bytes(plaintext), plaintext.size()) != 1) {
    ADD_FAILURE() << "OpenSSL OAEP encryption failed";
    return "";
  }
  out.resize(size);
  return out;
}

// AES Key Wrap with Padding (RFC 5649) of `material` under the 32-byte `kek`.
std::string KwpWrap(absl::string_view kek, absl::string_view material) {
  CipherContext ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  std::string out(material.size() + 16, '\0');
  int size = 0;
  int final_size = 0;
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_wrap_pad(), nullptr, Bytes(kek), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o, &size, Bytes(material),
                        static_cast<int>(material.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), o + size, &final_size) != 1) {
    ADD_FAILURE() << "OpenSSL AES-KWP wrap failed";
    return "";
  }
  out.resize(static_cast<size_t>(size + final_size));
  return out;
}

}  // namespace

// As AWS KMS documents each algorithm.
std::string WrapLocally(WrappingAlgorithm algorithm, absl::string_view der,
                        absl::string_view material) {
  Pkey key = ParsePublicKey(der);
  if (key == nullptr) {
    ADD_FAILURE() << "public key does not parse";
    return "";
  }
  const EVP_MD* md = UsesSha256(algorithm) ? EVP_sha256() : EVP_sha1();
  if (!IsRsaAesKeyWrap(algorithm)) return OaepEncrypt(key.get(), md, material);
  std::string ephemeral(32, '\0');
  EXPECT_EQ(RAND_bytes(reinterpret_cast<unsigned char*>(ephemeral.data()), 32), 1);
  std::string wrapped =
      absl::StrCat(OaepEncrypt(key.get(), md, ephemeral), KwpWrap(ephemeral, material));
  WipeString(&ephemeral);
  return wrapped;
}

// AES-256-GCM decryption in OpenSSL of `ciphertext` (with its 16-byte tag).
std::optional<std::string> DecryptGcmLocally(absl::string_view key, absl::string_view iv,
                                             absl::string_view ciphertext,
                                             absl::string_view aad) {
  if (ciphertext.size() < kGcmTagSize) return std::nullopt;
  const size_t body = ciphertext.size() - kGcmTagSize;
  CipherContext ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  std::string plaintext(body, '\0');
  std::string tag(ciphertext.substr(body));
  int size = 0;
  int final_size = 0;
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()),
                          nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key), Bytes(iv)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &size, Bytes(aad), static_cast<int>(aad.size())) !=
          1 ||
      EVP_DecryptUpdate(ctx.get(), out, &size, Bytes(ciphertext), static_cast<int>(body)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out + size, &final_size) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  return plaintext;
}

// 32 bytes the test knows. Test material, not a secret.
std::string KnownMaterial(size_t size, char seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(seed + i * 7);
  return bytes;
}

std::string Kcv(absl::string_view material) {
  auto kcv = hsm::LocalKeyCheckValue(SecretBytes::CopyFrom(material));
  EXPECT_TRUE(kcv.ok()) << kcv.status();
  return kcv.ok() ? *kcv : "";
}

}  // namespace kms::testing
