#include "daemon/common/uuid.h"

#include <openssl/rand.h>

#include <cstdint>
#include <cstdlib>

namespace kms {
namespace {
constexpr char kHex[] = "0123456789abcdef";

bool IsDashPosition(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
}  // namespace

std::string NewUuid() {
  uint8_t raw[kUuidBytes];
  // RAND_bytes fails only if the CSPRNG cannot be seeded; continuing with a
  // predictable id would be worse than stopping.
  if (RAND_bytes(raw, sizeof raw) != 1) std::abort();
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
