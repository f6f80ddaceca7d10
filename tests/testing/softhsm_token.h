// SoftHsmToken: a fresh SoftHSMv2 token in a private temporary directory, for
// tests (the harness SoftHSM's own tests use: a softhsm2.conf of our own and
// tokens found by label).
//
//   absl::StatusOr<std::unique_ptr<SoftHsmToken>> token = SoftHsmToken::Create();
//   ASSERT_TRUE(token.ok()) << token.status();
//   absl::StatusOr<std::unique_ptr<hsm::Pkcs11Hsm>> hsm = (*token)->OpenHsm();
//
// Create() makes a 0700 directory (mkdtemp under $TMPDIR or /tmp), writes a
// softhsm2.conf there (token dir <dir>/tokens, file object store, log level
// ERROR), points SOFTHSM2_CONF at it with setenv, and initialises a token
// labelled `label` with random SO and user PINs. The destructor removes the
// directory and restores the previous SOFTHSM2_CONF.
//
// The SoftHSM constraint this class works around: SoftHSM reads SOFTHSM2_CONF
// once, in C_Initialize, and the module is initialised once per process. So
// within one process:
//  - Only one SoftHsmToken may exist at a time; Create() fails with
//    kFailedPrecondition while another is alive. (Need a second token? Call
//    hsm::InitializeToken with another label: it lands in the same directory.)
//  - Every Pkcs11Hsm opened on a token must be destroyed before the token, and
//    before the next token is created. The module registry finalises SoftHSM
//    when the last Pkcs11Hsm goes, so the next C_Initialize reads the new
//    SOFTHSM2_CONF. If an Hsm is still alive, SoftHSM keeps the old
//    configuration, and Create() detects that (the new token does not appear
//    in the new directory) and fails with kFailedPrecondition.
//  - setenv is not thread-safe: create tokens from the test's main thread,
//    before starting threads that use SoftHSM.
//
// Not thread-safe itself; the Pkcs11Hsm objects it opens are.
#ifndef KMS_TESTS_TESTING_SOFTHSM_TOKEN_H_
#define KMS_TESTS_TESTING_SOFTHSM_TOKEN_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/common/secret_bytes.h"
#include "hsm/pkcs11_hsm.h"

namespace kms::testing {

class SoftHsmToken {
 public:
  // Errors: kFailedPrecondition (another SoftHsmToken is alive, or SoftHSM is
  // still initialised with an earlier token's configuration), kInternal
  // (cannot create the directory or the config file), and whatever
  // hsm::InitializeToken returns.
  static absl::StatusOr<std::unique_ptr<SoftHsmToken>> Create(
      const std::string& label = "kmsd-test");

  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;
  ~SoftHsmToken();

  // Opens the token. Errors: those of hsm::Pkcs11Hsm::Open.
  absl::StatusOr<std::unique_ptr<hsm::Pkcs11Hsm>> OpenHsm(int session_count = 4) const;

  // A Pkcs11Config for this token, e.g. to change one field in a test.
  hsm::Pkcs11Config Config(int session_count = 4) const;

  const std::string& module_path() const { return module_path_; }
  const std::string& label() const { return label_; }
  const SecretBytes& user_pin() const { return user_pin_; }
  const SecretBytes& so_pin() const { return so_pin_; }
  const std::string& conf_path() const { return conf_path_; }
  const std::string& dir() const { return dir_; }

 private:
  SoftHsmToken() = default;

  std::string module_path_ = KMS_SOFTHSM_MODULE;
  std::string label_;
  SecretBytes so_pin_;
  SecretBytes user_pin_;
  std::string dir_;
  std::string conf_path_;
  bool conf_env_set_ = false;                 // Create() set SOFTHSM2_CONF
  std::optional<std::string> previous_conf_;  // its value before
};

}  // namespace kms::testing

#endif  // KMS_TESTS_TESTING_SOFTHSM_TOKEN_H_
