#include "daemon/server/peer_identity.h"

#include <gtest/gtest.h>

#include <memory>

#include "tests/testing/daemon_process.h"
#include "tests/testing/test_pki.h"

namespace kms::server {
namespace {

using testing::CertSpec;

struct PrincipalCase {
  std::string name;
  CertSpec spec;
  std::string principal;  // empty: kUnauthenticated
  friend void PrintTo(const PrincipalCase& c, std::ostream* os) { *os << c.name; }
};

class PrincipalFromCertificateTest : public ::testing::TestWithParam<PrincipalCase> {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kmsd-principal");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
  }
  std::unique_ptr<testing::TempDir> dir_;
};

TEST_P(PrincipalFromCertificateTest, NamesTheRightPrincipal) {
  testing::TestPki pki(dir_->path());
  ASSERT_TRUE(pki.MakeSelfSigned("c", GetParam().spec).ok());
  absl::StatusOr<std::string> principal =
      PrincipalFromCertificatePem(testing::ReadTestFile(pki.Cert("c")));
  if (GetParam().principal.empty()) {
    EXPECT_EQ(principal.status().code(), absl::StatusCode::kUnauthenticated) << principal.status();
  } else {
    ASSERT_TRUE(principal.ok()) << principal.status();
    EXPECT_EQ(*principal, GetParam().principal);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PrincipalFromCertificateTest,
    ::testing::Values(
        PrincipalCase{"UriSanWinsOverCn",
                      testing::ClientCert("/CN=billing", "URI:spiffe://dc1/ns/pay/sa/api"),
                      "spiffe://dc1/ns/pay/sa/api"},
        PrincipalCase{"CnOnly", testing::ClientCert("/O=Example/CN=ops-alice", ""), "ops-alice"},
        PrincipalCase{"FirstOfSeveralUriSans",
                      testing::ClientCert("/CN=x", "DNS:a.example,URI:urn:first,URI:urn:second"),
                      "urn:first"},
        PrincipalCase{"DnsSanOnlyFallsBackToCn", testing::ClientCert("/CN=worker-7", "DNS:worker7.example"),
                      "worker-7"},
        PrincipalCase{"NeitherUriSanNorCn", testing::ClientCert("/O=Example", "DNS:x.example"), ""}),
    [](const auto& info) { return info.param.name; });

TEST(PrincipalFromCertificatePemTest, GarbageIsInvalidArgument) {
  EXPECT_EQ(PrincipalFromCertificatePem("not a certificate").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrincipalFromCertificatePem("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrincipalFromCertificatePem(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PeerIdentityTest, PlaintextNamesTheConfiguredPrincipal) {
  grpc::ServerContext context;
  auto principal = PeerIdentity::Plaintext("dev").PrincipalOf(context);
  ASSERT_TRUE(principal.ok());
  EXPECT_EQ(*principal, "dev");
  EXPECT_TRUE(PeerIdentity::Plaintext("dev").is_plaintext());
}

TEST(PeerIdentityTest, TlsWithoutACertificateIsUnauthenticated) {
  grpc::ServerContext context;  // no call behind it: no auth context properties
  EXPECT_EQ(PeerIdentity::Tls().PrincipalOf(context).status().code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace kms::server
