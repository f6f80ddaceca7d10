#include "daemon/service/ciphertext_blob.h"

#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "daemon/common/uuid.h"

namespace kms::service {

absl::StatusOr<CiphertextBlob> CiphertextBlob::Parse(absl::string_view bytes) {
  if (bytes.size() < kMinBlobSize || bytes.size() > kMaxBlobSize ||
      static_cast<uint8_t>(bytes[0]) != kBlobFormatV1) {
    return InvalidCiphertextError();
  }
  auto key_id = UuidFromBytes(bytes.substr(1, kUuidBytes));
  auto version_id = UuidFromBytes(bytes.substr(1 + kUuidBytes, kUuidBytes));
  if (!key_id || !version_id) return InvalidCiphertextError();
  CiphertextBlob blob;
  blob.key_id = *std::move(key_id);
  blob.key_version_id = *std::move(version_id);
  blob.iv = std::string(bytes.substr(kBlobAadHeaderSize, kBlobIvSize));
  blob.ciphertext = std::string(bytes.substr(kBlobHeaderSize));
  return blob;
}

std::string CiphertextBlob::AadHeader() const {
  std::string out;
  out.reserve(kBlobAadHeaderSize);
  out.push_back(static_cast<char>(kBlobFormatV1));
  out.append(UuidToBytes(key_id).value_or(std::string(kUuidBytes, '\0')));
  out.append(UuidToBytes(key_version_id).value_or(std::string(kUuidBytes, '\0')));
  return out;
}

std::string CiphertextBlob::Serialize() const {
  return absl::StrCat(AadHeader(), iv, ciphertext);
}

std::string BlobAad(const CiphertextBlob& blob, absl::string_view canonical_context) {
  return absl::StrCat(blob.AadHeader(), canonical_context);
}

}  // namespace kms::service
