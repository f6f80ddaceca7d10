#include "daemon/service/validation.h"

#include <gtest/gtest.h>

#include "daemon/common/errors.h"

namespace kms::service {
namespace {

struct AliasCase {
  std::string name;
  std::string alias;
  std::string error_type;  // empty: valid
  friend void PrintTo(const AliasCase& c, std::ostream* os) { *os << c.name; }
};

class AliasNameTest : public ::testing::TestWithParam<AliasCase> {};

TEST_P(AliasNameTest, AppliesTheRules) {
  absl::Status s = ValidateAliasName(GetParam().alias);
  EXPECT_EQ(ErrorTypeOf(s), GetParam().error_type) << s;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, AliasNameTest,
    ::testing::Values(
        AliasCase{"Simple", "alias/payments", ""},
        AliasCase{"WithSlashesAndPunctuation", "alias/team-a/db_key/2", ""},
        AliasCase{"Empty", "", "ValidationException"},
        AliasCase{"NoPrefix", "payments", "InvalidAliasNameException"},
        AliasCase{"PrefixOnly", "alias/", "InvalidAliasNameException"},
        AliasCase{"BadCharacter", "alias/pay ments", "InvalidAliasNameException"},
        AliasCase{"Dot", "alias/a.b", "InvalidAliasNameException"},
        AliasCase{"Reserved", "alias/aws/s3", "InvalidAliasNameException"},
        AliasCase{"AtLength", "alias/" + std::string(250, 'a'), ""},
        AliasCase{"TooLong", "alias/" + std::string(251, 'a'), "InvalidAliasNameException"}),
    [](const auto& info) { return info.param.name; });

struct TagCase {
  std::string name;
  std::vector<keystore::TagRecord> tags;
  bool valid;
  friend void PrintTo(const TagCase& c, std::ostream* os) { *os << c.name; }
};

class TagsTest : public ::testing::TestWithParam<TagCase> {};

TEST_P(TagsTest, AppliesTheRules) {
  absl::Status s = ValidateTags(GetParam().tags);
  EXPECT_EQ(s.ok(), GetParam().valid) << s;
  if (!s.ok()) {
    EXPECT_EQ(ErrorTypeOf(s), "TagException");
  }
}

std::vector<keystore::TagRecord> ManyTags(int n) {
  std::vector<keystore::TagRecord> tags;
  for (int i = 0; i < n; ++i) tags.push_back({"k" + std::to_string(i), "v"});
  return tags;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TagsTest,
    ::testing::Values(TagCase{"None", {}, true}, TagCase{"One", {{"team", "payments"}}, true},
                      TagCase{"EmptyValue", {{"team", ""}}, true},
                      TagCase{"EmptyKey", {{"", "v"}}, false},
                      TagCase{"LongKey", {{std::string(129, 'k'), "v"}}, false},
                      TagCase{"LongValue", {{"k", std::string(257, 'v')}}, false},
                      TagCase{"DuplicateKey", {{"k", "1"}, {"k", "2"}}, false},
                      TagCase{"Fifty", ManyTags(50), true}, TagCase{"FiftyOne", ManyTags(51), false}),
    [](const auto& info) { return info.param.name; });

TEST(CheckRangeTest, MessageNamesFieldRangeAndValue) {
  absl::Status s = CheckRange("pending_window_in_days", 0, 7, 30);
  EXPECT_EQ(s.message(), "pending_window_in_days must be 7..30, got 0");
  EXPECT_EQ(ErrorTypeOf(s), "ValidationException");
  EXPECT_TRUE(CheckRange("x", 7, 7, 30).ok());
  EXPECT_TRUE(CheckRange("x", 30, 7, 30).ok());
  EXPECT_FALSE(CheckRange("x", 31, 7, 30).ok());
}

TEST(ListLimitTest, DefaultsAndBounds) {
  EXPECT_EQ(*ListLimit(std::nullopt), 100);
  EXPECT_EQ(*ListLimit(1), 1);
  EXPECT_EQ(*ListLimit(1000), 1000);
  EXPECT_FALSE(ListLimit(0).ok());
  EXPECT_FALSE(ListLimit(1001).ok());
  EXPECT_FALSE(ListLimit(-5).ok());
}

class ResourceNamesTest : public ::testing::Test {
 protected:
  ResourceNames names_{"arn:kmsd:kms:dc1:000000000000"};
  const std::string id_ = "1234abcd-12ab-44cd-86ef-1234567890ab";
};

TEST_F(ResourceNamesTest, ArnsHaveTheSitePrefix) {
  EXPECT_EQ(names_.KeyArn(id_), "arn:kmsd:kms:dc1:000000000000:key/" + id_);
  EXPECT_EQ(names_.AliasArn("alias/x"), "arn:kmsd:kms:dc1:000000000000:alias/x");
}

TEST_F(ResourceNamesTest, ParsesEveryKindOfIdentifier) {
  auto by_id = names_.Parse("key_id", id_);
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(by_id->kind, KeyIdentifier::Kind::kKeyId);
  EXPECT_EQ(by_id->value, id_);
  auto by_arn = names_.Parse("key_id", names_.KeyArn(id_));
  ASSERT_TRUE(by_arn.ok());
  EXPECT_EQ(by_arn->kind, KeyIdentifier::Kind::kKeyId);
  EXPECT_EQ(by_arn->value, id_);
  auto by_alias = names_.Parse("key_id", "alias/app");
  ASSERT_TRUE(by_alias.ok());
  EXPECT_EQ(by_alias->kind, KeyIdentifier::Kind::kAliasName);
  EXPECT_EQ(by_alias->value, "alias/app");
  auto by_alias_arn = names_.Parse("key_id", names_.AliasArn("alias/app"));
  ASSERT_TRUE(by_alias_arn.ok());
  EXPECT_EQ(by_alias_arn->kind, KeyIdentifier::Kind::kAliasName);
  EXPECT_EQ(by_alias_arn->value, "alias/app");
}

TEST_F(ResourceNamesTest, RefusesMalformedIdentifiersByName) {
  for (const std::string& bad :
       {std::string(""), std::string("not-a-key"), std::string("1234ABCD-12AB-44CD-86EF-1234567890AB"),
        "arn:kmsd:kms:other:000000000000:key/" + id_, std::string("arn:kmsd:kms:dc1:000000000000:key/zz"),
        std::string("arn:kmsd:kms:dc1:000000000000:grant/x")}) {
    absl::StatusOr<KeyIdentifier> parsed = names_.Parse("key_id", bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(ErrorTypeOf(parsed.status()), "ValidationException");
    EXPECT_NE(parsed.status().message().find("key_id"), absl::string_view::npos);
  }
}

}  // namespace
}  // namespace kms::service
