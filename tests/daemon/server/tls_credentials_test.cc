#include "daemon/server/tls_credentials.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>

#include "absl/strings/match.h"
#include "daemon/server/dev_pki.h"
#include "daemon/server/peer_identity.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/test_pki.h"

namespace kms::server {
namespace {

using testing::ReadTestFile;

class TlsMaterialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kmsd-tls");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
    pki_ = std::make_unique<testing::TestPki>(dir_->path());
    ASSERT_TRUE(pki_->MakeCa("ca", "test CA").ok());
    ASSERT_TRUE(pki_->MakeCert("server", "ca", testing::ServerCert("/CN=localhost", "DNS:localhost")).ok());
    ASSERT_TRUE(pki_->MakeCert("other", "ca", testing::ServerCert("/CN=other", "")).ok());
    testing::CertSpec expired = testing::ServerCert("/CN=old", "");
    expired.not_before = "20200101000000Z";
    expired.not_after = "20200201000000Z";
    ASSERT_TRUE(pki_->MakeCert("expired", "ca", expired).ok());
  }
  absl::Status Check(const std::string& cert, const std::string& key, const std::string& ca) {
    return CheckTlsMaterial(ReadTestFile(pki_->Cert(cert)), ReadTestFile(pki_->Key(key)),
                            ReadTestFile(pki_->Cert(ca)), absl::Now());
  }
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<testing::TestPki> pki_;
};

TEST_F(TlsMaterialTest, AcceptsAMatchingValidSet) { EXPECT_TRUE(Check("server", "server", "ca").ok()); }

TEST_F(TlsMaterialTest, RefusesAKeyOfAnotherCertificate) {
  absl::Status s = Check("server", "other", "ca");
  EXPECT_TRUE(absl::StrContains(s.message(), "does not match")) << s;
}

TEST_F(TlsMaterialTest, RefusesAnExpiredCertificate) {
  absl::Status s = Check("expired", "expired", "ca");
  EXPECT_TRUE(absl::StrContains(s.message(), "expired")) << s;
}

TEST_F(TlsMaterialTest, RefusesGarbage) {
  EXPECT_TRUE(absl::StrContains(
      CheckTlsMaterial("junk", ReadTestFile(pki_->Key("server")), ReadTestFile(pki_->Cert("ca")),
                       absl::Now())
          .message(),
      "tls.cert_file"));
  EXPECT_TRUE(absl::StrContains(CheckTlsMaterial(ReadTestFile(pki_->Cert("server")), "junk",
                                                 ReadTestFile(pki_->Cert("ca")), absl::Now())
                                    .message(),
                                "tls.key_file"));
  EXPECT_TRUE(absl::StrContains(CheckTlsMaterial(ReadTestFile(pki_->Cert("server")),
                                                 ReadTestFile(pki_->Key("server")), "junk",
                                                 absl::Now())
                                    .message(),
                                "tls.client_ca_file"));
}

TEST_F(TlsMaterialTest, ReloadKeepsTheStagedSetWhenTheNewOneIsBad) {
  const std::string staging = dir_->path() + "/staging";
  TlsFiles files{dir_->path() + "/s.pem", dir_->path() + "/s.key", pki_->Cert("ca")};
  testing::WriteTestFile(files.cert_file, ReadTestFile(pki_->Cert("server")));
  testing::WriteTestFile(files.key_file, ReadTestFile(pki_->Key("server")));
  auto tls = ServerTls::Create(files, staging);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_NE((*tls)->credentials(), nullptr);
  EXPECT_EQ(ReadTestFile(staging + "/current/cert.pem"), ReadTestFile(pki_->Cert("server")));

  testing::WriteTestFile(files.key_file, ReadTestFile(pki_->Key("other")));
  EXPECT_EQ((*tls)->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTestFile(staging + "/current/key.pem"), ReadTestFile(pki_->Key("server")));

  testing::WriteTestFile(files.cert_file, ReadTestFile(pki_->Cert("other")));
  ASSERT_TRUE((*tls)->Reload().ok());
  EXPECT_EQ(ReadTestFile(staging + "/current/cert.pem"), ReadTestFile(pki_->Cert("other")));
  struct stat st {};
  ASSERT_EQ(::stat((staging + "/current/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(DevPkiTest, FirstStartMakesAWorkingPkiAndLaterStartsReuseIt) {
  auto dir = testing::TempDir::Create("kmsd-devpki");
  ASSERT_TRUE(dir.ok());
  auto pki = EnsureDevPki((*dir)->path());
  ASSERT_TRUE(pki.ok()) << pki.status();
  EXPECT_TRUE(pki->created);
  for (const std::string& key : {pki->server_key, pki->admin_key, pki->auditor_key,
                                 pki->dir + "/ca.key"}) {
    struct stat st {};
    ASSERT_EQ(::stat(key.c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
  }
  EXPECT_TRUE(CheckTlsMaterial(ReadTestFile(pki->server_cert), ReadTestFile(pki->server_key),
                               ReadTestFile(pki->ca_cert), absl::Now())
                  .ok());
  EXPECT_EQ(*PrincipalFromCertificatePem(ReadTestFile(pki->admin_cert)), "admin");
  EXPECT_EQ(*PrincipalFromCertificatePem(ReadTestFile(pki->auditor_cert)), "auditor");
  // The server certificate verifies against the CA for 127.0.0.1.
  testing::CommandResult verified =
      testing::RunCommand({"/usr/bin/openssl", "verify", "-CAfile", pki->ca_cert, "-verify_ip",
                           "127.0.0.1", "-purpose", "sslserver", pki->server_cert});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  testing::CommandResult client =
      testing::RunCommand({"/usr/bin/openssl", "verify", "-CAfile", pki->ca_cert, "-purpose",
                           "sslclient", pki->admin_cert});
  EXPECT_EQ(client.exit_code, 0) << client.out << client.err;

  const std::string admin = ReadTestFile(pki->admin_cert);
  auto again = EnsureDevPki((*dir)->path());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(ReadTestFile(again->admin_cert), admin);
}

}  // namespace
}  // namespace kms::server
