#include "daemon/server/peer_identity.h"

#include <memory>

#include <grpcpp/security/auth_context.h>

#include "absl/strings/str_cat.h"

namespace kms::server {
namespace {

// gRPC's auth context property holding the peer's certificate, PEM.
constexpr char kPeerCertificateProperty[] = "x509_pem_cert";

}  // namespace

PeerIdentity PeerIdentity::Tls() { return PeerIdentity(false, ""); }

PeerIdentity PeerIdentity::Plaintext(std::string principal) {
  return PeerIdentity(true, std::move(principal));
}

absl::StatusOr<std::string> PeerIdentity::PrincipalOf(
    const grpc::ServerContextBase& context) const {
  if (plaintext_) return principal_;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  // The handshake requires and verifies the client certificate, so a
  // certificate in the auth context is a verified one.
  if (auth == nullptr) {
    return absl::UnauthenticatedError("the call has no verified client certificate");
  }
  std::vector<grpc::string_ref> pems = auth->FindPropertyValues(kPeerCertificateProperty);
  if (pems.empty()) {
    return absl::UnauthenticatedError("the call has no verified client certificate");
  }
  const absl::string_view pem(pems.front().data(), pems.front().size());
  {
    absl::MutexLock lock(&cache_->mu);
    auto it = cache_->principals.find(pem);
    if (it != cache_->principals.end()) return it->second;
  }
  absl::StatusOr<std::string> principal = PrincipalFromCertificatePem(pem);
  if (!principal.ok()) {
    if (principal.status().code() == absl::StatusCode::kInvalidArgument) {
      return absl::UnauthenticatedError(principal.status().message());
    }
    return principal;
  }
  absl::MutexLock lock(&cache_->mu);
  // Clients are few; a flood of new certificates just parses again.
  if (cache_->principals.size() >= kMaxCachedCertificates) cache_->principals.clear();
  cache_->principals.emplace(pem, *principal);
  return principal;
}

}  // namespace kms::server
