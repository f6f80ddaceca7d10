#include "proto/grant_operation_names.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"

namespace kms::api {
namespace {

const google::protobuf::EnumDescriptor& GrantOperationEnum() {
  return *v1::GrantOperation_descriptor();
}

TEST(GrantOperationNamesTest, EveryOperationButUnspecifiedHasANameThatRoundTrips) {
  const google::protobuf::EnumDescriptor& operations = GrantOperationEnum();
  for (int i = 0; i < operations.value_count(); ++i) {
    const int number = operations.value(i)->number();
    if (number == v1::GRANT_OPERATION_UNSPECIFIED) continue;
    absl::string_view name = GrantOperationName(number);
    EXPECT_FALSE(name.empty()) << operations.value(i)->name();
    EXPECT_EQ(GrantOperationFromName(name), static_cast<v1::GrantOperation>(number))
        << operations.value(i)->name();
  }
}

TEST(GrantOperationNamesTest, TableListsEachOperationOnceInProtoOrder) {
  const google::protobuf::EnumDescriptor& operations = GrantOperationEnum();
  std::vector<int> expected;
  for (int i = 0; i < operations.value_count(); ++i) {
    if (operations.value(i)->number() != v1::GRANT_OPERATION_UNSPECIFIED) {
      expected.push_back(operations.value(i)->number());
    }
  }
  std::vector<int> listed;
  for (const NamedGrantOperation& entry : NamedGrantOperations()) {
    listed.push_back(entry.operation);
  }
  EXPECT_EQ(listed, expected);
}

// Stored grants hold these names, so they are a storage format as well as
// kmsctl's vocabulary: renaming one would orphan existing grants.
TEST(GrantOperationNamesTest, NamesAreTheAwsOperationNames) {
  std::vector<std::string> names;
  for (const NamedGrantOperation& entry : NamedGrantOperations()) {
    names.emplace_back(entry.name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"Decrypt", "Encrypt", "GenerateDataKey",
                                             "GenerateDataKeyWithoutPlaintext",
                                             "ReEncryptFrom", "ReEncryptTo", "CreateGrant",
                                             "RetireGrant", "DescribeKey"}));
}

TEST(GrantOperationNamesTest, UnspecifiedAndUnknownValuesHaveNoName) {
  EXPECT_EQ(GrantOperationName(v1::GRANT_OPERATION_UNSPECIFIED), "");
  EXPECT_EQ(GrantOperationName(-1), "");
  EXPECT_EQ(GrantOperationName(10000), "");
}

class GrantOperationFromNameRejectsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GrantOperationFromNameRejectsTest, AnythingButAnExactAwsName) {
  EXPECT_EQ(GrantOperationFromName(GetParam()), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(
    Names, GrantOperationFromNameRejectsTest,
    ::testing::Values("", "decrypt", "DECRYPT", "GRANT_OPERATION_UNSPECIFIED", "kms:Decrypt",
                      "Decrypt ", " Decrypt", "Decrypt,Encrypt", std::string("Decrypt\0", 8)),
    [](const auto& info) { return "Case" + std::to_string(info.index); });

}  // namespace
}  // namespace kms::api
