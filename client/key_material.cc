#include "client/key_material.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/status_macros.h"
#include "hsm/hsm.h"

namespace kms::client {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
using UniquePkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using UniquePkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using UniqueCipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// RFC 5649's length: the plaintext padded to a multiple of 8, plus the
// 8-byte integrity block.
constexpr size_t kKwpOverhead = 8;

absl::Status MaterialSizeError(size_t size) {
  return absl::InvalidArgumentError(
      absl::StrCat("key material must be ", kKeyMaterialSize, " bytes, got ", size));
}

// The RSA key in a DER SubjectPublicKeyInfo.
absl::StatusOr<UniquePkey> ParseRsaPublicKey(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  UniquePkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key == nullptr) {
    return absl::InvalidArgumentError("the wrapping public key is not a DER SubjectPublicKeyInfo");
  }
  size_t consumed = static_cast<size_t>(p - reinterpret_cast<const unsigned char*>(der.data()));
  if (consumed != der.size()) {
    return absl::InvalidArgumentError(absl::StrCat("the wrapping public key has ",
                                                   der.size() - consumed,
                                                   " bytes after its DER SubjectPublicKeyInfo"));
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError("the wrapping public key is not an RSA key");
  }
  return key;
}

// RSA-OAEP of `secret` under `key`, OAEP and MGF1 hash both `md`, no label.
absl::StatusOr<std::string> RsaOaepEncrypt(EVP_PKEY* key, const EVP_MD* md,
                                           const SecretBytes& secret) {
  UniquePkeyCtx ctx(EVP_PKEY_CTX_new(key, nullptr));
  if (ctx == nullptr || EVP_PKEY_encrypt_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) <= 0) {
    return absl::InternalError("cannot set up RSA-OAEP encryption");
  }
  size_t length = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &length, secret.data(), secret.size()) <= 0) {
    return absl::InternalError("cannot size the RSA-OAEP ciphertext");
  }
  std::string out(length, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &length,
                       secret.data(), secret.size()) <= 0) {
    // A modulus too small for the OAEP overhead lands here too.
    return absl::InvalidArgumentError(
        absl::StrCat("RSA-OAEP encryption under the wrapping public key failed (",
                     EVP_PKEY_get_bits(key), "-bit modulus)"));
  }
  out.resize(length);
  return out;
}

const EVP_CIPHER* KwpCipher(size_t key_size) {
  switch (key_size) {
    case 16:
      return EVP_aes_128_wrap_pad();
    case 24:
      return EVP_aes_192_wrap_pad();
    case 32:
      return EVP_aes_256_wrap_pad();
    default:
      return nullptr;
  }
}

absl::Status ErrnoError(int error_number, absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(what, " '", path, "'"));
}

// The directory part of `path`, for syncing the new entry.
std::string DirectoryOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::StatusOr<std::string> AesKeyWrapWithPadding(const SecretBytes& kek,
                                                  const SecretBytes& plaintext) {
  const EVP_CIPHER* cipher = KwpCipher(kek.size());
  if (cipher == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("an AES key wrap key must be 16, 24 or 32 bytes, got ", kek.size()));
  }
  if (plaintext.empty()) return absl::InvalidArgumentError("nothing to wrap");
  UniqueCipherCtx ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return absl::InternalError("cannot allocate a cipher context");
  // OpenSSL refuses the wrap modes through EVP unless asked explicitly.
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  // A null IV selects RFC 5649's alternative initial value A65959A6.
  if (EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, kek.data(), nullptr) != 1) {
    return absl::InternalError("cannot set up AES key wrap with padding");
  }
  std::string out((plaintext.size() + 7) / 8 * 8 + kKwpOverhead, '\0');
  int length = 0;
  if (EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &length,
                        plaintext.data(), static_cast<int>(plaintext.size())) != 1) {
    return absl::InternalError("AES key wrap with padding failed");
  }
  int final_length = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + length,
                          &final_length) != 1) {
    return absl::InternalError("AES key wrap with padding failed");
  }
  out.resize(static_cast<size_t>(length + final_length));
  return out;
}

absl::StatusOr<std::string> WrapKeyMaterial(absl::string_view public_key_der,
                                            v1::AlgorithmSpec algorithm,
                                            const SecretBytes& material) {
  if (material.size() != kKeyMaterialSize) return MaterialSizeError(material.size());
  const EVP_MD* md = nullptr;
  bool key_wrap = false;
  switch (algorithm) {
    case v1::RSAES_OAEP_SHA_1:
      md = EVP_sha1();
      break;
    case v1::RSAES_OAEP_SHA_256:
      md = EVP_sha256();
      break;
    case v1::RSA_AES_KEY_WRAP_SHA_1:
      md = EVP_sha1();
      key_wrap = true;
      break;
    case v1::RSA_AES_KEY_WRAP_SHA_256:
      md = EVP_sha256();
      key_wrap = true;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("wrapping algorithm must be one of RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, "
                       "RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, got ",
                       static_cast<int>(algorithm)));
  }
  KMS_ASSIGN_OR_RETURN(UniquePkey key, ParseRsaPublicKey(public_key_der));
  if (!key_wrap) return RsaOaepEncrypt(key.get(), md, material);

  // Layout: RSA-OAEP(K) (modulus length) || AES-KWP(K, material) (40 bytes).
  SecretBytes ephemeral(32);
  if (RAND_priv_bytes(ephemeral.mutable_data(), static_cast<int>(ephemeral.size())) != 1) {
    return absl::InternalError("the random number generator failed");
  }
  KMS_ASSIGN_OR_RETURN(std::string wrapped_key, RsaOaepEncrypt(key.get(), md, ephemeral));
  KMS_ASSIGN_OR_RETURN(std::string wrapped_material, AesKeyWrapWithPadding(ephemeral, material));
  return absl::StrCat(wrapped_key, wrapped_material);
}

absl::StatusOr<SecretBytes> ReadKeyMaterialFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "cannot open key material file", path);
  // One byte more than the material, to notice a longer file without
  // knowing its size (a pipe has none).
  SecretBytes buffer(kKeyMaterialSize + 1);
  size_t filled = 0;
  absl::Status status;
  while (filled < buffer.size()) {
    ssize_t n = read(fd, buffer.mutable_data() + filled, buffer.size() - filled);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoError(errno, "cannot read key material file", path);
      break;
    }
    if (n == 0) break;
    filled += static_cast<size_t>(n);
  }
  struct stat st {};
  bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  close(fd);
  if (!status.ok()) return status;
  if (filled != kKeyMaterialSize) {
    std::string size =
        regular ? absl::StrCat(st.st_size, " bytes")
                : absl::StrCat(filled > kKeyMaterialSize ? "more than " : "", filled, " bytes");
    return absl::InvalidArgumentError(
        absl::StrCat("key material file '", path, "' must hold exactly ", kKeyMaterialSize,
                     " raw bytes (not hex or base64), but holds ", size));
  }
  buffer.Truncate(kKeyMaterialSize);
  return buffer;
}

absl::StatusOr<SecretBytes> CombineKeyComponents(const std::vector<SecretBytes>& components) {
  if (components.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("combining key components needs at least 2, got ", components.size()));
  }
  SecretBytes combined(kKeyMaterialSize);
  for (size_t i = 0; i < components.size(); ++i) {
    if (components[i].size() != kKeyMaterialSize) {
      return absl::InvalidArgumentError(absl::StrCat("key component ", i + 1, " must be ",
                                                     kKeyMaterialSize, " bytes, got ",
                                                     components[i].size()));
    }
    for (size_t j = 0; j < kKeyMaterialSize; ++j) {
      combined.mutable_data()[j] ^= components[i].data()[j];
    }
  }
  return combined;
}

absl::StatusOr<std::string> KeyCheckValue(const SecretBytes& material) {
  if (material.size() != kKeyMaterialSize) return MaterialSizeError(material.size());
  KMS_ASSIGN_OR_RETURN(std::string kcv, hsm::LocalKeyCheckValue(material));
  return absl::AsciiStrToUpper(absl::BytesToHexString(kcv));
}

absl::StatusOr<std::string> ParseKeyCheckValue(absl::string_view text) {
  bool valid = text.size() == 6;
  for (char c : text) valid = valid && absl::ascii_isxdigit(static_cast<unsigned char>(c));
  if (!valid) {
    return absl::InvalidArgumentError(
        absl::StrCat("a key check value is 6 hex digits, got '", text, "'"));
  }
  return absl::AsciiStrToUpper(text);
}

bool SameKeyCheckValue(absl::string_view a, absl::string_view b) {
  return absl::EqualsIgnoreCase(a, b);
}

absl::StatusOr<SecretBytes> GenerateKeyMaterial() {
  SecretBytes material(kKeyMaterialSize);
  if (RAND_priv_bytes(material.mutable_data(), static_cast<int>(material.size())) != 1) {
    return absl::InternalError("the random number generator failed");
  }
  return material;
}

absl::Status WriteNewKeyMaterialFile(const std::string& path, const SecretBytes& material) {
  if (material.empty()) return absl::InvalidArgumentError("no key material to write");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("'", path, "' exists; key material files are never overwritten"));
    }
    return ErrnoError(errno, "cannot create key material file", path);
  }
  absl::Status status;
  // The umask can only narrow 0600; set it exactly anyway.
  if (fchmod(fd, 0600) != 0) status = ErrnoError(errno, "cannot set the mode of", path);
  absl::string_view rest = material.secret();
  while (status.ok() && !rest.empty()) {
    ssize_t n = write(fd, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoError(errno, "cannot write key material file", path);
      break;
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  if (status.ok() && fsync(fd) != 0) status = ErrnoError(errno, "cannot sync", path);
  if (close(fd) != 0 && status.ok()) status = ErrnoError(errno, "cannot close", path);
  if (status.ok()) {
    // The file is only safe once its directory entry is on disk too.
    std::string directory = DirectoryOf(path);
    int dir_fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0 || fsync(dir_fd) != 0) {
      status = ErrnoError(errno, "cannot sync the directory", directory);
    }
    if (dir_fd >= 0) close(dir_fd);
  }
  if (!status.ok()) unlink(path.c_str());
  return status;
}

}  // namespace kms::client
