// `kmsctl bench` as a subprocess, for what fails before any load: usage
// errors (exit 2, nothing sent) and a kmsd that will not start (exit 4).
// Runs against real kmsd processes are in tests/e2e/bench_e2e_test.cc.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_kms_server.h"
#include "tests/testing/daemon_process.h"

namespace kms {
namespace {

using ::kms::testing::ClosedPort;
using ::kms::testing::CommandResult;
using ::kms::testing::RunKmsctl;
using ::testing::HasSubstr;

struct UsageCase {
  std::string name;
  std::vector<std::string> args;
  std::string message;
  friend void PrintTo(const UsageCase& c, std::ostream* os) { *os << c.name; }
};

class KmsctlBenchUsageTest : public ::testing::TestWithParam<UsageCase> {};

TEST_P(KmsctlBenchUsageTest, ExitsTwoBeforeCallingKmsd) {
  // Nothing listens at the endpoint: a usage error must come first.
  ClosedPort closed;
  std::vector<std::string> args = {"bench"};
  args.insert(args.end(), GetParam().args.begin(), GetParam().args.end());
  const CommandResult r = RunKmsctl(closed.endpoint(), args);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(GetParam().message));
  EXPECT_THAT(r.err, HasSubstr("(see kmsctl bench --help)"));
  EXPECT_EQ(r.out, "");
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KmsctlBenchUsageTest,
    ::testing::Values(
        UsageCase{"UnknownOp", {"--principal", "p", "--ops", "decrypt,sign"},
                  "--ops: unknown op 'sign'"},
        UsageCase{"BadDuration", {"--principal", "p", "--duration", "ten"},
                  "--duration: duration must be like"},
        UsageCase{"NegativeWarmup", {"--principal", "p", "--warmup", "-1s"},
                  "--warmup: duration must not be negative"},
        UsageCase{"ZeroConcurrency", {"--principal", "p", "--concurrency", "4,0"},
                  "concurrency must be 1..10000, got 0"},
        UsageCase{"KeysAndKeyIds", {"--keys", "3", "--key-id", "k"},
                  "give at most one of --keys and --key-id"},
        // Plaintext: no certificate says who kmsctl is to kmsd.
        UsageCase{"PrincipalUnknown", {"--keys", "3"}, "give --principal"},
        UsageCase{"DataDirWithoutStart", {"--principal", "p", "--data-dir", "/tmp/x"},
                  "--data-dir requires --start-daemon"},
        UsageCase{"UnreadableCertificate",
                  {"--ca", "/nonexistent/ca.pem", "--cert", "/nonexistent/c.pem", "--key",
                   "/nonexistent/c.key"},
                  "/nonexistent/ca.pem cannot be read"}),
    [](const ::testing::TestParamInfo<UsageCase>& info) { return info.param.name; });

TEST(KmsctlBenchTest, SaysWhyKmsdDidNotStart) {
  ClosedPort closed;
  const CommandResult r = RunKmsctl(
      closed.endpoint(), {"bench", "--start-daemon", "--kmsd", "/bin/false", "--duration", "1s"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("kmsctl: kmsd (/bin/false) exited with code 1 before serving"));
}

}  // namespace
}  // namespace kms
