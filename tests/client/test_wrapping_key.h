// TestWrappingKey: an RSA key pair made in the test, standing in for kmsd's
// HSM wrapping key. Its public half (DER SubjectPublicKeyInfo) goes to
// WrapKeyMaterial or into a fake GetParametersForImport response; Unwrap
// undoes every AlgorithmSpec with plain OpenSSL, independently of
// client/key_material.cc, so tests can check the wrapped bytes.
//
// Thread-compatible; RSA generation takes a moment, so share one per suite.
#ifndef KMS_TESTS_CLIENT_TEST_WRAPPING_KEY_H_
#define KMS_TESTS_CLIENT_TEST_WRAPPING_KEY_H_

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "daemon/common/secret_bytes.h"
#include "kms/v1/kms.pb.h"

namespace kms::testing {

class TestWrappingKey {
 public:
  explicit TestWrappingKey(int bits = 2048) : key_(EVP_RSA_gen(bits), EVP_PKEY_free) {}
  TestWrappingKey(const TestWrappingKey&) = delete;
  TestWrappingKey& operator=(const TestWrappingKey&) = delete;

  // DER SubjectPublicKeyInfo, as GetParametersForImport returns it.
  std::string PublicKeyDer() const {
    unsigned char* der = nullptr;
    int length = i2d_PUBKEY(key_.get(), &der);
    if (length <= 0) return "";
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(length));
    OPENSSL_free(der);
    return out;
  }

  // The private key as PKCS#8 DER (for openssl command lines).
  std::string PrivateKeyDer() const {
    unsigned char* der = nullptr;
    int length = i2d_PrivateKey(key_.get(), &der);
    if (length <= 0) return "";
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(length));
    OPENSSL_free(der);
    return out;
  }

  size_t ModulusBytes() const { return static_cast<size_t>(EVP_PKEY_get_size(key_.get())); }

  // The material inside `wrapped`, as `algorithm` describes it.
  absl::StatusOr<SecretBytes> Unwrap(v1::AlgorithmSpec algorithm, absl::string_view wrapped) const {
    const bool sha256 =
        algorithm == v1::RSAES_OAEP_SHA_256 || algorithm == v1::RSA_AES_KEY_WRAP_SHA_256;
    const bool key_wrap =
        algorithm == v1::RSA_AES_KEY_WRAP_SHA_1 || algorithm == v1::RSA_AES_KEY_WRAP_SHA_256;
    const EVP_MD* md = sha256 ? EVP_sha256() : EVP_sha1();
    size_t rsa_size = key_wrap ? ModulusBytes() : wrapped.size();
    if (wrapped.size() < rsa_size) return absl::InvalidArgumentError("too short");
    absl::StatusOr<SecretBytes> first = OaepDecrypt(md, wrapped.substr(0, rsa_size));
    if (!key_wrap || !first.ok()) return first;
    return KwpUnwrap(*first, wrapped.substr(rsa_size));
  }

  // RFC 5649 unwrap of `wrapped` under `kek` (16, 24 or 32 bytes).
  static absl::StatusOr<SecretBytes> KwpUnwrap(const SecretBytes& kek, absl::string_view wrapped) {
    const EVP_CIPHER* cipher = kek.size() == 16   ? EVP_aes_128_wrap_pad()
                               : kek.size() == 24 ? EVP_aes_192_wrap_pad()
                                                  : EVP_aes_256_wrap_pad();
    std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                        EVP_CIPHER_CTX_free);
    EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    SecretBytes out(wrapped.size() + 16);
    int length = 0;
    int final_length = 0;
    if (EVP_DecryptInit_ex(ctx.get(), cipher, nullptr, kek.data(), nullptr) != 1 ||
        EVP_DecryptUpdate(ctx.get(), out.mutable_data(), &length,
                          reinterpret_cast<const unsigned char*>(wrapped.data()),
                          static_cast<int>(wrapped.size())) != 1 ||
        EVP_DecryptFinal_ex(ctx.get(), out.mutable_data() + length, &final_length) != 1) {
      return absl::InvalidArgumentError("AES-KWP unwrap failed");
    }
    out.Truncate(static_cast<size_t>(length + final_length));
    return out;
  }

 private:
  absl::StatusOr<SecretBytes> OaepDecrypt(const EVP_MD* md, absl::string_view in) const {
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
        EVP_PKEY_CTX_new(key_.get(), nullptr), EVP_PKEY_CTX_free);
    SecretBytes out(ModulusBytes());
    size_t length = out.size();
    if (ctx == nullptr || EVP_PKEY_decrypt_init(ctx.get()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) <= 0 ||
        EVP_PKEY_decrypt(ctx.get(), out.mutable_data(), &length,
                         reinterpret_cast<const unsigned char*>(in.data()), in.size()) <= 0) {
      return absl::InvalidArgumentError("RSA-OAEP decryption failed");
    }
    out.Truncate(length);
    return out;
  }

  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_;
};

}  // namespace kms::testing

#endif  // KMS_TESTS_CLIENT_TEST_WRAPPING_KEY_H_
