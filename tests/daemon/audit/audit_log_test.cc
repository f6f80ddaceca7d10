#include "daemon/audit/audit_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/daemon/audit/test_signing_key.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace kms::audit {
namespace {

using ::kms::testing::FakeClock;
using ::kms::testing::IsOk;
using ::kms::testing::StatusIs;
using ::kms::testing::TempDir;
using ::testing::HasSubstr;

// Faults the test switches on and off; the sink counts what it was asked to do.
struct Faults {
  std::atomic<bool> fail_append{false};
  std::atomic<bool> partial_append{false};  // write half the bytes, then fail
  std::atomic<bool> fail_sync{false};
  std::atomic<bool> hold_sync{false};  // Sync waits while set
  std::atomic<int> syncs{0};
  std::atomic<int> reopens{0};
  std::atomic<int> truncates{0};
};

// Wraps the real file, as LevelDB's ErrorEnv wraps its Env.
class FaultySink final : public Sink {
 public:
  FaultySink(std::unique_ptr<Sink> inner, Faults* faults)
      : inner_(std::move(inner)), faults_(*faults) {}
  absl::Status Append(absl::string_view bytes) override {
    if (faults_.fail_append) {
      if (faults_.partial_append) inner_->Append(bytes.substr(0, bytes.size() / 2)).IgnoreError();
      return absl::UnavailableError(absl::StrCat("write audit log: ", std::strerror(ENOSPC)));
    }
    return inner_->Append(bytes);
  }
  absl::Status Sync() override {
    while (faults_.hold_sync) absl::SleepFor(absl::Milliseconds(1));
    ++faults_.syncs;
    if (faults_.fail_sync) {
      return absl::UnavailableError(absl::StrCat("fdatasync audit log: ", std::strerror(EIO)));
    }
    return inner_->Sync();
  }
  absl::Status TruncateTo(uint64_t size) override {
    ++faults_.truncates;
    return inner_->TruncateTo(size);
  }
  absl::Status Reopen() override {
    ++faults_.reopens;
    return inner_->Reopen();
  }
  absl::StatusOr<uint64_t> Size() override { return inner_->Size(); }

 private:
  std::unique_ptr<Sink> inner_;
  Faults& faults_;
};

Entry Rpc(const std::string& request_id) {
  Entry e;
  e.type = RecordType::kRpc;
  e.request_id = request_id;
  e.principal = "alice";
  e.operation = "GenerateDataKey";
  e.key_id = "k1";
  e.context = {{"tenant", "00112233445566778899aabbccddeeff"}};
  e.outcome = Outcome::kSuccess;
  return e;
}

// Every test runs twice: appending to the file, and writing over zeros
// reserved ahead (a small reserve, so that tests cross its end often).
class AuditLogTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    dir_ = TempDir::Create("audit-log-test").value();
    path_ = dir_->path() + "/audit.log";
  }

  AuditLog::Options Options() const {
    AuditLog::Options o;
    o.path = path_;
    o.checkpoint_every_records = 1000;
    o.checkpoint_interval = absl::Seconds(60);
    o.retry_interval = absl::Hours(1);  // tests retry with Tick()
    o.preallocate_bytes = GetParam();
    return o;
  }

  absl::StatusOr<std::unique_ptr<AuditLog>> Open(AuditLog::Options o,
                                                 std::unique_ptr<Sink> sink = nullptr) {
    return AuditLog::Open(std::move(o), clock_, key_.Signer(), key_.Fingerprint(),
                          std::move(sink));
  }
  std::unique_ptr<AuditLog> OpenOrDie(AuditLog::Options o, std::unique_ptr<Sink> sink = nullptr) {
    auto log = Open(std::move(o), std::move(sink));
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }
  std::unique_ptr<Sink> FaultySinkOverFile() {
    return std::make_unique<FaultySink>(OpenFileSink(path_, GetParam()).value(), &faults_);
  }

  VerifyResult VerifyFile() {
    std::ifstream in(path_, std::ios::binary);
    auto r = VerifyAuditLog(in, key_.PublicDer());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : VerifyResult{};
  }
  std::vector<ParsedRecord> ReadAll() {
    std::vector<ParsedRecord> out;
    EXPECT_THAT(ReadAuditLog(path_, 0, [&](const ParsedRecord& r) {
                  out.push_back(r);
                  return true;
                }),
                IsOk());
    return out;
  }
  std::string FileContents() {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // The file up to the zeros reserved ahead, if any.
  std::string WrittenContents() {
    std::string contents = FileContents();
    contents.erase(std::min(contents.find('\0'), contents.size()));
    return contents;
  }
  void WriteFile(const std::string& contents) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << contents;
  }
  // How many records carry each request id.
  std::map<std::string, int> RequestIdCounts() {
    std::map<std::string, int> counts;
    for (const ParsedRecord& r : ReadAll()) {
      if (!r.entry.request_id.empty()) ++counts[r.entry.request_id];
    }
    return counts;
  }

  std::unique_ptr<TempDir> dir_;
  std::string path_;
  FakeClock clock_;
  TestSigningKey key_;
  Faults faults_;
};

TEST_P(AuditLogTest, AnAppendedRecordIsDurableAndReadable) {
  auto log = OpenOrDie(Options());
  const uint64_t seq = log->Append(Rpc("req-1"));
  EXPECT_EQ(seq, 2u);  // 1 is "audit log opened"
  EXPECT_THAT(log->WaitDurable(seq), IsOk());
  EXPECT_GE(log->durable_sequence(), seq);
  EXPECT_THAT(log->Healthy(), IsOk());

  std::vector<ParsedRecord> seen;
  EXPECT_THAT(log->ReadDurable(0, [&](const ParsedRecord& r) {
                seen.push_back(r);
                return true;
              }),
              IsOk());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].entry.type, RecordType::kEvent);
  EXPECT_EQ(seen[0].entry.message, "audit log opened");
  EXPECT_EQ(seen[1].entry, Rpc("req-1"));
  EXPECT_EQ(seen[1].time, clock_.Now());
  EXPECT_EQ(seen[1].prev, seen[0].hash);

  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_P(AuditLogTest, RecordsNobodyWaitsForGoOutWithTheNextOneWaitedFor) {
  AuditLog::Options options = Options();
  options.unwaited_write_delay = absl::Hours(1);  // no timed pass in this test
  auto log = OpenOrDie(options, FaultySinkOverFile());
  const int syncs_after_open = faults_.syncs.load();
  // A call's PKCS#11 records, then its rpc record, which the call waits for.
  const uint64_t first = log->Append(Rpc("req-1"));
  log->Append(Rpc("req-1"));
  const uint64_t last = log->Append(Rpc("req-1"));
  EXPECT_LT(log->durable_sequence(), first);
  EXPECT_THAT(log->WaitDurable(last), IsOk());
  EXPECT_EQ(faults_.syncs.load(), syncs_after_open + 1) << "one fdatasync for all three";
  EXPECT_EQ(RequestIdCounts()["req-1"], 3);
}

TEST_P(AuditLogTest, RecordsNobodyWaitsForAreWrittenByATimedPass) {
  AuditLog::Options options = Options();
  options.unwaited_write_delay = absl::Milliseconds(1);
  auto log = OpenOrDie(options);
  const uint64_t seq = log->Append(Rpc("background"));
  // Nobody waits for it; the writer's timed pass still makes it durable.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (log->durable_sequence() < seq && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_GE(log->durable_sequence(), seq);
  EXPECT_EQ(RequestIdCounts()["background"], 1);
}

TEST_P(AuditLogTest, ConcurrentCallersShareFsyncsAndGetGaplessSeqs) {
  auto log = OpenOrDie(Options(), FaultySinkOverFile());
  constexpr int kThreads = 16;
  constexpr int kPerThread = 100;
  std::vector<std::vector<uint64_t>> seqs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t seq = log->Append(Rpc(absl::StrCat("req-", t, "-", i)));
        EXPECT_THAT(log->WaitDurable(seq), IsOk());
        seqs[t].push_back(seq);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<uint64_t> all;
  for (const auto& s : seqs) all.insert(s.begin(), s.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_LT(faults_.syncs.load(), kThreads * kPerThread) << "no fdatasync was shared";
  log->Close();

  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.last_sequence, v.records);
  // opened + records + a checkpoint at 1000 + the final one at Close.
  EXPECT_EQ(v.records, 1u + kThreads * kPerThread + 2u);
  EXPECT_EQ(v.checkpoints, 2u);
  EXPECT_EQ(v.unsigned_tail, 0u);
  const auto counts = RequestIdCounts();
  EXPECT_EQ(counts.size(), static_cast<size_t>(kThreads * kPerThread));
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 1) << id;
}

TEST_P(AuditLogTest, ChecksCheckpointEveryNRecords) {
  AuditLog::Options o = Options();
  o.checkpoint_every_records = 5;
  auto log = OpenOrDie(o);
  for (int i = 0; i < 12; ++i) {
    EXPECT_THAT(log->WaitDurable(log->Append(Rpc(absl::StrCat("req-", i)))), IsOk());
  }
  log->Close();
  std::vector<uint64_t> checkpoints;
  for (const ParsedRecord& r : ReadAll()) {
    if (r.entry.type == RecordType::kCheckpoint) checkpoints.push_back(r.seq);
  }
  // 1 opened, 2-5 records, 6 checkpoint, 7-11, 12 checkpoint, 13-15, 16 at Close.
  EXPECT_EQ(checkpoints, (std::vector<uint64_t>{6, 12, 16}));
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.checkpoints, 3u);
  EXPECT_EQ(v.unsigned_tail, 0u);
}

TEST_P(AuditLogTest, ChecksCheckpointOnTickAfterTheInterval) {
  auto log = OpenOrDie(Options());
  EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-1"))), IsOk());
  log->Tick();
  EXPECT_EQ(log->last_sequence(), 2u) << "no checkpoint before the interval";

  clock_.Advance(absl::Seconds(61));
  log->Tick();
  ASSERT_EQ(log->last_sequence(), 3u);
  EXPECT_EQ(log->durable_sequence(), 3u);
  const std::vector<ParsedRecord> records = ReadAll();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[2].entry.type, RecordType::kCheckpoint);
  EXPECT_EQ(records[2].time, clock_.Now());

  clock_.Advance(absl::Seconds(61));
  log->Tick();
  EXPECT_EQ(log->last_sequence(), 3u) << "no checkpoint when nothing was added";
  log->Close();
  EXPECT_EQ(log->last_sequence(), 3u) << "no final checkpoint when nothing was added";
  EXPECT_TRUE(VerifyFile().ok);
}

TEST_P(AuditLogTest, CheckpointWritesASignedRecordNow) {
  auto log = OpenOrDie(Options());
  EXPECT_THAT(log->Checkpoint(), IsOk());
  const std::vector<ParsedRecord> records = ReadAll();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].entry.type, RecordType::kCheckpoint);
  EXPECT_EQ(records[1].signing_key, key_.Fingerprint());
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.checkpoints, 1u);
}

// An auditor without kmsd: `openssl dgst` checks a checkpoint over body + "}".
TEST_P(AuditLogTest, OpensslChecksACheckpointSignature) {
  auto log = OpenOrDie(Options());
  ASSERT_THAT(log->Checkpoint(), IsOk());
  const ParsedRecord checkpoint = ReadAll().back();
  ASSERT_EQ(checkpoint.entry.type, RecordType::kCheckpoint);
  const std::string d = dir_->path();
  std::ofstream(d + "/pub.pem", std::ios::binary) << key_.PublicPem();
  std::ofstream(d + "/sig.der", std::ios::binary) << checkpoint.signature;
  std::ofstream(d + "/body", std::ios::binary) << checkpoint.HashedBytes();
  const std::vector<std::string> argv = {"/usr/bin/openssl", "dgst", "-sha256", "-verify",
                                         d + "/pub.pem", "-signature", d + "/sig.der",
                                         d + "/body"};
  const auto ok = ::kms::testing::RunCommand(argv);
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("Verified OK"));
  // And the hash is plain SHA-256 of the same bytes.
  EXPECT_EQ(Sha256Hex(checkpoint.HashedBytes()), checkpoint.hash);
  std::ofstream(d + "/body", std::ios::binary) << checkpoint.HashedBytes() << " ";
  EXPECT_NE(::kms::testing::RunCommand(argv).exit_code, 0);
}

TEST_P(AuditLogTest, AFailedSignatureLeavesAnEventAndTheChainWhole) {
  std::atomic<bool> hsm_down{false};
  auto log = AuditLog::Open(
                 Options(), clock_,
                 [&](absl::string_view m) -> absl::StatusOr<std::string> {
                   if (hsm_down) return absl::UnavailableError("token gone");
                   return key_.Sign(m);
                 },
                 key_.Fingerprint())
                 .value();
  hsm_down = true;
  EXPECT_THAT(log->Checkpoint(), StatusIs(absl::StatusCode::kUnavailable, "token gone"));
  hsm_down = false;
  EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-1"))), IsOk());
  EXPECT_THAT(log->Checkpoint(), IsOk());
  log->Close();
  const std::vector<ParsedRecord> records = ReadAll();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[1].entry.type, RecordType::kEvent);
  EXPECT_EQ(records[1].entry.message, "checkpoint not signed: token gone");
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.checkpoints, 1u);
}

TEST_P(AuditLogTest, FailsClosedWhenFdatasyncFailsAndRecovers) {
  auto log = OpenOrDie(Options(), FaultySinkOverFile());
  EXPECT_THAT(log->WaitDurable(log->Append(Rpc("before"))), IsOk());

  faults_.fail_sync = true;
  const uint64_t during = log->Append(Rpc("during"));
  EXPECT_THAT(log->WaitDurable(during),
              StatusIs(absl::StatusCode::kUnavailable, "Input/output error"));
  EXPECT_THAT(log->Healthy(), StatusIs(absl::StatusCode::kUnavailable, "Input/output error"));
  // Fail closed at once for anything appended while failing.
  const uint64_t later = log->Append(Rpc("later"));
  EXPECT_THAT(log->WaitDurable(later), StatusIs(absl::StatusCode::kUnavailable));
  log->Tick();  // a retry that fails again
  EXPECT_THAT(log->Healthy(), StatusIs(absl::StatusCode::kUnavailable));

  faults_.fail_sync = false;
  log->Tick();  // the retry that succeeds
  EXPECT_THAT(log->Healthy(), IsOk());
  EXPECT_THAT(log->WaitDurable(during), IsOk());
  EXPECT_THAT(log->WaitDurable(later), IsOk());
  EXPECT_GE(faults_.reopens.load(), 1) << "the file is reopened after an fdatasync failure";
  EXPECT_THAT(log->WaitDurable(log->Append(Rpc("after"))), IsOk());
  log->Close();

  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.last_sequence, v.records);
  std::vector<std::string> order;
  for (const ParsedRecord& r : ReadAll()) {
    if (!r.entry.request_id.empty()) order.push_back(r.entry.request_id);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"before", "during", "later", "after"}));
}

// The retry timer is real time (nothing to inject): with a short interval the
// log heals on its own once the sink does.
TEST_P(AuditLogTest, RetriesOnItsOwnAfterRetryInterval) {
  AuditLog::Options o = Options();
  o.retry_interval = absl::Milliseconds(1);
  auto log = OpenOrDie(o, FaultySinkOverFile());
  faults_.fail_sync = true;
  const uint64_t seq = log->Append(Rpc("req-1"));
  EXPECT_THAT(log->WaitDurable(seq), StatusIs(absl::StatusCode::kUnavailable));
  faults_.fail_sync = false;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!log->Healthy().ok() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_THAT(log->Healthy(), IsOk());
  EXPECT_THAT(log->WaitDurable(seq), IsOk());
}

TEST_P(AuditLogTest, APartialWriteIsDiscardedAndRewritten) {
  auto log = OpenOrDie(Options(), FaultySinkOverFile());
  faults_.fail_append = true;
  faults_.partial_append = true;
  const uint64_t seq = log->Append(Rpc("torn"));
  EXPECT_THAT(log->WaitDurable(seq), StatusIs(absl::StatusCode::kUnavailable, "No space left"));
  EXPECT_NE(WrittenContents().back(), '\n') << "the fault left half a record";

  faults_.fail_append = false;
  log->Tick();
  EXPECT_THAT(log->Healthy(), IsOk());
  EXPECT_THAT(log->WaitDurable(seq), IsOk());
  EXPECT_GE(faults_.truncates.load(), 1);
  log->Close();
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(RequestIdCounts(), (std::map<std::string, int>{{"torn", 1}}));
}

TEST_P(AuditLogTest, OpenDiscardsATornTail) {
  {
    auto log = OpenOrDie(Options());
    EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-1"))), IsOk());
  }
  const std::string torn = "{\"seq\":4,\"ti";
  WriteFile(FileContents() + torn);
  auto log = OpenOrDie(Options());
  ASSERT_NE(log, nullptr);
  log->Close();
  const std::vector<ParsedRecord> records = ReadAll();
  ASSERT_EQ(records.size(), 5u);  // opened, req-1, checkpoint, opened, checkpoint
  EXPECT_EQ(records[3].seq, 4u);
  EXPECT_EQ(records[3].entry.message, absl::StrCat("audit log opened; recovered ", torn.size(),
                                                   " bytes of an unfinished record"));
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
}

TEST_P(AuditLogTest, ZerosAreReservedAheadOnlyWhileOpen) {
  auto log = OpenOrDie(Options());
  for (int i = 0; i < 20; ++i) {  // well past the 512-byte reserve
    EXPECT_THAT(log->WaitDurable(log->Append(Rpc(absl::StrCat("req-", i)))), IsOk());
  }
  const std::string live = FileContents();
  const std::string written = WrittenContents();
  ASSERT_FALSE(written.empty());
  EXPECT_EQ(written.back(), '\n');
  if (GetParam() > 0) {
    EXPECT_GT(live.size(), written.size()) << "no zeros reserved ahead";
    EXPECT_EQ(live.find_first_not_of('\0', written.size()), std::string::npos);
  } else {
    EXPECT_EQ(live, written);
  }
  // Readers of the live file stop at the zeros; a copy of it verifies.
  EXPECT_EQ(ReadAll().size(), 21u);
  std::istringstream copy(live);
  auto verified = VerifyAuditLog(copy, key_.PublicDer());
  ASSERT_THAT(verified.status(), IsOk());
  EXPECT_TRUE(verified->ok) << verified->problem;
  EXPECT_EQ(verified->records, 21u);

  log->Close();
  log.reset();
  EXPECT_EQ(FileContents(), WrittenContents()) << "a clean stop leaves no zeros";
  EXPECT_EQ(FileContents().back(), '\n');
}

// A crash leaves the reserve behind: the next start removes it and says
// nothing was recovered, since no record was unfinished.
TEST_P(AuditLogTest, OpenRemovesZerosLeftByACrash) {
  {
    auto log = OpenOrDie(Options());
    EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-1"))), IsOk());
  }
  const std::string good = FileContents();
  WriteFile(good + std::string(3000, '\0'));
  auto log = OpenOrDie(Options());
  ASSERT_NE(log, nullptr);
  EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-2"))), IsOk());
  log->Close();
  log.reset();
  const std::vector<ParsedRecord> records = ReadAll();
  ASSERT_EQ(records.size(), 6u);  // opened, req-1, checkpoint, opened, req-2, checkpoint
  EXPECT_EQ(records[3].entry.message, "audit log opened");
  EXPECT_EQ(records[3].prev, records[2].hash);
  EXPECT_EQ(FileContents().find('\0'), std::string::npos);
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
}

TEST_P(AuditLogTest, OpenDiscardsATornRecordBeforeTheZeros) {
  {
    auto log = OpenOrDie(Options());
    EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-1"))), IsOk());
  }
  const std::string torn = "{\"seq\":4,\"ti";
  WriteFile(FileContents() + torn + std::string(1000, '\0'));
  auto log = OpenOrDie(Options());
  ASSERT_NE(log, nullptr);
  log->Close();
  log.reset();
  const std::vector<ParsedRecord> records = ReadAll();
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[3].entry.message, absl::StrCat("audit log opened; recovered ", torn.size(),
                                                   " bytes of an unfinished record"));
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
}

// A power cut in the middle of writing over the reserve can keep some pages
// of that write from the disk: a gap of zeros, then whole records. Those
// records were never acknowledged (their write never finished), and the
// chain must not continue from them. Here the record after the gap is a
// copy of a real one, so that its own hash checks out.
TEST_P(AuditLogTest, OpenCutsTheLastWriteAtAGapOfZeros) {
  {
    auto log = OpenOrDie(Options());
    EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-1"))), IsOk());
  }
  const std::string good = FileContents();
  const size_t last_line = good.rfind('\n', good.size() - 2) + 1;
  const std::string after_gap = std::string(100, '\0') + good.substr(last_line);
  WriteFile(good + after_gap + std::string(500, '\0'));
  auto log = OpenOrDie(Options());
  ASSERT_NE(log, nullptr);
  EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-2"))), IsOk());
  log->Close();
  log.reset();
  const std::vector<ParsedRecord> records = ReadAll();
  ASSERT_EQ(records.size(), 6u);
  EXPECT_EQ(records[3].seq, 4u);
  EXPECT_EQ(records[3].entry.message, absl::StrCat("audit log opened; recovered ", after_gap.size(),
                                                   " bytes of an unfinished record"));
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
}

// A backlog longer than kMaxUnsyncedBytes (after an outage, say) is written
// in pieces, each synced before the next, so that recovery only ever has to
// look at the last piece.
TEST_P(AuditLogTest, ALongBacklogIsSyncedPieceByPiece) {
  AuditLog::Options options = Options();
  options.unwaited_write_delay = absl::Hours(1);  // everything waits for one pass
  options.checkpoint_every_records = 0;
  auto log = OpenOrDie(options, FaultySinkOverFile());
  const uint64_t size_before = WrittenContents().size();
  const int syncs_before = faults_.syncs.load();
  uint64_t last = 0;
  for (int i = 0; i < 10000; ++i) last = log->Append(Rpc(absl::StrCat("backlog-", i)));
  EXPECT_THAT(log->WaitDurable(last), IsOk());
  const uint64_t written = WrittenContents().size() - size_before;
  ASSERT_GT(written, 2 * kMaxUnsyncedBytes);
  EXPECT_EQ(faults_.syncs.load() - syncs_before,
            static_cast<int>((written + kMaxUnsyncedBytes - 1) / kMaxUnsyncedBytes));
  log->Close();
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 10002u);  // opened, the backlog, the checkpoint at Close
}

// When the reserve cannot be written (here a file size limit stands in for
// a full disk), records still fit are appended as without one.
TEST_P(AuditLogTest, RecordsAreAppendedWhenNoReserveFits) {
  AuditLog::Options options = Options();
  if (options.preallocate_bytes > 0) options.preallocate_bytes = 1 << 20;
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct sigaction ignore = {}, saved_action;
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &saved_action), 0);
  struct rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  {
    auto log = OpenOrDie(options);
    if (log != nullptr) {
      for (int i = 0; i < 20; ++i) {
        EXPECT_THAT(log->WaitDurable(log->Append(Rpc(absl::StrCat("req-", i)))), IsOk());
      }
      EXPECT_THAT(log->Healthy(), IsOk());
      EXPECT_LT(FileContents().size(), limited.rlim_cur);
    }
  }
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  ASSERT_EQ(::sigaction(SIGXFSZ, &saved_action, nullptr), 0);
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 22u);
}

// kill -9 in the middle of a stream of writes: every record a caller was
// told is durable is in the file, and the file opens and verifies.
TEST_P(AuditLogTest, AcknowledgedRecordsSurviveKill9) {
  int acks[2];
  ASSERT_EQ(::pipe(acks), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(acks[0]);
    auto log = AuditLog::Open(Options(), clock_, key_.Signer(), key_.Fingerprint());
    if (!log.ok()) ::_exit(2);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0;; ++i) {
          const uint64_t seq = (*log)->Append(Rpc(absl::StrCat("req-", t, "-", i)));
          if (!(*log)->WaitDurable(seq).ok()) ::_exit(3);
          if (::write(acks[1], &seq, sizeof(seq)) != sizeof(seq)) ::_exit(4);
        }
      });
    }
    for (auto& t : threads) t.join();
    ::_exit(0);
  }
  ::close(acks[1]);
  std::set<uint64_t> acked;
  uint64_t seq;
  while (acked.size() < 500 && ::read(acks[0], &seq, sizeof(seq)) == sizeof(seq)) {
    acked.insert(seq);
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  while (::read(acks[0], &seq, sizeof(seq)) == sizeof(seq)) acked.insert(seq);
  ::close(acks[0]);
  ASSERT_GE(acked.size(), 500u);

  auto log = OpenOrDie(Options());
  ASSERT_NE(log, nullptr);
  log->Close();
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  std::map<uint64_t, RecordType> types;
  for (const ParsedRecord& r : ReadAll()) types[r.seq] = r.entry.type;
  for (uint64_t s : acked) {
    auto it = types.find(s);
    ASSERT_NE(it, types.end()) << "acknowledged record " << s << " lost";
    EXPECT_EQ(it->second, RecordType::kRpc);
  }
}

TEST_P(AuditLogTest, OpenRefusesADamagedLastLine) {
  {
    auto log = OpenOrDie(Options());
    EXPECT_THAT(log->WaitDurable(log->Append(Rpc("req-1"))), IsOk());
  }
  const std::string good = FileContents();  // 3 lines
  WriteFile(good + "{\"not\":\"a record\"}\n");
  EXPECT_THAT(Open(Options()).status(), StatusIs(absl::StatusCode::kDataLoss, "line 4"));

  // The last record with one hash digit changed.
  std::string changed = good;
  const size_t hash_at = changed.rfind("\"hash\":\"") + 8;
  changed[hash_at] = changed[hash_at] == '0' ? '1' : '0';
  WriteFile(changed);
  EXPECT_THAT(Open(Options()).status(),
              StatusIs(absl::StatusCode::kDataLoss, "line 3"));
  EXPECT_EQ(FileContents(), changed) << "Open must not touch a damaged log";
}

TEST_P(AuditLogTest, ReopeningContinuesTheChain) {
  for (int run = 0; run < 3; ++run) {
    auto log = OpenOrDie(Options());
    for (int i = 0; i < 3; ++i) {
      EXPECT_THAT(log->WaitDurable(log->Append(Rpc(absl::StrCat("run", run, "-", i)))), IsOk());
    }
  }
  const VerifyResult v = VerifyFile();
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 15u);  // 3 x (opened + 3 + checkpoint at Close)
  EXPECT_EQ(v.checkpoints, 3u);
  EXPECT_EQ(v.last_sequence, 15u);
}

TEST_P(AuditLogTest, NothingAppendedAfterCloseBecomesDurable) {
  auto log = OpenOrDie(Options());
  log->Close();
  const uint64_t seq = log->Append(Rpc("late"));
  EXPECT_THAT(log->WaitDurable(seq), StatusIs(absl::StatusCode::kUnavailable, "closed"));
  EXPECT_THAT(log->Checkpoint(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(log->WaitDurable(seq + 5), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(VerifyFile().ok);
}

// WhenDurable's outcomes, as the callback saw them.
struct Callbacks {
  absl::Mutex mu;
  std::map<uint64_t, absl::Status> outcomes ABSL_GUARDED_BY(mu);
  std::map<uint64_t, uint64_t> durable_then ABSL_GUARDED_BY(mu);  // durable_sequence() inside
  int calls ABSL_GUARDED_BY(mu) = 0;
  absl::CondVar called;

  AuditLog::DurableCallback For(AuditLog& log, uint64_t seq) {
    return [this, &log, seq](absl::Status status) {
      const uint64_t durable = log.durable_sequence();  // the lock is not held: no deadlock
      absl::MutexLock lock(&mu);
      ++calls;
      outcomes[seq] = std::move(status);
      durable_then[seq] = durable;
      called.SignalAll();
    };
  }
  bool Called(uint64_t seq) {
    absl::MutexLock lock(&mu);
    return outcomes.count(seq) > 0;
  }
  absl::Status Await(uint64_t seq) {
    absl::MutexLock lock(&mu);
    while (outcomes.count(seq) == 0) called.Wait(&mu);
    return outcomes[seq];
  }
};

TEST_P(AuditLogTest, WhenDurableCallsBackOnceTheRecordIsDurable) {
  auto log = OpenOrDie(Options(), FaultySinkOverFile());
  Callbacks callbacks;
  faults_.hold_sync = true;  // the writer cannot finish a pass yet
  const uint64_t seq = log->Append(Rpc("pending"));
  log->WhenDurable(seq, callbacks.For(*log, seq));
  EXPECT_FALSE(callbacks.Called(seq)) << "called before its record was durable";
  faults_.hold_sync = false;
  EXPECT_THAT(callbacks.Await(seq), IsOk());
  absl::MutexLock lock(&callbacks.mu);
  EXPECT_GE(callbacks.durable_then[seq], seq);
  EXPECT_EQ(callbacks.calls, 1);
}

TEST_P(AuditLogTest, WhenDurableOfADurableRecordCallsBackAtOnce) {
  auto log = OpenOrDie(Options());
  Callbacks callbacks;
  const uint64_t seq = log->Append(Rpc("done"));
  ASSERT_THAT(log->WaitDurable(seq), IsOk());
  log->WhenDurable(seq, callbacks.For(*log, seq));
  EXPECT_TRUE(callbacks.Called(seq)) << "not called on the caller's thread";
  log->WhenDurable(seq + 100, callbacks.For(*log, seq + 100));
  EXPECT_THAT(callbacks.Await(seq + 100), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(AuditLogTest, WhenDurableCallsEveryCallbackOnceUnderConcurrency) {
  auto log = OpenOrDie(Options());
  Callbacks callbacks;
  constexpr int kThreads = 8, kEach = 50;
  std::vector<std::thread> threads;
  std::mutex seqs_mu;
  std::vector<uint64_t> seqs;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const uint64_t seq = log->Append(Rpc(absl::StrCat("t", t, "-", i)));
        log->WhenDurable(seq, callbacks.For(*log, seq));
        std::lock_guard<std::mutex> lock(seqs_mu);
        seqs.push_back(seq);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (uint64_t seq : seqs) {
    EXPECT_THAT(callbacks.Await(seq), IsOk());
    absl::MutexLock lock(&callbacks.mu);
    EXPECT_GE(callbacks.durable_then[seq], seq);
  }
  absl::MutexLock lock(&callbacks.mu);
  EXPECT_EQ(callbacks.calls, kThreads * kEach);
}

TEST_P(AuditLogTest, WhenDurableFailsClosedWhileTheLogFailsAndAfterClose) {
  auto log = OpenOrDie(Options(), FaultySinkOverFile());
  Callbacks callbacks;
  faults_.fail_sync = true;
  const uint64_t during = log->Append(Rpc("during"));
  log->WhenDurable(during, callbacks.For(*log, during));
  EXPECT_THAT(callbacks.Await(during),
              StatusIs(absl::StatusCode::kUnavailable, "Input/output error"));
  // While failing, at once.
  const uint64_t later = log->Append(Rpc("later"));
  log->WhenDurable(later, callbacks.For(*log, later));
  EXPECT_TRUE(callbacks.Called(later));
  EXPECT_THAT(callbacks.Await(later), StatusIs(absl::StatusCode::kUnavailable));

  faults_.fail_sync = false;
  log->Tick();
  Callbacks after_recovery;
  log->WhenDurable(during, after_recovery.For(*log, during));
  EXPECT_THAT(after_recovery.Await(during), IsOk()) << "the record became durable later";

  log->Close();
  const uint64_t late = log->Append(Rpc("late"));
  log->WhenDurable(late, callbacks.For(*log, late));
  EXPECT_THAT(callbacks.Await(late), StatusIs(absl::StatusCode::kUnavailable, "closed"));
}

TEST_P(AuditLogTest, ReadAuditLogStartsAfterASeqAndStopsWhenAsked) {
  auto log = OpenOrDie(Options());
  for (int i = 0; i < 5; ++i) log->Append(Rpc(absl::StrCat("req-", i)));
  EXPECT_THAT(log->WaitDurable(log->last_sequence()), IsOk());
  std::vector<uint64_t> seen;
  EXPECT_THAT(ReadAuditLog(path_, 3, [&](const ParsedRecord& r) {
                seen.push_back(r.seq);
                return seen.size() < 2;
              }),
              IsOk());
  EXPECT_EQ(seen, (std::vector<uint64_t>{4, 5}));
  EXPECT_THAT(ReadAuditLog(dir_->path() + "/none", 0, [](const ParsedRecord&) { return true; }),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(AuditLogTest, OpenRejectsMissingArguments) {
  AuditLog::Options o = Options();
  o.path.clear();
  EXPECT_THAT(Open(o).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AuditLog::Open(Options(), clock_, nullptr, key_.Fingerprint()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AuditLog::Open(Options(), clock_, key_.Signer(), "").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  o = Options();
  o.path = dir_->path() + "/no/such/dir/audit.log";
  EXPECT_THAT(Open(o).status(), StatusIs(absl::StatusCode::kUnavailable, "No such file"));
}

INSTANTIATE_TEST_SUITE_P(Modes, AuditLogTest, ::testing::Values(0, 512),
                         [](const ::testing::TestParamInfo<uint64_t>& info) {
                           return info.param == 0 ? std::string("Appending")
                                                  : absl::StrCat("Preallocating", info.param);
                         });

}  // namespace
}  // namespace kms::audit
