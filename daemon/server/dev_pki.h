// The development PKI of the embedded default: what lets `kmsd --data-dir
// DIR` serve mTLS with nothing set up.
//
// On first start EnsureDevPki creates DIR/tls/ (mode 0700) holding
//   ca.pem, ca.key             ECDSA P-256 CA "kmsd development CA", 10 years
//   server.pem, server.key     CN localhost; SANs DNS:localhost, IP:127.0.0.1,
//                              IP:::1; 2 years
//   admin.pem, admin.key       client certificate, CN "admin", 2 years
//   auditor.pem, auditor.key   client certificate, CN "auditor", 2 years
// Keys are mode 0600, certificates 0644; each file is written to a temporary
// name, fsynced and renamed, keys before their certificates. Later starts
// reuse what exists and complete what is missing; if the CA is missing, every
// certificate is made anew (the old ones would be signed by a lost key).
//
// Not for production: the CA key sits next to the certificates it signs.
// Not thread-safe; call from main before serving.
#ifndef KMS_DAEMON_SERVER_DEV_PKI_H_
#define KMS_DAEMON_SERVER_DEV_PKI_H_

#include <string>

#include "absl/status/statusor.h"

namespace kms::server {

struct DevPki {
  std::string dir;  // <data_dir>/tls
  std::string ca_cert;
  std::string server_cert, server_key;
  std::string admin_cert, admin_key;
  std::string auditor_cert, auditor_key;
  bool created = false;  // true if anything was made on this start
};

// Errors: kInternal (OpenSSL or file-system failure, with the path),
// kInvalidArgument (an existing file does not parse).
absl::StatusOr<DevPki> EnsureDevPki(const std::string& data_dir);

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_DEV_PKI_H_
