#include "client/local_kmsd.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/common/child_process.h"

namespace kms::bench {
namespace {

constexpr size_t kLogTailBytes = 4096;

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// The last few KiB of the log at `path`, for error messages.
std::string TailOfLog(const std::string& path) {
  std::string log = ReadWholeFile(path);
  if (log.size() > kLogTailBytes) log = "..." + log.substr(log.size() - kLogTailBytes);
  return log;
}

std::string ErrnoText(const std::string& what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

void RemoveTree(const std::string& path) {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

bool IsExecutable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

absl::StatusOr<std::string> FindKmsdBinary() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) {
    return absl::NotFoundError("cannot find kmsd: /proc/self/exe is unreadable");
  }
  const std::filesystem::path dir = self.parent_path();
  const std::string candidates[] = {(dir / "kmsd").string(),
                                    (dir.parent_path() / "daemon" / "kmsd").string()};
  for (const std::string& candidate : candidates) {
    if (IsExecutable(candidate)) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat("cannot find kmsd at ", candidates[0], " or ", candidates[1]));
}

absl::StatusOr<std::unique_ptr<LocalKmsd>> LocalKmsd::Start(Options options) {
  const char* tmp = std::getenv("TMPDIR");
  std::string temp_dir =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/kmsctl-bench-XXXXXX");
  if (::mkdtemp(temp_dir.data()) == nullptr) {
    return absl::InternalError(ErrnoText("cannot make a temporary directory " + temp_dir));
  }
  const std::string data_dir = options.data_dir.empty() ? temp_dir + "/data" : options.data_dir;
  const std::string port_file = temp_dir + "/kmsd.port";
  const std::string log_path = temp_dir + "/kmsd.log";

  std::vector<std::string> args = {options.kmsd_path, "--data-dir",  data_dir, "--listen",
                                   "127.0.0.1:0",     "--port-file", port_file};
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    const absl::Status error = absl::InternalError(ErrnoText("cannot open " + log_path));
    RemoveTree(temp_dir);
    return error;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child of a threaded process: async-signal-safe calls only.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // kmsctl already gone
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  if (pid < 0) {
    const absl::Status error = absl::InternalError(ErrnoText("fork"));
    RemoveTree(temp_dir);
    return error;
  }

  const absl::Time deadline = absl::Now() + options.start_timeout;
  while (true) {
    int port = 0;
    const std::string port_text = ReadWholeFile(port_file);
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(port_text), &port) && port > 0) {
      return std::unique_ptr<LocalKmsd>(
          new LocalKmsd(std::move(options), temp_dir, data_dir, log_path, pid, port));
    }
    std::optional<std::string> failure;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      failure = absl::StrCat("kmsd (", options.kmsd_path, ") exited with code ", ExitCodeOf(status),
                             " before serving");
    } else if (absl::Now() > deadline) {
      ::kill(pid, SIGKILL);
      WaitForChildExit(pid, absl::Seconds(10));
      failure =
          absl::StrCat("kmsd did not serve within ", absl::FormatDuration(options.start_timeout));
    }
    if (failure.has_value()) {
      const std::string log = TailOfLog(log_path);
      RemoveTree(temp_dir);
      return absl::UnavailableError(absl::StrCat(*failure, "; its log:\n", log));
    }
    // kmsd writes the port file once it serves; nothing to wait on but time.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

LocalKmsd::LocalKmsd(Options options, std::string temp_dir, std::string data_dir,
                     std::string log_path, pid_t pid, int port)
    : options_(std::move(options)),
      temp_dir_(std::move(temp_dir)),
      data_dir_(std::move(data_dir)),
      log_path_(std::move(log_path)),
      pid_(pid),
      port_(port) {}

LocalKmsd::~LocalKmsd() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    WaitForChildExit(pid_, absl::Seconds(10));
  }
  RemoveTree(temp_dir_);
}

std::string LocalKmsd::endpoint() const { return absl::StrCat("127.0.0.1:", port_); }

client::ClientOptions LocalKmsd::ClientOptionsForAdmin() const {
  // daemon/server/dev_pki.h: made under <data dir>/tls before kmsd serves.
  client::ClientOptions options;
  options.ca_file = data_dir_ + "/tls/ca.pem";
  options.cert_file = data_dir_ + "/tls/admin.pem";
  options.key_file = data_dir_ + "/tls/admin.key";
  return options;
}

absl::Status LocalKmsd::Stop() {
  if (pid_ <= 0) return absl::FailedPreconditionError("kmsd is not running");
  ::kill(pid_, SIGTERM);
  const std::optional<int> code = WaitForChildExit(pid_, options_.stop_timeout);
  if (!code.has_value()) {
    ::kill(pid_, SIGKILL);
    WaitForChildExit(pid_, absl::Seconds(10));
    pid_ = -1;
    return absl::DeadlineExceededError(absl::StrCat(
        "kmsd did not stop within ", absl::FormatDuration(options_.stop_timeout), "; killed"));
  }
  pid_ = -1;
  if (*code != 0) {
    return absl::InternalError(
        absl::StrCat("kmsd exited with code ", *code, "; its log:\n", TailOfLog(log_path_)));
  }
  return absl::OkStatus();
}

}  // namespace kms::bench
