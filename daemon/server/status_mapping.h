// The one place an absl::Status becomes a grpc::Status.
//
// The code carries over unchanged (absl and gRPC share numbering). The AWS
// exception name (kms::ErrorTypeOf) goes into the trailing metadata entry
// `kms-error-type`. Errors the service raised on purpose carry an error-type
// payload and a caller-safe message; any other internal or unavailable error
// (SQLite or PKCS#11 text, say) is logged here in full and replaced by a
// generic message, so database and HSM details stay in the server log.
// Thread-safe.
#ifndef KMS_DAEMON_SERVER_STATUS_MAPPING_H_
#define KMS_DAEMON_SERVER_STATUS_MAPPING_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kms::server {

inline constexpr char kErrorTypeTrailer[] = "kms-error-type";

// `method` names the RPC in the log line for replaced messages.
grpc::Status ToGrpcStatus(const absl::Status& status, absl::string_view method,
                          grpc::ServerContextBase& context);

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_STATUS_MAPPING_H_
