// kmsctl, run as a subprocess (the built binary, KMS_KMSCTL_BINARY) against
// an in-process fake kmsd: exit codes, the stderr line, human and --json
// output, argument parsing, and that usage errors never reach kmsd.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/key_material.h"
#include "daemon/audit/audit_record.h"
#include "daemon/common/secret_bytes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kms/v1/kms.pb.h"
#include "tests/client/fake_kms_server.h"
#include "tests/client/test_wrapping_key.h"
#include "tests/daemon/audit/test_signing_key.h"
#include "tests/testing/daemon_process.h"

namespace kms {
namespace {

using ::kms::testing::ClosedPort;
using ::kms::testing::CommandResult;
using ::kms::testing::FakeKmsServer;
using ::kms::testing::RunCommand;
using ::kms::testing::RunKmsctl;
using ::kms::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using ::testing::StartsWith;

constexpr char kKeyId[] = "1234abcd-12ab-34cd-56ef-1234567890ab";
constexpr char kKeyArn[] =
    "arn:kmsd:kms:local:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";



mode_t FileMode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

class KmsctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("kmsctl-test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = std::move(*dir);
  }

  std::string Path(const std::string& name) const { return dir_->path() + "/" + name; }

  // kmsctl with `args`, and `env` ("K=V") added to the environment.
  static CommandResult Run(const std::vector<std::string>& args,
                           const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {KMS_KMSCTL_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, env);
  }

  // kmsctl --endpoint <the fake kmsd> `args`.
  CommandResult RunAgainstServer(const std::vector<std::string>& args) {
    return RunKmsctl(server_.endpoint(), args);
  }

  static v1::KeyMetadata Metadata() {
    v1::KeyMetadata m;
    m.set_key_id(kKeyId);
    m.set_arn(kKeyArn);
    m.mutable_creation_date()->set_seconds(1800000000);  // 2027-01-15T08:00:00Z
    m.set_enabled(true);
    m.set_description("payments\nteam");
    m.set_key_usage(v1::ENCRYPT_DECRYPT);
    m.set_key_state(v1::ENABLED);
    m.set_origin(v1::AWS_KMS);
    m.set_key_spec(v1::SYMMETRIC_DEFAULT);
    m.set_current_key_version_id("version-0001");
    m.add_encryption_algorithms(v1::SYMMETRIC_DEFAULT_ALGORITHM);
    m.set_key_version_count(1);
    return m;
  }

  static v1::RotationsListEntry Rotation(const std::string& version_id, int64_t seconds,
                                         v1::RotationType type, bool current) {
    v1::RotationsListEntry r;
    r.set_key_id(kKeyId);
    r.set_key_version_id(version_id);
    r.mutable_rotation_date()->set_seconds(seconds);
    r.set_rotation_type(type);
    r.set_current(current);
    return r;
  }

  FakeKmsServer server_;
  std::unique_ptr<TempDir> dir_;
};

// ------------------------------------------------------------ usage errors

struct UsageCase {
  std::string name;
  std::vector<std::string> args;
  std::string message;  // a part of the stderr line
};

// Names the case in test listings (ctest shows the parameter).
void PrintTo(const UsageCase& c, std::ostream* os) { *os << c.name; }

class KmsctlUsageTest : public KmsctlTest, public ::testing::WithParamInterface<UsageCase> {};

TEST_P(KmsctlUsageTest, ExitsTwoWithOneHelpfulLineAndMakesNoCall) {
  const UsageCase& c = GetParam();
  CommandResult outcome = RunAgainstServer(c.args);

  EXPECT_EQ(outcome.exit_code, 2) << outcome.err;
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: "));
  EXPECT_THAT(outcome.err, HasSubstr(c.message));
  EXPECT_THAT(outcome.err, HasSubstr("--help"));
  EXPECT_EQ(std::count(outcome.err.begin(), outcome.err.end(), '\n'), 1) << outcome.err;
  EXPECT_EQ(outcome.out, "");
  EXPECT_EQ(server_.service().total_calls(), 0);
  EXPECT_EQ(server_.audit_service().total_calls(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    BadArguments, KmsctlUsageTest,
    ::testing::Values(
        UsageCase{"NoCommand", {}, "a command is required"},
        UsageCase{"CreateKeyBothPolicyFlags",
                  {"create-key", "--policy", "{}", "--policy-file", "p.json"},
                  "give at most one of --policy and --policy-file"},
        UsageCase{"PutKeyPolicyWithoutPolicy",
                  {"put-key-policy", "--key-id", "k"},
                  "give exactly one of --policy and --policy-file"},
        UsageCase{"PutKeyPolicyBothPolicyFlags",
                  {"put-key-policy", "--key-id", "k", "--policy", "{}", "--policy-file", "p"},
                  "give exactly one of --policy and --policy-file"},
        UsageCase{"PutKeyPolicyWithoutKey", {"put-key-policy", "--policy", "{}"}, "--key-id"},
        UsageCase{"GetKeyPolicyWithoutKey", {"get-key-policy"}, "--key-id"},
        UsageCase{"CreateGrantOperationInTheWrongCase",
                  {"create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations",
                   "Decrypt,generatedatakey"},
                  "unknown operation 'generatedatakey'; valid (case-sensitive): Decrypt, Encrypt, "
                  "GenerateDataKey, GenerateDataKeyWithoutPlaintext, ReEncryptFrom, ReEncryptTo, "
                  "CreateGrant, RetireGrant, DescribeKey"},
        UsageCase{"CreateGrantProtoOperationName",
                  {"create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations",
                   "GENERATE_DATA_KEY"},
                  "unknown operation 'GENERATE_DATA_KEY'"},
        UsageCase{"CreateGrantWithoutOperations",
                  {"create-grant", "--key-id", "k", "--grantee-principal", "p"},
                  "--operations"},
        UsageCase{"CreateGrantWithAnEmptyOperationList",
                  {"create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations", ""},
                  "--operations"},
        UsageCase{"CreateGrantWithoutGrantee",
                  {"create-grant", "--key-id", "k", "--operations", "Decrypt"},
                  "--grantee-principal"},
        UsageCase{
            "CreateGrantBothConstraintKinds",
            {"create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations", "Decrypt",
             "--encryption-context-equals", "a=1", "--encryption-context-subset", "b=2"},
            "give at most one of --encryption-context-equals and "
            "--encryption-context-subset"},
        UsageCase{"CreateGrantConstraintWithoutEquals",
                  {"create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations",
                   "Decrypt", "--encryption-context-subset", "app"},
                  "--encryption-context-subset expects KEY=VALUE"},
        UsageCase{"RetireGrantWithNothing", {"retire-grant"}, "give either --grant-token"},
        UsageCase{"RetireGrantByTokenAndId",
                  {"retire-grant", "--grant-token", "t", "--key-id", "k", "--grant-id", "g"},
                  "give either --grant-token, or --key-id with --grant-id"},
        UsageCase{"RetireGrantKeyWithoutGrantId",
                  {"retire-grant", "--key-id", "k"},
                  "--key-id and --grant-id go together"},
        UsageCase{"RevokeGrantWithoutGrantId", {"revoke-grant", "--key-id", "k"}, "--grant-id"},
        UsageCase{"ListGrantsWithoutKey", {"list-grants"}, "--key-id"},
        UsageCase{"AuditWithoutCommand", {"audit"}, "'audit' needs a command: query, export"},
        UsageCase{"AuditUnknownCommand", {"audit", "verfy"}, "unknown audit command 'verfy'"},
        UsageCase{
            "AuditQueryUnknownOutcome", {"audit", "query", "--outcome", "maybe"}, "--outcome"},
        UsageCase{"AuditQuerySinceNotATime",
                  {"audit", "query", "--since", "yesterday"},
                  "--since must be an RFC 3339 time"},
        UsageCase{"AuditQueryUntilWithoutZone",
                  {"audit", "query", "--until", "2027-01-15T08:00:00"},
                  "--until must be an RFC 3339 time"},
        UsageCase{"AuditQueryZeroLimit", {"audit", "query", "--limit", "0"}, "--limit"},
        UsageCase{"AuditQueryUnknownOutput", {"audit", "query", "--output", "xml"}, "--output"},
        UsageCase{"AuditQueryJsonAndCsv",
                  {"--json", "audit", "query", "--output", "csv"},
                  "--json asks for jsonl output but --output says csv"},
        UsageCase{"AuditExportWithoutOut", {"audit", "export"}, "--out"},
        UsageCase{"AuditPublicKeyWithoutOut", {"audit", "public-key"}, "--out"},
        UsageCase{"AuditVerifyWithoutLog", {"audit", "verify", "--public-key", "k.pem"}, "--log"},
        UsageCase{"AuditVerifyWithoutPublicKey",
                  {"audit", "verify", "--log", "audit.jsonl"},
                  "--public-key"},
        UsageCase{"AuditVerifyBothFromStdin",
                  {"audit", "verify", "--log", "-", "--public-key", "-"},
                  "--log and --public-key cannot both be stdin"},
        UsageCase{"KeyInventoryUnknownOutput", {"key-inventory", "--output", "jsonl"}, "--output"},
        UsageCase{"KeyInventoryMaxAgeNotANumber",
                  {"key-inventory", "--max-age-days", "old"},
                  "--max-age-days"},
        UsageCase{"UnknownCommand", {"describe-kee", "k"}, "unknown command 'describe-kee'"},
        UsageCase{"MissingKey", {"describe-key"}, "KEY is required"},
        UsageCase{"UnknownFlag", {"list-keys", "--limt", "5"}, "--limt"},
        UsageCase{"LimitNotANumber", {"list-keys", "--limit", "many"}, "--limit"},
        UsageCase{"LimitOverflowsInt32", {"list-keys", "--limit", "99999999999"}, "--limit"},
        UsageCase{"NegativeTimeout", {"--timeout", "-1", "list-keys"}, "--timeout"},
        UsageCase{"BadOrigin", {"create-key", "--origin", "AWS_CLOUDHSM"}, "--origin"},
        UsageCase{"TagWithoutValue", {"create-key", "--tag", "team"}, "--tag"},
        UsageCase{"TagKeyTwice", {"create-key", "--tag", "a=1", "--tag", "a=2"}, "'a'"},
        UsageCase{"TagResourceWithoutTags", {"tag-resource", "k"}, "TAG is required"},
        UsageCase{"BothPlaintextFlags",
                  {"encrypt", "k", "--plaintext", "x", "--plaintext-file", "f"},
                  "exactly one of --plaintext and --plaintext-file"},
        UsageCase{"NoPlaintext", {"encrypt", "k"}, "exactly one of"},
        UsageCase{"ContextWithoutEquals",
                  {"encrypt", "k", "--plaintext", "x", "--context", "purpose"},
                  "--context expects KEY=VALUE"},
        UsageCase{"ContextWithEmptyKey",
                  {"encrypt", "k", "--plaintext", "x", "--context", "=v"},
                  "--context expects KEY=VALUE"},
        UsageCase{"ContextKeyTwice",
                  {"encrypt", "k", "--plaintext", "x", "--context", "a=1", "--context", "a=2"},
                  "more than once"},
        UsageCase{
            "CiphertextNotBase64", {"decrypt", "--ciphertext-base64", "%%%"}, "not valid base64"},
        UsageCase{"NoCiphertext", {"decrypt"}, "exactly one of --ciphertext-file"},
        UsageCase{"BadSourceContext",
                  {"re-encrypt", "--ciphertext-base64", "AAAA", "--destination-key-id", "k",
                   "--source-context", "x"},
                  "--source-context"},
        UsageCase{"NoDestinationKey",
                  {"re-encrypt", "--ciphertext-base64", "AAAA"},
                  "--destination-key-id"},
        UsageCase{"BothKeySpecAndNumberOfBytes",
                  {"generate-data-key", "k", "--key-spec", "AES_256", "--number-of-bytes", "32"},
                  "exactly one of --key-spec and --number-of-bytes"},
        UsageCase{
            "UnknownKeySpec", {"generate-data-key", "k", "--key-spec", "AES_512"}, "--key-spec"},
        UsageCase{"RandomCountNotANumber", {"generate-random", "lots"}, "N"},
        UsageCase{"ChunkSizeTooSmall",
                  {"encrypt-file", "k", "in", "out", "--chunk-size", "10"},
                  "--chunk-size"},
        UsageCase{"RotationPeriodWithoutRotation",
                  {"create-key", "--rotation-period-in-days", "90"},
                  "--rotation-period-in-days requires --enable-key-rotation"},
        UsageCase{"CreateKeyRotationPeriodNotANumber",
                  {"create-key", "--enable-key-rotation", "--rotation-period-in-days", "yearly"},
                  "--rotation-period-in-days"},
        UsageCase{"EnableKeyRotationWithoutKey", {"enable-key-rotation"}, "KEY is required"},
        UsageCase{"EnableKeyRotationPeriodNotANumber",
                  {"enable-key-rotation", "k", "--rotation-period-in-days", "soon"},
                  "--rotation-period-in-days"},
        UsageCase{"EnableKeyRotationPeriodOverflowsInt32",
                  {"enable-key-rotation", "k", "--rotation-period-in-days", "99999999999"},
                  "--rotation-period-in-days"},
        UsageCase{"DisableKeyRotationWithoutKey", {"disable-key-rotation"}, "KEY is required"},
        UsageCase{"GetKeyRotationStatusWithoutKey", {"get-key-rotation-status"}, "KEY is required"},
        UsageCase{"RotateKeyOnDemandWithoutKey", {"rotate-key-on-demand"}, "KEY is required"},
        UsageCase{"RotateKeyOnDemandWithTwoKeys",
                  {"rotate-key-on-demand", "k1", "k2"},
                  "not expected: k2"},
        UsageCase{"ListKeyRotationsWithoutKey", {"list-key-rotations"}, "KEY is required"},
        UsageCase{"ListKeyRotationsLimitNotANumber",
                  {"list-key-rotations", "k", "--limit", "all"},
                  "--limit"},
        UsageCase{"ComplianceMaxAgeNotANumber",
                  {"rotation-compliance-report", "--max-age-in-days", "old"},
                  "--max-age-in-days"},
        UsageCase{
            "ComplianceReportTakesNoKey", {"rotation-compliance-report", "k"}, "not expected: k"}),
    [](const ::testing::TestParamInfo<UsageCase>& info) { return info.param.name; });

TEST_F(KmsctlTest, MissingPlaintextFileExitsFourWithoutCallingKmsd) {
  CommandResult outcome =
      RunAgainstServer({"encrypt", "k", "--plaintext-file", Path("does-not-exist")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: cannot open '"));
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlTest, HelpListsTheExitCodesAndExitsZero) {
  CommandResult outcome = Run({"--help"});

  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_THAT(outcome.out, HasSubstr("Exit codes:"));
  EXPECT_THAT(outcome.out, HasSubstr("3  kmsd unreachable"));
  EXPECT_THAT(outcome.out, HasSubstr("generate-data-key-without-plaintext"));
  EXPECT_THAT(outcome.out, HasSubstr("rotation-compliance-report"));
  for (const char* command :
       {"get-parameters-for-import", "import-key-material", "delete-imported-key-material",
        "generate-key-material", "key-check-value"}) {
    EXPECT_THAT(outcome.out, HasSubstr(command));
  }
}

// ------------------------------------------------------------ errors

TEST_F(KmsctlTest, ServiceErrorExitsOneWithTheExceptionNameOnStderr) {
  server_.service().SetError(
      "DescribeKey", {grpc::StatusCode::NOT_FOUND, "key 'alias/x' not found", "NotFoundException"});

  CommandResult outcome = RunAgainstServer({"describe-key", "alias/x"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: NotFoundException: key 'alias/x' not found\n");
  EXPECT_EQ(outcome.out, "");
  EXPECT_EQ(server_.service().calls("DescribeKey"), 1);
}

TEST_F(KmsctlTest, ServiceErrorWithoutTrailerUsesTheDefaultNameForTheCode) {
  server_.service().SetError(
      "EnableKey", {grpc::StatusCode::FAILED_PRECONDITION, "key is pending deletion", ""});

  CommandResult outcome = RunAgainstServer({"enable-key", kKeyId});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: KMSInvalidStateException: key is pending deletion\n");
}

TEST_F(KmsctlTest, UnavailableSentByKmsdIsAServiceError) {
  server_.service().SetError(
      "Encrypt", {grpc::StatusCode::UNAVAILABLE, "HSM session lost", "KeyUnavailableException"});

  CommandResult outcome = RunAgainstServer({"encrypt", kKeyId, "--plaintext", "x"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: KeyUnavailableException: HSM session lost\n");
}

TEST_F(KmsctlTest, UnreachableEndpointExitsThree) {
  ClosedPort port;
  CommandResult outcome = Run({"--endpoint", port.endpoint(), "list-keys"});

  EXPECT_EQ(outcome.exit_code, 3) << outcome.err;
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: kmsd unreachable at " + port.endpoint()));
  EXPECT_EQ(std::count(outcome.err.begin(), outcome.err.end(), '\n'), 1);
}

TEST_F(KmsctlTest, NoAnswerBeforeTheTimeoutExitsThree) {
  server_.service().Hold();

  CommandResult outcome = RunAgainstServer({"--timeout", "0.2", "list-keys"});

  server_.service().Release();
  EXPECT_EQ(outcome.exit_code, 3) << outcome.err;
  EXPECT_THAT(outcome.err, HasSubstr("did not answer in time"));
}

// ------------------------------------------------------------ output

TEST_F(KmsctlTest, DescribeKeyShowsEveryMetadataField) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("DescribeKey", canned);

  CommandResult outcome = RunAgainstServer({"describe-key", "alias/payments"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  const std::string& out = outcome.out;
  EXPECT_THAT(out, HasSubstr("key_id:                 " + std::string(kKeyId) + "\n"));
  EXPECT_THAT(out, HasSubstr("arn:                    " + std::string(kKeyArn) + "\n"));
  EXPECT_THAT(out, HasSubstr("creation_date:          2027-01-15T08:00:00Z\n"));
  EXPECT_THAT(out, HasSubstr("enabled:                true\n"));
  // A multi-line value stays in its column.
  EXPECT_THAT(out, HasSubstr("description:            payments\n"
                             "                        team\n"));
  EXPECT_THAT(out, HasSubstr("key_usage:              ENCRYPT_DECRYPT\n"));
  EXPECT_THAT(out, HasSubstr("key_state:              ENABLED\n"));
  EXPECT_THAT(out, HasSubstr("deletion_date:          -\n"));
  EXPECT_THAT(out, HasSubstr("origin:                 AWS_KMS\n"));
  EXPECT_THAT(out, HasSubstr("key_spec:               SYMMETRIC_DEFAULT\n"));
  EXPECT_THAT(out, HasSubstr("current_key_version_id: version-0001\n"));
  EXPECT_THAT(out, HasSubstr("encryption_algorithms:  SYMMETRIC_DEFAULT_ALGORITHM\n"));
  EXPECT_THAT(out, HasSubstr("key_version_count:      1\n"));
  EXPECT_EQ(server_.service().last_request<v1::DescribeKeyRequest>("DescribeKey").key_id(),
            "alias/payments");
}

TEST_F(KmsctlTest, DescribeKeyListsEveryVersionAndMarksTheCurrent) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  canned.mutable_key_metadata()->set_current_key_version_id("version-0003");
  canned.mutable_key_metadata()->set_key_version_count(3);
  server_.service().AddResponse("DescribeKey", canned);
  v1::ListKeyRotationsResponse first;
  *first.add_rotations() = Rotation("version-0002", 1800086400, v1::ON_DEMAND, false);
  first.set_truncated(true);
  first.set_next_marker("version-0002");
  v1::ListKeyRotationsResponse second;
  *second.add_rotations() = Rotation("version-0003", 1831536000, v1::AUTOMATIC, true);
  server_.service().AddResponse("ListKeyRotations", first);
  server_.service().AddResponse("ListKeyRotations", second);

  CommandResult outcome = RunAgainstServer({"describe-key", "alias/payments"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("current_key_version_id: version-0003\n"));
  EXPECT_THAT(outcome.out, HasSubstr("key_version_count:      3\n"));
  // The versions come last; the original material is not a rotation and
  // kmsd does not name it once it has been rotated away.
  EXPECT_THAT(outcome.out,
              ::testing::EndsWith("versions:\n"
                                  "  -             2027-01-15T08:00:00Z  ORIGINAL\n"
                                  "  version-0002  2027-01-16T08:00:00Z  ON_DEMAND\n"
                                  "  version-0003  2028-01-15T08:00:00Z  AUTOMATIC  current\n"));
  EXPECT_EQ(outcome.err, "");
  // Listed by the resolved key id, every page.
  std::vector<v1::ListKeyRotationsRequest> requests =
      server_.service().requests<v1::ListKeyRotationsRequest>("ListKeyRotations");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].key_id(), kKeyId);
  EXPECT_EQ(requests[0].marker(), "");
  EXPECT_FALSE(requests[0].has_limit());
  EXPECT_EQ(requests[1].key_id(), kKeyId);
  EXPECT_EQ(requests[1].marker(), "version-0002");
  EXPECT_EQ(requests[0].include_key_material(), v1::ALL_KEY_MATERIAL);
}

// A kmsd that lists the original material itself (ALL_KEY_MATERIAL) names it
// even after rotations: an operator re-importing deleted material needs its
// version id.
TEST_F(KmsctlTest, DescribeKeyShowsTheOriginalMaterialKmsdLists) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  canned.mutable_key_metadata()->set_current_key_version_id("version-0002");
  canned.mutable_key_metadata()->set_key_version_count(2);
  server_.service().AddResponse("DescribeKey", canned);
  v1::ListKeyRotationsResponse listed;
  *listed.add_rotations() = Rotation("version-0001", 1800000000, v1::ORIGINAL, false);
  *listed.add_rotations() = Rotation("version-0002", 1800086400, v1::ON_DEMAND, true);
  listed.mutable_rotations(0)->set_import_state(v1::PENDING_REIMPORT);
  listed.mutable_rotations(0)->set_key_check_value("ABC123");
  listed.mutable_rotations(1)->set_import_state(v1::IMPORTED);
  listed.mutable_rotations(1)->set_key_check_value("DEF456");
  server_.service().AddResponse("ListKeyRotations", listed);

  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out,
              ::testing::EndsWith(
                  "versions:\n"
                  "  version-0001  2027-01-15T08:00:00Z  ORIGINAL   PENDING_REIMPORT  kcv=ABC123\n"
                  "  version-0002  2027-01-16T08:00:00Z  ON_DEMAND  IMPORTED          kcv=DEF456  "
                  "current\n"));
}

// A caller allowed DescribeKey but not ListKeyRotations (a grantee with only
// DescribeKey) gets the metadata and a note, and success.
TEST_F(KmsctlTest, DescribeKeyWithoutListKeyRotationsShowsTheMetadata) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("DescribeKey", canned);
  server_.service().SetError("ListKeyRotations",
                             {grpc::StatusCode::PERMISSION_DENIED,
                              "'app' is not authorized to perform kms:ListKeyRotations",
                              "AccessDeniedException"});

  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId});

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("current_key_version_id: version-0001\n"));
  EXPECT_THAT(outcome.out, ::testing::EndsWith(
                               "(versions not shown: not allowed kms:ListKeyRotations)\n"));
}

TEST_F(KmsctlTest, DescribeKeyOfANeverRotatedKeyMarksTheOriginalCurrent) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("DescribeKey", canned);

  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, ::testing::EndsWith("versions:\n"
                                               "  version-0001  2027-01-15T08:00:00Z  ORIGINAL  "
                                               "current\n"));
  EXPECT_EQ(server_.service().calls("ListKeyRotations"), 1);
}

TEST_F(KmsctlTest, DescribeKeyWithoutMaterialShowsNoVersionsAndDoesNotAskForThem) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  canned.mutable_key_metadata()->set_key_state(v1::PENDING_IMPORT);
  canned.mutable_key_metadata()->set_origin(v1::EXTERNAL);
  canned.mutable_key_metadata()->clear_current_key_version_id();
  canned.mutable_key_metadata()->set_key_version_count(0);
  server_.service().AddResponse("DescribeKey", canned);

  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("key_version_count:      0\n"));
  EXPECT_THAT(outcome.out, ::testing::EndsWith("\nversions: -\n"));
  EXPECT_EQ(server_.service().calls("ListKeyRotations"), 0);
}

TEST_F(KmsctlTest, DescribeKeyJsonIsTheDescribeKeyResponseOnly) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  canned.mutable_key_metadata()->set_key_version_count(2);
  server_.service().AddResponse("DescribeKey", canned);

  CommandResult outcome = RunAgainstServer({"--json", "describe-key", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, StartsWith("{\"key_metadata\":{"));
  EXPECT_THAT(outcome.out, HasSubstr("\"key_version_count\":2"));
  EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr("versions")));
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 1);
  EXPECT_EQ(server_.service().calls("ListKeyRotations"), 0);
}

TEST_F(KmsctlTest, DescribeKeyPrintsTheMetadataEvenWhenTheVersionsFail) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("DescribeKey", canned);
  server_.service().SetError("ListKeyRotations",
                             {grpc::StatusCode::INTERNAL, "database is locked", ""});

  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.out, HasSubstr("key_id:                 " + std::string(kKeyId) + "\n"));
  EXPECT_THAT(outcome.out, HasSubstr("key_version_count:      1\n"));
  EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr("versions")));
  EXPECT_EQ(outcome.err, "kmsctl: KMSInternalException: database is locked\n");
}

TEST_F(KmsctlTest, JsonOutputIsOneObjectWithProtoFieldNames) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("DescribeKey", canned);

  // Global flags may also follow the command.
  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId, "--json"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, StartsWith("{\"key_metadata\":{"));
  EXPECT_THAT(outcome.out, HasSubstr("\"key_id\":\"" + std::string(kKeyId) + "\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"key_state\":\"ENABLED\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"creation_date\":\"2027-01-15T08:00:00Z\""));
  EXPECT_EQ(outcome.out.back(), '\n');
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 1);
}

TEST_F(KmsctlTest, JsonOutputOfAnEmptyResponseIsAnEmptyObject) {
  CommandResult outcome = RunAgainstServer({"--json", "disable-key", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "{}\n");
}

TEST_F(KmsctlTest, EndpointDefaultsToTheKmsdEndpointVariable) {
  CommandResult outcome = Run({"enable-key", kKeyId}, {"KMSD_ENDPOINT=" + server_.endpoint()});

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(server_.service().calls("EnableKey"), 1);
}

TEST_F(KmsctlTest, ListKeysAllFollowsTheMarkersIntoOneTable) {
  v1::ListKeysResponse first;
  first.add_keys()->set_key_id("key-1");
  first.mutable_keys(0)->set_key_arn("arn-1");
  first.set_truncated(true);
  first.set_next_marker("after-1");
  v1::ListKeysResponse second;
  second.add_keys()->set_key_id("key-2");
  second.mutable_keys(0)->set_key_arn("arn-2");
  server_.service().AddResponse("ListKeys", first);
  server_.service().AddResponse("ListKeys", second);

  CommandResult outcome = RunAgainstServer({"list-keys", "--all", "--limit", "1"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "KEY_ID  KEY_ARN\n"
            "key-1   arn-1\n"
            "key-2   arn-2\n");
  std::vector<v1::ListKeysRequest> requests =
      server_.service().requests<v1::ListKeysRequest>("ListKeys");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].limit(), 1);
  EXPECT_EQ(requests[0].marker(), "");
  EXPECT_EQ(requests[1].marker(), "after-1");
}

TEST_F(KmsctlTest, ListKeysWithoutAllShowsWhereToContinue) {
  v1::ListKeysResponse page;
  page.add_keys()->set_key_id("key-1");
  page.set_truncated(true);
  page.set_next_marker("after-1");
  server_.service().AddResponse("ListKeys", page);

  CommandResult outcome = RunAgainstServer({"list-keys"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("next_marker: after-1\n"));
  EXPECT_FALSE(server_.service().last_request<v1::ListKeysRequest>("ListKeys").has_limit());
}

TEST_F(KmsctlTest, CreateKeySendsDescriptionOriginAndTags) {
  v1::CreateKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("CreateKey", canned);

  CommandResult outcome =
      RunAgainstServer({"create-key", "--description", "payments", "--origin", "EXTERNAL", "--tag",
                        "team=pay=ments", "--tag", "env="});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("key_state:              ENABLED\n"));
  v1::CreateKeyRequest sent = server_.service().last_request<v1::CreateKeyRequest>("CreateKey");
  EXPECT_EQ(sent.description(), "payments");
  EXPECT_EQ(sent.origin(), v1::EXTERNAL);
  ASSERT_EQ(sent.tags_size(), 2);
  EXPECT_EQ(sent.tags(0).tag_key(), "env");
  EXPECT_EQ(sent.tags(0).tag_value(), "");
  EXPECT_EQ(sent.tags(1).tag_key(), "team");
  EXPECT_EQ(sent.tags(1).tag_value(), "pay=ments");
  EXPECT_FALSE(sent.enable_key_rotation());
  EXPECT_FALSE(sent.has_rotation_period_in_days());
}

TEST_F(KmsctlTest, CreateKeySendsRotationAndItsPeriod) {
  v1::CreateKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("CreateKey", canned);

  CommandResult outcome =
      RunAgainstServer({"create-key", "--enable-key-rotation", "--rotation-period-in-days", "90"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("key_version_count:      1\n"));
  v1::CreateKeyRequest sent = server_.service().last_request<v1::CreateKeyRequest>("CreateKey");
  EXPECT_TRUE(sent.enable_key_rotation());
  ASSERT_TRUE(sent.has_rotation_period_in_days());
  EXPECT_EQ(sent.rotation_period_in_days(), 90);
}

TEST_F(KmsctlTest, CreateKeyWithRotationLeavesThePeriodToKmsd) {
  CommandResult outcome = RunAgainstServer({"create-key", "--enable-key-rotation"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  v1::CreateKeyRequest sent = server_.service().last_request<v1::CreateKeyRequest>("CreateKey");
  EXPECT_TRUE(sent.enable_key_rotation());
  EXPECT_FALSE(sent.has_rotation_period_in_days());
}

// ------------------------------------------------------------ rotation

TEST_F(KmsctlTest, EnableKeyRotationSendsTheKeyAndPeriodAndPrintsNothing) {
  CommandResult outcome = RunAgainstServer(
      {"enable-key-rotation", "alias/payments", "--rotation-period-in-days", "30"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "");
  v1::EnableKeyRotationRequest sent =
      server_.service().last_request<v1::EnableKeyRotationRequest>("EnableKeyRotation");
  EXPECT_EQ(sent.key_id(), "alias/payments");
  ASSERT_TRUE(sent.has_rotation_period_in_days());
  EXPECT_EQ(sent.rotation_period_in_days(), 30);
}

TEST_F(KmsctlTest, EnableKeyRotationWithoutAPeriodLeavesItToKmsd) {
  CommandResult outcome = RunAgainstServer({"--json", "enable-key-rotation", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "{}\n");
  EXPECT_FALSE(server_.service()
                   .last_request<v1::EnableKeyRotationRequest>("EnableKeyRotation")
                   .has_rotation_period_in_days());
}

TEST_F(KmsctlTest, DisableKeyRotationSendsTheKey) {
  CommandResult outcome = RunAgainstServer({"disable-key-rotation", kKeyArn});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "");
  EXPECT_EQ(
      server_.service().last_request<v1::DisableKeyRotationRequest>("DisableKeyRotation").key_id(),
      kKeyArn);
  EXPECT_EQ(server_.service().total_calls(), 1);
}

TEST_F(KmsctlTest, GetKeyRotationStatusPrintsEveryField) {
  v1::GetKeyRotationStatusResponse canned;
  canned.set_key_id(kKeyArn);
  canned.set_key_rotation_enabled(true);
  canned.set_rotation_period_in_days(90);
  canned.mutable_next_rotation_date()->set_seconds(1807776000);  // 2027-04-15T08:00:00Z
  canned.mutable_on_demand_rotation_start_date()->set_seconds(1800000000);
  server_.service().AddResponse("GetKeyRotationStatus", canned);

  CommandResult outcome = RunAgainstServer({"get-key-rotation-status", "alias/payments"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "key_id:                        " + std::string(kKeyArn) +
                             "\n"
                             "key_rotation_enabled:          true\n"
                             "rotation_period_in_days:       90\n"
                             "next_rotation_date:            2027-04-15T08:00:00Z\n"
                             "on_demand_rotation_start_date: 2027-01-15T08:00:00Z\n");
  EXPECT_EQ(server_.service()
                .last_request<v1::GetKeyRotationStatusRequest>("GetKeyRotationStatus")
                .key_id(),
            "alias/payments");
}

TEST_F(KmsctlTest, GetKeyRotationStatusShowsUnsetDatesAsDashes) {
  v1::GetKeyRotationStatusResponse canned;
  canned.set_key_id(kKeyArn);
  canned.set_rotation_period_in_days(365);
  server_.service().AddResponse("GetKeyRotationStatus", canned);

  CommandResult outcome = RunAgainstServer({"get-key-rotation-status", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("key_rotation_enabled:          false\n"));
  EXPECT_THAT(outcome.out, HasSubstr("rotation_period_in_days:       365\n"));
  EXPECT_THAT(outcome.out, HasSubstr("next_rotation_date:            -\n"));
  EXPECT_THAT(outcome.out, HasSubstr("on_demand_rotation_start_date: -\n"));
}

TEST_F(KmsctlTest, GetKeyRotationStatusJsonUsesProtoFieldNames) {
  v1::GetKeyRotationStatusResponse canned;
  canned.set_key_id(kKeyArn);
  canned.set_key_rotation_enabled(true);
  canned.set_rotation_period_in_days(90);
  canned.mutable_next_rotation_date()->set_seconds(1807776000);
  server_.service().AddResponse("GetKeyRotationStatus", canned);

  CommandResult outcome = RunAgainstServer({"--json", "get-key-rotation-status", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("\"key_rotation_enabled\":true"));
  EXPECT_THAT(outcome.out, HasSubstr("\"rotation_period_in_days\":90"));
  EXPECT_THAT(outcome.out, HasSubstr("\"next_rotation_date\":\"2027-04-15T08:00:00Z\""));
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 1);
}

TEST_F(KmsctlTest, RotateKeyOnDemandPrintsTheNewVersion) {
  v1::RotateKeyOnDemandResponse canned;
  canned.set_key_id(kKeyArn);
  canned.set_key_version_id("version-0002");
  server_.service().AddResponse("RotateKeyOnDemand", canned);

  CommandResult outcome = RunAgainstServer({"rotate-key-on-demand", "alias/payments"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "key_id:         " + std::string(kKeyArn) +
                             "\n"
                             "key_version_id: version-0002\n");
  EXPECT_EQ(
      server_.service().last_request<v1::RotateKeyOnDemandRequest>("RotateKeyOnDemand").key_id(),
      "alias/payments");
}

TEST_F(KmsctlTest, RotateKeyOnDemandOverTheLimitExitsOne) {
  server_.service().SetError(
      "RotateKeyOnDemand", {grpc::StatusCode::RESOURCE_EXHAUSTED,
                            "key 'alias/payments' has had 25 on-demand rotations, the limit is 25",
                            "LimitExceededException"});

  CommandResult outcome = RunAgainstServer({"rotate-key-on-demand", "alias/payments"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err,
            "kmsctl: LimitExceededException: key 'alias/payments' has had 25 on-demand "
            "rotations, the limit is 25\n");
  EXPECT_EQ(outcome.out, "");
}

TEST_F(KmsctlTest, ListKeyRotationsPrintsATableAndWhereToContinue) {
  v1::ListKeyRotationsResponse page;
  *page.add_rotations() = Rotation("version-0002", 1800086400, v1::ON_DEMAND, false);
  *page.add_rotations() = Rotation("version-0003", 1831536000, v1::USAGE_LIMIT, true);
  page.set_truncated(true);
  page.set_next_marker("version-0003");
  server_.service().AddResponse("ListKeyRotations", page);

  CommandResult outcome = RunAgainstServer(
      {"list-key-rotations", "alias/payments", "--limit", "2", "--marker", "version-0001"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "KEY_VERSION_ID  ROTATION_DATE         ROTATION_TYPE  CURRENT\n"
            "version-0002    2027-01-16T08:00:00Z  ON_DEMAND      false\n"
            "version-0003    2028-01-15T08:00:00Z  USAGE_LIMIT    true\n"
            "next_marker: version-0003\n");
  v1::ListKeyRotationsRequest sent =
      server_.service().last_request<v1::ListKeyRotationsRequest>("ListKeyRotations");
  EXPECT_EQ(sent.key_id(), "alias/payments");
  EXPECT_EQ(sent.limit(), 2);
  EXPECT_EQ(sent.marker(), "version-0001");
  EXPECT_EQ(server_.service().total_calls(), 1);
}

TEST_F(KmsctlTest, ListKeyRotationsAllFollowsTheMarkers) {
  v1::ListKeyRotationsResponse first;
  *first.add_rotations() = Rotation("version-0002", 1800086400, v1::ON_DEMAND, false);
  first.set_truncated(true);
  first.set_next_marker("version-0002");
  v1::ListKeyRotationsResponse second;
  *second.add_rotations() = Rotation("version-0003", 1831536000, v1::AUTOMATIC, true);
  server_.service().AddResponse("ListKeyRotations", first);
  server_.service().AddResponse("ListKeyRotations", second);

  CommandResult outcome =
      RunAgainstServer({"--json", "list-key-rotations", kKeyId, "--all", "--limit", "1"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("\"key_version_id\":\"version-0002\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"key_version_id\":\"version-0003\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"rotation_type\":\"AUTOMATIC\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"truncated\":false"));
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 1);
  std::vector<v1::ListKeyRotationsRequest> requests =
      server_.service().requests<v1::ListKeyRotationsRequest>("ListKeyRotations");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].key_id(), kKeyId);
  EXPECT_EQ(requests[0].limit(), 1);
  EXPECT_EQ(requests[0].marker(), "");
  EXPECT_EQ(requests[1].key_id(), kKeyId);
  EXPECT_EQ(requests[1].limit(), 1);
  EXPECT_EQ(requests[1].marker(), "version-0002");
}

v1::GetRotationComplianceReportResponse ComplianceReport() {
  v1::GetRotationComplianceReportResponse report;
  report.set_max_age_in_days(90);
  v1::RotationComplianceEntry* overdue = report.add_keys();
  overdue->set_key_id("key-overdue");
  overdue->set_arn("arn-overdue");
  overdue->set_key_state(v1::ENABLED);
  overdue->set_key_rotation_enabled(true);
  overdue->set_rotation_period_in_days(365);
  overdue->mutable_last_rotation_date()->set_seconds(1800000000);
  overdue->mutable_next_rotation_date()->set_seconds(1831536000);
  overdue->set_status(v1::OVERDUE);
  v1::RotationComplianceEntry* off = report.add_keys();
  off->set_key_id("key-off");
  off->set_arn("arn-off");
  off->set_key_state(v1::DISABLED);
  off->mutable_last_rotation_date()->set_seconds(1800086400);
  off->set_status(v1::ROTATION_DISABLED);
  return report;
}

TEST_F(KmsctlTest, RotationComplianceReportPrintsATable) {
  server_.service().AddResponse("GetRotationComplianceReport", ComplianceReport());

  CommandResult outcome = RunAgainstServer(
      {"rotation-compliance-report", "--max-age-in-days", "90", "--include-compliant"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "max_age_in_days: 90\n"
            "KEY_ID       STATE     ROTATION  PERIOD_DAYS  LAST_ROTATION         "
            "NEXT_ROTATION         STATUS\n"
            "key-overdue  ENABLED   enabled   365          2027-01-15T08:00:00Z  "
            "2028-01-15T08:00:00Z  OVERDUE\n"
            "key-off      DISABLED  disabled  -            2027-01-16T08:00:00Z  "
            "-                     ROTATION_DISABLED\n");
  v1::GetRotationComplianceReportRequest sent =
      server_.service().last_request<v1::GetRotationComplianceReportRequest>(
          "GetRotationComplianceReport");
  ASSERT_TRUE(sent.has_max_age_in_days());
  EXPECT_EQ(sent.max_age_in_days(), 90);
  EXPECT_TRUE(sent.include_compliant());
}

TEST_F(KmsctlTest, RotationComplianceReportWithoutFlagsLeavesTheMaximumAgeToKmsd) {
  CommandResult outcome = RunAgainstServer({"rotation-compliance-report"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  v1::GetRotationComplianceReportRequest sent =
      server_.service().last_request<v1::GetRotationComplianceReportRequest>(
          "GetRotationComplianceReport");
  EXPECT_FALSE(sent.has_max_age_in_days());
  EXPECT_FALSE(sent.include_compliant());
}

TEST_F(KmsctlTest, RotationComplianceReportJsonIsTheWholeResponse) {
  server_.service().AddResponse("GetRotationComplianceReport", ComplianceReport());

  CommandResult outcome = RunAgainstServer({"--json", "rotation-compliance-report"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, StartsWith("{\"max_age_in_days\":90,\"keys\":[{"));
  EXPECT_THAT(outcome.out, HasSubstr("\"arn\":\"arn-overdue\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"status\":\"OVERDUE\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"status\":\"ROTATION_DISABLED\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"key_rotation_enabled\":false"));
  EXPECT_THAT(outcome.out, HasSubstr("\"last_rotation_date\":\"2027-01-16T08:00:00Z\""));
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 1);
}

// ------------------------------------------------------------ data plane

TEST_F(KmsctlTest, ContextPairsSplitAtTheFirstEquals) {
  v1::EncryptResponse canned;
  canned.set_ciphertext_blob("blob\x01\x02");
  server_.service().AddResponse("Encrypt", canned);

  CommandResult outcome = RunAgainstServer({"encrypt", "alias/x", "--plaintext", "hello",
                                            "--context", "query=a=b&c=d", "--context", "empty="});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, absl::Base64Escape("blob\x01\x02") + "\n");
  v1::EncryptRequest sent = server_.service().last_request<v1::EncryptRequest>("Encrypt");
  EXPECT_EQ(sent.key_id(), "alias/x");
  EXPECT_EQ(sent.plaintext(), "hello");
  EXPECT_EQ(sent.encryption_context().size(), 2u);
  EXPECT_EQ(sent.encryption_context().at("query"), "a=b&c=d");
  EXPECT_EQ(sent.encryption_context().at("empty"), "");
}

TEST_F(KmsctlTest, EncryptReadsAPlaintextFileAndWritesTheRawBlob) {
  v1::EncryptResponse canned;
  canned.set_ciphertext_blob(std::string("raw\0blob", 8));
  server_.service().AddResponse("Encrypt", canned);
  testing::WriteTestFile(Path("plain"), std::string("bin\0ary", 7));

  CommandResult outcome = RunAgainstServer(
      {"encrypt", kKeyId, "--plaintext-file", Path("plain"), "--output", Path("blob")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "");
  EXPECT_EQ(testing::ReadTestFile(Path("blob")), std::string("raw\0blob", 8));
  EXPECT_EQ(server_.service().last_request<v1::EncryptRequest>("Encrypt").plaintext(),
            std::string("bin\0ary", 7));
}

TEST_F(KmsctlTest, DecryptPrintsTheRawPlaintext) {
  v1::DecryptResponse canned;
  canned.set_plaintext(std::string("top\0secret", 10));
  canned.set_key_id(kKeyArn);
  server_.service().AddResponse("Decrypt", canned);

  CommandResult outcome =
      RunAgainstServer({"decrypt", "--ciphertext-base64", absl::Base64Escape("the blob"),
                        "--context", "a=b", "--key-id", "alias/x"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, std::string("top\0secret", 10));
  v1::DecryptRequest sent = server_.service().last_request<v1::DecryptRequest>("Decrypt");
  EXPECT_EQ(sent.ciphertext_blob(), "the blob");
  EXPECT_EQ(sent.key_id(), "alias/x");
  EXPECT_THAT(sent.encryption_context(), ElementsAre(Pair("a", "b")));
}

TEST_F(KmsctlTest, DecryptToAFileMakesItPrivateAndPrintsNothing) {
  v1::DecryptResponse canned;
  canned.set_plaintext("secret");
  server_.service().AddResponse("Decrypt", canned);
  testing::WriteTestFile(Path("blob"), "the blob");
  testing::WriteTestFile(Path("plain"), "old contents, world-readable");
  chmod(Path("plain").c_str(), 0644);

  CommandResult outcome =
      RunAgainstServer({"decrypt", "--ciphertext-file", Path("blob"), "--output", Path("plain")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "");
  EXPECT_EQ(testing::ReadTestFile(Path("plain")), "secret");
  EXPECT_EQ(FileMode(Path("plain")), 0600u);
  EXPECT_EQ(server_.service().last_request<v1::DecryptRequest>("Decrypt").ciphertext_blob(),
            "the blob");
}

TEST_F(KmsctlTest, DecryptToASymlinkWritesThroughItAndKeepsTheLink) {
  v1::DecryptResponse canned;
  canned.set_plaintext("secret");
  server_.service().AddResponse("Decrypt", canned);
  testing::WriteTestFile(Path("target"), "old");
  ASSERT_EQ(symlink(Path("target").c_str(), Path("link").c_str()), 0);

  CommandResult outcome =
      RunAgainstServer({"decrypt", "--ciphertext-base64", "AAAA", "--output", Path("link")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  struct stat st {};
  ASSERT_EQ(lstat(Path("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(testing::ReadTestFile(Path("target")), "secret");
  EXPECT_EQ(FileMode(Path("target")), 0600u);
}

TEST_F(KmsctlTest, ReEncryptSendsBothContextsAndPrintsTheNewBlob) {
  v1::ReEncryptResponse canned;
  canned.set_ciphertext_blob("new blob");
  server_.service().AddResponse("ReEncrypt", canned);

  CommandResult outcome = RunAgainstServer(
      {"re-encrypt", "--ciphertext-base64", absl::Base64Escape("old blob"), "--source-context",
       "v=1", "--destination-key-id", "alias/new", "--destination-context", "v=2"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, absl::Base64Escape("new blob") + "\n");
  v1::ReEncryptRequest sent = server_.service().last_request<v1::ReEncryptRequest>("ReEncrypt");
  EXPECT_EQ(sent.ciphertext_blob(), "old blob");
  EXPECT_EQ(sent.destination_key_id(), "alias/new");
  EXPECT_THAT(sent.source_encryption_context(), ElementsAre(Pair("v", "1")));
  EXPECT_THAT(sent.destination_encryption_context(), ElementsAre(Pair("v", "2")));
}

TEST_F(KmsctlTest, GenerateDataKeyPrintsTheKeyAndBlobInBase64) {
  v1::GenerateDataKeyResponse canned;
  canned.set_plaintext(std::string(16, '\x42'));
  canned.set_ciphertext_blob("wrapped");
  canned.set_key_id(kKeyArn);
  server_.service().AddResponse("GenerateDataKey", canned);

  CommandResult outcome = RunAgainstServer({"generate-data-key", kKeyId, "--key-spec", "AES_128"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("key_id:          " + std::string(kKeyArn) + "\n"));
  EXPECT_THAT(outcome.out,
              HasSubstr("plaintext:       " + absl::Base64Escape(std::string(16, '\x42'))));
  EXPECT_THAT(outcome.out, HasSubstr("ciphertext_blob: " + absl::Base64Escape("wrapped")));
  v1::GenerateDataKeyRequest sent =
      server_.service().last_request<v1::GenerateDataKeyRequest>("GenerateDataKey");
  EXPECT_EQ(sent.key_spec(), v1::AES_128);
  EXPECT_FALSE(sent.has_number_of_bytes());
}

TEST_F(KmsctlTest, GenerateDataKeyWritesRawFilesAndKeepsTheKeyOffStdout) {
  v1::GenerateDataKeyResponse canned;
  canned.set_plaintext(std::string(24, '\x42'));
  canned.set_ciphertext_blob("wrapped");
  canned.set_key_id(kKeyArn);
  server_.service().AddResponse("GenerateDataKey", canned);

  CommandResult outcome = RunAgainstServer({"--json", "generate-data-key", kKeyId,
                                            "--number-of-bytes", "24", "--plaintext-output",
                                            Path("key"), "--ciphertext-output", Path("key.blob")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(testing::ReadTestFile(Path("key")), std::string(24, '\x42'));
  EXPECT_EQ(FileMode(Path("key")), 0600u);
  EXPECT_EQ(testing::ReadTestFile(Path("key.blob")), "wrapped");
  EXPECT_THAT(outcome.out, HasSubstr("\"key_id\":\"" + std::string(kKeyArn) + "\""));
  EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr(absl::Base64Escape(std::string(24, '\x42')))));
  EXPECT_EQ(server_.service()
                .last_request<v1::GenerateDataKeyRequest>("GenerateDataKey")
                .number_of_bytes(),
            24);
}

TEST_F(KmsctlTest, GenerateRandomPrintsBase64) {
  v1::GenerateRandomResponse canned;
  canned.set_plaintext("\x01\x02\x03");
  server_.service().AddResponse("GenerateRandom", canned);

  CommandResult outcome = RunAgainstServer({"generate-random", "3"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "AQID\n");
  EXPECT_EQ(
      server_.service().last_request<v1::GenerateRandomRequest>("GenerateRandom").number_of_bytes(),
      3);
}

// ------------------------------------------------------------ envelope files

class KmsctlEnvelopeTest : public KmsctlTest {
 protected:
  void SetUp() override {
    KmsctlTest::SetUp();
    // The fake hands out one data key and unwraps any blob to it, which is
    // all a round trip through the envelope format needs.
    v1::GenerateDataKeyResponse data_key;
    data_key.set_plaintext(std::string(32, '\x07'));
    data_key.set_ciphertext_blob("wrapped data key");
    data_key.set_key_id(kKeyArn);
    server_.service().AddResponse("GenerateDataKey", data_key);
    v1::DecryptResponse unwrapped;
    unwrapped.set_plaintext(std::string(32, '\x07'));
    unwrapped.set_key_id(kKeyArn);
    server_.service().AddResponse("Decrypt", unwrapped);
  }
};

TEST_F(KmsctlEnvelopeTest, EncryptFileThenDecryptFileGivesTheInputBack) {
  std::string contents;
  for (int i = 0; i < 5000; ++i) contents += static_cast<char>(i * 7);
  testing::WriteTestFile(Path("in"), contents);

  CommandResult encrypted =
      RunAgainstServer({"encrypt-file", "alias/files", Path("in"), Path("env"), "--context",
                        "path=/a=b", "--chunk-size", "1024"});
  ASSERT_EQ(encrypted.exit_code, 0) << encrypted.err;
  EXPECT_THAT(encrypted.out, HasSubstr("key_arn:            " + std::string(kKeyArn)));

  CommandResult info = RunAgainstServer({"--json", "envelope-info", Path("env")});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(info.out, "{\"key_arn\":\"" + std::string(kKeyArn) +
                          "\",\"encryption_context\":{\"path\":\"/a=b\"},\"chunk_size\":1024}\n");

  CommandResult decrypted = RunAgainstServer({"decrypt-file", Path("env"), Path("out")});
  ASSERT_EQ(decrypted.exit_code, 0) << decrypted.err;
  EXPECT_EQ(testing::ReadTestFile(Path("out")), contents);

  v1::GenerateDataKeyRequest generate =
      server_.service().last_request<v1::GenerateDataKeyRequest>("GenerateDataKey");
  EXPECT_EQ(generate.key_id(), "alias/files");
  EXPECT_THAT(generate.encryption_context(), ElementsAre(Pair("path", "/a=b")));
  v1::DecryptRequest unwrap = server_.service().last_request<v1::DecryptRequest>("Decrypt");
  EXPECT_EQ(unwrap.ciphertext_blob(), "wrapped data key");
  EXPECT_THAT(unwrap.encryption_context(), ElementsAre(Pair("path", "/a=b")));
}

TEST_F(KmsctlEnvelopeTest, TamperedEnvelopeFileExitsFour) {
  testing::WriteTestFile(Path("in"), std::string(3000, 'x'));
  ASSERT_EQ(RunAgainstServer({"encrypt-file", kKeyId, Path("in"), Path("env")}).exit_code, 0);
  std::string envelope = testing::ReadTestFile(Path("env"));
  envelope.back() ^= 0x01;
  testing::WriteTestFile(Path("env"), envelope);

  CommandResult outcome = RunAgainstServer({"decrypt-file", Path("env"), Path("out")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: "));
  EXPECT_NE(access(Path("out").c_str(), F_OK), 0) << "no partial output";
}

TEST_F(KmsctlEnvelopeTest, DataKeyRefusedByKmsdExitsOne) {
  testing::WriteTestFile(Path("in"), "data");
  ASSERT_EQ(RunAgainstServer({"encrypt-file", kKeyId, Path("in"), Path("env")}).exit_code, 0);
  server_.service().SetError(
      "Decrypt", {grpc::StatusCode::FAILED_PRECONDITION, "key is disabled", "DisabledException"});

  CommandResult outcome = RunAgainstServer({"decrypt-file", Path("env"), Path("out")});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: DisabledException: key is disabled\n");
}

TEST_F(KmsctlEnvelopeTest, EnvelopeInfoOfAMissingFileExitsFour) {
  CommandResult outcome = RunAgainstServer({"envelope-info", Path("nope")});

  EXPECT_EQ(outcome.exit_code, 4);
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: "));
  EXPECT_EQ(server_.service().total_calls(), 0);
}

// ------------------------------------------------------------ key material import

// AES-256-ECB(zero key, zero block) begins DC95C0.
constexpr char kZeroKcv[] = "DC95C0";

class KmsctlImportTest : public KmsctlTest {
 protected:
  static void SetUpTestSuite() { wrapping_key_ = new ::kms::testing::TestWrappingKey(2048); }
  static void TearDownTestSuite() {
    delete wrapping_key_;
    wrapping_key_ = nullptr;
  }

  static v1::GetParametersForImportResponse Parameters() {
    v1::GetParametersForImportResponse p;
    p.set_key_id(kKeyArn);
    p.set_import_token("import-token-0001");
    p.set_public_key(wrapping_key_->PublicKeyDer());
    p.mutable_parameters_valid_to()->set_seconds(1800086400);  // 2027-01-16T08:00:00Z
    return p;
  }

  static v1::ImportKeyMaterialResponse Imported(const std::string& kcv) {
    v1::ImportKeyMaterialResponse r;
    r.set_key_id(kKeyArn);
    r.set_key_material_id("version-0001");
    r.set_key_check_value(kcv);
    return r;
  }

  // 32 distinct bytes; `seed` makes different materials.
  static std::string MaterialBytes(int seed) {
    std::string m(32, '\0');
    for (int i = 0; i < 32; ++i) m[i] = static_cast<char>(seed * 31 + i * 7 + 1);
    return m;
  }

  static std::string Kcv(const std::string& material) {
    return *client::KeyCheckValue(SecretBytes::CopyFrom(material));
  }

  // The material inside the last ImportKeyMaterial request.
  std::string ImportedMaterial(v1::AlgorithmSpec algorithm) {
    v1::ImportKeyMaterialRequest request =
        server_.service().last_request<v1::ImportKeyMaterialRequest>("ImportKeyMaterial");
    absl::StatusOr<SecretBytes> material =
        wrapping_key_->Unwrap(algorithm, request.encrypted_key_material());
    if (!material.ok()) {
      ADD_FAILURE() << material.status();
      return "";
    }
    return std::string(material->secret());
  }

  // Neither stdout nor stderr shows `material` in any usual encoding.
  static void ExpectNoKeyBytes(const CommandResult& outcome, const std::string& material) {
    for (const std::string& form :
         {absl::BytesToHexString(material), absl::AsciiStrToUpper(absl::BytesToHexString(material)),
          absl::Base64Escape(material), absl::WebSafeBase64Escape(material), material}) {
      EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr(form)));
      EXPECT_THAT(outcome.err, ::testing::Not(HasSubstr(form)));
    }
  }

  static ::kms::testing::TestWrappingKey* wrapping_key_;
};

::kms::testing::TestWrappingKey* KmsctlImportTest::wrapping_key_ = nullptr;

TEST_F(KmsctlImportTest, ImportsAMaterialFileWrappedForKmsdsKeyWithItsKcv) {
  const std::string material = MaterialBytes(1);
  testing::WriteTestFile(Path("material"), material);
  server_.service().AddResponse("GetParametersForImport", Parameters());
  server_.service().AddResponse("ImportKeyMaterial", Imported(Kcv(material)));

  CommandResult outcome =
      RunAgainstServer({"import-key-material", "alias/byok", "--material", Path("material")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  auto parameters =
      server_.service().last_request<v1::GetParametersForImportRequest>("GetParametersForImport");
  EXPECT_EQ(parameters.key_id(), "alias/byok");
  EXPECT_EQ(parameters.wrapping_algorithm(), v1::RSA_AES_KEY_WRAP_SHA_256);
  EXPECT_EQ(parameters.wrapping_key_spec(), v1::RSA_3072);
  auto request = server_.service().last_request<v1::ImportKeyMaterialRequest>("ImportKeyMaterial");
  EXPECT_EQ(request.key_id(), kKeyArn);  // the resolved key, not the alias
  EXPECT_EQ(request.import_token(), "import-token-0001");
  EXPECT_EQ(ImportedMaterial(v1::RSA_AES_KEY_WRAP_SHA_256), material);
  EXPECT_EQ(request.expected_key_check_value(), Kcv(material));
  EXPECT_EQ(request.expiration_model(), v1::KEY_MATERIAL_DOES_NOT_EXPIRE);
  EXPECT_FALSE(request.has_valid_to());
  EXPECT_EQ(request.import_type(), v1::EXISTING_KEY_MATERIAL);
  EXPECT_EQ(request.key_material_id(), "");
  EXPECT_FALSE(request.allow_duplicate_key_material());
  EXPECT_EQ(outcome.out, absl::StrCat("key_id:             ", kKeyArn,
                                      "\n"
                                      "key_material_id:    version-0001\n"
                                      "key_check_value:    ",
                                      Kcv(material),
                                      "\n"
                                      "wrapping_algorithm: RSA_AES_KEY_WRAP_SHA_256\n"
                                      "expiration_model:   KEY_MATERIAL_DOES_NOT_EXPIRE\n"
                                      "valid_to:           -\n"));
  ExpectNoKeyBytes(outcome, material);
}

TEST_F(KmsctlImportTest, ImportsTheXorOfComponentsAndPrintsEachKcv) {
  const std::vector<std::string> components = {MaterialBytes(1), MaterialBytes(2),
                                               MaterialBytes(3)};
  std::string combined(32, '\0');
  std::vector<std::string> args = {"import-key-material", kKeyId};
  for (size_t i = 0; i < components.size(); ++i) {
    testing::WriteTestFile(Path(absl::StrCat("c.", i + 1)), components[i]);
    for (int j = 0; j < 32; ++j) combined[j] ^= components[i][j];
    args.insert(args.end(), {"--component", Path(absl::StrCat("c.", i + 1))});
  }
  for (const std::string& c : components) {
    // Custodians may type their KCVs in lower case.
    args.insert(args.end(), {"--component-kcv", absl::AsciiStrToLower(Kcv(c))});
  }
  args.insert(args.end(), {"--expected-kcv", Kcv(combined)});
  server_.service().AddResponse("GetParametersForImport", Parameters());
  server_.service().AddResponse("ImportKeyMaterial", Imported(Kcv(combined)));

  CommandResult outcome = RunAgainstServer(args);

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(ImportedMaterial(v1::RSA_AES_KEY_WRAP_SHA_256), combined);
  EXPECT_EQ(server_.service()
                .last_request<v1::ImportKeyMaterialRequest>("ImportKeyMaterial")
                .expected_key_check_value(),
            Kcv(combined));
  for (size_t i = 0; i < components.size(); ++i) {
    EXPECT_THAT(outcome.out, HasSubstr(absl::StrCat(Path(absl::StrCat("c.", i + 1)), "  ",
                                                    Kcv(components[i]), "\n")));
    ExpectNoKeyBytes(outcome, components[i]);
  }
  EXPECT_THAT(outcome.out, HasSubstr("combined_kcv: " + Kcv(combined) + "\n"));
  EXPECT_THAT(outcome.out, HasSubstr("key_check_value:    " + Kcv(combined) + "\n"));
  ExpectNoKeyBytes(outcome, combined);
}

TEST_F(KmsctlImportTest, AutoFallsBackToTheNextAlgorithmOnlyWhenUnsupported) {
  const std::string material = MaterialBytes(4);
  testing::WriteTestFile(Path("material"), material);
  // An HSM without AES key wrap: kmsd refuses both RSA_AES_KEY_WRAP_*.
  v1::GetParametersForImportResponse parameters = Parameters();
  server_.service().SetHandler(
      "GetParametersForImport",
      [parameters](const google::protobuf::Message& request, google::protobuf::Message& response)
          -> std::optional<::kms::testing::CannedError> {
        auto algorithm =
            static_cast<const v1::GetParametersForImportRequest&>(request).wrapping_algorithm();
        if (algorithm == v1::RSA_AES_KEY_WRAP_SHA_256 || algorithm == v1::RSA_AES_KEY_WRAP_SHA_1) {
          return ::kms::testing::CannedError{
              grpc::StatusCode::FAILED_PRECONDITION,
              "the HSM supports RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256",
              "UnsupportedOperationException"};
        }
        response.CopyFrom(parameters);
        return std::nullopt;
      });
  server_.service().AddResponse("ImportKeyMaterial", Imported(Kcv(material)));

  CommandResult outcome = RunAgainstServer({"import-key-material", kKeyId, "--material",
                                            Path("material"), "--wrapping-key-spec", "RSA_2048"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  std::vector<v1::GetParametersForImportRequest> tries =
      server_.service().requests<v1::GetParametersForImportRequest>("GetParametersForImport");
  ASSERT_EQ(tries.size(), 2u);
  EXPECT_EQ(tries[0].wrapping_algorithm(), v1::RSA_AES_KEY_WRAP_SHA_256);
  EXPECT_EQ(tries[1].wrapping_algorithm(), v1::RSAES_OAEP_SHA_256);
  EXPECT_EQ(tries[1].wrapping_key_spec(), v1::RSA_2048);
  EXPECT_EQ(ImportedMaterial(v1::RSAES_OAEP_SHA_256), material);
  EXPECT_THAT(outcome.out, HasSubstr("wrapping_algorithm: RSAES_OAEP_SHA_256\n"));
}

TEST_F(KmsctlImportTest, AutoStopsAtAnyOtherError) {
  testing::WriteTestFile(Path("material"), MaterialBytes(5));
  server_.service().SetError("GetParametersForImport",
                             {grpc::StatusCode::FAILED_PRECONDITION,
                              "key origin is AWS_KMS, not EXTERNAL", "KMSInvalidStateException"});

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--material", Path("material")});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: KMSInvalidStateException: key origin is AWS_KMS, not EXTERNAL\n");
  EXPECT_EQ(server_.service().calls("GetParametersForImport"), 1);
  EXPECT_EQ(server_.service().calls("ImportKeyMaterial"), 0);
}

TEST_F(KmsctlImportTest, AChosenAlgorithmIsNotReplacedWhenUnsupported) {
  testing::WriteTestFile(Path("material"), MaterialBytes(5));
  server_.service().SetError(
      "GetParametersForImport",
      {grpc::StatusCode::FAILED_PRECONDITION, "not on this HSM", "UnsupportedOperationException"});

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--material", Path("material"),
                        "--wrapping-algorithm", "RSA_AES_KEY_WRAP_SHA_1"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: UnsupportedOperationException: not on this HSM\n");
  EXPECT_EQ(server_.service().calls("GetParametersForImport"), 1);
  EXPECT_EQ(server_.service()
                .last_request<v1::GetParametersForImportRequest>("GetParametersForImport")
                .wrapping_algorithm(),
            v1::RSA_AES_KEY_WRAP_SHA_1);
}

TEST_F(KmsctlImportTest, AllAlgorithmsUnsupportedTriesEachOnceInOrder) {
  testing::WriteTestFile(Path("material"), MaterialBytes(5));
  server_.service().SetError("GetParametersForImport",
                             {grpc::StatusCode::FAILED_PRECONDITION, "no unwrap mechanism",
                              "UnsupportedOperationException"});

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--material", Path("material")});

  EXPECT_EQ(outcome.exit_code, 1);
  std::vector<v1::GetParametersForImportRequest> tries =
      server_.service().requests<v1::GetParametersForImportRequest>("GetParametersForImport");
  ASSERT_EQ(tries.size(), 4u);
  EXPECT_EQ(tries[0].wrapping_algorithm(), v1::RSA_AES_KEY_WRAP_SHA_256);
  EXPECT_EQ(tries[1].wrapping_algorithm(), v1::RSAES_OAEP_SHA_256);
  EXPECT_EQ(tries[2].wrapping_algorithm(), v1::RSA_AES_KEY_WRAP_SHA_1);
  EXPECT_EQ(tries[3].wrapping_algorithm(), v1::RSAES_OAEP_SHA_1);
  EXPECT_EQ(server_.service().calls("ImportKeyMaterial"), 0);
}

TEST_F(KmsctlImportTest, ComponentKcvMismatchExitsFourBeforeAnyCall) {
  testing::WriteTestFile(Path("c.1"), MaterialBytes(1));
  testing::WriteTestFile(Path("c.2"), MaterialBytes(2));

  CommandResult outcome = RunAgainstServer(
      {"import-key-material", kKeyId, "--component", Path("c.1"), "--component", Path("c.2"),
       "--component-kcv", Kcv(MaterialBytes(1)), "--component-kcv", "ABCDEF"});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, HasSubstr("component 2 ('" + Path("c.2") + "') has key check value " +
                                     Kcv(MaterialBytes(2)) + ", expected ABCDEF"));
  // The custodians still see every KCV.
  EXPECT_THAT(outcome.out, HasSubstr(Kcv(MaterialBytes(1))));
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlImportTest, ExpectedKcvMismatchExitsFourBeforeAnyCall) {
  testing::WriteTestFile(Path("material"), std::string(32, '\0'));

  CommandResult outcome = RunAgainstServer(
      {"import-key-material", kKeyId, "--material", Path("material"), "--expected-kcv", "123456"});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err,
              HasSubstr(absl::StrCat("key check value ", kZeroKcv, ", expected 123456")));
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlImportTest, MaterialFileOfTheWrongSizeExitsFourBeforeAnyCall) {
  testing::WriteTestFile(Path("material"), absl::BytesToHexString(MaterialBytes(1)));  // 64 hex digits

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--material", Path("material")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, HasSubstr("must hold exactly 32 raw bytes"));
  EXPECT_THAT(outcome.err, HasSubstr("holds 64 bytes"));
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlImportTest, KmsdReportingAnotherKcvIsAnError) {
  testing::WriteTestFile(Path("material"), MaterialBytes(1));
  server_.service().AddResponse("GetParametersForImport", Parameters());
  server_.service().AddResponse("ImportKeyMaterial", Imported("000000"));

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--material", Path("material")});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.err, HasSubstr("kmsd reports key check value 000000"));
}

TEST_F(KmsctlImportTest, SendsExpiryTypeAndMaterialChoices) {
  testing::WriteTestFile(Path("material"), MaterialBytes(1));
  server_.service().AddResponse("GetParametersForImport", Parameters());
  server_.service().AddResponse("ImportKeyMaterial", Imported(Kcv(MaterialBytes(1))));

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--material", Path("material"), "--valid-to",
                        "2027-06-01T00:00:00Z", "--key-material-id", "version-0002",
                        "--allow-duplicate-material", "--wrapping-algorithm", "RSAES_OAEP_SHA_1"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  auto request = server_.service().last_request<v1::ImportKeyMaterialRequest>("ImportKeyMaterial");
  EXPECT_EQ(request.expiration_model(), v1::KEY_MATERIAL_EXPIRES);
  EXPECT_EQ(request.valid_to().seconds(), 1811808000);  // 2027-06-01T00:00:00Z
  EXPECT_EQ(request.key_material_id(), "version-0002");
  EXPECT_TRUE(request.allow_duplicate_key_material());
  EXPECT_EQ(ImportedMaterial(v1::RSAES_OAEP_SHA_1), MaterialBytes(1));
  EXPECT_THAT(outcome.out, HasSubstr("expiration_model:   KEY_MATERIAL_EXPIRES\n"));
  EXPECT_THAT(outcome.out, HasSubstr("valid_to:           2027-06-01T00:00:00Z\n"));
  EXPECT_THAT(outcome.out, HasSubstr("wrapping_algorithm: RSAES_OAEP_SHA_1\n"));
}

TEST_F(KmsctlImportTest, ValidForDaysCountsFromNowAndNewMaterialIsSent) {
  testing::WriteTestFile(Path("material"), MaterialBytes(1));
  server_.service().AddResponse("GetParametersForImport", Parameters());
  server_.service().AddResponse("ImportKeyMaterial", Imported(Kcv(MaterialBytes(1))));
  int64_t before = absl::ToUnixSeconds(absl::Now());

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--material", Path("material"),
                        "--valid-for-days", "30", "--new-material"});

  int64_t after = absl::ToUnixSeconds(absl::Now());
  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  auto request = server_.service().last_request<v1::ImportKeyMaterialRequest>("ImportKeyMaterial");
  EXPECT_EQ(request.expiration_model(), v1::KEY_MATERIAL_EXPIRES);
  EXPECT_GE(request.valid_to().seconds(), before + 30 * 86400);
  EXPECT_LE(request.valid_to().seconds(), after + 30 * 86400);
  EXPECT_EQ(request.import_type(), v1::NEW_KEY_MATERIAL);
}

TEST_F(KmsctlImportTest, PreWrappedMaterialIsSentAsItIs) {
  testing::WriteTestFile(Path("token"), "token bytes");
  testing::WriteTestFile(Path("wrapped"), std::string("\x00\x01wrapped\xff", 10));
  server_.service().AddResponse("ImportKeyMaterial", Imported("1A2B3C"));

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--import-token", Path("token"),
                        "--encrypted-key-material", Path("wrapped"), "--expected-kcv", "1a2b3c"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(server_.service().calls("GetParametersForImport"), 0);
  auto request = server_.service().last_request<v1::ImportKeyMaterialRequest>("ImportKeyMaterial");
  EXPECT_EQ(request.key_id(), kKeyId);
  EXPECT_EQ(request.import_token(), "token bytes");
  EXPECT_EQ(request.encrypted_key_material(), std::string("\x00\x01wrapped\xff", 10));
  EXPECT_EQ(request.expected_key_check_value(), "1A2B3C");
  EXPECT_THAT(outcome.out, HasSubstr("key_check_value:    1A2B3C\n"));
}

TEST_F(KmsctlImportTest, PreWrappedWithAMissingFileExitsFour) {
  testing::WriteTestFile(Path("token"), "token bytes");

  CommandResult outcome =
      RunAgainstServer({"import-key-material", kKeyId, "--import-token", Path("token"),
                        "--encrypted-key-material", Path("absent")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlImportTest, JsonPrintsTheImportResponse) {
  testing::WriteTestFile(Path("material"), MaterialBytes(1));
  server_.service().AddResponse("GetParametersForImport", Parameters());
  server_.service().AddResponse("ImportKeyMaterial", Imported(Kcv(MaterialBytes(1))));

  CommandResult outcome =
      RunAgainstServer({"--json", "import-key-material", kKeyId, "--material", Path("material")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, absl::StrCat("{\"key_id\":\"", kKeyArn,
                                      "\",\"key_material_id\":\"version-0001\","
                                      "\"key_check_value\":\"",
                                      Kcv(MaterialBytes(1)), "\"}\n"));
}

TEST_F(KmsctlImportTest, GetParametersForImportWritesTheKeyAndToken) {
  server_.service().AddResponse("GetParametersForImport", Parameters());

  CommandResult outcome =
      RunAgainstServer({"get-parameters-for-import", kKeyId, "--wrapping-algorithm",
                        "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_4096", "--public-key-out",
                        Path("public.der"), "--import-token-out", Path("token")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  auto request =
      server_.service().last_request<v1::GetParametersForImportRequest>("GetParametersForImport");
  EXPECT_EQ(request.key_id(), kKeyId);
  EXPECT_EQ(request.wrapping_algorithm(), v1::RSAES_OAEP_SHA_1);
  EXPECT_EQ(request.wrapping_key_spec(), v1::RSA_4096);
  EXPECT_EQ(testing::ReadTestFile(Path("public.der")), wrapping_key_->PublicKeyDer());
  EXPECT_EQ(testing::ReadTestFile(Path("token")), "import-token-0001");
  EXPECT_THAT(outcome.out, HasSubstr("public_key_file:     " + Path("public.der") + "\n"));
  EXPECT_THAT(outcome.out, HasSubstr("import_token_file:   " + Path("token") + "\n"));
  EXPECT_THAT(outcome.out, HasSubstr("parameters_valid_to: 2027-01-16T08:00:00Z\n"));
}

TEST_F(KmsctlImportTest, GetParametersForImportJsonIsTheResponse) {
  server_.service().AddResponse("GetParametersForImport", Parameters());

  CommandResult outcome =
      RunAgainstServer({"--json", "get-parameters-for-import", kKeyId, "--wrapping-algorithm",
                        "RSA_AES_KEY_WRAP_SHA_256", "--public-key-out", Path("public.der"),
                        "--import-token-out", Path("token")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out,
              HasSubstr("\"import_token\":\"" + absl::Base64Escape("import-token-0001") + "\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"parameters_valid_to\":\"2027-01-16T08:00:00Z\""));
  EXPECT_EQ(server_.service()
                .last_request<v1::GetParametersForImportRequest>("GetParametersForImport")
                .wrapping_key_spec(),
            v1::RSA_3072);
}

TEST_F(KmsctlImportTest, DeleteImportedKeyMaterialSendsTheKey) {
  CommandResult outcome = RunAgainstServer({"delete-imported-key-material", "alias/byok"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(server_.service()
                .last_request<v1::DeleteImportedKeyMaterialRequest>("DeleteImportedKeyMaterial")
                .key_id(),
            "alias/byok");
}

TEST_F(KmsctlImportTest, GenerateKeyMaterialWritesAPrivateFileAndPrintsOnlyItsKcv) {
  CommandResult outcome = RunAgainstServer({"generate-key-material", "--out", Path("key")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  std::string material = testing::ReadTestFile(Path("key"));
  ASSERT_EQ(material.size(), 32u);
  EXPECT_EQ(FileMode(Path("key")), 0600u);
  EXPECT_EQ(outcome.out, absl::StrCat("FILE", std::string(Path("key").size() - 2, ' '), "KCV\n",
                                      Path("key"), "  ", Kcv(material), "\n"));
  ExpectNoKeyBytes(outcome, material);
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlImportTest, GenerateKeyMaterialNeverOverwrites) {
  testing::WriteTestFile(Path("key"), "precious");

  CommandResult outcome = RunAgainstServer({"generate-key-material", "--out", Path("key")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, HasSubstr("exists"));
  EXPECT_EQ(testing::ReadTestFile(Path("key")), "precious");
}

TEST_F(KmsctlImportTest, GenerateKeyMaterialRefusesAComponentSetWithAnExistingFile) {
  testing::WriteTestFile(Path("part.2"), "precious");

  CommandResult outcome = RunAgainstServer(
      {"generate-key-material", "--components", "3", "--out-prefix", Path("part")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_EQ(testing::ReadTestFile(Path("part.2")), "precious");
  EXPECT_NE(access(Path("part.1").c_str(), F_OK), 0);  // nothing half-written
  EXPECT_NE(access(Path("part.3").c_str(), F_OK), 0);
}

TEST_F(KmsctlImportTest, GenerateKeyComponentsPrintsEachKcvAndTheCombined) {
  CommandResult outcome = RunAgainstServer(
      {"generate-key-material", "--components", "3", "--out-prefix", Path("part")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  std::string combined(32, '\0');
  for (int i = 1; i <= 3; ++i) {
    std::string path = Path(absl::StrCat("part.", i));
    std::string component = testing::ReadTestFile(path);
    ASSERT_EQ(component.size(), 32u);
    EXPECT_EQ(FileMode(path), 0600u);
    for (int j = 0; j < 32; ++j) combined[j] ^= component[j];
    EXPECT_THAT(outcome.out, HasSubstr(path + "  " + Kcv(component) + "\n"));
    ExpectNoKeyBytes(outcome, component);
  }
  EXPECT_THAT(outcome.out, ::testing::EndsWith("combined_kcv: " + Kcv(combined) + "\n"));
  ExpectNoKeyBytes(outcome, combined);
}

TEST_F(KmsctlImportTest, KeyCheckValueOfOneFile) {
  testing::WriteTestFile(Path("zero"), std::string(32, '\0'));

  CommandResult outcome = RunAgainstServer({"key-check-value", Path("zero")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, ::testing::EndsWith(Path("zero") + "  " + kZeroKcv + "\n"));
  EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr("combined")));
}

TEST_F(KmsctlImportTest, KeyCheckValueOfSeveralFilesAddsTheirXor) {
  testing::WriteTestFile(Path("a"), MaterialBytes(1));
  testing::WriteTestFile(Path("b"), MaterialBytes(1));  // a ^ b is zero

  CommandResult outcome = RunAgainstServer({"--json", "key-check-value", Path("a"), Path("b")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            absl::StrCat("{\"files\":[{\"file\":\"", Path("a"), "\",\"key_check_value\":\"",
                         Kcv(MaterialBytes(1)), "\"},{\"file\":\"", Path("b"),
                         "\",\"key_check_value\":\"", Kcv(MaterialBytes(1)),
                         "\"}],\"combined_key_check_value\":\"", kZeroKcv, "\"}\n"));
  ExpectNoKeyBytes(outcome, MaterialBytes(1));
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlImportTest, KeyCheckValueOfAShortFileExitsFour) {
  testing::WriteTestFile(Path("short"), "0123456789abcdef");

  CommandResult outcome = RunAgainstServer({"key-check-value", Path("short")});

  EXPECT_EQ(outcome.exit_code, 4);
  EXPECT_THAT(outcome.err, HasSubstr("holds 16 bytes"));
}

TEST_F(KmsctlImportTest, DescribeKeyShowsExpiryAndEachVersionsImportStateAndKcv) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  v1::KeyMetadata& m = *canned.mutable_key_metadata();
  m.set_origin(v1::EXTERNAL);
  m.set_current_key_version_id("version-0002");
  m.set_key_version_count(2);
  m.set_expiration_model(v1::KEY_MATERIAL_EXPIRES);
  m.mutable_valid_to()->set_seconds(1811808000);
  server_.service().AddResponse("DescribeKey", canned);
  v1::ListKeyRotationsResponse rotations;
  v1::RotationsListEntry r = Rotation("version-0002", 1800086400, v1::ON_DEMAND, true);
  r.set_import_state(v1::IMPORTED);
  r.set_key_check_value("1A2B3C");
  *rotations.add_rotations() = r;
  server_.service().AddResponse("ListKeyRotations", rotations);

  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("key_version_count:      2\n"
                                     "expiration_model:       KEY_MATERIAL_EXPIRES\n"
                                     "valid_to:               2027-06-01T00:00:00Z\n"));
  EXPECT_THAT(outcome.out,
              ::testing::EndsWith("versions:\n"
                                  "  -             2027-01-15T08:00:00Z  ORIGINAL   -         -\n"
                                  "  version-0002  2027-01-16T08:00:00Z  ON_DEMAND  IMPORTED  "
                                  "kcv=1A2B3C  current\n"));
}

TEST_F(KmsctlImportTest, DescribeKeyOfAGeneratedKeyShowsNoImportFields) {
  v1::DescribeKeyResponse canned;
  *canned.mutable_key_metadata() = Metadata();
  server_.service().AddResponse("DescribeKey", canned);

  CommandResult outcome = RunAgainstServer({"describe-key", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr("expiration_model")));
  EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr("valid_to")));
}

INSTANTIATE_TEST_SUITE_P(
    ImportArguments, KmsctlUsageTest,
    ::testing::Values(
        UsageCase{"ImportWithoutMaterial", {"import-key-material", "k"}, "give exactly one of"},
        UsageCase{
            "ImportMaterialAndComponents",
            {"import-key-material", "k", "--material", "m", "--component", "a", "--component", "b"},
            "give exactly one of"},
        UsageCase{"ImportMaterialAndPreWrapped",
                  {"import-key-material", "k", "--material", "m", "--import-token", "t",
                   "--encrypted-key-material", "e"},
                  "give exactly one of"},
        UsageCase{"ImportOneComponent",
                  {"import-key-material", "k", "--component", "a"},
                  "--component needs 2 to 16 component files, got 1"},
        UsageCase{"ImportTokenWithoutMaterial",
                  {"import-key-material", "k", "--import-token", "t"},
                  "--import-token and --encrypted-key-material go together"},
        UsageCase{"ImportComponentKcvWithoutComponents",
                  {"import-key-material", "k", "--material", "m", "--component-kcv", "ABCDEF"},
                  "--component-kcv needs --component"},
        UsageCase{"ImportComponentKcvCount",
                  {"import-key-material", "k", "--component", "a", "--component", "b",
                   "--component-kcv", "ABCDEF"},
                  "one --component-kcv per --component"},
        UsageCase{"ImportBadComponentKcv",
                  {"import-key-material", "k", "--component", "a", "--component", "b",
                   "--component-kcv", "ABCDEF", "--component-kcv", "XYZ123"},
                  "6 hex digits, got 'XYZ123'"},
        UsageCase{"ImportBadExpectedKcv",
                  {"import-key-material", "k", "--material", "m", "--expected-kcv", "ABCD"},
                  "--expected-kcv: a key check value is 6 hex digits"},
        UsageCase{"ImportBothExpiries",
                  {"import-key-material", "k", "--material", "m", "--valid-to",
                   "2027-01-01T00:00:00Z", "--valid-for-days", "3"},
                  "at most one of --valid-to and --valid-for-days"},
        UsageCase{"ImportBadValidTo",
                  {"import-key-material", "k", "--material", "m", "--valid-to", "next week"},
                  "--valid-to must be an RFC 3339 time"},
        UsageCase{"ImportValidForTooManyDays",
                  {"import-key-material", "k", "--material", "m", "--valid-for-days", "366"},
                  "--valid-for-days"},
        UsageCase{"ImportUnknownAlgorithm",
                  {"import-key-material", "k", "--material", "m", "--wrapping-algorithm",
                   "RSAES_PKCS1_V1_5"},
                  "--wrapping-algorithm"},
        UsageCase{"ImportPreWrappedWithAlgorithm",
                  {"import-key-material", "k", "--import-token", "t", "--encrypted-key-material",
                   "e", "--wrapping-algorithm", "RSAES_OAEP_SHA_1"},
                  "do not apply to pre-wrapped material"},
        UsageCase{"ImportMaterialIdWithNewMaterial",
                  {"import-key-material", "k", "--material", "m", "--new-material",
                   "--key-material-id", "v"},
                  "does not go with --new-material"},
        UsageCase{
            "GetParametersWithoutAlgorithm",
            {"get-parameters-for-import", "k", "--public-key-out", "p", "--import-token-out", "t"},
            "--wrapping-algorithm is required"},
        UsageCase{"GetParametersWithoutOutputs",
                  {"get-parameters-for-import", "k", "--wrapping-algorithm", "RSAES_OAEP_SHA_256"},
                  "is required"},
        UsageCase{"GenerateWithoutOutput", {"generate-key-material"}, "exactly one of --out"},
        UsageCase{"GenerateBothOutputs",
                  {"generate-key-material", "--out", "f", "--components", "2", "--out-prefix", "p"},
                  "exactly one of --out"},
        UsageCase{"GenerateComponentsWithoutPrefix",
                  {"generate-key-material", "--components", "2"},
                  "--components and --out-prefix go together"},
        UsageCase{"GenerateOneComponent",
                  {"generate-key-material", "--components", "1", "--out-prefix", "p"},
                  "--components"},
        UsageCase{"GenerateSeventeenComponents",
                  {"generate-key-material", "--components", "17", "--out-prefix", "p"},
                  "--components"},
        UsageCase{"KeyCheckValueWithoutFile", {"key-check-value"}, "FILE is required"},
        UsageCase{"DeleteImportedWithoutKey", {"delete-imported-key-material"}, "KEY is required"}),
    [](const ::testing::TestParamInfo<UsageCase>& info) { return info.param.name; });

// ------------------------------------------------------------ key policies

constexpr char kPolicy[] =
    "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [ {\"Sid\": \"caf\xc3\xa9\"} ]\n}";

TEST_F(KmsctlTest, CreateKeySendsThePolicyFileByteForByteAndTheBypassFlag) {
  testing::WriteTestFile(Path("policy.json"), kPolicy);

  CommandResult outcome = RunAgainstServer(
      {"create-key", "--policy-file", Path("policy.json"), "--bypass-policy-lockout-safety-check"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  v1::CreateKeyRequest sent = server_.service().last_request<v1::CreateKeyRequest>("CreateKey");
  EXPECT_EQ(sent.policy(), kPolicy);
  EXPECT_TRUE(sent.bypass_policy_lockout_safety_check());
}

TEST_F(KmsctlTest, CreateKeyWithoutAPolicyLeavesItToKmsdsDefault) {
  CommandResult outcome = RunAgainstServer({"create-key", "--policy", "{\"a\": 1}"});
  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  outcome = RunAgainstServer({"create-key"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  std::vector<v1::CreateKeyRequest> sent =
      server_.service().requests<v1::CreateKeyRequest>("CreateKey");
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].policy(), "{\"a\": 1}");
  EXPECT_FALSE(sent[0].bypass_policy_lockout_safety_check());
  EXPECT_EQ(sent[1].policy(), "");
}

TEST_F(KmsctlTest, CreateKeyWithAMissingPolicyFileExitsFourWithoutCallingKmsd) {
  CommandResult outcome = RunAgainstServer({"create-key", "--policy-file", Path("none.json")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: cannot open '"));
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlTest, PutKeyPolicySendsTheTextAsGivenAndPrintsNothing) {
  CommandResult outcome =
      RunAgainstServer({"put-key-policy", "--key-id", "alias/payments", "--policy", kPolicy});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "");
  v1::PutKeyPolicyRequest sent =
      server_.service().last_request<v1::PutKeyPolicyRequest>("PutKeyPolicy");
  EXPECT_EQ(sent.key_id(), "alias/payments");
  EXPECT_EQ(sent.policy(), kPolicy);
  EXPECT_FALSE(sent.bypass_policy_lockout_safety_check());
}

TEST_F(KmsctlTest, PutKeyPolicyReadsStdinAndSendsTheBypassFlag) {
  CommandResult outcome = testing::RunKmsctl(server_.endpoint(),
                                             {"put-key-policy", "--key-id", kKeyId, "--policy-file",
                                              "-", "--bypass-policy-lockout-safety-check"},
                                             std::string(kPolicy) + "\n");

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  v1::PutKeyPolicyRequest sent =
      server_.service().last_request<v1::PutKeyPolicyRequest>("PutKeyPolicy");
  EXPECT_EQ(sent.policy(), std::string(kPolicy) + "\n");
  EXPECT_TRUE(sent.bypass_policy_lockout_safety_check());
}

TEST_F(KmsctlTest, PutKeyPolicyRefusedByKmsdNamesTheException) {
  server_.service().SetError("PutKeyPolicy", {grpc::StatusCode::FAILED_PRECONDITION,
                                              "the policy would lock you out of the key",
                                              "MalformedPolicyDocumentException"});

  CommandResult outcome =
      RunAgainstServer({"put-key-policy", "--key-id", kKeyId, "--policy", "{}"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err,
            "kmsctl: MalformedPolicyDocumentException: the policy would lock you out of the key\n");
}

TEST_F(KmsctlTest, GetKeyPolicyPrintsTheDocumentByteForByteAndANewline) {
  v1::GetKeyPolicyResponse canned;
  canned.set_policy(kPolicy);
  canned.set_policy_name("default");
  server_.service().AddResponse("GetKeyPolicy", canned);

  CommandResult outcome = RunAgainstServer({"get-key-policy", "--key-id", "alias/payments"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, std::string(kPolicy) + "\n");
  EXPECT_EQ(server_.service().last_request<v1::GetKeyPolicyRequest>("GetKeyPolicy").key_id(),
            "alias/payments");
}

TEST_F(KmsctlTest, GetKeyPolicyJsonIsTheResponse) {
  v1::GetKeyPolicyResponse canned;
  canned.set_policy("{\"a\":1}");
  canned.set_policy_name("default");
  server_.service().AddResponse("GetKeyPolicy", canned);

  CommandResult outcome = RunAgainstServer({"--json", "get-key-policy", "--key-id", kKeyId});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "{\"policy\":\"{\\\"a\\\":1}\",\"policy_name\":\"default\"}\n");
}

// ------------------------------------------------------------ grants

TEST_F(KmsctlTest, CreateGrantSendsEverythingAndPrintsTheIdAndToken) {
  v1::CreateGrantResponse canned;
  canned.set_grant_id("grant-1");
  canned.set_grant_token("token-1");
  server_.service().AddResponse("CreateGrant", canned);

  CommandResult outcome = RunAgainstServer(
      {"create-grant", "--key-id", kKeyId, "--grantee-principal", "svc:payments", "--operations",
       "Decrypt,GenerateDataKey,ReEncryptFrom,Decrypt", "--operations", "DescribeKey",
       "--retiring-principal", "ops", "--name", "payments-batch", "--encryption-context-equals",
       "app=pay=ments", "--encryption-context-equals", "env=prod"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "grant_id:    grant-1\n"
            "grant_token: token-1\n");
  v1::CreateGrantRequest sent =
      server_.service().last_request<v1::CreateGrantRequest>("CreateGrant");
  EXPECT_EQ(sent.key_id(), kKeyId);
  EXPECT_EQ(sent.grantee_principal(), "svc:payments");
  EXPECT_THAT(sent.operations(), ElementsAre(v1::DECRYPT, v1::GENERATE_DATA_KEY,
                                             v1::RE_ENCRYPT_FROM, v1::DESCRIBE_KEY));
  EXPECT_EQ(sent.retiring_principal(), "ops");
  EXPECT_EQ(sent.name(), "payments-batch");
  EXPECT_THAT(sent.constraints().encryption_context_equals(),
              ::testing::UnorderedElementsAre(Pair("app", "pay=ments"), Pair("env", "prod")));
  EXPECT_TRUE(sent.constraints().encryption_context_subset().empty());
}

TEST_F(KmsctlTest, CreateGrantTakesEveryAwsOperationNameAndASubsetConstraint) {
  CommandResult outcome = RunAgainstServer(
      {"create-grant", "--key-id", kKeyId, "--grantee-principal", "p", "--operations",
       "Decrypt,Encrypt,GenerateDataKey,GenerateDataKeyWithoutPlaintext,ReEncryptFrom,"
       "ReEncryptTo,CreateGrant,RetireGrant,DescribeKey",
       "--encryption-context-subset", "tenant=42"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  v1::CreateGrantRequest sent =
      server_.service().last_request<v1::CreateGrantRequest>("CreateGrant");
  EXPECT_THAT(sent.operations(),
              ElementsAre(v1::DECRYPT, v1::ENCRYPT, v1::GENERATE_DATA_KEY,
                          v1::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT, v1::RE_ENCRYPT_FROM,
                          v1::RE_ENCRYPT_TO, v1::CREATE_GRANT, v1::RETIRE_GRANT, v1::DESCRIBE_KEY));
  EXPECT_THAT(sent.constraints().encryption_context_subset(), ElementsAre(Pair("tenant", "42")));
  EXPECT_FALSE(sent.has_constraints() && !sent.constraints().encryption_context_equals().empty());
}

TEST_F(KmsctlTest, CreateGrantJsonIsTheResponse) {
  v1::CreateGrantResponse canned;
  canned.set_grant_id("grant-1");
  canned.set_grant_token("token-1");
  server_.service().AddResponse("CreateGrant", canned);

  CommandResult outcome = RunAgainstServer({"--json", "create-grant", "--key-id", kKeyId,
                                            "--grantee-principal", "p", "--operations", "Encrypt"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "{\"grant_token\":\"token-1\",\"grant_id\":\"grant-1\"}\n");
}

v1::GrantListEntry Grant(const std::string& id, const std::string& grantee) {
  v1::GrantListEntry grant;
  grant.set_key_id(kKeyArn);
  grant.set_grant_id(id);
  grant.set_grantee_principal(grantee);
  grant.set_issuing_principal("admin");
  grant.mutable_creation_date()->set_seconds(1800000000);
  return grant;
}

TEST_F(KmsctlTest, ListGrantsFollowsEveryPageIntoOneTable) {
  v1::ListGrantsResponse first;
  v1::GrantListEntry one = Grant("grant-1", "svc-a");
  one.set_name("batch");
  one.add_operations(v1::DECRYPT);
  one.add_operations(v1::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT);
  (*one.mutable_constraints()->mutable_encryption_context_equals())["env"] = "prod";
  (*one.mutable_constraints()->mutable_encryption_context_equals())["app"] = "pay";
  *first.add_grants() = one;
  first.set_truncated(true);
  first.set_next_marker("after-1");
  v1::ListGrantsResponse second;
  v1::GrantListEntry two = Grant("grant-2", "svc-a");
  two.set_retiring_principal("ops");
  two.add_operations(v1::RE_ENCRYPT_TO);
  *second.add_grants() = two;
  server_.service().AddResponse("ListGrants", first);
  server_.service().AddResponse("ListGrants", second);

  CommandResult outcome = RunAgainstServer(
      {"list-grants", "--key-id", "alias/payments", "--grantee-principal", "svc-a"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "GRANT_ID  NAME   GRANTEE_PRINCIPAL  OPERATIONS                               "
            "CONSTRAINTS              RETIRING_PRINCIPAL  ISSUING_PRINCIPAL  CREATION_DATE\n"
            "grant-1   batch  svc-a              Decrypt,GenerateDataKeyWithoutPlaintext  "
            "equals:app=pay,env=prod  -                   admin              "
            "2027-01-15T08:00:00Z\n"
            "grant-2   -      svc-a              ReEncryptTo                              "
            "-                        ops                 admin              "
            "2027-01-15T08:00:00Z\n");
  std::vector<v1::ListGrantsRequest> sent =
      server_.service().requests<v1::ListGrantsRequest>("ListGrants");
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].key_id(), "alias/payments");
  EXPECT_EQ(sent[0].grantee_principal(), "svc-a");
  EXPECT_EQ(sent[0].marker(), "");
  EXPECT_EQ(sent[1].marker(), "after-1");
  EXPECT_EQ(sent[1].grantee_principal(), "svc-a");
}

TEST_F(KmsctlTest, ListGrantsJsonIsEveryPageMergedAndSendsTheGrantId) {
  v1::ListGrantsResponse first;
  *first.add_grants() = Grant("grant-1", "svc-a");
  first.set_truncated(true);
  first.set_next_marker("after-1");
  v1::ListGrantsResponse second;
  *second.add_grants() = Grant("grant-2", "svc-b");
  server_.service().AddResponse("ListGrants", first);
  server_.service().AddResponse("ListGrants", second);

  CommandResult outcome =
      RunAgainstServer({"--json", "list-grants", "--key-id", kKeyId, "--grant-id", "grant-1"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("\"grant_id\":\"grant-1\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"grant_id\":\"grant-2\""));
  EXPECT_THAT(outcome.out, HasSubstr("\"truncated\":false"));
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 1);
  EXPECT_EQ(server_.service().last_request<v1::ListGrantsRequest>("ListGrants").grant_id(),
            "grant-1");
}

TEST_F(KmsctlTest, RetireGrantByTokenSendsOnlyTheToken) {
  CommandResult outcome = RunAgainstServer({"retire-grant", "--grant-token", "token-1"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "");
  v1::RetireGrantRequest sent =
      server_.service().last_request<v1::RetireGrantRequest>("RetireGrant");
  EXPECT_EQ(sent.grant_token(), "token-1");
  EXPECT_EQ(sent.key_id(), "");
  EXPECT_EQ(sent.grant_id(), "");
}

TEST_F(KmsctlTest, RetireGrantByKeyAndGrantId) {
  CommandResult outcome =
      RunAgainstServer({"retire-grant", "--key-id", kKeyId, "--grant-id", "grant-1"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  v1::RetireGrantRequest sent =
      server_.service().last_request<v1::RetireGrantRequest>("RetireGrant");
  EXPECT_EQ(sent.grant_token(), "");
  EXPECT_EQ(sent.key_id(), kKeyId);
  EXPECT_EQ(sent.grant_id(), "grant-1");
}

TEST_F(KmsctlTest, RevokeGrantOfAnUnknownGrantExitsOne) {
  server_.service().SetError("RevokeGrant", {grpc::StatusCode::NOT_FOUND,
                                             "grant 'grant-9' not found", "NotFoundException"});

  CommandResult outcome =
      RunAgainstServer({"revoke-grant", "--key-id", kKeyId, "--grant-id", "grant-9"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: NotFoundException: grant 'grant-9' not found\n");
  v1::RevokeGrantRequest sent =
      server_.service().last_request<v1::RevokeGrantRequest>("RevokeGrant");
  EXPECT_EQ(sent.key_id(), kKeyId);
  EXPECT_EQ(sent.grant_id(), "grant-9");
}

// ------------------------------------------------------------ audit

v1::AuditRecord Call(uint64_t sequence, const std::string& request_id, const std::string& principal,
                     const std::string& operation, v1::AuditOutcome outcome) {
  v1::AuditRecord r;
  r.set_sequence(sequence);
  r.mutable_time()->set_seconds(1800000000 + static_cast<int64_t>(sequence));
  r.set_type(v1::RPC);
  r.set_request_id(request_id);
  r.set_principal(principal);
  r.set_operation(operation);
  r.set_key_id(kKeyId);
  r.set_outcome(outcome);
  r.set_line(absl::StrCat("{\"seq\":", sequence, ", \"principal\":\"", principal, "\"}"));
  return r;
}

v1::AuditRecord HsmCall(uint64_t sequence, const std::string& request_id,
                        const std::string& function) {
  v1::AuditRecord r;
  r.set_sequence(sequence);
  r.mutable_time()->set_seconds(1800000000 + static_cast<int64_t>(sequence));
  r.set_type(v1::HSM_CALL);
  r.set_request_id(request_id);
  r.set_principal("alice");
  r.set_hsm_function(function);
  r.set_hsm_object_id("version-0001");
  r.set_hsm_result("CKR_OK");
  r.set_line(absl::StrCat("{\"seq\":", sequence, "}"));
  return r;
}

TEST_F(KmsctlTest, AuditQuerySendsEveryFilter) {
  CommandResult outcome = RunAgainstServer({"audit", "query", "--key-id", kKeyArn, "--principal",
                                            "alice", "--operation", "Decrypt", "--outcome",
                                            "denied", "--since", "2027-01-15T08:00:00Z", "--until",
                                            "2027-01-16T09:30:00.5+01:00", "--include-hsm-calls"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "SEQ  TIME  PRINCIPAL  OPERATION  KEY  OUTCOME  ERROR_TYPE\n");
  v1::QueryAuditLogRequest sent =
      server_.audit_service().last_request<v1::QueryAuditLogRequest>("QueryAuditLog");
  EXPECT_EQ(sent.key_id(), kKeyArn);
  EXPECT_EQ(sent.principal(), "alice");
  EXPECT_EQ(sent.operation(), "Decrypt");
  EXPECT_EQ(sent.outcome(), v1::DENIED);
  EXPECT_EQ(sent.start_time().seconds(), 1800000000);
  EXPECT_EQ(sent.end_time().seconds(), 1800000000 + 86400 + 1800);
  EXPECT_EQ(sent.end_time().nanos(), 500000000);
  EXPECT_TRUE(sent.include_hsm_calls());
  EXPECT_EQ(sent.after_sequence(), 0u);
  EXPECT_FALSE(sent.has_limit());
  EXPECT_EQ(server_.service().total_calls(), 0);
}

TEST_F(KmsctlTest, AuditQueryTableIndentsHsmCallsUnderTheirCall) {
  v1::QueryAuditLogResponse canned;
  // The HSM calls are logged before the call that made them ends.
  *canned.add_records() = HsmCall(10, "req-1", "C_Decrypt");
  *canned.add_records() = Call(11, "req-1", "alice", "Decrypt", v1::SUCCESS);
  v1::AuditRecord denied = Call(12, "req-2", "bob", "GenerateDataKey", v1::DENIED);
  denied.set_error_type("AccessDeniedException");
  *canned.add_records() = denied;
  *canned.add_records() = HsmCall(13, "", "C_DestroyObject");
  server_.audit_service().AddResponse("QueryAuditLog", canned);

  CommandResult outcome = RunAgainstServer({"audit", "query", "--include-hsm-calls"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(
      outcome.out,
      "SEQ  TIME                  PRINCIPAL  OPERATION          KEY                           "
      "        OUTCOME  ERROR_TYPE\n"
      "11   2027-01-15T08:00:11Z  alice      Decrypt            " +
          std::string(kKeyId) +
          "  SUCCESS  -\n"
          // Under its call, whatever its place in the sequence.
          "10   2027-01-15T08:00:10Z               C_Decrypt        version-0001          "
          "                CKR_OK\n"
          "12   2027-01-15T08:00:12Z  bob        GenerateDataKey    " +
          std::string(kKeyId) +
          "  DENIED   AccessDeniedException\n"
          // Of no listed call: in place, with its principal.
          "13   2027-01-15T08:00:13Z  alice        C_DestroyObject  version-0001          "
          "                CKR_OK\n");
}

TEST_F(KmsctlTest, AuditQueryFollowsPagesUntilTheLimit) {
  v1::QueryAuditLogResponse first;
  *first.add_records() = Call(1, "r1", "alice", "Encrypt", v1::SUCCESS);
  *first.add_records() = Call(2, "r2", "alice", "Encrypt", v1::SUCCESS);
  first.set_truncated(true);
  first.set_next_sequence(2);
  v1::QueryAuditLogResponse second;
  *second.add_records() = Call(3, "r3", "alice", "Encrypt", v1::SUCCESS);
  *second.add_records() = Call(4, "r4", "alice", "Encrypt", v1::SUCCESS);
  second.set_truncated(true);
  second.set_next_sequence(4);
  server_.audit_service().AddResponse("QueryAuditLog", first);
  server_.audit_service().AddResponse("QueryAuditLog", second);

  CommandResult outcome = RunAgainstServer({"audit", "query", "--limit", "3", "--output", "jsonl"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "{\"seq\":1, \"principal\":\"alice\"}\n"
            "{\"seq\":2, \"principal\":\"alice\"}\n"
            "{\"seq\":3, \"principal\":\"alice\"}\n");
  std::vector<v1::QueryAuditLogRequest> sent =
      server_.audit_service().requests<v1::QueryAuditLogRequest>("QueryAuditLog");
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].limit(), 3);
  EXPECT_EQ(sent[0].after_sequence(), 0u);
  EXPECT_EQ(sent[1].limit(), 1);
  EXPECT_EQ(sent[1].after_sequence(), 2u);
}

TEST_F(KmsctlTest, AuditQueryWithoutALimitFollowsEveryPage) {
  v1::QueryAuditLogResponse first;
  *first.add_records() = Call(1, "r1", "alice", "Encrypt", v1::SUCCESS);
  first.set_truncated(true);
  first.set_next_sequence(1);
  v1::QueryAuditLogResponse last;
  *last.add_records() = Call(2, "r2", "alice", "Encrypt", v1::SUCCESS);
  server_.audit_service().AddResponse("QueryAuditLog", first);
  server_.audit_service().AddResponse("QueryAuditLog", last);

  CommandResult outcome = RunAgainstServer({"--json", "audit", "query"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "{\"seq\":1, \"principal\":\"alice\"}\n"
            "{\"seq\":2, \"principal\":\"alice\"}\n");
  EXPECT_EQ(server_.audit_service().calls("QueryAuditLog"), 2);
}

TEST_F(KmsctlTest, AuditQueryPageThatDoesNotAdvanceIsAnError) {
  v1::QueryAuditLogResponse stuck;
  *stuck.add_records() = Call(1, "r1", "alice", "Encrypt", v1::SUCCESS);
  stuck.set_truncated(true);
  stuck.set_next_sequence(1);
  server_.audit_service().AddResponse("QueryAuditLog", stuck);  // repeats

  CommandResult outcome = RunAgainstServer({"audit", "query", "--output", "jsonl"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.err, HasSubstr("without a new next_sequence"));
  EXPECT_EQ(server_.audit_service().calls("QueryAuditLog"), 2);
}

TEST_F(KmsctlTest, AuditQueryCsvQuotesCommasQuotesAndNewlines) {
  v1::QueryAuditLogResponse canned;
  v1::AuditRecord r = Call(5, "req-5", "CN=Doe, Jane \"JD\",O=Acme", "Decrypt", v1::FAILED);
  r.set_peer("ipv4:10.0.0.7:5512");
  r.set_key_version_id("version-0001");
  r.set_error_type("InvalidCiphertextException");
  (*r.mutable_encryption_context())["app"] = "h1";
  *canned.add_records() = r;
  v1::AuditRecord event;
  event.set_sequence(6);
  event.set_type(v1::EVENT);
  event.set_message("kmsd started\nversion 1.2");
  *canned.add_records() = event;
  server_.audit_service().AddResponse("QueryAuditLog", canned);

  CommandResult outcome = RunAgainstServer({"audit", "query", "--output", "csv"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "sequence,time,type,request_id,principal,peer,operation,key_id,key_version_id,"
            "encryption_context,outcome,error_type,hsm_function,hsm_object_id,hsm_result,"
            "message\r\n"
            "5,2027-01-15T08:00:05Z,RPC,req-5,\"CN=Doe, Jane \"\"JD\"\",O=Acme\","
            "ipv4:10.0.0.7:5512,Decrypt," +
                std::string(kKeyId) +
                ",version-0001,\"{\"\"app\"\":\"\"h1\"\"}\",FAILED,InvalidCiphertextException,,,,"
                "\r\n"
                "6,,EVENT,,,,,,,,,,,,,\"kmsd started\nversion 1.2\"\r\n");
}

TEST_F(KmsctlTest, AuditQueryCsvOfNothingIsTheHeader) {
  CommandResult outcome = RunAgainstServer({"audit", "query", "--output", "csv"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, StartsWith("sequence,time,type,"));
  EXPECT_EQ(std::count(outcome.out.begin(), outcome.out.end(), '\n'), 1);
}

TEST_F(KmsctlTest, AuditQueryByANonAuditorExitsOneNamingTheException) {
  server_.audit_service().SetError(
      "QueryAuditLog",
      {grpc::StatusCode::PERMISSION_DENIED, "'bob' is not an auditor", "AccessDeniedException"});

  CommandResult outcome = RunAgainstServer({"audit", "query"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.err, "kmsctl: AccessDeniedException: 'bob' is not an auditor\n");
  EXPECT_EQ(outcome.out, "");
}

TEST_F(KmsctlTest, AuditExportWritesEveryLineExactlyAndReportsCountAndLastSequence) {
  v1::ExportAuditLogResponse first;
  first.add_lines("{\"seq\":6,\"b\":\"caf\xc3\xa9\"}");
  first.add_lines("{\"seq\":7,  \"x\":1}");
  first.set_truncated(true);
  first.set_next_sequence(7);
  v1::ExportAuditLogResponse last;
  last.add_lines("{\"seq\": 8}");
  server_.audit_service().AddResponse("ExportAuditLog", first);
  server_.audit_service().AddResponse("ExportAuditLog", last);

  CommandResult outcome =
      RunAgainstServer({"audit", "export", "--out", Path("audit.jsonl"), "--after-sequence", "5"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(testing::ReadTestFile(Path("audit.jsonl")),
            "{\"seq\":6,\"b\":\"caf\xc3\xa9\"}\n"
            "{\"seq\":7,  \"x\":1}\n"
            "{\"seq\": 8}\n");
  EXPECT_EQ(outcome.out, "file:          " + Path("audit.jsonl") +
                             "\n"
                             "records:       3\n"
                             "last_sequence: 8\n");
  std::vector<v1::ExportAuditLogRequest> sent =
      server_.audit_service().requests<v1::ExportAuditLogRequest>("ExportAuditLog");
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].after_sequence(), 5u);
  EXPECT_EQ(sent[1].after_sequence(), 7u);
}

TEST_F(KmsctlTest, AuditExportJsonReportsTheSameAndAnEmptyLogIsAnEmptyFile) {
  CommandResult outcome =
      RunAgainstServer({"--json", "audit", "export", "--out", Path("empty.jsonl")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(testing::ReadTestFile(Path("empty.jsonl")), "");
  EXPECT_EQ(outcome.out,
            "{\"file\":\"" + Path("empty.jsonl") + "\",\"records\":0,\"last_sequence\":null}\n");
}

TEST_F(KmsctlTest, AuditExportRefusesAnExistingFileBeforeCallingKmsd) {
  testing::WriteTestFile(Path("audit.jsonl"), "keep me\n");

  CommandResult outcome = RunAgainstServer({"audit", "export", "--out", Path("audit.jsonl")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, HasSubstr("exists; it is never overwritten"));
  EXPECT_EQ(testing::ReadTestFile(Path("audit.jsonl")), "keep me\n");
  EXPECT_EQ(server_.audit_service().total_calls(), 0);
}

TEST_F(KmsctlTest, AuditExportRefusesASymlinkEvenToANewName) {
  ASSERT_EQ(symlink(Path("target").c_str(), Path("link").c_str()), 0);

  CommandResult outcome = RunAgainstServer({"audit", "export", "--out", Path("link")});

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_EQ(access(Path("target").c_str(), F_OK), -1);
  EXPECT_EQ(server_.audit_service().total_calls(), 0);
}

TEST_F(KmsctlTest, AuditExportThatFailsHalfwayLeavesNoFile) {
  v1::ExportAuditLogResponse first;
  first.add_lines("{\"seq\":1}");
  first.set_truncated(true);
  first.set_next_sequence(1);
  int calls = 0;
  server_.audit_service().SetHandler(
      "ExportAuditLog",
      [&calls, first](const google::protobuf::Message&,
                      google::protobuf::Message& response) -> std::optional<testing::CannedError> {
        if (++calls == 1) {
          response.CopyFrom(first);
          return std::nullopt;
        }
        return testing::CannedError{grpc::StatusCode::UNAVAILABLE, "audit log busy",
                                    "DependencyTimeoutException"};
      });

  CommandResult outcome = RunAgainstServer({"audit", "export", "--out", Path("audit.jsonl")});

  EXPECT_EQ(outcome.exit_code, 1) << outcome.err;
  EXPECT_EQ(outcome.err, "kmsctl: DependencyTimeoutException: audit log busy\n");
  EXPECT_EQ(access(Path("audit.jsonl").c_str(), F_OK), -1);
}

TEST_F(KmsctlTest, AuditPublicKeyWritesThePemAndPrintsTheFingerprint) {
  const std::string pem =
      "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC "
      "KEY-----\n";
  v1::GetAuditPublicKeyResponse canned;
  canned.set_public_key_der("DER");
  canned.set_public_key_pem(pem);
  canned.set_key_fingerprint("sha256:0a1b2c");
  server_.audit_service().AddResponse("GetAuditPublicKey", canned);

  CommandResult outcome = RunAgainstServer({"audit", "public-key", "--out", Path("audit.pem")});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(testing::ReadTestFile(Path("audit.pem")), pem);
  EXPECT_EQ(outcome.out, "public_key_file: " + Path("audit.pem") +
                             "\n"
                             "key_fingerprint: sha256:0a1b2c\n");
}

// ------------------------------------------------------------ audit verify

constexpr absl::Time kLogStart = absl::FromUnixSeconds(1800000000);

// A log written with the daemon's own format code (audit_record.h), signed by
// a throwaway P-256 key, in files kmsctl audit verify reads.
class KmsctlAuditVerifyTest : public KmsctlTest {
 protected:
  // Lines (each with its '\n') of records 1..n, checkpoints at `checkpoints`
  // signed by `signer`.
  static std::vector<std::string> BuildLog(uint64_t n, const std::set<uint64_t>& checkpoints,
                                           const audit::TestSigningKey& signer) {
    std::vector<std::string> lines;
    std::string prev(audit::kZeroHash);
    for (uint64_t seq = 1; seq <= n; ++seq) {
      audit::Entry e;
      if (checkpoints.count(seq) > 0) {
        e.type = audit::RecordType::kCheckpoint;
      } else {
        e.type = audit::RecordType::kRpc;
        e.request_id = absl::StrCat("req-", seq);
        e.principal = "alice";
        e.operation = "Encrypt";
        e.outcome = audit::Outcome::kSuccess;
      }
      const audit::FormattedRecord f =
          audit::FormatRecord(e, seq, kLogStart + absl::Seconds(seq), prev);
      lines.push_back(
          e.type == audit::RecordType::kCheckpoint
              ? audit::FinishRecord(f, signer.Fingerprint(), signer.Sign(f.body + "}").value())
              : audit::FinishRecord(f));
      prev = f.hash;
    }
    return lines;
  }

  // Writes `lines` to log.jsonl and key_'s public key to audit.pem.
  void WriteLog(const std::vector<std::string>& lines) {
    testing::WriteTestFile(Path("log.jsonl"), absl::StrJoin(lines, ""));
    testing::WriteTestFile(Path("audit.pem"), key_.PublicPem());
  }

  // kmsctl `global_flags` audit verify --log log.jsonl --public-key audit.pem
  // `more`, with no endpoint: verify needs none.
  CommandResult Verify(const std::vector<std::string>& global_flags = {},
                       const std::vector<std::string>& more = {}) {
    std::vector<std::string> args = global_flags;
    args.insert(args.end(),
                {"audit", "verify", "--log", Path("log.jsonl"), "--public-key", Path("audit.pem")});
    args.insert(args.end(), more.begin(), more.end());
    return Run(args);
  }

  audit::TestSigningKey key_;
};

TEST_F(KmsctlAuditVerifyTest, AnIntactLogVerifiesAndTheSummaryCountsTheUnsignedTail) {
  WriteLog(BuildLog(12, {5, 10}, key_));

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "audit log verified: 12 records (seq 1..12), 2 signed checkpoints; 2 records after "
            "the last checkpoint are chained but not yet signed\n");
  EXPECT_EQ(outcome.err, "");
}

TEST_F(KmsctlAuditVerifyTest, ALogEndingInACheckpointIsSignedThroughout) {
  WriteLog(BuildLog(10, {5, 10}, key_));

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "audit log verified: 10 records (seq 1..10), 2 signed checkpoints; every record is "
            "covered by a signed checkpoint\n");
}

TEST_F(KmsctlAuditVerifyTest, ALogWithoutACheckpointSaysNothingIsSigned) {
  WriteLog(BuildLog(1, {}, key_));

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "audit log verified: 1 record (seq 1..1), 0 signed checkpoints; no record is signed, "
            "all are only chained\n");
}

TEST_F(KmsctlAuditVerifyTest, AnEmptyLogVerifiesAsEmpty) {
  WriteLog({});

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "audit log verified: empty (no records)\n");
}

TEST_F(KmsctlAuditVerifyTest, NeedsNoEndpointAndIgnoresTheTlsFlags) {
  WriteLog(BuildLog(6, {5}, key_));
  ClosedPort port;

  // Half the TLS flags, naming a file that is not there: a command that
  // calls kmsd stops at them with exit 2.
  CommandResult outcome = Run({"--endpoint", port.endpoint(), "audit", "verify", "--log",
                               Path("log.jsonl"), "--public-key", Path("audit.pem")},
                              {"KMSCTL_CA=" + Path("no-such-ca.pem")});

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, StartsWith("audit log verified: 6 records"));
}

TEST_F(KmsctlAuditVerifyTest, JsonGivesEveryCount) {
  WriteLog(BuildLog(12, {5, 10}, key_));

  CommandResult outcome = Verify({"--json"});

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "{\"verified\":true,\"records\":12,\"first_sequence\":1,\"last_sequence\":12,"
            "\"checkpoints\":2,\"unsigned_tail\":2,\"first_bad_sequence\":null,\"problem\":null}"
            "\n");
}

TEST_F(KmsctlAuditVerifyTest, JsonOfABadLogNamesTheFirstBadRecordAndExitsOne) {
  std::vector<std::string> lines = BuildLog(12, {5, 10}, key_);
  lines.erase(lines.begin() + 6);  // seq 7
  WriteLog(lines);

  CommandResult outcome = Verify({"--json"});

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.out,
            "{\"verified\":false,\"records\":7,\"first_sequence\":null,\"last_sequence\":null,"
            "\"checkpoints\":1,\"unsigned_tail\":null,\"first_bad_sequence\":7,"
            "\"problem\":\"line 7: seq 8 where 7 was due\"}\n");
  EXPECT_EQ(outcome.err,
            "kmsctl: audit log NOT verified: first bad record seq 7: line 7: seq 8 where 7 was "
            "due\n");
}

TEST_F(KmsctlAuditVerifyTest, APartialExportVerifiesWithPartialOnly) {
  std::vector<std::string> lines = BuildLog(12, {5, 10}, key_);
  lines.erase(lines.begin(), lines.begin() + 5);  // seq 6..12, as export --after-sequence 5
  WriteLog(lines);

  CommandResult partial = Verify({}, {"--partial"});
  CommandResult whole = Verify();

  EXPECT_EQ(partial.exit_code, 0) << partial.err;
  EXPECT_EQ(partial.out,
            "audit log verified: 7 records (seq 6..12; its link to seq 5 is taken on trust), "
            "1 signed checkpoint; 2 records after the last checkpoint are chained but not yet "
            "signed\n");
  EXPECT_EQ(whole.exit_code, 1);
  EXPECT_THAT(whole.err, StartsWith("kmsctl: audit log NOT verified: first bad record seq 1: "));
}

TEST_F(KmsctlAuditVerifyTest, ReadsTheLogFromStdin) {
  const std::vector<std::string> lines = BuildLog(6, {5}, key_);
  testing::WriteTestFile(Path("audit.pem"), key_.PublicPem());

  CommandResult outcome = RunCommand(
      {KMS_KMSCTL_BINARY, "audit", "verify", "--log", "-", "--public-key", Path("audit.pem")}, {},
      absl::StrJoin(lines, ""));

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, StartsWith("audit log verified: 6 records (seq 1..6)"));
}

TEST_F(KmsctlAuditVerifyTest, AcceptsADerPublicKey) {
  WriteLog(BuildLog(6, {5}, key_));
  testing::WriteTestFile(Path("audit.pem"), key_.PublicDer());

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
}

TEST_F(KmsctlAuditVerifyTest, AnotherPublicKeyFailsAtTheFirstCheckpoint) {
  WriteLog(BuildLog(12, {5, 10}, key_));
  audit::TestSigningKey other;
  testing::WriteTestFile(Path("audit.pem"), other.PublicPem());

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: audit log NOT verified: first bad record seq 5: "
                                      "record 5: checkpoint signed by key "));
  EXPECT_EQ(std::count(outcome.err.begin(), outcome.err.end(), '\n'), 1);
  EXPECT_EQ(outcome.out, "");
}

TEST_F(KmsctlAuditVerifyTest, AMissingLogExitsFour) {
  testing::WriteTestFile(Path("audit.pem"), key_.PublicPem());

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 4);
  EXPECT_EQ(outcome.err,
            "kmsctl: cannot open '" + Path("log.jsonl") + "': No such file or directory\n");
  EXPECT_EQ(outcome.out, "");
}

TEST_F(KmsctlAuditVerifyTest, ALogThatCannotBeReadExitsFourNotOne) {
  testing::WriteTestFile(Path("audit.pem"), key_.PublicPem());
  ASSERT_EQ(mkdir(Path("log.jsonl").c_str(), 0700), 0);

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 4) << outcome.err;
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: cannot read '" + Path("log.jsonl") + "'"));
}

TEST_F(KmsctlAuditVerifyTest, AMissingPublicKeyFileExitsFour) {
  testing::WriteTestFile(Path("log.jsonl"), absl::StrJoin(BuildLog(6, {5}, key_), ""));

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 4);
  EXPECT_THAT(outcome.err, HasSubstr(Path("audit.pem")));
}

TEST_F(KmsctlAuditVerifyTest, APublicKeyFileWithoutAP256KeyExitsFour) {
  WriteLog(BuildLog(6, {5}, key_));
  testing::WriteTestFile(Path("audit.pem"), "-----BEGIN PUBLIC KEY-----\nnot a key\n");

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 4);
  EXPECT_THAT(outcome.err, StartsWith("kmsctl: --public-key '" + Path("audit.pem") + "': "));
  EXPECT_EQ(outcome.out, "");
}

TEST_F(KmsctlAuditVerifyTest, HelpOfTheAuditGroupListsVerify) {
  CommandResult outcome = Run({"audit", "--help"});

  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_THAT(outcome.out, HasSubstr("verify"));
  EXPECT_THAT(outcome.out, HasSubstr("no call to kmsd"));
}

// A log of records 1..12 with checkpoints at 5 and 10, changed by an
// attacker who can write the file but not sign.
struct TamperCase {
  std::string name;
  std::function<void(std::vector<std::string>&)> tamper;
  uint64_t first_bad;
  std::string problem;  // a part of the stderr line
};

void PrintTo(const TamperCase& c, std::ostream* os) { *os << c.name; }

class KmsctlAuditTamperTest : public KmsctlAuditVerifyTest,
                              public ::testing::WithParamInterface<TamperCase> {};

// Re-formats a changed line with a hash that matches its new bytes, keeping
// any signature (which the attacker cannot renew).
std::string Rehash(const std::string& line, const std::string& prev) {
  auto r = audit::ParseRecord(line);
  EXPECT_TRUE(r.ok()) << r.status();
  return audit::FinishRecord(audit::FormatRecord(r->entry, r->seq, r->time, prev), r->signing_key,
                             r->signature);
}

std::string Replace(std::string line, const std::string& from, const std::string& to) {
  const size_t at = line.find(from);
  EXPECT_NE(at, std::string::npos) << from << " in " << line;
  return at == std::string::npos ? line : line.replace(at, from.size(), to);
}

TEST_P(KmsctlAuditTamperTest, ExitsOneNamingTheFirstBadRecord) {
  const TamperCase& c = GetParam();
  std::vector<std::string> lines = BuildLog(12, {5, 10}, key_);
  c.tamper(lines);
  WriteLog(lines);

  CommandResult outcome = Verify();

  EXPECT_EQ(outcome.exit_code, 1) << outcome.err;
  EXPECT_THAT(outcome.err,
              StartsWith(absl::StrCat("kmsctl: audit log NOT verified: first bad record seq ",
                                      c.first_bad, ": ")));
  EXPECT_THAT(outcome.err, HasSubstr(c.problem));
  EXPECT_EQ(std::count(outcome.err.begin(), outcome.err.end(), '\n'), 1);
  EXPECT_EQ(outcome.out, "");
}

INSTANTIATE_TEST_SUITE_P(
    Tampering, KmsctlAuditTamperTest,
    ::testing::Values(
        TamperCase{"ChangedRecord",
                   [](std::vector<std::string>& l) {
                     l[6] = Replace(l[6], "\"principal\":\"alice\"", "\"principal\":\"mallory\"");
                   },
                   7, "record 7: its hash does not match its contents"},
        TamperCase{"ChangedAndRehashedRecord",
                   [](std::vector<std::string>& l) {
                     const std::string prev = audit::ParseRecord(l[5]).value().hash;
                     l[6] = Rehash(Replace(l[6], "alice", "mallory"), prev);
                   },
                   7, "record 8 does not chain to it"},
        TamperCase{"ChangedAndRechainedToTheEnd",
                   [](std::vector<std::string>& l) {
                     std::string prev = audit::ParseRecord(l[5]).value().hash;
                     l[6] = Replace(l[6], "alice", "mallory");
                     for (size_t i = 6; i < l.size(); ++i) {
                       l[i] = Rehash(l[i], prev);
                       prev = audit::ParseRecord(l[i]).value().hash;
                     }
                   },
                   10, "record 10: checkpoint signature does not verify"},
        TamperCase{"DeletedRecord", [](std::vector<std::string>& l) { l.erase(l.begin() + 6); }, 7,
                   "seq 8 where 7 was due"},
        TamperCase{"DeletedCheckpoint", [](std::vector<std::string>& l) { l.erase(l.begin() + 4); },
                   5, "seq 6 where 5 was due"},
        TamperCase{"SwappedRecords", [](std::vector<std::string>& l) { std::swap(l[6], l[7]); }, 7,
                   "seq 8 where 7 was due"},
        TamperCase{"InsertedRecord",
                   [](std::vector<std::string>& l) { l.insert(l.begin() + 7, l[6]); }, 8,
                   "seq 7 where 8 was due"},
        TamperCase{"ChangedCheckpointSignature",
                   [](std::vector<std::string>& l) {
                     auto r = audit::ParseRecord(l[9]).value();
                     std::string signature = r.signature;
                     signature.back() ^= 1;
                     l[9] = audit::FinishRecord(audit::FormatRecord(r.entry, r.seq, r.time, r.prev),
                                                r.signing_key, signature);
                   },
                   10, "record 10: checkpoint signature does not verify"},
        TamperCase{"NotJson", [](std::vector<std::string>& l) { l[2] = "{\"seq\":3,oops\n"; }, 3,
                   "line 3: "},
        TamperCase{"TornLastLine", [](std::vector<std::string>& l) { l.back().pop_back(); }, 12,
                   "the last line has no newline"}),
    [](const ::testing::TestParamInfo<TamperCase>& info) { return info.param.name; });

v1::KeyInventoryEntry InventoryEntry() {
  v1::KeyInventoryEntry k;
  k.set_key_id(kKeyId);
  k.set_arn(kKeyArn);
  k.add_aliases("alias/payments");
  k.add_aliases("alias/pay");
  k.set_description("payments, \"main\"");
  k.set_key_state(v1::ENABLED);
  k.set_origin(v1::EXTERNAL);
  k.mutable_creation_date()->set_seconds(1800000000);
  k.set_key_version_count(2);
  k.mutable_current_material_date()->set_seconds(1800086400);
  k.set_rotation_enabled(false);
  k.set_rotation_status(v1::ROTATION_DISABLED);
  k.mutable_last_used_date()->set_seconds(1800172800);
  k.set_expiration_model(v1::KEY_MATERIAL_EXPIRES);
  k.mutable_valid_to()->set_seconds(1811808000);
  return k;
}

TEST_F(KmsctlTest, KeyInventoryPrintsOneRowPerKey) {
  v1::GetKeyInventoryReportResponse canned;
  *canned.add_keys() = InventoryEntry();
  v1::KeyInventoryEntry other;
  other.set_key_id("key-2");
  other.set_key_state(v1::PENDING_DELETION);
  other.set_origin(v1::AWS_KMS);
  other.set_key_version_count(1);
  other.set_rotation_enabled(true);
  other.set_rotation_period_in_days(90);
  other.mutable_next_rotation_date()->set_seconds(1800000000);
  other.set_rotation_status(v1::COMPLIANT);
  other.mutable_deletion_date()->set_seconds(1800000000);
  *canned.add_keys() = other;
  canned.mutable_generated_at()->set_seconds(1800259200);
  server_.audit_service().AddResponse("GetKeyInventoryReport", canned);

  CommandResult outcome = RunAgainstServer({"key-inventory", "--max-age-days", "180"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, StartsWith("generated_at: 2027-01-18T08:00:00Z\nKEY_ID "));
  EXPECT_THAT(outcome.out,
              HasSubstr(std::string(kKeyId) +
                        "  alias/payments,alias/pay  ENABLED           EXTERNAL  2         "
                        "2027-01-16T08:00:00Z  disabled  -            -                     "
                        "ROTATION_DISABLED  2027-01-17T08:00:00Z  KEY_MATERIAL_EXPIRES  "
                        "2027-06-01T00:00:00Z  -\n"));
  EXPECT_THAT(outcome.out, HasSubstr("key-2  "));
  EXPECT_THAT(outcome.out, HasSubstr("PENDING_DELETION  AWS_KMS   1         -                     "
                                     "enabled   90           2027-01-15T08:00:00Z  COMPLIANT"));
  EXPECT_EQ(server_.audit_service()
                .last_request<v1::GetKeyInventoryReportRequest>("GetKeyInventoryReport")
                .max_age_in_days(),
            180);
}

TEST_F(KmsctlTest, KeyInventoryCsvHasAHeaderAndQuotesWhereNeeded) {
  v1::GetKeyInventoryReportResponse canned;
  *canned.add_keys() = InventoryEntry();
  server_.audit_service().AddResponse("GetKeyInventoryReport", canned);

  CommandResult outcome = RunAgainstServer({"key-inventory", "--output", "csv"});

  ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            "key_id,arn,aliases,description,key_state,origin,creation_date,key_version_count,"
            "current_material_date,rotation_enabled,rotation_period_in_days,next_rotation_date,"
            "rotation_status,last_used_date,expiration_model,valid_to,deletion_date\r\n" +
                std::string(kKeyId) + "," + kKeyArn +
                ",\"alias/payments,alias/pay\",\"payments, \"\"main\"\"\",ENABLED,EXTERNAL,"
                "2027-01-15T08:00:00Z,2,2027-01-16T08:00:00Z,false,,,ROTATION_DISABLED,"
                "2027-01-17T08:00:00Z,KEY_MATERIAL_EXPIRES,2027-06-01T00:00:00Z,\r\n");
  EXPECT_FALSE(server_.audit_service()
                   .last_request<v1::GetKeyInventoryReportRequest>("GetKeyInventoryReport")
                   .has_max_age_in_days());
}

TEST_F(KmsctlTest, KeyInventoryJsonIsTheResponse) {
  v1::GetKeyInventoryReportResponse canned;
  *canned.add_keys() = InventoryEntry();
  server_.audit_service().AddResponse("GetKeyInventoryReport", canned);

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"key-inventory", "--output", "json"},
        std::vector<std::string>{"--json", "key-inventory"}}) {
    CommandResult outcome = RunAgainstServer(args);

    ASSERT_EQ(outcome.exit_code, 0) << outcome.err;
    EXPECT_THAT(outcome.out, StartsWith("{\"keys\":[{\"key_id\":\""));
    EXPECT_THAT(outcome.out, HasSubstr("\"aliases\":[\"alias/payments\",\"alias/pay\"]"));
    EXPECT_THAT(outcome.out, HasSubstr("\"rotation_status\":\"ROTATION_DISABLED\""));
  }
}

// kmsd gives no rotation status for keys pending deletion or import: "-"
// in the table, an empty cell in the CSV and no member in the JSON, as for
// every other unset field, never the enum's UNSPECIFIED name.
TEST_F(KmsctlTest, KeyInventoryShowsNoRotationStatusWhereKmsdGivesNone) {
  v1::GetKeyInventoryReportResponse canned;
  v1::KeyInventoryEntry importing;
  importing.set_key_id("key-import");
  importing.set_key_state(v1::PENDING_IMPORT);
  importing.set_origin(v1::EXTERNAL);
  *canned.add_keys() = importing;
  v1::KeyInventoryEntry doomed;
  doomed.set_key_id("key-doomed");
  doomed.set_key_state(v1::PENDING_DELETION);
  doomed.set_origin(v1::AWS_KMS);
  doomed.set_key_version_count(1);
  doomed.mutable_deletion_date()->set_seconds(1800000000);
  *canned.add_keys() = doomed;
  server_.audit_service().AddResponse("GetKeyInventoryReport", canned);

  CommandResult table = RunAgainstServer({"key-inventory"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, Not(HasSubstr("UNSPECIFIED")));
  EXPECT_THAT(table.out,
              HasSubstr("key-import  -        PENDING_IMPORT    EXTERNAL  0         -           "
                        "      disabled  -            -              -                "
                        "-          -           -         -\n"));
  EXPECT_THAT(table.out,
              HasSubstr("key-doomed  -        PENDING_DELETION  AWS_KMS   1         -           "
                        "      disabled  -            -              -                "
                        "-          -           -         2027-01-15T08:00:00Z\n"));

  CommandResult csv = RunAgainstServer({"key-inventory", "--output", "csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_THAT(csv.out, HasSubstr("\r\nkey-import,,,,PENDING_IMPORT,EXTERNAL,,0,,false,,,,,,,\r\n"));
  EXPECT_THAT(csv.out, HasSubstr("\r\nkey-doomed,,,,PENDING_DELETION,AWS_KMS,,1,,false,,,,,,,"
                                 "2027-01-15T08:00:00Z\r\n"));

  CommandResult json = RunAgainstServer({"key-inventory", "--output", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, Not(HasSubstr("rotation_status")));
  EXPECT_THAT(json.out, HasSubstr("\"key_state\":\"PENDING_IMPORT\""));
}

TEST_F(KmsctlTest, HelpListsTheAccessAndAuditCommands) {
  CommandResult outcome = Run({"--help"});

  EXPECT_EQ(outcome.exit_code, 0);
  for (const char* command : {"put-key-policy", "get-key-policy", "create-grant", "list-grants",
                              "retire-grant", "revoke-grant", "audit", "key-inventory"}) {
    EXPECT_THAT(outcome.out, HasSubstr(command));
  }
  CommandResult audit = Run({"audit", "--help"});
  EXPECT_EQ(audit.exit_code, 0);
  for (const char* command : {"query", "export", "public-key"}) {
    EXPECT_THAT(audit.out, HasSubstr(command));
  }
}

}  // namespace
}  // namespace kms
