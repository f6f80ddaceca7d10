// AuthorizedService: every allow and deny path of key policies, roles and
// grants, over the real KeyService (FakeHsm, SQLite in memory).
#include "daemon/service/authorized_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "daemon/common/errors.h"
#include "daemon/policy/grant.h"
#include "proto/grant_operation_names.h"
#include "tests/daemon/service/service_fixture.h"
#include "tests/testing/status_matchers.h"

namespace kms::service {
namespace {

using ::kms::testing::IsOk;
using ::kms::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdmin[] = "spiffe://corp/kms-admin";
constexpr char kAuditor[] = "spiffe://corp/compliance";
constexpr char kApp[] = "spiffe://corp/billing";
constexpr char kOther[] = "spiffe://corp/intruder";

Caller As(const std::string& principal) { return Caller{principal, "req-1", "ipv4:127.0.0.1:1"}; }

// A policy that lets kApp use the key and kAdmin manage it.
std::string UsagePolicy(const std::string& extra_statement = "") {
  return absl::StrCat(R"({"Version":"2012-10-17","Statement":[
    {"Sid":"Admin","Effect":"Allow","Principal":")", kAdmin, R"(","Action":"kms:*"},
    {"Sid":"Use","Effect":"Allow","Principal":")", kApp, R"(",
     "Action":["kms:Encrypt","kms:Decrypt","kms:GenerateDataKey*","kms:ReEncrypt*","kms:DescribeKey"]})",
                      extra_statement, "]}");
}

class AuthorizedServiceTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    access_ = std::make_unique<AccessControl>(Roles{{kAdmin, "ops-*"}, {kAuditor}});
    authorized_ = std::make_unique<AuthorizedService>(*service_, *store_, *access_, clock_);
  }

  absl::StatusOr<std::string> CreateKeyAs(const std::string& principal,
                                          const std::string& policy = "") {
    v1::CreateKeyRequest request;
    request.set_policy(policy);
    CallFacts facts;
    auto created = authorized_->CreateKey(As(principal), request, &facts);
    if (!created.ok()) return created.status();
    EXPECT_EQ(facts.key_id, created->key_metadata().key_id());
    return created->key_metadata().key_id();
  }

  absl::StatusOr<v1::GenerateDataKeyResponse> DataKeyAs(
      const std::string& principal, const std::string& key_id,
      const std::map<std::string, std::string>& context = {}, CallFacts* facts_out = nullptr) {
    v1::GenerateDataKeyRequest request;
    request.set_key_id(key_id);
    request.set_key_spec(v1::AES_256);
    for (const auto& [k, v] : context) (*request.mutable_encryption_context())[k] = v;
    CallFacts facts;
    auto response = authorized_->GenerateDataKey(As(principal), request, &facts);
    if (facts_out != nullptr) *facts_out = facts;
    return response;
  }

  absl::StatusOr<v1::DecryptResponse> DecryptAs(
      const std::string& principal, const std::string& blob,
      const std::map<std::string, std::string>& context = {}) {
    v1::DecryptRequest request;
    request.set_ciphertext_blob(blob);
    for (const auto& [k, v] : context) (*request.mutable_encryption_context())[k] = v;
    CallFacts facts;
    return authorized_->Decrypt(As(principal), request, &facts);
  }

  absl::Status DescribeAs(const std::string& principal, const std::string& key_id) {
    v1::DescribeKeyRequest request;
    request.set_key_id(key_id);
    CallFacts facts;
    return authorized_->DescribeKey(As(principal), request, &facts).status();
  }

  absl::Status PutPolicyAs(const std::string& principal, const std::string& key_id,
                           const std::string& policy, bool bypass = false) {
    v1::PutKeyPolicyRequest request;
    request.set_key_id(key_id);
    request.set_policy(policy);
    request.set_bypass_policy_lockout_safety_check(bypass);
    CallFacts facts;
    return authorized_->PutKeyPolicy(As(principal), request, &facts).status();
  }

  absl::StatusOr<v1::CreateGrantResponse> GrantAs(
      const std::string& principal, const std::string& key_id, const std::string& grantee,
      std::vector<v1::GrantOperation> ops,
      const std::map<std::string, std::string>& equals = {},
      const std::map<std::string, std::string>& subset = {}, const std::string& retiring = "") {
    v1::CreateGrantRequest request;
    request.set_key_id(key_id);
    request.set_grantee_principal(grantee);
    request.set_retiring_principal(retiring);
    for (auto op : ops) request.add_operations(op);
    for (const auto& [k, v] : equals) {
      (*request.mutable_constraints()->mutable_encryption_context_equals())[k] = v;
    }
    for (const auto& [k, v] : subset) {
      (*request.mutable_constraints()->mutable_encryption_context_subset())[k] = v;
    }
    CallFacts facts;
    return authorized_->CreateGrant(As(principal), request, &facts);
  }

  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<AuthorizedService> authorized_;
};

// ---- roles

TEST_F(AuthorizedServiceTest, OnlyAdministratorsCreateKeys) {
  EXPECT_THAT(CreateKeyAs(kAdmin).status(), IsOk());
  EXPECT_THAT(CreateKeyAs("ops-alice").status(), IsOk());  // prefix pattern
  for (const char* who : {kApp, kAuditor, "ops", ""}) {
    auto denied = CreateKeyAs(who);
    EXPECT_THAT(denied.status(), StatusIs(absl::StatusCode::kPermissionDenied)) << who;
    EXPECT_EQ(ErrorTypeOf(denied.status()), "AccessDeniedException");
  }
}

TEST_F(AuthorizedServiceTest, ListingIsForAdministratorsAndReportsAlsoForAuditors) {
  CallFacts facts;
  EXPECT_THAT(authorized_->ListKeys(As(kAdmin), {}, &facts).status(), IsOk());
  EXPECT_THAT(authorized_->ListKeys(As(kApp), {}, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(authorized_->ListAliases(As(kAuditor), {}, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(authorized_->GetRotationComplianceReport(As(kAuditor), {}, &facts).status(), IsOk());
  EXPECT_THAT(authorized_->GetRotationComplianceReport(As(kApp), {}, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  v1::GenerateRandomRequest random;
  random.set_number_of_bytes(16);
  EXPECT_THAT(authorized_->GenerateRandom(As(kApp), random, &facts).status(), IsOk());
  EXPECT_THAT(authorized_->GenerateRandom(As(""), random, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(AuthorizedServiceTest, AuditAccessIsForAuditorsOnly) {
  EXPECT_THAT(access_->AuthorizeAudit(As(kAuditor), "QueryAuditLog"), IsOk());
  EXPECT_THAT(access_->AuthorizeAudit(As(kAdmin), "QueryAuditLog"),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// ---- separation of duties under the default policy

TEST_F(AuthorizedServiceTest, DefaultPolicyLetsTheCreatorManageButNotUse) {
  auto key = CreateKeyAs("ops-alice");
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_THAT(DescribeAs("ops-alice", *key), IsOk());
  auto used = DataKeyAs("ops-alice", *key);
  EXPECT_THAT(used.status(), StatusIs(absl::StatusCode::kPermissionDenied));
  // Named: the principal, the action and the key; not the policy.
  EXPECT_THAT(used.status().message(), HasSubstr("ops-alice"));
  EXPECT_THAT(used.status().message(), HasSubstr("kms:GenerateDataKey"));
  EXPECT_THAT(used.status().message(), HasSubstr(*key));
  EXPECT_THAT(used.status().message(), Not(HasSubstr("Statement")));
  // The stored default policy names the creator.
  v1::GetKeyPolicyRequest get;
  get.set_key_id(*key);
  CallFacts facts;
  auto policy = authorized_->GetKeyPolicy(As("ops-alice"), get, &facts);
  ASSERT_THAT(policy.status(), IsOk());
  EXPECT_THAT(policy->policy(), HasSubstr("\"ops-alice\""));
  EXPECT_THAT(policy->policy(), Not(HasSubstr("kms:Decrypt")));
}

TEST_F(AuthorizedServiceTest, AdministratorsManageEveryKeyButUseNone) {
  auto key = CreateKeyAs("ops-alice");
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_THAT(DescribeAs(kAdmin, *key), IsOk());  // by role, not named in the policy
  v1::DisableKeyRequest disable;
  disable.set_key_id(*key);
  CallFacts facts;
  EXPECT_THAT(authorized_->DisableKey(As(kAdmin), disable, &facts).status(), IsOk());
  EXPECT_THAT(DataKeyAs(kAdmin, *key).status(), StatusIs(absl::StatusCode::kPermissionDenied));
  // Others can do neither.
  EXPECT_THAT(DescribeAs(kOther, *key), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(authorized_->EnableKey(As(kOther), v1::EnableKeyRequest(), &facts).status(),
              Not(IsOk()));
}

// ---- policies

TEST_F(AuthorizedServiceTest, PolicyStatementsAllowUse) {
  auto key = CreateKeyAs(kAdmin, UsagePolicy());
  ASSERT_THAT(key.status(), IsOk());
  CallFacts facts;
  auto data_key = DataKeyAs(kApp, *key, {{"tenant", "a"}}, &facts);
  ASSERT_THAT(data_key.status(), IsOk());
  EXPECT_EQ(facts.key_id, *key);
  EXPECT_FALSE(facts.key_version_id.empty());
  EXPECT_THAT(DecryptAs(kApp, data_key->ciphertext_blob(), {{"tenant", "a"}}).status(), IsOk());
  EXPECT_THAT(DecryptAs(kOther, data_key->ciphertext_blob(), {{"tenant", "a"}}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // kApp may not manage.
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(*key);
  EXPECT_THAT(authorized_->ScheduleKeyDeletion(As(kApp), schedule, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(AuthorizedServiceTest, ExplicitDenyWinsOverAllowRoleAndGrant) {
  auto key = CreateKeyAs(kAdmin, UsagePolicy(absl::StrCat(
      R"(,{"Effect":"Deny","Principal":")", kApp, R"(","Action":"kms:Decrypt"},
         {"Effect":"Deny","Principal":")", kAdmin, R"(","Action":"kms:ScheduleKeyDeletion"})")));
  ASSERT_THAT(key.status(), IsOk());
  auto data_key = DataKeyAs(kApp, *key);
  ASSERT_THAT(data_key.status(), IsOk());
  EXPECT_THAT(DecryptAs(kApp, data_key->ciphertext_blob()).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // A grant does not beat the Deny either.
  ASSERT_THAT(GrantAs(kAdmin, *key, kApp, {v1::DECRYPT}).status(), IsOk());
  EXPECT_THAT(DecryptAs(kApp, data_key->ciphertext_blob()).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Nor does the administrator role.
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(*key);
  CallFacts facts;
  EXPECT_THAT(authorized_->ScheduleKeyDeletion(As(kAdmin), schedule, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(Describe(*key).key_state(), v1::ENABLED);
}

TEST_F(AuthorizedServiceTest, ContextConditionsDecide) {
  auto key = CreateKeyAs(kAdmin, absl::StrCat(R"({"Statement":[
    {"Effect":"Allow","Principal":")", kApp, R"(","Action":"kms:GenerateDataKey",
     "Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"acme"},
                  "ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["tenant","purpose"]}}},
    {"Effect":"Allow","Principal":")", kAdmin, R"(","Action":"kms:PutKeyPolicy"}]})"));
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key, {{"tenant", "acme"}}).status(), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key, {{"tenant", "acme"}, {"purpose", "x"}}).status(), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key, {{"tenant", "other"}}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(DataKeyAs(kApp, *key, {}).status(), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(DataKeyAs(kApp, *key, {{"tenant", "acme"}, {"extra", "1"}}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(AuthorizedServiceTest, PutKeyPolicyValidatesAndTakesEffectAtOnce) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key).status(), StatusIs(absl::StatusCode::kPermissionDenied));
  // Malformed: named precisely, nothing changed.
  absl::Status bad = PutPolicyAs(kAdmin, *key, R"({"Statement":[{"Effect":"Allow"}]})");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(ErrorTypeOf(bad), "MalformedPolicyDocumentException");
  EXPECT_THAT(bad.message(), HasSubstr("Statement[0]"));
  // Only managers may put.
  EXPECT_THAT(PutPolicyAs(kApp, *key, UsagePolicy()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_THAT(PutPolicyAs(kAdmin, *key, UsagePolicy()), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key).status(), IsOk());
  // Wrong policy name.
  v1::PutKeyPolicyRequest named;
  named.set_key_id(*key);
  named.set_policy_name("other");
  named.set_policy(UsagePolicy());
  CallFacts facts;
  EXPECT_THAT(authorized_->PutKeyPolicy(As(kAdmin), named, &facts).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AuthorizedServiceTest, LockoutSafetyCheck) {
  auto key = CreateKeyAs("ops-alice");
  ASSERT_THAT(key.status(), IsOk());
  // ops-alice is an administrator, so a policy not naming her still lets her
  // put policies; one denying her does not, unless bypassed.
  const std::string deny_alice = R"({"Statement":[
    {"Effect":"Allow","Principal":"*","Action":"kms:DescribeKey"},
    {"Effect":"Deny","Principal":"ops-alice","Action":"kms:PutKeyPolicy"}]})";
  absl::Status refused = PutPolicyAs("ops-alice", *key, deny_alice);
  EXPECT_EQ(ErrorTypeOf(refused), "MalformedPolicyDocumentException");
  EXPECT_THAT(refused.message(), HasSubstr("will not allow you to update the key policy"));
  EXPECT_THAT(PutPolicyAs("ops-alice", *key, deny_alice, /*bypass=*/true), IsOk());
  EXPECT_THAT(PutPolicyAs("ops-alice", *key, UsagePolicy()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // The same check at CreateKey, for the creator.
  EXPECT_THAT(CreateKeyAs("ops-bob", deny_alice).status(), IsOk());  // bob is not denied
  EXPECT_EQ(ErrorTypeOf(CreateKeyAs("ops-alice", deny_alice).status()),
            "MalformedPolicyDocumentException");
}

TEST_F(AuthorizedServiceTest, UnknownKeysAreNotFoundAndUnparseableCiphertextsInvalid) {
  EXPECT_THAT(DescribeAs(kApp, "11111111-2222-3333-4444-555555555555"),
              StatusIs(absl::StatusCode::kNotFound));
  auto garbage = DecryptAs(kApp, "not a ciphertext");
  EXPECT_EQ(ErrorTypeOf(garbage.status()), "InvalidCiphertextException");
}

// ---- grants

TEST_F(AuthorizedServiceTest, GrantsTakeEffectAtOnceAndEndWithRevocation) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key).status(), StatusIs(absl::StatusCode::kPermissionDenied));
  auto grant = GrantAs(kAdmin, *key, kApp, {v1::GENERATE_DATA_KEY, v1::DECRYPT});
  ASSERT_THAT(grant.status(), IsOk());
  EXPECT_EQ(grant->grant_id().size(), 64u);
  EXPECT_FALSE(grant->grant_token().empty());
  auto data_key = DataKeyAs(kApp, *key);
  ASSERT_THAT(data_key.status(), IsOk());
  EXPECT_THAT(DecryptAs(kApp, data_key->ciphertext_blob()).status(), IsOk());
  // Only the granted operations.
  v1::EncryptRequest encrypt;
  encrypt.set_key_id(*key);
  encrypt.set_plaintext("x");
  CallFacts facts;
  EXPECT_THAT(authorized_->Encrypt(As(kApp), encrypt, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Only the grantee.
  EXPECT_THAT(DataKeyAs(kOther, *key).status(), StatusIs(absl::StatusCode::kPermissionDenied));
  // Revoked: gone at once. The grantee cannot revoke.
  v1::RevokeGrantRequest revoke;
  revoke.set_key_id(*key);
  revoke.set_grant_id(grant->grant_id());
  EXPECT_THAT(authorized_->RevokeGrant(As(kApp), revoke, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_THAT(authorized_->RevokeGrant(As(kAdmin), revoke, &facts).status(), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key).status(), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(authorized_->RevokeGrant(As(kAdmin), revoke, &facts).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AuthorizedServiceTest, GrantConstraintsBindTheContext) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  ASSERT_THAT(GrantAs(kAdmin, *key, kApp, {v1::GENERATE_DATA_KEY}, {}, {{"tenant", "acme"}})
                  .status(),
              IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key, {{"tenant", "acme"}, {"x", "y"}}).status(), IsOk());
  EXPECT_THAT(DataKeyAs(kApp, *key, {{"tenant", "other"}}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_THAT(GrantAs(kAdmin, *key, kOther, {v1::GENERATE_DATA_KEY}, {{"tenant", "acme"}}).status(),
              IsOk());
  EXPECT_THAT(DataKeyAs(kOther, *key, {{"tenant", "acme"}}).status(), IsOk());
  EXPECT_THAT(DataKeyAs(kOther, *key, {{"tenant", "acme"}, {"x", "y"}}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// The wire's grant operations and the policy library's are one list: a name
// in only one would make CreateGrant refuse it or store what nothing honours.
TEST(GrantOperationNamesTest, TheApiAndThePolicyLibraryAgree) {
  std::vector<std::string> api;
  for (const auto& named : api::NamedGrantOperations()) api.emplace_back(named.name);
  std::vector<std::string> policy_ops = policy::GrantOperations();
  std::sort(api.begin(), api.end());
  std::sort(policy_ops.begin(), policy_ops.end());
  EXPECT_EQ(api, policy_ops);
}

TEST_F(AuthorizedServiceTest, GranteesPassOnOnlyWhatTheyHave) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  ASSERT_THAT(GrantAs(kAdmin, *key, kApp, {v1::DECRYPT, v1::CREATE_GRANT}, {}, {{"t", "1"}})
                  .status(),
              IsOk());
  // Within the parent grant: operations it has, constraints as strict.
  EXPECT_THAT(GrantAs(kApp, *key, kOther, {v1::DECRYPT}, {}, {{"t", "1"}}).status(), IsOk());
  EXPECT_THAT(GrantAs(kApp, *key, kOther, {v1::DECRYPT}, {{"t", "1"}, {"u", "2"}}).status(),
              IsOk());
  // Beyond it: refused.
  EXPECT_THAT(GrantAs(kApp, *key, kOther, {v1::ENCRYPT}, {}, {{"t", "1"}}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(GrantAs(kApp, *key, kOther, {v1::DECRYPT}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Someone with no grant and no policy cannot create grants.
  EXPECT_THAT(GrantAs(kOther, *key, kOther, {v1::DECRYPT}).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// A Deny in the policy wins on the paths that need no policy Allow: a
// grantee passing its grant on, and a retiring principal or grantee retiring.
TEST_F(AuthorizedServiceTest, ExplicitDenyWinsOverParentGrantsAndRetiringPrincipals) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  auto parent = GrantAs(kAdmin, *key, kApp, {v1::DECRYPT, v1::CREATE_GRANT, v1::RETIRE_GRANT});
  auto retirable = GrantAs(kAdmin, *key, kApp, {v1::DECRYPT}, {}, {}, kOther);
  ASSERT_THAT(parent.status(), IsOk());
  ASSERT_THAT(retirable.status(), IsOk());
  ASSERT_THAT(PutPolicyAs(kAdmin, *key, absl::StrCat(R"({"Statement":[
      {"Effect":"Allow","Principal":")", kAdmin, R"(","Action":"kms:*"},
      {"Effect":"Deny","Principal":")", kApp, R"(","Action":["kms:CreateGrant","kms:RetireGrant"]},
      {"Effect":"Deny","Principal":")", kOther, R"(","Action":"kms:RetireGrant"}]})")),
              IsOk());
  EXPECT_ERROR(GrantAs(kApp, *key, kOther, {v1::DECRYPT}), kPermissionDenied,
               "AccessDeniedException");
  CallFacts facts;
  v1::RetireGrantRequest retire;
  retire.set_key_id(*key);
  retire.set_grant_id(parent->grant_id());
  EXPECT_ERROR(authorized_->RetireGrant(As(kApp), retire, &facts), kPermissionDenied,
               "AccessDeniedException");
  retire.set_grant_id(retirable->grant_id());
  EXPECT_ERROR(authorized_->RetireGrant(As(kOther), retire, &facts), kPermissionDenied,
               "AccessDeniedException");
  // Both grants are still there; a key manager can still revoke them.
  v1::ListGrantsRequest list;
  list.set_key_id(*key);
  auto listed = authorized_->ListGrants(As(kAdmin), list, &facts);
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_EQ(listed->grants_size(), 2);
}

TEST_F(AuthorizedServiceTest, RetireGrantByTokenRetiringPrincipalOrGrantee) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  auto by_token = GrantAs(kAdmin, *key, kApp, {v1::DECRYPT});
  auto by_retiree = GrantAs(kAdmin, *key, kApp, {v1::DECRYPT}, {}, {}, kOther);
  auto by_grantee = GrantAs(kAdmin, *key, kApp, {v1::DECRYPT, v1::RETIRE_GRANT});
  ASSERT_THAT(by_token.status(), IsOk());
  ASSERT_THAT(by_retiree.status(), IsOk());
  ASSERT_THAT(by_grantee.status(), IsOk());
  CallFacts facts;
  // The grantee without RetireGrant may not retire by id.
  v1::RetireGrantRequest retire;
  retire.set_key_id(*key);
  retire.set_grant_id(by_token->grant_id());
  EXPECT_THAT(authorized_->RetireGrant(As(kApp), retire, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // ...but the administrator may (kms:RetireGrant by role).
  v1::RetireGrantRequest token;
  token.set_grant_token(by_token->grant_token());
  EXPECT_THAT(authorized_->RetireGrant(As(kAdmin), token, &facts).status(), IsOk());
  EXPECT_THAT(authorized_->RetireGrant(As(kAdmin), token, &facts).status(),
              StatusIs(absl::StatusCode::kNotFound));
  retire.set_grant_id(by_retiree->grant_id());
  EXPECT_THAT(authorized_->RetireGrant(As(kOther), retire, &facts).status(), IsOk());
  retire.set_grant_id(by_grantee->grant_id());
  EXPECT_THAT(authorized_->RetireGrant(As(kApp), retire, &facts).status(), IsOk());
  v1::ListGrantsRequest list;
  list.set_key_id(*key);
  auto listed = authorized_->ListGrants(As(kAdmin), list, &facts);
  ASSERT_THAT(listed.status(), IsOk());
  EXPECT_EQ(listed->grants_size(), 0);
}

TEST_F(AuthorizedServiceTest, ListGrantsShowsWhatWasGranted) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  auto grant = GrantAs(kAdmin, *key, kApp, {v1::DECRYPT, v1::ENCRYPT}, {{"t", "1"}});
  ASSERT_THAT(grant.status(), IsOk());
  v1::ListGrantsRequest list;
  list.set_key_id(*key);
  CallFacts facts;
  EXPECT_THAT(authorized_->ListGrants(As(kApp), list, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  auto listed = authorized_->ListGrants(As(kAdmin), list, &facts);
  ASSERT_THAT(listed.status(), IsOk());
  ASSERT_EQ(listed->grants_size(), 1);
  const auto& entry = listed->grants(0);
  EXPECT_EQ(entry.grant_id(), grant->grant_id());
  EXPECT_EQ(entry.grantee_principal(), kApp);
  EXPECT_EQ(entry.issuing_principal(), kAdmin);
  EXPECT_EQ(entry.operations_size(), 2);
  EXPECT_EQ(entry.constraints().encryption_context_equals().at("t"), "1");
}

TEST_F(AuthorizedServiceTest, FilteredListGrantsFillsEveryPageWithMatches) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  // 12 grants, 3 of them to kOther; grant ids are random, so where kOther's
  // fall among the others' pages is too.
  std::set<std::string> others;
  for (int i = 0; i < 12; ++i) {
    auto grant = GrantAs(kAdmin, *key, i % 4 == 0 ? kOther : kApp, {v1::DECRYPT});
    ASSERT_THAT(grant.status(), IsOk());
    if (i % 4 == 0) others.insert(grant->grant_id());
  }
  CallFacts facts;
  for (int limit = 1; limit <= 4; ++limit) {
    SCOPED_TRACE(absl::StrCat("limit ", limit));
    v1::ListGrantsRequest list;
    list.set_key_id(*key);
    list.set_grantee_principal(kOther);
    list.set_limit(limit);
    std::vector<std::string> seen;
    int pages = 0;
    while (true) {
      auto listed = authorized_->ListGrants(As(kAdmin), list, &facts);
      ASSERT_THAT(listed.status(), IsOk());
      for (const auto& entry : listed->grants()) {
        EXPECT_EQ(entry.grantee_principal(), kOther);
        seen.push_back(entry.grant_id());
      }
      ASSERT_LT(++pages, 20);
      EXPECT_EQ(listed->truncated(), !listed->next_marker().empty());
      if (!listed->truncated()) {
        EXPECT_GT(listed->grants_size(), 0);  // never an empty last page
        break;
      }
      EXPECT_EQ(listed->grants_size(), limit);  // never short while more match
      list.set_marker(listed->next_marker());
    }
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), others);
    EXPECT_EQ(seen.size(), others.size());
    EXPECT_EQ(pages, (3 + limit - 1) / limit);
  }

  // One grant by id, wherever it sorts, even with a limit of 1.
  for (const std::string& id : others) {
    v1::ListGrantsRequest list;
    list.set_key_id(*key);
    list.set_grant_id(id);
    list.set_limit(1);
    auto listed = authorized_->ListGrants(As(kAdmin), list, &facts);
    ASSERT_THAT(listed.status(), IsOk());
    ASSERT_EQ(listed->grants_size(), 1);
    EXPECT_EQ(listed->grants(0).grant_id(), id);
    EXPECT_FALSE(listed->truncated());
    // With a grantee it does not have: nothing, and nothing more to page.
    list.set_grantee_principal(kApp);
    listed = authorized_->ListGrants(As(kAdmin), list, &facts);
    ASSERT_THAT(listed.status(), IsOk());
    EXPECT_EQ(listed->grants_size(), 0);
    EXPECT_FALSE(listed->truncated());
  }
}

TEST_F(AuthorizedServiceTest, BadGrantsAreRefusedAndStoreNothing) {
  auto key = CreateKeyAs(kAdmin);
  ASSERT_THAT(key.status(), IsOk());
  EXPECT_THAT(GrantAs(kAdmin, *key, "", {v1::DECRYPT}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(GrantAs(kAdmin, *key, "svc-*", {v1::DECRYPT}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(GrantAs(kAdmin, *key, kApp, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(GrantAs(kAdmin, *key, kApp, {v1::DECRYPT}, {{"a", "1"}}, {{"b", "2"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto count = store_->CountGrants(*key);
  ASSERT_THAT(count.status(), IsOk());
  EXPECT_EQ(*count, 0);
}

// ---- ReEncrypt needs both halves

TEST_F(AuthorizedServiceTest, ReEncryptNeedsFromOnSourceAndToOnDestination) {
  auto source = CreateKeyAs(kAdmin, UsagePolicy());
  auto destination = CreateKeyAs(kAdmin);
  ASSERT_THAT(source.status(), IsOk());
  ASSERT_THAT(destination.status(), IsOk());
  auto data_key = DataKeyAs(kApp, *source);
  ASSERT_THAT(data_key.status(), IsOk());
  v1::ReEncryptRequest request;
  request.set_ciphertext_blob(data_key->ciphertext_blob());
  request.set_destination_key_id(*destination);
  CallFacts facts;
  EXPECT_THAT(authorized_->ReEncrypt(As(kApp), request, &facts).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_THAT(GrantAs(kAdmin, *destination, kApp, {v1::RE_ENCRYPT_TO}).status(), IsOk());
  auto moved = authorized_->ReEncrypt(As(kApp), request, &facts);
  ASSERT_THAT(moved.status(), IsOk());
  EXPECT_EQ(facts.key_id, *destination);
  EXPECT_THAT(facts.detail, HasSubstr(*source));
}

}  // namespace
}  // namespace kms::service
