#include "daemon/service/import_token.h"

#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "daemon/common/uuid.h"

namespace kms::service {
namespace {

absl::Status BadToken() {
  return InvalidImportTokenError(
      "the import token is not valid: it is malformed, was altered, or was not issued by this "
      "kmsd");
}

// The algorithm's byte on the wire: its position in kAllWrappingAlgorithms,
// plus one (0 is never valid).
uint8_t AlgorithmByte(hsm::WrappingAlgorithm algorithm) {
  uint8_t i = 1;
  for (hsm::WrappingAlgorithm a : hsm::kAllWrappingAlgorithms) {
    if (a == algorithm) return i;
    ++i;
  }
  return 0;
}

}  // namespace

absl::StatusOr<ImportToken> ImportToken::Parse(absl::string_view bytes) {
  if (bytes.size() != kImportTokenSize ||
      static_cast<uint8_t>(bytes[0]) != kImportTokenFormatV1) {
    return BadToken();
  }
  auto wrapping_key_id = UuidFromBytes(bytes.substr(1, kUuidBytes));
  auto key_id = UuidFromBytes(bytes.substr(1 + kUuidBytes, kUuidBytes));
  const uint8_t algorithm = static_cast<uint8_t>(bytes[33]);
  constexpr size_t kAlgorithms = std::size(hsm::kAllWrappingAlgorithms);
  if (!wrapping_key_id || !key_id || algorithm == 0 || algorithm > kAlgorithms) {
    return BadToken();
  }
  ImportToken token;
  token.wrapping_key_id = *std::move(wrapping_key_id);
  token.key_id = *std::move(key_id);
  token.algorithm = hsm::kAllWrappingAlgorithms[algorithm - 1];
  uint64_t micros = 0;
  for (size_t i = 34; i < kImportTokenBodySize; ++i) {
    micros = (micros << 8) | static_cast<uint8_t>(bytes[i]);
  }
  token.expiration_time = absl::FromUnixMicros(static_cast<int64_t>(micros));
  token.mac_iv = std::string(bytes.substr(kImportTokenBodySize, kImportTokenMacIvSize));
  token.mac = std::string(bytes.substr(kImportTokenBodySize + kImportTokenMacIvSize));
  return token;
}

std::string ImportToken::Body() const {
  std::string out;
  out.reserve(kImportTokenBodySize);
  out.push_back(static_cast<char>(kImportTokenFormatV1));
  out.append(UuidToBytes(wrapping_key_id).value_or(std::string(kUuidBytes, '\0')));
  out.append(UuidToBytes(key_id).value_or(std::string(kUuidBytes, '\0')));
  out.push_back(static_cast<char>(AlgorithmByte(algorithm)));
  const uint64_t micros = static_cast<uint64_t>(absl::ToUnixMicros(expiration_time));
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((micros >> shift) & 0xff));
  }
  return out;
}

std::string ImportToken::MacAad() const { return absl::StrCat(kImportTokenMacLabel, Body()); }

std::string ImportToken::Serialize() const { return absl::StrCat(Body(), mac_iv, mac); }

}  // namespace kms::service
