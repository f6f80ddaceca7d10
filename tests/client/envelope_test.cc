// Tests for the envelope file format (client/envelope.h): round trips at the
// chunk-boundary sizes, every tamper case (TEST_P), atomic output, error
// pass-through from the DataKeySource, and a constant-memory check.
#include "client/envelope.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/errors.h"
#include "daemon/common/secret_bytes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// ---- Heap accounting for the constant-memory test ---------------------------
//
// Every C++ allocation in this binary goes through these replacements. While
// g_heap_tracking is set, they count the bytes allocated (and not yet freed)
// since tracking began and keep the peak. Each block carries a small header
// saying whether it was counted, so blocks allocated earlier and freed during
// the measurement do not distort it. Deterministic: no timing, no sampling.
// (OpenSSL allocates with malloc, not new, and is not counted; its per-call
// allocations are fixed-size contexts.)
namespace {

struct alignas(alignof(std::max_align_t)) BlockHeader {
  size_t size;
  bool counted;
};

std::atomic<bool> g_heap_tracking{false};
std::atomic<int64_t> g_heap_live{0};
std::atomic<int64_t> g_heap_peak{0};

void* CountedAlloc(size_t size, bool nothrow) {
  void* block = std::malloc(sizeof(BlockHeader) + size);
  if (block == nullptr) {
    if (nothrow) return nullptr;
    throw std::bad_alloc();
  }
  auto* header = static_cast<BlockHeader*>(block);
  header->size = size;
  header->counted = g_heap_tracking.load(std::memory_order_relaxed);
  if (header->counted) {
    const int64_t live =
        g_heap_live.fetch_add(static_cast<int64_t>(size)) + static_cast<int64_t>(size);
    int64_t peak = g_heap_peak.load();
    while (live > peak && !g_heap_peak.compare_exchange_weak(peak, live)) {
    }
  }
  return header + 1;
}

void CountedFree(void* p) {
  if (p == nullptr) return;
  BlockHeader* header = static_cast<BlockHeader*>(p) - 1;
  if (header->counted) g_heap_live.fetch_sub(static_cast<int64_t>(header->size));
  std::free(header);
}

// Peak bytes of C++ heap held at once while `fn` runs.
int64_t PeakHeapDuring(const std::function<void()>& fn) {
  g_heap_live = 0;
  g_heap_peak = 0;
  g_heap_tracking = true;
  fn();
  g_heap_tracking = false;
  return g_heap_peak.load();
}

}  // namespace

void* operator new(size_t size) { return CountedAlloc(size, false); }
void* operator new[](size_t size) { return CountedAlloc(size, false); }
void* operator new(size_t size, const std::nothrow_t&) noexcept { return CountedAlloc(size, true); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  return CountedAlloc(size, true);
}
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, size_t) noexcept { CountedFree(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { CountedFree(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { CountedFree(p); }

namespace kms::client {
namespace {

using ::testing::HasSubstr;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;
constexpr char kFakeKeyArnPrefix[] = "arn:aws:kms:local:111122223333:key/";

// ---- A DataKeySource that behaves like kmsd, in memory ----------------------

// Wraps data keys with AES-256-GCM under a local master key; the AAD is the
// key id plus the canonical context, so a different context (or any change to
// the blob) fails to unwrap, as it does in kmsd. Errors can be injected.
// Thread-safe.
class FakeDataKeySource : public DataKeySource {
 public:
  static constexpr absl::string_view kUnwrapFailure =
      "fake: data key does not decrypt (altered blob or different encryption context)";

  FakeDataKeySource() : master_key_(32) {
    RAND_bytes(master_key_.mutable_data(), static_cast<int>(master_key_.size()));
  }

  absl::StatusOr<DataKey> GenerateDataKey(const std::string& key_id,
                                          const EncryptionContext& context) override {
    absl::MutexLock lock(&mu_);
    ++generate_calls_;
    if (!generate_error_.ok()) return generate_error_;
    DataKey key;
    key.plaintext = SecretBytes(data_key_size_);
    RAND_bytes(key.plaintext.mutable_data(), static_cast<int>(key.plaintext.size()));
    std::string iv(12, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(iv.data()), 12);
    const std::string aad = Aad(key_id, context);
    std::string sealed = Gcm(/*encrypt=*/true, iv, aad, key.plaintext.secret());
    key.ciphertext_blob =
        absl::StrCat("FAKE", std::string(1, static_cast<char>(key_id.size())), key_id, iv, sealed);
    key.key_arn = absl::StrCat(kFakeKeyArnPrefix, key_id);
    last_data_key_ = key.plaintext.Copy();
    return key;
  }

  absl::StatusOr<SecretBytes> DecryptDataKey(const std::string& blob,
                                             const EncryptionContext& context) override {
    absl::MutexLock lock(&mu_);
    ++decrypt_calls_;
    if (!decrypt_error_.ok()) return decrypt_error_;
    const absl::Status failure =
        WithErrorType(absl::InvalidArgumentError(kUnwrapFailure), error_type::kInvalidCiphertext);
    if (blob.size() < 5 || blob.compare(0, 4, "FAKE") != 0) return failure;
    const size_t id_size = static_cast<uint8_t>(blob[4]);
    if (blob.size() < 5 + id_size + 12 + 16) return failure;
    const std::string key_id = blob.substr(5, id_size);
    const std::string iv = blob.substr(5 + id_size, 12);
    const std::string sealed = blob.substr(5 + id_size + 12);
    std::string plaintext = Gcm(/*encrypt=*/false, iv, Aad(key_id, context), sealed);
    if (plaintext.empty()) return failure;
    return SecretBytes::TakeFrom(&plaintext);
  }

  void set_generate_error(absl::Status status) {
    absl::MutexLock lock(&mu_);
    generate_error_ = std::move(status);
  }
  void set_decrypt_error(absl::Status status) {
    absl::MutexLock lock(&mu_);
    decrypt_error_ = std::move(status);
  }
  void set_data_key_size(size_t size) {
    absl::MutexLock lock(&mu_);
    data_key_size_ = size;
  }
  // The plaintext of the last data key generated, for tests that decode a
  // file independently of the code under test.
  SecretBytes last_data_key() {
    absl::MutexLock lock(&mu_);
    return last_data_key_.Copy();
  }
  int generate_calls() {
    absl::MutexLock lock(&mu_);
    return generate_calls_;
  }
  int decrypt_calls() {
    absl::MutexLock lock(&mu_);
    return decrypt_calls_;
  }

 private:
  static std::string Aad(const std::string& key_id, const EncryptionContext& context) {
    std::string aad = absl::StrCat(key_id.size(), ":", key_id);
    for (const auto& [k, v] : context) absl::StrAppend(&aad, k.size(), ":", k, v.size(), ":", v);
    return aad;
  }

  // Encrypt: returns ciphertext || tag. Decrypt: takes ciphertext || tag and
  // returns the plaintext, or "" if it does not authenticate (data keys are
  // never empty).
  std::string Gcm(bool encrypt, const std::string& iv, const std::string& aad,
                  absl::string_view in) const {
    if (!encrypt && in.size() < 16) return "";
    const size_t body = encrypt ? in.size() : in.size() - 16;
    std::string out(body + (encrypt ? 16 : 0), '\0');
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    const auto* i = reinterpret_cast<const unsigned char*>(in.data());
    int len = 0;
    bool ok =
        EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, master_key_.data(),
                          reinterpret_cast<const unsigned char*>(iv.data()),
                          encrypt ? 1 : 0) == 1 &&
        EVP_CipherUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                         static_cast<int>(aad.size())) == 1 &&
        EVP_CipherUpdate(ctx, o, &len, i, static_cast<int>(body)) == 1;
    if (ok && !encrypt) {
      unsigned char tag[16];
      std::copy(i + body, i + body + 16, tag);
      ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1 &&
           EVP_CipherFinal_ex(ctx, o + body, &len) == 1;
    } else if (ok) {
      ok = EVP_CipherFinal_ex(ctx, o + body, &len) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, o + body) == 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
      WipeString(&out);
      return "";
    }
    return out;
  }

  SecretBytes master_key_;
  absl::Mutex mu_;
  absl::Status generate_error_;
  absl::Status decrypt_error_;
  size_t data_key_size_ = 32;
  SecretBytes last_data_key_;
  int generate_calls_ = 0;
  int decrypt_calls_ = 0;
};

// ---- Helpers -------------------------------------------------------------

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

void PutU32At(std::string& bytes, size_t offset, uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes[offset + i] = static_cast<char>(v >> (24 - 8 * i));
}

uint32_t GetU32At(const std::string& bytes, size_t offset) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[offset + i]);
  return v;
}

EnvelopeOptions ChunkSize(size_t chunk_size) {
  EnvelopeOptions options;
  options.chunk_size = chunk_size;
  return options;
}

// Expected encrypted size: header, then full chunks, then a final chunk that
// is always shorter than a full one (possibly empty).
size_t ExpectedFileSize(const EnvelopeHeader& header, size_t plaintext_size) {
  const size_t c = header.chunk_size;
  return header.header_length + (plaintext_size / c) * (c + kEnvelopeTagSize) +
         (plaintext_size % c) + kEnvelopeTagSize;
}

class EnvelopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "envelope_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::set<std::string> DirEntries() const {
    std::set<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.insert(entry.path().filename().string());
    }
    return names;
  }

  // Writes `plaintext` to "plain" and encrypts it to "sealed".
  EnvelopeHeader EncryptBytes(const std::string& plaintext, EnvelopeOptions options = {}) {
    WriteBytes(Path("plain"), plaintext);
    auto header = EncryptFile(source_, "key-1", context_, Path("plain"), Path("sealed"), options);
    EXPECT_TRUE(header.ok()) << header.status();
    return header.ok() ? *header : EnvelopeHeader{};
  }

  FakeDataKeySource source_;
  EncryptionContext context_ = {{"bucket", "b1"}, {"purpose", "test"}};
  std::string dir_;
};

// ---- Round trips ---------------------------------------------------------

// Plaintext sizes relative to the chunk size C: the boundaries where STREAM
// implementations go wrong.
enum class SizeKind {
  kEmpty,
  kOne,
  kChunkMinusOne,
  kChunk,
  kChunkPlusOne,
  kTwoChunks,
  kThreeChunksPlus17
};

size_t SizeOf(SizeKind kind, size_t c) {
  switch (kind) {
    case SizeKind::kEmpty:
      return 0;
    case SizeKind::kOne:
      return 1;
    case SizeKind::kChunkMinusOne:
      return c - 1;
    case SizeKind::kChunk:
      return c;
    case SizeKind::kChunkPlusOne:
      return c + 1;
    case SizeKind::kTwoChunks:
      return 2 * c;
    case SizeKind::kThreeChunksPlus17:
      return 3 * c + 17;
  }
  return 0;
}

class EnvelopeRoundTripTest : public EnvelopeTest,
                              public ::testing::WithParamInterface<std::tuple<size_t, SizeKind>> {};

TEST_P(EnvelopeRoundTripTest, DecryptsToTheOriginalBytes) {
  const auto [chunk_size, kind] = GetParam();
  const size_t size = SizeOf(kind, chunk_size);
  const std::string plaintext = RandomBytes(size, size * 31 + chunk_size);
  const EnvelopeHeader written = EncryptBytes(plaintext, ChunkSize(chunk_size));
  ASSERT_EQ(written.chunk_size, chunk_size);

  EXPECT_EQ(ReadBytes(Path("sealed")).size(), ExpectedFileSize(written, size));
  auto header = DecryptFile(source_, Path("sealed"), Path("out"));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(ReadBytes(Path("out")), plaintext);
  EXPECT_EQ(header->context, context_);
  EXPECT_EQ(header->wrapped_data_key, written.wrapped_data_key);
  EXPECT_EQ(header->nonce_prefix, written.nonce_prefix);
  EXPECT_EQ(DirEntries(), (std::set<std::string>{"plain", "sealed", "out"}));
}

std::string RoundTripName(const ::testing::TestParamInfo<std::tuple<size_t, SizeKind>>& info) {
  static const char* const kNames[] = {"Empty",        "OneByte",   "ChunkMinusOne",    "OneChunk",
                                       "ChunkPlusOne", "TwoChunks", "ThreeChunksPlus17"};
  return absl::StrCat("Chunk", std::get<0>(info.param), "_",
                      kNames[static_cast<int>(std::get<1>(info.param))]);
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, EnvelopeRoundTripTest,
    ::testing::Combine(::testing::Values(1 * kKiB, 4 * kKiB + 1, 64 * kKiB),
                       ::testing::Values(SizeKind::kEmpty, SizeKind::kOne, SizeKind::kChunkMinusOne,
                                         SizeKind::kChunk, SizeKind::kChunkPlusOne,
                                         SizeKind::kTwoChunks, SizeKind::kThreeChunksPlus17)),
    RoundTripName);

TEST_F(EnvelopeTest, RoundTripsAMultiMebibyteFileWithDefaultOptions) {
  const std::string plaintext = RandomBytes(5 * kMiB + 3, 7);
  const EnvelopeHeader written = EncryptBytes(plaintext);
  EXPECT_EQ(written.chunk_size, 1 * kMiB);
  EXPECT_EQ(ReadBytes(Path("sealed")).size(), ExpectedFileSize(written, plaintext.size()));
  ASSERT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok());
  EXPECT_EQ(ReadBytes(Path("out")), plaintext);
}

TEST_F(EnvelopeTest, RoundTripsAtTheChunkSizeLimits) {
  for (size_t chunk_size : {kMinEnvelopeChunkSize, kMaxEnvelopeChunkSize}) {
    const std::string plaintext = RandomBytes(kMinEnvelopeChunkSize * 2 + 5, chunk_size);
    const EnvelopeHeader written = EncryptBytes(plaintext, ChunkSize(chunk_size));
    EXPECT_EQ(written.chunk_size, chunk_size);
    ASSERT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok());
    EXPECT_EQ(ReadBytes(Path("out")), plaintext);
  }
}

TEST_F(EnvelopeTest, HeaderIsReadableWithoutDecrypting) {
  const EnvelopeHeader written = EncryptBytes("hello", ChunkSize(2 * kKiB));
  auto header = ReadEnvelopeHeader(Path("sealed"));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->format_version, kEnvelopeFormatVersion);
  EXPECT_EQ(header->header_length, written.header_length);
  EXPECT_EQ(header->chunk_size, 2 * kKiB);
  EXPECT_EQ(header->nonce_prefix, written.nonce_prefix);
  EXPECT_EQ(header->nonce_prefix.size(), kEnvelopeNoncePrefixSize);
  EXPECT_EQ(header->wrapped_data_key, written.wrapped_data_key);
  EXPECT_EQ(header->context, context_);
  EXPECT_EQ(header->key_arn, absl::StrCat(kFakeKeyArnPrefix, "key-1"));
  EXPECT_EQ(source_.decrypt_calls(), 0);

  // The header bytes follow the documented layout.
  const std::string file = ReadBytes(Path("sealed"));
  EXPECT_EQ(file.substr(0, 8), "KMSDENV1");
  EXPECT_EQ(file.substr(8, 2), std::string("\x00\x01", 2));
  EXPECT_EQ(GetU32At(file, 10), written.header_length);
  EXPECT_EQ(GetU32At(file, 14), 2 * kKiB);
  EXPECT_EQ(file.substr(18, 7), written.nonce_prefix);
  const uint32_t w = GetU32At(file, 25);
  EXPECT_EQ(file.substr(29, w), written.wrapped_data_key);
  EXPECT_EQ(GetU32At(file, 29 + w), 2u);  // context pairs
  EXPECT_EQ(GetU32At(file, 33 + w), 6u);  // "bucket"
  EXPECT_EQ(file.substr(37 + w, 6), "bucket");
  const std::string arn = absl::StrCat(kFakeKeyArnPrefix, "key-1");
  EXPECT_EQ(file.substr(written.header_length - arn.size(), arn.size()), arn);
  EXPECT_EQ(GetU32At(file, written.header_length - arn.size() - 4), arn.size());
}

TEST_F(EnvelopeTest, OutputIsOwnerOnly) {
  EncryptBytes("secret");
  ASSERT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok());
  for (const char* name : {"sealed", "out"}) {
    struct stat st;
    ASSERT_EQ(stat(Path(name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
  }
}

TEST_F(EnvelopeTest, EachEncryptionUsesAFreshKeyAndNoncePrefix) {
  const std::string plaintext = RandomBytes(3000, 1);
  const EnvelopeHeader first = EncryptBytes(plaintext, ChunkSize(kKiB));
  const std::string first_file = ReadBytes(Path("sealed"));
  const EnvelopeHeader second = EncryptBytes(plaintext, ChunkSize(kKiB));
  EXPECT_NE(first.wrapped_data_key, second.wrapped_data_key);
  EXPECT_NE(first.nonce_prefix, second.nonce_prefix);
  EXPECT_NE(first_file.substr(first.header_length),
            ReadBytes(Path("sealed")).substr(second.header_length));
}

TEST_F(EnvelopeTest, EncryptReplacesAnExistingOutput) {
  WriteBytes(Path("sealed"), "old contents");
  EncryptBytes("new plaintext");
  ASSERT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok());
  EXPECT_EQ(ReadBytes(Path("out")), "new plaintext");
}

TEST_F(EnvelopeTest, EncryptReadsFromAPipe) {
  // Input need not be a regular file (kmsctl may read stdin). The data fits
  // the pipe's buffer, so no writer thread is needed.
  const std::string plaintext = RandomBytes(3 * kKiB + 5, 9);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], plaintext.data(), plaintext.size()),
            static_cast<ssize_t>(plaintext.size()));
  close(fds[1]);
  auto written = EncryptFile(source_, "key-1", context_, absl::StrCat("/proc/self/fd/", fds[0]),
                             Path("sealed"), ChunkSize(kKiB));
  close(fds[0]);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(ReadBytes(Path("sealed")).size(), ExpectedFileSize(*written, plaintext.size()));
  ASSERT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok());
  EXPECT_EQ(ReadBytes(Path("out")), plaintext);
}

TEST_F(EnvelopeTest, EmptyContextAndContextAtTheSizeLimitRoundTrip) {
  // 4 + 4 length bytes + key + value = exactly the limit.
  const EncryptionContext at_limit = {{"k", std::string(kMaxEncodedContextSize - 9, 'v')}};
  for (const EncryptionContext& context : {EncryptionContext{}, at_limit}) {
    WriteBytes(Path("plain"), "data");
    auto written = EncryptFile(source_, "key-1", context, Path("plain"), Path("sealed"));
    ASSERT_TRUE(written.ok()) << written.status();
    auto read = DecryptFile(source_, Path("sealed"), Path("out"));
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->context, context);
    EXPECT_EQ(ReadBytes(Path("out")), "data");
  }
}

// An independent decoder, written from the format comment in envelope.h
// rather than from envelope.cc: AES-256-GCM open of one chunk (ciphertext ||
// tag) under `key` with the given nonce and AAD. nullopt if it does not
// authenticate.
std::optional<std::string> OpenChunk(const SecretBytes& key, const std::string& nonce,
                                     const std::string& aad, const std::string& record) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const size_t body = record.size() - 16;
  std::string out(body, '\0');
  std::string tag = record.substr(body);
  int len = 0;
  const bool ok =
      EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) ==
          1 &&
      EVP_DecryptInit_ex(ctx, nullptr, nullptr, key.data(),
                         reinterpret_cast<const unsigned char*>(nonce.data())) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &len,
                        reinterpret_cast<const unsigned char*>(record.data()),
                        static_cast<int>(body)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag.data()) == 1 &&
      EVP_DecryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()) + body, &len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return std::nullopt;
  return out;
}

std::string StreamNonce(const std::string& prefix, uint32_t index, bool last) {
  std::string nonce = prefix;
  nonce.resize(11);
  PutU32At(nonce, 7, index);
  nonce.push_back(last ? '\x01' : '\x00');
  return nonce;
}

TEST_F(EnvelopeTest, ChunksFollowTheDocumentedStreamConstruction) {
  const std::string plaintext = RandomBytes(2 * kKiB + 100, 5);
  const EnvelopeHeader written = EncryptBytes(plaintext, ChunkSize(kKiB));
  const SecretBytes key = source_.last_data_key();
  ASSERT_EQ(key.size(), 32u);
  const std::string file = ReadBytes(Path("sealed"));
  const uint32_t h = GetU32At(file, 10);
  ASSERT_EQ(h, written.header_length);
  const std::string prefix = file.substr(18, 7);
  std::string aad(32, '\0');
  unsigned int aad_size = 0;
  ASSERT_EQ(EVP_Digest(file.data(), h, reinterpret_cast<unsigned char*>(aad.data()), &aad_size,
                       EVP_sha256(), nullptr),
            1);

  const size_t record = kKiB + 16;
  std::string decoded;
  for (uint32_t i = 0; i < 3; ++i) {
    const bool last = i == 2;
    const std::string chunk = file.substr(h + i * record, last ? std::string::npos : record);
    auto opened = OpenChunk(key, StreamNonce(prefix, i, last), aad, chunk);
    ASSERT_TRUE(opened.has_value()) << "chunk " << i;
    decoded += *opened;
    // The flag and the index are bound: any other nonce fails.
    EXPECT_FALSE(OpenChunk(key, StreamNonce(prefix, i, !last), aad, chunk).has_value()) << i;
    EXPECT_FALSE(OpenChunk(key, StreamNonce(prefix, i + 1, last), aad, chunk).has_value()) << i;
    EXPECT_FALSE(
        OpenChunk(key, StreamNonce(prefix, i, last), std::string(32, '\0'), chunk).has_value())
        << i;
  }
  EXPECT_EQ(h + 2 * record + 100 + 16, file.size());
  EXPECT_EQ(decoded, plaintext);
}

// The independent encoder matching OpenChunk: AES-256-GCM seal of one chunk,
// returning ciphertext || tag.
std::string SealChunk(const SecretBytes& key, const std::string& nonce, const std::string& aad,
                      const std::string& plaintext) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::string out(plaintext.size() + 16, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int len = 0;
  const bool ok =
      EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) ==
          1 &&
      EVP_EncryptInit_ex(ctx, nullptr, nullptr, key.data(),
                         reinterpret_cast<const unsigned char*>(nonce.data())) == 1 &&
      EVP_EncryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) == 1 &&
      EVP_EncryptUpdate(ctx, o, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx, o + plaintext.size(), &len) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, o + plaintext.size()) == 1;
  EVP_CIPHER_CTX_free(ctx);
  EXPECT_TRUE(ok);
  return out;
}

// The chunks are sealed by several threads; the file must still be exactly
// what one thread sealing chunk after chunk (this test's own encoder) makes
// from the same header, key and plaintext, whatever the timing. Many tiny
// chunks give the threads many chances to get out of step.
TEST_F(EnvelopeTest, ManyTinyChunksMatchASingleThreadedEncoderByteForByte) {
  const std::string plaintext = RandomBytes(3000 * kKiB + 77, 11);
  for (int run = 0; run < 3; ++run) {
    const EnvelopeHeader written = EncryptBytes(plaintext, ChunkSize(kKiB));
    const std::string file = ReadBytes(Path("sealed"));
    const size_t h = written.header_length;
    std::string aad(32, '\0');
    unsigned int aad_size = 0;
    ASSERT_EQ(EVP_Digest(file.data(), h, reinterpret_cast<unsigned char*>(aad.data()), &aad_size,
                         EVP_sha256(), nullptr),
              1);
    const SecretBytes key = source_.last_data_key();
    std::string expected = file.substr(0, h);
    const uint32_t chunks = static_cast<uint32_t>(plaintext.size() / kKiB) + 1;
    for (uint32_t i = 0; i < chunks; ++i) {
      expected += SealChunk(key, StreamNonce(written.nonce_prefix, i, i + 1 == chunks), aad,
                            plaintext.substr(i * kKiB, kKiB));
    }
    ASSERT_EQ(file.size(), expected.size());
    EXPECT_TRUE(file == expected) << "run " << run;

    ASSERT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok());
    EXPECT_TRUE(ReadBytes(Path("out")) == plaintext) << "run " << run;
  }
}

// Input from a pipe larger than the pipe's buffer, fed slowly by another
// thread: the reader thread waits on it without the pipeline mistaking a
// short read for the end.
TEST_F(EnvelopeTest, EncryptReadsALargeSlowPipe) {
  const std::string plaintext = RandomBytes(600 * kKiB + 9, 13);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::thread feeder([&] {
    for (size_t pos = 0; pos < plaintext.size(); pos += 7000) {
      const size_t n = std::min<size_t>(7000, plaintext.size() - pos);
      if (write(fds[1], plaintext.data() + pos, n) != static_cast<ssize_t>(n)) break;
    }
    close(fds[1]);
  });
  auto written = EncryptFile(source_, "key-1", context_, absl::StrCat("/proc/self/fd/", fds[0]),
                             Path("sealed"), ChunkSize(4 * kKiB));
  feeder.join();
  close(fds[0]);
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok());
  EXPECT_TRUE(ReadBytes(Path("out")) == plaintext);
}

// With hundreds of chunks and several in flight, a chunk deep in the file
// that fails authentication is reported by number (the first bad one, even
// when a later bad chunk is opened first by the other thread), the existing
// output is untouched and no temporary file is left.
TEST_F(EnvelopeTest, BadChunkDeepInAManyChunkFileLeavesNothingBehind) {
  const EnvelopeHeader written = EncryptBytes(RandomBytes(400 * kKiB + 5, 17), ChunkSize(kKiB));
  std::string file = ReadBytes(Path("sealed"));
  const size_t record = kKiB + kEnvelopeTagSize;
  file[written.header_length + 250 * record + 3] ^= 0x01;
  file[written.header_length + 251 * record + 3] ^= 0x01;
  file[written.header_length + 253 * record + 3] ^= 0x01;
  WriteBytes(Path("sealed"), file);
  WriteBytes(Path("out"), "precious");
  const std::set<std::string> before = DirEntries();
  for (int run = 0; run < 20; ++run) {
    auto result = DecryptFile(source_, Path("sealed"), Path("out"));
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(result.status().message()),
                HasSubstr("chunk 250 failed authentication"));
    EXPECT_EQ(ReadBytes(Path("out")), "precious");
    EXPECT_EQ(DirEntries(), before);
  }
}

// A file cut in the middle of a chunk deep in the file: the short chunk
// fails as a "last" chunk under the wrong nonce, after many good ones have
// gone through the pipeline.
TEST_F(EnvelopeTest, TruncationDeepInAManyChunkFileLeavesNothingBehind) {
  const EnvelopeHeader written = EncryptBytes(RandomBytes(300 * kKiB, 19), ChunkSize(kKiB));
  std::string file = ReadBytes(Path("sealed"));
  file.resize(written.header_length + 123 * (kKiB + kEnvelopeTagSize) + 40);
  WriteBytes(Path("sealed"), file);
  auto result = DecryptFile(source_, Path("sealed"), Path("out"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("chunk 123 failed authentication"));
  EXPECT_EQ(DirEntries(), (std::set<std::string>{"plain", "sealed"}));
}

// ---- Tampering -----------------------------------------------------------

// Where things are in the tamper fixture's file: plaintext of 3 full chunks
// plus 17 bytes, chunk size 1 KiB, so chunks 0..2 are full and chunk 3 (the
// final one) holds 17 bytes.
struct Layout {
  size_t header_length;
  size_t wrapped_key_length;
  size_t record;  // a full chunk: chunk size + tag

  size_t WrappedKeyOffset() const { return 29; }
  size_t ContextOffset() const { return 29 + wrapped_key_length; }  // the pair count
  size_t ChunkOffset(size_t i) const { return header_length + i * record; }
};

struct TamperCase {
  std::string name;
  std::function<void(std::string& file, const Layout& layout)> tamper;
  std::string message;  // a substring of the expected error message
  bool reaches_source;  // false: refused before the data key is unwrapped
};

void PrintTo(const TamperCase& c, std::ostream* os) { *os << c.name; }

void FlipBit(std::string& file, size_t offset, int bit = 0) {
  file[offset] = static_cast<char>(file[offset] ^ (1 << bit));
}

std::string Chunk(const std::string& file, const Layout& l, size_t i) {
  return file.substr(l.ChunkOffset(i), i < 3 ? l.record : std::string::npos);
}

constexpr char kAuthFailed[] = "failed authentication";
constexpr char kFakeUnwrap[] = "fake: data key does not decrypt";

std::vector<TamperCase> TamperCases() {
  return {
      // Header fields that the parser checks.
      {"FlippedBitInMagic", [](std::string& f, const Layout&) { FlipBit(f, 0); },
       "not a kmsd envelope file (bad magic)", false},
      {"WrongMagic", [](std::string& f, const Layout&) { f.replace(0, 8, "KMSDENV2"); },
       "not a kmsd envelope file (bad magic)", false},
      {"FlippedBitInVersion", [](std::string& f, const Layout&) { FlipBit(f, 9, 1); },
       "unsupported envelope format version 3", false},
      {"HeaderLengthHuge", [](std::string& f, const Layout&) { PutU32At(f, 10, 0xFFFFFFFF); },
       "envelope header length 4294967295 is out of range", false},
      {"HeaderLengthTooSmall", [](std::string& f, const Layout&) { PutU32At(f, 10, 14); },
       "envelope header length 14 is out of range", false},
      {"HeaderLengthOneLonger",
       [](std::string& f, const Layout& l) { PutU32At(f, 10, l.header_length + 1); },
       "1 unexpected bytes after the key ARN", false},
      {"HeaderLengthOneShorter",
       [](std::string& f, const Layout& l) { PutU32At(f, 10, l.header_length - 1); }, "key ARN (",
       false},
      {"ChunkSizeZero", [](std::string& f, const Layout&) { PutU32At(f, 14, 0); },
       "envelope chunk size 0 is out of range", false},
      {"ChunkSizeHuge", [](std::string& f, const Layout&) { PutU32At(f, 14, 0x7FFFFFFF); },
       "envelope chunk size 2147483647 is out of range", false},
      {"WrappedKeyLengthHuge", [](std::string& f, const Layout&) { PutU32At(f, 25, 0xFFFFFFFF); },
       "wrapped data key length 4294967295 is out of range 1..8192", false},
      {"WrappedKeyLengthZero", [](std::string& f, const Layout&) { PutU32At(f, 25, 0); },
       "wrapped data key length 0 is out of range", false},
      {"WrappedKeyLengthPastHeader", [](std::string& f, const Layout&) { PutU32At(f, 25, 8000); },
       "wrapped data key (8000 bytes at offset 29) runs past the header length", false},
      {"ContextCountHuge",
       [](std::string& f, const Layout& l) { PutU32At(f, l.ContextOffset(), 0xFFFFFFFF); },
       "encryption context count 4294967295 does not fit", false},
      {"ContextKeyLengthHuge",
       [](std::string& f, const Layout& l) { PutU32At(f, l.ContextOffset() + 4, 0x7FFFFFFF); },
       "encryption context key (2147483647 bytes", false},
      {"ContextKeysOutOfOrder",
       // "bucket" -> "zucket", which sorts after the second key, "purpose".
       [](std::string& f, const Layout& l) { f[l.ContextOffset() + 8] = 'z'; },
       "encryption context keys are not strictly ascending at pair 1", false},
      {"KeyArnLengthHuge",
       [](std::string& f, const Layout& l) {
         const size_t arn = std::string(kFakeKeyArnPrefix).size() + 5;
         PutU32At(f, l.header_length - arn - 4, 0xFFFFFFF0);
       },
       "key ARN length 4294967280 is out of range", false},
      {"TruncatedInsideFixedHeader", [](std::string& f, const Layout&) { f.resize(11); },
       "envelope header is truncated", false},
      {"TruncatedInsideHeader",
       [](std::string& f, const Layout& l) { f.resize(l.header_length - 1); },
       "file is truncated inside the envelope header", false},
      {"TruncatedToEmpty", [](std::string& f, const Layout&) { f.clear(); },
       "not a kmsd envelope file (bad magic)", false},

      // Header fields the source checks: the wrapped key and the context.
      {"FlippedBitInWrappedKey",
       [](std::string& f, const Layout& l) { FlipBit(f, l.WrappedKeyOffset() + 20); }, kFakeUnwrap,
       true},
      {"ContextValueChanged",
       // "b1" -> "b2": the context no longer matches the one the key is bound to.
       [](std::string& f, const Layout& l) { f[l.ContextOffset() + 4 + 4 + 6 + 4 + 1] = '2'; },
       kFakeUnwrap, true},

      // Header fields only the chunk AAD protects.
      {"FlippedBitInNoncePrefix", [](std::string& f, const Layout&) { FlipBit(f, 18, 7); },
       "chunk 0 failed authentication", true},
      {"ChunkSizeChangedButValid", [](std::string& f, const Layout&) { PutU32At(f, 14, 2 * kKiB); },
       "chunk 0 failed authentication", true},
      {"FlippedBitInKeyArn",
       [](std::string& f, const Layout& l) { FlipBit(f, l.header_length - 1); },
       "chunk 0 failed authentication", true},

      // Chunks.
      {"FlippedBitInFirstChunk",
       [](std::string& f, const Layout& l) { FlipBit(f, l.ChunkOffset(0)); },
       "chunk 0 failed authentication", true},
      {"FlippedBitInMiddleChunk",
       [](std::string& f, const Layout& l) { FlipBit(f, l.ChunkOffset(1) + 100, 3); },
       "chunk 1 failed authentication", true},
      {"FlippedBitInMiddleChunkTag",
       [](std::string& f, const Layout& l) { FlipBit(f, l.ChunkOffset(2) - 1); },
       "chunk 1 failed authentication", true},
      {"FlippedBitInFinalChunk",
       [](std::string& f, const Layout& l) { FlipBit(f, l.ChunkOffset(3) + 5); },
       "chunk 3 failed authentication", true},
      {"FlippedBitInFinalTag", [](std::string& f, const Layout&) { FlipBit(f, f.size() - 1, 6); },
       "chunk 3 failed authentication", true},
      {"TwoChunksSwapped",
       [](std::string& f, const Layout& l) {
         const std::string c0 = Chunk(f, l, 0), c1 = Chunk(f, l, 1);
         f.replace(l.ChunkOffset(0), l.record, c1);
         f.replace(l.ChunkOffset(1), l.record, c0);
       },
       "chunk 0 failed authentication", true},
      {"MiddleChunkDropped",
       [](std::string& f, const Layout& l) { f.erase(l.ChunkOffset(1), l.record); },
       "chunk 1 failed authentication", true},
      {"FirstChunkDuplicated",
       [](std::string& f, const Layout& l) { f.insert(l.ChunkOffset(1), Chunk(f, l, 0)); },
       "chunk 1 failed authentication", true},
      {"MiddleChunkDuplicated",
       [](std::string& f, const Layout& l) { f.insert(l.ChunkOffset(2), Chunk(f, l, 1)); },
       "chunk 2 failed authentication", true},
      {"FinalChunkDuplicated", [](std::string& f, const Layout& l) { f += Chunk(f, l, 3); },
       "chunk 3 failed authentication", true},
      {"FinalChunkMovedForward",
       // Drop chunks 1 and 2: a valid final chunk, but at the wrong index.
       [](std::string& f, const Layout& l) { f.erase(l.ChunkOffset(1), 2 * l.record); },
       "chunk 1 failed authentication", true},
      {"TruncatedAtChunkBoundary",
       // The final chunk is gone; what is left ends with a full chunk.
       [](std::string& f, const Layout& l) { f.resize(l.ChunkOffset(3)); },
       "file is truncated: no final chunk", true},
      {"TruncatedToHeaderOnly", [](std::string& f, const Layout& l) { f.resize(l.header_length); },
       "file is truncated: no final chunk", true},
      {"TruncatedMidChunk",
       // A cut inside chunk 1 makes it look like a short final chunk.
       [](std::string& f, const Layout& l) { f.resize(l.ChunkOffset(1) + 500); },
       "chunk 1 failed authentication", true},
      {"TruncatedMidFinalChunk", [](std::string& f, const Layout&) { f.resize(f.size() - 1); },
       "chunk 3 failed authentication", true},
      {"TruncatedInsideFirstTag",
       [](std::string& f, const Layout& l) { f.resize(l.header_length + 7); },
       "chunk 0 failed authentication", true},
      {"TrailingByteAppended", [](std::string& f, const Layout&) { f.push_back('\0'); },
       "chunk 3 failed authentication", true},
      {"TrailingChunkAppended", [](std::string& f, const Layout& l) { f += Chunk(f, l, 0); },
       "chunk 3 failed authentication", true},
  };
}

class EnvelopeTamperTest : public EnvelopeTest, public ::testing::WithParamInterface<TamperCase> {};

TEST_P(EnvelopeTamperTest, IsDetectedAndLeavesNoOutput) {
  const TamperCase& c = GetParam();
  const EnvelopeHeader written = EncryptBytes(RandomBytes(3 * kKiB + 17, 3), ChunkSize(kKiB));
  std::string file = ReadBytes(Path("sealed"));
  const Layout layout{written.header_length, written.wrapped_data_key.size(),
                      kKiB + kEnvelopeTagSize};
  ASSERT_EQ(file.size(), layout.ChunkOffset(3) + 17 + kEnvelopeTagSize);
  const std::string original = file;
  c.tamper(file, layout);
  ASSERT_NE(file, original) << "the tamper function changed nothing";
  WriteBytes(Path("sealed"), file);
  WriteBytes(Path("out"), "precious");
  const std::set<std::string> before = DirEntries();

  auto result = DecryptFile(source_, Path("sealed"), Path("out"));

  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(c.message));
  EXPECT_EQ(ErrorTypeOf(result.status()), error_type::kInvalidCiphertext);
  EXPECT_EQ(source_.decrypt_calls(), c.reaches_source ? 1 : 0);
  EXPECT_EQ(ReadBytes(Path("out")), "precious");
  EXPECT_EQ(DirEntries(), before);  // no temporary file left behind
}

INSTANTIATE_TEST_SUITE_P(AllCases, EnvelopeTamperTest, ::testing::ValuesIn(TamperCases()),
                         [](const ::testing::TestParamInfo<TamperCase>& info) {
                           return info.param.name;
                         });

// STREAM's reason for the last-chunk flag: an input that is an exact multiple
// of the chunk size must not decrypt when cut at a chunk boundary.
TEST_F(EnvelopeTest, TruncationOfAnExactMultipleIsDetected) {
  for (size_t chunks : {0, 1, 2}) {
    const EnvelopeHeader written =
        EncryptBytes(RandomBytes(chunks * kKiB, chunks), ChunkSize(kKiB));
    std::string file = ReadBytes(Path("sealed"));
    // The final chunk is empty: just its tag.
    ASSERT_EQ(file.size(), written.header_length + chunks * (kKiB + 16) + 16);
    file.resize(file.size() - 16);
    WriteBytes(Path("sealed"), file);
    auto result = DecryptFile(source_, Path("sealed"), Path("out"));
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << chunks;
    EXPECT_THAT(std::string(result.status().message()),
                HasSubstr("file is truncated: no final chunk"));
    EXPECT_FALSE(Exists(Path("out")));
  }
}

TEST_F(EnvelopeTest, ChunkSplicedFromAnotherFileIsRejected) {
  // Chunk 1 of file B, put in place of chunk 1 of file A (same chunk size,
  // same CMK, same context): A's data key unwraps fine, the chunk does not
  // authenticate.
  EncryptBytes(RandomBytes(3 * kKiB, 1), ChunkSize(kKiB));
  const std::string a = ReadBytes(Path("sealed"));
  EncryptBytes(RandomBytes(3 * kKiB, 2), ChunkSize(kKiB));
  const std::string b = ReadBytes(Path("sealed"));
  const size_t hb = ReadEnvelopeHeader(Path("sealed")).value().header_length;
  std::string spliced = a;
  const size_t offset_a = a.size() - 16 - 2 * (kKiB + 16);
  spliced.replace(offset_a, kKiB + 16, b.substr(hb + kKiB + 16, kKiB + 16));
  WriteBytes(Path("sealed"), spliced);
  auto result = DecryptFile(source_, Path("sealed"), Path("out"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("chunk 1 failed authentication"));
  EXPECT_FALSE(Exists(Path("out")));
}

// ---- The data key source ---------------------------------------------------

TEST_F(EnvelopeTest, DecryptSurfacesTheSourcesContextMismatchUnchanged) {
  EncryptBytes("data", ChunkSize(kKiB));
  std::string file = ReadBytes(Path("sealed"));
  const size_t pos = file.find("test");  // the value of "purpose"
  ASSERT_NE(pos, std::string::npos);
  file.replace(pos, 4, "prod");
  WriteBytes(Path("sealed"), file);

  auto result = DecryptFile(source_, Path("sealed"), Path("out"));
  EXPECT_EQ(result.status(),
            WithErrorType(absl::InvalidArgumentError(FakeDataKeySource::kUnwrapFailure),
                          error_type::kInvalidCiphertext));
  EXPECT_FALSE(Exists(Path("out")));
}

TEST_F(EnvelopeTest, DecryptWithAnotherSourceFailsInTheSource) {
  EncryptBytes("data");
  FakeDataKeySource other;
  auto result = DecryptFile(other, Path("sealed"), Path("out"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(kFakeUnwrap));
  EXPECT_FALSE(Exists(Path("out")));
}

TEST_F(EnvelopeTest, EncryptPassesGenerateDataKeyErrorsThrough) {
  const absl::Status error =
      WithErrorType(absl::UnavailableError("hsm gone"), error_type::kKeyUnavailable);
  source_.set_generate_error(error);
  WriteBytes(Path("plain"), "data");
  WriteBytes(Path("sealed"), "precious");
  auto result = EncryptFile(source_, "key-1", context_, Path("plain"), Path("sealed"));
  EXPECT_EQ(result.status(), error);
  EXPECT_EQ(ReadBytes(Path("sealed")), "precious");
  EXPECT_EQ(DirEntries(), (std::set<std::string>{"plain", "sealed"}));
}

TEST_F(EnvelopeTest, DecryptPassesDecryptDataKeyErrorsThrough) {
  EncryptBytes("data");
  const absl::Status error =
      WithErrorType(absl::PermissionDeniedError("not allowed"), error_type::kAccessDenied);
  source_.set_decrypt_error(error);
  WriteBytes(Path("out"), "precious");
  auto result = DecryptFile(source_, Path("sealed"), Path("out"));
  EXPECT_EQ(result.status(), error);
  EXPECT_EQ(ReadBytes(Path("out")), "precious");
  EXPECT_EQ(DirEntries(), (std::set<std::string>{"plain", "sealed", "out"}));
}

TEST_F(EnvelopeTest, EncryptRejectsADataKeyOfTheWrongSize) {
  source_.set_data_key_size(16);
  WriteBytes(Path("plain"), "data");
  auto result = EncryptFile(source_, "key-1", context_, Path("plain"), Path("sealed"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(Exists(Path("sealed")));
  EXPECT_EQ(DirEntries(), (std::set<std::string>{"plain"}));
}

// ---- Arguments and I/O ---------------------------------------------------

class EnvelopeChunkSizeTest : public EnvelopeTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(EnvelopeChunkSizeTest, EncryptRejectsChunkSizeOutOfRange) {
  WriteBytes(Path("plain"), "data");
  auto result =
      EncryptFile(source_, "key-1", context_, Path("plain"), Path("sealed"), ChunkSize(GetParam()));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("chunk size must be"));
  EXPECT_EQ(source_.generate_calls(), 0);
  EXPECT_FALSE(Exists(Path("sealed")));
}

INSTANTIATE_TEST_SUITE_P(OutOfRange, EnvelopeChunkSizeTest,
                         ::testing::Values(size_t{0}, size_t{1}, kKiB - 1, 16 * kMiB + 1,
                                           SIZE_MAX));

TEST_F(EnvelopeTest, EncryptRejectsAContextTooLargeForTheFormat) {
  WriteBytes(Path("plain"), "data");
  const EncryptionContext huge = {{"k", std::string(kMaxEncodedContextSize, 'v')}};
  auto result = EncryptFile(source_, "key-1", huge, Path("plain"), Path("sealed"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorTypeOf(result.status()), error_type::kValidation);
  EXPECT_EQ(source_.generate_calls(), 0);
}

TEST_F(EnvelopeTest, RefusesOutputThatIsTheInput) {
  WriteBytes(Path("plain"), "data");
  ASSERT_EQ(link(Path("plain").c_str(), Path("hardlink").c_str()), 0);
  ASSERT_EQ(symlink(Path("plain").c_str(), Path("symlink").c_str()), 0);
  for (const std::string& output :
       {Path("plain"), dir_ + "/./plain", Path("hardlink"), Path("symlink")}) {
    auto result = EncryptFile(source_, "key-1", context_, Path("plain"), output);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << output;
    EXPECT_EQ(ErrorTypeOf(result.status()), error_type::kValidation);
  }
  EXPECT_EQ(ReadBytes(Path("plain")), "data");
  EXPECT_EQ(source_.generate_calls(), 0);

  EncryptBytes("data");
  const std::string dir_name = std::filesystem::path(dir_).filename().string();
  for (const std::string& output : {Path("sealed"), dir_ + "/../" + dir_name + "/sealed"}) {
    auto result = DecryptFile(source_, Path("sealed"), output);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << output;
  }
  EXPECT_EQ(source_.decrypt_calls(), 0);
  EXPECT_TRUE(ReadEnvelopeHeader(Path("sealed")).ok());
}

TEST_F(EnvelopeTest, RefusesAnOutputThatIsADirectory) {
  WriteBytes(Path("plain"), "data");
  std::filesystem::create_directory(Path("subdir"));
  for (const std::string& output : {Path("subdir"), Path("subdir") + "/"}) {
    auto result = EncryptFile(source_, "key-1", context_, Path("plain"), output);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << output;
  }
  EXPECT_EQ(DirEntries(), (std::set<std::string>{"plain", "subdir"}));
  EXPECT_TRUE(std::filesystem::is_empty(Path("subdir")));
}

TEST_F(EnvelopeTest, MissingInputIsNotFoundAndNamesThePath) {
  auto encrypted = EncryptFile(source_, "key-1", context_, Path("absent"), Path("sealed"));
  EXPECT_EQ(encrypted.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(encrypted.status().message()), HasSubstr(Path("absent")));
  auto decrypted = DecryptFile(source_, Path("absent"), Path("out"));
  EXPECT_EQ(decrypted.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(decrypted.status().message()), HasSubstr(Path("absent")));
  auto header = ReadEnvelopeHeader(Path("absent"));
  EXPECT_EQ(header.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(DirEntries().empty());
  EXPECT_EQ(source_.generate_calls(), 0);
}

TEST_F(EnvelopeTest, MissingOutputDirectoryIsNotFoundBeforeAnyKeyIsMade) {
  WriteBytes(Path("plain"), "data");
  auto result = EncryptFile(source_, "key-1", context_, Path("plain"), Path("nodir/sealed"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(Path("nodir")));
  EXPECT_EQ(source_.generate_calls(), 0);
}

TEST_F(EnvelopeTest, UnwritableOutputDirectoryIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  WriteBytes(Path("plain"), "data");
  std::filesystem::create_directory(Path("locked"));
  ASSERT_EQ(chmod(Path("locked").c_str(), 0500), 0);
  auto result = EncryptFile(source_, "key-1", context_, Path("plain"), Path("locked/sealed"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(Path("locked")));
  EXPECT_EQ(source_.generate_calls(), 0);
  chmod(Path("locked").c_str(), 0700);
}

TEST_F(EnvelopeTest, InputThatIsADirectoryIsRejected) {
  auto result = EncryptFile(source_, "key-1", context_, dir_, Path("sealed"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Exists(Path("sealed")));
}

TEST_F(EnvelopeTest, PlainFileIsNotAnEnvelope) {
  WriteBytes(Path("plain"), "just some text, long enough to hold a header");
  auto result = DecryptFile(source_, Path("plain"), Path("out"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()),
              HasSubstr("not a kmsd envelope file (bad magic)"));
  EXPECT_EQ(ReadEnvelopeHeader(Path("plain")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(source_.decrypt_calls(), 0);
  EXPECT_FALSE(Exists(Path("out")));
}

// ---- The header parser ---------------------------------------------------

TEST_F(EnvelopeTest, ParserRejectsEveryProperPrefixOfAHeader) {
  const EnvelopeHeader written = EncryptBytes("x", ChunkSize(kKiB));
  const std::string file = ReadBytes(Path("sealed"));
  const absl::string_view header_bytes(file.data(), written.header_length);
  for (size_t n = 0; n < header_bytes.size(); ++n) {
    auto parsed = ParseEnvelopeHeader(header_bytes.substr(0, n));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << n;
  }
  auto parsed = ParseEnvelopeHeader(header_bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->context, context_);
  // Bytes after the header (the chunks) are not the parser's business.
  EXPECT_TRUE(ParseEnvelopeHeader(file).ok());
}

// A small deterministic fuzz loop: random byte changes to a valid header
// either parse or fail with kInvalidArgument, and never read out of bounds
// (the ASan build checks that).
TEST_F(EnvelopeTest, ParserSurvivesRandomCorruption) {
  const EnvelopeHeader written = EncryptBytes("x", ChunkSize(kKiB));
  const std::string header_bytes = ReadBytes(Path("sealed")).substr(0, written.header_length);
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    std::string mutated = header_bytes;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      mutated[rng() % mutated.size()] = static_cast<char>(rng());
    }
    if (rng() % 4 == 0) mutated.resize(rng() % (mutated.size() + 1));
    auto parsed = ParseEnvelopeHeader(mutated);
    if (!parsed.ok()) {
      ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
      ASSERT_EQ(ErrorTypeOf(parsed.status()), error_type::kInvalidCiphertext);
    }
  }
}

// ---- Memory ----------------------------------------------------------------

// Memory must not grow with the file: the C++ heap in use during encryption
// and decryption of a 4-chunk file stays near the pipeline's ring of
// kEnvelopeChunkBuffers chunks, and a 16-chunk file needs no more.
TEST_F(EnvelopeTest, MemoryIsBoundedByTheChunkSizeNotTheFileSize) {
  constexpr size_t kChunk = 256 * kKiB;
  constexpr int64_t kRing = kEnvelopeChunkBuffers * (kChunk + kEnvelopeTagSize);
  // The ring plus headers, messages and the fake's strings.
  constexpr int64_t kBound = kRing + 96 * kKiB;
  int64_t peaks[2][2] = {};
  for (int i = 0; i < 2; ++i) {
    const size_t size = (i == 0 ? 4 : 16) * kChunk + 99;
    WriteBytes(Path("plain"), RandomBytes(size, i));
    peaks[i][0] = PeakHeapDuring([&] {
      EXPECT_TRUE(
          EncryptFile(source_, "key-1", context_, Path("plain"), Path("sealed"), ChunkSize(kChunk))
              .ok());
    });
    peaks[i][1] = PeakHeapDuring(
        [&] { EXPECT_TRUE(DecryptFile(source_, Path("sealed"), Path("out")).ok()); });
    EXPECT_EQ(ReadBytes(Path("out")).size(), size);
  }
  for (int op = 0; op < 2; ++op) {
    EXPECT_GE(peaks[0][op], kRing) << "accounting is not working";
    EXPECT_LE(peaks[0][op], kBound) << op;
    EXPECT_LE(peaks[1][op], kBound) << op;
    // Same code path, same buffers; a few bytes move with the fake's state.
    EXPECT_LE(peaks[1][op], peaks[0][op] + static_cast<int64_t>(4 * kKiB)) << op;
  }
}

}  // namespace
}  // namespace kms::client
