#include "daemon/common/errors.h"

#include "absl/strings/cord.h"

namespace kms {

absl::Status WithErrorType(absl::Status status, absl::string_view type) {
  if (!status.ok()) status.SetPayload(kErrorTypePayloadUrl, absl::Cord(type));
  return status;
}

std::string ErrorTypeOf(const absl::Status& status) {
  if (status.ok()) return "";
  if (auto payload = status.GetPayload(kErrorTypePayloadUrl)) {
    return std::string(*payload);
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return std::string(error_type::kValidation);
    case absl::StatusCode::kNotFound:
      return std::string(error_type::kNotFound);
    case absl::StatusCode::kAlreadyExists:
      return std::string(error_type::kAlreadyExists);
    case absl::StatusCode::kFailedPrecondition:
      return std::string(error_type::kInvalidState);
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return std::string(error_type::kAccessDenied);
    case absl::StatusCode::kResourceExhausted:
      return std::string(error_type::kLimitExceeded);
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
      return std::string(error_type::kKeyUnavailable);
    case absl::StatusCode::kDeadlineExceeded:
      return std::string(error_type::kDependencyTimeout);
    case absl::StatusCode::kUnimplemented:
      return std::string(error_type::kUnsupportedOperation);
    default:
      return std::string(error_type::kInternal);
  }
}

absl::Status ValidationError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kValidation);
}
absl::Status InvalidCiphertextError() {
  // Deliberately the same text for every cause (bad format, unknown key,
  // wrong context, tampering), so a caller learns nothing from the difference.
  return WithErrorType(
      absl::InvalidArgumentError(
          "ciphertext blob could not be decrypted: it is malformed, was "
          "tampered with, or the encryption context does not match"),
      error_type::kInvalidCiphertext);
}
absl::Status InvalidCiphertextError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kInvalidCiphertext);
}
absl::Status IncorrectKeyError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kIncorrectKey);
}
absl::Status InvalidAliasNameError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message),
                       error_type::kInvalidAliasName);
}
absl::Status NotFoundError(absl::string_view message) {
  return WithErrorType(absl::NotFoundError(message), error_type::kNotFound);
}
absl::Status AlreadyExistsError(absl::string_view message) {
  return WithErrorType(absl::AlreadyExistsError(message), error_type::kAlreadyExists);
}
absl::Status DisabledError(absl::string_view message) {
  return WithErrorType(absl::FailedPreconditionError(message), error_type::kDisabled);
}
absl::Status InvalidStateError(absl::string_view message) {
  return WithErrorType(absl::FailedPreconditionError(message),
                       error_type::kInvalidState);
}
absl::Status UnsupportedOperationError(absl::string_view message) {
  return WithErrorType(absl::FailedPreconditionError(message),
                       error_type::kUnsupportedOperation);
}
absl::Status AccessDeniedError(absl::string_view message) {
  return WithErrorType(absl::PermissionDeniedError(message), error_type::kAccessDenied);
}

absl::Status LimitExceededError(absl::string_view message) {
  return WithErrorType(absl::ResourceExhaustedError(message),
                       error_type::kLimitExceeded);
}
absl::Status TagError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kTagException);
}
absl::Status IncorrectKeyMaterialError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kIncorrectKeyMaterial);
}
absl::Status InvalidImportTokenError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kInvalidImportToken);
}
absl::Status ExpiredImportTokenError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), error_type::kExpiredImportToken);
}
absl::Status KeyUnavailableError(absl::string_view message) {
  return WithErrorType(absl::UnavailableError(message), error_type::kKeyUnavailable);
}
absl::Status InternalError(absl::string_view message) {
  return WithErrorType(absl::InternalError(message), error_type::kInternal);
}

}  // namespace kms
