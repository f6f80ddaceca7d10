// The principal a client certificate names, by kmsd's one rule: its first
// URI SAN if it has any, else its subject CN. kmsd applies it to the verified
// certificate of every mTLS call (server::PeerIdentity); kmsctl bench applies
// it to its own certificate to write key policies for the principal kmsd
// will see. OpenSSL only; thread-safe.
#ifndef KMS_DAEMON_COMMON_CERTIFICATE_PRINCIPAL_H_
#define KMS_DAEMON_COMMON_CERTIFICATE_PRINCIPAL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kms {

// The principal named by the PEM certificate `pem`. Errors: kInvalidArgument
// (not a PEM certificate), kUnauthenticated (neither a URI SAN nor a CN).
absl::StatusOr<std::string> PrincipalFromCertificatePem(absl::string_view pem);

}  // namespace kms

#endif  // KMS_DAEMON_COMMON_CERTIFICATE_PRINCIPAL_H_
