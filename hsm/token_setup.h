// Token provisioning: creating a kmsd token in a PKCS#11 module, for the
// embedded default (first run of the daemon) and for tests.
//
// Both functions share the process-wide module registry with Pkcs11Hsm
// (hsm/pkcs11_module.h): they load the module if nobody holds it and release
// it again when done, which finalises it unless a Pkcs11Hsm still uses it.
//
// PINs are taken as SecretBytes and never appear in messages or logs.
// Thread-safe; but two concurrent InitializeToken calls for the same label
// may both find it free, so provision from one thread.
#ifndef KMS_HSM_TOKEN_SETUP_H_
#define KMS_HSM_TOKEN_SETUP_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/secret_bytes.h"

namespace kms::hsm {

// Initialises a new token labelled `label` in the module's first uninitialised
// slot, sets its SO PIN and user PIN (C_InitToken, then a session as SO with
// C_InitPIN). The token's slot id changes on initialisation (SoftHSM), so
// always find the token again by label.
// Errors: kAlreadyExists (a token with this label exists), kFailedPrecondition
// (no free slot; the module cannot be loaded), kInvalidArgument (label not
// 1..32 bytes, empty PIN, or a PIN the token rejects as too short, too long or
// malformed), kUnavailable / kInternal (module errors).
absl::Status InitializeToken(const std::string& module_path, const std::string& label,
                             const SecretBytes& so_pin, const SecretBytes& user_pin);

// Whether an initialised token with this label exists.
// Errors: kInvalidArgument (label not 1..32 bytes), kFailedPrecondition (the
// module cannot be loaded, or several tokens share the label), kUnavailable /
// kInternal (module errors).
absl::StatusOr<bool> TokenExists(const std::string& module_path, const std::string& label);

// Keeps the module at `module_path` loaded and initialised for as long as the
// returned handle lives, so that provisioning (TokenExists, InitializeToken)
// and the Pkcs11Hsm::Open after it share one C_Initialize. SoftHSM reads
// every object of every token at C_Initialize: about 1 s for 10,000 keys.
// Errors: those of loading the module (kFailedPrecondition, kUnavailable,
// kInternal).
absl::StatusOr<std::shared_ptr<const void>> HoldModule(const std::string& module_path);

}  // namespace kms::hsm

#endif  // KMS_HSM_TOKEN_SETUP_H_
