// Assertions on kmsd errors: a status (or StatusOr) with a given code and AWS
// exception name.
//
//   EXPECT_ERROR(service.Encrypt(r), kFailedPrecondition, "DisabledException");
//   KMS_ASSERT_OK(hsm.GenerateAesKey("k"));
//   KMS_EXPECT_CODE(hsm.DestroyKey("k"), absl::StatusCode::kNotFound);
//
// And gmock matchers on an absl::Status (Debian's Abseil ships none):
//   EXPECT_THAT(store.CreateKey(...), IsOk());
//   EXPECT_THAT(store.GetKey(id).status(), StatusIs(absl::StatusCode::kNotFound, "no key"));
#ifndef KMS_TESTS_TESTING_STATUS_MATCHERS_H_
#define KMS_TESTS_TESTING_STATUS_MATCHERS_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
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

MATCHER(IsOk, "is OK") {
  *result_listener << arg;
  return arg.ok();
}

MATCHER_P(StatusIs, code, absl::StrCat("has code ", absl::StatusCodeToString(code))) {
  *result_listener << arg;
  return arg.code() == code;
}

MATCHER_P2(StatusIs, code, substring,
           absl::StrCat("has code ", absl::StatusCodeToString(code), " and a message with '",
                        substring, "'")) {
  *result_listener << arg;
  return arg.code() == code && arg.message().find(substring) != absl::string_view::npos;
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
