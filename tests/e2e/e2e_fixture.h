// The fixture shared by the end-to-end tests: the real kmsd binary on a free
// loopback port with a fresh data directory (SoftHSM token + SQLite), and a
// C++ client connected to it. Also helpers for libfaketime and pkcs11-tool.
#ifndef KMS_TESTS_E2E_E2E_FIXTURE_H_
#define KMS_TESTS_E2E_E2E_FIXTURE_H_

#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "client/kms_client.h"
#include "tests/testing/daemon_process.h"

namespace kms::testing {

using client::KmsClient;

// kmsd's own objects on every token besides the CMK versions: the audit
// checkpoint signing key pair and the AES key that seals the audit log's
// context-hashing key, as pkcs11-tool labels them.
inline constexpr char kAuditSigningKeyLabel[] = "label:      kmsd-sign:kmsd-audit-signing-key";
inline constexpr char kAuditContextKeyLabel[] = "label:      kmsd:kmsd-audit-context-key";

class KmsdE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("kmsd-e2e");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
    data_dir_ = dir_->path() + "/data";
    StartDaemon();
  }

  // Starts kmsd in DaemonProcess's default plaintext mode, with `extra_yaml`
  // added to its config.
  void StartDaemon(std::vector<std::string> extra_env = {}, std::string extra_yaml = "") {
    DaemonProcess::Options options;
    options.data_dir = data_dir_;
    options.extra_env = std::move(extra_env);
    options.extra_yaml = std::move(extra_yaml);
    auto daemon = DaemonProcess::Start(std::move(options));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    auto kms = KmsClient::Connect(daemon_->endpoint());
    ASSERT_TRUE(kms.ok());
    client_ = *std::move(kms);
  }

  void Restart(std::vector<std::string> extra_env = {}) {
    // Close our connection first: kmsd's drain waits on idle clients too.
    client_.reset();
    auto code = daemon_->Stop(SIGTERM);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << daemon_->ReadLog();
    StartDaemon(std::move(extra_env));
  }

  // A key the test's principal (kE2eAdmin) may manage and use: the default
  // policy would let it manage the key only (separation of duties).
  std::string NewKey(const std::string& description = "e2e") {
    v1::CreateKeyRequest r;
    r.set_description(description);
    r.set_policy(kE2eKeyPolicy);
    auto created = client_->CreateKey(r);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->key_metadata().key_id() : "";
  }

  absl::StatusOr<v1::KeyMetadata> Describe(const std::string& key_id) {
    v1::DescribeKeyRequest r;
    r.set_key_id(key_id);
    auto d = client_->DescribeKey(r);
    if (!d.ok()) return d.status();
    return d->key_metadata();
  }

  absl::StatusOr<std::string> Decrypt(const std::string& blob,
                                      const std::map<std::string, std::string>& context = {}) {
    v1::DecryptRequest r;
    r.set_ciphertext_blob(blob);
    for (const auto& [k, v] : context) (*r.mutable_encryption_context())[k] = v;
    auto d = client_->Decrypt(r);
    if (!d.ok()) return d.status();
    return d->plaintext();
  }

  // pkcs11-tool's listing of the token's objects, logged in. Stop kmsd
  // first: one process owns a SoftHSM token at a time. Empty if pkcs11-tool
  // is not installed.
  std::string ListTokenObjects() {
    struct stat st {};
    if (::stat("/usr/bin/pkcs11-tool", &st) != 0) return "";
    std::ifstream pin_file(data_dir_ + "/user.pin");
    std::string pin;
    std::getline(pin_file, pin);
    CommandResult listed = RunCommand(
        {"/usr/bin/pkcs11-tool", "--module", KMS_SOFTHSM_MODULE, "--token-label", "kmsd",
         "--list-objects", "--login", "--pin", pin},
        {"SOFTHSM2_CONF=" + data_dir_ + "/softhsm2.conf"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    return listed.out;
  }

  // The CMK key versions in a ListTokenObjects() listing: its secret-key
  // objects, less the one kmsd keeps for its audit log.
  static int CountCmkObjects(const std::string& listing) {
    std::vector<std::string> blocks = absl::StrSplit(listing, "Secret Key Object");
    int count = 0;
    for (size_t i = 1; i < blocks.size(); ++i) {
      if (!absl::StrContains(blocks[i], kAuditContextKeyLabel)) ++count;
    }
    return count;
  }

  std::unique_ptr<TempDir> dir_;
  std::string data_dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<KmsClient> client_;
};

// libfaketime moves the daemon's clock; the data directory, token and database
// are real.
inline std::vector<std::string> FakeTimeEnv(const std::string& offset) {
  return {"LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
          "FAKETIME=" + offset, "FAKETIME_DONT_FAKE_MONOTONIC=1",
          "FAKETIME_DONT_RESET=1",
          // A sanitizer build of kmsd otherwise refuses a preloaded library.
          "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0"};
}

// A gtest parameter name for a crash point: "rotate:after-commit" becomes
// "rotate_after_commit".
inline std::string CrashPointTestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (c == ':' || c == '-') c = '_';
  }
  return name;
}

inline bool HaveFaketime() {
  struct stat st {};
  return ::stat("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", &st) == 0;
}

}  // namespace kms::testing

#endif  // KMS_TESTS_E2E_E2E_FIXTURE_H_
