#include "daemon/audit/context_hasher.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"

namespace kms::audit {
namespace {

constexpr size_t kSealedSize = hsm::kGcmIvSize + kContextHmacKeySize + hsm::kGcmTagSize;

absl::Status ErrnoError(absl::string_view what, const std::string& path, int err) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// The whole file, or kNotFound if it does not exist.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no file ", path));
    return ErrnoError("open", path, errno);
  }
  std::string out;
  char buf[256];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoError("read", path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 4096) break;  // far larger than any sealed key; reject below
  }
  ::close(fd);
  return out;
}

absl::Status SyncDirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync directory", dir, err);
  return absl::OkStatus();
}

// Writes `bytes` to path.tmp (0600), fsyncs it, renames it over `path` and
// fsyncs the directory, so a crash leaves the old file or the new one.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("create", tmp, errno);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoError("write", tmp, err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoError("fsync", tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError("rename to", path, err);
  }
  return SyncDirectoryOf(path);
}

}  // namespace

struct ContextHasher::Pads {
  ~Pads() {
    EVP_MD_CTX_free(inner);
    EVP_MD_CTX_free(outer);
  }
  EVP_MD_CTX* inner = nullptr;  // SHA-256 after (key XOR ipad)
  EVP_MD_CTX* outer = nullptr;  // SHA-256 after (key XOR opad)
};

absl::StatusOr<ContextHasher> ContextHasher::FromKey(SecretBytes key) {
  if (key.size() != kContextHmacKeySize) {
    return absl::InvalidArgumentError(absl::StrCat("context HMAC key must be ",
                                                   kContextHmacKeySize, " bytes, got ",
                                                   key.size()));
  }
  // The key is shorter than SHA-256's 64-byte block, so it is padded with
  // zeros, not hashed first.
  constexpr size_t kBlock = 64;
  SecretBytes inner_pad(kBlock);
  SecretBytes outer_pad(kBlock);
  for (size_t i = 0; i < kBlock; ++i) {
    const uint8_t k = i < key.size() ? key.data()[i] : 0;
    inner_pad.mutable_data()[i] = k ^ 0x36;
    outer_pad.mutable_data()[i] = k ^ 0x5c;
  }
  auto pads = std::make_shared<Pads>();
  pads->inner = EVP_MD_CTX_new();
  pads->outer = EVP_MD_CTX_new();
  if (pads->inner == nullptr || pads->outer == nullptr ||
      EVP_DigestInit_ex(pads->inner, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(pads->inner, inner_pad.data(), kBlock) != 1 ||
      EVP_DigestInit_ex(pads->outer, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(pads->outer, outer_pad.data(), kBlock) != 1) {
    return absl::InternalError("OpenSSL could not set up HMAC-SHA256");
  }
  return ContextHasher(std::move(pads));
}

std::string ContextHasher::Hash(absl::string_view value) const {
  // Fails only when memory runs out; a missing hash must not be written.
  auto check = [](int ok) {
    if (ok != 1) abort();
  };
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (ctx == nullptr) abort();
  unsigned char inner[EVP_MAX_MD_SIZE];
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  check(EVP_MD_CTX_copy_ex(ctx.get(), pads_->inner));
  check(EVP_DigestUpdate(ctx.get(), value.data(), value.size()));
  check(EVP_DigestFinal_ex(ctx.get(), inner, &len));
  check(EVP_MD_CTX_copy_ex(ctx.get(), pads_->outer));
  check(EVP_DigestUpdate(ctx.get(), inner, len));
  check(EVP_DigestFinal_ex(ctx.get(), mac, &len));
  OPENSSL_cleanse(inner, sizeof(inner));
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), 16));
}

absl::StatusOr<ContextHasher> LoadOrCreateContextHasher(hsm::Hsm& hsm,
                                                        const std::string& sealed_path) {
  auto sealed = ReadSmallFile(sealed_path);
  if (sealed.ok()) {
    if (!hsm.HasKey(kContextSealingKeyId)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sealed audit context key ", sealed_path, " exists but the HSM has no key \"",
          kContextSealingKeyId, "\" to unseal it (was the token replaced?)"));
    }
    if (sealed->size() != kSealedSize) {
      return absl::DataLossError(absl::StrCat("sealed audit context key ", sealed_path, " is ",
                                              sealed->size(), " bytes, not ", kSealedSize));
    }
    const absl::string_view bytes(*sealed);
    auto key = hsm.DecryptGcm(kContextSealingKeyId, bytes.substr(0, hsm::kGcmIvSize),
                              bytes.substr(hsm::kGcmIvSize), kContextSealingAad);
    if (!key.ok()) {
      if (key.status().code() == absl::StatusCode::kInvalidArgument) {
        return absl::DataLossError(absl::StrCat("sealed audit context key ", sealed_path,
                                                " does not unseal under the HSM key"));
      }
      return key.status();
    }
    return ContextHasher::FromKey(*std::move(key));
  }
  if (sealed.status().code() != absl::StatusCode::kNotFound) return sealed.status();

  if (hsm.HasKey(kContextSealingKeyId)) {
    KMS_LOG(WARNING) << "audit context key file " << sealed_path
                     << " is missing but its HSM sealing key exists; making a new context "
                        "key: earlier records' context hashes can no longer be matched";
  } else {
    absl::Status made = hsm.GenerateAesKey(kContextSealingKeyId);
    if (!made.ok() && made.code() != absl::StatusCode::kAlreadyExists) return made;
  }
  KMS_ASSIGN_OR_RETURN(SecretBytes key, hsm.GenerateRandom(kContextHmacKeySize));
  KMS_ASSIGN_OR_RETURN(SecretBytes iv, hsm.GenerateRandom(hsm::kGcmIvSize));
  KMS_ASSIGN_OR_RETURN(std::string ciphertext,
                       hsm.EncryptGcm(kContextSealingKeyId, iv.secret(), key.secret(),
                                      kContextSealingAad));
  KMS_RETURN_IF_ERROR(
      WriteFileAtomically(sealed_path, absl::StrCat(iv.secret(), ciphertext)));
  return ContextHasher::FromKey(std::move(key));
}

}  // namespace kms::audit
