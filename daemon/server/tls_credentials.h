// mTLS for kmsd's listener, with certificates that reload on SIGHUP without
// rebuilding the listener.
//
// gRPC's FileWatcherCertificateProvider serves whatever files it watches and
// re-reads them every second. It does not watch the configured files
// directly: an operator half-way through replacing them, or a bad
// replacement, would be served as is. Instead it watches a staging directory
// that only kmsd writes (`staging_dir`, mode 0700):
//
//   staging_dir/current -> gen-N      a symlink, swapped with one rename(2)
//   staging_dir/gen-N/{key.pem,cert.pem,ca.pem}
//
// Create() and Reload() read the configured files, check them (each parses,
// the key matches the certificate, the certificate is within its validity
// period, the CA file holds at least one certificate) and only then stage a
// new generation and swap the link. A bad set is refused and the generation
// in service stays. Clients must present a certificate issued by a CA in
// client_ca_file (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY).
//
// Thread-safe: Reload() may run while gRPC serves with credentials().
#ifndef KMS_DAEMON_SERVER_TLS_CREDENTIALS_H_
#define KMS_DAEMON_SERVER_TLS_CREDENTIALS_H_

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kms::server {

struct TlsFiles {
  std::string cert_file;       // server certificate chain, PEM (leaf first)
  std::string key_file;        // its private key, PEM
  std::string client_ca_file;  // CAs that issue client certificates, PEM
};

// Checks a certificate set held in memory. `now` is the time the leaf must be
// valid at. Errors: kInvalidArgument naming the part and the problem.
absl::Status CheckTlsMaterial(absl::string_view cert_pem, absl::string_view key_pem,
                              absl::string_view ca_pem, absl::Time now);

class ServerTls {
 public:
  // Stages `files` under `staging_dir` and makes the credentials.
  // Errors: kInvalidArgument (a file fails its check, with its path),
  // kNotFound (a file cannot be read), kInternal (the staging directory).
  static absl::StatusOr<std::unique_ptr<ServerTls>> Create(TlsFiles files,
                                                           std::string staging_dir);

  // For ServerBuilder::AddListeningPort. Serves the staged generation.
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }

  // Re-reads the configured files and, if they pass the checks, puts them in
  // service (within the provider's 1 s refresh). Errors as Create(); on error
  // the generation in service is unchanged.
  absl::Status Reload();

  const TlsFiles& files() const { return files_; }

 private:
  ServerTls(TlsFiles files, std::string staging_dir)
      : files_(std::move(files)), staging_dir_(std::move(staging_dir)) {}
  absl::Status Stage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsFiles files_;
  const std::string staging_dir_;
  absl::Mutex mu_;
  long generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

// Sends gRPC's own log lines (gpr_log) to kmsd's log, so TLS handshake
// refusals show up there. Call once, before gRPC starts.
void RouteGrpcLogToKmsLog();

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_TLS_CREDENTIALS_H_
