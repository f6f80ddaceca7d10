#include "daemon/server/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/match.h"
#include "tests/testing/daemon_process.h"

namespace kms::server {
namespace {

TEST(ConfigTest, ShippedExamplesLoadAndValidate) {
  for (const char* name : {"kmsd.example.yaml", "kmsd.production.yaml"}) {
    auto config = LoadConfigFile(std::string(KMS_SOURCE_DIR) + "/config/" + name);
    ASSERT_TRUE(config.ok()) << name << ": " << config.status();
    if (std::string(name) == "kmsd.production.yaml") {
      EXPECT_TRUE(ValidateConfig(*config).ok()) << ValidateConfig(*config);
      EXPECT_EQ(config->hsm.sessions, 8);
      EXPECT_EQ(config->hsm.pin_file, "/etc/kmsd/hsm.pin");
    } else {
      EXPECT_EQ(config->data_dir, "/var/lib/kmsd");
      EXPECT_EQ(config->deletion_check_interval, absl::Seconds(60));
    }
  }
}

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kmsd-config");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
  }
  absl::StatusOr<Config> Load(const std::string& yaml) {
    const std::string path = dir_->path() + "/kmsd.yaml";
    std::ofstream(path) << yaml;
    return LoadConfigFile(path);
  }
  std::unique_ptr<testing::TempDir> dir_;
};

TEST_F(ConfigFileTest, ReadsNestedKeys) {
  auto config = Load("listen: 0.0.0.0:9000\nhsm:\n  sessions: 12\n  token_label: t1\n"
                     "deletion:\n  check_interval_seconds: 5\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "0.0.0.0:9000");
  EXPECT_EQ(config->hsm.sessions, 12);
  EXPECT_EQ(config->hsm.token_label, "t1");
  EXPECT_EQ(config->deletion_check_interval, absl::Seconds(5));
}

TEST_F(ConfigFileTest, ReadsImportSettings) {
  auto config = Load("import:\n  parameters_valid_hours: 2\n  max_outstanding_parameters: 3\n"
                     "  max_valid_days: 30\n  check_interval_seconds: 7\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->import.parameters_lifetime, absl::Hours(2));
  EXPECT_EQ(config->import.max_outstanding_parameters, 3);
  EXPECT_EQ(config->import.max_valid_days, 30);
  EXPECT_EQ(config->import.check_interval, absl::Seconds(7));
}

TEST_F(ConfigFileTest, EmptyFileGivesDefaults) {
  auto config = Load("");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->listen, "127.0.0.1:7700");
  EXPECT_EQ(config->hsm.sessions, 4);
  EXPECT_EQ(config->import.parameters_lifetime, absl::Hours(24));
  EXPECT_EQ(config->import.max_valid_days, 365);
}

struct BadCase {
  std::string name;
  std::string yaml;
  std::string message;
  friend void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }
};

class BadConfigTest : public ConfigFileTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(BadConfigTest, NamesTheKeyAndTheProblem) {
  auto config = Load(GetParam().yaml);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(config.status().message(), GetParam().message))
      << config.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfigTest,
    ::testing::Values(
        BadCase{"UnknownKey", "lisen: x:1\n", "lisen: unknown key"},
        BadCase{"UnknownNestedKey", "hsm:\n  pin: 1234\n", "hsm.pin: unknown key"},
        BadCase{"NotAnInteger", "hsm:\n  sessions: many\n",
                "hsm.sessions: must be an integer 1..64, got 'many'"},
        BadCase{"OutOfRange", "hsm:\n  sessions: 0\n", "hsm.sessions: must be 1..64, got 0"},
        BadCase{"IntervalOutOfRange", "deletion:\n  check_interval_seconds: 0\n",
                "deletion.check_interval_seconds: must be 1..86400, got 0"},
        BadCase{"ImportValidityBeyondAYear", "import:\n  max_valid_days: 366\n",
                "import.max_valid_days: must be 1..365, got 366"},
        BadCase{"StringWanted", "listen: [a, b]\n", "listen: must be a string"},
        BadCase{"NotAMap", "- a\n- b\n", "must be a map"},
        BadCase{"Unparseable", "listen: [\n", "line"},
        BadCase{"PlaintextEnabledNotABool", "plaintext:\n  enabled: maybe\n",
                "plaintext.enabled: must be true or false, got 'maybe'"},
        BadCase{"RolesNotAList", "access:\n  administrators: admin\n",
                "access.administrators: must be a list of strings"},
        BadCase{"RoleNotAString", "access:\n  auditors: [[a]]\n",
                "access.auditors: must be a list of strings"},
        BadCase{"CheckpointRecordsOutOfRange", "audit:\n  checkpoint_every_records: 0\n",
                "audit.checkpoint_every_records: must be 1..1000000, got 0"},
        BadCase{"CheckpointIntervalOutOfRange", "audit:\n  checkpoint_interval_seconds: 86401\n",
                "audit.checkpoint_interval_seconds: must be 1..86400, got 86401"},
        BadCase{"PreallocateOutOfRange", "audit:\n  preallocate_kib: -1\n",
                "audit.preallocate_kib: must be 0..1048576, got -1"},
        BadCase{"UnknownTlsKey", "tls:\n  ca_file: /x\n", "tls.ca_file: unknown key"}),
    [](const auto& info) { return info.param.name; });

struct ValidateCase {
  std::string name;
  Config config;
  std::string message;  // empty: valid
  friend void PrintTo(const ValidateCase& c, std::ostream* os) { *os << c.name; }
};

Config With(std::function<void(Config&)> edit) {
  Config c;
  c.data_dir = "/var/lib/kmsd";
  edit(c);
  return c;
}

class ValidateConfigTest : public ::testing::TestWithParam<ValidateCase> {};

TEST_P(ValidateConfigTest, AppliesTheRules) {
  absl::Status s = ValidateConfig(GetParam().config);
  if (GetParam().message.empty()) {
    EXPECT_TRUE(s.ok()) << s;
  } else {
    EXPECT_TRUE(absl::StrContains(s.message(), GetParam().message)) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidateConfigTest,
    ::testing::Values(
        ValidateCase{"EmbeddedDefault", With([](Config&) {}), ""},
        ValidateCase{"NoDataDir", With([](Config& c) { c.data_dir.clear(); }), "data_dir: required"},
        ValidateCase{"NoPort", With([](Config& c) { c.listen = "localhost"; }), "listen: must be HOST:PORT"},
        ValidateCase{"PinFileInEmbeddedMode", With([](Config& c) { c.hsm.pin_file = "/p"; }),
                     "hsm.pin_file: only used with hsm.module"},
        ValidateCase{"ExternalNeedsAPin", With([](Config& c) { c.hsm.module = "/m.so"; }),
                     "hsm.pin_file: set exactly one"},
        ValidateCase{"ExternalWithBothPins", With([](Config& c) {
                       c.hsm.module = "/m.so";
                       c.hsm.pin_file = "/p";
                       c.hsm.pin_env = "PIN";
                     }),
                     "hsm.pin_file: set exactly one"},
        ValidateCase{"ExternalWithPinEnv", With([](Config& c) {
                       c.hsm.module = "/m.so";
                       c.hsm.pin_env = "PIN";
                       c.tls = {"/s.pem", "/s.key", "/ca.pem"};
                     }),
                     ""},
        ValidateCase{"ExternalNeedsTlsOrPlaintext", With([](Config& c) {
                       c.hsm.module = "/m.so";
                       c.hsm.pin_env = "PIN";
                     }),
                     "tls: required with hsm.module: set tls.cert_file, tls.key_file and "
                     "tls.client_ca_file, or plaintext.enabled"},
        ValidateCase{"ExternalWithPlaintext", With([](Config& c) {
                       c.hsm.module = "/m.so";
                       c.hsm.pin_env = "PIN";
                       c.plaintext = {true, "dev"};
                     }),
                     ""},
        ValidateCase{"TlsNeedsAllThreeFiles",
                     With([](Config& c) { c.tls = {"/s.pem", "/s.key", ""}; }),
                     "tls.client_ca_file: set all of"},
        ValidateCase{"TlsOnAnyAddress", With([](Config& c) {
                       c.listen = "0.0.0.0:7700";
                       c.tls = {"/s.pem", "/s.key", "/ca.pem"};
                     }),
                     ""},
        ValidateCase{"NonLoopbackNeedsTls", With([](Config& c) { c.listen = "0.0.0.0:7700"; }),
                     "listen: '0.0.0.0:7700' is not loopback: it needs tls.cert_file"},
        ValidateCase{"PlaintextNeedsPrincipal",
                     With([](Config& c) { c.plaintext.enabled = true; }),
                     "plaintext.principal: required with plaintext.enabled"},
        ValidateCase{"PrincipalWithoutPlaintext",
                     With([](Config& c) { c.plaintext.principal = "dev"; }),
                     "plaintext.principal: only used with plaintext.enabled"},
        ValidateCase{"PlaintextOnlyLocally", With([](Config& c) {
                       c.listen = "10.0.0.5:7700";
                       c.plaintext = {true, "dev"};
                     }),
                     "plaintext.enabled: only on a loopback address or a unix: socket"},
        ValidateCase{"PlaintextOnUnixSocket", With([](Config& c) {
                       c.listen = "unix:/run/kmsd.sock";
                       c.plaintext = {true, "dev"};
                     }),
                     ""},
        ValidateCase{"PlaintextAndTlsExclude", With([](Config& c) {
                       c.plaintext = {true, "dev"};
                       c.tls = {"/s.pem", "/s.key", "/ca.pem"};
                     }),
                     "plaintext.enabled: plaintext and tls exclude each other"},
        ValidateCase{"RolePatterns", With([](Config& c) {
                       c.access.administrators = {"spiffe://site/ops/*", "admin"};
                       c.access.auditors = {"*"};
                     }),
                     ""},
        ValidateCase{"EmptyRolePattern",
                     With([](Config& c) { c.access.administrators = {""}; }),
                     "access.administrators: a principal pattern must not be empty"},
        ValidateCase{"LongRolePattern",
                     With([](Config& c) { c.access.auditors = {std::string(257, 'a')}; }),
                     "access.auditors: a principal pattern must be at most 256 bytes, got 257"},
        ValidateCase{"StarInsideRolePattern",
                     With([](Config& c) { c.access.auditors = {"a*b"}; }),
                     "access.auditors: '*' may only end a principal pattern, got 'a*b'"},
        ValidateCase{"TwoStarsInRolePattern",
                     With([](Config& c) { c.access.auditors = {"a**"}; }),
                     "'*' may only end"},
        ValidateCase{"LongLabel", With([](Config& c) { c.hsm.token_label = std::string(33, 'l'); }),
                     "hsm.token_label: must be 1..32"},
        ValidateCase{"BadLogLevel", With([](Config& c) { c.log_level = "chatty"; }), "log_level"},
        ValidateCase{"BadPrefix", With([](Config& c) { c.resource_name_prefix = "kms:"; }),
                     "resource_name_prefix"}),
    [](const auto& info) { return info.param.name; });

TEST_F(ConfigFileTest, ReadsTransportAccessAndAuditKeys) {
  auto config = Load(
      "tls:\n  cert_file: /t/s.pem\n  key_file: /t/s.key\n  client_ca_file: /t/ca.pem\n"
      "plaintext:\n  enabled: false\n  principal: \"\"\n"
      "access:\n  administrators: [\"ops-*\", admin]\n  auditors: []\n"
      "audit:\n  path: /a/audit.log\n  checkpoint_every_records: 50\n"
      "  checkpoint_interval_seconds: 5\n  preallocate_kib: 0\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tls.cert_file, "/t/s.pem");
  EXPECT_EQ(config->tls.key_file, "/t/s.key");
  EXPECT_EQ(config->tls.client_ca_file, "/t/ca.pem");
  EXPECT_FALSE(config->plaintext.enabled);
  EXPECT_EQ(config->access.administrators, (std::vector<std::string>{"ops-*", "admin"}));
  EXPECT_TRUE(config->access.auditors.empty());
  EXPECT_EQ(config->audit.path, "/a/audit.log");
  EXPECT_EQ(config->audit.checkpoint_every_records, 50);
  EXPECT_EQ(config->audit.checkpoint_interval, absl::Seconds(5));
  EXPECT_EQ(config->audit.preallocate_kib, 0);
  EXPECT_TRUE(HasTlsFiles(*config));

  auto plaintext = Load("plaintext:\n  enabled: true\n  principal: dev\n");
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  EXPECT_TRUE(plaintext->plaintext.enabled);
  EXPECT_EQ(plaintext->plaintext.principal, "dev");
}

TEST_F(ConfigFileTest, ReadsLimitsAndRefusesOutOfRange) {
  auto config = Load("limits:\n  max_concurrent_rpcs: 64\n  max_in_flight_calls: 200\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->limits.max_concurrent_rpcs, 64);
  EXPECT_EQ(config->limits.max_in_flight_calls, 200);
  EXPECT_EQ(Config().limits.max_in_flight_calls, 4096);
  auto zero = Load("limits:\n  max_in_flight_calls: 0\n");
  EXPECT_FALSE(zero.ok());
  EXPECT_TRUE(absl::StrContains(zero.status().message(), "limits.max_in_flight_calls"))
      << zero.status();
}

TEST_F(ConfigFileTest, TransportAccessAndAuditDefaults) {
  auto config = Load("");
  ASSERT_TRUE(config.ok());
  EXPECT_FALSE(HasTlsFiles(*config));
  EXPECT_FALSE(config->plaintext.enabled);
  EXPECT_TRUE(config->access.administrators.empty());
  EXPECT_EQ(config->audit.checkpoint_every_records, 1000);
  EXPECT_EQ(config->audit.preallocate_kib, 1024);
  EXPECT_EQ(config->audit.checkpoint_interval, absl::Seconds(60));
}

TEST(StateDirectoryTest, IsTheDataDirElseTheDatabasesDirectory) {
  EXPECT_EQ(StateDirectory("/var/lib/kmsd", "/elsewhere/kmsd.db"), "/var/lib/kmsd");
  EXPECT_EQ(StateDirectory("", "/var/lib/kmsd/kmsd.db"), "/var/lib/kmsd");
  EXPECT_EQ(StateDirectory("", "/kmsd.db"), "/");
  EXPECT_EQ(StateDirectory("", "kmsd.db"), ".");
}

TEST(AuditLogPathTest, DefaultsNextToTheOtherState) {
  Config config;
  // External HSM, no data_dir: beside the database, never at the root.
  EXPECT_EQ(AuditLogPath(config, "", "/var/lib/kmsd/kmsd.db"), "/var/lib/kmsd/audit.log");
  EXPECT_EQ(AuditLogPath(config, "/data", "/data/kmsd.db"), "/data/audit.log");
  EXPECT_EQ(AuditLogPath(config, "", "/kmsd.db"), "/audit.log");
  config.audit.path = "/var/log/kmsd/audit.log";
  EXPECT_EQ(AuditLogPath(config, "/data", "/data/kmsd.db"), "/var/log/kmsd/audit.log");
}

TEST(IsLocalListenTest, AcceptsUnixSockets) {
  EXPECT_TRUE(IsLocalListen("unix:/run/kmsd.sock"));
  EXPECT_TRUE(IsLocalListen("unix:relative.sock"));
  EXPECT_TRUE(IsLocalListen("unix-abstract:kmsd"));
  EXPECT_TRUE(IsLocalListen("127.0.0.1:0"));
  EXPECT_FALSE(IsLocalListen("unix:"));
  EXPECT_FALSE(IsLocalListen("0.0.0.0:7700"));
  EXPECT_FALSE(IsLoopbackListen("unix:/run/kmsd.sock"));
}

TEST(IsLoopbackListenTest, RecognisesLoopbackHosts) {
  EXPECT_TRUE(IsLoopbackListen("127.0.0.1:7700"));
  EXPECT_TRUE(IsLoopbackListen("127.1.2.3:1"));
  EXPECT_TRUE(IsLoopbackListen("localhost:7700"));
  EXPECT_TRUE(IsLoopbackListen("[::1]:7700"));
  EXPECT_FALSE(IsLoopbackListen("0.0.0.0:7700"));
  EXPECT_FALSE(IsLoopbackListen("10.0.0.5:7700"));
  EXPECT_FALSE(IsLoopbackListen("[::]:7700"));
}

}  // namespace
}  // namespace kms::server
