#include "daemon/policy/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "tests/testing/status_matchers.h"

namespace kms::policy {
namespace {

using Context = std::map<std::string, std::string>;

Policy MustParse(const std::string& doc) {
  absl::StatusOr<Policy> p = Policy::Parse(doc);
  EXPECT_TRUE(p.ok()) << p.status() << "\n" << doc;
  if (!p.ok()) std::abort();
  return *std::move(p);
}

// One statement's fields (without braces) in a one-statement document.
std::string OneStatement(const std::string& fields) {
  return absl::StrCat(R"({"Version":"2012-10-17","Statement":[{)", fields, "}]}");
}

constexpr char kAllowAll[] = R"("Effect":"Allow","Principal":"*","Action":"kms:*")";

Decision::Effect Eval(const Policy& p, const std::string& principal, const std::string& action,
                      const Context* context = nullptr) {
  return p.Evaluate(Request{principal, action, context}).effect;
}

// ------------------------------------------------------------ parse errors

struct ParseErrorCase {
  std::string name;
  std::string document;
  std::string message;  // expected substring: path + rule
  friend void PrintTo(const ParseErrorCase& c, std::ostream* os) { *os << c.name; }
};

class ParseErrorTest : public ::testing::TestWithParam<ParseErrorCase> {};

TEST_P(ParseErrorTest, RejectsWithPathAndRule) {
  absl::StatusOr<Policy> p = Policy::Parse(GetParam().document);
  ASSERT_FALSE(p.ok()) << "accepted: " << GetParam().document;
  EXPECT_ERROR(p, kInvalidArgument, "MalformedPolicyDocumentException");
  EXPECT_NE(p.status().message().find(GetParam().message), absl::string_view::npos)
      << "got: " << p.status().message() << "\nwant substring: " << GetParam().message;
}

std::string Statements(int n) {
  std::string s = R"({"Statement":[)";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&s, i ? "," : "", "{", kAllowAll, "}");
  }
  return s + "]}";
}

std::string PaddedTo(std::size_t size) {
  std::string doc = OneStatement(kAllowAll);
  doc.insert(1, size - doc.size(), ' ');
  return doc;
}

std::vector<ParseErrorCase> ParseErrorCases() {
  const std::string allow_all = kAllowAll;
  return {
      // Document level.
      {"EmptyText", "", "document: invalid JSON"},
      {"NotJson", "{", "document: invalid JSON"},
      {"TrailingGarbage", OneStatement(kAllowAll) + " x", "document: invalid JSON"},
      {"CommentsAreNotJson", "/* c */" + OneStatement(kAllowAll), "document: invalid JSON"},
      {"TopLevelArray", "[]", "document: must be a JSON object, got array"},
      {"TopLevelString", R"("x")", "document: must be a JSON object, got string"},
      {"UnknownTopLevelField", R"({"Id":"x","Statement":[{)" + allow_all + "}]}",
       "document: unknown field 'Id'"},
      {"MissingStatement", R"({"Version":"2012-10-17"})",
       "document: missing required field 'Statement'"},
      {"WrongVersion", R"({"Version":"2008-10-17","Statement":[{)" + allow_all + "}]}",
       "Version: must be \"2012-10-17\", got \"2008-10-17\""},
      {"VersionNotString", R"({"Version":2012,"Statement":[{)" + allow_all + "}]}",
       "Version: must be \"2012-10-17\", got 2012"},
      {"TooLarge", PaddedTo(kMaxPolicyBytes + 1),
       "document: must be at most 32768 bytes, got 32769"},
      {"DeeplyNestedArrays", std::string(16000, '[') + std::string(16000, ']'),
       "document: must be a JSON object, got array"},
      {"DeeplyNestedInsideAStatement",
       OneStatement(R"("Sid":)" + std::string(10000, '[') + std::string(10000, ']') + "," +
                    allow_all),
       "Statement[0].Sid: must be a string, got array"},
      {"InvalidUtf8InString",
       OneStatement(R"("Sid":"a)"
                    "\xff"
                    R"(",)" +
                    allow_all),
       "document: invalid UTF-8 at byte"},
      {"OverlongUtf8",
       OneStatement(R"("Sid":")"
                    "\xc0\xaf"
                    R"(",)" +
                    allow_all),
       "document: invalid UTF-8 at byte"},
      {"EncodedSurrogate",
       OneStatement(R"("Sid":")"
                    "\xed\xa0\x80"
                    R"(",)" +
                    allow_all),
       "document: invalid UTF-8 at byte"},
      {"EscapedLoneSurrogate",
       OneStatement(R"("Effect":"Allow","Action":"kms:*","Principal":"\ud800")"),
       "document: invalid JSON"},
      {"DuplicateTopLevelKey",
       R"({"Statement":[{)" + allow_all + R"(}],"Statement":[{)" + allow_all + "}]}",
       "document: duplicate key 'Statement'"},
      {"DuplicateStatementKey", OneStatement(allow_all + R"(,"Effect":"Deny")"),
       "Statement[0]: duplicate key 'Effect'"},
      {"DuplicateKeyInSecondStatement",
       R"({"Statement":[{)" + allow_all + "},{" + allow_all + R"(,"Action":"kms:Decrypt"}]})",
       "Statement[1]: duplicate key 'Action'"},
      {"DuplicateConditionKey",
       OneStatement(allow_all + R"(,"Condition":{"StringEquals":{"kms:EncryptionContext:a":"1",)"
                                R"("kms:EncryptionContext:a":"2"}})"),
       "Statement[0].Condition.StringEquals: duplicate key 'kms:EncryptionContext:a'"},
      {"DuplicateOperator",
       OneStatement(allow_all + R"(,"Condition":{"Null":{"kms:EncryptionContextKeys":"true"},)"
                                R"("Null":{"kms:EncryptionContextKeys":"false"}})"),
       "Statement[0].Condition: duplicate key 'Null'"},

      // Statement list.
      {"EmptyStatementArray", R"({"Statement":[]})", "Statement: must not be an empty array"},
      {"StatementString", R"({"Statement":"x"})",
       "Statement: must be an object or an array of objects, got string"},
      {"StatementElementNotObject", R"({"Statement":[1]})",
       "Statement[0]: statement must be an object, got number"},
      {"TooManyStatements", Statements(101),
       "Statement: at most 100 statements are allowed, got 101"},
      {"SingleObjectFormErrorPath",
       R"({"Statement":{"Effect":"Maybe","Principal":"*",)"
       R"("Action":"kms:*"}})",
       "Statement.Effect: must be \"Allow\" or \"Deny\", got 'Maybe'"},

      // Statement fields.
      {"UnknownStatementField", OneStatement(allow_all + R"(,"Resource":"*")"),
       "Statement[0]: unknown field 'Resource'"},
      {"NotActionIsUnknown", OneStatement(R"("Effect":"Allow","Principal":"*","NotAction":"x")"),
       "Statement[0]: unknown field 'NotAction'"},
      {"MissingEffect", OneStatement(R"("Principal":"*","Action":"kms:*")"),
       "Statement[0]: missing required field 'Effect'"},
      {"MissingPrincipal", OneStatement(R"("Effect":"Allow","Action":"kms:*")"),
       "Statement[0]: missing required field 'Principal'"},
      {"MissingAction", OneStatement(R"("Effect":"Allow","Principal":"*")"),
       "Statement[0]: missing required field 'Action'"},
      {"EffectWrongCase", OneStatement(R"("Effect":"allow","Principal":"*","Action":"kms:*")"),
       "Statement[0].Effect: must be \"Allow\" or \"Deny\", got 'allow'"},
      {"EffectNotString", OneStatement(R"("Effect":1,"Principal":"*","Action":"kms:*")"),
       "Statement[0].Effect: must be a string, got number"},
      {"SidWithDash", OneStatement(R"("Sid":"a-b",)" + allow_all),
       "Statement[0].Sid: must contain only A-Z, a-z and 0-9, got 'a-b'"},
      {"SidTooLong", OneStatement(R"("Sid":")" + std::string(129, 'a') + R"(",)" + allow_all),
       "Statement[0].Sid: must be at most 128 characters, got 129"},
      {"SidNotString", OneStatement(R"("Sid":7,)" + allow_all),
       "Statement[0].Sid: must be a string, got number"},
      {"DuplicateSid",
       R"({"Statement":[{"Sid":"A",)" + allow_all + R"(},{"Sid":"B",)" + allow_all +
           R"(},{"Sid":"A",)" + allow_all + "}]}",
       "Statement[2].Sid: duplicate Sid 'A'"},

      // Principal.
      {"PrincipalObjectForm",
       OneStatement(R"("Effect":"Allow","Principal":{"AWS":"x"},"Action":"kms:*")"),
       "Statement[0].Principal: must be \"*\", a principal string or an array of them; the "
       "object form"},
      {"PrincipalEmptyArray", OneStatement(R"("Effect":"Allow","Principal":[],"Action":"kms:*")"),
       "Statement[0].Principal: must not be an empty array"},
      {"PrincipalNumber", OneStatement(R"("Effect":"Allow","Principal":5,"Action":"kms:*")"),
       "Statement[0].Principal: must be a string or an array of strings, got number"},
      {"PrincipalElementNotString",
       OneStatement(R"("Effect":"Allow","Principal":["a",5],"Action":"kms:*")"),
       "Statement[0].Principal[1]: must be a string, got number"},
      {"PrincipalEmptyString", OneStatement(R"("Effect":"Allow","Principal":"","Action":"kms:*")"),
       "Statement[0].Principal: principal must not be empty"},
      {"PrincipalInnerStar",
       OneStatement(R"("Effect":"Allow","Principal":["ok","a*b"],"Action":"kms:*")"),
       "Statement[0].Principal[1]: '*' is allowed only as the last character of a principal "
       "pattern, got 'a*b'"},
      {"PrincipalDoubleStar", OneStatement(R"("Effect":"Allow","Principal":"**","Action":"kms:*")"),
       "Statement[0].Principal: '*' is allowed only as the last character"},
      {"PrincipalTooLong",
       OneStatement(R"("Effect":"Allow","Principal":")" + std::string(257, 'p') +
                    R"(","Action":"kms:*")"),
       "Statement[0].Principal: principal must be at most 256 bytes, got 257"},

      // Action.
      {"UnknownActionInSecondStatement",
       R"({"Statement":[{)" + allow_all +
           R"(},{"Effect":"Allow","Principal":"*","Action":["kms:Encrypt2"]}]})",
       "Statement[1].Action[0]: unknown action 'kms:Encrypt2'"},
      {"ActionWrongCase",
       OneStatement(R"("Effect":"Allow","Principal":"*","Action":"kms:decrypt")"),
       "Statement[0].Action: unknown action 'kms:decrypt'"},
      {"ActionWithoutPrefix",
       OneStatement(R"("Effect":"Allow","Principal":"*","Action":"Decrypt")"),
       "Statement[0].Action: unknown action 'Decrypt'"},
      {"ActionPatternMatchesNothing",
       OneStatement(R"("Effect":"Allow","Principal":"*","Action":["kms:Decrypt","kms:Foo*"])"),
       "Statement[0].Action[1]: action pattern 'kms:Foo*' matches no known action"},
      {"ActionOtherService", OneStatement(R"("Effect":"Allow","Principal":"*","Action":"s3:*")"),
       "Statement[0].Action: action pattern 's3:*' matches no known action"},
      {"ActionInnerStar", OneStatement(R"("Effect":"Allow","Principal":"*","Action":"kms:*Key")"),
       "Statement[0].Action: '*' is allowed only as the last character of an action, got "
       "'kms:*Key'"},
      {"ActionEmptyArray", OneStatement(R"("Effect":"Allow","Principal":"*","Action":[])"),
       "Statement[0].Action: must not be an empty array"},
      {"ActionNumber", OneStatement(R"("Effect":"Allow","Principal":"*","Action":3)"),
       "Statement[0].Action: must be a string or an array of strings, got number"},
      {"ActionEmptyString", OneStatement(R"("Effect":"Allow","Principal":"*","Action":"")"),
       "Statement[0].Action: unknown action ''"},

      // Condition.
      {"ConditionArray", OneStatement(allow_all + R"(,"Condition":[])"),
       "Statement[0].Condition: must be an object, got array"},
      {"ConditionEmpty", OneStatement(allow_all + R"(,"Condition":{})"),
       "Statement[0].Condition: must not be an empty object"},
      {"UnknownOperator",
       OneStatement(allow_all +
                    R"(,"Condition":{"StringEqualsIgnoreCase":{"kms:EncryptionContext:a":"b"}})"),
       "Statement[0].Condition: unknown condition operator 'StringEqualsIgnoreCase'"},
      {"IfExistsNotSupported",
       OneStatement(allow_all +
                    R"(,"Condition":{"StringEqualsIfExists":{"kms:EncryptionContext:a":"b"}})"),
       "Statement[0].Condition: unknown condition operator 'StringEqualsIfExists'"},
      {"OperatorBlockString", OneStatement(allow_all + R"(,"Condition":{"StringEquals":"x"})"),
       "Statement[0].Condition.StringEquals: must be an object, got string"},
      {"OperatorBlockEmpty", OneStatement(allow_all + R"(,"Condition":{"StringLike":{}})"),
       "Statement[0].Condition.StringLike: must not be an empty object"},
      {"UnknownConditionKey",
       OneStatement(allow_all + R"(,"Condition":{"StringEquals":{"aws:SourceIp":"x"}})"),
       "Statement[0].Condition.StringEquals: unknown condition key 'aws:SourceIp'"},
      {"EmptyContextKeyName",
       OneStatement(allow_all + R"(,"Condition":{"StringEquals":{"kms:EncryptionContext:":"x"}})"),
       "Statement[0].Condition.StringEquals: unknown condition key 'kms:EncryptionContext:'"},
      {"ConditionKeyWrongCase",
       OneStatement(allow_all + R"(,"Condition":{"Null":{"kms:encryptioncontextkeys":"true"}})"),
       "Statement[0].Condition.Null: unknown condition key 'kms:encryptioncontextkeys'"},
      {"SingleValuedOperatorOnKeys",
       OneStatement(allow_all +
                    R"(,"Condition":{"StringEquals":{"kms:EncryptionContextKeys":"a"}})"),
       "Statement[0].Condition.StringEquals.kms:EncryptionContextKeys: operator 'StringEquals' "
       "cannot test the multi-valued key"},
      {"StringLikeOnKeys",
       OneStatement(allow_all + R"(,"Condition":{"StringLike":{"kms:EncryptionContextKeys":"a"}})"),
       "Statement[0].Condition.StringLike.kms:EncryptionContextKeys: operator 'StringLike' cannot"},
      {"SetOperatorOnSingleValuedKey",
       OneStatement(
           allow_all +
           R"(,"Condition":{"ForAllValues:StringEquals":{"kms:EncryptionContext:a":"b"}})"),
       "Statement[0].Condition.ForAllValues:StringEquals.kms:EncryptionContext:a: operator "
       "'ForAllValues:StringEquals' needs a multi-valued key"},
      {"ValuesEmptyArray",
       OneStatement(allow_all + R"(,"Condition":{"StringEquals":{"kms:EncryptionContext:a":[]}})"),
       "Statement[0].Condition.StringEquals.kms:EncryptionContext:a: must not be an empty array"},
      {"ValuesNumber",
       OneStatement(allow_all + R"(,"Condition":{"StringEquals":{"kms:EncryptionContext:a":1}})"),
       "Statement[0].Condition.StringEquals.kms:EncryptionContext:a: must be a string or an "
       "array of strings, got number"},
      {"ValuesElementNull",
       OneStatement(allow_all +
                    R"(,"Condition":{"StringEquals":{"kms:EncryptionContext:a":["x",null]}})"),
       "Statement[0].Condition.StringEquals.kms:EncryptionContext:a[1]: must be a string, got "
       "null"},
      {"NullBadValue",
       OneStatement(allow_all + R"(,"Condition":{"Null":{"kms:EncryptionContext:a":"yes"}})"),
       "Statement[0].Condition.Null.kms:EncryptionContext:a: Null takes \"true\" or \"false\", "
       "got 'yes'"},
      {"NullJsonBoolean",
       OneStatement(allow_all + R"(,"Condition":{"Null":{"kms:EncryptionContextKeys":true}})"),
       "Statement[0].Condition.Null.kms:EncryptionContextKeys: must be a string or an array of "
       "strings, got boolean"},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, ParseErrorTest, ::testing::ValuesIn(ParseErrorCases()),
                         [](const auto& info) { return info.param.name; });

// ------------------------------------------------------------ valid documents

struct ValidCase {
  std::string name;
  std::string document;
  std::size_t statements;
  friend void PrintTo(const ValidCase& c, std::ostream* os) { *os << c.name; }
};

class ValidDocumentTest : public ::testing::TestWithParam<ValidCase> {};

TEST_P(ValidDocumentTest, Parses) {
  absl::StatusOr<Policy> p = Policy::Parse(GetParam().document);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->statement_count(), GetParam().statements);
}

constexpr char kExample[] = R"({
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowBillingToUseTheKey",
      "Effect": "Allow",
      "Principal": ["spiffe://prod/billing", "svc-batch-*"],
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
      "Condition": {
        "StringEquals": {"kms:EncryptionContext:tenant": ["acme", "globex"]},
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "file"]},
        "ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["tenant"]},
        "Null": {"kms:EncryptionContextKeys": "false"}
      }
    }
  ]
})";

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidDocumentTest,
    ::testing::Values(
        ValidCase{"TheDesignExample", kExample, 1},
        ValidCase{"NoVersion", R"({"Statement":[{)" + std::string(kAllowAll) + "}]}", 1},
        ValidCase{"SingleStatementObject", R"({"Statement":{)" + std::string(kAllowAll) + "}}", 1},
        ValidCase{"BareStarAction", OneStatement(R"("Effect":"Deny","Principal":"x","Action":"*")"),
                  1},
        ValidCase{"EmptySidsDoNotCollide",
                  R"({"Statement":[{"Sid":"",)" + std::string(kAllowAll) + R"(},{"Sid":"",)" +
                      std::string(kAllowAll) + "}]}",
                  2},
        ValidCase{
            "SidOf128",
            OneStatement(R"("Sid":")" + std::string(128, 'Z') + R"(",)" + std::string(kAllowAll)),
            1},
        ValidCase{"HundredStatements", Statements(100), 100},
        ValidCase{"ExactlyMaxBytes", PaddedTo(kMaxPolicyBytes), 1},
        ValidCase{"Utf8Values",
                  OneStatement(std::string(kAllowAll) +
                               R"(,"Condition":{"StringEquals":{"kms:EncryptionContext:ville":)"
                               "\"Z\xc3\xbcrich\"}}"),
                  1},
        ValidCase{"NullWithBothValues",
                  OneStatement(std::string(kAllowAll) +
                               R"(,"Condition":{"Null":{"kms:EncryptionContext:a":)"
                               R"(["true","false"]}})"),
                  1}),
    [](const auto& info) { return info.param.name; });

// ------------------------------------------------------------ text round trip

TEST(PolicyTextTest, KeepsTheExactTextAndACanonicalForm) {
  const std::string doc =
      "{ \"Statement\" : [ {\"Action\":\"kms:Decrypt\",\n\t\"Principal\":\"a\", "
      "\"Effect\":\"Allow\"} ], \"Version\":\"2012-10-17\" }";
  Policy p = MustParse(doc);
  EXPECT_EQ(p.text(), doc);
  EXPECT_EQ(p.canonical_text(),
            R"({"Statement":[{"Action":"kms:Decrypt","Effect":"Allow","Principal":"a"}],)"
            R"("Version":"2012-10-17"})");
}

TEST(PolicyTextTest, CanonicalTextIsAFixedPointWithTheSameDecisions) {
  Policy p = MustParse(kExample);
  Policy q = MustParse(p.canonical_text());
  EXPECT_EQ(q.canonical_text(), p.canonical_text());
  EXPECT_EQ(q.text(), p.canonical_text());
  const Context good = {{"tenant", "acme"}};
  const Context bad = {{"tenant", "initech"}};
  for (const Context* c : {&good, &bad}) {
    EXPECT_EQ(Eval(p, "svc-batch-1", "kms:Decrypt", c), Eval(q, "svc-batch-1", "kms:Decrypt", c));
  }
  EXPECT_EQ(Eval(q, "svc-batch-1", "kms:Decrypt", &good), Decision::kAllow);
}

TEST(PolicyTextTest, CanonicalTextKeepsNonAsciiAsUtf8) {
  Policy p = MustParse(OneStatement(R"("Effect":"Allow","Principal":"caf\u00e9","Action":"*")"));
  EXPECT_NE(p.canonical_text().find("caf\xc3\xa9"), std::string::npos) << p.canonical_text();
  EXPECT_EQ(Eval(p, "caf\xc3\xa9", "kms:Decrypt"), Decision::kAllow);
}

TEST(PolicyTextTest, CopiesShareTheParsedDocument) {
  Policy p = MustParse(kExample);
  Policy copy = p;
  EXPECT_EQ(copy.text(), p.text());
  EXPECT_EQ(&copy.text(), &p.text());
}

// ------------------------------------------------------------ known actions

TEST(KnownActionsTest, AreSortedAndUnique) {
  const auto& actions = KnownActions();
  EXPECT_TRUE(std::is_sorted(actions.begin(), actions.end()));
  EXPECT_EQ(std::adjacent_find(actions.begin(), actions.end()), actions.end());
}

TEST(KnownActionsTest, CoverEveryRpcOfTheServicePlusPolicyAndGrantActions) {
  std::ifstream in(std::string(KMS_SOURCE_DIR) + "/proto/kms/v1/kms.proto");
  ASSERT_TRUE(in.good());
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string proto = buffer.str();
  const std::size_t begin = proto.find("service KeyManagementService");
  ASSERT_NE(begin, std::string::npos);
  const std::string service = proto.substr(begin, proto.find("\n}", begin) - begin);
  std::regex rpc(R"(rpc\s+(\w+)\s*\()");
  std::vector<std::string> rpcs;
  for (auto it = std::sregex_iterator(service.begin(), service.end(), rpc);
       it != std::sregex_iterator(); ++it) {
    // ReEncrypt is authorised as ReEncryptFrom + ReEncryptTo (the extras).
    if ((*it)[1].str() != "ReEncrypt") rpcs.push_back("kms:" + (*it)[1].str());
  }
  EXPECT_GE(rpcs.size(), 29u);
  for (const std::string& a : rpcs) EXPECT_TRUE(IsKnownAction(a)) << a;
  const std::vector<std::string> extra = {
      "kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:CreateGrant",   "kms:ListGrants",
      "kms:RetireGrant",  "kms:RevokeGrant",  "kms:ReEncryptFrom", "kms:ReEncryptTo"};
  for (const std::string& a : extra) EXPECT_TRUE(IsKnownAction(a)) << a;
  // Nothing else: the list is exactly the RPCs plus the extras (the policy
  // and grant actions are RPCs now too, so count each name once).
  std::set<std::string> all(rpcs.begin(), rpcs.end());
  all.insert(extra.begin(), extra.end());
  EXPECT_EQ(KnownActions().size(), all.size());
  EXPECT_TRUE(IsKnownAction("kms:ImportKeyMaterial"));
  EXPECT_TRUE(IsKnownAction("kms:RotateKeyOnDemand"));
  EXPECT_FALSE(IsKnownAction("kms:Sign"));
  EXPECT_FALSE(IsKnownAction("kms:decrypt"));
}

// ------------------------------------------------------------ the example

class ExamplePolicyTest : public ::testing::Test {
 protected:
  Decision::Effect Ask(const std::string& principal, const std::string& action,
                       const Context& context) {
    return Eval(policy_, principal, action, &context);
  }
  Policy policy_ = MustParse(kExample);
};

TEST_F(ExamplePolicyTest, AllowsBillingWithAGoodContext) {
  EXPECT_EQ(Ask("spiffe://prod/billing", "kms:Decrypt", {{"tenant", "acme"}}), Decision::kAllow);
  EXPECT_EQ(Ask("spiffe://prod/billing", "kms:Encrypt", {{"tenant", "globex"}, {"file", "f1"}}),
            Decision::kAllow);
}

TEST_F(ExamplePolicyTest, ReasonNamesTheSid) {
  const Context c = {{"tenant", "acme"}};
  Decision d = policy_.Evaluate(Request{"spiffe://prod/billing", "kms:Decrypt", &c});
  EXPECT_EQ(d.effect, Decision::kAllow);
  EXPECT_EQ(d.reason, "allowed by statement 'AllowBillingToUseTheKey'");
}

TEST_F(ExamplePolicyTest, ActionWildcardCoversBothDataKeyActions) {
  EXPECT_EQ(Ask("svc-batch-7", "kms:GenerateDataKey", {{"tenant", "acme"}}), Decision::kAllow);
  EXPECT_EQ(Ask("svc-batch-7", "kms:GenerateDataKeyWithoutPlaintext", {{"tenant", "acme"}}),
            Decision::kAllow);
  EXPECT_EQ(Ask("svc-batch-7", "kms:ReEncryptFrom", {{"tenant", "acme"}}), Decision::kImplicitDeny);
  EXPECT_EQ(Ask("svc-batch-7", "kms:DescribeKey", {{"tenant", "acme"}}), Decision::kImplicitDeny);
}

TEST_F(ExamplePolicyTest, PrincipalPatterns) {
  const Context c = {{"tenant", "acme"}};
  EXPECT_EQ(Ask("svc-batch-", "kms:Decrypt", c), Decision::kAllow);  // prefix itself
  EXPECT_EQ(Ask("svc-batch", "kms:Decrypt", c), Decision::kImplicitDeny);
  EXPECT_EQ(Ask("SVC-BATCH-1", "kms:Decrypt", c), Decision::kImplicitDeny);
  EXPECT_EQ(Ask("spiffe://prod/billing2", "kms:Decrypt", c), Decision::kImplicitDeny);
  EXPECT_EQ(Ask("spiffe://prod/bill", "kms:Decrypt", c), Decision::kImplicitDeny);
}

TEST_F(ExamplePolicyTest, DeniesWrongTenantExtraKeyAndEmptyContext) {
  EXPECT_EQ(Ask("svc-batch-1", "kms:Decrypt", {{"tenant", "initech"}}), Decision::kImplicitDeny);
  EXPECT_EQ(Ask("svc-batch-1", "kms:Decrypt", {{"tenant", "acme"}, {"other", "x"}}),
            Decision::kImplicitDeny);
  EXPECT_EQ(Ask("svc-batch-1", "kms:Decrypt", {}), Decision::kImplicitDeny);
  EXPECT_EQ(Eval(policy_, "svc-batch-1", "kms:Decrypt", nullptr), Decision::kImplicitDeny);
}

// ------------------------------------------------------------ conditions

struct ConditionCase {
  std::string name;
  std::string condition;           // the Condition object's JSON
  std::optional<Context> context;  // nullopt: Request without a context
  bool allowed;
  friend void PrintTo(const ConditionCase& c, std::ostream* os) { *os << c.name; }
};

class ConditionTest : public ::testing::TestWithParam<ConditionCase> {};

TEST_P(ConditionTest, DecidesAsAws) {
  const ConditionCase& c = GetParam();
  Policy p = MustParse(OneStatement(absl::StrCat(
      R"("Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":)", c.condition)));
  const Context* context = c.context ? &*c.context : nullptr;
  EXPECT_EQ(Eval(p, "anyone", "kms:Decrypt", context),
            c.allowed ? Decision::kAllow : Decision::kImplicitDeny);
}

std::vector<ConditionCase> ConditionCases() {
  const std::string eq = R"({"StringEquals":{"kms:EncryptionContext:tenant":["acme","globex"]}})";
  const std::string ne =
      R"({"StringNotEquals":{"kms:EncryptionContext:tenant":["acme","globex"]}})";
  auto like = [](const std::string& pattern) {
    return absl::StrCat(R"({"StringLike":{"kms:EncryptionContext:tenant":")", pattern, R"("}})");
  };
  const std::string all =
      R"({"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["tenant","file"]}})";
  const std::string any =
      R"({"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["tenant","file"]}})";
  auto null_key = [](const std::string& v) {
    return absl::StrCat(R"({"Null":{"kms:EncryptionContext:tenant":")", v, R"("}})");
  };
  auto null_keys = [](const std::string& v) {
    return absl::StrCat(R"({"Null":{"kms:EncryptionContextKeys":")", v, R"("}})");
  };
  const Context acme = {{"tenant", "acme"}};
  const Context globex = {{"tenant", "globex"}, {"x", "y"}};
  const Context initech = {{"tenant", "initech"}};
  const Context other = {{"file", "f"}};
  const Context both = {{"tenant", "acme"}, {"file", "f"}};
  const Context extra = {{"tenant", "acme"}, {"extra", "1"}};
  const Context empty;
  return {
      {"EqualsFirstValue", eq, acme, true},
      {"EqualsSecondValue", eq, globex, true},
      {"EqualsOtherValue", eq, initech, false},
      {"EqualsIsCaseSensitive", eq, Context{{"tenant", "ACME"}}, false},
      {"EqualsKeyIsCaseSensitive", eq, Context{{"Tenant", "acme"}}, false},
      {"EqualsAbsentKey", eq, other, false},
      {"EqualsEmptyContext", eq, empty, false},
      {"EqualsNoContext", eq, std::nullopt, false},

      {"NotEqualsOtherValue", ne, initech, true},
      {"NotEqualsFirstValue", ne, acme, false},
      {"NotEqualsSecondValue", ne, globex, false},
      {"NotEqualsAbsentKeyHolds", ne, other, true},
      {"NotEqualsEmptyContextHolds", ne, empty, true},
      {"NotEqualsNoContextHolds", ne, std::nullopt, true},

      {"LikeStar", like("ac*"), acme, true},
      {"LikeStarNoMatch", like("ac*"), initech, false},
      {"LikeQuestion", like("a?me"), acme, true},
      {"LikeQuestionNeedsOneChar", like("a?cme"), acme, false},
      {"LikeStarMatchesEmptyRun", like("acme*"), acme, true},
      {"LikeInnerStar", like("a*e"), acme, true},
      {"LikeLiteralOnly", like("acme"), acme, true},
      {"LikeAbsentKey", like("*"), other, false},
      {"LikeNoContext", like("*"), std::nullopt, false},
      {"LikeStarMatchesEmptyValue", like("*"), Context{{"tenant", ""}}, true},
      {"LikeAnyOfValues", R"({"StringLike":{"kms:EncryptionContext:tenant":["x*","in*"]}})",
       initech, true},

      {"ForAllSubset", all, both, true},
      {"ForAllOneKey", all, acme, true},
      {"ForAllExtraKey", all, extra, false},
      {"ForAllEmptyContextIsVacuouslyTrue", all, empty, true},
      {"ForAllNoContextIsVacuouslyTrue", all, std::nullopt, true},

      {"ForAnyOneListed", any, extra, true},
      {"ForAnyNoneListed", any, Context{{"extra", "1"}}, false},
      {"ForAnyEmptyContext", any, empty, false},
      {"ForAnyNoContext", any, std::nullopt, false},

      {"NullTrueAbsentKey", null_key("true"), other, true},
      {"NullTrueNoContext", null_key("true"), std::nullopt, true},
      {"NullTruePresentKey", null_key("true"), acme, false},
      {"NullFalsePresentKey", null_key("false"), acme, true},
      {"NullFalseAbsentKey", null_key("false"), other, false},
      {"NullTruePresentEmptyValue", null_key("true"), Context{{"tenant", ""}}, false},
      {"NullKeysTrueEmpty", null_keys("true"), empty, true},
      {"NullKeysTrueNonEmpty", null_keys("true"), other, false},
      {"NullKeysFalseNonEmpty", null_keys("false"), other, true},
      {"NullKeysFalseEmpty", null_keys("false"), empty, false},
      {"NullKeysFalseNoContext", null_keys("false"), std::nullopt, false},
      {"NullEitherValueAlwaysHolds", R"({"Null":{"kms:EncryptionContextKeys":["true","false"]}})",
       empty, true},

      // AND across keys and operators, OR within one key's values.
      {"AndBothHold",
       R"({"StringEquals":{"kms:EncryptionContext:tenant":"acme","kms:EncryptionContext:file":"f"}})",
       both, true},
      {"AndOneFails",
       R"({"StringEquals":{"kms:EncryptionContext:tenant":"acme","kms:EncryptionContext:file":"g"}})",
       both, false},
      {"AndAcrossOperatorsHold", all.substr(0, all.size() - 1) + "," + eq.substr(1), both, true},
      {"AndAcrossOperatorsFail", all.substr(0, all.size() - 1) + "," + eq.substr(1), extra, false},
      {"ForAllWithNullFalseRejectsEmpty",
       R"({"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["tenant"]},)"
       R"("Null":{"kms:EncryptionContextKeys":"false"}})",
       empty, false},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, ConditionTest, ::testing::ValuesIn(ConditionCases()),
                         [](const auto& info) { return info.param.name; });

// ------------------------------------------------------------ StringLike

struct LikeCase {
  std::string pattern;
  std::string value;
  bool match;
};

TEST(StringLikeMatchTest, Wildcards) {
  const LikeCase cases[] = {
      {"", "", true},
      {"", "a", false},
      {"*", "", true},
      {"*", "anything", true},
      {"?", "", false},
      {"?", "a", true},
      {"?", "ab", false},
      {"a*b*c", "aXbYc", true},
      {"a*b*c", "aXbY", false},
      {"*a", "banana", true},
      {"*an*an*", "banana", true},
      {"*an*an*an*", "banana", false},
      {"a**b", "ab", true},
      {"?\xc3\xa9", "x\xc3\xa9", true},  // é is one character
      {"?", "\xc3\xa9", true},
      {"??", "\xc3\xa9", false},
      {"*?", "\xe2\x82\xac", true},  // € (3 bytes) is one character
      {"a?c", "abbc", false},
      {"ACME", "acme", false},
  };
  for (const LikeCase& c : cases) {
    EXPECT_EQ(StringLikeMatch(c.pattern, c.value), c.match)
        << "pattern '" << c.pattern << "' value '" << c.value << "'";
  }
}

// ------------------------------------------------------------ principals, actions

TEST(PrincipalTest, StarMatchesEveryone) {
  Policy p = MustParse(OneStatement(R"("Effect":"Allow","Principal":"*","Action":"kms:Decrypt")"));
  EXPECT_EQ(Eval(p, "spiffe://a/b", "kms:Decrypt"), Decision::kAllow);
  EXPECT_EQ(Eval(p, "x", "kms:Decrypt"), Decision::kAllow);
}

TEST(PrincipalTest, EmptyPrincipalMatchesNothingNotEvenStar) {
  Policy p = MustParse(absl::StrCat(R"({"Statement":[{)", kAllowAll,
                                    R"(},{"Effect":"Deny","Principal":"*","Action":"*"}]})"));
  Decision d = p.Evaluate(Request{"", "kms:Decrypt", nullptr});
  EXPECT_EQ(d.effect, Decision::kImplicitDeny);
  EXPECT_EQ(d.reason, "no statement matched");
}

TEST(PrincipalTest, PrefixPatternIncludesThePrefixItself) {
  Policy p =
      MustParse(OneStatement(R"("Effect":"Allow","Principal":"svc-*","Action":"kms:Decrypt")"));
  EXPECT_EQ(Eval(p, "svc-a", "kms:Decrypt"), Decision::kAllow);
  EXPECT_EQ(Eval(p, "svc-", "kms:Decrypt"), Decision::kAllow);
  EXPECT_EQ(Eval(p, "svc", "kms:Decrypt"), Decision::kImplicitDeny);
  EXPECT_EQ(Eval(p, "xsvc-a", "kms:Decrypt"), Decision::kImplicitDeny);
}

TEST(PrincipalTest, ExactPrincipalMatchesOnlyItself) {
  Policy p = MustParse(OneStatement(
      R"("Effect":"Allow","Principal":["spiffe://prod/a","spiffe://prod/b"],"Action":"kms:Decrypt")"));
  EXPECT_EQ(Eval(p, "spiffe://prod/a", "kms:Decrypt"), Decision::kAllow);
  EXPECT_EQ(Eval(p, "spiffe://prod/b", "kms:Decrypt"), Decision::kAllow);
  EXPECT_EQ(Eval(p, "spiffe://prod/ab", "kms:Decrypt"), Decision::kImplicitDeny);
  EXPECT_EQ(Eval(p, "spiffe://prod/", "kms:Decrypt"), Decision::kImplicitDeny);
}

TEST(ActionTest, Wildcards) {
  Policy data_key = MustParse(
      OneStatement(R"("Effect":"Allow","Principal":"*","Action":"kms:GenerateDataKey*")"));
  EXPECT_EQ(Eval(data_key, "p", "kms:GenerateDataKey"), Decision::kAllow);
  EXPECT_EQ(Eval(data_key, "p", "kms:GenerateDataKeyWithoutPlaintext"), Decision::kAllow);
  EXPECT_EQ(Eval(data_key, "p", "kms:GenerateRandom"), Decision::kImplicitDeny);
  EXPECT_EQ(Eval(data_key, "p", "kms:Decrypt"), Decision::kImplicitDeny);

  Policy re =
      MustParse(OneStatement(R"("Effect":"Allow","Principal":"*","Action":"kms:ReEncrypt*")"));
  EXPECT_EQ(Eval(re, "p", "kms:ReEncryptFrom"), Decision::kAllow);
  EXPECT_EQ(Eval(re, "p", "kms:ReEncryptTo"), Decision::kAllow);
  EXPECT_EQ(Eval(re, "p", "kms:Encrypt"), Decision::kImplicitDeny);

  Policy all = MustParse(OneStatement(kAllowAll));
  EXPECT_EQ(Eval(all, "p", "kms:CreateGrant"), Decision::kAllow);
  EXPECT_EQ(Eval(all, "p", "kms:PutKeyPolicy"), Decision::kAllow);
  Policy star = MustParse(OneStatement(R"("Effect":"Allow","Principal":"*","Action":"*")"));
  EXPECT_EQ(Eval(star, "p", "kms:ScheduleKeyDeletion"), Decision::kAllow);
}

TEST(ActionTest, ExactActionIsExact) {
  Policy p = MustParse(OneStatement(R"("Effect":"Allow","Principal":"*","Action":"kms:Encrypt")"));
  EXPECT_EQ(Eval(p, "p", "kms:Encrypt"), Decision::kAllow);
  EXPECT_EQ(Eval(p, "p", "kms:encrypt"), Decision::kImplicitDeny);
  EXPECT_EQ(Eval(p, "p", "kms:Decrypt"), Decision::kImplicitDeny);
  // There is no kms:ReEncrypt action; the error says what to write instead.
  auto re = Policy::Parse(OneStatement(R"("Effect":"Allow","Principal":"*","Action":"kms:ReEncrypt")"));
  ASSERT_FALSE(re.ok());
  EXPECT_NE(re.status().message().find("kms:ReEncryptFrom"), absl::string_view::npos)
      << re.status();
}

TEST(ActionTest, UnknownRequestActionIsImplicitlyDeniedEvenUnderWildcards) {
  Policy p = MustParse(OneStatement(R"("Effect":"Allow","Principal":"*","Action":"*")"));
  Decision d = p.Evaluate(Request{"p", "kms:Bogus", nullptr});
  EXPECT_EQ(d.effect, Decision::kImplicitDeny);
  EXPECT_EQ(d.reason, "no statement matched (unknown action 'kms:Bogus')");
  EXPECT_EQ(Eval(p, "p", "kms:"), Decision::kImplicitDeny);
}

// ------------------------------------------------------------ deny, allow, implicit

constexpr char kDenyAlice[] = R"("Effect":"Deny","Principal":"alice","Action":"kms:Decrypt")";

TEST(EvaluateTest, DenyBeatsAllowWhenDenyComesFirst) {
  Policy p = MustParse(
      absl::StrCat(R"({"Statement":[{"Sid":"NoAlice",)", kDenyAlice, "},{", kAllowAll, "}]}"));
  Decision d = p.Evaluate(Request{"alice", "kms:Decrypt", nullptr});
  EXPECT_EQ(d.effect, Decision::kExplicitDeny);
  EXPECT_EQ(d.reason, "denied by statement 'NoAlice'");
}

TEST(EvaluateTest, DenyBeatsAllowWhenDenyComesLast) {
  Policy p = MustParse(absl::StrCat(R"({"Statement":[{"Sid":"All",)", kAllowAll, "},{", kAllowAll,
                                    "},{", kDenyAlice, "}]}"));
  Decision d = p.Evaluate(Request{"alice", "kms:Decrypt", nullptr});
  EXPECT_EQ(d.effect, Decision::kExplicitDeny);
  EXPECT_EQ(d.reason, "denied by Statement[2]");
  // The deny is narrow: other actions and principals are still allowed.
  Decision other = p.Evaluate(Request{"alice", "kms:Encrypt", nullptr});
  EXPECT_EQ(other.effect, Decision::kAllow);
  EXPECT_EQ(other.reason, "allowed by statement 'All'");
  EXPECT_EQ(Eval(p, "bob", "kms:Decrypt"), Decision::kAllow);
}

TEST(EvaluateTest, DenyWhoseConditionFailsDoesNotApply) {
  Policy p = MustParse(absl::StrCat(
      R"({"Statement":[{)", kAllowAll, R"(},{"Effect":"Deny","Principal":"*","Action":"kms:*",)",
      R"("Condition":{"StringEquals":{"kms:EncryptionContext:env":"prod"}}}]})"));
  const Context prod = {{"env", "prod"}};
  const Context dev = {{"env", "dev"}};
  EXPECT_EQ(Eval(p, "x", "kms:Decrypt", &prod), Decision::kExplicitDeny);
  EXPECT_EQ(Eval(p, "x", "kms:Decrypt", &dev), Decision::kAllow);
  EXPECT_EQ(Eval(p, "x", "kms:Decrypt", nullptr), Decision::kAllow);
}

TEST(EvaluateTest, DenyAloneIsExplicitAndNothingMatchingIsImplicit) {
  Policy p = MustParse(OneStatement(kDenyAlice));
  EXPECT_EQ(Eval(p, "alice", "kms:Decrypt"), Decision::kExplicitDeny);
  Decision d = p.Evaluate(Request{"bob", "kms:Decrypt", nullptr});
  EXPECT_EQ(d.effect, Decision::kImplicitDeny);
  EXPECT_EQ(d.reason, "no statement matched");
}

TEST(EvaluateTest, FirstMatchingAllowIsNamed) {
  Policy p = MustParse(absl::StrCat(
      R"({"Statement":[{"Effect":"Allow","Principal":"bob","Action":"kms:Encrypt"},)",
      R"({"Effect":"Allow","Principal":"alice","Action":"kms:Decrypt"},{"Sid":"Later",)", kAllowAll,
      "}]}"));
  Decision d = p.Evaluate(Request{"alice", "kms:Decrypt", nullptr});
  EXPECT_EQ(d.effect, Decision::kAllow);
  EXPECT_EQ(d.reason, "allowed by Statement[1]");
}

TEST(EvaluateTest, SingleStatementObjectFormEvaluates) {
  Policy p = MustParse(absl::StrCat(R"({"Statement":{)", kDenyAlice, "}}"));
  Decision d = p.Evaluate(Request{"alice", "kms:Decrypt", nullptr});
  EXPECT_EQ(d.effect, Decision::kExplicitDeny);
  EXPECT_EQ(d.reason, "denied by Statement");
}

TEST(MalformedPolicyDocumentErrorTest, CarriesCodeAndName) {
  absl::Status s = MalformedPolicyDocumentError("x: y");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorTypeOf(s), "MalformedPolicyDocumentException");
  EXPECT_EQ(s.message(), "x: y");
}

}  // namespace
}  // namespace kms::policy
