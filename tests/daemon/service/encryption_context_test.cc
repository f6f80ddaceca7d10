#include "daemon/service/encryption_context.h"

#include <gtest/gtest.h>

#include "daemon/common/errors.h"

namespace kms::service {
namespace {

TEST(EncryptionContextTest, CanonicalFormIgnoresInsertionOrder) {
  google::protobuf::Map<std::string, std::string> a, b;
  a["tenant"] = "t1";
  a["purpose"] = "backup";
  b["purpose"] = "backup";
  b["tenant"] = "t1";
  EXPECT_EQ(CanonicalContext(ContextFromProto(a)), CanonicalContext(ContextFromProto(b)));
}

TEST(EncryptionContextTest, CanonicalFormIsLengthPrefixedSoSplitsDiffer) {
  EXPECT_NE(CanonicalContext({{"a", "bc"}}), CanonicalContext({{"ab", "c"}}));
  EXPECT_NE(CanonicalContext({}), CanonicalContext({{"", ""}}));
}

TEST(EncryptionContextTest, CanonicalFormBytes) {
  const std::string expected("\x00\x00\x00\x01\x00\x00\x00\x01k\x00\x00\x00\x02vv", 15);
  EXPECT_EQ(CanonicalContext({{"k", "vv"}}), expected);
  EXPECT_EQ(CanonicalContext({}), std::string(4, '\0'));
}

struct ContextCase {
  std::string name;
  EncryptionContext context;
  bool valid;
  friend void PrintTo(const ContextCase& c, std::ostream* os) { *os << c.name; }
};

class ValidateContextTest : public ::testing::TestWithParam<ContextCase> {};

TEST_P(ValidateContextTest, AppliesTheLimits) {
  absl::Status s = ValidateContext(GetParam().context, "encryption_context");
  EXPECT_EQ(s.ok(), GetParam().valid) << s;
  if (!s.ok()) {
    EXPECT_EQ(ErrorTypeOf(s), "ValidationException");
    EXPECT_NE(s.message().find("encryption_context"), absl::string_view::npos) << s;
  }
}

EncryptionContext ManyPairs(int n) {
  EncryptionContext c;
  for (int i = 0; i < n; ++i) c["k" + std::to_string(i)] = "v";
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidateContextTest,
    ::testing::Values(ContextCase{"Empty", {}, true},
                      ContextCase{"EmptyValueAllowed", {{"k", ""}}, true},
                      ContextCase{"EmptyKeyRefused", {{"", "v"}}, false},
                      ContextCase{"KeyAtLimit", {{std::string(256, 'k'), "v"}}, true},
                      ContextCase{"KeyOverLimit", {{std::string(257, 'k'), "v"}}, false},
                      ContextCase{"SixtyFourPairs", ManyPairs(64), true},
                      ContextCase{"SixtyFivePairs", ManyPairs(65), false},
                      ContextCase{"TotalOverLimit", {{"k", std::string(8192, 'v')}}, false}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace kms::service
