#include "proto/grant_operation_names.h"

namespace kms::api {
namespace {

// In proto order.
constexpr NamedGrantOperation kGrantOperations[] = {
    {v1::DECRYPT, "Decrypt"},
    {v1::ENCRYPT, "Encrypt"},
    {v1::GENERATE_DATA_KEY, "GenerateDataKey"},
    {v1::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT, "GenerateDataKeyWithoutPlaintext"},
    {v1::RE_ENCRYPT_FROM, "ReEncryptFrom"},
    {v1::RE_ENCRYPT_TO, "ReEncryptTo"},
    {v1::CREATE_GRANT, "CreateGrant"},
    {v1::RETIRE_GRANT, "RetireGrant"},
    {v1::DESCRIBE_KEY, "DescribeKey"},
};

}  // namespace

absl::Span<const NamedGrantOperation> NamedGrantOperations() { return kGrantOperations; }

absl::string_view GrantOperationName(int operation) {
  for (const NamedGrantOperation& entry : kGrantOperations) {
    if (entry.operation == operation) return entry.name;
  }
  return "";
}

std::optional<v1::GrantOperation> GrantOperationFromName(absl::string_view name) {
  for (const NamedGrantOperation& entry : kGrantOperations) {
    if (entry.name == name) return entry.operation;
  }
  return std::nullopt;
}

}  // namespace kms::api
