// End-to-end: the real kmsctl binary against the real kmsd binary.
#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tests/testing/daemon_process.h"

namespace kms {
namespace {

using testing::CommandResult;
using testing::DaemonProcess;
using testing::RunKmsctl;
using testing::TempDir;



bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

class KmsctlE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("kmsctl-e2e");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
    DaemonProcess::Options options;
    options.data_dir = dir_->path() + "/data";
    auto daemon = DaemonProcess::Start(options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }

  CommandResult Kmsctl(const std::vector<std::string>& args, const std::string& input = "") {
    return RunKmsctl(daemon_->endpoint(), args, input);
  }

  // Creates a key and returns its id, read from the --json output.
  std::string NewKey(const std::string& alias = "") {
    CommandResult r = Kmsctl({"--json", "create-key", "--description", "from kmsctl", "--policy", kms::testing::kE2eKeyPolicy});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string marker = "\"key_id\":\"";
    const size_t at = r.out.find(marker);
    EXPECT_NE(at, std::string::npos) << r.out;
    if (at == std::string::npos) return "";
    const std::string key_id = r.out.substr(at + marker.size(), 36);
    if (!alias.empty()) {
      CommandResult a = Kmsctl({"create-alias", alias, key_id});
      EXPECT_EQ(a.exit_code, 0) << a.err;
    }
    return key_id;
  }

  std::string Path(const std::string& name) const { return dir_->path() + "/" + name; }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(KmsctlE2eTest, KeyLifecycleThroughTheCli) {
  const std::string key_id = NewKey("alias/cli");
  CommandResult described = Kmsctl({"describe-key", "alias/cli"});
  ASSERT_EQ(described.exit_code, 0) << described.err;
  EXPECT_TRUE(absl::StrContains(described.out, key_id));
  EXPECT_TRUE(absl::StrContains(described.out, "ENABLED"));

  EXPECT_EQ(Kmsctl({"disable-key", key_id}).exit_code, 0);
  EXPECT_TRUE(absl::StrContains(Kmsctl({"describe-key", key_id}).out, "DISABLED"));
  EXPECT_EQ(Kmsctl({"enable-key", key_id}).exit_code, 0);
  EXPECT_EQ(Kmsctl({"update-key-description", key_id, "renamed"}).exit_code, 0);
  EXPECT_TRUE(absl::StrContains(Kmsctl({"describe-key", key_id}).out, "renamed"));

  EXPECT_EQ(Kmsctl({"tag-resource", key_id, "team=ops", "env=prod"}).exit_code, 0);
  CommandResult tags = Kmsctl({"list-resource-tags", key_id});
  EXPECT_TRUE(absl::StrContains(tags.out, "team")) << tags.out;
  EXPECT_TRUE(absl::StrContains(tags.out, "prod")) << tags.out;
  EXPECT_EQ(Kmsctl({"untag-resource", key_id, "env"}).exit_code, 0);
  EXPECT_FALSE(absl::StrContains(Kmsctl({"list-resource-tags", key_id}).out, "prod"));

  CommandResult aliases = Kmsctl({"list-aliases"});
  EXPECT_TRUE(absl::StrContains(aliases.out, "alias/cli")) << aliases.out;
  EXPECT_TRUE(absl::StrContains(Kmsctl({"list-keys"}).out, key_id));

  CommandResult scheduled = Kmsctl({"schedule-key-deletion", key_id, "--pending-window-in-days", "7"});
  ASSERT_EQ(scheduled.exit_code, 0) << scheduled.err;
  EXPECT_TRUE(absl::StrContains(Kmsctl({"describe-key", key_id}).out, "PENDING_DELETION"));
  EXPECT_EQ(Kmsctl({"cancel-key-deletion", key_id}).exit_code, 0);
  EXPECT_TRUE(absl::StrContains(Kmsctl({"describe-key", key_id}).out, "DISABLED"));
}

TEST_F(KmsctlE2eTest, EncryptDecryptAndReEncryptFiles) {
  NewKey("alias/a");
  NewKey("alias/b");
  testing::WriteTestFile(Path("secret.txt"), "the launch codes");
  CommandResult enc = Kmsctl({"encrypt", "alias/a", "--plaintext-file", Path("secret.txt"),
                              "--context", "purpose=test", "--output", Path("blob")});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  CommandResult dec = Kmsctl({"decrypt", "--ciphertext-file", Path("blob"), "--context",
                              "purpose=test"});
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_EQ(dec.out, "the launch codes");

  CommandResult wrong = Kmsctl({"decrypt", "--ciphertext-file", Path("blob"), "--context",
                                "purpose=other"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(wrong.err, "kmsctl: InvalidCiphertextException: ")) << wrong.err;

  CommandResult re = Kmsctl({"re-encrypt", "--ciphertext-file", Path("blob"), "--source-context",
                             "purpose=test", "--destination-key-id", "alias/b",
                             "--destination-context", "purpose=moved", "--output", Path("blob2")});
  ASSERT_EQ(re.exit_code, 0) << re.err;
  CommandResult incorrect = Kmsctl({"decrypt", "--ciphertext-file", Path("blob2"), "--context",
                                    "purpose=moved", "--key-id", "alias/a"});
  EXPECT_EQ(incorrect.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(incorrect.err, "IncorrectKeyException")) << incorrect.err;
  EXPECT_EQ(Kmsctl({"decrypt", "--ciphertext-file", Path("blob2"), "--context", "purpose=moved",
                    "--key-id", "alias/b"})
                .out,
            "the launch codes");
}

TEST_F(KmsctlE2eTest, EnvelopeFilesRoundTripAndTamperingLeavesNoOutput) {
  NewKey("alias/files");
  std::string data(1 << 20, '\0');  // 1 MiB: sixteen 64 KiB chunks
  std::mt19937 rng(7);
  for (char& c : data) c = static_cast<char>(rng());
  testing::WriteTestFile(Path("in.bin"), data);
  CommandResult enc = Kmsctl({"encrypt-file", "alias/files", Path("in.bin"), Path("in.kms"),
                              "--context", "file=in.bin"});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  CommandResult info = Kmsctl({"envelope-info", Path("in.kms")});
  EXPECT_TRUE(absl::StrContains(info.out, "file=in.bin")) << info.out;
  CommandResult dec = Kmsctl({"decrypt-file", Path("in.kms"), Path("out.bin")});
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_EQ(testing::ReadTestFile(Path("out.bin")), data);

  std::string tampered = testing::ReadTestFile(Path("in.kms"));
  tampered[tampered.size() / 2] ^= 0x01;
  testing::WriteTestFile(Path("bad.kms"), tampered);
  CommandResult bad = Kmsctl({"decrypt-file", Path("bad.kms"), Path("bad.out")});
  EXPECT_EQ(bad.exit_code, 4) << bad.err;
  EXPECT_FALSE(Exists(Path("bad.out")));

  std::string truncated = testing::ReadTestFile(Path("in.kms"));
  truncated.resize(truncated.size() - 100);
  testing::WriteTestFile(Path("short.kms"), truncated);
  CommandResult shortened = Kmsctl({"decrypt-file", Path("short.kms"), Path("short.out")});
  EXPECT_EQ(shortened.exit_code, 4) << shortened.err;
  EXPECT_FALSE(Exists(Path("short.out")));
}

TEST_F(KmsctlE2eTest, ExitCodesSeparateUsageServiceAndConnectionErrors) {
  CommandResult usage = Kmsctl({"create-key", "--no-such-flag"});
  EXPECT_EQ(usage.exit_code, 2);
  CommandResult bad_pair = Kmsctl({"encrypt", "alias/x", "--plaintext", "p", "--context", "novalue"});
  EXPECT_EQ(bad_pair.exit_code, 2) << bad_pair.err;
  CommandResult service = Kmsctl({"describe-key", "alias/missing"});
  EXPECT_EQ(service.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(service.err, "kmsctl: NotFoundException: ")) << service.err;
  CommandResult unreachable = RunKmsctl("127.0.0.1:1", {"list-keys"});
  EXPECT_EQ(unreachable.exit_code, 3) << unreachable.err;
}

TEST_F(KmsctlE2eTest, DataKeysAndRandomFromTheCli) {
  NewKey("alias/dk");
  CommandResult dk = Kmsctl({"generate-data-key", "alias/dk", "--key-spec", "AES_256",
                             "--plaintext-output", Path("dk.plain"), "--ciphertext-output",
                             Path("dk.blob")});
  ASSERT_EQ(dk.exit_code, 0) << dk.err;
  struct stat st {};
  ASSERT_EQ(::stat(Path("dk.plain").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(testing::ReadTestFile(Path("dk.plain")).size(), 32u);
  CommandResult dec = Kmsctl({"decrypt", "--ciphertext-file", Path("dk.blob")});
  ASSERT_EQ(dec.exit_code, 0) << dec.err;
  EXPECT_EQ(dec.out, testing::ReadTestFile(Path("dk.plain")));
  CommandResult both = Kmsctl({"generate-data-key", "alias/dk", "--key-spec", "AES_256",
                               "--number-of-bytes", "16"});
  EXPECT_NE(both.exit_code, 0);
  CommandResult random = Kmsctl({"generate-random", "24"});
  ASSERT_EQ(random.exit_code, 0) << random.err;
  EXPECT_EQ(absl::StripTrailingAsciiWhitespace(random.out).size(), 32u);  // base64 of 24 bytes
}

}  // namespace
}  // namespace kms
