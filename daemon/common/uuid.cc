#include "daemon/common/uuid.h"

#include <openssl/rand.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace kms {
namespace {
constexpr char kHex[] = "0123456789abcdef";

bool IsDashPosition(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Random bytes for ids, drawn from OpenSSL's CSPRNG kPoolIds ids at a time.
// kmsd draws a request id for every call, and one RAND_bytes call costs about
// 1.9 us whether it returns 16 bytes or 1 KiB (locking, and the fork check's
// getpid system call), so one draw per id was a few percent of a data-key
// call's CPU. The bytes are not secret (every id is published), so the pool
// needs no wiping.
constexpr size_t kPoolIds = 64;

// Moved on in a child after fork(), so that a child never hands out ids its
// parent also holds in its pool.
std::atomic<uint64_t> fork_generation{0};

struct IdPool {
  uint8_t bytes[kPoolIds * kUuidBytes];
  size_t next = sizeof bytes;  // empty until the first draw
  uint64_t generation = 0;
};

const uint8_t* NextIdBytes() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr,
                   [] { fork_generation.fetch_add(1, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  thread_local IdPool pool;
  const uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  if (pool.next == sizeof pool.bytes || pool.generation != generation) {
    // RAND_bytes fails only if the CSPRNG cannot be seeded; continuing with
    // a predictable id would be worse than stopping.
    if (RAND_bytes(pool.bytes, sizeof pool.bytes) != 1) std::abort();
    pool.next = 0;
    pool.generation = generation;
  }
  const uint8_t* bytes = pool.bytes + pool.next;
  pool.next += kUuidBytes;
  return bytes;
}

}  // namespace

std::string NewUuid() {
  uint8_t raw[kUuidBytes];
  std::memcpy(raw, NextIdBytes(), sizeof raw);
  raw[6] = (raw[6] & 0x0f) | 0x40;  // version 4
  raw[8] = (raw[8] & 0x3f) | 0x80;  // RFC 4122 variant
  return *UuidFromBytes(absl::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

std::optional<std::string> UuidToBytes(absl::string_view text) {
  if (text.size() != 36) return std::nullopt;
  std::string out;
  out.reserve(kUuidBytes);
  int high = -1;
  for (size_t i = 0; i < text.size(); ++i) {
    if (IsDashPosition(i)) {
      if (text[i] != '-') return std::nullopt;
      continue;
    }
    const int v = HexValue(text[i]);
    if (v < 0) return std::nullopt;
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<char>((high << 4) | v));
      high = -1;
    }
  }
  return out;
}

std::optional<std::string> UuidFromBytes(absl::string_view bytes) {
  if (bytes.size() != kUuidBytes) return std::nullopt;
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < kUuidBytes; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    const auto b = static_cast<uint8_t>(bytes[i]);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0f]);
  }
  return out;
}

}  // namespace kms
