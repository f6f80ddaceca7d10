// Assertions on kmsd errors: a status (or StatusOr) with a given code and AWS
// exception name.
//
//   EXPECT_ERROR(service.Encrypt(r), kFailedPrecondition, "DisabledException");
//   KMS_ASSERT_OK(hsm.GenerateAesKey("k"));
//   KMS_EXPECT_CODE(hsm.DestroyKey("k"), absl::StatusCode::kNotFound);
#ifndef KMS_TESTS_TESTING_STATUS_MATCHERS_H_
#define KMS_TESTS_TESTING_STATUS_MATCHERS_H_

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/errors.h"

namespace kms::testing {

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

template <typename S>
::testing::AssertionResult HasError(const S& result, absl::StatusCode code,
                                    absl::string_view type) {
  const absl::Status& s = StatusOf(result);
  if (s.code() == code && ErrorTypeOf(s) == type) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "expected " << absl::StatusCodeToString(code) << " / " << type << ", got "
         << s.ToString() << " / " << ErrorTypeOf(s);
}

}  // namespace kms::testing

#define EXPECT_ERROR(expr, code, type) \
  EXPECT_TRUE(::kms::testing::HasError((expr), ::absl::StatusCode::code, (type)))

// The status (or StatusOr's status) of `expr` is OK / has `expected_code`.
#define KMS_EXPECT_OK(expr)                                          \
  do {                                                               \
    const ::absl::Status kms_s_ = ::kms::testing::StatusOf(expr);    \
    EXPECT_TRUE(kms_s_.ok()) << kms_s_;                              \
  } while (false)
#define KMS_ASSERT_OK(expr)                                          \
  do {                                                               \
    const ::absl::Status kms_s_ = ::kms::testing::StatusOf(expr);    \
    ASSERT_TRUE(kms_s_.ok()) << kms_s_;                              \
  } while (false)
#define KMS_EXPECT_CODE(expr, expected_code)                         \
  do {                                                               \
    const ::absl::Status kms_s_ = ::kms::testing::StatusOf(expr);    \
    EXPECT_EQ(kms_s_.code(), expected_code) << kms_s_;               \
  } while (false)

#endif  // KMS_TESTS_TESTING_STATUS_MATCHERS_H_
