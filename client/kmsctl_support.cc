#include "client/kmsctl_support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/kms_client.h"
#include "daemon/common/errors.h"

namespace kms::kmsctl {
namespace {

// Status payload carrying the exit code of an error kmsctl made itself.
constexpr absl::string_view kExitCodePayloadUrl = "kmsctl-exit-code";

absl::Status WithExitCode(absl::Status status, ExitCode code) {
  status.SetPayload(kExitCodePayloadUrl, absl::Cord(absl::StrCat(static_cast<int>(code))));
  return status;
}

std::optional<ExitCode> TaggedExitCode(const absl::Status& status) {
  auto payload = status.GetPayload(kExitCodePayloadUrl);  // absl::optional
  int code = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &code)) {
    return std::nullopt;
  }
  return static_cast<ExitCode>(code);
}

absl::Status ErrnoError(int error_number, absl::string_view what) {
  return AsLocalFailure(absl::ErrnoToStatus(error_number, what));
}

absl::Status WriteAll(int fd, absl::string_view bytes, absl::string_view name) {
  while (!bytes.empty()) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("cannot write '", name, "'"));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(int fd, absl::string_view name) {
  std::string contents;
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("cannot read '", name, "'"));
    }
    if (n == 0) return contents;
    contents.append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace

const char kExitCodeHelp[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  kmsd returned an error; stderr: kmsctl: <ExceptionName>: <message>\n"
    "     (audit verify, which calls no kmsd: the log failed verification)\n"
    "  2  usage error: bad flags or arguments (nothing was sent to kmsd)\n"
    "  3  kmsd unreachable, or no answer within --timeout\n"
    "  4  local failure: a file could not be read or written, an envelope file\n"
    "     failed verification, key material failed a local check (its size, a\n"
    "     key check value), or a public key file held no ECDSA P-256 key\n"
    "\n"
    "Output: --json prints one JSON object per command, with the API's field\n"
    "names and bytes in base64. Key bytes are printed only where asked for:\n"
    "the plaintext of decrypt, generate-data-key and generate-random.\n";

absl::Status UsageError(absl::string_view message) {
  return WithExitCode(absl::InvalidArgumentError(message), kExitUsage);
}

absl::Status AsLocalFailure(absl::Status status) {
  return WithExitCode(std::move(status), kExitLocalFailure);
}

absl::Status AsFailedCheck(absl::Status status) {
  return WithExitCode(std::move(status), kExitNotVerified);
}

ExitCode ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (std::optional<ExitCode> code = TaggedExitCode(status)) return *code;
  return client::IsTransportError(status) ? kExitUnreachable : kExitServiceError;
}

std::string ErrorLine(const absl::Status& status, absl::string_view endpoint) {
  // One line, whatever the message holds.
  std::string message = absl::StrReplaceAll(status.message(), {{"\n", " "}, {"\r", " "}});
  if (TaggedExitCode(status).has_value()) return absl::StrCat("kmsctl: ", message);
  if (client::IsTransportError(status)) {
    // ErrorTypeOf would name a KMS exception (KeyUnavailableException) that
    // kmsd never raised; say what happened instead.
    return status.code() == absl::StatusCode::kDeadlineExceeded
               ? absl::StrCat("kmsctl: kmsd at ", endpoint, " did not answer in time: ", message)
               : absl::StrCat("kmsctl: kmsd unreachable at ", endpoint, ": ", message);
  }
  return absl::StrCat("kmsctl: ", ErrorTypeOf(status), ": ", message);
}

absl::StatusOr<std::map<std::string, std::string>> ParseKeyValuePairs(
    const std::vector<std::string>& pairs, absl::string_view flag) {
  std::map<std::string, std::string> result;
  for (const std::string& pair : pairs) {
    size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(
          absl::StrCat(flag, " expects KEY=VALUE with a non-empty KEY, got '", pair, "'"));
    }
    std::string key = pair.substr(0, eq);
    if (!result.emplace(key, pair.substr(eq + 1)).second) {
      return UsageError(absl::StrCat(flag, " gives key '", key, "' more than once"));
    }
  }
  return result;
}

absl::StatusOr<std::string> DecodeBase64Argument(absl::string_view text, absl::string_view flag) {
  std::string decoded;
  if (!absl::Base64Unescape(absl::StripAsciiWhitespace(text), &decoded)) {
    return UsageError(absl::StrCat(flag, " is not valid base64"));
  }
  return decoded;
}

absl::StatusOr<std::string> ReadInputFile(const std::string& path) {
  if (path == "-") return ReadAll(STDIN_FILENO, "stdin");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open '", path, "'"));
  absl::StatusOr<std::string> contents = ReadAll(fd, path);
  close(fd);
  return contents;
}

absl::Status WriteOutputFile(const std::string& path, absl::string_view bytes, FileMode mode) {
  if (path == "-") return WriteStdout(bytes);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    // A link, a pipe, a terminal (/dev/stdout is all three at times): write
    // through it. Renaming over it would replace the link or device node.
    int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open '", path, "'"));
    absl::Status status;
    // Truncated, so nothing secret is in it yet; narrow it before writing.
    if (mode == FileMode::kSecret && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        fchmod(fd, 0600) != 0) {
      status = ErrnoError(errno, absl::StrCat("cannot set the mode of '", path, "'"));
    }
    if (status.ok()) status = WriteAll(fd, bytes, path);
    if (close(fd) != 0 && status.ok()) {
      status = ErrnoError(errno, absl::StrCat("cannot write '", path, "'"));
    }
    return status;
  }
  // mkstemp creates the file 0600, so a secret is never readable by others;
  // a public file is widened afterwards.
  std::string temp = path + ".kmsctl-XXXXXX";
  int fd = mkstemp(temp.data());
  if (fd < 0) {
    return ErrnoError(errno, absl::StrCat("cannot create a file next to '", path, "'"));
  }
  absl::Status status = WriteAll(fd, bytes, temp);
  if (status.ok() && mode == FileMode::kPublic) {
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) {
      status = ErrnoError(errno, absl::StrCat("cannot set the mode of '", temp, "'"));
    }
  }
  if (status.ok() && fsync(fd) != 0) {
    status = ErrnoError(errno, absl::StrCat("cannot sync '", temp, "'"));
  }
  if (close(fd) != 0 && status.ok()) {
    status = ErrnoError(errno, absl::StrCat("cannot close '", temp, "'"));
  }
  if (status.ok() && rename(temp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, absl::StrCat("cannot write '", path, "'"));
  }
  if (!status.ok()) unlink(temp.c_str());
  return status;
}

absl::StatusOr<std::unique_ptr<NewOutputFile>> NewOutputFile::Create(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) {
    if (errno == EEXIST) {
      return AsLocalFailure(
          absl::AlreadyExistsError(absl::StrCat("'", path, "' exists; it is never overwritten")));
    }
    return ErrnoError(errno, absl::StrCat("cannot create '", path, "'"));
  }
  return std::unique_ptr<NewOutputFile>(new NewOutputFile(path, fd));
}

NewOutputFile::~NewOutputFile() {
  if (fd_ >= 0) close(fd_);
  if (!committed_) unlink(path_.c_str());
}

absl::Status NewOutputFile::Append(absl::string_view bytes) {
  if (fd_ < 0) return AsLocalFailure(absl::FailedPreconditionError("file already closed"));
  return WriteAll(fd_, bytes, path_);
}

absl::Status NewOutputFile::Commit() {
  if (fd_ < 0) return AsLocalFailure(absl::FailedPreconditionError("file already closed"));
  if (fsync(fd_) != 0) return ErrnoError(errno, absl::StrCat("cannot sync '", path_, "'"));
  int fd = fd_;
  fd_ = -1;
  if (close(fd) != 0) return ErrnoError(errno, absl::StrCat("cannot close '", path_, "'"));
  // The file is durable only once its directory entry is.
  size_t slash = path_.rfind('/');
  std::string directory =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  int dir_fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0 || fsync(dir_fd) != 0) {
    absl::Status status =
        ErrnoError(errno, absl::StrCat("cannot sync the directory '", directory, "'"));
    if (dir_fd >= 0) close(dir_fd);
    return status;
  }
  close(dir_fd);
  committed_ = true;
  return absl::OkStatus();
}

absl::Status WriteStdout(absl::string_view bytes) {
  return WriteAll(STDOUT_FILENO, bytes, "stdout");
}

}  // namespace kms::kmsctl
