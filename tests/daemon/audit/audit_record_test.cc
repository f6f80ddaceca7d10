#include "daemon/audit/audit_record.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "tests/daemon/audit/test_signing_key.h"
#include "tests/testing/status_matchers.h"

namespace kms::audit {
namespace {

using ::kms::testing::StatusIs;

const absl::Time kTime = absl::FromUnixMicros(1795341600LL * 1000000 + 123456);  // 2026-11-22T10:00:00.123456Z

Entry SampleEntry() {
  Entry e;
  e.type = RecordType::kRpc;
  e.request_id = "req-1";
  e.principal = "alice";
  e.peer = "10.0.0.1:5000";
  e.operation = "GenerateDataKey";
  e.key_id = "k1";
  e.key_version_id = "v1";
  // Out of order on purpose: the line sorts them.
  e.context = {{"tenant", "ffeeddccbbaa99887766554433221100"},
               {"a", "00112233445566778899aabbccddeeff"}};
  e.outcome = Outcome::kSuccess;
  return e;
}

TEST(AuditRecordTest, FormatIsByteExact) {
  const FormattedRecord f = FormatRecord(SampleEntry(), 1, kTime, kZeroHash);
  const std::string body =
      "{\"seq\":1,\"time\":\"2026-11-22T10:00:00.123456Z\",\"type\":\"rpc\",\"request_id\":"
      "\"req-1\",\"principal\":\"alice\",\"peer\":\"10.0.0.1:5000\",\"operation\":"
      "\"GenerateDataKey\",\"key_id\":\"k1\",\"key_version_id\":\"v1\",\"context\":{\"a\":"
      "\"00112233445566778899aabbccddeeff\",\"tenant\":\"ffeeddccbbaa99887766554433221100\"},"
      "\"outcome\":\"success\",\"prev\":"
      "\"0000000000000000000000000000000000000000000000000000000000000000\"";
  EXPECT_EQ(f.body, body);
  // Independently: printf '%s}' "$body" | sha256sum
  EXPECT_EQ(f.hash, "6e0b24165749008743b131df559f5a557f8e484bb2feae34eeb0b16b0ea9f76e");
  EXPECT_EQ(FinishRecord(f),
            body + ",\"hash\":\"6e0b24165749008743b131df559f5a557f8e484bb2feae34eeb0b16b0ea9f76e\"}\n");
}

TEST(AuditRecordTest, CheckpointLineEndsWithKeyAndSignature) {
  Entry e;
  e.type = RecordType::kCheckpoint;
  const FormattedRecord f = FormatRecord(e, 7, kTime, std::string(64, 'a'));
  EXPECT_EQ(f.body, "{\"seq\":7,\"time\":\"2026-11-22T10:00:00.123456Z\",\"type\":\"checkpoint\","
                    "\"prev\":\"" + std::string(64, 'a') + "\"");
  EXPECT_EQ(FinishRecord(f, std::string(32, 'b'), "\x01\x02\x03"),
            f.body + ",\"hash\":\"" + f.hash + "\",\"signing_key\":\"" + std::string(32, 'b') +
                "\",\"signature\":\"AQID\"}\n");
}

TEST(AuditRecordTest, ParseRoundTripsEveryField) {
  Entry e = SampleEntry();
  e.error_type = "AccessDeniedException";
  e.function = "C_Encrypt";
  e.mechanism = "CKM_AES_GCM";
  e.object_id = "v1";
  e.result = "CKR_OK";
  e.message = "hello";
  e.outcome = Outcome::kDenied;
  const FormattedRecord f = FormatRecord(e, 42, kTime, std::string(64, 'c'));
  auto parsed = ParseRecord(FinishRecord(f));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::sort(e.context.begin(), e.context.end());
  EXPECT_EQ(parsed->entry, e);
  EXPECT_EQ(parsed->seq, 42u);
  EXPECT_EQ(parsed->time, kTime);
  EXPECT_EQ(parsed->prev, std::string(64, 'c'));
  EXPECT_EQ(parsed->hash, f.hash);
  EXPECT_EQ(parsed->HashedBytes(), f.body + "}");
}

TEST(AuditRecordTest, TimeIsTruncatedToMicroseconds) {
  Entry e;
  const FormattedRecord f = FormatRecord(e, 1, kTime + absl::Nanoseconds(999), kZeroHash);
  EXPECT_THAT(f.body, ::testing::HasSubstr("\"time\":\"2026-11-22T10:00:00.123456Z\""));
}

TEST(JsonEscapeTest, EscapesHostileBytesOneWay) {
  EXPECT_EQ(JsonEscape("a\"b\\c/"), "a\\\"b\\\\c/");
  EXPECT_EQ(JsonEscape(std::string("\b\f\n\r\t\x01\x1f\x7f", 8)),
            "\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f");
  EXPECT_EQ(JsonEscape(std::string("\0", 1)), "\\u0000");
  // Valid UTF-8 passes; C1 controls and line separators do not.
  EXPECT_EQ(JsonEscape("h\xC3\xA9llo \xF0\x9F\x94\x91"), "h\xC3\xA9llo \xF0\x9F\x94\x91");
  EXPECT_EQ(JsonEscape("\xC2\x85\xE2\x80\xA8\xE2\x80\xA9"), "\\u0085\\u2028\\u2029");
  // Invalid UTF-8, byte by byte as lone low surrogates: stray continuation,
  // 0xFF, overlong '/', a UTF-8-encoded surrogate, a truncated sequence.
  EXPECT_EQ(JsonEscape("\x80\xFF"), "\\udc80\\udcff");
  EXPECT_EQ(JsonEscape("\xC0\xAF"), "\\udcc0\\udcaf");
  EXPECT_EQ(JsonEscape("\xED\xA0\x80"), "\\udced\\udca0\\udc80");
  EXPECT_EQ(JsonEscape("\xE2\x82"), "\\udce2\\udc82");
  EXPECT_EQ(JsonEscape("\xF4\x90\x80\x80"), "\\udcf4\\udc90\\udc80\\udc80");  // > U+10FFFF
}

// Every field carries attacker-influenced bytes: each must come back exactly,
// on one line, with no raw control byte in it.
TEST(JsonEscapeTest, AnyBytesRoundTripThroughARecord) {
  std::vector<std::string> hostile = {
      "\"},\"outcome\":\"success\"",
      "a\\\"b",
      std::string("nul\0byte", 8),
      "line\nbreak\r\n",
      "\xff\xfe\xfd",
      "\xed\xa0\x80\xed\xb0\x80",
      "\\udcff",  // the text of an escape is not the byte it stands for
      "\xdc\xff",
      "\xe2\x80\xae" "evil",  // right-to-left override
  };
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 24, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xFF);
    hostile.push_back(s);
  }
  std::set<std::string> spellings;
  for (const std::string& s : hostile) {
    Entry e;
    e.type = RecordType::kRpc;
    e.principal = s;
    e.message = s;
    if (!s.empty()) e.context = {{s, "00"}};
    const std::string line = FinishRecord(FormatRecord(e, 1, kTime, kZeroHash));
    ASSERT_EQ(line.find('\n'), line.size() - 1);
    for (char c : line.substr(0, line.size() - 1)) {
      ASSERT_GE(static_cast<unsigned char>(c), 0x20) << line;
    }
    auto parsed = ParseRecord(line);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << " for " << line;
    EXPECT_EQ(parsed->entry.principal, s);
    EXPECT_EQ(parsed->entry.message, s);
    spellings.insert(JsonEscape(s));
  }
  std::set<std::string> distinct(hostile.begin(), hostile.end());
  EXPECT_EQ(spellings.size(), distinct.size()) << "two byte strings share a spelling";
}

struct BadLineCase {
  std::string name;
  std::string line;
  std::string problem;
};

class ParseRecordRejectsTest : public ::testing::TestWithParam<BadLineCase> {};

TEST_P(ParseRecordRejectsTest, WithInvalidArgument) {
  EXPECT_THAT(ParseRecord(GetParam().line).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, GetParam().problem));
}

const std::string kH(64, '0');
const std::string kT = "\"time\":\"2026-11-22T10:00:00.123456Z\"";

INSTANTIATE_TEST_SUITE_P(
    AuditRecordTest, ParseRecordRejectsTest,
    ::testing::Values(
        BadLineCase{"Empty", "", "must start with"},
        BadLineCase{"NotJson", "hello", "must start with"},
        BadLineCase{"MissingHash", "{\"seq\":1," + kT + ",\"type\":\"event\",\"prev\":\"" + kH + "\"}",
                    "\"hash\" is missing"},
        BadLineCase{"OutOfOrder", "{" + kT + ",\"seq\":1}", "out of order"},
        BadLineCase{"Repeated", "{\"seq\":1,\"seq\":2}", "out of order or repeated"},
        BadLineCase{"UnknownMember", "{\"seq\":1,\"colour\":\"red\"}", "unknown member"},
        BadLineCase{"LeadingZero", "{\"seq\":01}", "leading zero"},
        BadLineCase{"SeqZero", "{\"seq\":0}", "at least 1"},
        BadLineCase{"SeqOverflow", "{\"seq\":18446744073709551616}", "out of range"},
        BadLineCase{"Whitespace", "{ \"seq\":1}", "expected a string"},
        BadLineCase{"UpperHex", "{\"seq\":1," + kT + ",\"type\":\"event\",\"prev\":\"" +
                                    std::string(64, 'A') + "\"}", "prev is not 64"},
        BadLineCase{"BadTime", "{\"seq\":1,\"time\":\"yesterday\"}", "not RFC 3339"},
        BadLineCase{"BadType", "{\"seq\":1," + kT + ",\"type\":\"party\"}", "unknown type"},
        BadLineCase{"Unterminated", "{\"seq\":1," + kT + ",\"type\":\"ev", "unterminated"},
        BadLineCase{"RawControl", "{\"seq\":1," + kT + ",\"type\":\"event\",\"message\":\"a\tb\"}",
                    "unescaped control byte"},
        BadLineCase{"LoneSurrogate", "{\"seq\":1," + kT + ",\"type\":\"event\",\"message\":\"\\udc00\"}",
                    "lone low surrogate"},
        BadLineCase{"TrailingBytes", "{\"seq\":1," + kT + ",\"type\":\"event\",\"prev\":\"" + kH +
                                         "\",\"hash\":\"" + kH + "\"} ", "trailing bytes"},
        BadLineCase{"NonCanonicalEscape", "{\"seq\":1," + kT + ",\"type\":\"event\",\"message\":\"\\u0041\",\"prev\":\"" +
                                              kH + "\",\"hash\":\"" + kH + "\"}", "canonical"},
        BadLineCase{"EmptyMember", "{\"seq\":1," + kT + ",\"type\":\"event\",\"message\":\"\",\"prev\":\"" +
                                       kH + "\",\"hash\":\"" + kH + "\"}", "canonical"},
        BadLineCase{"UnsortedContext", "{\"seq\":1," + kT + ",\"type\":\"rpc\",\"context\":{\"b\":\"1\",\"a\":\"2\"}}",
                    "not sorted"},
        BadLineCase{"SignatureOnEvent", "{\"seq\":1," + kT + ",\"type\":\"event\",\"prev\":\"" + kH +
                                            "\",\"hash\":\"" + kH + "\",\"signing_key\":\"" +
                                            std::string(32, '0') + "\",\"signature\":\"AQID\"}",
                    "only a checkpoint"},
        BadLineCase{"CheckpointWithoutSignature", "{\"seq\":1," + kT + ",\"type\":\"checkpoint\",\"prev\":\"" +
                                                      kH + "\",\"hash\":\"" + kH + "\"}",
                    "needs signing_key"}),
    [](const ::testing::TestParamInfo<BadLineCase>& info) { return info.param.name; });

// ---- VerifyAuditLog

class VerifyTest : public ::testing::Test {
 protected:
  // Lines (with '\n') of a log with records 1..n; checkpoints at `checkpoints`.
  std::vector<std::string> BuildLog(uint64_t n, const std::set<uint64_t>& checkpoints,
                                    const TestSigningKey* signer = nullptr) {
    if (signer == nullptr) signer = &key_;
    std::vector<std::string> lines;
    std::string prev(kZeroHash);
    for (uint64_t seq = 1; seq <= n; ++seq) {
      Entry e;
      if (checkpoints.count(seq)) {
        e.type = RecordType::kCheckpoint;
      } else {
        e.type = RecordType::kRpc;
        e.request_id = absl::StrCat("req-", seq);
        e.principal = "alice";
        e.outcome = Outcome::kSuccess;
      }
      const FormattedRecord f = FormatRecord(e, seq, kTime + absl::Seconds(seq), prev);
      if (e.type == RecordType::kCheckpoint) {
        lines.push_back(FinishRecord(f, signer->Fingerprint(), signer->Sign(f.body + "}").value()));
      } else {
        lines.push_back(FinishRecord(f));
      }
      prev = f.hash;
    }
    return lines;
  }

  VerifyResult Verify(const std::vector<std::string>& lines, bool allow_partial = false) {
    std::istringstream in(absl::StrJoin(lines, ""));
    auto result = VerifyAuditLog(in, key_.PublicDer(), allow_partial);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : VerifyResult{};
  }

  // Re-formats `line` (changed) with a hash that matches its new bytes.
  static std::string Rehash(const std::string& line) {
    auto r = ParseRecord(line);
    EXPECT_TRUE(r.ok()) << r.status();
    return FinishRecord(FormatRecord(r->entry, r->seq, r->time, r->prev), r->signing_key,
                        r->signature);
  }

  static void ExpectFirstBad(const VerifyResult& r, uint64_t seq) {
    EXPECT_FALSE(r.ok);
    ASSERT_TRUE(r.first_bad_sequence.has_value()) << r.problem;
    EXPECT_EQ(*r.first_bad_sequence, seq) << r.problem;
    EXPECT_FALSE(r.problem.empty());
    EXPECT_EQ(r.problem.find('\n'), std::string::npos);
  }

  TestSigningKey key_;
};

TEST_F(VerifyTest, AnIntactLogVerifies) {
  const VerifyResult r = Verify(BuildLog(20, {5, 10, 15}));
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 20u);
  EXPECT_EQ(r.checkpoints, 3u);
  EXPECT_EQ(r.last_sequence, 20u);
  EXPECT_EQ(r.unsigned_tail, 5u);
  EXPECT_FALSE(r.first_bad_sequence.has_value());
}

TEST_F(VerifyTest, AcceptsAPemPublicKey) {
  std::istringstream in(absl::StrJoin(BuildLog(6, {3, 6}), ""));
  auto r = VerifyAuditLog(in, key_.PublicPem());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_EQ(r->checkpoints, 2u);
  EXPECT_EQ(r->unsigned_tail, 0u);
}

TEST_F(VerifyTest, AnEmptyLogVerifies) {
  const VerifyResult r = Verify({});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.records, 0u);
}

TEST_F(VerifyTest, RejectsAnUnusablePublicKey) {
  std::istringstream in("");
  EXPECT_THAT(VerifyAuditLog(in, "not a key").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> p384(EVP_EC_gen("P-384"), EVP_PKEY_free);
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(p384.get(), &der);
  const std::string p384_der(reinterpret_cast<char*>(der), len);
  OPENSSL_free(der);
  EXPECT_THAT(VerifyAuditLog(in, p384_der).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "P-256"));
}

TEST_F(VerifyTest, AChangedRecordIsFirstBad) {
  auto lines = BuildLog(10, {5, 10});
  lines[6] = absl::StrReplaceAll(lines[6], {{"alice", "mallory"}});  // seq 7
  const VerifyResult r = Verify(lines);
  ExpectFirstBad(r, 7);
  EXPECT_THAT(r.problem, ::testing::HasSubstr("record 7: its hash does not match"));
  EXPECT_EQ(r.last_sequence, 6u);
}

TEST_F(VerifyTest, AChangedRecordWithARecomputedHashIsFirstBad) {
  auto lines = BuildLog(10, {5, 10});
  lines[6] = Rehash(absl::StrReplaceAll(lines[6], {{"alice", "mallory"}}));
  ExpectFirstBad(Verify(lines), 7);
}

TEST_F(VerifyTest, ADeletedRecordIsFirstBad) {
  auto lines = BuildLog(10, {5, 10});
  lines.erase(lines.begin() + 3);  // seq 4
  const VerifyResult r = Verify(lines);
  ExpectFirstBad(r, 4);
  EXPECT_THAT(r.problem, ::testing::HasSubstr("seq 5 where 4 was due"));
}

TEST_F(VerifyTest, ADeletedLastRecordBeforeACheckpointIsCaughtByTheChain) {
  // Deleting records and renumbering the rest still breaks prev.
  auto lines = BuildLog(6, {6});
  lines.erase(lines.begin() + 2);  // seq 3
  for (size_t i = 2; i < lines.size(); ++i) {
    auto r = ParseRecord(lines[i]).value();
    lines[i] = FinishRecord(FormatRecord(r.entry, r.seq - 1, r.time, r.prev), r.signing_key,
                            r.signature);
  }
  ExpectFirstBad(Verify(lines), 2);
}

TEST_F(VerifyTest, TwoSwappedRecordsAreFirstBadAtTheFirst) {
  auto lines = BuildLog(10, {5, 10});
  std::swap(lines[2], lines[3]);  // seq 3 and 4
  ExpectFirstBad(Verify(lines), 3);
}

TEST_F(VerifyTest, AChangedSignatureIsFirstBad) {
  auto lines = BuildLog(10, {5, 10});
  auto r = ParseRecord(lines[4]).value();
  std::string sig = r.signature;
  sig[sig.size() - 1] ^= 0x01;
  lines[4] = FinishRecord(FormatRecord(r.entry, r.seq, r.time, r.prev), r.signing_key, sig);
  const VerifyResult v = Verify(lines);
  ExpectFirstBad(v, 5);
  EXPECT_THAT(v.problem, ::testing::HasSubstr("signature does not verify"));
  EXPECT_EQ(v.checkpoints, 0u);
}

TEST_F(VerifyTest, ACheckpointSignedByAnotherKeyIsFirstBad) {
  TestSigningKey other;
  auto lines = BuildLog(10, {5, 10}, &other);
  const VerifyResult v = Verify(lines);
  ExpectFirstBad(v, 5);
  EXPECT_THAT(v.problem, ::testing::HasSubstr("signed by key"));

  // Another key's signature under our key's name.
  lines = BuildLog(10, {5, 10});
  auto r = ParseRecord(lines[9]).value();
  lines[9] = FinishRecord(FormatRecord(r.entry, r.seq, r.time, r.prev), key_.Fingerprint(),
                          other.Sign(r.HashedBytes()).value());
  ExpectFirstBad(Verify(lines), 10);
}

TEST_F(VerifyTest, ATruncatedLastLineIsFirstBad) {
  auto lines = BuildLog(8, {4});
  lines[7] = lines[7].substr(0, lines[7].size() / 2);
  const VerifyResult r = Verify(lines);
  ExpectFirstBad(r, 8);  // unparseable: last_sequence + 1
  EXPECT_EQ(r.last_sequence, 7u);

  lines = BuildLog(8, {4});
  lines[7].pop_back();  // whole record, no '\n'
  const VerifyResult r2 = Verify(lines);
  ExpectFirstBad(r2, 8);
  EXPECT_THAT(r2.problem, ::testing::HasSubstr("no newline"));
}

TEST_F(VerifyTest, AGarbageLineIsFirstBadAtTheSeqDue) {
  auto lines = BuildLog(8, {4});
  lines[5] = "garbage\n";
  ExpectFirstBad(Verify(lines), 6);
}

TEST_F(VerifyTest, APartialExportVerifiesOnlyWhenAllowed) {
  auto lines = BuildLog(12, {4, 8, 12});
  lines.erase(lines.begin(), lines.begin() + 5);  // starts at seq 6
  const VerifyResult partial = Verify(lines, /*allow_partial=*/true);
  EXPECT_TRUE(partial.ok) << partial.problem;
  EXPECT_EQ(partial.records, 7u);
  EXPECT_EQ(partial.checkpoints, 2u);
  EXPECT_EQ(partial.last_sequence, 12u);
  ExpectFirstBad(Verify(lines), 1);
  // A change inside the export is still found.
  lines[3] = absl::StrReplaceAll(lines[3], {{"alice", "eve"}});  // seq 9
  ExpectFirstBad(Verify(lines, true), 9);
}

}  // namespace
}  // namespace kms::audit
