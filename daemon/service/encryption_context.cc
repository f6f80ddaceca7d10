#include "daemon/service/encryption_context.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"

namespace kms::service {
namespace {
void AppendU32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}
}  // namespace

EncryptionContext ContextFromProto(const google::protobuf::Map<std::string, std::string>& map) {
  return EncryptionContext(map.begin(), map.end());
}

absl::Status ValidateContext(const EncryptionContext& context, absl::string_view field) {
  if (context.size() > kMaxContextPairs) {
    return ValidationError(absl::StrCat(field, " may have at most ", kMaxContextPairs,
                                        " pairs, got ", context.size()));
  }
  size_t total = 0;
  for (const auto& [key, value] : context) {
    if (key.empty()) {
      return ValidationError(absl::StrCat(field, " keys must not be empty"));
    }
    if (key.size() > kMaxContextKeyBytes) {
      // Name the key by its length only: context keys are not secret, but a
      // 10 KB key in an error message is no help to anyone.
      return ValidationError(absl::StrCat(field, " keys may be at most ", kMaxContextKeyBytes,
                                          " bytes, got one of ", key.size()));
    }
    total += key.size() + value.size();
  }
  if (total > kMaxContextBytes) {
    return ValidationError(absl::StrCat(field, " may hold at most ", kMaxContextBytes,
                                        " bytes of keys and values, got ", total));
  }
  return absl::OkStatus();
}

std::string CanonicalContext(const EncryptionContext& context) {
  std::string out;
  AppendU32(&out, static_cast<uint32_t>(context.size()));
  for (const auto& [key, value] : context) {  // std::map: sorted by key bytes
    AppendU32(&out, static_cast<uint32_t>(key.size()));
    out.append(key);
    AppendU32(&out, static_cast<uint32_t>(value.size()));
    out.append(value);
  }
  return out;
}

}  // namespace kms::service
