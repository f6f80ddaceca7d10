#include "tests/testing/daemon_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "daemon/common/child_process.h"

extern char** environ;

namespace kms::testing {
namespace {

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// This process's environment with `extra` ("K=V") set on top: an entry in
// `extra` replaces an inherited one of the same name (getenv would otherwise
// see whichever comes first).
std::vector<std::string> Environment(const std::vector<std::string>& extra) {
  auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    bool replaced = false;
    for (const auto& x : extra) replaced = replaced || name_of(x) == name_of(entry);
    if (!replaced) env.push_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TempDir>> TempDir::Create(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(base && *base ? base : "/tmp", "/", prefix, "-XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", templ, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<TempDir>(new TempDir(templ));
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env, const std::string& input,
                         absl::Duration timeout) {
  CommandResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) || ::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC)) {
    result.err = "pipe failed";
    return result;
  }
  std::vector<std::string> args = argv;
  std::vector<std::string> env = Environment(extra_env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(env);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execve(c_args[0], c_args.data(), c_env.data());
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  // Feed stdin and drain stdout/stderr together so no pipe fills and blocks.
  size_t written = 0;
  if (input.empty()) ::close(in_pipe[1]);
  bool in_open = !input.empty(), out_open = true, err_open = true;
  const absl::Time deadline = absl::Now() + timeout;
  char buf[65536];
  while (out_open || err_open) {
    struct pollfd fds[3];
    int n = 0;
    if (out_open) fds[n++] = {out_pipe[0], POLLIN, 0};
    if (err_open) fds[n++] = {err_pipe[0], POLLIN, 0};
    if (in_open) fds[n++] = {in_pipe[1], POLLOUT, 0};
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) {
      ::kill(pid, SIGKILL);
      result.err += "\n[timed out]";
      break;
    }
    if (::poll(fds, n, static_cast<int>(left)) < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_pipe[1]) {
        ssize_t w = ::write(in_pipe[1], input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 || written == input.size()) {
          ::close(in_pipe[1]);
          in_open = false;
        }
        continue;
      }
      ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      std::string& sink = fds[i].fd == out_pipe[0] ? result.out : result.err;
      if (r > 0) {
        sink.append(buf, static_cast<size_t>(r));
      } else {
        (fds[i].fd == out_pipe[0] ? out_open : err_open) = false;
      }
    }
  }
  if (in_open) ::close(in_pipe[1]);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  result.exit_code = WaitForChildExit(pid, absl::Seconds(10)).value_or(-1);
  return result;
}

CommandResult RunKmsctl(const std::string& endpoint, const std::vector<std::string>& args,
                        const std::string& input) {
  std::vector<std::string> argv = {KMS_KMSCTL_BINARY, "--endpoint", endpoint};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {}, input);
}

CommandResult RunKmsctlWithTls(const std::string& endpoint, const ClientTlsFiles& tls,
                               const std::vector<std::string>& args, const std::string& input) {
  std::vector<std::string> argv = {KMS_KMSCTL_BINARY, "--endpoint", endpoint, "--ca",
                                   tls.ca_file,       "--cert",     tls.cert_file,
                                   "--key",           tls.key_file};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {}, input);
}

bool Eventually(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return condition();
}

std::string DaemonProcess::ConfigYaml(const Options& options) {
  std::string yaml;
  const auto list = [](const std::vector<std::string>& principals) {
    return principals.empty() ? std::string("[]")
                              : absl::StrCat("[\"", absl::StrJoin(principals, "\", \""), "\"]");
  };
  const std::string access =
      absl::StrCat("access:\n  administrators: ", list(options.administrators),
                   "\n  auditors: ", list(options.auditors), "\n");
  switch (options.transport) {
    case Transport::kPlaintext:
      yaml = absl::StrCat("plaintext:\n  enabled: true\n  principal: \"", kE2eAdmin, "\"\n",
                          access);
      break;
    case Transport::kTls:
      yaml = absl::StrCat("tls:\n  cert_file: \"", options.tls.cert_file, "\"\n  key_file: \"",
                          options.tls.key_file, "\"\n  client_ca_file: \"",
                          options.tls.client_ca_file, "\"\n", access);
      break;
    case Transport::kDevPki:
      break;
  }
  return yaml + options.extra_yaml;
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(Options options) {
  const std::string port_file = options.data_dir + ".port";
  const std::string log_path = options.data_dir + ".log";
  const std::string config_path = options.data_dir + ".yaml";
  ::unlink(port_file.c_str());
  std::vector<std::string> args = {KMS_KMSD_BINARY, "--data-dir", options.data_dir,
                                   "--listen",      options.listen, "--port-file",
                                   port_file};
  if (const std::string yaml = ConfigYaml(options); !yaml.empty()) {
    WriteTestFile(config_path, yaml);
    args.push_back("--config");
    args.push_back(config_path);
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<std::string> env = Environment(options.extra_env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(env);
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return absl::InternalError(absl::StrCat("cannot open ", log_path));
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execve(c_args[0], c_args.data(), c_env.data());
    ::_exit(127);
  }
  ::close(log_fd);
  const absl::Time deadline = absl::Now() + options.start_timeout;
  while (true) {
    const std::string port_text = ReadFile(port_file);
    if (!port_text.empty()) {
      return std::unique_ptr<DaemonProcess>(
          new DaemonProcess(std::move(options), pid, log_path, std::atoi(port_text.c_str())));
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return absl::UnavailableError(absl::StrCat("kmsd exited with code ", ExitCodeOf(status),
                                                 " before serving; log:\n", ReadFile(log_path)));
    }
    if (absl::Now() > deadline) {
      ::kill(pid, SIGKILL);
      WaitForChildExit(pid, absl::Seconds(10));
      return absl::UnavailableError(
          absl::StrCat("kmsd did not serve in time; log:\n", ReadFile(log_path)));
    }
    // Polling for another process's readiness file; nothing to inject.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string DaemonProcess::ReadLog() const { return ReadFile(log_path_); }

absl::StatusOr<int> DaemonProcess::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("kmsd is not running");
  ::kill(pid_, signal);
  std::optional<int> code = WaitForChildExit(pid_, timeout);
  if (!code.has_value()) {
    ::kill(pid_, SIGKILL);
    WaitForChildExit(pid_, absl::Seconds(10));
    pid_ = -1;
    return absl::DeadlineExceededError("kmsd did not exit in time; killed");
  }
  pid_ = -1;
  return *code;
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    WaitForChildExit(pid_, absl::Seconds(10));
  }
}

std::string ReadTestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

void WriteTestFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace kms::testing
