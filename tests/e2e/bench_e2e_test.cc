// End-to-end: `kmsctl bench` against real kmsd processes, for a second or
// less each. These prove the benchmark runs and reports; they never check
// its numbers.
#include <dirent.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/testing/daemon_process.h"

namespace kms::testing {
namespace {

using ::testing::HasSubstr;

// The entries of `dir` other than . and ..
std::vector<std::string> DirectoryEntries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

// The table line that has all of `parts`; "" if none.
std::string LineWith(const std::string& text, const std::vector<std::string>& parts) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    bool all = true;
    for (const std::string& part : parts) all = all && absl::StrContains(line, part);
    if (all) return line;
    start = end + 1;
  }
  return "";
}

TEST(BenchStartDaemonE2eTest, StartsItsOwnKmsdBenchesItAndCleansUp) {
  auto tmp = TempDir::Create("bench-e2e-tmp");
  ASSERT_TRUE(tmp.ok()) << tmp.status();
  // No --kmsd: kmsctl finds the kmsd of its build tree. Its temporary
  // directory goes under our TMPDIR, which must be empty afterwards.
  const CommandResult r =
      RunCommand({KMS_KMSCTL_BINARY, "bench", "--start-daemon", "--duration", "1s", "--warmup",
                  "0.2s", "--concurrency", "4", "--keys", "3"},
                 {"TMPDIR=" + (*tmp)->path()}, "", absl::Minutes(3));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("(started for this run), mTLS, 2 channels, 1 client thread\n"));
  EXPECT_THAT(r.out, HasSubstr("keys: 3 created in "));
  EXPECT_THAT(r.out, HasSubstr(" CreateKey/s at 3 in flight"));
  EXPECT_THAT(r.out, HasSubstr("decrypt: 256 blobs made by GenerateDataKey beforehand\n"));
  const std::string header = LineWith(r.out, {"in flight", "mix", "op"});
  for (const char* column : {"ok/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "failed", "shed",
                             "vs health", "cpu kmsctl", "cpu kmsd"}) {
    EXPECT_THAT(header, HasSubstr(column));
  }
  // The default runs: the baseline, then generate-data-key and decrypt,
  // each with its ratio and both processes' CPU.
  EXPECT_THAT(LineWith(r.out, {"  4  health  ", "1.00"}), HasSubstr("%"));
  EXPECT_NE(LineWith(r.out, {"  4  generate-data-key  generate-data-key  "}), "") << r.out;
  EXPECT_NE(LineWith(r.out, {"  4  decrypt  ", "decrypt  "}), "") << r.out;
  EXPECT_THAT(r.err, HasSubstr("kmsctl bench: stopping kmsd"));
  EXPECT_TRUE(DirectoryEntries((*tmp)->path()).empty());
}

class BenchE2eTest : public KmsdE2eTest {};

TEST_F(BenchE2eTest, RunsEachMixAtEachConcurrencyAndPrintsJson) {
  // clang-format off
  const CommandResult r = RunKmsctl(daemon_->endpoint(), {
      "--json", "bench", "--principal", kE2eAdmin,
      "--ops", "encrypt=1,decrypt=1", "--ops", "create-key", "--concurrency", "1,2",
      "--keys", "2", "--ciphertexts", "5", "--no-baseline", "--channels", "1",
      "--duration", "0.5s", "--warmup", "0", "--rounds", "2"});
  // clang-format on
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["endpoint"], daemon_->endpoint());
  EXPECT_EQ(json["tls"], false);
  EXPECT_EQ(json["started_daemon"], false);
  EXPECT_EQ(json["channels"], 1);
  EXPECT_EQ(json["rounds"], 2);
  EXPECT_EQ(json["keys"]["count"], 2);
  EXPECT_EQ(json["keys"]["created"], true);
  EXPECT_EQ(json["keys"]["create_key"]["ok"], 2);
  EXPECT_EQ(json["ciphertexts"], 5);
  ASSERT_EQ(json["runs"].size(), 4u) << r.out;
  const std::vector<std::pair<int, std::string>> expected = {
      {1, "encrypt=1,decrypt=1"}, {1, "create-key"}, {2, "encrypt=1,decrypt=1"}, {2, "create-key"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const nlohmann::json& run = json["runs"][i];
    EXPECT_EQ(run["concurrency"], expected[i].first);
    EXPECT_EQ(run["mix"], expected[i].second);
    EXPECT_EQ(run["baseline"], false);
    EXPECT_TRUE(run["ratio_to_baseline"].is_null());
    EXPECT_TRUE(run["kmsd_cpu_percent"].is_null());  // not our child
    EXPECT_GT(run["ok"].get<int>(), 0) << run;
    EXPECT_EQ(run["failed"], 0) << run;
    for (const char* field : {"p50", "p99", "p999", "max", "mean"}) {
      EXPECT_TRUE(run["latency_ms"][field].is_number()) << field;
    }
  }
  ASSERT_EQ(json["runs"][0]["by_op"].size(), 2u);
  EXPECT_EQ(json["runs"][0]["by_op"][0]["op"], "encrypt");
  EXPECT_EQ(json["runs"][0]["by_op"][1]["op"], "decrypt");
}

// Overload is shed, not queued: beyond limits.max_in_flight_calls a call
// gets RESOURCE_EXHAUSTED (ThrottlingException) at once, and kmsd logs the
// count.
TEST_F(BenchE2eTest, CallsBeyondTheInFlightLimitAreShed) {
  ASSERT_EQ(*daemon_->Stop(SIGTERM), 0);
  StartDaemon({}, "limits:\n  max_in_flight_calls: 1\n");
  // clang-format off
  const CommandResult r = RunKmsctl(daemon_->endpoint(), {
      "--json", "bench", "--principal", kE2eAdmin, "--ops", "generate-data-key",
      "--concurrency", "16", "--keys", "1", "--setup-concurrency", "1", "--no-baseline",
      "--duration", "1s", "--warmup", "0"});
  // clang-format on
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json json = nlohmann::json::parse(r.out);
  ASSERT_EQ(json["runs"].size(), 1u) << r.out;
  const nlohmann::json& run = json["runs"][0];
  EXPECT_GT(run["ok"].get<int>(), 0) << run;
  EXPECT_GT(run["shed"].get<int>(), 0) << run;
  EXPECT_EQ(run["failed"], 0) << run;
  EXPECT_THAT(run["errors"].dump(), HasSubstr("ThrottlingException")) << run;
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(daemon_->ReadLog(), "calls in the last second"); }))
      << daemon_->ReadLog();
}

TEST_F(BenchE2eTest, UsesGivenKeysWithoutCreatingAny) {
  const std::string key_id = NewKey();
  const CommandResult r = RunKmsctl(
      daemon_->endpoint(), {"--json", "bench", "--key-id", key_id, "--ops", "generate-data-key",
                            "--concurrency", "2", "--duration", "0.5s", "--warmup", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["keys"]["count"], 1);
  EXPECT_EQ(json["keys"]["created"], false);
  ASSERT_EQ(json["runs"].size(), 2u);
  EXPECT_EQ(json["runs"][0]["mix"], "health");
  EXPECT_TRUE(json["runs"][1]["ratio_to_baseline"].is_number());
}

TEST_F(BenchE2eTest, ReportsDenialsAndFailsWhenNoCallSucceeds) {
  // Keys that let someone else use them: every GenerateDataKey is denied.
  const CommandResult r =
      RunKmsctl(daemon_->endpoint(), {"bench", "--principal", "someone-else", "--ops",
                                      "generate-data-key", "--concurrency", "1", "--keys", "1",
                                      "--duration", "0.3s", "--warmup", "0", "--no-baseline"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 in flight, generate-data-key: "));
  EXPECT_THAT(r.out, HasSubstr(" x PERMISSION_DENIED: AccessDeniedException: "));
  EXPECT_THAT(r.err, HasSubstr("kmsctl: AccessDeniedException: no generate-data-key call "
                               "succeeded at 1 in flight: "));
}

}  // namespace
}  // namespace kms::testing
