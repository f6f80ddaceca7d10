// Key rotation in KeyService: the RPCs, the scheduler (driven by a FakeClock),
// usage limits and the compliance report, over FakeHsm and SQLite.
#include <gtest/gtest.h>

#include <memory>
#include <set>

#include "daemon/common/errors.h"
#include "daemon/common/uuid.h"
#include "daemon/keystore/sqlite_key_store.h"
#include "daemon/service/key_service.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"
#include "tests/testing/status_matchers.h"
#include "tests/daemon/service/service_fixture.h"

namespace kms::service {
namespace {

using ::kms::testing::FakeClock;
using ::kms::testing::FakeHsm;

constexpr absl::Duration kDay = absl::Hours(24);

class RotationTest : public ServiceTest {
 protected:
  // A key with scheduled rotation every `rotation_days` days.
  std::string NewRotatingKey(int rotation_days) {
    v1::CreateKeyRequest r;
    r.set_enable_key_rotation(true);
    r.set_rotation_period_in_days(rotation_days);
    auto created = service_->CreateKey(r);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->key_metadata().key_id() : "";
  }

  std::string CurrentVersion(const std::string& key_id) {
    return Describe(key_id).current_key_version_id();
  }

  // The key version a blob was made under (bytes 17..32 of format v1).
  static std::string BlobVersion(const std::string& blob) {
    return UuidFromBytes(blob.substr(17, 16)).value_or("");
  }

  absl::StatusOr<v1::RotateKeyOnDemandResponse> RotateNow(const std::string& key_id) {
    v1::RotateKeyOnDemandRequest r;
    r.set_key_id(key_id);
    return service_->RotateKeyOnDemand(r);
  }

  absl::Status EnableRotation(const std::string& key_id, std::optional<int> days) {
    v1::EnableKeyRotationRequest r;
    r.set_key_id(key_id);
    if (days) r.set_rotation_period_in_days(*days);
    return service_->EnableKeyRotation(r).status();
  }

  v1::GetKeyRotationStatusResponse Status(const std::string& key_id) {
    v1::GetKeyRotationStatusRequest r;
    r.set_key_id(key_id);
    return *service_->GetKeyRotationStatus(r);
  }

  std::vector<v1::RotationsListEntry> Rotations(const std::string& key_id) {
    v1::ListKeyRotationsRequest r;
    r.set_key_id(key_id);
    auto listed = service_->ListKeyRotations(r);
    EXPECT_TRUE(listed.ok()) << listed.status();
    return {listed->rotations().begin(), listed->rotations().end()};
  }

};

// ---------------------------------------------------------------- on demand

TEST_F(RotationTest, OnDemandRotationMakesNewMaterialCurrentAndOldStillDecrypts) {
  const std::string key_id = NewKey();
  v1::CreateAliasRequest alias;
  alias.set_alias_name("alias/rotating");
  alias.set_target_key_id(key_id);
  ASSERT_TRUE(service_->CreateAlias(alias).ok());
  const std::string v1 = CurrentVersion(key_id);
  auto old_blob = Encrypt("alias/rotating", "before");
  ASSERT_TRUE(old_blob.ok());

  auto rotated = RotateNow("alias/rotating");
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  const std::string v2 = rotated->key_version_id();
  EXPECT_NE(v2, v1);
  EXPECT_EQ(CurrentVersion(key_id), v2);
  EXPECT_EQ(rotated->key_id(), service_->resource_names().KeyArn(key_id));
  EXPECT_TRUE(fake_hsm_.HasKey(v1));
  EXPECT_TRUE(fake_hsm_.HasKey(v2));

  auto new_blob = Encrypt("alias/rotating", "after");
  ASSERT_TRUE(new_blob.ok());
  EXPECT_EQ(BlobVersion(*new_blob), v2);
  EXPECT_EQ(*Decrypt(*old_blob), "before");
  EXPECT_EQ(*Decrypt(*new_blob), "after");

  v1::DescribeKeyRequest describe;
  describe.set_key_id(key_id);
  EXPECT_EQ(service_->DescribeKey(describe)->key_metadata().key_version_count(), 2);
}

TEST_F(RotationTest, ReEncryptToTheSameKeyMovesABlobToTheCurrentVersion) {
  const std::string key_id = NewKey();
  auto blob = Encrypt(key_id, "secret");
  ASSERT_TRUE(RotateNow(key_id).ok());
  v1::ReEncryptRequest r;
  r.set_ciphertext_blob(*blob);
  r.set_destination_key_id(key_id);
  auto moved = service_->ReEncrypt(r);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(BlobVersion(moved->ciphertext_blob()), CurrentVersion(key_id));
  EXPECT_EQ(*Decrypt(moved->ciphertext_blob()), "secret");
}

TEST_F(RotationTest, EveryPastVersionDecryptsAfterManyRotationsAndARestart) {
  const std::string key_id = NewKey();
  std::vector<std::pair<std::string, std::string>> blobs;
  for (int i = 0; i < 12; ++i) {
    const std::string text = "message " + std::to_string(i);
    blobs.push_back({*Encrypt(key_id, text), text});
    ASSERT_TRUE(RotateNow(key_id).ok());
  }
  Restart();
  std::set<std::string> versions;
  for (const auto& [blob, text] : blobs) {
    EXPECT_EQ(*Decrypt(blob), text);
    versions.insert(BlobVersion(blob));
  }
  EXPECT_EQ(versions.size(), 12u);
}

TEST_F(RotationTest, OnDemandRotationsStopAtTheLimit) {
  options_.on_demand_rotation_limit = 3;
  Restart();
  const std::string key_id = NewKey();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(RotateNow(key_id).ok());
  const std::string current = CurrentVersion(key_id);
  EXPECT_ERROR(RotateNow(key_id), kResourceExhausted, "LimitExceededException");
  EXPECT_EQ(CurrentVersion(key_id), current);
}

TEST_F(RotationTest, OnlyEnabledKmsKeysRotateOnDemand) {
  const std::string disabled = NewKey();
  v1::DisableKeyRequest disable;
  disable.set_key_id(disabled);
  ASSERT_TRUE(service_->DisableKey(disable).ok());
  EXPECT_ERROR(RotateNow(disabled), kFailedPrecondition, "DisabledException");

  const std::string doomed = NewKey();
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(doomed);
  ASSERT_TRUE(service_->ScheduleKeyDeletion(schedule).ok());
  EXPECT_ERROR(RotateNow(doomed), kFailedPrecondition, "KMSInvalidStateException");

  v1::CreateKeyRequest external;
  external.set_origin(v1::EXTERNAL);
  const std::string imported = service_->CreateKey(external)->key_metadata().key_id();
  EXPECT_ERROR(RotateNow(imported), kFailedPrecondition, "UnsupportedOperationException");
  EXPECT_ERROR(RotateNow("alias/none"), kNotFound, "NotFoundException");
  EXPECT_EQ(fake_hsm_.ListKeyIds().size(), 2u);  // no material was made for any of them
}

TEST_F(RotationTest, FailedRotationChangesNothing) {
  const std::string key_id = NewKey();
  const std::string before = CurrentVersion(key_id);
  faulty_->FailOperation("GenerateAesKey", absl::UnavailableError("token gone"));
  EXPECT_ERROR(RotateNow(key_id), kUnavailable, "KeyUnavailableException");
  faulty_->ClearFaults();
  EXPECT_EQ(CurrentVersion(key_id), before);
  EXPECT_TRUE(store_->ListIntents()->empty());
  EXPECT_TRUE(Rotations(key_id).empty());
}

TEST_F(RotationTest, InterruptedRotationIsRolledBackAtStartUp) {
  const std::string key_id = NewKey();
  const std::string before = CurrentVersion(key_id);
  // The state a kill -9 after the HSM step of a rotation leaves behind.
  ASSERT_TRUE(fake_hsm_.GenerateAesKey("half-made").ok());
  ASSERT_TRUE(store_->AddIntent({0, "create_version", key_id, "half-made", clock_.Now()}).ok());
  Restart();
  ASSERT_TRUE(service_->Recover().ok());
  EXPECT_FALSE(fake_hsm_.HasKey("half-made"));
  EXPECT_EQ(CurrentVersion(key_id), before);
  EXPECT_TRUE(Encrypt(key_id, "fine").ok());
}

// ---------------------------------------------------------------- settings

TEST_F(RotationTest, EnableDisableAndStatus) {
  const std::string key_id = NewKey();
  EXPECT_FALSE(Status(key_id).key_rotation_enabled());
  ASSERT_TRUE(EnableRotation(key_id, 90).ok());
  auto status = Status(key_id);
  EXPECT_TRUE(status.key_rotation_enabled());
  EXPECT_EQ(status.rotation_period_in_days(), 90);
  EXPECT_EQ(status.next_rotation_date().seconds(), absl::ToUnixSeconds(clock_.Now() + 90 * kDay));
  EXPECT_FALSE(status.has_on_demand_rotation_start_date());

  v1::DisableKeyRotationRequest disable;
  disable.set_key_id(key_id);
  ASSERT_TRUE(service_->DisableKeyRotation(disable).ok());
  status = Status(key_id);
  EXPECT_FALSE(status.key_rotation_enabled());
  EXPECT_FALSE(status.has_next_rotation_date());
  EXPECT_EQ(status.rotation_period_in_days(), 90);  // kept

  ASSERT_TRUE(EnableRotation(key_id, std::nullopt).ok());  // the kept period
  EXPECT_EQ(Status(key_id).rotation_period_in_days(), 90);
}

TEST_F(RotationTest, DefaultPeriodIs365Days) {
  const std::string key_id = NewKey();
  ASSERT_TRUE(EnableRotation(key_id, std::nullopt).ok());
  EXPECT_EQ(Status(key_id).rotation_period_in_days(), 365);
}

TEST_F(RotationTest, PeriodMustBeInTheConfiguredRange) {
  const std::string key_id = NewKey();
  for (int bad : {0, -1, 2561}) {
    EXPECT_ERROR(EnableRotation(key_id, bad), kInvalidArgument, "ValidationException");
  }
  EXPECT_FALSE(Status(key_id).key_rotation_enabled());
  options_.min_rotation_period_days = 30;
  options_.max_rotation_period_days = 90;
  Restart();
  EXPECT_ERROR(EnableRotation(key_id, 29), kInvalidArgument, "ValidationException");
  EXPECT_ERROR(EnableRotation(key_id, 91), kInvalidArgument, "ValidationException");
  EXPECT_TRUE(EnableRotation(key_id, 30).ok());
  EXPECT_TRUE(EnableRotation(key_id, 90).ok());
}

TEST_F(RotationTest, CreateKeyCanEnableRotation) {
  const std::string key_id = NewRotatingKey(30);
  auto status = Status(key_id);
  EXPECT_TRUE(status.key_rotation_enabled());
  EXPECT_EQ(status.rotation_period_in_days(), 30);
  v1::CreateKeyRequest bad;
  bad.set_enable_key_rotation(true);
  bad.set_rotation_period_in_days(0);
  EXPECT_ERROR(service_->CreateKey(bad), kInvalidArgument, "ValidationException");
  v1::CreateKeyRequest period_alone;
  period_alone.set_rotation_period_in_days(30);
  EXPECT_ERROR(service_->CreateKey(period_alone), kInvalidArgument, "ValidationException");
}

TEST_F(RotationTest, RotationSettingsRefuseImportedAndUnusableKeys) {
  v1::CreateKeyRequest external;
  external.set_origin(v1::EXTERNAL);
  const std::string imported = service_->CreateKey(external)->key_metadata().key_id();
  EXPECT_ERROR(EnableRotation(imported, 30), kFailedPrecondition, "UnsupportedOperationException");
  const std::string disabled = NewKey();
  v1::DisableKeyRequest disable;
  disable.set_key_id(disabled);
  ASSERT_TRUE(service_->DisableKey(disable).ok());
  EXPECT_ERROR(EnableRotation(disabled, 30), kFailedPrecondition, "DisabledException");
}

// ---------------------------------------------------------------- scheduler

TEST_F(RotationTest, ScheduledRotationHappensWhenDueAndNotBefore) {
  const std::string key_id = NewRotatingKey(30);
  const std::string v1 = CurrentVersion(key_id);
  clock_.Advance(30 * kDay - absl::Seconds(1));
  EXPECT_EQ(*service_->RotateDueKeys(), 0);
  EXPECT_EQ(CurrentVersion(key_id), v1);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(*service_->RotateDueKeys(), 1);
  EXPECT_NE(CurrentVersion(key_id), v1);
  EXPECT_EQ(*service_->RotateDueKeys(), 0);
  auto rotations = Rotations(key_id);
  ASSERT_EQ(rotations.size(), 1u);
  EXPECT_EQ(rotations[0].rotation_type(), v1::AUTOMATIC);
  EXPECT_TRUE(rotations[0].current());
  EXPECT_EQ(Status(key_id).next_rotation_date().seconds(),
            absl::ToUnixSeconds(clock_.Now() + 30 * kDay));
}

TEST_F(RotationTest, DowntimeOverSeveralPeriodsRotatesOnce) {
  const std::string key_id = NewRotatingKey(30);
  clock_.Advance(100 * kDay);  // three periods and more while "down"
  Restart();
  EXPECT_EQ(*service_->RotateDueKeys(), 1);
  EXPECT_EQ(*service_->RotateDueKeys(), 0);
  EXPECT_EQ(Rotations(key_id).size(), 1u);
  EXPECT_EQ(Status(key_id).next_rotation_date().seconds(),
            absl::ToUnixSeconds(clock_.Now() + 30 * kDay));
}

TEST_F(RotationTest, DisabledAndPendingDeletionKeysDoNotRotateUntilBack) {
  const std::string disabled = NewRotatingKey(30);
  const std::string doomed = NewRotatingKey(30);
  v1::DisableKeyRequest disable;
  disable.set_key_id(disabled);
  ASSERT_TRUE(service_->DisableKey(disable).ok());
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(doomed);
  ASSERT_TRUE(service_->ScheduleKeyDeletion(schedule).ok());
  clock_.Advance(31 * kDay);
  EXPECT_EQ(*service_->RotateDueKeys(), 0);

  v1::EnableKeyRequest enable;
  enable.set_key_id(disabled);
  ASSERT_TRUE(service_->EnableKey(enable).ok());
  v1::CancelKeyDeletionRequest cancel;
  cancel.set_key_id(doomed);
  ASSERT_TRUE(service_->CancelKeyDeletion(cancel).ok());  // back as DISABLED
  EXPECT_EQ(*service_->RotateDueKeys(), 1);               // the re-enabled one
  enable.set_key_id(doomed);
  ASSERT_TRUE(service_->EnableKey(enable).ok());
  EXPECT_EQ(*service_->RotateDueKeys(), 1);
  EXPECT_EQ(Rotations(disabled).size(), 1u);
  EXPECT_EQ(Rotations(doomed).size(), 1u);
}

TEST_F(RotationTest, FailedScheduledRotationIsRetriedWithBackoffAndLosesNothing) {
  const std::string key_id = NewRotatingKey(30);
  const std::string v1 = CurrentVersion(key_id);
  auto blob = Encrypt(key_id, "kept");
  clock_.Advance(30 * kDay);
  faulty_->FailOperation("GenerateAesKey", absl::UnavailableError("token gone"));
  EXPECT_EQ(*service_->RotateDueKeys(), 0);
  EXPECT_EQ(faulty_->CallCount("GenerateAesKey"), 2);  // CreateKey's, then one attempt
  EXPECT_EQ(*service_->RotateDueKeys(), 0);             // backing off: no new attempt
  EXPECT_EQ(faulty_->CallCount("GenerateAesKey"), 2);
  faulty_->ClearFaults();
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(*service_->RotateDueKeys(), 1);
  EXPECT_NE(CurrentVersion(key_id), v1);
  EXPECT_EQ(*Decrypt(*blob), "kept");
  EXPECT_TRUE(store_->ListIntents()->empty());
}

TEST_F(RotationTest, OnDemandRotationLeavesTheScheduleAlone) {
  const std::string key_id = NewRotatingKey(30);
  const int64_t next = Status(key_id).next_rotation_date().seconds();
  clock_.Advance(10 * kDay);
  ASSERT_TRUE(RotateNow(key_id).ok());
  EXPECT_EQ(Status(key_id).next_rotation_date().seconds(), next);
}

// ---------------------------------------------------------------- usage

TEST_F(RotationTest, UsageThresholdRotatesTheKey) {
  options_.usage_rotation_threshold = 5;
  options_.usage_hard_limit = 8;
  options_.usage_reservation_block = 2;
  Restart();
  const std::string key_id = NewKey();
  const std::string v1 = CurrentVersion(key_id);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Encrypt(key_id, "x").ok());
  EXPECT_EQ(CurrentVersion(key_id), v1);
  ASSERT_TRUE(Encrypt(key_id, "x").ok());  // the fifth crosses the threshold
  EXPECT_NE(CurrentVersion(key_id), v1);
  auto rotations = Rotations(key_id);
  ASSERT_EQ(rotations.size(), 1u);
  EXPECT_EQ(rotations[0].rotation_type(), v1::USAGE_LIMIT);
  // GenerateDataKey and ReEncrypt count too.
  v1::GenerateDataKeyRequest gdk;
  gdk.set_key_id(key_id);
  gdk.set_key_spec(v1::AES_256);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(service_->GenerateDataKey(gdk).ok());
  EXPECT_EQ(Rotations(key_id).size(), 2u);
}

TEST_F(RotationTest, HardLimitRefusesToEncryptRatherThanExceedIt) {
  options_.usage_rotation_threshold = 3;
  options_.usage_hard_limit = 4;
  options_.usage_reservation_block = 2;
  Restart();
  const std::string key_id = NewKey();
  const std::string v1 = CurrentVersion(key_id);
  // Rotation cannot happen: every encryption still works up to the limit.
  faulty_->FailOperation("GenerateAesKey", absl::UnavailableError("token gone"));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Encrypt(key_id, "x").ok()) << i;
  EXPECT_ERROR(Encrypt(key_id, "x"), kResourceExhausted, "LimitExceededException");
  EXPECT_EQ(CurrentVersion(key_id), v1);
  faulty_->ClearFaults();
  ASSERT_TRUE(RotateNow(key_id).ok());  // the operator's way out
  EXPECT_TRUE(Encrypt(key_id, "x").ok());
}

TEST_F(RotationTest, FailingUsageRotationBacksOffInsteadOfRetryingEveryEncryption) {
  options_.usage_rotation_threshold = 2;
  options_.usage_hard_limit = 100;
  Restart();
  const std::string key_id = NewKey();
  faulty_->FailOperation("GenerateAesKey", absl::UnavailableError("token full"));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Encrypt(key_id, "x").ok()) << i;
  EXPECT_EQ(faulty_->CallCount("GenerateAesKey"), 2);  // CreateKey's, then one attempt
  faulty_->ClearFaults();
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(Encrypt(key_id, "x").ok());
  EXPECT_EQ(Rotations(key_id).size(), 1u);
}

TEST_F(RotationTest, UsageCountsNeverUndercountAcrossRestarts) {
  options_.usage_rotation_threshold = 1000;
  options_.usage_hard_limit = 10;
  options_.usage_reservation_block = 4;
  Restart();
  const std::string key_id = NewKey();
  const std::string version = CurrentVersion(key_id);
  ASSERT_TRUE(Encrypt(key_id, "x").ok());  // used 1, reserved 4 (persisted)
  EXPECT_EQ(store_->GetVersion(version)->encryptions_reserved, 4);
  Restart();  // a crash: the 3 unused reservations count as used
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(Encrypt(key_id, "x").ok()) << i;  // 5..10
  EXPECT_ERROR(Encrypt(key_id, "x"), kResourceExhausted, "LimitExceededException");
  EXPECT_EQ(store_->GetVersion(version)->encryptions_reserved, 10);
}

// ---------------------------------------------------------------- listing and compliance

TEST_F(RotationTest, ListKeyRotationsPagesOldestFirstAndMarksTheCurrent) {
  const std::string key_id = NewKey();
  std::vector<std::string> made;
  for (int i = 0; i < 5; ++i) made.push_back(RotateNow(key_id)->key_version_id());
  v1::ListKeyRotationsRequest r;
  r.set_key_id(key_id);
  r.set_limit(2);
  std::vector<std::string> seen;
  while (true) {
    auto page = service_->ListKeyRotations(r);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& e : page->rotations()) {
      seen.push_back(e.key_version_id());
      EXPECT_EQ(e.rotation_type(), v1::ON_DEMAND);
      EXPECT_EQ(e.current(), e.key_version_id() == made.back());
    }
    if (!page->truncated()) break;
    r.set_marker(page->next_marker());
  }
  EXPECT_EQ(seen, made);
  r.set_marker("not-a-version");
  EXPECT_ERROR(service_->ListKeyRotations(r), kInvalidArgument, "ValidationException");
}

TEST_F(RotationTest, ComplianceReportFlagsDisabledAndOverdueRotation) {
  const std::string unrotated = NewKey();
  const std::string rotating = NewRotatingKey(30);
  const std::string stale = NewRotatingKey(400);  // rotates too rarely for a 365-day maximum
  clock_.Advance(366 * kDay);
  ASSERT_TRUE(service_->RotateDueKeys().ok());  // `rotating` rotates; `stale` is not yet due

  v1::GetRotationComplianceReportRequest r;
  auto report = service_->GetRotationComplianceReport(r);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->max_age_in_days(), 365);
  std::map<std::string, v1::RotationComplianceStatus> status;
  for (const auto& e : report->keys()) status[e.key_id()] = e.status();
  EXPECT_EQ(status.size(), 2u);
  EXPECT_EQ(status[unrotated], v1::ROTATION_DISABLED);
  EXPECT_EQ(status[stale], v1::OVERDUE);

  r.set_include_compliant(true);
  report = service_->GetRotationComplianceReport(r);
  ASSERT_EQ(report->keys_size(), 3);
  for (const auto& e : report->keys()) {
    if (e.key_id() == rotating) {
      EXPECT_EQ(e.status(), v1::COMPLIANT);
      EXPECT_EQ(e.last_rotation_date().seconds(), absl::ToUnixSeconds(clock_.Now()));
    }
  }
  r.set_max_age_in_days(0);
  EXPECT_ERROR(service_->GetRotationComplianceReport(r), kInvalidArgument, "ValidationException");
}

}  // namespace
}  // namespace kms::service
