// KMS_RETURN_IF_ERROR and KMS_ASSIGN_OR_RETURN: the Abseil-style early-return
// macros that Debian's Abseil (20220623) does not ship. Same meaning as
// ABSL_RETURN_IF_ERROR / ASSIGN_OR_RETURN, so a later switch is a search and
// replace.
#ifndef KMS_DAEMON_COMMON_STATUS_MACROS_H_
#define KMS_DAEMON_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KMS_STATUS_CONCAT_INNER_(a, b) a##b
#define KMS_STATUS_CONCAT_(a, b) KMS_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function
// if it is not OK.
#define KMS_RETURN_IF_ERROR(expr)                                   \
  do {                                                              \
    ::absl::Status kms_status_macro_status_ = (expr);               \
    if (!kms_status_macro_status_.ok()) return kms_status_macro_status_; \
  } while (false)

// `KMS_ASSIGN_OR_RETURN(auto x, F());` evaluates F() (an absl::StatusOr<T>),
// returns its status if not OK, and otherwise moves the value into `lhs`.
#define KMS_ASSIGN_OR_RETURN(lhs, rexpr) \
  KMS_ASSIGN_OR_RETURN_IMPL_(            \
      KMS_STATUS_CONCAT_(kms_statusor_, __LINE__), lhs, rexpr)

#define KMS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // KMS_DAEMON_COMMON_STATUS_MACROS_H_
