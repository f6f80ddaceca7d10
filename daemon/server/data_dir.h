// The embedded default's data directory and PIN sources.
//
// PrepareEmbeddedDataDir makes `kmsd --data-dir DIR` work with nothing set up:
// on first start it creates, under DIR (mode 0700),
//   softhsm2.conf   SoftHSM's config, pointing at DIR/tokens
//   tokens/         the token store
//   user.pin        the token's user PIN (mode 0600, random)
//   so.pin          the token's security-officer PIN (mode 0600, random)
// and initialises a token labelled `token_label` there. kmsd.db (the SQLite
// database) is created by the key store. Later starts reuse all of it. Each
// step is idempotent and PINs are written before the token is made, so a
// start interrupted at any point is finished by the next one.
//
// It sets SOFTHSM2_CONF for this process, so it must run before the PKCS#11
// module is loaded. Not thread-safe (it edits the environment): call from
// main before starting threads.
#ifndef KMS_DAEMON_SERVER_DATA_DIR_H_
#define KMS_DAEMON_SERVER_DATA_DIR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/common/secret_bytes.h"

namespace kms::server {

struct EmbeddedSetup {
  std::string data_dir;       // absolute
  std::string softhsm_conf;   // DIR/softhsm2.conf
  SecretBytes user_pin;
  bool token_created = false;  // true on first start
  // Keeps the SoftHSM module initialised (hsm::HoldModule) until the caller
  // has opened the token, so it is read once, not twice.
  std::shared_ptr<const void> module;
};

// Errors: kFailedPrecondition (DIR exists but is not a directory, or a PIN
// file is missing while the token exists), kPermissionDenied/kInternal for
// file-system failures (with the path), and the token-setup errors of
// hsm/token_setup.h.
absl::StatusOr<EmbeddedSetup> PrepareEmbeddedDataDir(const std::string& data_dir,
                                                     const std::string& module_path,
                                                     const std::string& token_label);

// A PIN from a file: its contents without the trailing newline. Warns in the
// log if the file is readable by group or others. Errors: kNotFound,
// kInvalidArgument (empty).
absl::StatusOr<SecretBytes> ReadPinFile(const std::string& path);

// A PIN from an environment variable. Errors: kNotFound (unset or empty).
absl::StatusOr<SecretBytes> ReadPinEnv(const std::string& variable);

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_DATA_DIR_H_
