// kmsctl's edges: exit codes and the error line, K=V argument parsing, and
// the files kmsctl reads and writes.
//
// Every kmsctl command returns an absl::Status. Errors that kmsctl makes
// itself are tagged with their exit code (UsageError, AsLocalFailure,
// AsFailedCheck); untagged
// errors come from KmsClient and map to 1 (kmsd said no) or 3 (kmsd could not
// be reached).
//
// Thread-compatible free functions; kmsctl is single-threaded.
#ifndef KMS_CLIENT_KMSCTL_SUPPORT_H_
#define KMS_CLIENT_KMSCTL_SUPPORT_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kms::kmsctl {

// kmsctl's exit codes. Keep in step with the --help footer (kExitCodeHelp).
enum ExitCode : int {
  kExitOk = 0,
  kExitServiceError = 1,  // kmsd returned an error
  kExitNotVerified = 1,   // audit verify, which calls no kmsd: the log failed verification
  kExitUsage = 2,         // bad flags or arguments; no RPC was made
  kExitUnreachable = 3,   // kmsd unreachable or no answer before the timeout
  kExitLocalFailure = 4,  // local file I/O, a failed envelope file, key material failing a
                          // local check (size, key check value), an unusable public key
};

// The exit-code table as printed at the end of `kmsctl --help`.
extern const char kExitCodeHelp[];

// A bad argument that CLI11 could not catch by itself (exit 2).
absl::Status UsageError(absl::string_view message);
// `status` (not OK), tagged as a local failure: file I/O, envelope
// verification, or a local check of key material (exit 4).
absl::Status AsLocalFailure(absl::Status status);

// `status` (not OK), tagged as the verdict of a check kmsctl made itself on
// input it could read: `audit verify` on a log that fails verification
// (exit 1, kExitNotVerified). Unlike a local failure, the input was checked.
absl::Status AsFailedCheck(absl::Status status);

// The exit code for a failed command's status (see ExitCode).
ExitCode ExitCodeFor(const absl::Status& status);

// The one line kmsctl prints to stderr for a failed command, without the
// newline: "kmsctl: <ExceptionName>: <message>" for kmsd's errors,
// "kmsctl: <message>" for kmsctl's own.
std::string ErrorLine(const absl::Status& status, absl::string_view endpoint);

// Parses "K=V" pairs, splitting at the first '=' (so V may contain '='; V may
// be empty). `flag` names the option in error messages.
// Errors: kInvalidArgument (usage) if a pair has no '=', an empty key, or a
// key given twice.
absl::StatusOr<std::map<std::string, std::string>> ParseKeyValuePairs(
    const std::vector<std::string>& pairs, absl::string_view flag);

// Decodes standard base64 given on the command line.
// Errors: kInvalidArgument (usage) if `text` is not base64.
absl::StatusOr<std::string> DecodeBase64Argument(absl::string_view text, absl::string_view flag);

// The whole contents of `path`, or of stdin if `path` is "-".
// Errors: the errno's code, tagged local, if the file cannot be read.
absl::StatusOr<std::string> ReadInputFile(const std::string& path);

// Who may read a file kmsctl writes.
enum class FileMode {
  kSecret,  // 0600 whatever the umask: plaintext and data keys
  kPublic,  // 0666 minus the umask: ciphertext
};

// Writes `bytes` to `path` (stdout if `path` is "-"). A regular file is
// written to a temporary name in the same directory, synced and renamed over
// `path`, so `path` never holds a partial result and a secret file is never
// readable by others, not even for a moment. Anything else that exists at
// `path` (a symbolic link, a pipe, /dev/stdout) is truncated and written
// through instead; a secret written through a link to a regular file makes
// that file 0600 first.
// Errors: the errno's code, tagged local, if any step fails.
absl::Status WriteOutputFile(const std::string& path, absl::string_view bytes, FileMode mode);

// A file that must not exist yet, written in pieces (audit export): created
// with O_CREAT | O_EXCL | O_NOFOLLOW, mode 0666 minus the umask. Commit()
// syncs the file and its directory; a file not committed is removed when the
// object goes, so a failed run leaves no partial file behind.
class NewOutputFile {
 public:
  // Errors: kAlreadyExists if anything exists at `path`; else the errno's
  // code. All tagged local.
  static absl::StatusOr<std::unique_ptr<NewOutputFile>> Create(const std::string& path);
  ~NewOutputFile();
  NewOutputFile(const NewOutputFile&) = delete;
  NewOutputFile& operator=(const NewOutputFile&) = delete;

  // Errors: the errno's code, tagged local.
  absl::Status Append(absl::string_view bytes);
  // fsync of the file and of its directory, then close.
  // Errors: the errno's code, tagged local.
  absl::Status Commit();

 private:
  NewOutputFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  const std::string path_;
  int fd_;  // -1 once closed
  bool committed_ = false;
};

// Writes `bytes` to stdout as they are and flushes.
// Errors: the errno's code, tagged local, if stdout is closed or full.
absl::Status WriteStdout(absl::string_view bytes);

}  // namespace kms::kmsctl

#endif  // KMS_CLIENT_KMSCTL_SUPPORT_H_
