#include "daemon/policy/grant.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "daemon/common/errors.h"
#include "tests/testing/status_matchers.h"

namespace kms::policy {
namespace {

using Context = std::map<std::string, std::string>;

Grant MakeGrant(std::vector<std::string> operations) {
  Grant g;
  g.grant_id = "g-1";
  g.grantee_principal = "spiffe://prod/billing";
  g.operations = std::move(operations);
  return g;
}

bool Allows(const Grant& g, const std::string& principal, const std::string& action,
            const Context* context = nullptr) {
  return GrantAllows(g, Request{principal, action, context});
}

// ------------------------------------------------------------ validation

struct ValidateCase {
  std::string name;
  Grant grant;
  std::string message;  // empty: valid; else expected substring
  friend void PrintTo(const ValidateCase& c, std::ostream* os) { *os << c.name; }
};

class ValidateGrantTest : public ::testing::TestWithParam<ValidateCase> {};

TEST_P(ValidateGrantTest, AppliesTheRules) {
  absl::Status s = ValidateGrant(GetParam().grant);
  if (GetParam().message.empty()) {
    EXPECT_TRUE(s.ok()) << s;
    return;
  }
  EXPECT_ERROR(s, kInvalidArgument, "ValidationException");
  EXPECT_NE(s.message().find(GetParam().message), absl::string_view::npos) << s;
}

std::vector<ValidateCase> ValidateCases() {
  std::vector<ValidateCase> cases;
  cases.push_back({"Minimal", MakeGrant({"Decrypt"}), ""});
  cases.push_back({"AllSupportedOperations", MakeGrant(GrantOperations()), ""});
  {
    Grant g = MakeGrant({"Decrypt"});
    g.encryption_context_equals = {{"a", "1"}};
    cases.push_back({"EqualsConstraint", g, ""});
  }
  {
    Grant g = MakeGrant({"Decrypt"});
    g.encryption_context_subset = {{"a", "1"}};
    cases.push_back({"SubsetConstraint", g, ""});
  }
  {
    Grant g = MakeGrant({"Decrypt"});
    g.encryption_context_equals = {{"a", "1"}};
    g.encryption_context_subset = {{"a", "1"}};
    cases.push_back(
        {"BothConstraints", g, "EncryptionContextEquals or EncryptionContextSubset, not both"});
  }
  cases.push_back({"NoOperations", MakeGrant({}), "grant operations must not be empty"});
  cases.push_back({"GenerateRandomIsNotKeyScoped", MakeGrant({"GenerateRandom"}),
                   "unsupported grant operation 'GenerateRandom'"});
  cases.push_back({"PrefixedOperation", MakeGrant({"kms:Decrypt"}),
                   "unsupported grant operation 'kms:Decrypt'"});
  cases.push_back({"ReEncryptIsNotAGrantOperation", MakeGrant({"ReEncrypt"}),
                   "unsupported grant operation 'ReEncrypt'"});
  cases.push_back({"WrongCase", MakeGrant({"decrypt"}), "unsupported grant operation 'decrypt'"});
  cases.push_back({"DuplicateOperation", MakeGrant({"Decrypt", "Encrypt", "Decrypt"}),
                   "duplicate grant operation 'Decrypt'"});
  {
    Grant g = MakeGrant({"Decrypt"});
    g.grantee_principal = "";
    cases.push_back({"EmptyGrantee", g, "grantee principal must not be empty"});
  }
  {
    Grant g = MakeGrant({"Decrypt"});
    g.grantee_principal = std::string(256, 'p');
    cases.push_back({"GranteeOf256", g, ""});
  }
  {
    Grant g = MakeGrant({"Decrypt"});
    g.grantee_principal = std::string(257, 'p');
    cases.push_back({"GranteeTooLong", g, "grantee principal must be at most 256 bytes, got 257"});
  }
  {
    Grant g = MakeGrant({"Decrypt"});
    g.grantee_principal = "svc-*";
    cases.push_back({"GranteePattern", g, "'*' is not allowed"});
  }
  {
    Grant g = MakeGrant({"Decrypt"});
    g.retiring_principal = std::string(257, 'r');
    cases.push_back({"RetiringTooLong", g, "retiring principal must be at most 256 bytes"});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, ValidateGrantTest, ::testing::ValuesIn(ValidateCases()),
                         [](const auto& info) { return info.param.name; });

TEST(GrantOperationsTest, AreTheNineKeyScopedOperations) {
  EXPECT_EQ(GrantOperations(),
            (std::vector<std::string>{"Decrypt", "Encrypt", "GenerateDataKey",
                                      "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom",
                                      "ReEncryptTo", "CreateGrant", "RetireGrant", "DescribeKey"}));
  for (const std::string& op : GrantOperations()) {
    EXPECT_TRUE(IsKnownAction("kms:" + op)) << op;
  }
}

// ------------------------------------------------------------ matching

TEST(GrantAllowsTest, GranteeMustMatchExactly) {
  Grant g = MakeGrant({"Decrypt"});
  EXPECT_TRUE(Allows(g, "spiffe://prod/billing", "kms:Decrypt"));
  EXPECT_FALSE(Allows(g, "spiffe://prod/billing2", "kms:Decrypt"));
  EXPECT_FALSE(Allows(g, "spiffe://prod/bill", "kms:Decrypt"));
  EXPECT_FALSE(Allows(g, "SPIFFE://prod/billing", "kms:Decrypt"));
  EXPECT_FALSE(Allows(g, "", "kms:Decrypt"));
}

TEST(GrantAllowsTest, ActionMustBeAGrantedOperation) {
  Grant g = MakeGrant({"Decrypt", "GenerateDataKey"});
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:Decrypt"));
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:GenerateDataKey"));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:GenerateDataKeyWithoutPlaintext"));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Encrypt"));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "Decrypt"));  // no kms: prefix
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:decrypt"));
  EXPECT_FALSE(Allows(g, g.grantee_principal, ""));
}

TEST(GrantAllowsTest, ReEncryptHalvesAreSeparateOperations) {
  Grant from = MakeGrant({"ReEncryptFrom"});
  EXPECT_TRUE(Allows(from, from.grantee_principal, "kms:ReEncryptFrom"));
  EXPECT_FALSE(Allows(from, from.grantee_principal, "kms:ReEncryptTo"));
  EXPECT_FALSE(Allows(from, from.grantee_principal, "kms:ReEncrypt"));
  Grant to = MakeGrant({"ReEncryptTo"});
  EXPECT_TRUE(Allows(to, to.grantee_principal, "kms:ReEncryptTo"));
  EXPECT_FALSE(Allows(to, to.grantee_principal, "kms:ReEncryptFrom"));
}

TEST(GrantAllowsTest, NoConstraintAllowsAnyContext) {
  Grant g = MakeGrant({"Encrypt"});
  const Context c = {{"a", "1"}};
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:Encrypt", &c));
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:Encrypt", nullptr));
}

TEST(GrantAllowsTest, EncryptionContextEqualsNeedsExactlyThatContext) {
  Grant g = MakeGrant({"Decrypt"});
  g.encryption_context_equals = {{"tenant", "acme"}, {"file", "f"}};
  const Context exact = {{"file", "f"}, {"tenant", "acme"}};
  const Context superset = {{"file", "f"}, {"tenant", "acme"}, {"x", "y"}};
  const Context subset = {{"tenant", "acme"}};
  const Context other_value = {{"file", "f"}, {"tenant", "globex"}};
  const Context key_case = {{"File", "f"}, {"tenant", "acme"}};
  const Context empty;
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:Decrypt", &exact));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Decrypt", &superset));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Decrypt", &subset));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Decrypt", &other_value));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Decrypt", &key_case));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Decrypt", &empty));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Decrypt", nullptr));
}

TEST(GrantAllowsTest, EncryptionContextSubsetNeedsEveryPair) {
  Grant g = MakeGrant({"GenerateDataKey"});
  g.encryption_context_subset = {{"tenant", "acme"}};
  const Context exact = {{"tenant", "acme"}};
  const Context superset = {{"tenant", "acme"}, {"file", "f"}};
  const Context other_value = {{"tenant", "globex"}, {"file", "f"}};
  const Context missing = {{"file", "f"}};
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:GenerateDataKey", &exact));
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:GenerateDataKey", &superset));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:GenerateDataKey", &other_value));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:GenerateDataKey", &missing));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:GenerateDataKey", nullptr));
}

TEST(GrantAllowsTest, ConstraintsDoNotApplyToOperationsWithoutContext) {
  Grant g = MakeGrant({"Decrypt", "DescribeKey", "RetireGrant", "CreateGrant"});
  g.encryption_context_subset = {{"tenant", "acme"}};
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:DescribeKey"));
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:RetireGrant"));
  EXPECT_TRUE(Allows(g, g.grantee_principal, "kms:CreateGrant"));
  EXPECT_FALSE(Allows(g, g.grantee_principal, "kms:Decrypt"));
  EXPECT_TRUE(GrantOperationUsesContext("ReEncryptTo"));
  EXPECT_FALSE(GrantOperationUsesContext("DescribeKey"));
}

TEST(ConstraintsAtLeastAsStrictTest, FollowsTheParent) {
  Grant none = MakeGrant({"CreateGrant", "Decrypt"});
  Grant equals = none;
  equals.encryption_context_equals = {{"a", "1"}, {"b", "2"}};
  Grant subset = none;
  subset.encryption_context_subset = {{"a", "1"}};
  Grant wider_subset = none;
  wider_subset.encryption_context_subset = {{"a", "1"}, {"c", "3"}};
  Grant other_subset = none;
  other_subset.encryption_context_subset = {{"a", "9"}};
  Grant other_equals = none;
  other_equals.encryption_context_equals = {{"a", "1"}};

  EXPECT_TRUE(ConstraintsAtLeastAsStrict(none, none));
  EXPECT_TRUE(ConstraintsAtLeastAsStrict(none, equals));
  EXPECT_TRUE(ConstraintsAtLeastAsStrict(none, subset));

  EXPECT_TRUE(ConstraintsAtLeastAsStrict(equals, equals));
  EXPECT_FALSE(ConstraintsAtLeastAsStrict(equals, other_equals));
  EXPECT_FALSE(ConstraintsAtLeastAsStrict(equals, subset));
  EXPECT_FALSE(ConstraintsAtLeastAsStrict(equals, none));

  EXPECT_TRUE(ConstraintsAtLeastAsStrict(subset, subset));
  EXPECT_TRUE(ConstraintsAtLeastAsStrict(subset, wider_subset));
  EXPECT_TRUE(ConstraintsAtLeastAsStrict(subset, equals));  // {a:1,b:2} includes a:1
  EXPECT_TRUE(ConstraintsAtLeastAsStrict(subset, other_equals));
  EXPECT_FALSE(ConstraintsAtLeastAsStrict(subset, other_subset));
  EXPECT_FALSE(ConstraintsAtLeastAsStrict(subset, none));
  EXPECT_FALSE(ConstraintsAtLeastAsStrict(wider_subset, subset));
}

}  // namespace
}  // namespace kms::policy
