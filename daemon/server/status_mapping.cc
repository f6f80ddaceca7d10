#include "daemon/server/status_mapping.h"

#include <string>

#include "daemon/common/errors.h"
#include "daemon/common/logging.h"

namespace kms::server {

grpc::Status ToGrpcStatus(const absl::Status& status, absl::string_view method,
                          grpc::ServerContextBase& context) {
  if (status.ok()) return grpc::Status::OK;
  const std::string type = ErrorTypeOf(status);
  context.AddTrailingMetadata(kErrorTypeTrailer, type);
  std::string message(status.message());
  const bool deliberate = status.GetPayload(kErrorTypePayloadUrl).has_value();
  if (!deliberate) {
    switch (status.code()) {
      case absl::StatusCode::kUnavailable:
      case absl::StatusCode::kAborted:
        KMS_LOG(WARNING) << method << ": " << status;
        message = "a dependency (HSM or key store) is briefly unavailable; retry";
        break;
      case absl::StatusCode::kInternal:
      case absl::StatusCode::kUnknown:
      case absl::StatusCode::kDataLoss:
        KMS_LOG(ERROR) << method << ": " << status;
        message = "internal error; the kmsd log has the details";
        break;
      default:
        break;
    }
  } else if (status.code() == absl::StatusCode::kInternal) {
    KMS_LOG(ERROR) << method << ": " << status;
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

}  // namespace kms::server
