// AuditService: queries, export, the public key and the key inventory, over
// the real KeyService (FakeHsm, SQLite in memory, FakeClock) and a real
// AuditLog on a temp file. The tests append records themselves (as the call
// auditor and the HSM recorder would) to build exact scenarios.
#include "daemon/service/audit_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/audit/audit_log.h"
#include "daemon/common/errors.h"
#include "tests/daemon/audit/test_signing_key.h"
#include "tests/daemon/service/service_fixture.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/local_crypto.h"
#include "tests/testing/status_matchers.h"

namespace kms::service {
namespace {

using ::kms::testing::IsOk;
using ::kms::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

constexpr char kAdmin[] = "spiffe://corp/kms-admin";
constexpr char kAuditor[] = "spiffe://corp/compliance";
constexpr char kApp[] = "spiffe://corp/billing";
constexpr char kOther[] = "spiffe://corp/intruder";

constexpr char kAlice[] = "alice";
constexpr char kBob[] = "bob";
constexpr char kKey1[] = "11111111-1111-4111-8111-111111111111";
constexpr char kKey2[] = "22222222-2222-4222-8222-222222222222";

Caller As(const std::string& principal) {
  return Caller{principal, "audit-req", "ipv4:127.0.0.1:1"};
}

audit::Entry RpcEntry(const std::string& request_id, const std::string& principal,
                      const std::string& operation, const std::string& key_id,
                      audit::Outcome outcome = audit::Outcome::kSuccess) {
  audit::Entry e;
  e.type = audit::RecordType::kRpc;
  e.request_id = request_id;
  e.principal = principal;
  e.peer = "ipv4:127.0.0.1:2";
  e.operation = operation;
  e.key_id = key_id;
  e.outcome = outcome;
  if (outcome == audit::Outcome::kDenied) e.error_type = "AccessDeniedException";
  if (outcome == audit::Outcome::kFailed) e.error_type = "DisabledException";
  return e;
}

audit::Entry HsmEntry(const std::string& request_id, const std::string& function = "C_Encrypt") {
  audit::Entry e;
  e.type = audit::RecordType::kHsm;
  e.request_id = request_id;
  e.function = function;
  e.object_id = "obj-1";
  e.result = "CKR_OK";
  return e;
}

std::vector<uint64_t> Seqs(const v1::QueryAuditLogResponse& response) {
  std::vector<uint64_t> seqs;
  for (const v1::AuditRecord& r : response.records()) seqs.push_back(r.sequence());
  return seqs;
}

google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t seconds = absl::ToUnixSeconds(t);
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return ts;
}

class AuditServiceTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    auto dir = testing::TempDir::Create("audit-service-test");
    ASSERT_THAT(dir.status(), IsOk());
    dir_ = *std::move(dir);
    path_ = dir_->path() + "/audit.log";
    audit::AuditLog::Options o;
    o.path = path_;
    // No checkpoints in the middle of a scenario: only the records a test
    // appends (after the "audit log opened" event, seq 1).
    o.checkpoint_every_records = 0;
    o.checkpoint_interval = absl::Hours(24 * 3650);
    o.retry_interval = absl::Hours(1);
    auto log = audit::AuditLog::Open(o, clock_, key_.Signer(), key_.Fingerprint());
    ASSERT_THAT(log.status(), IsOk());
    log_ = *std::move(log);
    access_ = std::make_unique<AccessControl>(Roles{{kAdmin}, {kAuditor}});
    audit_ = std::make_unique<AuditService>(
        *service_, *log_, *access_, AuditService::Options{key_.PublicDer(), key_.Fingerprint()});
  }

  void TearDown() override {
    audit_.reset();
    if (log_ != nullptr) log_->Close();
  }

  // Appends `entry` at the clock's time and waits until it is durable.
  uint64_t Append(audit::Entry entry) {
    const uint64_t seq = log_->Append(std::move(entry));
    EXPECT_THAT(log_->WaitDurable(seq), IsOk());
    return seq;
  }

  absl::StatusOr<v1::QueryAuditLogResponse> Query(const v1::QueryAuditLogRequest& request,
                                                  const std::string& who = kAuditor) {
    CallFacts facts;
    return audit_->QueryAuditLog(As(who), request, &facts);
  }

  // Every page of `request` with `limit`, concatenated; fails the test on a
  // page that is not truncated yet names a next sequence, or the reverse.
  std::vector<v1::AuditRecord> QueryAllPages(v1::QueryAuditLogRequest request, int limit) {
    request.set_limit(limit);
    std::vector<v1::AuditRecord> all;
    for (int page = 0; page < 1000; ++page) {
      absl::StatusOr<v1::QueryAuditLogResponse> response = Query(request);
      EXPECT_THAT(response.status(), IsOk());
      if (!response.ok()) return all;
      int rpc_records = 0;
      for (const v1::AuditRecord& r : response->records()) {
        if (r.type() == v1::RPC) ++rpc_records;
        all.push_back(r);
      }
      EXPECT_LE(rpc_records, limit);
      EXPECT_EQ(response->truncated(), response->next_sequence() != 0);
      if (!response->truncated()) return all;
      EXPECT_GT(response->next_sequence(), request.after_sequence());
      request.set_after_sequence(response->next_sequence());
    }
    ADD_FAILURE() << "paging does not end";
    return all;
  }

  absl::StatusOr<v1::ExportAuditLogResponse> Export(uint64_t after, std::optional<int> limit,
                                                    const std::string& who = kAuditor) {
    v1::ExportAuditLogRequest request;
    request.set_after_sequence(after);
    if (limit) request.set_limit(*limit);
    CallFacts facts;
    return audit_->ExportAuditLog(As(who), request, &facts);
  }

  absl::StatusOr<v1::GetKeyInventoryReportResponse> Inventory(
      std::optional<int> max_age_days = std::nullopt, const std::string& who = kAuditor) {
    v1::GetKeyInventoryReportRequest request;
    if (max_age_days) request.set_max_age_in_days(*max_age_days);
    CallFacts facts;
    return audit_->GetKeyInventoryReport(As(who), request, &facts);
  }

  static const v1::KeyInventoryEntry* Find(const v1::GetKeyInventoryReportResponse& report,
                                           const std::string& key_id) {
    for (const v1::KeyInventoryEntry& e : report.keys()) {
      if (e.key_id() == key_id) return &e;
    }
    return nullptr;
  }

  // The five calls the filter tests query: who, what, which key, outcome.
  struct Scenario {
    uint64_t r1, r2, r3, r4, r5;
  };
  Scenario AppendFiveCalls() {
    Scenario s;
    s.r1 = Append(RpcEntry("r1", kAlice, "Encrypt", kKey1));
    s.r2 = Append(RpcEntry("r2", kBob, "Decrypt", kKey1, audit::Outcome::kDenied));
    s.r3 = Append(RpcEntry("r3", kAlice, "Decrypt", kKey2, audit::Outcome::kFailed));
    s.r4 = Append(RpcEntry("r4", kBob, "Encrypt", kKey2));
    s.r5 = Append(RpcEntry("r5", kAlice, "Encrypt", kKey1));
    return s;
  }

  audit::TestSigningKey key_;
  std::unique_ptr<testing::TempDir> dir_;
  std::string path_;
  std::unique_ptr<audit::AuditLog> log_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<AuditService> audit_;
};

// ---------------------------------------------------------------- QueryAuditLog

TEST_F(AuditServiceTest, QueryWithoutFiltersReturnsEveryCallRecordAndNothingElse) {
  Append(HsmEntry("r1"));
  const uint64_t r1 = Append(RpcEntry("r1", kAlice, "Encrypt", kKey1));
  audit::Entry event;
  event.type = audit::RecordType::kEvent;
  event.message = "rotation sweep";
  Append(event);
  const uint64_t r2 = Append(RpcEntry("r2", kBob, "Decrypt", kKey2, audit::Outcome::kDenied));

  absl::StatusOr<v1::QueryAuditLogResponse> response = Query({});
  ASSERT_THAT(response.status(), IsOk());
  EXPECT_THAT(Seqs(*response), ElementsAre(r1, r2));
  EXPECT_FALSE(response->truncated());
  EXPECT_EQ(response->next_sequence(), 0u);

  // Every field of the stored record, and the stored line itself.
  std::vector<std::string> lines;
  ASSERT_THAT(audit::ReadAuditLog(path_, r2 - 1,
                                  [&](const audit::ParsedRecord& r) {
                                    lines.push_back(r.raw);
                                    return false;
                                  }),
              IsOk());
  ASSERT_EQ(lines.size(), 1u);
  const v1::AuditRecord& denied = response->records(1);
  EXPECT_EQ(denied.type(), v1::RPC);
  EXPECT_EQ(denied.request_id(), "r2");
  EXPECT_EQ(denied.principal(), kBob);
  EXPECT_EQ(denied.peer(), "ipv4:127.0.0.1:2");
  EXPECT_EQ(denied.operation(), "Decrypt");
  EXPECT_EQ(denied.key_id(), kKey2);
  EXPECT_EQ(denied.outcome(), v1::DENIED);
  EXPECT_EQ(denied.error_type(), "AccessDeniedException");
  EXPECT_EQ(denied.time().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(denied.line(), lines[0]);
}

struct FilterCase {
  std::string name;
  std::function<void(v1::QueryAuditLogRequest&)> filter;
  std::vector<std::string> want;  // request ids, in log order
};

class AuditQueryFilterTest : public AuditServiceTest,
                             public ::testing::WithParamInterface<FilterCase> {};

TEST_P(AuditQueryFilterTest, ReturnsExactlyTheMatchingCalls) {
  AppendFiveCalls();
  v1::QueryAuditLogRequest request;
  GetParam().filter(request);
  for (bool hsm : {false, true}) {
    request.set_include_hsm_calls(hsm);
    absl::StatusOr<v1::QueryAuditLogResponse> response = Query(request);
    ASSERT_THAT(response.status(), IsOk());
    std::vector<std::string> got;
    for (const v1::AuditRecord& r : response->records()) got.push_back(r.request_id());
    EXPECT_THAT(got, ElementsAreArray(GetParam().want)) << "include_hsm_calls " << hsm;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Filters, AuditQueryFilterTest,
    ::testing::Values(
        FilterCase{"KeyId", [](auto& r) { r.set_key_id(kKey1); }, {"r1", "r2", "r5"}},
        FilterCase{"KeyResourceName",
                   [](auto& r) {
                     r.set_key_id(absl::StrCat("arn:kmsd:kms:local:000000000000:key/", kKey2));
                   },
                   {"r3", "r4"}},
        FilterCase{"Principal", [](auto& r) { r.set_principal(kAlice); }, {"r1", "r3", "r5"}},
        FilterCase{"Operation", [](auto& r) { r.set_operation("Encrypt"); }, {"r1", "r4", "r5"}},
        FilterCase{"OutcomeSuccess", [](auto& r) { r.set_outcome(v1::SUCCESS); },
                   {"r1", "r4", "r5"}},
        FilterCase{"OutcomeDenied", [](auto& r) { r.set_outcome(v1::DENIED); }, {"r2"}},
        FilterCase{"OutcomeFailed", [](auto& r) { r.set_outcome(v1::FAILED); }, {"r3"}},
        FilterCase{"PrincipalOperationAndKey",
                   [](auto& r) {
                     r.set_principal(kAlice);
                     r.set_operation("Encrypt");
                     r.set_key_id(kKey1);
                   },
                   {"r1", "r5"}},
        FilterCase{"PrincipalAndOutcome",
                   [](auto& r) {
                     r.set_principal(kBob);
                     r.set_outcome(v1::SUCCESS);
                   },
                   {"r4"}},
        FilterCase{"KeyAndOutcome",
                   [](auto& r) {
                     r.set_key_id(kKey2);
                     r.set_outcome(v1::FAILED);
                   },
                   {"r3"}},
        FilterCase{"NoMatch", [](auto& r) { r.set_principal("carol"); }, {}},
        FilterCase{"PrincipalIsExact", [](auto& r) { r.set_principal("ali"); }, {}},
        FilterCase{"OperationIsExact", [](auto& r) { r.set_operation("encrypt"); }, {}}),
    [](const ::testing::TestParamInfo<FilterCase>& info) { return info.param.name; });

TEST_F(AuditServiceTest, TimeRangeStartIsInclusiveAndEndExclusive) {
  const absl::Time t0 = clock_.Now();
  std::vector<uint64_t> at;  // at[i]: the call made at t0 + i seconds
  for (int i = 0; i < 4; ++i) {
    at.push_back(Append(RpcEntry(absl::StrCat("t", i), kAlice, "Encrypt", kKey1)));
    clock_.Advance(absl::Seconds(1));
  }
  auto query = [&](std::optional<absl::Time> start, std::optional<absl::Time> end) {
    v1::QueryAuditLogRequest request;
    if (start) *request.mutable_start_time() = Ts(*start);
    if (end) *request.mutable_end_time() = Ts(*end);
    absl::StatusOr<v1::QueryAuditLogResponse> response = Query(request);
    EXPECT_THAT(response.status(), IsOk());
    return response.ok() ? Seqs(*response) : std::vector<uint64_t>();
  };
  const absl::Duration s = absl::Seconds(1);
  EXPECT_THAT(query(t0 + s, t0 + 3 * s), ElementsAre(at[1], at[2]));
  // One microsecond (the log's resolution) either side moves the edges.
  EXPECT_THAT(query(t0 + s + absl::Microseconds(1), t0 + 3 * s + absl::Microseconds(1)),
              ElementsAre(at[2], at[3]));
  EXPECT_THAT(query(t0 + s - absl::Microseconds(1), t0 + 3 * s - absl::Microseconds(1)),
              ElementsAre(at[1], at[2]));
  // Nanoseconds in the request count.
  EXPECT_THAT(query(t0 + 2 * s - absl::Nanoseconds(1), t0 + 2 * s + absl::Nanoseconds(1)),
              ElementsAre(at[2]));
  EXPECT_THAT(query(t0 + 2 * s, t0 + 2 * s), IsEmpty());
  EXPECT_THAT(query(t0 + 2 * s, std::nullopt), ElementsAre(at[2], at[3]));
  EXPECT_THAT(query(std::nullopt, t0 + 2 * s), ElementsAre(at[0], at[1]));
  EXPECT_THAT(query(t0 + 9 * s, std::nullopt), IsEmpty());

  // Combined with another filter.
  v1::QueryAuditLogRequest request;
  *request.mutable_start_time() = Ts(t0 + s);
  request.set_principal(kBob);
  absl::StatusOr<v1::QueryAuditLogResponse> response = Query(request);
  ASSERT_THAT(response.status(), IsOk());
  EXPECT_THAT(Seqs(*response), IsEmpty());
}

TEST_F(AuditServiceTest, HsmCallsOfMatchingCallsComeJustBeforeTheirCall) {
  // Two calls interleave; a periodic task's HSM record belongs to no call.
  const uint64_t a1 = Append(HsmEntry("A", "C_GenerateRandom"));
  const uint64_t b1 = Append(HsmEntry("B", "C_Decrypt"));
  const uint64_t b = Append(RpcEntry("B", kBob, "Decrypt", kKey2));
  const uint64_t a2 = Append(HsmEntry("A", "C_Encrypt"));
  Append(HsmEntry("task-rotation", "C_GenerateKey"));
  const uint64_t a = Append(RpcEntry("A", kAlice, "Encrypt", kKey1));

  v1::QueryAuditLogRequest request;
  request.set_include_hsm_calls(true);
  request.set_principal(kAlice);
  absl::StatusOr<v1::QueryAuditLogResponse> response = Query(request);
  ASSERT_THAT(response.status(), IsOk());
  EXPECT_THAT(Seqs(*response), ElementsAre(a1, a2, a));
  EXPECT_EQ(response->records(0).type(), v1::HSM_CALL);
  EXPECT_EQ(response->records(0).hsm_function(), "C_GenerateRandom");
  EXPECT_EQ(response->records(0).hsm_object_id(), "obj-1");
  EXPECT_EQ(response->records(0).hsm_result(), "CKR_OK");
  EXPECT_EQ(response->records(1).hsm_function(), "C_Encrypt");
  EXPECT_EQ(response->records(2).type(), v1::RPC);

  request.set_principal(kBob);
  response = Query(request);
  ASSERT_THAT(response.status(), IsOk());
  EXPECT_THAT(Seqs(*response), ElementsAre(b1, b));

  request.clear_principal();
  response = Query(request);
  ASSERT_THAT(response.status(), IsOk());
  EXPECT_THAT(Seqs(*response), ElementsAre(b1, b, a1, a2, a));

  // Without include_hsm_calls: the calls only.
  request.set_include_hsm_calls(false);
  response = Query(request);
  ASSERT_THAT(response.status(), IsOk());
  EXPECT_THAT(Seqs(*response), ElementsAre(b, a));
}

TEST_F(AuditServiceTest, PagingReturnsEveryMatchingRecordExactlyOnce) {
  // 12 calls by alice and bob, each with 0..2 HSM records just before it.
  for (int i = 0; i < 12; ++i) {
    const std::string id = absl::StrCat("call-", i);
    for (int h = 0; h < i % 3; ++h) Append(HsmEntry(id));
    Append(RpcEntry(id, i % 4 == 3 ? kBob : kAlice, i % 2 == 0 ? "Encrypt" : "Decrypt",
                    i % 5 == 0 ? kKey2 : kKey1));
  }
  for (bool hsm : {false, true}) {
    for (const std::string& principal : {std::string(), std::string(kAlice)}) {
      v1::QueryAuditLogRequest request;
      request.set_include_hsm_calls(hsm);
      request.set_principal(principal);
      request.set_limit(1000);
      absl::StatusOr<v1::QueryAuditLogResponse> whole = Query(request);
      ASSERT_THAT(whole.status(), IsOk());
      ASSERT_FALSE(whole->truncated());
      ASSERT_GT(whole->records_size(), 0);
      for (int limit = 1; limit <= 13; ++limit) {
        SCOPED_TRACE(absl::StrCat("include_hsm_calls ", hsm, " principal '", principal,
                                  "' limit ", limit));
        std::vector<uint64_t> paged;
        for (const v1::AuditRecord& r : QueryAllPages(request, limit)) {
          paged.push_back(r.sequence());
        }
        EXPECT_THAT(paged, ElementsAreArray(Seqs(*whole)));
      }
    }
  }
}

TEST_F(AuditServiceTest, HsmRecordsBeforeAPageBoundaryComeWithTheirCallOnTheNextPage) {
  // B's first HSM record comes before A's call, where page 1 ends.
  const uint64_t b1 = Append(HsmEntry("B", "C_GenerateRandom"));
  const uint64_t a = Append(RpcEntry("A", kAlice, "Encrypt", kKey1));
  const uint64_t b2 = Append(HsmEntry("B", "C_Encrypt"));
  const uint64_t b = Append(RpcEntry("B", kBob, "Encrypt", kKey2));

  v1::QueryAuditLogRequest request;
  request.set_include_hsm_calls(true);
  request.set_limit(1);
  absl::StatusOr<v1::QueryAuditLogResponse> page = Query(request);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(Seqs(*page), ElementsAre(a));
  ASSERT_TRUE(page->truncated());
  EXPECT_EQ(page->next_sequence(), a);

  request.set_after_sequence(page->next_sequence());
  page = Query(request);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(Seqs(*page), ElementsAre(b1, b2, b));
  EXPECT_FALSE(page->truncated());
}

TEST_F(AuditServiceTest, PagingKeepsEveryHsmRecordWhenCallsInterleave) {
  // Three calls at a time, each with two HSM records, so every call's first
  // record comes before the previous calls' records end.
  for (int i = 0; i < 12; ++i) {
    Append(HsmEntry(absl::StrCat("call-", i)));
    if (i >= 2) {
      const std::string id = absl::StrCat("call-", i - 2);
      Append(HsmEntry(id));
      Append(RpcEntry(id, i % 3 == 0 ? kBob : kAlice, "Decrypt", kKey1));
    }
  }
  for (int i = 10; i < 12; ++i) {
    const std::string id = absl::StrCat("call-", i);
    Append(HsmEntry(id));
    Append(RpcEntry(id, kAlice, "Decrypt", kKey1));
  }
  for (const std::string& principal : {std::string(), std::string(kAlice)}) {
    v1::QueryAuditLogRequest request;
    request.set_include_hsm_calls(true);
    request.set_principal(principal);
    request.set_limit(1000);
    absl::StatusOr<v1::QueryAuditLogResponse> whole = Query(request);
    ASSERT_THAT(whole.status(), IsOk());
    ASSERT_FALSE(whole->truncated());
    EXPECT_EQ(whole->records_size() % 3, 0);  // each call with both its HSM records
    for (int limit = 1; limit <= 13; ++limit) {
      SCOPED_TRACE(absl::StrCat("principal '", principal, "' limit ", limit));
      std::vector<uint64_t> paged;
      for (const v1::AuditRecord& r : QueryAllPages(request, limit)) {
        paged.push_back(r.sequence());
      }
      EXPECT_THAT(paged, ElementsAreArray(Seqs(*whole)));
    }
  }
}

TEST_F(AuditServiceTest, APageEndsAtItsLastCallAndTheNextStartsAfterIt) {
  const Scenario s = AppendFiveCalls();
  v1::QueryAuditLogRequest request;
  request.set_limit(2);
  absl::StatusOr<v1::QueryAuditLogResponse> page = Query(request);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(Seqs(*page), ElementsAre(s.r1, s.r2));
  EXPECT_TRUE(page->truncated());
  EXPECT_EQ(page->next_sequence(), s.r2);

  request.set_after_sequence(s.r2);
  page = Query(request);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(Seqs(*page), ElementsAre(s.r3, s.r4));
  EXPECT_EQ(page->next_sequence(), s.r4);

  request.set_after_sequence(s.r4);
  page = Query(request);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(Seqs(*page), ElementsAre(s.r5));
  EXPECT_FALSE(page->truncated());
  EXPECT_EQ(page->next_sequence(), 0u);

  // after_sequence is exclusive, and may be any sequence number.
  request.set_after_sequence(s.r3 - 1);
  request.set_limit(100);
  page = Query(request);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(Seqs(*page), ElementsAre(s.r3, s.r4, s.r5));
  request.set_after_sequence(s.r5);
  page = Query(request);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_THAT(Seqs(*page), IsEmpty());
  EXPECT_FALSE(page->truncated());
}

struct LimitCase {
  std::string name;
  bool export_log;  // ExportAuditLog, else QueryAuditLog
  int limit;
  bool valid;
};

class AuditLimitTest : public AuditServiceTest,
                       public ::testing::WithParamInterface<LimitCase> {};

TEST_P(AuditLimitTest, LimitIsValidated) {
  AppendFiveCalls();
  absl::Status status;
  if (GetParam().export_log) {
    status = Export(0, GetParam().limit).status();
  } else {
    v1::QueryAuditLogRequest request;
    request.set_limit(GetParam().limit);
    status = Query(request).status();
  }
  if (GetParam().valid) {
    EXPECT_THAT(status, IsOk());
  } else {
    EXPECT_ERROR(status, kInvalidArgument, "ValidationException");
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 absl::StrCat("got ", GetParam().limit)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Limits, AuditLimitTest,
    ::testing::Values(LimitCase{"QueryZero", false, 0, false},
                      LimitCase{"QueryNegative", false, -1, false},
                      LimitCase{"QueryOne", false, 1, true},
                      LimitCase{"QueryThousand", false, 1000, true},
                      LimitCase{"QueryThousandAndOne", false, 1001, false},
                      LimitCase{"ExportZero", true, 0, false},
                      LimitCase{"ExportOne", true, 1, true},
                      LimitCase{"ExportTenThousand", true, 10000, true},
                      LimitCase{"ExportTenThousandAndOne", true, 10001, false}),
    [](const ::testing::TestParamInfo<LimitCase>& info) { return info.param.name; });

TEST_F(AuditServiceTest, QueryDefaultsToAHundredCallsAPage) {
  for (int i = 0; i < 101; ++i) Append(RpcEntry(absl::StrCat("c", i), kAlice, "Encrypt", kKey1));
  absl::StatusOr<v1::QueryAuditLogResponse> page = Query({});
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_EQ(page->records_size(), 100);
  EXPECT_TRUE(page->truncated());
}

// ---------------------------------------------------------------- who may read

TEST_F(AuditServiceTest, OnlyAuditorsMayUseTheAuditService) {
  AppendFiveCalls();
  for (const char* who : {kAdmin, kApp, ""}) {
    SCOPED_TRACE(who);
    CallFacts facts;
    EXPECT_ERROR(Query({}, who), kPermissionDenied, "AccessDeniedException");
    EXPECT_ERROR(Export(0, std::nullopt, who), kPermissionDenied, "AccessDeniedException");
    EXPECT_ERROR(audit_->GetAuditPublicKey(As(who), {}, &facts), kPermissionDenied,
                 "AccessDeniedException");
    EXPECT_ERROR(Inventory(std::nullopt, who), kPermissionDenied, "AccessDeniedException");
  }
  // Access is checked before the request: a bad limit from a non-auditor is
  // still a denial.
  v1::QueryAuditLogRequest bad;
  bad.set_limit(0);
  EXPECT_ERROR(Query(bad, kApp), kPermissionDenied, "AccessDeniedException");
  EXPECT_THAT(Query({}, kAuditor).status(), IsOk());
}

// ---------------------------------------------------------------- ExportAuditLog

TEST_F(AuditServiceTest, ExportPagesConcatenateToTheFileBytes) {
  for (int i = 0; i < 6; ++i) {
    const std::string id = absl::StrCat("x", i);
    Append(HsmEntry(id));
    Append(RpcEntry(id, kAlice, "Encrypt", kKey1));
  }
  ASSERT_THAT(log_->Checkpoint(), IsOk());
  const std::string file = testing::ReadTestFile(path_);
  // The "audit log opened" event, 12 records and the checkpoint.
  const int lines = static_cast<int>(std::count(file.begin(), file.end(), '\n'));
  ASSERT_EQ(lines, 14);

  for (int limit : {1, 2, 5, 14, 1000}) {
    SCOPED_TRACE(absl::StrCat("limit ", limit));
    std::string joined;
    uint64_t after = 0;
    int pages = 0;
    while (true) {
      absl::StatusOr<v1::ExportAuditLogResponse> page = Export(after, limit);
      ASSERT_THAT(page.status(), IsOk());
      ASSERT_LE(page->lines_size(), limit);
      for (const std::string& line : page->lines()) joined += line + "\n";
      EXPECT_EQ(page->truncated(), page->next_sequence() != 0);
      ASSERT_LT(++pages, 100);
      if (!page->truncated()) break;
      after = page->next_sequence();
    }
    EXPECT_EQ(joined, file);
    EXPECT_EQ(pages, (lines + limit - 1) / limit);  // a full last page is not truncated
  }
}

TEST_F(AuditServiceTest, ExportStartsAfterTheGivenSequence) {
  const Scenario s = AppendFiveCalls();
  absl::StatusOr<v1::ExportAuditLogResponse> page = Export(s.r3, std::nullopt);
  ASSERT_THAT(page.status(), IsOk());
  ASSERT_EQ(page->lines_size(), 2);
  EXPECT_FALSE(page->truncated());
  absl::StatusOr<audit::ParsedRecord> first = audit::ParseRecord(page->lines(0));
  ASSERT_THAT(first.status(), IsOk());
  EXPECT_EQ(first->seq, s.r4);
  EXPECT_EQ(first->entry.request_id, "r4");
  page = Export(s.r5, std::nullopt);
  ASSERT_THAT(page.status(), IsOk());
  EXPECT_EQ(page->lines_size(), 0);
  EXPECT_FALSE(page->truncated());
}

// ---------------------------------------------------------------- GetAuditPublicKey

TEST_F(AuditServiceTest, PublicKeyComesAsDerPemAndFingerprint) {
  CallFacts facts;
  absl::StatusOr<v1::GetAuditPublicKeyResponse> response =
      audit_->GetAuditPublicKey(As(kAuditor), {}, &facts);
  ASSERT_THAT(response.status(), IsOk());
  EXPECT_EQ(response->public_key_der(), key_.PublicDer());
  EXPECT_EQ(response->public_key_pem(), key_.PublicPem());
  EXPECT_EQ(response->key_fingerprint(), key_.Fingerprint());
  // The fingerprint is the one checkpoints carry.
  absl::StatusOr<std::string> fingerprint =
      audit::PublicKeyFingerprint(response->public_key_pem());
  ASSERT_THAT(fingerprint.status(), IsOk());
  EXPECT_EQ(*fingerprint, response->key_fingerprint());
}

TEST_F(AuditServiceTest, PublicKeyThatDoesNotParseIsAnInternalError) {
  AuditService broken(*service_, *log_, *access_, AuditService::Options{"not DER", "00"});
  CallFacts facts;
  EXPECT_THAT(broken.GetAuditPublicKey(As(kAuditor), {}, &facts).status(),
              StatusIs(absl::StatusCode::kInternal));
}

// ---------------------------------------------------------------- GetKeyInventoryReport

TEST_F(AuditServiceTest, InventoryReportsStateOriginVersionsAndRotation) {
  const absl::Time created = clock_.Now();
  v1::CreateKeyRequest rotating;
  rotating.set_description("rotating");
  rotating.set_enable_key_rotation(true);
  rotating.set_rotation_period_in_days(90);
  auto rotating_key = service_->CreateKey(rotating);
  ASSERT_THAT(rotating_key.status(), IsOk());
  const std::string rotating_id = rotating_key->key_metadata().key_id();
  const std::string plain_id = NewKey("no rotation");
  const std::string doomed_id = NewKey("doomed");
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(doomed_id);
  schedule.set_pending_window_in_days(7);
  ASSERT_THAT(service_->ScheduleKeyDeletion(schedule).status(), IsOk());
  v1::CreateKeyRequest external;
  external.set_origin(v1::EXTERNAL);
  auto external_key = service_->CreateKey(external);
  ASSERT_THAT(external_key.status(), IsOk());
  const std::string external_id = external_key->key_metadata().key_id();

  v1::RotateKeyOnDemandRequest rotate;
  rotate.set_key_id(plain_id);
  clock_.Advance(absl::Hours(1));
  ASSERT_THAT(service_->RotateKeyOnDemand(rotate).status(), IsOk());

  absl::StatusOr<v1::GetKeyInventoryReportResponse> report = Inventory();
  ASSERT_THAT(report.status(), IsOk());
  EXPECT_EQ(report->keys_size(), 4);
  EXPECT_EQ(report->generated_at().seconds(), absl::ToUnixSeconds(clock_.Now()));

  const v1::KeyInventoryEntry* r = Find(*report, rotating_id);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->arn(), service_->resource_names().KeyArn(rotating_id));
  EXPECT_EQ(r->description(), "rotating");
  EXPECT_EQ(r->key_state(), v1::ENABLED);
  EXPECT_EQ(r->origin(), v1::AWS_KMS);
  EXPECT_EQ(r->creation_date().seconds(), absl::ToUnixSeconds(created));
  EXPECT_EQ(r->key_version_count(), 1);
  EXPECT_EQ(r->current_material_date().seconds(), absl::ToUnixSeconds(created));
  EXPECT_TRUE(r->rotation_enabled());
  EXPECT_EQ(r->rotation_period_in_days(), 90);
  EXPECT_EQ(r->next_rotation_date().seconds(), absl::ToUnixSeconds(created + absl::Hours(24 * 90)));
  EXPECT_EQ(r->rotation_status(), v1::COMPLIANT);
  EXPECT_FALSE(r->has_last_used_date());
  EXPECT_FALSE(r->has_deletion_date());

  const v1::KeyInventoryEntry* p = Find(*report, plain_id);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->key_state(), v1::ENABLED);
  EXPECT_EQ(p->key_version_count(), 2);
  EXPECT_EQ(p->current_material_date().seconds(),
            absl::ToUnixSeconds(created + absl::Hours(1)));
  EXPECT_FALSE(p->rotation_enabled());
  EXPECT_FALSE(p->has_next_rotation_date());
  EXPECT_EQ(p->rotation_status(), v1::ROTATION_DISABLED);

  const v1::KeyInventoryEntry* d = Find(*report, doomed_id);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->key_state(), v1::PENDING_DELETION);
  EXPECT_EQ(d->deletion_date().seconds(), absl::ToUnixSeconds(created + absl::Hours(24 * 7)));
  EXPECT_FALSE(d->has_rotation_status());

  const v1::KeyInventoryEntry* e = Find(*report, external_id);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->key_state(), v1::PENDING_IMPORT);
  EXPECT_EQ(e->origin(), v1::EXTERNAL);
  EXPECT_EQ(e->key_version_count(), 0);
  EXPECT_FALSE(e->has_current_material_date());
  EXPECT_FALSE(e->has_rotation_status());
  EXPECT_EQ(e->expiration_model(), v1::EXPIRATION_MODEL_TYPE_UNSPECIFIED);
  EXPECT_FALSE(e->has_valid_to());

  // Material older than the maximum age: OVERDUE, though rotation is on.
  clock_.Advance(absl::Hours(24 * 31));
  report = Inventory(30);
  ASSERT_THAT(report.status(), IsOk());
  r = Find(*report, rotating_id);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->rotation_status(), v1::OVERDUE);
  EXPECT_THAT(Inventory(0).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AuditServiceTest, InventoryShowsWhenImportedMaterialExpires) {
  v1::CreateKeyRequest create;
  create.set_origin(v1::EXTERNAL);
  auto created = service_->CreateKey(create);
  ASSERT_THAT(created.status(), IsOk());
  const std::string key_id = created->key_metadata().key_id();

  const hsm::WrappingAlgorithm algorithm = fake_hsm_.SupportedWrappingAlgorithms().front();
  v1::GetParametersForImportRequest parameters;
  parameters.set_key_id(key_id);
  switch (algorithm) {
    case hsm::WrappingAlgorithm::kRsaesOaepSha1:
      parameters.set_wrapping_algorithm(v1::RSAES_OAEP_SHA_1);
      break;
    case hsm::WrappingAlgorithm::kRsaesOaepSha256:
      parameters.set_wrapping_algorithm(v1::RSAES_OAEP_SHA_256);
      break;
    case hsm::WrappingAlgorithm::kRsaAesKeyWrapSha1:
      parameters.set_wrapping_algorithm(v1::RSA_AES_KEY_WRAP_SHA_1);
      break;
    case hsm::WrappingAlgorithm::kRsaAesKeyWrapSha256:
      parameters.set_wrapping_algorithm(v1::RSA_AES_KEY_WRAP_SHA_256);
      break;
  }
  parameters.set_wrapping_key_spec(v1::RSA_2048);
  auto params = service_->GetParametersForImport(parameters);
  ASSERT_THAT(params.status(), IsOk());
  const absl::Time valid_to = clock_.Now() + absl::Hours(24 * 30);
  v1::ImportKeyMaterialRequest import;
  import.set_key_id(key_id);
  import.set_import_token(params->import_token());
  import.set_encrypted_key_material(
      testing::WrapLocally(algorithm, params->public_key(), testing::KnownMaterial()));
  import.set_expiration_model(v1::KEY_MATERIAL_EXPIRES);
  *import.mutable_valid_to() = Ts(valid_to);
  ASSERT_THAT(service_->ImportKeyMaterial(import).status(), IsOk());

  absl::StatusOr<v1::GetKeyInventoryReportResponse> report = Inventory();
  ASSERT_THAT(report.status(), IsOk());
  const v1::KeyInventoryEntry* e = Find(*report, key_id);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->key_state(), v1::ENABLED);
  EXPECT_EQ(e->origin(), v1::EXTERNAL);
  EXPECT_EQ(e->key_version_count(), 1);
  EXPECT_EQ(e->expiration_model(), v1::KEY_MATERIAL_EXPIRES);
  EXPECT_EQ(e->valid_to().seconds(), absl::ToUnixSeconds(valid_to));
  // Imported material does not rotate.
  EXPECT_EQ(e->rotation_status(), v1::ROTATION_DISABLED);
}

TEST_F(AuditServiceTest, InventoryLastUseIsTheNewestSuccessfulUseOfEachKey) {
  const std::string used = NewKey("used");
  const std::string only_failed = NewKey("only failed");
  const std::string only_managed = NewKey("only managed");
  const std::string never = NewKey("never");
  auto at = [&](const audit::Entry& entry) {
    clock_.Advance(absl::Minutes(1));
    Append(entry);
    return clock_.Now();
  };
  at(RpcEntry("u1", kApp, "Encrypt", used));
  at(RpcEntry("u2", kApp, "GenerateDataKey", used));
  const absl::Time last_success = at(RpcEntry("u3", kApp, "Decrypt", used));
  at(HsmEntry("u4"));
  at(RpcEntry("u4", kApp, "Decrypt", used, audit::Outcome::kFailed));
  at(RpcEntry("u5", kOther, "Encrypt", used, audit::Outcome::kDenied));
  at(RpcEntry("u6", kAdmin, "DescribeKey", used));
  at(RpcEntry("f1", kApp, "Encrypt", only_failed, audit::Outcome::kFailed));
  at(RpcEntry("f2", kApp, "Decrypt", only_failed, audit::Outcome::kDenied));
  at(RpcEntry("m1", kAdmin, "DisableKey", only_managed));
  at(RpcEntry("m2", kAdmin, "EnableKey", only_managed));
  // Every data-plane operation counts; the newest wins per key.
  const absl::Time re_encrypted = at(RpcEntry("g1", kApp, "ReEncrypt", only_managed));
  const absl::Time without_plaintext =
      at(RpcEntry("g2", kApp, "GenerateDataKeyWithoutPlaintext", never));
  at(RpcEntry("g3", kApp, "Encrypt", "no-such-key"));

  absl::StatusOr<v1::GetKeyInventoryReportResponse> report = Inventory();
  ASSERT_THAT(report.status(), IsOk());
  ASSERT_NE(Find(*report, used), nullptr);
  EXPECT_EQ(Find(*report, used)->last_used_date().seconds(), absl::ToUnixSeconds(last_success));
  ASSERT_NE(Find(*report, only_failed), nullptr);
  EXPECT_FALSE(Find(*report, only_failed)->has_last_used_date());
  ASSERT_NE(Find(*report, only_managed), nullptr);
  EXPECT_EQ(Find(*report, only_managed)->last_used_date().seconds(),
            absl::ToUnixSeconds(re_encrypted));
  ASSERT_NE(Find(*report, never), nullptr);
  EXPECT_EQ(Find(*report, never)->last_used_date().seconds(),
            absl::ToUnixSeconds(without_plaintext));
  EXPECT_EQ(report->keys_size(), 4);  // the log's unknown key is not reported
}

}  // namespace
}  // namespace kms::service
