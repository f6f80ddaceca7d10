// End-to-end rotation: the real kmsd rotating on its schedule (its clock moved
// by libfaketime), and killed at every step of a rotation or key creation.
#include <signal.h>

#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/testing/status_matchers.h"

namespace kms {
namespace {

using RotationE2eTest = testing::KmsdE2eTest;
using testing::FakeTimeEnv;
using testing::HaveFaketime;

std::vector<v1::RotationsListEntry> Rotations(client::KmsClient& client, const std::string& key) {
  v1::ListKeyRotationsRequest r;
  r.set_key_id(key);
  auto listed = client.ListKeyRotations(r);
  EXPECT_TRUE(listed.ok()) << listed.status();
  if (!listed.ok()) return {};
  return {listed->rotations().begin(), listed->rotations().end()};
}

TEST_F(RotationE2eTest, DaemonRotatesOnItsScheduleOncePerDowntime) {
  if (!HaveFaketime()) GTEST_SKIP() << "libfaketime not installed";
  v1::CreateKeyRequest create;
  create.set_enable_key_rotation(true);
  create.set_rotation_period_in_days(30);
  create.set_policy(testing::kE2eKeyPolicy);
  auto created = client_->CreateKey(create);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string key_id = created->key_metadata().key_id();
  const std::string original = created->key_metadata().current_key_version_id();
  v1::EncryptRequest e;
  e.set_key_id(key_id);
  e.set_plaintext("made under the original");
  auto blob = client_->Encrypt(e);
  ASSERT_TRUE(blob.ok());

  Restart(FakeTimeEnv("+29d"));
  EXPECT_EQ(Describe(key_id)->current_key_version_id(), original);

  // Down for three periods: one rotation at start-up, not three.
  Restart(FakeTimeEnv("+95d"));
  const std::string rotated = Describe(key_id)->current_key_version_id();
  EXPECT_NE(rotated, original);
  auto rotations = Rotations(*client_, key_id);
  ASSERT_EQ(rotations.size(), 1u);
  EXPECT_EQ(rotations[0].rotation_type(), v1::AUTOMATIC);
  EXPECT_TRUE(rotations[0].current());
  EXPECT_EQ(*Decrypt(blob->ciphertext_blob()), "made under the original");
  EXPECT_EQ(Describe(key_id)->key_version_count(), 2);

  v1::GetKeyRotationStatusRequest status;
  status.set_key_id(key_id);
  auto s = client_->GetKeyRotationStatus(status);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->key_rotation_enabled());
  EXPECT_EQ(s->rotation_period_in_days(), 30);

  // The restart at the same fake time rotates nothing more.
  Restart(FakeTimeEnv("+95d"));
  EXPECT_EQ(Describe(key_id)->current_key_version_id(), rotated);
}

TEST_F(RotationE2eTest, EveryPastVersionDecryptsAfterManyRotationsAndARestart) {
  const std::string key_id = NewKey();
  std::vector<std::pair<std::string, std::string>> blobs;
  for (int i = 0; i < 10; ++i) {
    v1::EncryptRequest e;
    e.set_key_id(key_id);
    e.set_plaintext("v" + std::to_string(i));
    blobs.push_back({client_->Encrypt(e)->ciphertext_blob(), e.plaintext()});
    v1::RotateKeyOnDemandRequest r;
    r.set_key_id(key_id);
    ASSERT_TRUE(client_->RotateKeyOnDemand(r).ok());
  }
  Restart();
  for (const auto& [blob, text] : blobs) EXPECT_EQ(*Decrypt(blob), text);
  EXPECT_EQ(Rotations(*client_, key_id).size(), 10u);
}

TEST_F(RotationE2eTest, ConfiguredUsageThresholdRotatesTheKey) {
  client_.reset();
  ASSERT_EQ(*daemon_->Stop(SIGTERM), 0);
  StartDaemon({}, "rotation:\n  usage_threshold: 3\n  usage_hard_limit: 5\n"
                  "  usage_reservation_block: 2\n");
  const std::string key_id = NewKey();
  const std::string original = Describe(key_id)->current_key_version_id();
  v1::GenerateDataKeyRequest gdk;
  gdk.set_key_id(key_id);
  gdk.set_key_spec(v1::AES_256);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client_->GenerateDataKey(gdk).ok()) << i;
  EXPECT_NE(Describe(key_id)->current_key_version_id(), original);
  auto rotations = Rotations(*client_, key_id);
  ASSERT_EQ(rotations.size(), 1u);
  EXPECT_EQ(rotations[0].rotation_type(), v1::USAGE_LIMIT);
}

TEST_F(RotationE2eTest, RotationThroughKmsctl) {
  const std::string key_id = NewKey();
  auto kmsctl = [&](std::vector<std::string> args) {
    return testing::RunKmsctl(daemon_->endpoint(), args);
  };
  auto enabled = kmsctl({"enable-key-rotation", key_id, "--rotation-period-in-days", "90"});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.err;
  auto status = kmsctl({"get-key-rotation-status", key_id});
  EXPECT_TRUE(absl::StrContains(status.out, "90")) << status.out;
  auto rotated = kmsctl({"rotate-key-on-demand", key_id});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  const std::string current = Describe(key_id)->current_key_version_id();
  EXPECT_TRUE(absl::StrContains(rotated.out, current)) << rotated.out;
  auto listed = kmsctl({"list-key-rotations", key_id});
  EXPECT_TRUE(absl::StrContains(listed.out, "ON_DEMAND")) << listed.out;
  auto described = kmsctl({"describe-key", key_id});
  EXPECT_TRUE(absl::StrContains(described.out, "key_version_count")) << described.out;
  EXPECT_TRUE(absl::StrContains(described.out, current)) << described.out;
  auto bad = kmsctl({"enable-key-rotation", key_id, "--rotation-period-in-days", "0"});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "ValidationException")) << bad.err;
  const std::string unrotated = NewKey();
  auto report = kmsctl({"rotation-compliance-report"});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  EXPECT_TRUE(absl::StrContains(report.out, unrotated)) << report.out;
  EXPECT_TRUE(absl::StrContains(report.out, "ROTATION_DISABLED")) << report.out;
  EXPECT_FALSE(absl::StrContains(report.out, key_id)) << "a compliant key is listed";
}

// kill -9 at each step of key creation and of rotation, then restart: the key
// is on its old current version or its new one, every old ciphertext
// decrypts, and the token holds exactly one object per recorded version.
class CrashPointTest : public testing::KmsdE2eTest,
                       public ::testing::WithParamInterface<std::string> {};

TEST_P(CrashPointTest, KillAtThisPointLeavesOldStateOrNewAndNoOrphans) {
  const std::string point = GetParam();
  const std::string key_id = NewKey();
  const std::string original = Describe(key_id)->current_key_version_id();
  v1::EncryptRequest e;
  e.set_key_id(key_id);
  e.set_plaintext("before the crash");
  auto blob = client_->Encrypt(e);
  ASSERT_TRUE(blob.ok());

  // Restart with the crash point armed, then make the call that reaches it.
  client_.reset();
  ASSERT_EQ(*daemon_->Stop(SIGTERM), 0);
  StartDaemon({}, "testing:\n  crash_point: " + point + "\n");
  absl::Status call;
  if (absl::StartsWith(point, "rotate:")) {
    v1::RotateKeyOnDemandRequest r;
    r.set_key_id(key_id);
    call = client_->RotateKeyOnDemand(r).status();
  } else {
    call = client_->CreateKey(v1::CreateKeyRequest()).status();
  }
  EXPECT_FALSE(call.ok()) << "the crash point was not reached";
  auto code = daemon_->Stop(SIGTERM);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 128 + SIGKILL) << daemon_->ReadLog();

  StartDaemon();
  const std::string current = Describe(key_id)->current_key_version_id();
  EXPECT_TRUE(current == original || absl::StartsWith(point, "rotate:")) << current;
  EXPECT_EQ(*Decrypt(blob->ciphertext_blob()), "before the crash");
  e.set_plaintext("after the crash");
  auto after = client_->Encrypt(e);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*Decrypt(after->ciphertext_blob()), "after the crash");

  // Every key's versions, against the token's objects.
  int versions = 0;
  auto keys = client_->ListKeys(v1::ListKeysRequest());
  ASSERT_TRUE(keys.ok());
  for (const auto& k : keys->keys()) versions += Describe(k.key_id())->key_version_count();
  client_.reset();
  ASSERT_EQ(*daemon_->Stop(SIGTERM), 0);
  const std::string objects = ListTokenObjects();
  if (objects.empty()) GTEST_SKIP() << "pkcs11-tool not installed; orphan check skipped";
  EXPECT_EQ(CountCmkObjects(objects), versions) << objects;
}

INSTANTIATE_TEST_SUITE_P(
    Points, CrashPointTest,
    ::testing::Values("create:after-intent", "create:after-generate", "create:after-commit",
                      "rotate:after-intent", "rotate:after-generate", "rotate:after-commit"),
    testing::CrashPointTestName);

}  // namespace
}  // namespace kms
