// Transport security end to end: the real kmsd serving mTLS with a PKI made
// by the openssl CLI in the test (two CAs), refusing clients it must refuse
// and saying so in its log, refusing insecure configs, reloading certificates
// on SIGHUP without dropping the listener, serving plaintext on a unix socket
// in development mode, and the embedded default's development PKI.
#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/kms_client.h"
#include "kms/v1/kms.grpc.pb.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/test_pki.h"

namespace kms {
namespace {

using client::ClientOptions;
using client::KmsClient;
using testing::CertSpec;
using testing::CommandResult;
using testing::DaemonProcess;
using testing::ReadTestFile;
using testing::WriteTestFile;

constexpr char kRefusal[] = "TLS connection refused";

constexpr char kAlice[] = "spiffe://test/ops/alice";

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

using testing::Eventually;

class TlsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kmsd-tls-e2e");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
    pki_ = std::make_unique<testing::TestPki>(dir_->path());
    const CertSpec server = testing::ServerCert("/CN=kmsd", "DNS:localhost,IP:127.0.0.1");
    ASSERT_TRUE(pki_->MakeCa("ca1", "kmsd test CA one").ok());
    ASSERT_TRUE(pki_->MakeCa("ca2", "kmsd test CA two").ok());
    ASSERT_TRUE(pki_->MakeCert("server1", "ca1", server).ok());
    ASSERT_TRUE(pki_->MakeCert("server2", "ca2", server).ok());
    ASSERT_TRUE(pki_->MakeCert("alice", "ca1", testing::ClientCert("/CN=alice", absl::StrCat("URI:", kAlice))).ok());
    ASSERT_TRUE(pki_->MakeCert("bob", "ca1", testing::ClientCert("/CN=bob")).ok());
    CertSpec expired = testing::ClientCert("/CN=old-client");
    expired.not_before = "20200101000000Z";
    expired.not_after = "20200301000000Z";
    ASSERT_TRUE(pki_->MakeCert("expired", "ca1", expired).ok());
    ASSERT_TRUE(pki_->MakeCert("mallory", "ca2", testing::ClientCert("/CN=mallory")).ok());
    ASSERT_TRUE(pki_->MakeCert("carol", "ca2", testing::ClientCert("/CN=carol")).ok());
    // The configured files, which the tests replace before a SIGHUP.
    cert_file_ = Path("server.pem");
    key_file_ = Path("server.key");
    client_ca_file_ = Path("clients.pem");
    Install("server1", {"ca1"});
  }

  std::string Path(const std::string& name) const { return dir_->path() + "/" + name; }

  // Copies the server certificate `server` and the client CAs `cas` to the
  // configured paths.
  void Install(const std::string& server, const std::vector<std::string>& cas) {
    WriteTestFile(cert_file_, ReadTestFile(pki_->Cert(server)));
    WriteTestFile(key_file_, ReadTestFile(pki_->Key(server)));
    std::string bundle;
    for (const auto& ca : cas) bundle += ReadTestFile(pki_->Cert(ca));
    WriteTestFile(client_ca_file_, bundle);
  }

  // Starts kmsd over mTLS. By default alice (by her URI SAN), bob and carol
  // (by their CNs) are administrators.
  void StartTls(std::vector<std::string> administrators = {kAlice, "bob", "carol"}) {
    DaemonProcess::Options options;
    options.data_dir = Path("data");
    options.transport = DaemonProcess::Transport::kTls;
    options.tls = {cert_file_, key_file_, client_ca_file_};
    options.administrators = std::move(administrators);
    auto daemon = DaemonProcess::Start(std::move(options));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }

  // A client trusting `ca` for kmsd and presenting `who`'s certificate.
  std::unique_ptr<KmsClient> Client(const std::string& who, const std::string& ca) {
    ClientOptions options;
    options.timeout = absl::Seconds(5);
    options.ca_file = pki_->Cert(ca);
    options.cert_file = pki_->Cert(who);
    options.key_file = pki_->Key(who);
    auto client = KmsClient::Connect(daemon_->endpoint(), options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static absl::Status ListKeys(const KmsClient& client) {
    return client.ListKeys(v1::ListKeysRequest()).status();
  }

  // Calls as a client that does not present a certificate at all.
  grpc::Status CallWithoutClientCertificate(const std::string& ca) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadTestFile(pki_->Cert(ca));
    auto stub = v1::KeyManagementService::NewStub(
        grpc::CreateChannel(daemon_->endpoint(), grpc::SslCredentials(ssl)));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListKeysResponse response;
    return stub->ListKeys(&context, v1::ListKeysRequest(), &response);
  }

  // Waits until kmsd's log holds more than `before` refusal lines.
  void ExpectRefusalLogged(int before, const std::string& what) {
    EXPECT_TRUE(Eventually([&] { return CountOf(daemon_->ReadLog(), kRefusal) > before; }))
        << what << " was not logged:\n"
        << daemon_->ReadLog();
  }

  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<testing::TestPki> pki_;
  std::string cert_file_, key_file_, client_ca_file_;
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(TlsE2eTest, ServesClientsWithCertificatesFromTheClientCa) {
  StartTls();
  auto alice = Client("alice", "ca1");  // URI SAN
  auto bob = Client("bob", "ca1");      // CN only
  EXPECT_TRUE(ListKeys(*alice).ok()) << ListKeys(*alice) << daemon_->ReadLog();
  EXPECT_TRUE(ListKeys(*bob).ok()) << ListKeys(*bob);
  CommandResult listed = testing::RunKmsctlWithTls(
      daemon_->endpoint(), {pki_->Cert("ca1"), pki_->Cert("bob"), pki_->Key("bob")},
      {"list-keys"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_TRUE(absl::StrContains(daemon_->ReadLog(), "mTLS: certificate " + cert_file_));
}

// The principal is the URI SAN when there is one (alice's CN is not an
// administrator's name here, her URI is not either), else the CN.
TEST_F(TlsE2eTest, ThePrincipalIsTheUriSanElseTheCommonName) {
  StartTls({"alice", "bob"});
  auto alice = Client("alice", "ca1");
  auto bob = Client("bob", "ca1");
  absl::Status denied = ListKeys(*alice);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied) << denied;
  EXPECT_TRUE(absl::StrContains(denied.message(), absl::StrCat("'", kAlice, "'"))) << denied;
  EXPECT_TRUE(ListKeys(*bob).ok()) << ListKeys(*bob);
  // Any authenticated principal may ask for random bytes.
  v1::GenerateRandomRequest random;
  random.set_number_of_bytes(16);
  EXPECT_TRUE(alice->GenerateRandom(random).ok());
}

TEST_F(TlsE2eTest, KmsctlTakesItsTlsFilesFromTheEnvironmentAndRefusesAPartialSet) {
  StartTls();
  CommandResult from_env = testing::RunCommand(
      {KMS_KMSCTL_BINARY, "--endpoint", daemon_->endpoint(), "list-keys"},
      {"KMSCTL_CA=" + pki_->Cert("ca1"), "KMSCTL_CERT=" + pki_->Cert("bob"),
       "KMSCTL_KEY=" + pki_->Key("bob")});
  EXPECT_EQ(from_env.exit_code, 0) << from_env.err;

  CommandResult partial = testing::RunCommand(
      {KMS_KMSCTL_BINARY, "--endpoint", daemon_->endpoint(), "--ca", pki_->Cert("ca1"),
       "--cert", pki_->Cert("bob"), "list-keys"});
  EXPECT_EQ(partial.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(partial.err, "missing --key (KMSCTL_KEY)")) << partial.err;

  CommandResult unreadable = testing::RunKmsctlWithTls(
      daemon_->endpoint(), {pki_->Cert("ca1"), pki_->Cert("bob"), Path("no-such.key")},
      {"list-keys"});
  EXPECT_EQ(unreadable.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(unreadable.err, "no-such.key")) << unreadable.err;
}

TEST_F(TlsE2eTest, RefusesAClientWithoutACertificateAndLogsIt) {
  StartTls();
  const int before = CountOf(daemon_->ReadLog(), kRefusal);
  grpc::Status status = CallWithoutClientCertificate("ca1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  ExpectRefusalLogged(before, "a client without a certificate");
}

TEST_F(TlsE2eTest, RefusesAnExpiredClientCertificateAndLogsIt) {
  StartTls();
  const int before = CountOf(daemon_->ReadLog(), kRefusal);
  absl::Status status = ListKeys(*Client("expired", "ca1"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  ExpectRefusalLogged(before, "an expired client certificate");
}

TEST_F(TlsE2eTest, RefusesAClientCertificateFromAForeignCaAndLogsIt) {
  StartTls();
  const int before = CountOf(daemon_->ReadLog(), kRefusal);
  absl::Status status = ListKeys(*Client("mallory", "ca1"));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  ExpectRefusalLogged(before, "a foreign client certificate");
}

TEST_F(TlsE2eTest, RefusesAPlaintextClient) {
  StartTls();
  auto plaintext = KmsClient::Connect(daemon_->endpoint());
  ASSERT_TRUE(plaintext.ok());
  EXPECT_EQ(ListKeys(**plaintext).code(), absl::StatusCode::kUnavailable);
}

TEST_F(TlsE2eTest, SighupSwapsCertificatesWithoutDroppingTheListener) {
  StartTls();
  auto alice = Client("alice", "ca1");
  ASSERT_TRUE(ListKeys(*alice).ok()) << daemon_->ReadLog();
  auto carol = Client("carol", "ca2");  // trusts only the new CA, issued by it
  EXPECT_FALSE(ListKeys(*carol).ok());

  Install("server2", {"ca1", "ca2"});
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] { return ListKeys(*Client("carol", "ca2")).ok(); }))
      << daemon_->ReadLog();
  EXPECT_TRUE(absl::StrContains(daemon_->ReadLog(), "SIGHUP: TLS certificates reloaded"));
  // The connection made before the reload still serves: the listener and
  // its connections stayed up.
  EXPECT_TRUE(ListKeys(*alice).ok()) << ListKeys(*alice);
  // Clients of the first CA are still accepted through the bundle.
  EXPECT_TRUE(ListKeys(*Client("bob", "ca2")).ok());
}

TEST_F(TlsE2eTest, SighupWithABrokenSetKeepsTheOldCertificates) {
  StartTls();
  ASSERT_TRUE(ListKeys(*Client("alice", "ca1")).ok()) << daemon_->ReadLog();
  // The new certificate with the old key: they do not match.
  WriteTestFile(cert_file_, ReadTestFile(pki_->Cert("server2")));
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(daemon_->ReadLog(), "TLS certificates NOT reloaded");
  })) << daemon_->ReadLog();
  EXPECT_TRUE(absl::StrContains(daemon_->ReadLog(), "does not match")) << daemon_->ReadLog();
  // Give the watcher more than its refresh interval, then connect anew with
  // the old trust.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(ListKeys(*Client("alice", "ca1")).ok()) << daemon_->ReadLog();
  EXPECT_EQ(daemon_->Stop(SIGTERM).value_or(-1), 0);
}

TEST_F(TlsE2eTest, PlaintextOnAUnixSocketServesInDevelopmentMode) {
  DaemonProcess::Options options;
  options.data_dir = Path("data");
  options.listen = "unix:" + Path("kmsd.sock");
  auto daemon = DaemonProcess::Start(std::move(options));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  daemon_ = *std::move(daemon);
  auto client = KmsClient::Connect(daemon_->endpoint());
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE(ListKeys(**client).ok()) << daemon_->ReadLog();
  EXPECT_TRUE(absl::StrContains(daemon_->ReadLog(),
                                "DEVELOPMENT MODE: plaintext, every caller is principal 'e2e-admin'"))
      << daemon_->ReadLog();
  EXPECT_EQ(testing::RunKmsctl(daemon_->endpoint(), {"list-keys"}).exit_code, 0);
}

struct RefusedConfig {
  std::string name;
  std::string listen;
  std::string yaml;
  std::string message;
  friend void PrintTo(const RefusedConfig& c, std::ostream* os) { *os << c.name; }
};

class InsecureConfigTest : public ::testing::TestWithParam<RefusedConfig> {};

TEST_P(InsecureConfigTest, KmsdRefusesToStart) {
  auto dir = testing::TempDir::Create("kmsd-insecure");
  ASSERT_TRUE(dir.ok());
  const std::string config = (*dir)->path() + "/kmsd.yaml";
  WriteTestFile(config, GetParam().yaml);
  CommandResult r = testing::RunCommand({KMS_KMSD_BINARY, "--config", config, "--data-dir",
                                         (*dir)->path() + "/data", "--listen",
                                         GetParam().listen});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, GetParam().message)) << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InsecureConfigTest,
    ::testing::Values(
        RefusedConfig{"NonLoopbackWithoutTls", "0.0.0.0:0", "",
                      "listen: '0.0.0.0:0' is not loopback: it needs tls.cert_file"},
        RefusedConfig{"PlaintextOnANonLoopbackAddress", "0.0.0.0:0",
                      "plaintext:\n  enabled: true\n  principal: dev\n",
                      "plaintext.enabled: only on a loopback address or a unix: socket"}),
    [](const auto& info) { return info.param.name; });

TEST(DevPkiE2eTest, EmbeddedDefaultServesMtlsWithItsOwnPkiAndReusesIt) {
  auto dir = testing::TempDir::Create("kmsd-devpki-e2e");
  ASSERT_TRUE(dir.ok());
  DaemonProcess::Options options;
  options.data_dir = (*dir)->path() + "/data";
  options.transport = DaemonProcess::Transport::kDevPki;
  auto daemon = DaemonProcess::Start(options);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string tls = options.data_dir + "/tls/";
  for (const char* key : {"ca.key", "server.key", "admin.key", "auditor.key"}) {
    struct stat st {};
    ASSERT_EQ(::stat((tls + key).c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
  }
  const testing::ClientTlsFiles admin{tls + "ca.pem", tls + "admin.pem", tls + "admin.key"};
  CommandResult listed = testing::RunKmsctlWithTls((*daemon)->endpoint(), admin, {"list-keys"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err << (*daemon)->ReadLog();
  const std::string log = (*daemon)->ReadLog();
  EXPECT_TRUE(absl::StrContains(log, "access: administrators [admin], auditors [auditor]")) << log;
  EXPECT_TRUE(absl::StrContains(log, "KMSCTL_CERT=" + tls + "admin.pem")) << log;
  // Plaintext is not served.
  EXPECT_EQ(testing::RunKmsctl((*daemon)->endpoint(), {"list-keys"}).exit_code, 3);

  const std::string admin_pem = ReadTestFile(tls + "admin.pem");
  const std::string ca_pem = ReadTestFile(tls + "ca.pem");
  ASSERT_EQ((*daemon)->Stop(SIGTERM).value_or(-1), 0);
  auto again = DaemonProcess::Start(options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ReadTestFile(tls + "admin.pem"), admin_pem);
  EXPECT_EQ(ReadTestFile(tls + "ca.pem"), ca_pem);
  listed = testing::RunKmsctlWithTls((*again)->endpoint(), admin, {"list-keys"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
}

}  // namespace
}  // namespace kms
