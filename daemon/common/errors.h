// The error model: an absl::Status code plus the AWS KMS exception name.
//
// Every failure that reaches a caller carries a canonical code (chosen by what
// the caller should do) and an AWS-style exception name, stored as a payload
// on the status under kErrorTypePayloadUrl. The server turns the name into the
// `kms-error-type` trailer. A status without a payload gets the default name
// for its code (ErrorTypeOf). Messages name the rule and the offending value,
// never secret bytes.
//
// Thread-safe: free functions over values.
#ifndef KMS_DAEMON_COMMON_ERRORS_H_
#define KMS_DAEMON_COMMON_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kms {

inline constexpr absl::string_view kErrorTypePayloadUrl = "kms-error-type";

// AWS exception names, as they appear in the kms-error-type trailer.
namespace error_type {
inline constexpr absl::string_view kValidation = "ValidationException";
inline constexpr absl::string_view kInvalidCiphertext = "InvalidCiphertextException";
inline constexpr absl::string_view kIncorrectKey = "IncorrectKeyException";
inline constexpr absl::string_view kInvalidAliasName = "InvalidAliasNameException";
inline constexpr absl::string_view kNotFound = "NotFoundException";
inline constexpr absl::string_view kAlreadyExists = "AlreadyExistsException";
inline constexpr absl::string_view kDisabled = "DisabledException";
inline constexpr absl::string_view kInvalidState = "KMSInvalidStateException";
inline constexpr absl::string_view kUnsupportedOperation = "UnsupportedOperationException";
inline constexpr absl::string_view kAccessDenied = "AccessDeniedException";
inline constexpr absl::string_view kLimitExceeded = "LimitExceededException";
inline constexpr absl::string_view kThrottling = "ThrottlingException";
inline constexpr absl::string_view kKeyUnavailable = "KeyUnavailableException";
inline constexpr absl::string_view kDependencyTimeout = "DependencyTimeoutException";
inline constexpr absl::string_view kInternal = "KMSInternalException";
inline constexpr absl::string_view kTagException = "TagException";
inline constexpr absl::string_view kIncorrectKeyMaterial = "IncorrectKeyMaterialException";
inline constexpr absl::string_view kInvalidImportToken = "InvalidImportTokenException";
inline constexpr absl::string_view kExpiredImportToken = "ExpiredImportTokenException";
}  // namespace error_type

// Returns `status` with its AWS exception name set to `type`.
absl::Status WithErrorType(absl::Status status, absl::string_view type);

// The AWS exception name of `status`: its payload if set, else the default for
// its code (kInvalidArgument -> ValidationException, kNotFound ->
// NotFoundException, ...). Empty for an OK status.
std::string ErrorTypeOf(const absl::Status& status);

// Constructors for the errors the service returns. Each sets code and name.
absl::Status ValidationError(absl::string_view message);
absl::Status InvalidCiphertextError();  // one message for every cause
// For wrapped key material that does not unwrap (ImportKeyMaterial).
absl::Status InvalidCiphertextError(absl::string_view message);
absl::Status IncorrectKeyError(absl::string_view message);
absl::Status InvalidAliasNameError(absl::string_view message);
absl::Status NotFoundError(absl::string_view message);
absl::Status AlreadyExistsError(absl::string_view message);
absl::Status DisabledError(absl::string_view message);
absl::Status InvalidStateError(absl::string_view message);
absl::Status UnsupportedOperationError(absl::string_view message);
absl::Status AccessDeniedError(absl::string_view message);
absl::Status LimitExceededError(absl::string_view message);
absl::Status TagError(absl::string_view message);
absl::Status IncorrectKeyMaterialError(absl::string_view message);
absl::Status InvalidImportTokenError(absl::string_view message);
absl::Status ExpiredImportTokenError(absl::string_view message);
absl::Status KeyUnavailableError(absl::string_view message);
absl::Status InternalError(absl::string_view message);

}  // namespace kms

#endif  // KMS_DAEMON_COMMON_ERRORS_H_
