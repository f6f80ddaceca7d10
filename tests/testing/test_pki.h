// Certificates for tests, made with the openssl command-line tool in a
// directory the test owns: CAs, server and client certificates, expired ones.
// Every file is <dir>/<name>.pem (certificate) and <dir>/<name>.key (key,
// ECDSA P-256). Not thread-safe.
#ifndef KMS_TESTS_TESTING_TEST_PKI_H_
#define KMS_TESTS_TESTING_TEST_PKI_H_

#include <string>

#include "absl/status/status.h"

namespace kms::testing {

struct CertSpec {
  std::string subject = "/CN=client";  // "/O=x" for a certificate without a CN
  std::string san;                      // e.g. "URI:spiffe://a/b,DNS:host"; empty: none
  bool server = false;                  // serverAuth instead of clientAuth
  int days = 30;
  // Both set: the validity period, as openssl ca takes it
  // ("20200101000000Z"); made with `openssl ca -startdate -enddate`.
  std::string not_before, not_after;
};

// A client certificate for `subject` with SANs `san` (may be empty).
inline CertSpec ClientCert(std::string subject, std::string san = "") {
  CertSpec spec;
  spec.subject = std::move(subject);
  spec.san = std::move(san);
  return spec;
}

// A server certificate for `subject` with SANs `san`.
inline CertSpec ServerCert(std::string subject, std::string san) {
  CertSpec spec = ClientCert(std::move(subject), std::move(san));
  spec.server = true;
  return spec;
}

class TestPki {
 public:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {}

  // A self-signed CA certificate `name` with subject CN `cn`.
  absl::Status MakeCa(const std::string& name, const std::string& cn);
  // A certificate `name` for a new key, signed by the CA `ca`.
  absl::Status MakeCert(const std::string& name, const std::string& ca, const CertSpec& spec);
  // A self-signed certificate (no CA), for parsing tests.
  absl::Status MakeSelfSigned(const std::string& name, const CertSpec& spec);

  std::string Cert(const std::string& name) const { return dir_ + "/" + name + ".pem"; }
  std::string Key(const std::string& name) const { return dir_ + "/" + name + ".key"; }
  const std::string& dir() const { return dir_; }

 private:
  absl::Status Openssl(const std::vector<std::string>& args) const;
  std::string ExtensionsFile(const std::string& name, const CertSpec& spec) const;
  std::string dir_;
  int serial_ = 1000;
};

}  // namespace kms::testing

#endif  // KMS_TESTS_TESTING_TEST_PKI_H_
