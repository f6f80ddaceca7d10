#include "tests/testing/softhsm_token.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/status_macros.h"
#include "hsm/token_setup.h"

namespace kms::testing {
namespace {

constexpr char kConfEnv[] = "SOFTHSM2_CONF";

// At most one SoftHsmToken per process: SOFTHSM2_CONF is process-wide.
std::atomic<bool> token_alive{false};

absl::StatusOr<SecretBytes> RandomPin() {
  SecretBytes raw(16);
  if (RAND_bytes(raw.mutable_data(), static_cast<int>(raw.size())) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  // SoftHSM accepts any bytes, but pkcs11-tool --pin needs printable ones.
  std::string hex = absl::BytesToHexString(raw.secret());
  return SecretBytes::TakeFrom(&hex);
}

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " '", path, "': ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SoftHsmToken>> SoftHsmToken::Create(const std::string& label) {
  bool expected = false;
  if (!token_alive.compare_exchange_strong(expected, true)) {
    return absl::FailedPreconditionError(
        "another SoftHsmToken is alive in this process; SoftHSM reads one SOFTHSM2_CONF per "
        "initialisation, so destroy it first (or add a second token to it with "
        "hsm::InitializeToken)");
  }
  // From here on the destructor clears token_alive and cleans up.
  std::unique_ptr<SoftHsmToken> token(new SoftHsmToken());
  token->label_ = label;

  const char* tmpdir = std::getenv("TMPDIR");
  std::string dir_template =
      absl::StrCat(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp", "/kmsd-softhsm-XXXXXX");
  if (mkdtemp(dir_template.data()) == nullptr) {
    return ErrnoError("cannot create a temporary directory from", dir_template);
  }
  token->dir_ = dir_template;
  const std::string token_dir = absl::StrCat(token->dir_, "/tokens");
  if (mkdir(token_dir.c_str(), 0700) != 0) return ErrnoError("cannot create", token_dir);

  token->conf_path_ = absl::StrCat(token->dir_, "/softhsm2.conf");
  {
    std::ofstream conf(token->conf_path_);
    conf << "# Written by kms::testing::SoftHsmToken\n"
         << "directories.tokendir = " << token_dir << "\n"
         << "objectstore.backend = file\n"
         << "log.level = ERROR\n"
         << "slots.removable = false\n";
    conf.close();
    if (!conf) return ErrnoError("cannot write", token->conf_path_);
  }

  if (const char* previous = std::getenv(kConfEnv); previous != nullptr) {
    token->previous_conf_ = previous;
  }
  // Before the module is initialised: SoftHSM reads it in C_Initialize.
  if (setenv(kConfEnv, token->conf_path_.c_str(), /*overwrite=*/1) != 0) {
    return ErrnoError("cannot set SOFTHSM2_CONF to", token->conf_path_);
  }
  token->conf_env_set_ = true;

  KMS_ASSIGN_OR_RETURN(token->so_pin_, RandomPin());
  KMS_ASSIGN_OR_RETURN(token->user_pin_, RandomPin());
  absl::Status status =
      hsm::InitializeToken(token->module_path_, label, token->so_pin_, token->user_pin_);
  if (status.code() == absl::StatusCode::kInvalidArgument) return status;

  // SoftHSM keeps a token in a directory of its own under the token dir. If
  // none appeared here, the module is still running on an earlier
  // configuration: some Pkcs11Hsm from an earlier token is still alive.
  std::error_code error;
  const bool landed_here = !std::filesystem::is_empty(token_dir, error) && !error;
  if (!landed_here) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SoftHSM did not create the token in ", token_dir,
        ": it is still initialised with an earlier SOFTHSM2_CONF because a Pkcs11Hsm from an "
        "earlier SoftHsmToken is still open; destroy it first (InitializeToken said: ",
        status.ToString(), ")"));
  }
  KMS_RETURN_IF_ERROR(status);
  return token;
}

SoftHsmToken::~SoftHsmToken() {
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  if (conf_env_set_) {
    if (previous_conf_.has_value()) {
      setenv(kConfEnv, previous_conf_->c_str(), 1);
    } else {
      unsetenv(kConfEnv);
    }
  }
  token_alive.store(false);
}

hsm::Pkcs11Config SoftHsmToken::Config(int session_count) const {
  hsm::Pkcs11Config config;
  config.module_path = module_path_;
  config.token_label = label_;
  config.user_pin = user_pin_.Copy();
  config.session_count = session_count;
  return config;
}

absl::StatusOr<std::unique_ptr<hsm::Pkcs11Hsm>> SoftHsmToken::OpenHsm(int session_count) const {
  return hsm::Pkcs11Hsm::Open(Config(session_count));
}

}  // namespace kms::testing
