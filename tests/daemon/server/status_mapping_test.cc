#include "daemon/server/status_mapping.h"

#include <gtest/gtest.h>

#include "daemon/common/errors.h"

namespace kms::server {
namespace {

TEST(StatusMappingTest, DeliberateErrorsKeepCodeAndMessage) {
  grpc::ServerContext context;
  grpc::Status s = ToGrpcStatus(DisabledError("key 'alias/x' is disabled"), "Encrypt", context);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "key 'alias/x' is disabled");
}

TEST(StatusMappingTest, InternalDetailsAreReplaced) {
  grpc::ServerContext context;
  grpc::Status s = ToGrpcStatus(absl::InternalError("sqlite3_step: disk I/O error at page 7"),
                                "CreateKey", context);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(s.error_message().find("sqlite"), std::string::npos) << s.error_message();
}

TEST(StatusMappingTest, UnclassifiedOutagesAreReplacedToo) {
  grpc::ServerContext context;
  grpc::Status s = ToGrpcStatus(absl::UnavailableError("C_Login: CKR_DEVICE_REMOVED"),
                                "Decrypt", context);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message().find("CKR_"), std::string::npos) << s.error_message();
}

TEST(StatusMappingTest, OkIsOk) {
  grpc::ServerContext context;
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus(), "DescribeKey", context).ok());
}

TEST(ErrorTypeTest, EveryCodeHasADefaultName) {
  EXPECT_EQ(ErrorTypeOf(absl::InvalidArgumentError("x")), "ValidationException");
  EXPECT_EQ(ErrorTypeOf(absl::NotFoundError("x")), "NotFoundException");
  EXPECT_EQ(ErrorTypeOf(absl::AlreadyExistsError("x")), "AlreadyExistsException");
  EXPECT_EQ(ErrorTypeOf(absl::FailedPreconditionError("x")), "KMSInvalidStateException");
  EXPECT_EQ(ErrorTypeOf(absl::PermissionDeniedError("x")), "AccessDeniedException");
  EXPECT_EQ(ErrorTypeOf(absl::ResourceExhaustedError("x")), "LimitExceededException");
  EXPECT_EQ(ErrorTypeOf(absl::UnavailableError("x")), "KeyUnavailableException");
  EXPECT_EQ(ErrorTypeOf(absl::DeadlineExceededError("x")), "DependencyTimeoutException");
  EXPECT_EQ(ErrorTypeOf(absl::InternalError("x")), "KMSInternalException");
  EXPECT_EQ(ErrorTypeOf(absl::OkStatus()), "");
  EXPECT_EQ(ErrorTypeOf(IncorrectKeyError("x")), "IncorrectKeyException");
}

}  // namespace
}  // namespace kms::server
