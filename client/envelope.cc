#include "client/envelope.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/chunk_pipeline.h"
#include "daemon/common/errors.h"
#include "daemon/common/secret_bytes.h"
#include "daemon/common/status_macros.h"

namespace kms::client {
namespace {

constexpr size_t kNonceSize = 12;
constexpr size_t kDigestSize = 32;  // SHA-256 of the header: every chunk's AAD
// magic + format_version + header_length: enough to know how much to read.
constexpr size_t kHeaderPrefixSize = 8 + 2 + 4;
// The temporary file's name keeps at most this much of the output's name, so
// the name stays under NAME_MAX (255) whatever the output is called.
constexpr size_t kMaxTempBaseName = 200;
// Chunk crypto threads. Two: the machines kmsctl runs on have at least two
// cores, and with the reader and the calling thread (the writer) busy in
// system calls, more would only add context switches.
constexpr int kCryptoThreads = 2;

// ---- Errors ---------------------------------------------------------------

// A malformed or unauthentic envelope file. DESIGN.md: a ciphertext that does
// not parse or authenticate is InvalidCiphertextException, whatever the cause.
// Unlike the daemon, the message may say which part failed: the reader holds
// the data key already, so there is no oracle to protect.
absl::Status FormatError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kInvalidCiphertext);
}

// Maps an errno from a file operation to a code chosen by what the caller
// should do, with the operation and the path in the message.
absl::Status ErrnoError(int err, absl::string_view operation, const std::string& path) {
  std::string message = absl::StrCat(operation, " ", path, ": ",
                                     std::error_code(err, std::generic_category()).message());
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EISDIR:
      return ValidationError(message);
    default:
      return absl::InternalError(message);
  }
}

// ---- Big-endian integers --------------------------------------------------

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

void PutBytes(std::string* out, absl::string_view bytes) {
  PutU32(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes.data(), bytes.size());
}

uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

uint16_t GetU16(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}

// ---- Header ----------------------------------------------------------------

// Bytes the context takes in the header, after its count.
size_t EncodedContextSize(const EncryptionContext& context) {
  size_t size = 0;
  for (const auto& [key, value] : context) size += 4 + key.size() + 4 + value.size();
  return size;
}

// Bounds-checked reader over the header bytes [0, header_length).
class HeaderReader {
 public:
  HeaderReader(absl::string_view bytes, size_t pos) : bytes_(bytes), pos_(pos) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  absl::Status U32(absl::string_view field, uint32_t* out) {
    KMS_RETURN_IF_ERROR(Need(field, 4));
    *out = GetU32(bytes_.data() + pos_);
    pos_ += 4;
    return absl::OkStatus();
  }

  // Checks the length against the bytes left before copying, so an absurd
  // length never allocates.
  absl::Status Bytes(absl::string_view field, size_t length, std::string* out) {
    KMS_RETURN_IF_ERROR(Need(field, length));
    out->assign(bytes_.data() + pos_, length);
    pos_ += length;
    return absl::OkStatus();
  }

 private:
  absl::Status Need(absl::string_view field, size_t length) const {
    if (length > remaining()) {
      return FormatError(absl::StrCat("malformed envelope header: ", field, " (", length,
                                      " bytes at offset ", pos_, ") runs past the header length ",
                                      bytes_.size()));
    }
    return absl::OkStatus();
  }

  absl::string_view bytes_;
  size_t pos_;
};

// Checks magic, version and header length from the first kHeaderPrefixSize
// bytes (or fewer, for a short file) and returns the header length.
absl::StatusOr<uint32_t> ParseHeaderPrefix(absl::string_view bytes) {
  if (bytes.size() < kEnvelopeMagic.size() ||
      bytes.substr(0, kEnvelopeMagic.size()) != kEnvelopeMagic) {
    return FormatError("not a kmsd envelope file (bad magic)");
  }
  if (bytes.size() < kHeaderPrefixSize) {
    return FormatError(absl::StrCat("envelope header is truncated: ", bytes.size(),
                                    " bytes, the fixed part alone is ", kHeaderPrefixSize));
  }
  const uint16_t version = GetU16(bytes.data() + 8);
  if (version != kEnvelopeFormatVersion) {
    return FormatError(absl::StrCat("unsupported envelope format version ", version,
                                    " (this build reads version ", kEnvelopeFormatVersion, ")"));
  }
  const uint32_t header_length = GetU32(bytes.data() + 10);
  if (header_length < kMinHeaderLength || header_length > kMaxHeaderLength) {
    return FormatError(absl::StrCat("envelope header length ", header_length, " is out of range ",
                                    kMinHeaderLength, "..", kMaxHeaderLength));
  }
  return header_length;
}

// Serialises `header` (whose fields the caller has validated) and sets its
// header_length.
std::string SerializeHeader(EnvelopeHeader& header) {
  std::string out;
  out.append(kEnvelopeMagic.data(), kEnvelopeMagic.size());
  PutU16(&out, header.format_version);
  PutU32(&out, 0);  // header_length, patched below
  PutU32(&out, header.chunk_size);
  out.append(header.nonce_prefix);
  PutBytes(&out, header.wrapped_data_key);
  PutU32(&out, static_cast<uint32_t>(header.context.size()));
  // std::map iterates keys in std::string order, which compares bytes as
  // unsigned char: the strictly ascending order the parser demands.
  for (const auto& [key, value] : header.context) {
    PutBytes(&out, key);
    PutBytes(&out, value);
  }
  PutBytes(&out, header.key_arn);
  header.header_length = static_cast<uint32_t>(out.size());
  std::string length;
  PutU32(&length, header.header_length);
  out.replace(10, 4, length);
  return out;
}

absl::StatusOr<std::string> Sha256(absl::string_view bytes) {
  std::string digest(kDigestSize, '\0');
  unsigned int digest_size = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), reinterpret_cast<unsigned char*>(digest.data()),
                 &digest_size, EVP_sha256(), nullptr) != 1 ||
      digest_size != kDigestSize) {
    return absl::InternalError("SHA-256 of the envelope header failed");
  }
  return digest;
}

// ---- Files -----------------------------------------------------------------

class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) close(fd_);
      fd_ = other.release();
    }
    return *this;
  }
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Reads until `size` bytes or end of file; `*got` says how many arrived. Short
// only at end of file, so callers can tell a short chunk from a slow pipe.
// With a `cancel_fd`, waits for `fd` and `cancel_fd` together and gives up
// (kCancelled) once `cancel_fd` is readable: a pipe whose writer is slow must
// not keep a failed pipeline from returning.
absl::Status ReadFull(int fd, void* buffer, size_t size, size_t* got, const std::string& path,
                      int cancel_fd = -1) {
  auto* p = static_cast<char*>(buffer);
  *got = 0;
  while (*got < size) {
    if (cancel_fd >= 0) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "cannot poll", path);
      }
      if ((fds[1].revents & POLLIN) != 0) {
        return absl::CancelledError(absl::StrCat("reading ", path, " cancelled"));
      }
    }
    const ssize_t n = read(fd, p + *got, size - *got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot read", path);
    }
    if (n == 0) break;
    *got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<ScopedFd> OpenInput(const std::string& path, struct stat* st) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, "cannot open input", path);
  if (fstat(fd.get(), st) != 0) return ErrnoError(errno, "cannot stat input", path);
  if (S_ISDIR(st->st_mode)) return ValidationError(absl::StrCat("input ", path, " is a directory"));
  return ScopedFd(fd.release());
}

// Whether a read of the input can block indefinitely (a pipe, a socket, a
// terminal), so the reader thread must be cancellable.
bool ReadsMayBlock(const struct stat& st) { return !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode); }

// Refuses an output that would destroy the input or cannot be a file. A
// missing output is fine; other stat errors surface when the temporary file
// is created.
absl::Status CheckOutputPath(const std::string& output_path, const std::string& input_path,
                             const struct stat& input_stat) {
  if (output_path.empty()) return ValidationError("output path is empty");
  if (output_path.back() == '/') {
    return ValidationError(absl::StrCat("output path ", output_path, " names a directory"));
  }
  struct stat st;
  if (stat(output_path.c_str(), &st) != 0) return absl::OkStatus();
  if (S_ISDIR(st.st_mode)) {
    return ValidationError(absl::StrCat("output path ", output_path, " is a directory"));
  }
  // Catches hard links, symlinks and other spellings of the input's path.
  if (st.st_dev == input_stat.st_dev && st.st_ino == input_stat.st_ino) {
    return ValidationError(
        absl::StrCat("output ", output_path, " is the same file as input ", input_path));
  }
  return absl::OkStatus();
}

// The output under construction: a temporary file next to the output path,
// renamed over it by Commit(). Destroying an uncommitted TempOutput removes
// the file, so every early return leaves nothing behind.
class TempOutput {
 public:
  TempOutput() = default;
  TempOutput(const TempOutput&) = delete;
  TempOutput& operator=(const TempOutput&) = delete;
  ~TempOutput() {
    if (fd_ >= 0) close(fd_);
    if (!temp_path_.empty() && !committed_) unlink(temp_path_.c_str());
  }

  // Creates the temporary file (mode 0600, by mkstemp) in the output's
  // directory: same file system, so the final rename is atomic.
  absl::Status Create(const std::string& output_path) {
    output_path_ = output_path;
    const size_t slash = output_path.rfind('/');
    const std::string prefix = slash == std::string::npos ? "" : output_path.substr(0, slash + 1);
    const std::string base = output_path.substr(prefix.size());
    dir_path_ =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : output_path.substr(0, slash));
    std::string name =
        absl::StrCat(prefix, ".", base.substr(0, kMaxTempBaseName), ".kmsenv-XXXXXX");
    const int fd = mkostemp(name.data(), O_CLOEXEC);
    if (fd < 0) {
      return ErrnoError(errno,
                        absl::StrCat("cannot create a temporary file for ", output_path, " in"),
                        dir_path_);
    }
    fd_ = fd;
    temp_path_ = std::move(name);
    return absl::OkStatus();
  }

  absl::Status Write(const void* data, size_t size) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = write(fd_, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "cannot write", temp_path_);
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  // Makes the contents durable, then atomically replaces the output with them.
  absl::Status Commit() {
    if (fsync(fd_) != 0) return ErrnoError(errno, "cannot fsync", temp_path_);
    const int fd = std::exchange(fd_, -1);
    // close() can report a deferred write error (NFS); treat it as one.
    if (close(fd) != 0) return ErrnoError(errno, "cannot close", temp_path_);
    if (rename(temp_path_.c_str(), output_path_.c_str()) != 0) {
      return ErrnoError(errno, "cannot rename the temporary file onto", output_path_);
    }
    committed_ = true;
    // Make the rename itself durable. Best effort: the output is complete
    // and in place by now, and a directory we may write but not read (mode
    // -wx) cannot be opened for fsync.
    ScopedFd dir(open(dir_path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() >= 0) fsync(dir.get());
    return absl::OkStatus();
  }

 private:
  int fd_ = -1;
  std::string output_path_;
  std::string dir_path_;
  std::string temp_path_;
  bool committed_ = false;
};

// Reads and parses the header at the start of `fd`, and returns it with the
// SHA-256 of its bytes.
absl::StatusOr<std::pair<EnvelopeHeader, std::string>> ReadHeader(int fd, const std::string& path) {
  std::string bytes(kHeaderPrefixSize, '\0');
  size_t got = 0;
  KMS_RETURN_IF_ERROR(ReadFull(fd, bytes.data(), bytes.size(), &got, path));
  bytes.resize(got);
  // Validates the length before allocating for the rest.
  KMS_ASSIGN_OR_RETURN(const uint32_t header_length, ParseHeaderPrefix(bytes));
  bytes.resize(header_length);
  KMS_RETURN_IF_ERROR(ReadFull(fd, bytes.data() + kHeaderPrefixSize,
                               header_length - kHeaderPrefixSize, &got, path));
  if (got != header_length - kHeaderPrefixSize) {
    return FormatError(absl::StrCat(path, ": file is truncated inside the envelope header (",
                                    kHeaderPrefixSize + got, " of ", header_length, " bytes)"));
  }
  KMS_ASSIGN_OR_RETURN(EnvelopeHeader header, ParseEnvelopeHeader(bytes));
  KMS_ASSIGN_OR_RETURN(std::string digest, Sha256(bytes));
  return std::make_pair(std::move(header), std::move(digest));
}

// ---- Chunks ----------------------------------------------------------------

// AES-256-GCM over the chunks of one file: the STREAM nonces and the header
// digest as AAD, in place in the chunk buffer. One per crypto thread (an EVP
// context is not thread-safe). The data key goes into the context once, at
// Create; the context's key schedule is wiped by EVP_CIPHER_CTX_free on
// destruction, and the caller keeps (and wipes) the key bytes.
class ChunkCipher {
 public:
  ChunkCipher(const ChunkCipher&) = delete;
  ChunkCipher& operator=(const ChunkCipher&) = delete;
  ~ChunkCipher() {
    EVP_CIPHER_CTX_free(ctx_);
    EVP_CIPHER_free(cipher_);
  }

  // Errors: kInternal for a key that is not kEnvelopeDataKeySize bytes or an
  // OpenSSL failure.
  static absl::StatusOr<std::unique_ptr<ChunkCipher>> Create(const SecretBytes& key, bool encrypt,
                                                             absl::string_view nonce_prefix,
                                                             absl::string_view header_digest) {
    if (key.size() != kEnvelopeDataKeySize) {
      return absl::InternalError(absl::StrCat("data key source returned a ", key.size(),
                                              "-byte data key; AES-256 needs ",
                                              kEnvelopeDataKeySize));
    }
    std::unique_ptr<ChunkCipher> cipher(new ChunkCipher(nonce_prefix, header_digest));
    cipher->cipher_ = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    cipher->ctx_ = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX* ctx = cipher->ctx_;
    const int enc = encrypt ? 1 : 0;
    if (cipher->cipher_ == nullptr || ctx == nullptr ||
        EVP_CipherInit_ex(ctx, cipher->cipher_, nullptr, nullptr, nullptr, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, kNonceSize, nullptr) != 1 ||
        EVP_CipherInit_ex(ctx, nullptr, nullptr, key.data(), nullptr, enc) != 1) {
      return absl::InternalError("cannot set up AES-256-GCM");
    }
    return cipher;
  }

  // Encrypts the `size` bytes at `data` as chunk `index`, in place, and puts
  // the tag after them: `data` must have room for size + kEnvelopeTagSize.
  absl::Status Seal(uint32_t index, bool last, uint8_t* data, size_t size) {
    uint8_t nonce[kNonceSize];
    MakeNonce(index, last, nonce);
    int len = 0;
    if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce) != 1 ||
        EVP_EncryptUpdate(ctx_, nullptr, &len, Aad(), static_cast<int>(aad_.size())) != 1 ||
        (size > 0 && EVP_EncryptUpdate(ctx_, data, &len, data, static_cast<int>(size)) != 1) ||
        EVP_EncryptFinal_ex(ctx_, data + size, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kEnvelopeTagSize, data + size) != 1) {
      return absl::InternalError(
          absl::StrCat("AES-256-GCM encryption of chunk ", index, " failed"));
    }
    return absl::OkStatus();
  }

  // Decrypts chunk `index` (`size` bytes at `record`: ciphertext || tag) in
  // place: the plaintext is the first size - kEnvelopeTagSize bytes. Returns
  // false if the chunk does not authenticate; `record` then holds
  // unauthenticated bytes the caller must not use.
  absl::StatusOr<bool> Open(uint32_t index, bool last, uint8_t* record, size_t size) {
    const size_t ciphertext_size = size - kEnvelopeTagSize;
    uint8_t nonce[kNonceSize];
    MakeNonce(index, last, nonce);
    // The tag ctrl takes a non-const pointer but only reads it.
    uint8_t tag[kEnvelopeTagSize];
    std::memcpy(tag, record + ciphertext_size, kEnvelopeTagSize);
    int len = 0;
    if (EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce) != 1 ||
        EVP_DecryptUpdate(ctx_, nullptr, &len, Aad(), static_cast<int>(aad_.size())) != 1 ||
        (ciphertext_size > 0 &&
         EVP_DecryptUpdate(ctx_, record, &len, record, static_cast<int>(ciphertext_size)) != 1) ||
        EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kEnvelopeTagSize, tag) != 1) {
      return absl::InternalError(
          absl::StrCat("AES-256-GCM decryption of chunk ", index, " failed"));
    }
    return EVP_DecryptFinal_ex(ctx_, record + ciphertext_size, &len) == 1;
  }

 private:
  ChunkCipher(absl::string_view nonce_prefix, absl::string_view header_digest)
      : nonce_prefix_(nonce_prefix), aad_(header_digest) {}

  // prefix (7) || big-endian index (4) || last flag (1): STREAM's nonce.
  void MakeNonce(uint32_t index, bool last, uint8_t nonce[kNonceSize]) const {
    std::memcpy(nonce, nonce_prefix_.data(), kEnvelopeNoncePrefixSize);
    nonce[7] = static_cast<uint8_t>(index >> 24);
    nonce[8] = static_cast<uint8_t>(index >> 16);
    nonce[9] = static_cast<uint8_t>(index >> 8);
    nonce[10] = static_cast<uint8_t>(index);
    nonce[11] = last ? 0x01 : 0x00;
  }
  const uint8_t* Aad() const { return reinterpret_cast<const uint8_t*>(aad_.data()); }

  std::string nonce_prefix_;
  std::string aad_;
  EVP_CIPHER* cipher_ = nullptr;
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

// One ChunkCipher per crypto thread, all keyed with `key`. STREAM makes
// chunks independent of each other (the nonce depends only on the index and
// the last flag, the AAD only on the header), so any thread may process any
// chunk.
absl::StatusOr<std::vector<std::unique_ptr<ChunkCipher>>> MakeChunkCiphers(
    const SecretBytes& key, bool encrypt, absl::string_view nonce_prefix,
    absl::string_view header_digest) {
  std::vector<std::unique_ptr<ChunkCipher>> ciphers;
  for (int i = 0; i < kCryptoThreads; ++i) {
    KMS_ASSIGN_OR_RETURN(auto cipher,
                         ChunkCipher::Create(key, encrypt, nonce_prefix, header_digest));
    ciphers.push_back(std::move(cipher));
  }
  return ciphers;
}

ChunkPipelineOptions PipelineOptions(size_t chunk_size) {
  ChunkPipelineOptions options;
  // A buffer holds a whole record: a chunk is sealed and opened in place.
  options.buffer_size = chunk_size + kEnvelopeTagSize;
  options.slots = static_cast<int>(kEnvelopeChunkBuffers);
  options.workers = kCryptoThreads;
  return options;
}

absl::Status CheckChunkSize(size_t chunk_size) {
  if (chunk_size < kMinEnvelopeChunkSize || chunk_size > kMaxEnvelopeChunkSize) {
    return ValidationError(absl::StrCat("chunk size must be ", kMinEnvelopeChunkSize, "..",
                                        kMaxEnvelopeChunkSize, " bytes, got ", chunk_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EnvelopeHeader> ParseEnvelopeHeader(absl::string_view bytes) {
  KMS_ASSIGN_OR_RETURN(const uint32_t header_length,
                       ParseHeaderPrefix(bytes.substr(0, kHeaderPrefixSize)));
  if (bytes.size() < header_length) {
    return FormatError(absl::StrCat("envelope header is truncated: ", bytes.size(), " of ",
                                    header_length, " bytes"));
  }
  EnvelopeHeader header;
  header.format_version = kEnvelopeFormatVersion;
  header.header_length = header_length;
  HeaderReader reader(bytes.substr(0, header_length), kHeaderPrefixSize);

  KMS_RETURN_IF_ERROR(reader.U32("chunk size", &header.chunk_size));
  if (header.chunk_size < kMinEnvelopeChunkSize || header.chunk_size > kMaxEnvelopeChunkSize) {
    return FormatError(absl::StrCat("envelope chunk size ", header.chunk_size, " is out of range ",
                                    kMinEnvelopeChunkSize, "..", kMaxEnvelopeChunkSize));
  }
  KMS_RETURN_IF_ERROR(reader.Bytes("nonce prefix", kEnvelopeNoncePrefixSize, &header.nonce_prefix));

  uint32_t length = 0;
  KMS_RETURN_IF_ERROR(reader.U32("wrapped data key length", &length));
  if (length < 1 || length > kMaxWrappedDataKeySize) {
    return FormatError(absl::StrCat("wrapped data key length ", length, " is out of range 1..",
                                    kMaxWrappedDataKeySize));
  }
  KMS_RETURN_IF_ERROR(reader.Bytes("wrapped data key", length, &header.wrapped_data_key));

  uint32_t pairs = 0;
  KMS_RETURN_IF_ERROR(reader.U32("encryption context count", &pairs));
  const size_t context_start = reader.pos();
  // Each pair takes at least its two length prefixes: refuse an absurd count
  // before looping over it.
  if (pairs > reader.remaining() / 8 || pairs > kMaxEncodedContextSize / 8) {
    return FormatError(
        absl::StrCat("encryption context count ", pairs, " does not fit in the envelope header"));
  }
  const std::string* previous_key = nullptr;
  for (uint32_t i = 0; i < pairs; ++i) {
    std::string key, value;
    KMS_RETURN_IF_ERROR(reader.U32("encryption context key length", &length));
    KMS_RETURN_IF_ERROR(reader.Bytes("encryption context key", length, &key));
    KMS_RETURN_IF_ERROR(reader.U32("encryption context value length", &length));
    KMS_RETURN_IF_ERROR(reader.Bytes("encryption context value", length, &value));
    if (reader.pos() - context_start > kMaxEncodedContextSize) {
      return FormatError(
          absl::StrCat("encryption context is larger than ", kMaxEncodedContextSize, " bytes"));
    }
    if (previous_key != nullptr && !(*previous_key < key)) {
      return FormatError(
          absl::StrCat("encryption context keys are not strictly ascending at pair ", i));
    }
    previous_key =
        &header.context.emplace_hint(header.context.end(), std::move(key), std::move(value))->first;
  }

  KMS_RETURN_IF_ERROR(reader.U32("key ARN length", &length));
  if (length > kMaxKeyArnSize) {
    return FormatError(
        absl::StrCat("key ARN length ", length, " is out of range 0..", kMaxKeyArnSize));
  }
  KMS_RETURN_IF_ERROR(reader.Bytes("key ARN", length, &header.key_arn));
  if (reader.remaining() != 0) {
    return FormatError(absl::StrCat("malformed envelope header: ", reader.remaining(),
                                    " unexpected bytes after the key ARN"));
  }
  return header;
}

absl::StatusOr<EnvelopeHeader> ReadEnvelopeHeader(const std::string& path) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, "cannot open", path);
  KMS_ASSIGN_OR_RETURN(auto header_and_digest, ReadHeader(fd.get(), path));
  return std::move(header_and_digest.first);
}

absl::StatusOr<EnvelopeHeader> EncryptFile(DataKeySource& source, const std::string& key_id,
                                           const EncryptionContext& context,
                                           const std::string& input_path,
                                           const std::string& output_path,
                                           const EnvelopeOptions& options) {
  // Everything that can be checked locally is, before the data key is asked
  // for: each GenerateDataKey is a CMK use and an audit record.
  KMS_RETURN_IF_ERROR(CheckChunkSize(options.chunk_size));
  const size_t context_size = EncodedContextSize(context);
  if (context_size > kMaxEncodedContextSize) {
    return ValidationError(absl::StrCat("encryption context encodes to ", context_size,
                                        " bytes; an envelope file holds at most ",
                                        kMaxEncodedContextSize));
  }
  if (output_path == input_path) {
    return ValidationError(
        absl::StrCat("output path must differ from the input path ", input_path));
  }
  struct stat input_stat;
  KMS_ASSIGN_OR_RETURN(ScopedFd input, OpenInput(input_path, &input_stat));
  KMS_RETURN_IF_ERROR(CheckOutputPath(output_path, input_path, input_stat));
  TempOutput output;
  KMS_RETURN_IF_ERROR(output.Create(output_path));

  KMS_ASSIGN_OR_RETURN(DataKey data_key, source.GenerateDataKey(key_id, context));
  if (data_key.ciphertext_blob.empty() ||
      data_key.ciphertext_blob.size() > kMaxWrappedDataKeySize) {
    return absl::InternalError(
        absl::StrCat("data key source returned a ", data_key.ciphertext_blob.size(),
                     "-byte wrapped key; the envelope format holds 1..", kMaxWrappedDataKeySize));
  }
  if (data_key.key_arn.size() > kMaxKeyArnSize) {
    return absl::InternalError(absl::StrCat("data key source returned a ", data_key.key_arn.size(),
                                            "-byte key ARN; the envelope format holds 0..",
                                            kMaxKeyArnSize));
  }

  EnvelopeHeader header;
  header.chunk_size = static_cast<uint32_t>(options.chunk_size);
  header.nonce_prefix.assign(kEnvelopeNoncePrefixSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(header.nonce_prefix.data()),
                 kEnvelopeNoncePrefixSize) != 1) {
    return absl::InternalError("cannot generate a random nonce prefix");
  }
  header.wrapped_data_key = std::move(data_key.ciphertext_blob);
  header.context = context;
  header.key_arn = std::move(data_key.key_arn);
  const std::string header_bytes = SerializeHeader(header);
  KMS_ASSIGN_OR_RETURN(const std::string digest, Sha256(header_bytes));
  KMS_RETURN_IF_ERROR(output.Write(header_bytes.data(), header_bytes.size()));

  KMS_ASSIGN_OR_RETURN(auto ciphers, MakeChunkCiphers(data_key.plaintext, /*encrypt=*/true,
                                                     header.nonce_prefix, digest));
  // From here on the key lives only in the EVP contexts.
  data_key.plaintext.Clear();

  const size_t chunk_size = options.chunk_size;
  const bool cancellable = ReadsMayBlock(input_stat);
  const ChunkReadFn read = [&](PipelineChunk& chunk, int cancel_fd) -> absl::Status {
    size_t got = 0;
    KMS_RETURN_IF_ERROR(ReadFull(input.get(), chunk.buffer.mutable_data(), chunk_size, &got,
                                 input_path, cancellable ? cancel_fd : -1));
    // The final chunk is the first short one; an input that is a multiple of
    // the chunk size (or empty) ends with an empty final chunk.
    chunk.size = got;
    chunk.last = got < chunk_size;
    if (!chunk.last && chunk.index >= std::numeric_limits<uint32_t>::max()) {
      return ValidationError(absl::StrCat("input ", input_path, " needs more than 2^32 chunks of ",
                                          chunk_size, " bytes; use a larger chunk size"));
    }
    return absl::OkStatus();
  };
  // The read stage refuses chunk 2^32 - 1 unless it is the last, so every
  // index fits the nonce's 32 bits.
  const ChunkTransformFn seal = [&](int worker, PipelineChunk& chunk) -> absl::Status {
    KMS_RETURN_IF_ERROR(ciphers[worker]->Seal(static_cast<uint32_t>(chunk.index), chunk.last,
                                              chunk.buffer.mutable_data(), chunk.size));
    chunk.size += kEnvelopeTagSize;
    return absl::OkStatus();
  };
  const ChunkWriteFn write = [&](const PipelineChunk& chunk) {
    return output.Write(chunk.buffer.data(), chunk.size);
  };
  KMS_RETURN_IF_ERROR(RunChunkPipeline(PipelineOptions(chunk_size), read, seal, write));
  KMS_RETURN_IF_ERROR(output.Commit());
  return header;
}

absl::StatusOr<EnvelopeHeader> DecryptFile(DataKeySource& source, const std::string& input_path,
                                           const std::string& output_path) {
  if (output_path == input_path) {
    return ValidationError(
        absl::StrCat("output path must differ from the input path ", input_path));
  }
  struct stat input_stat;
  KMS_ASSIGN_OR_RETURN(ScopedFd input, OpenInput(input_path, &input_stat));
  // A file that is not an envelope is refused before the daemon is asked.
  KMS_ASSIGN_OR_RETURN(auto header_and_digest, ReadHeader(input.get(), input_path));
  EnvelopeHeader header = std::move(header_and_digest.first);
  KMS_RETURN_IF_ERROR(CheckOutputPath(output_path, input_path, input_stat));
  TempOutput output;
  KMS_RETURN_IF_ERROR(output.Create(output_path));

  KMS_ASSIGN_OR_RETURN(SecretBytes key,
                       source.DecryptDataKey(header.wrapped_data_key, header.context));
  KMS_ASSIGN_OR_RETURN(auto ciphers, MakeChunkCiphers(key, /*encrypt=*/false, header.nonce_prefix,
                                                     header_and_digest.second));
  // From here on the key lives only in the EVP contexts.
  key.Clear();

  const size_t chunk_size = header.chunk_size;
  const size_t full_record = chunk_size + kEnvelopeTagSize;
  const bool cancellable = ReadsMayBlock(input_stat);
  const ChunkReadFn read = [&](PipelineChunk& chunk, int cancel_fd) -> absl::Status {
    size_t got = 0;
    KMS_RETURN_IF_ERROR(ReadFull(input.get(), chunk.buffer.mutable_data(), full_record, &got,
                                 input_path, cancellable ? cancel_fd : -1));
    if (got == 0) {
      return FormatError(absl::StrCat(input_path, ": file is truncated: no final chunk (",
                                      chunk.index, " full chunks)"));
    }
    if (got < kEnvelopeTagSize) {
      return FormatError(absl::StrCat(input_path, ": chunk ", chunk.index,
                                      " failed authentication (", got,
                                      " bytes, shorter than a tag; file truncated?)"));
    }
    // Only the final chunk is short; a cut anywhere else makes a short chunk
    // that fails authentication as "last" under the wrong nonce.
    chunk.size = got;
    chunk.last = got < full_record;
    if (!chunk.last && chunk.index >= std::numeric_limits<uint32_t>::max()) {
      return FormatError(absl::StrCat(input_path, ": more than 2^32 chunks"));
    }
    return absl::OkStatus();
  };
  // Every chunk is authenticated here, before the write stage sees it.
  const ChunkTransformFn open = [&](int worker, PipelineChunk& chunk) -> absl::Status {
    KMS_ASSIGN_OR_RETURN(const bool authentic,
                         ciphers[worker]->Open(static_cast<uint32_t>(chunk.index), chunk.last,
                                               chunk.buffer.mutable_data(), chunk.size));
    if (!authentic) {
      return FormatError(
          absl::StrCat(input_path, ": chunk ", chunk.index, " failed authentication"));
    }
    chunk.size -= kEnvelopeTagSize;
    return absl::OkStatus();
  };
  const ChunkWriteFn write = [&](const PipelineChunk& chunk) {
    return output.Write(chunk.buffer.data(), chunk.size);
  };
  KMS_RETURN_IF_ERROR(RunChunkPipeline(PipelineOptions(chunk_size), read, open, write));

  // ReadFull stops short only at end of file, so this is belt and braces for
  // an input that grows while it is read.
  char extra;
  size_t got = 0;
  KMS_RETURN_IF_ERROR(ReadFull(input.get(), &extra, 1, &got, input_path));
  if (got != 0) {
    return FormatError(absl::StrCat(input_path, ": unexpected data after the final chunk"));
  }
  KMS_RETURN_IF_ERROR(output.Commit());
  return header;
}

}  // namespace kms::client
