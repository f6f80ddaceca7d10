#include "daemon/server/data_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"
#include "hsm/token_setup.h"

namespace kms::server {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  const int err = errno;
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  if (err == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

absl::Status EnsureDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0) return absl::OkStatus();
  if (errno != EEXIST) return ErrnoError("cannot create directory", path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoError("cannot stat", path);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

bool FileExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Writes `contents` to `path` only if it does not exist yet (O_EXCL), with
// `mode`, fsynced, via a temporary file so a crash never leaves half a file.
absl::Status WriteNewFile(const std::string& path, absl::string_view contents, mode_t mode) {
  if (FileExists(path)) return absl::OkStatus();
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  const bool ok = ::write(fd, contents.data(), contents.size()) ==
                      static_cast<ssize_t>(contents.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoError("cannot write", path);
    ::unlink(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

// A fresh PIN: 32 hex characters (128 bits) from OpenSSL's CSPRNG.
SecretBytes NewPin() {
  SecretBytes raw(16);
  if (RAND_bytes(raw.mutable_data(), static_cast<int>(raw.size())) != 1) std::abort();
  std::string hex = absl::BytesToHexString(raw.secret());
  return SecretBytes::TakeFrom(&hex);
}

absl::Status WritePinFile(const std::string& path) {
  if (FileExists(path)) return absl::OkStatus();
  SecretBytes pin = NewPin();
  std::string contents = absl::StrCat(pin.secret(), "\n");
  absl::Status s = WriteNewFile(path, contents, 0600);
  WipeString(&contents);
  return s;
}

}  // namespace

absl::StatusOr<SecretBytes> ReadPinFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoError("cannot read PIN file", path);
  if ((st.st_mode & 077) != 0) {
    KMS_LOG(WARNING) << "PIN file " << path << " is readable by group or others; chmod 600 it";
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot read PIN file", path);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!contents.empty() && (contents.back() == '\n' || contents.back() == '\r')) {
    contents.pop_back();
  }
  if (contents.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("PIN file ", path, " is empty"));
  }
  return SecretBytes::TakeFrom(&contents);
}

absl::StatusOr<SecretBytes> ReadPinEnv(const std::string& variable) {
  const char* value = std::getenv(variable.c_str());
  if (value == nullptr || *value == '\0') {
    return absl::NotFoundError(absl::StrCat("environment variable ", variable,
                                            " (hsm.pin_env) is not set"));
  }
  return SecretBytes::CopyFrom(value);
}

absl::StatusOr<EmbeddedSetup> PrepareEmbeddedDataDir(const std::string& data_dir,
                                                     const std::string& module_path,
                                                     const std::string& token_label) {
  KMS_RETURN_IF_ERROR(EnsureDirectory(data_dir));
  char resolved[PATH_MAX];
  if (::realpath(data_dir.c_str(), resolved) == nullptr) {
    return ErrnoError("cannot resolve", data_dir);
  }
  EmbeddedSetup setup;
  setup.data_dir = resolved;
  const std::string tokens = setup.data_dir + "/tokens";
  setup.softhsm_conf = setup.data_dir + "/softhsm2.conf";
  KMS_RETURN_IF_ERROR(EnsureDirectory(tokens));
  KMS_RETURN_IF_ERROR(WriteNewFile(
      setup.softhsm_conf,
      absl::StrCat("# Written by kmsd on first start: the embedded SoftHSM token store.\n",
                   "directories.tokendir = ", tokens, "\n",
                   "objectstore.backend = file\n",
                   "log.level = ERROR\n",
                   "slots.removable = false\n"),
      0600));
  // PINs before the token: a crash in between leaves PINs and no token, which
  // the next start completes; never a token whose PIN is lost.
  const std::string user_pin_path = setup.data_dir + "/user.pin";
  const std::string so_pin_path = setup.data_dir + "/so.pin";
  KMS_RETURN_IF_ERROR(WritePinFile(user_pin_path));
  KMS_RETURN_IF_ERROR(WritePinFile(so_pin_path));
  ::setenv("SOFTHSM2_CONF", setup.softhsm_conf.c_str(), /*overwrite=*/1);

  KMS_ASSIGN_OR_RETURN(setup.user_pin, ReadPinFile(user_pin_path));
  KMS_ASSIGN_OR_RETURN(setup.module, hsm::HoldModule(module_path));
  KMS_ASSIGN_OR_RETURN(bool exists, hsm::TokenExists(module_path, token_label));
  if (!exists) {
    KMS_ASSIGN_OR_RETURN(SecretBytes so_pin, ReadPinFile(so_pin_path));
    KMS_RETURN_IF_ERROR(hsm::InitializeToken(module_path, token_label, so_pin, setup.user_pin));
    setup.token_created = true;
    KMS_LOG(INFO) << "initialised SoftHSM token '" << token_label << "' under " << tokens;
  }
  return setup;
}

}  // namespace kms::server
