// Who is calling: the principal of a gRPC call, for authorisation and audit.
//
// With mTLS (the default) the principal is named by the client certificate
// that gRPC verified during the handshake: its first URI SAN if it has any
// (e.g. "spiffe://dc1/ns/payments/sa/api"), else its subject CN. In the
// plaintext development mode every caller is the one principal named in the
// config (plaintext.principal).
//
// PeerIdentity is a small value chosen once in main.cc from the config; it is
// immutable and thread-safe.
#ifndef KMS_DAEMON_SERVER_PEER_IDENTITY_H_
#define KMS_DAEMON_SERVER_PEER_IDENTITY_H_

#include <memory>
#include <string>

#include <grpcpp/server_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/certificate_principal.h"

namespace kms::server {

// The certificate rule itself lives in daemon/common/certificate_principal.h
// (kmsctl bench applies it too).
using ::kms::PrincipalFromCertificatePem;

class PeerIdentity {
 public:
  // Principal from the verified client certificate.
  static PeerIdentity Tls();
  // Development mode: every caller is `principal`.
  static PeerIdentity Plaintext(std::string principal);

  // The principal of the call behind `context`.
  // Errors: kUnauthenticated when the call has no verified certificate (or
  // the certificate names no principal).
  absl::StatusOr<std::string> PrincipalOf(const grpc::ServerContextBase& context) const;

  bool is_plaintext() const { return plaintext_; }

 private:
  // The principals of the certificates seen, by certificate PEM: parsing
  // one costs more than the rest of a typical call, and a client presents
  // the same certificate on every call. A principal is a function of the
  // verified certificate's bytes alone. Bounded; shared by copies.
  struct Cache {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, std::string> principals ABSL_GUARDED_BY(mu);
  };
  static constexpr size_t kMaxCachedCertificates = 4096;

  PeerIdentity(bool plaintext, std::string principal)
      : plaintext_(plaintext), principal_(std::move(principal)) {}
  bool plaintext_;
  std::string principal_;  // plaintext mode only
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_PEER_IDENTITY_H_
