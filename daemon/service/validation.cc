#include "daemon/service/validation.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "daemon/common/uuid.h"

namespace kms::service {
namespace {
constexpr absl::string_view kAliasPrefix = "alias/";
constexpr absl::string_view kReservedAliasPrefix = "alias/aws/";

bool IsAliasChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '/' || c == '_' || c == '-';
}

// Quotes a caller-supplied value for an error message, cut to a readable length.
std::string Quoted(absl::string_view value) {
  constexpr size_t kMaxShown = 300;
  if (value.size() <= kMaxShown) return absl::StrCat("'", value, "'");
  return absl::StrCat("'", value.substr(0, kMaxShown), "...' (", value.size(), " characters)");
}
}  // namespace

absl::Status CheckRange(absl::string_view field, long long value, long long lo, long long hi) {
  if (value < lo || value > hi) {
    return ValidationError(absl::StrCat(field, " must be ", lo, "..", hi, ", got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckRequired(absl::string_view field, absl::string_view value) {
  if (value.empty()) return ValidationError(absl::StrCat(field, " is required"));
  return absl::OkStatus();
}

absl::Status ValidateDescription(absl::string_view description) {
  if (description.size() > kMaxDescriptionLength) {
    return ValidationError(absl::StrCat("description may be at most ", kMaxDescriptionLength,
                                        " characters, got ", description.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateAliasName(absl::string_view alias_name) {
  if (alias_name.empty()) return ValidationError("alias_name is required");
  if (!absl::StartsWith(alias_name, kAliasPrefix) || alias_name.size() == kAliasPrefix.size()) {
    return InvalidAliasNameError(absl::StrCat("alias names must start with 'alias/' followed by a name, got ",
                                              Quoted(alias_name)));
  }
  if (alias_name.size() > kMaxAliasNameLength) {
    return InvalidAliasNameError(absl::StrCat("alias names may be at most ", kMaxAliasNameLength,
                                              " characters, got ", alias_name.size()));
  }
  for (char c : alias_name) {
    if (!IsAliasChar(c)) {
      return InvalidAliasNameError(absl::StrCat(
          "alias names may contain only A-Z, a-z, 0-9, '/', '_' and '-', got ", Quoted(alias_name)));
    }
  }
  if (absl::StartsWith(alias_name, kReservedAliasPrefix)) {
    return InvalidAliasNameError(
        absl::StrCat("alias names starting with 'alias/aws/' are reserved, got ", Quoted(alias_name)));
  }
  return absl::OkStatus();
}

absl::Status ValidateTagKeys(const std::vector<std::string>& tag_keys) {
  absl::flat_hash_set<absl::string_view> seen;
  for (const std::string& key : tag_keys) {
    if (key.empty() || key.size() > kMaxTagKeyLength) {
      return TagError(absl::StrCat("tag keys must be 1..", kMaxTagKeyLength,
                                   " characters, got ", Quoted(key)));
    }
    if (!seen.insert(key).second) {
      return TagError(absl::StrCat("tag key ", Quoted(key), " appears more than once"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTags(const std::vector<keystore::TagRecord>& tags) {
  if (tags.size() > kMaxTagsPerKey) {
    return TagError(absl::StrCat("a key may have at most ", kMaxTagsPerKey, " tags, got ",
                                 tags.size()));
  }
  std::vector<std::string> keys;
  keys.reserve(tags.size());
  for (const auto& tag : tags) {
    if (tag.value.size() > kMaxTagValueLength) {
      return TagError(absl::StrCat("tag values may be at most ", kMaxTagValueLength,
                                   " characters; the value of ", Quoted(tag.key), " has ",
                                   tag.value.size()));
    }
    keys.push_back(tag.key);
  }
  return ValidateTagKeys(keys);
}

absl::StatusOr<int> ListLimit(std::optional<int> limit, int max_limit, int default_limit) {
  if (!limit.has_value()) return default_limit;
  if (absl::Status s = CheckRange("limit", *limit, 1, max_limit); !s.ok()) return s;
  return *limit;
}

std::string ResourceNames::KeyArn(absl::string_view key_id) const {
  return absl::StrCat(prefix_, ":key/", key_id);
}

std::string ResourceNames::AliasArn(absl::string_view alias_name) const {
  return absl::StrCat(prefix_, ":", alias_name);
}

absl::StatusOr<KeyIdentifier> ResourceNames::Parse(absl::string_view field,
                                                   absl::string_view key_id) const {
  if (key_id.empty()) return ValidationError(absl::StrCat(field, " is required"));
  absl::string_view rest = key_id;
  if (absl::StartsWith(rest, "arn:")) {
    const std::string own = absl::StrCat(prefix_, ":");
    if (!absl::StartsWith(rest, own)) {
      return ValidationError(absl::StrCat(field, " ", Quoted(key_id),
                                          " is not a resource name of this kmsd (expected prefix '",
                                          own, "')"));
    }
    rest.remove_prefix(own.size());
    if (absl::StartsWith(rest, "key/")) {
      rest.remove_prefix(4);
      if (!UuidToBytes(rest)) {
        return ValidationError(absl::StrCat(field, " ", Quoted(key_id), " has a malformed key id"));
      }
      return KeyIdentifier{KeyIdentifier::Kind::kKeyId, std::string(rest)};
    }
    if (absl::StartsWith(rest, kAliasPrefix)) {
      return KeyIdentifier{KeyIdentifier::Kind::kAliasName, std::string(rest)};
    }
    return ValidationError(absl::StrCat(field, " ", Quoted(key_id),
                                        " must name a key ('...:key/<id>') or an alias ('...:alias/<name>')"));
  }
  if (absl::StartsWith(rest, kAliasPrefix)) {
    return KeyIdentifier{KeyIdentifier::Kind::kAliasName, std::string(rest)};
  }
  if (!UuidToBytes(rest)) {
    return ValidationError(absl::StrCat(
        field, " must be a key id, an alias name ('alias/...') or a resource name, got ",
        Quoted(key_id)));
  }
  return KeyIdentifier{KeyIdentifier::Kind::kKeyId, std::string(rest)};
}

}  // namespace kms::service
