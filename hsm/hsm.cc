#include "hsm/hsm.h"

#include <openssl/evp.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace kms::hsm {
namespace {

// AES-ECB of one block under `key`, with OpenSSL. Only for the local KCV and
// fingerprint: a single block, so ECB leaks nothing it should not.
absl::StatusOr<std::string> EncryptOneBlock(const SecretBytes& key, absl::string_view block) {
  const EVP_CIPHER* cipher = nullptr;
  switch (key.size()) {
    case 16: cipher = EVP_aes_128_ecb(); break;
    case 24: cipher = EVP_aes_192_ecb(); break;
    case 32: cipher = EVP_aes_256_ecb(); break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("an AES key must be 16, 24 or 32 bytes, got ", key.size()));
  }
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  std::string out(32, '\0');
  int size = 0;
  int final_size = 0;
  auto* out_bytes = reinterpret_cast<unsigned char*>(out.data());
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out_bytes, &size,
                        reinterpret_cast<const unsigned char*>(block.data()),
                        static_cast<int>(block.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out_bytes + size, &final_size) != 1 ||
      size + final_size != 16) {
    return absl::InternalError("OpenSSL AES-ECB failed");
  }
  out.resize(16);
  return out;
}

}  // namespace

absl::string_view WrappingAlgorithmName(WrappingAlgorithm algorithm) {
  switch (algorithm) {
    case WrappingAlgorithm::kRsaesOaepSha1:
      return "RSAES_OAEP_SHA_1";
    case WrappingAlgorithm::kRsaesOaepSha256:
      return "RSAES_OAEP_SHA_256";
    case WrappingAlgorithm::kRsaAesKeyWrapSha1:
      return "RSA_AES_KEY_WRAP_SHA_1";
    case WrappingAlgorithm::kRsaAesKeyWrapSha256:
      return "RSA_AES_KEY_WRAP_SHA_256";
  }
  return "UNKNOWN_WRAPPING_ALGORITHM";
}

absl::StatusOr<std::string> LocalKeyCheckValue(const SecretBytes& key) {
  auto block = EncryptOneBlock(key, std::string(16, '\0'));
  if (!block.ok()) return block.status();
  return block->substr(0, kKeyCheckValueSize);
}

absl::StatusOr<std::string> LocalKeyFingerprint(const SecretBytes& key) {
  return EncryptOneBlock(key, kKeyFingerprintBlock);
}

}  // namespace kms::hsm
