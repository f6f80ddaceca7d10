// The audit log end to end: a real kmsd serving mTLS with its development
// PKI, so the calls come from two principals with their own certificates. The
// administrator ("admin") makes keys and uses them with encryption contexts;
// the auditor ("auditor") exports the log and its signing public key with
// kmsctl. `kmsctl audit verify`, offline, accepts the export and catches
// every copy an attacker with write access to the file but not the HSM's
// signing key could make: a changed, a deleted, two swapped records, and a
// changed record with the whole chain after it recomputed. Each is named at
// the seq the verifier documents (daemon/audit/audit_record.h), taken from
// the lines themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/kms_client.h"
#include "daemon/audit/audit_record.h"
#include "tests/testing/daemon_process.h"

namespace kms {
namespace {

using client::ClientOptions;
using client::KmsClient;
using testing::ClientTlsFiles;
using testing::CommandResult;
using testing::DaemonProcess;
using testing::ReadTestFile;
using testing::WriteTestFile;

// The development PKI's principals (daemon/server/dev_pki.h) and a policy
// letting the administrator use its keys.
constexpr char kAdmin[] = "admin";
constexpr char kAdminKeyPolicy[] =
    R"({"Statement":[{"Effect":"Allow","Principal":"admin","Action":"kms:*"}]})";

// Encryption-context values that must never reach the log in clear.
const std::map<std::string, std::string> kContext = {{"tenant", "acme-tenant-7d1f0c"},
                                                     {"purpose", "invoice-batch-2b9e44"}};

// The "seq" of a stored line: every line begins {"seq":N, (audit_record.h).
uint64_t SeqOf(const std::string& line) {
  constexpr absl::string_view kPrefix = "{\"seq\":";
  uint64_t seq = 0;
  EXPECT_TRUE(absl::StartsWith(line, kPrefix)) << line;
  const size_t end = line.find(',');
  EXPECT_TRUE(absl::SimpleAtoi(line.substr(kPrefix.size(), end - kPrefix.size()), &seq)) << line;
  return seq;
}

bool IsCheckpoint(const std::string& line) {
  return absl::StrContains(line, "\"type\":\"checkpoint\"");
}

// "1 record", "2 records".
std::string CountOf(size_t n, const std::string& noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

class AuditTamperE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kmsd-audit-e2e");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    DaemonProcess::Options options;
    options.data_dir = Path("data");
    options.transport = DaemonProcess::Transport::kDevPki;
    // Checkpoints by count, so the log has several without waiting for the
    // interval.
    options.extra_yaml = "audit:\n  checkpoint_every_records: 5\n";
    auto daemon = DaemonProcess::Start(options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    const std::string tls = options.data_dir + "/tls/";
    admin_ = {tls + "ca.pem", tls + "admin.pem", tls + "admin.key"};
    auditor_ = {tls + "ca.pem", tls + "auditor.pem", tls + "auditor.key"};

    MakeTraffic();
    ASSERT_FALSE(HasFatalFailure());
    ExportLog();
  }

  std::string Path(const std::string& name) const { return dir_->path() + "/" + name; }

  // As the administrator: two keys, then data-plane calls with an encryption
  // context, each leaving an "rpc" record and the "hsm" records of its
  // PKCS#11 calls.
  void MakeTraffic() {
    ClientOptions options;
    options.ca_file = admin_.ca_file;
    options.cert_file = admin_.cert_file;
    options.key_file = admin_.key_file;
    auto client = KmsClient::Connect(daemon_->endpoint(), options);
    ASSERT_TRUE(client.ok()) << client.status();
    KmsClient& kms = **client;

    std::vector<std::string> keys;
    for (const char* description : {"audit-e2e-1", "audit-e2e-2"}) {
      v1::CreateKeyRequest create;
      create.set_description(description);
      create.set_policy(kAdminKeyPolicy);
      auto created = kms.CreateKey(create);
      ASSERT_TRUE(created.ok()) << created.status();
      keys.push_back(created->key_metadata().key_id());
    }
    for (const std::string& key_id : keys) {
      v1::EncryptRequest encrypt;
      encrypt.set_key_id(key_id);
      encrypt.set_plaintext("audit me");
      for (const auto& [k, v] : kContext) (*encrypt.mutable_encryption_context())[k] = v;
      auto encrypted = kms.Encrypt(encrypt);
      ASSERT_TRUE(encrypted.ok()) << encrypted.status();

      v1::DecryptRequest decrypt;
      decrypt.set_ciphertext_blob(encrypted->ciphertext_blob());
      for (const auto& [k, v] : kContext) (*decrypt.mutable_encryption_context())[k] = v;
      auto decrypted = kms.Decrypt(decrypt);
      ASSERT_TRUE(decrypted.ok()) << decrypted.status();
      EXPECT_EQ(decrypted->plaintext(), "audit me");

      v1::GenerateDataKeyRequest data_key;
      data_key.set_key_id(key_id);
      data_key.set_key_spec(v1::AES_256);
      for (const auto& [k, v] : kContext) (*data_key.mutable_encryption_context())[k] = v;
      auto generated = kms.GenerateDataKey(data_key);
      ASSERT_TRUE(generated.ok()) << generated.status();
    }
  }

  // As the auditor: the public key and the log, with kmsctl, into audit.pem
  // and log.jsonl; the lines (without '\n') into lines_. The public key
  // first, so that call's record is durable before the export reads the log.
  void ExportLog() {
    CommandResult key = testing::RunKmsctlWithTls(
        daemon_->endpoint(), auditor_, {"audit", "public-key", "--out", Path("audit.pem")});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    CommandResult exported = testing::RunKmsctlWithTls(
        daemon_->endpoint(), auditor_, {"audit", "export", "--out", Path("log.jsonl")});
    ASSERT_EQ(exported.exit_code, 0) << exported.err;
    const std::string log = ReadTestFile(Path("log.jsonl"));
    ASSERT_TRUE(absl::EndsWith(log, "\n"));
    lines_ = absl::StrSplit(absl::string_view(log).substr(0, log.size() - 1), '\n');
  }

  // kmsctl audit verify on `lines` written to `name`, with no endpoint and no
  // TLS files: verify works offline.
  CommandResult Verify(const std::string& name, const std::vector<std::string>& lines,
                       const std::vector<std::string>& flags = {}) {
    WriteTestFile(Path(name), absl::StrCat(absl::StrJoin(lines, "\n"), "\n"));
    std::vector<std::string> argv = {KMS_KMSCTL_BINARY};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(),
                {"audit", "verify", "--log", Path(name), "--public-key", Path("audit.pem")});
    return testing::RunCommand(argv);
  }

  // The index of an "rpc" record of the administrator's with a checkpoint
  // after it: the record the tampering tests change.
  size_t Victim() const {
    size_t last_checkpoint = 0;
    for (size_t i = 0; i < lines_.size(); ++i) {
      if (IsCheckpoint(lines_[i])) last_checkpoint = i;
    }
    for (size_t i = 1; i < last_checkpoint; ++i) {
      if (absl::StrContains(lines_[i], "\"type\":\"rpc\"") &&
          absl::StrContains(lines_[i], absl::StrCat("\"principal\":\"", kAdmin, "\""))) {
        return i;
      }
    }
    ADD_FAILURE() << "no rpc record of " << kAdmin << " before the last checkpoint:\n"
                  << absl::StrJoin(lines_, "\n");
    return 0;
  }

  static void ExpectFirstBad(const CommandResult& outcome, uint64_t seq) {
    EXPECT_EQ(outcome.exit_code, 1) << outcome.out << outcome.err;
    EXPECT_TRUE(absl::StartsWith(
        outcome.err,
        absl::StrCat("kmsctl: audit log NOT verified: first bad record seq ", seq, ": ")))
        << outcome.err;
    EXPECT_EQ(outcome.out, "");
  }

  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  ClientTlsFiles admin_, auditor_;
  std::vector<std::string> lines_;
};

TEST_F(AuditTamperE2eTest, TheExportVerifiesOfflineAndTheSummaryMatchesItsLines) {
  size_t checkpoints = 0, unsigned_tail = 0;
  for (const std::string& line : lines_) {
    if (IsCheckpoint(line)) {
      ++checkpoints;
      unsigned_tail = 0;
    } else {
      ++unsigned_tail;
    }
  }
  ASSERT_GE(checkpoints, 3u) << absl::StrJoin(lines_, "\n");
  const uint64_t last = SeqOf(lines_.back());
  ASSERT_EQ(SeqOf(lines_.front()), 1u);
  ASSERT_EQ(last, lines_.size());

  CommandResult human = Verify("copy.jsonl", lines_);
  CommandResult json = Verify("copy.jsonl", lines_, {"--json"});

  ASSERT_EQ(human.exit_code, 0) << human.err;
  const std::string counts =
      absl::StrCat("audit log verified: ", CountOf(lines_.size(), "record"), " (seq 1..", last,
                   "), ", CountOf(checkpoints, "signed checkpoint"), "; ");
  if (unsigned_tail == 0) {
    EXPECT_EQ(human.out, counts + "every record is covered by a signed checkpoint\n");
  } else {
    EXPECT_EQ(human.out,
              absl::StrCat(counts, CountOf(unsigned_tail, "record"), " after the last checkpoint ",
                           unsigned_tail == 1 ? "is" : "are", " chained but not yet signed\n"));
  }
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(json.out,
            absl::StrCat("{\"verified\":true,\"records\":", lines_.size(),
                         ",\"first_sequence\":1,\"last_sequence\":", last,
                         ",\"checkpoints\":", checkpoints, ",\"unsigned_tail\":", unsigned_tail,
                         ",\"first_bad_sequence\":null,\"problem\":null}\n"));
}

TEST_F(AuditTamperE2eTest, ALogCutShortAfterACheckpointVerifiesAndCountsItsUnsignedTail) {
  // Records after the last checkpoint are protected by the chain alone: a
  // log cut just before its last checkpoint is still a valid log, and the
  // summary says how much of it no signature covers.
  std::vector<size_t> checkpoints;
  for (size_t i = 0; i < lines_.size(); ++i) {
    if (IsCheckpoint(lines_[i])) checkpoints.push_back(i);
  }
  ASSERT_GE(checkpoints.size(), 3u);
  const size_t cut = checkpoints.back();
  const std::vector<std::string> head(lines_.begin(), lines_.begin() + cut);
  const size_t tail = cut - checkpoints[checkpoints.size() - 2] - 1;
  ASSERT_GE(tail, 2u);

  CommandResult outcome = Verify("cut.jsonl", head);

  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out,
            absl::StrCat("audit log verified: ", cut, " records (seq 1..", SeqOf(head.back()),
                         "), ", checkpoints.size() - 1, " signed checkpoints; ", tail,
                         " records after the last checkpoint are chained but not yet signed\n"));
}

TEST_F(AuditTamperE2eTest, TheExportHoldsRpcAndHsmRecordsAndContextKeysButNoContextValues) {
  const std::string log = ReadTestFile(Path("log.jsonl"));

  EXPECT_TRUE(absl::StrContains(log, "\"type\":\"rpc\""));
  EXPECT_TRUE(absl::StrContains(log, "\"type\":\"hsm\""));
  EXPECT_TRUE(absl::StrContains(log, "\"principal\":\"auditor\""));  // GetAuditPublicKey
  for (const char* operation : {"CreateKey", "Encrypt", "Decrypt", "GenerateDataKey"}) {
    EXPECT_TRUE(absl::StrContains(log, absl::StrCat("\"operation\":\"", operation, "\"")))
        << operation;
  }
  // Members sorted by key: purpose before tenant.
  EXPECT_TRUE(absl::StrContains(log, "\"context\":{\"purpose\":\"")) << log;
  for (const auto& [key, value] : kContext) {
    EXPECT_TRUE(absl::StrContains(log, absl::StrCat("\"", key, "\":\""))) << key;
    EXPECT_FALSE(absl::StrContains(log, value)) << value;
  }
}

TEST_F(AuditTamperE2eTest, EveryTamperedCopyIsCaughtAtTheRecordItBroke) {
  const size_t k = Victim();
  ASSERT_GT(k, 0u);
  const uint64_t seq_k = SeqOf(lines_[k]);
  const std::string principal = absl::StrCat("\"principal\":\"", kAdmin, "\"");

  {
    SCOPED_TRACE("a record changed: the principal, JSON still valid");
    std::vector<std::string> copy = lines_;
    copy[k].replace(copy[k].find(principal), principal.size(), "\"principal\":\"mallory\"");
    ExpectFirstBad(Verify("changed.jsonl", copy), seq_k);
  }
  {
    SCOPED_TRACE("a record deleted: the seq due there is missing");
    std::vector<std::string> copy = lines_;
    copy.erase(copy.begin() + static_cast<std::ptrdiff_t>(k));
    ExpectFirstBad(Verify("deleted.jsonl", copy), seq_k);
  }
  {
    SCOPED_TRACE("two adjacent records swapped: the first is out of order");
    std::vector<std::string> copy = lines_;
    std::swap(copy[k], copy[k + 1]);
    ExpectFirstBad(Verify("swapped.jsonl", copy), seq_k);
  }
  {
    SCOPED_TRACE("a record changed and every hash after it recomputed: only a signature stops it");
    std::vector<std::string> copy = lines_;
    std::string prev = audit::ParseRecord(copy[k - 1]).value().hash;
    uint64_t next_checkpoint = 0;
    for (size_t i = k; i < copy.size(); ++i) {
      auto record = audit::ParseRecord(copy[i]);
      ASSERT_TRUE(record.ok()) << record.status();
      if (i == k) record->entry.principal = "mallory";
      if (next_checkpoint == 0 && IsCheckpoint(copy[i])) next_checkpoint = record->seq;
      const audit::FormattedRecord f =
          audit::FormatRecord(record->entry, record->seq, record->time, prev);
      // The attacker keeps the old signature: it cannot make a new one.
      copy[i] = audit::FinishRecord(f, record->signing_key, record->signature);
      copy[i].pop_back();  // its '\n'
      prev = f.hash;
    }
    ASSERT_NE(next_checkpoint, 0u);
    CommandResult outcome = Verify("rechained.jsonl", copy);
    ExpectFirstBad(outcome, next_checkpoint);
    EXPECT_TRUE(absl::StrContains(outcome.err, "checkpoint signature does not verify"))
        << outcome.err;
  }
}

}  // namespace
}  // namespace kms
