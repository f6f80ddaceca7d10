// The names of the grant operations: v1::GrantOperation on the wire, the AWS
// operation names ("Decrypt", "GenerateDataKey", ...) in stored grants and in
// kmsctl's arguments and output. The one table of them, shared by the daemon
// and the client (kms::api links only kms::proto).
// GRANT_OPERATION_UNSPECIFIED has no name. Stateless; thread-safe.
#ifndef KMS_PROTO_GRANT_OPERATION_NAMES_H_
#define KMS_PROTO_GRANT_OPERATION_NAMES_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kms/v1/kms.pb.h"

namespace kms::api {

struct NamedGrantOperation {
  v1::GrantOperation operation;
  absl::string_view name;
};

// Every grant operation except GRANT_OPERATION_UNSPECIFIED, in proto order.
absl::Span<const NamedGrantOperation> NamedGrantOperations();

// The AWS name of `operation` (an int, as a repeated enum field holds it), or
// "" if it has none: GRANT_OPERATION_UNSPECIFIED, or a value this build does
// not know.
absl::string_view GrantOperationName(int operation);

// The operation whose AWS name is `name`, case-sensitive; nullopt for any
// other text, the proto's enum value names included.
std::optional<v1::GrantOperation> GrantOperationFromName(absl::string_view name);

}  // namespace kms::api

#endif  // KMS_PROTO_GRANT_OPERATION_NAMES_H_
