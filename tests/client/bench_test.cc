// kmsctl bench's pure parts: op mixes, durations, the op picker, the key
// policy and principal it uses, option checks, and the report formats.
// Runs against a real kmsd are in tests/e2e/bench_e2e_test.cc.
#include "client/bench.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "daemon/common/errors.h"
#include "daemon/policy/policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/test_pki.h"

namespace kms::bench {

// For ElementsAre, found by argument-dependent lookup (so not in the
// anonymous namespace).
bool operator==(const WeightedOp& a, const WeightedOp& b) {
  return a.op == b.op && a.weight == b.weight;
}

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(OpNameTest, EveryOpParsesBackFromItsName) {
  for (Op op : {Op::kGenerateDataKey, Op::kDecrypt, Op::kEncrypt, Op::kCreateKey, Op::kHealth}) {
    EXPECT_EQ(ParseOp(OpName(op)), op);
  }
  EXPECT_EQ(OpName(Op::kGenerateDataKey), "generate-data-key");
  EXPECT_EQ(ParseOp("GenerateDataKey"), std::nullopt);
}

TEST(ParseOpMixTest, TakesOpsWithAndWithoutWeights) {
  absl::StatusOr<OpMix> mix = ParseOpMix("generate-data-key=3, decrypt,health=1");
  ASSERT_TRUE(mix.ok()) << mix.status();
  EXPECT_THAT(*mix, ElementsAre(WeightedOp{Op::kGenerateDataKey, 3}, WeightedOp{Op::kDecrypt, 1},
                                WeightedOp{Op::kHealth, 1}));
}

TEST(OpMixNameTest, IsTheOpAloneOrEveryOpWithItsWeight) {
  EXPECT_EQ(OpMixName(*ParseOpMix("decrypt=5")), "decrypt");
  EXPECT_EQ(OpMixName(*ParseOpMix("generate-data-key,decrypt=2")), "generate-data-key=1,decrypt=2");
}

struct BadMixCase {
  std::string name;
  std::string text;
  std::string message;
  friend void PrintTo(const BadMixCase& c, std::ostream* os) { *os << c.name; }
};

class ParseOpMixRejectsTest : public ::testing::TestWithParam<BadMixCase> {};

TEST_P(ParseOpMixRejectsTest, WithAMessageNamingTheProblem) {
  absl::StatusOr<OpMix> mix = ParseOpMix(GetParam().text);
  ASSERT_FALSE(mix.ok());
  EXPECT_EQ(mix.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mix.status().message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseOpMixRejectsTest,
    ::testing::Values(
        BadMixCase{"Empty", "", "op mix is empty"}, BadMixCase{"Blank", "  ", "op mix is empty"},
        BadMixCase{"UnknownOp", "generate-data-keys",
                   "unknown op 'generate-data-keys'; known ops: generate-data-key, decrypt, "
                   "encrypt, create-key, health"},
        BadMixCase{"EmptyItem", "decrypt,,health", "has an empty item"},
        BadMixCase{"TrailingComma", "decrypt,", "has an empty item"},
        BadMixCase{"ZeroWeight", "decrypt=0", "weight of decrypt must be an integer 1..1000000"},
        BadMixCase{"NegativeWeight", "decrypt=-1", "got '-1'"},
        BadMixCase{"HugeWeight", "decrypt=1000001", "got '1000001'"},
        BadMixCase{"FractionalWeight", "decrypt=1.5", "got '1.5'"},
        BadMixCase{"EmptyWeight", "decrypt=", "got ''"},
        BadMixCase{"Twice", "decrypt=1,decrypt=2", "op decrypt is given twice"}),
    [](const ::testing::TestParamInfo<BadMixCase>& info) { return info.param.name; });

TEST(OpPickerTest, PicksInProportionToTheWeights) {
  const OpPicker picker(*ParseOpMix("generate-data-key=3,decrypt=1"));
  ASSERT_EQ(picker.TotalWeight(), 4u);
  std::map<Op, int> picked;
  for (uint64_t draw = 0; draw < 400; ++draw) ++picked[picker.Pick(draw)];
  EXPECT_EQ(picked[Op::kGenerateDataKey], 300);
  EXPECT_EQ(picked[Op::kDecrypt], 100);
  EXPECT_EQ(picker.Pick(0), Op::kGenerateDataKey);
  EXPECT_EQ(picker.Pick(2), Op::kGenerateDataKey);
  EXPECT_EQ(picker.Pick(3), Op::kDecrypt);
  EXPECT_EQ(picker.Pick(~uint64_t{0}), Op::kDecrypt);  // 2^64-1 mod 4 == 3
}

TEST(ParseBenchDurationTest, TakesUnitsOrSeconds) {
  EXPECT_EQ(*ParseBenchDuration("10s"), absl::Seconds(10));
  EXPECT_EQ(*ParseBenchDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseBenchDuration("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseBenchDuration("2.5"), absl::Milliseconds(2500));
  EXPECT_EQ(*ParseBenchDuration("0"), absl::ZeroDuration());
}

TEST(ParseBenchDurationTest, RejectsNegativeInfiniteAndUnparseable) {
  for (const char* text : {"-1s", "-3", "inf", "ten seconds", "10 s", "", "nan"}) {
    absl::StatusOr<absl::Duration> duration = ParseBenchDuration(text);
    EXPECT_FALSE(duration.ok()) << text;
    EXPECT_EQ(duration.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(BenchContextTest, HasTheAskedNumberOfDistinctPairs) {
  EXPECT_TRUE(BenchContext(0).empty());
  const std::map<std::string, std::string> context = BenchContext(3);
  EXPECT_EQ(context.size(), 3u);
  EXPECT_EQ(context.at("bench-key-0"), "bench-value-0");
}

TEST(BenchKeyPolicyTest, LetsThePrincipalUseTheKeyAndNothingMore) {
  const std::string principal = "spiffe://dc1/\"quoted\"";
  absl::StatusOr<policy::Policy> parsed = policy::Policy::Parse(BenchKeyPolicy(principal));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::map<std::string, std::string> context = BenchContext(3);
  for (const char* action : {"kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt"}) {
    EXPECT_EQ(parsed->Evaluate({principal, action, &context}).effect, policy::Decision::kAllow)
        << action;
    EXPECT_EQ(parsed->Evaluate({"someone-else", action, &context}).effect,
              policy::Decision::kImplicitDeny)
        << action;
  }
  for (const char* action : {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:ReEncryptFrom"}) {
    EXPECT_EQ(parsed->Evaluate({principal, action, nullptr}).effect,
              policy::Decision::kImplicitDeny)
        << action;
  }
}

class PrincipalOfCertificateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("bench-pki");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    pki_ = std::make_unique<testing::TestPki>(dir_->path());
  }
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<testing::TestPki> pki_;
};

TEST_F(PrincipalOfCertificateFileTest, IsTheFirstUriSanAsKmsdNamesIt) {
  ASSERT_TRUE(
      pki_->MakeSelfSigned("svc", testing::ClientCert(
                                      "/CN=svc-cn", "DNS:host,URI:spiffe://dc1/svc,URI:spiffe://x"))
          .ok());
  EXPECT_EQ(*PrincipalOfCertificateFile(pki_->Cert("svc")), "spiffe://dc1/svc");
}

TEST_F(PrincipalOfCertificateFileTest, IsTheCommonNameWithoutAUriSan) {
  ASSERT_TRUE(pki_->MakeSelfSigned("admin", testing::ClientCert("/CN=admin", "DNS:host")).ok());
  EXPECT_EQ(*PrincipalOfCertificateFile(pki_->Cert("admin")), "admin");
}

TEST_F(PrincipalOfCertificateFileTest, FailsWithoutAName) {
  ASSERT_TRUE(pki_->MakeSelfSigned("anon", testing::ClientCert("/O=nobody")).ok());
  EXPECT_EQ(PrincipalOfCertificateFile(pki_->Cert("anon")).status().code(),
            absl::StatusCode::kInvalidArgument);
  testing::WriteTestFile(dir_->path() + "/junk.pem", "not a certificate");
  EXPECT_EQ(PrincipalOfCertificateFile(dir_->path() + "/junk.pem").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrincipalOfCertificateFile(dir_->path() + "/missing.pem").status().code(),
            absl::StatusCode::kNotFound);
}

BenchOptions ValidOptions() {
  BenchOptions options;
  options.mixes = {*ParseOpMix("generate-data-key")};
  options.concurrencies = {1, 64};
  options.principal = "admin";
  return options;
}

TEST(ValidateBenchOptionsTest, AcceptsTheDefaults) {
  EXPECT_TRUE(ValidateBenchOptions(ValidOptions()).ok());
}

struct BadOptionsCase {
  std::string name;
  std::function<void(BenchOptions&)> change;
  std::string message;
  friend void PrintTo(const BadOptionsCase& c, std::ostream* os) { *os << c.name; }
};

class ValidateBenchOptionsRejectsTest : public ::testing::TestWithParam<BadOptionsCase> {};

TEST_P(ValidateBenchOptionsRejectsTest, NamingTheOption) {
  BenchOptions options = ValidOptions();
  GetParam().change(options);
  const absl::Status status = ValidateBenchOptions(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidateBenchOptionsRejectsTest,
    ::testing::Values(
        BadOptionsCase{"NoMix", [](BenchOptions& o) { o.mixes.clear(); }, "no op mix"},
        BadOptionsCase{"NoConcurrency", [](BenchOptions& o) { o.concurrencies.clear(); },
                       "no concurrency"},
        BadOptionsCase{"ZeroConcurrency", [](BenchOptions& o) { o.concurrencies = {0}; },
                       "concurrency must be 1..10000, got 0"},
        BadOptionsCase{"ZeroDuration", [](BenchOptions& o) { o.duration = absl::ZeroDuration(); },
                       "duration must be positive"},
        BadOptionsCase{"ZeroKeys", [](BenchOptions& o) { o.keys = 0; },
                       "keys must be 1..1000000, got 0"},
        BadOptionsCase{"NoPrincipalToCreateKeys", [](BenchOptions& o) { o.principal.clear(); },
                       "principal"},
        BadOptionsCase{"NoPrincipalForCreateKeyOp",
                       [](BenchOptions& o) {
                         o.principal.clear();
                         o.key_ids = {"k"};
                         o.mixes = {*ParseOpMix("create-key")};
                       },
                       "principal"},
        BadOptionsCase{"TooManyContextPairs", [](BenchOptions& o) { o.context_pairs = 65; },
                       "context pairs must be 0..64, got 65"},
        BadOptionsCase{"ZeroChannels", [](BenchOptions& o) { o.channels = 0; },
                       "channels must be 1..64, got 0"},
        BadOptionsCase{"ZeroThreads", [](BenchOptions& o) { o.threads = 0; },
                       "client threads must be 1..64, got 0"},
        BadOptionsCase{"ZeroRounds", [](BenchOptions& o) { o.rounds = 0; },
                       "rounds must be 1..1000, got 0"}),
    [](const ::testing::TestParamInfo<BadOptionsCase>& info) { return info.param.name; });

TEST(ValidateBenchOptionsTest, NeedsNoPrincipalForGivenKeys) {
  BenchOptions options = ValidOptions();
  options.principal.clear();
  options.key_ids = {"1234abcd-12ab-34cd-56ef-1234567890ab"};
  EXPECT_TRUE(ValidateBenchOptions(options).ok());
}

// A report as RunBench would make it: at 16 in flight, the baseline at
// 10000/s and a generate-data-key,decrypt mix at 6000/s with one shed and
// one failed call.
BenchReport SampleReport() {
  BenchReport report;
  report.endpoint = "127.0.0.1:7700";
  report.tls = true;
  report.started_daemon = true;
  report.channels = 2;
  report.threads = 1;
  report.context_pairs = 3;
  report.warmup = absl::Seconds(1);
  report.duration = absl::Seconds(2);
  report.keys.used = 10;
  report.keys.created = true;
  report.keys.elapsed = absl::Milliseconds(200);
  report.keys.concurrency = 10;
  report.keys.create_key.op = Op::kCreateKey;
  report.keys.create_key.ok = 10;
  report.ciphertexts = 256;

  RunResult& baseline = report.runs.emplace_back();
  baseline.concurrency = 16;
  baseline.mix = *ParseOpMix("health");
  baseline.baseline = true;
  baseline.measured = absl::Seconds(2);
  OpResult health;
  health.op = Op::kHealth;
  health.ok = 20000;
  for (int i = 0; i < 20000; ++i) health.latency.Record(1'000'000);  // 1 ms
  baseline.by_op = {health};
  baseline.total = health;
  baseline.client_cpu_percent = 40;
  baseline.kmsd_cpu_percent = 150;

  RunResult& mix = report.runs.emplace_back();
  mix.concurrency = 16;
  mix.mix = *ParseOpMix("generate-data-key,decrypt");
  mix.measured = absl::Seconds(2);
  OpResult generate, decrypt;
  generate.op = Op::kGenerateDataKey;
  generate.ok = 6000;
  for (int i = 0; i < 6000; ++i) generate.latency.Record(2'000'000);  // 2 ms
  generate.errors[absl::StatusCode::kResourceExhausted] = 1;
  generate.first_error.emplace(
      absl::StatusCode::kResourceExhausted,
      WithErrorType(absl::ResourceExhaustedError("too busy"), error_type::kLimitExceeded));
  decrypt.op = Op::kDecrypt;
  decrypt.ok = 6000;
  for (int i = 0; i < 6000; ++i) decrypt.latency.Record(3'000'000);  // 3 ms
  decrypt.errors[absl::StatusCode::kUnavailable] = 1;
  decrypt.first_error.emplace(absl::StatusCode::kUnavailable,
                              absl::UnavailableError("connection reset"));
  mix.by_op = {generate, decrypt};
  mix.total.Merge(generate);
  mix.total.Merge(decrypt);
  mix.client_cpu_percent = 30;
  return report;
}

TEST(BenchReportTest, RatioIsOkPerSecondOverTheBaselineAtTheSameConcurrency) {
  const BenchReport report = SampleReport();
  ASSERT_NE(report.BaselineFor(16), nullptr);
  EXPECT_EQ(report.BaselineFor(64), nullptr);
  EXPECT_DOUBLE_EQ(*report.RatioToBaseline(report.runs[1]), 0.6);
  EXPECT_DOUBLE_EQ(*report.RatioToBaseline(report.runs[0]), 1.0);
  EXPECT_EQ(report.runs[1].total.Shed(), 1u);
  EXPECT_EQ(report.runs[1].total.Failed(), 1u);
}

TEST(FormatBenchReportTest, HasARowPerOpAndRunWithEveryColumn) {
  const std::string text = FormatBenchReport(SampleReport());
  EXPECT_THAT(text, HasSubstr("kmsd 127.0.0.1:7700 (started for this run), mTLS, 2 channels, "
                              "1 client thread\n"));
  EXPECT_THAT(text, HasSubstr("keys: 10 created in 0.20 s: 50.0 CreateKey/s at 10 in flight"));
  EXPECT_THAT(text, HasSubstr("decrypt: 256 blobs"));
  EXPECT_THAT(text, HasSubstr("3-pair encryption context; each run 1 s warm-up, 2 s measured\n\n"));
  const std::vector<std::string> lines = absl::StrSplit(text, '\n');
  auto line_with = [&](const std::string& a, const std::string& b) {
    for (const std::string& line : lines) {
      if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return line;
    }
    return std::string();
  };
  const std::string header = line_with("in flight", "vs health");
  for (const char* column : {"mix", "op", "ok/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
                             "failed", "shed", "cpu kmsctl", "cpu kmsd"}) {
    EXPECT_THAT(header, HasSubstr(column));
  }
  // The baseline: 10000/s at 1 ms, ratio 1.00, both CPUs.
  const std::string health = line_with("health", "10000.0");
  EXPECT_THAT(health, HasSubstr("1.000"));
  EXPECT_THAT(health, HasSubstr("1.00"));
  EXPECT_THAT(health, HasSubstr("40%"));
  EXPECT_THAT(health, HasSubstr("150%"));
  // The mix: its total with the ratio, kmsd's CPU unknown, then each op.
  const std::string all = line_with("generate-data-key=1,decrypt=1", " all ");
  EXPECT_THAT(all, HasSubstr("6000.0"));
  EXPECT_THAT(all, HasSubstr("0.60"));
  EXPECT_THAT(all, HasSubstr("30%"));
  EXPECT_THAT(line_with("generate-data-key=1,decrypt=1", " generate-data-key "),
              HasSubstr("3000.0"));
  EXPECT_THAT(line_with("generate-data-key=1,decrypt=1", " decrypt "), HasSubstr("3.000"));
  EXPECT_THAT(text, HasSubstr("16 in flight, generate-data-key: 1 x RESOURCE_EXHAUSTED: "
                              "LimitExceededException: too busy (shed)"));
  EXPECT_THAT(text, HasSubstr("16 in flight, decrypt: 1 x UNAVAILABLE: connection reset\n"));
}

TEST(FormatBenchReportTest, SaysInHowManyRounds) {
  BenchReport report = SampleReport();
  report.rounds = 4;
  EXPECT_THAT(FormatBenchReport(report), HasSubstr("2 s measured, in 4 rounds\n"));
  EXPECT_THAT(FormatBenchReportJson(report), HasSubstr("\"rounds\":4"));
}

TEST(FormatBenchReportJsonTest, IsOneObjectWithTheDocumentedFields) {
  const std::string text = FormatBenchReportJson(SampleReport());
  ASSERT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find('\n'), text.size() - 1);
  const nlohmann::json json = nlohmann::json::parse(text);
  EXPECT_EQ(json["endpoint"], "127.0.0.1:7700");
  EXPECT_EQ(json["tls"], true);
  EXPECT_EQ(json["keys"]["count"], 10);
  EXPECT_DOUBLE_EQ(json["keys"]["create_per_second"].get<double>(), 50.0);
  EXPECT_EQ(json["ciphertexts"], 256);
  ASSERT_EQ(json["runs"].size(), 2u);
  const nlohmann::json& baseline = json["runs"][0];
  EXPECT_EQ(baseline["mix"], "health");
  EXPECT_EQ(baseline["baseline"], true);
  EXPECT_DOUBLE_EQ(baseline["ok_per_second"].get<double>(), 10000);
  EXPECT_DOUBLE_EQ(baseline["latency_ms"]["p50"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(baseline["kmsd_cpu_percent"].get<double>(), 150);
  const nlohmann::json& mix = json["runs"][1];
  EXPECT_EQ(mix["concurrency"], 16);
  EXPECT_DOUBLE_EQ(mix["ratio_to_baseline"].get<double>(), 0.6);
  EXPECT_TRUE(mix["kmsd_cpu_percent"].is_null());
  EXPECT_EQ(mix["shed"], 1);
  EXPECT_EQ(mix["failed"], 1);
  ASSERT_EQ(mix["by_op"].size(), 2u);
  EXPECT_EQ(mix["by_op"][0]["op"], "generate-data-key");
  EXPECT_EQ(mix["by_op"][0]["errors"]["RESOURCE_EXHAUSTED"]["count"], 1);
  EXPECT_EQ(mix["by_op"][1]["errors"]["UNAVAILABLE"]["first"], "UNAVAILABLE: connection reset");
  for (const char* field : {"p50", "p99", "p999", "max", "mean"}) {
    EXPECT_TRUE(mix["by_op"][1]["latency_ms"][field].is_number()) << field;
  }
}

TEST(CheckEveryRunSucceededTest, NamesTheRunWhereNothingSucceeded) {
  BenchReport report = SampleReport();
  EXPECT_TRUE(CheckEveryRunSucceeded(report).ok());
  OpResult& decrypt = report.runs[1].by_op[1];
  decrypt.ok = 0;
  decrypt.errors = {{absl::StatusCode::kPermissionDenied, 5}, {absl::StatusCode::kUnavailable, 1}};
  decrypt.first_error.emplace(
      absl::StatusCode::kPermissionDenied,
      WithErrorType(absl::PermissionDeniedError("admin may not kms:Decrypt"),
                    error_type::kAccessDenied));
  const absl::Status status = CheckEveryRunSucceeded(report);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(status.message(),
            "no decrypt call succeeded at 16 in flight: admin may not kms:Decrypt");
  EXPECT_EQ(ErrorTypeOf(status), "AccessDeniedException");
}

}  // namespace
}  // namespace kms::bench
