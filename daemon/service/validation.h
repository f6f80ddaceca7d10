// Argument rules shared by the RPCs, and key identifiers.
//
// Every check returns kInvalidArgument with the AWS exception name that fits
// (ValidationException, InvalidAliasNameException, TagException) and a
// message that names the field, the rule and the offending value, so a caller
// can fix the request from the message alone. Secrets never appear in them.
// Thread-safe: free functions and an immutable class.
#ifndef KMS_DAEMON_SERVICE_VALIDATION_H_
#define KMS_DAEMON_SERVICE_VALIDATION_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/keystore/key_store.h"

namespace kms::service {

inline constexpr size_t kMaxDescriptionLength = 8192;
inline constexpr size_t kMaxAliasNameLength = 256;
inline constexpr size_t kMaxTagKeyLength = 128;
inline constexpr size_t kMaxTagValueLength = 256;
inline constexpr size_t kMaxTagsPerKey = 50;
inline constexpr int kMaxListLimit = 1000;
inline constexpr int kDefaultListLimit = 100;
inline constexpr int kMinPendingWindowDays = 7;
inline constexpr int kMaxPendingWindowDays = 30;
inline constexpr int kDefaultPendingWindowDays = 30;
inline constexpr int kMaxDataKeyBytes = 1024;
inline constexpr int kMaxRandomBytes = 1024;

// `value` must be within [lo, hi]; the message reads
// "<field> must be <lo>..<hi>, got <value>".
absl::Status CheckRange(absl::string_view field, long long value, long long lo, long long hi);

// A required string argument must be non-empty: "<field> is required".
absl::Status CheckRequired(absl::string_view field, absl::string_view value);

absl::Status ValidateDescription(absl::string_view description);

// "alias/" followed by 1..250 characters of [A-Za-z0-9/_-]; "alias/aws/" is
// reserved. Errors: kInvalidArgument (InvalidAliasNameException).
absl::Status ValidateAliasName(absl::string_view alias_name);

// Tag keys 1..128 characters, values 0..256, keys unique within the request,
// at most 50. Errors: kInvalidArgument (TagException).
absl::Status ValidateTags(const std::vector<keystore::TagRecord>& tags);
absl::Status ValidateTagKeys(const std::vector<std::string>& tag_keys);

// A list page size: absent -> `default_limit`; present -> must be 1..max_limit.
absl::StatusOr<int> ListLimit(std::optional<int> limit, int max_limit = kMaxListLimit,
                              int default_limit = kDefaultListLimit);

// What a `key_id` argument named: a key (by id or resource name) or an alias
// (by name or resource name).
struct KeyIdentifier {
  enum class Kind { kKeyId, kAliasName };
  Kind kind;
  std::string value;  // the key id, or the alias name ("alias/...")
};

// Resource names ("ARNs") for this site: "<prefix>:key/<key id>" and
// "<prefix>:alias/<name>", with prefix e.g. "arn:kmsd:kms:local:000000000000".
class ResourceNames {
 public:
  explicit ResourceNames(std::string prefix) : prefix_(std::move(prefix)) {}

  std::string KeyArn(absl::string_view key_id) const;
  std::string AliasArn(absl::string_view alias_name) const;

  // Parses a key_id argument: a key id, an alias name, or a resource name of
  // either. Errors: kInvalidArgument (ValidationException) for an empty or
  // malformed identifier, or a resource name of another site.
  absl::StatusOr<KeyIdentifier> Parse(absl::string_view field, absl::string_view key_id) const;

  const std::string& prefix() const { return prefix_; }

 private:
  std::string prefix_;
};

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_VALIDATION_H_
