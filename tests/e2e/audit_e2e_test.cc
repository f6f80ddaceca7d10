// End to end: who may do what, and the audit trail of it. A real kmsd over
// mTLS with three principals from certificates made here: an administrator,
// an auditor and a service (named by its URI SAN). Policies, grants and
// roles are enforced over the wire; every call and the HSM calls beneath it
// are recorded; an answered call's record survives kill -9; and kmsd refuses
// to serve while its audit log cannot be written.
#include <signal.h>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/kms_client.h"
#include "daemon/audit/audit_log.h"
#include "daemon/audit/audit_record.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kms/v1/kms.grpc.pb.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_pki.h"

namespace kms {
namespace {

using client::ClientOptions;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using client::KmsClient;
using testing::CertSpec;
using testing::DaemonProcess;
using testing::Eventually;
using testing::ReadTestFile;

constexpr char kAdmin[] = "ops-admin";                     // by CN
constexpr char kAuditor[] = "compliance";                  // by CN
constexpr char kService[] = "spiffe://prod/payments/api";  // by URI SAN

// Lets the service make data keys and decrypt them for tenant "acme" only.
constexpr char kServicePolicy[] = R"({"Statement":[
  {"Effect":"Allow","Principal":"spiffe://prod/payments/*",
   "Action":["kms:GenerateDataKey*","kms:Decrypt"],
   "Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"acme"}}}]})";

// The same, with a Deny on Decrypt that must win over the Allow.
constexpr char kServicePolicyWithDeny[] = R"({"Statement":[
  {"Effect":"Allow","Principal":"spiffe://prod/payments/*",
   "Action":["kms:GenerateDataKey*","kms:Decrypt"],
   "Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"acme"}}},
  {"Effect":"Deny","Principal":"spiffe://prod/payments/api","Action":"kms:Decrypt"}]})";

class AuditE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kmsd-audit-e2e");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
    pki_ = std::make_unique<testing::TestPki>(dir_->path());
    ASSERT_TRUE(pki_->MakeCa("ca", "kmsd audit test CA").ok());
    ASSERT_TRUE(pki_->MakeCert("server", "ca",
                               testing::ServerCert("/CN=kmsd", "DNS:localhost,IP:127.0.0.1"))
                    .ok());
    ASSERT_TRUE(pki_->MakeCert("admin", "ca", testing::ClientCert("/CN=ops-admin")).ok());
    ASSERT_TRUE(pki_->MakeCert("auditor", "ca", testing::ClientCert("/CN=compliance")).ok());
    ASSERT_TRUE(pki_->MakeCert("service", "ca",
                               testing::ClientCert("/CN=payments", absl::StrCat("URI:", kService)))
                    .ok());
    data_dir_ = dir_->path() + "/data";
    audit_path_ = data_dir_ + "/audit.log";
    Start();
  }

  void TearDown() override {
    // An immutable file would outlive the test's directory.
    if (immutable_) SetImmutable(false);
  }

  void Start() {
    DaemonProcess::Options options;
    options.data_dir = data_dir_;
    options.transport = DaemonProcess::Transport::kTls;
    options.tls = {pki_->Cert("server"), pki_->Key("server"), pki_->Cert("ca")};
    options.administrators = {kAdmin};
    options.auditors = {kAuditor};
    // Small enough that a handful of calls makes signed checkpoints.
    options.extra_yaml = "audit:\n  checkpoint_every_records: 8\n";
    auto daemon = DaemonProcess::Start(std::move(options));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    admin_ = Client("admin");
    auditor_ = Client("auditor");
    service_ = Client("service");
  }

  std::unique_ptr<KmsClient> Client(const std::string& who) {
    ClientOptions options;
    options.timeout = absl::Seconds(10);
    options.ca_file = pki_->Cert("ca");
    options.cert_file = pki_->Cert(who);
    options.key_file = pki_->Key(who);
    auto client = KmsClient::Connect(daemon_->endpoint(), options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // A channel presenting `who`'s certificate, for the stubs KmsClient does
  // not wrap.
  std::shared_ptr<grpc::Channel> Channel(const std::string& who) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadTestFile(pki_->Cert("ca"));
    ssl.pem_cert_chain = ReadTestFile(pki_->Cert(who));
    ssl.pem_private_key = ReadTestFile(pki_->Key(who));
    return grpc::CreateChannel(daemon_->endpoint(), grpc::SslCredentials(ssl));
  }

  // A raw stub for `who`, for the trailers KmsClient does not show.
  std::unique_ptr<v1::KeyManagementService::Stub> Stub(const std::string& who) {
    return v1::KeyManagementService::NewStub(Channel(who));
  }

  // A key the administrator made, with `policy` (or kmsd's default).
  std::string NewKey(const std::string& policy = "") {
    v1::CreateKeyRequest r;
    r.set_description("audit e2e");
    r.set_policy(policy);
    auto created = admin_->CreateKey(r);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->key_metadata().key_id() : "";
  }

  static absl::StatusOr<v1::GenerateDataKeyResponse> DataKey(
      const KmsClient& client, const std::string& key_id,
      const std::map<std::string, std::string>& context) {
    v1::GenerateDataKeyRequest r;
    r.set_key_id(key_id);
    r.set_key_spec(v1::AES_256);
    r.mutable_encryption_context()->insert(context.begin(), context.end());
    return client.GenerateDataKey(r);
  }

  static absl::StatusOr<v1::EncryptResponse> Encrypt(
      const KmsClient& client, const std::string& key_id,
      const std::map<std::string, std::string>& context) {
    v1::EncryptRequest r;
    r.set_key_id(key_id);
    r.set_plaintext("payroll");
    r.mutable_encryption_context()->insert(context.begin(), context.end());
    return client.Encrypt(r);
  }

  static absl::StatusOr<v1::DecryptResponse> Decrypt(
      const KmsClient& client, const std::string& blob,
      const std::map<std::string, std::string>& context) {
    v1::DecryptRequest r;
    r.set_ciphertext_blob(blob);
    r.mutable_encryption_context()->insert(context.begin(), context.end());
    return client.Decrypt(r);
  }

  absl::Status PutPolicy(const std::string& key_id, const std::string& policy) {
    v1::PutKeyPolicyRequest r;
    r.set_key_id(key_id);
    r.set_policy(policy);
    return admin_->PutKeyPolicy(r).status();
  }

  // Every record the auditor's query returns (all pages).
  std::vector<v1::AuditRecord> Query(v1::QueryAuditLogRequest request) {
    std::vector<v1::AuditRecord> records;
    for (;;) {
      auto page = auditor_->QueryAuditLog(request);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) return records;
      records.insert(records.end(), page->records().begin(), page->records().end());
      if (page->next_sequence() == 0) return records;
      request.set_after_sequence(page->next_sequence());
    }
  }

  // The log's records, read from the file as another process would.
  std::vector<audit::ParsedRecord> FileRecords() {
    std::vector<audit::ParsedRecord> records;
    absl::Status read = audit::ReadAuditLog(audit_path_, 0, [&](const audit::ParsedRecord& r) {
      records.push_back(r);
      return true;
    });
    EXPECT_TRUE(read.ok()) << read;
    return records;
  }

  // Checks the whole file against the checkpoint key kmsd publishes.
  audit::VerifyResult VerifyFile(const std::string& public_key_der) {
    std::ifstream in(audit_path_);
    auto verified = audit::VerifyAuditLog(in, public_key_der);
    EXPECT_TRUE(verified.ok()) << verified.status();
    return verified.ok() ? *verified : audit::VerifyResult{};
  }

  std::string AuditPublicKey() {
    auto key = auditor_->GetAuditPublicKey(v1::GetAuditPublicKeyRequest());
    EXPECT_TRUE(key.ok()) << key.status();
    return key.ok() ? key->public_key_der() : "";
  }

  // What grpc.health.v1.Health/Check says for the whole server.
  HealthCheckResponse::ServingStatus HealthStatus() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckResponse response;
    const grpc::Status status = grpc::health::v1::Health::NewStub(Channel("service"))
                                    ->Check(&context, HealthCheckRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
    return status.ok() ? response.status() : HealthCheckResponse::UNKNOWN;
  }

  bool SetImmutable(bool on) {
    testing::CommandResult r =
        testing::RunCommand({"/usr/bin/chattr", on ? "+i" : "-i", audit_path_});
    immutable_ = on && r.exit_code == 0;
    return r.exit_code == 0;
  }

  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<testing::TestPki> pki_;
  std::string data_dir_, audit_path_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<KmsClient> admin_, auditor_, service_;
  bool immutable_ = false;
};

const std::map<std::string, std::string> kAcme = {{"tenant", "acme"}};
const std::map<std::string, std::string> kGlobex = {{"tenant", "globex"}};

TEST_F(AuditE2eTest, TheCreatorManagesButDoesNotUseAKeyByDefault) {
  const std::string key_id = NewKey();
  auto described = admin_->DescribeKey([&] {
    v1::DescribeKeyRequest r;
    r.set_key_id(key_id);
    return r;
  }());
  EXPECT_TRUE(described.ok()) << described.status();
  auto used = Encrypt(*admin_, key_id, {});
  EXPECT_ERROR(used, kPermissionDenied, "AccessDeniedException");
  // The message names who, what and which key, never the policy.
  EXPECT_TRUE(absl::StrContains(used.status().message(), "'ops-admin'")) << used.status();
  EXPECT_TRUE(absl::StrContains(used.status().message(), "kms:Encrypt")) << used.status();
  EXPECT_TRUE(absl::StrContains(used.status().message(), key_id)) << used.status();
  EXPECT_FALSE(absl::StrContains(used.status().message(), "Statement")) << used.status();
  // Only administrators create keys.
  EXPECT_ERROR(service_->CreateKey(v1::CreateKeyRequest()), kPermissionDenied,
               "AccessDeniedException");
}

TEST_F(AuditE2eTest, PoliciesGrantsAndDenyAreEnforcedAtOnce) {
  const std::string key_id = NewKey();
  EXPECT_ERROR(DataKey(*service_, key_id, kAcme), kPermissionDenied, "AccessDeniedException");

  ASSERT_TRUE(PutPolicy(key_id, kServicePolicy).ok());
  auto data_key = DataKey(*service_, key_id, kAcme);
  ASSERT_TRUE(data_key.ok()) << data_key.status();
  // The condition on the context: another tenant is refused.
  EXPECT_ERROR(DataKey(*service_, key_id, kGlobex), kPermissionDenied, "AccessDeniedException");
  EXPECT_TRUE(Decrypt(*service_, data_key->ciphertext_blob(), kAcme).ok());
  // Not in the policy.
  EXPECT_ERROR(Encrypt(*service_, key_id, kAcme), kPermissionDenied, "AccessDeniedException");

  // A grant for Encrypt, only with tenant=acme, works on the next call.
  v1::CreateGrantRequest grant;
  grant.set_key_id(key_id);
  grant.set_grantee_principal(kService);
  grant.add_operations(v1::ENCRYPT);
  (*grant.mutable_constraints()->mutable_encryption_context_equals())["tenant"] = "acme";
  auto granted = admin_->CreateGrant(grant);
  ASSERT_TRUE(granted.ok()) << granted.status();
  EXPECT_TRUE(Encrypt(*service_, key_id, kAcme).ok());
  EXPECT_ERROR(Encrypt(*service_, key_id, kGlobex), kPermissionDenied, "AccessDeniedException");
  // A grantee cannot revoke its own grant; a key manager can, at once.
  v1::RevokeGrantRequest revoke;
  revoke.set_key_id(key_id);
  revoke.set_grant_id(granted->grant_id());
  EXPECT_ERROR(service_->RevokeGrant(revoke), kPermissionDenied, "AccessDeniedException");
  ASSERT_TRUE(admin_->RevokeGrant(revoke).ok());
  EXPECT_ERROR(Encrypt(*service_, key_id, kAcme), kPermissionDenied, "AccessDeniedException");

  // An explicit Deny wins over the Allow it overlaps.
  ASSERT_TRUE(PutPolicy(key_id, kServicePolicyWithDeny).ok());
  EXPECT_ERROR(Decrypt(*service_, data_key->ciphertext_blob(), kAcme), kPermissionDenied,
               "AccessDeniedException");
  EXPECT_TRUE(DataKey(*service_, key_id, kAcme).ok());
}

TEST_F(AuditE2eTest, AuditorsReadTheAuditTrailAndNothingElse) {
  const std::string key_id = NewKey(kServicePolicy);
  EXPECT_TRUE(auditor_->QueryAuditLog(v1::QueryAuditLogRequest()).ok());
  EXPECT_TRUE(auditor_->GetKeyInventoryReport(v1::GetKeyInventoryReportRequest()).ok());
  EXPECT_ERROR(auditor_->ListKeys(v1::ListKeysRequest()), kPermissionDenied,
               "AccessDeniedException");
  EXPECT_ERROR(DataKey(*auditor_, key_id, kAcme), kPermissionDenied, "AccessDeniedException");
  // Neither administrators nor services read the audit log.
  EXPECT_ERROR(admin_->QueryAuditLog(v1::QueryAuditLogRequest()), kPermissionDenied,
               "AccessDeniedException");
  EXPECT_ERROR(service_->ExportAuditLog(v1::ExportAuditLogRequest()), kPermissionDenied,
               "AccessDeniedException");
}

TEST_F(AuditE2eTest, EveryCallIsRecordedWithItsHsmCallsAndNoContextValue) {
  const std::string key_id = NewKey(kServicePolicy);
  const std::map<std::string, std::string> context = {
      {"tenant", "acme"}, {"invoice", "secret-invoice-4711"}, {"region", "eu-west"}};
  auto data_key = DataKey(*service_, key_id, context);
  ASSERT_TRUE(data_key.ok()) << data_key.status();
  EXPECT_ERROR(DataKey(*service_, key_id, kGlobex), kPermissionDenied, "AccessDeniedException");
  ASSERT_TRUE(DataKey(*service_, key_id, kAcme).ok());

  v1::QueryAuditLogRequest query;
  query.set_key_id(key_id);
  query.set_principal(kService);
  query.set_include_hsm_calls(true);
  const std::vector<v1::AuditRecord> records = Query(query);
  std::vector<const v1::AuditRecord*> calls;
  for (const auto& r : records) {
    if (r.type() != v1::RPC) continue;
    EXPECT_EQ(r.operation(), "GenerateDataKey");
    EXPECT_EQ(r.principal(), kService);
    EXPECT_TRUE(absl::StartsWith(r.peer(), "ipv4:127.0.0.1:")) << r.peer();
    EXPECT_EQ(r.key_id(), key_id);
    calls.push_back(&r);
  }
  ASSERT_EQ(calls.size(), 3u);
  const v1::AuditRecord& allowed = *calls[0];
  const v1::AuditRecord& denied = *calls[1];
  EXPECT_EQ(allowed.outcome(), v1::SUCCESS);
  EXPECT_FALSE(allowed.key_version_id().empty());
  EXPECT_TRUE(allowed.error_type().empty());
  EXPECT_EQ(denied.outcome(), v1::DENIED);
  EXPECT_EQ(denied.error_type(), "AccessDeniedException");
  EXPECT_EQ(calls[2]->outcome(), v1::SUCCESS);
  // The context's keys, each value a keyed hash: never the value; equal
  // values hash alike, different ones do not.
  ASSERT_EQ(allowed.encryption_context().size(), 3u);
  for (const auto& [k, hashed] : allowed.encryption_context()) {
    EXPECT_EQ(hashed.size(), 32u) << k;
    EXPECT_NE(hashed, context.at(k)) << k;
  }
  EXPECT_EQ(calls[2]->encryption_context().at("tenant"), allowed.encryption_context().at("tenant"));
  EXPECT_NE(denied.encryption_context().at("tenant"), allowed.encryption_context().at("tenant"));

  // The HSM calls made for the allowed request carry its request id.
  int hsm_calls = 0;
  for (const auto& r : records) {
    if (r.type() != v1::HSM_CALL || r.request_id() != allowed.request_id()) continue;
    ++hsm_calls;
    EXPECT_FALSE(r.hsm_function().empty());
    EXPECT_EQ(r.hsm_result(), "CKR_OK") << r.hsm_function();
    EXPECT_LT(r.sequence(), allowed.sequence());
  }
  EXPECT_GE(hsm_calls, 1);

  // The file holds no context value anywhere, and its chain and signed
  // checkpoints verify with the public key alone.
  const std::string file = ReadTestFile(audit_path_);
  EXPECT_FALSE(absl::StrContains(file, "secret-invoice-4711"));
  EXPECT_FALSE(absl::StrContains(file, "eu-west"));
  EXPECT_FALSE(absl::StrContains(file, "globex"));
  EXPECT_TRUE(absl::StrContains(file, "\"invoice\":"));
  const audit::VerifyResult verified = VerifyFile(AuditPublicKey());
  EXPECT_TRUE(verified.ok) << verified.problem;
  EXPECT_GE(verified.checkpoints, 1u);
}

TEST_F(AuditE2eTest, AnAnsweredCallsRecordSurvivesKillDashNine) {
  const std::string key_id = NewKey(kServicePolicy);
  const std::string public_key = AuditPublicKey();
  auto stub = Stub("service");
  std::set<std::string> answered;
  for (int i = 0; i < 10; ++i) {
    grpc::ClientContext context;
    v1::GenerateDataKeyRequest r;
    r.set_key_id(key_id);
    r.set_key_spec(v1::AES_256);
    (*r.mutable_encryption_context())["tenant"] = "acme";
    v1::GenerateDataKeyResponse response;
    grpc::Status status = stub->GenerateDataKey(&context, r, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    auto id = context.GetServerTrailingMetadata().find("kms-request-id");
    ASSERT_NE(id, context.GetServerTrailingMetadata().end());
    answered.insert(std::string(id->second.data(), id->second.size()));
  }
  // No shutdown, no flush: the process is gone the moment the last answer
  // is in.
  ASSERT_EQ(daemon_->Stop(SIGKILL).value_or(-1), 128 + SIGKILL);

  std::set<std::string> recorded;
  for (const audit::ParsedRecord& r : FileRecords()) {
    if (r.entry.type == audit::RecordType::kRpc && r.entry.outcome == audit::Outcome::kSuccess) {
      recorded.insert(r.entry.request_id);
    }
  }
  for (const std::string& id : answered) EXPECT_EQ(recorded.count(id), 1u) << id;

  // A restarted kmsd continues the same chain.
  Start();
  ASSERT_TRUE(DataKey(*service_, key_id, kAcme).ok());
  const audit::VerifyResult verified = VerifyFile(public_key);
  EXPECT_TRUE(verified.ok) << verified.problem;
}

// kmsd writes its records over zeros it reserved ahead, so that each
// fdatasync has only data to write; a clean stop cuts the zeros off.
TEST_F(AuditE2eTest, TheLiveFileEndsInReservedZerosUntilACleanStop) {
  const std::string key_id = NewKey(kServicePolicy);
  ASSERT_TRUE(DataKey(*service_, key_id, kAcme).ok());
  const std::string live = ReadTestFile(audit_path_);
  const size_t end = live.find('\0');
  ASSERT_NE(end, std::string::npos) << "no zeros reserved ahead";
  EXPECT_EQ(live[end - 1], '\n');
  EXPECT_GT(live.size(), 1024u * 1024u) << "the default reserve is 1 MiB past a write";
  EXPECT_EQ(live.find_first_not_of('\0', end), std::string::npos);

  const std::string public_key = AuditPublicKey();
  ASSERT_EQ(daemon_->Stop(SIGTERM).value_or(-1), 0);
  const std::string stopped = ReadTestFile(audit_path_);
  EXPECT_EQ(stopped.find('\0'), std::string::npos);
  ASSERT_FALSE(stopped.empty());
  EXPECT_EQ(stopped.back(), '\n');
  const audit::VerifyResult verified = VerifyFile(public_key);
  EXPECT_TRUE(verified.ok) << verified.problem;
}

// The audit file made immutable (chattr +i: even kmsd's open descriptor
// gets EPERM) stands in for a failed or read-only disk.
TEST_F(AuditE2eTest, RefusesServiceWhileTheLogCannotBeWrittenAndRecovers) {
  constexpr auto kServing = HealthCheckResponse::SERVING;
  constexpr auto kNotServing = HealthCheckResponse::NOT_SERVING;
  const std::string key_id = NewKey(kServicePolicy);
  ASSERT_TRUE(DataKey(*service_, key_id, kAcme).ok());
  ASSERT_EQ(HealthStatus(), kServing);
  if (!SetImmutable(true)) GTEST_SKIP() << "chattr +i needs root and an ext2/3/4-like file system";
  const std::string file_before = ReadTestFile(audit_path_);

  // The call whose record cannot be made durable gets an error, not a data
  // key; and so does every call after it until the log is writable.
  auto refused = DataKey(*service_, key_id, kAcme);
  EXPECT_ERROR(refused, kUnavailable, "DependencyTimeoutException");
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "audit log")) << refused.status();
  EXPECT_ERROR(admin_->ListKeys(v1::ListKeysRequest()), kUnavailable,
               "DependencyTimeoutException");
  EXPECT_ERROR(auditor_->QueryAuditLog(v1::QueryAuditLogRequest()), kUnavailable,
               "DependencyTimeoutException");
  EXPECT_EQ(ReadTestFile(audit_path_), file_before);
  EXPECT_TRUE(Eventually([&] { return HealthStatus() == kNotServing; })) << HealthStatus();

  ASSERT_TRUE(SetImmutable(false));
  EXPECT_TRUE(Eventually([&] { return DataKey(*service_, key_id, kAcme).ok(); }))
      << daemon_->ReadLog();
  EXPECT_TRUE(Eventually([&] { return HealthStatus() == kServing; })) << HealthStatus();
  // Nothing was lost or reordered while it failed: the chain verifies.
  const audit::VerifyResult verified = VerifyFile(AuditPublicKey());
  EXPECT_TRUE(verified.ok) << verified.problem;
  EXPECT_TRUE(absl::StrContains(daemon_->ReadLog(), "is not durable")) << daemon_->ReadLog();
}

}  // namespace
}  // namespace kms
