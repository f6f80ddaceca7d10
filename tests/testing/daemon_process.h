// Test support for end-to-end tests: temporary directories, running commands,
// and the real kmsd binary as a child process on a free loopback port.
//
// DaemonProcess starts `kmsd --data-dir DIR --listen 127.0.0.1:0 --port-file
// ... --config DIR.yaml` and waits until it has written the port it bound (it
// does so only once it is serving). The config it writes puts kmsd in the
// plaintext development mode as principal "e2e-admin" (administrators
// ["e2e-admin"], auditors ["e2e-auditor"]) unless Options asks for mTLS or
// the development PKI, followed by Options::extra_yaml. Its stderr goes to
// log_path() for post-mortems. The destructor kills a daemon still running.
// Not thread-safe.
#ifndef KMS_TESTS_TESTING_DAEMON_PROCESS_H_
#define KMS_TESTS_TESTING_DAEMON_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kms::testing {

// The bytes of the file at `path`; empty if it cannot be read.
std::string ReadTestFile(const std::string& path);
// Replaces the file at `path` with `bytes` (tests check the outcome).
void WriteTestFile(const std::string& path, const std::string& bytes);

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  static absl::StatusOr<std::unique_ptr<TempDir>> Create(const std::string& prefix = "kmsd-test");
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Polls `condition` every 100 ms until it holds or `timeout` passes; for
// another process's state, where there is no clock to inject.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(20));

struct CommandResult {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with `argv`, extra environment entries ("K=V") on top
// of this process's, and `input` on stdin; waits at most `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env = {},
                         const std::string& input = "",
                         absl::Duration timeout = absl::Seconds(60));

// kmsctl (the built binary) against `endpoint`, with `args` after the
// global flags.
CommandResult RunKmsctl(const std::string& endpoint, const std::vector<std::string>& args,
                        const std::string& input = "");

// PEM files of an mTLS client: the CA that issued kmsd's certificate, the
// client's certificate and key.
struct ClientTlsFiles {
  std::string ca_file, cert_file, key_file;
};

// kmsctl over mTLS: RunKmsctl with --ca, --cert and --key.
CommandResult RunKmsctlWithTls(const std::string& endpoint, const ClientTlsFiles& tls,
                               const std::vector<std::string>& args,
                               const std::string& input = "");

// The principals DaemonProcess's default plaintext mode configures.
inline constexpr char kE2eAdmin[] = "e2e-admin";
inline constexpr char kE2eAuditor[] = "e2e-auditor";
// A key policy letting kE2eAdmin do everything with a key, for tests that
// are not about access control.
inline constexpr char kE2eKeyPolicy[] =
    R"({"Statement":[{"Effect":"Allow","Principal":"e2e-admin","Action":"kms:*"}]})";

class DaemonProcess {
 public:
  enum class Transport {
    kPlaintext,  // plaintext, every caller is kE2eAdmin (the default)
    kTls,        // mTLS with Options::tls
    kDevPki,     // nothing configured: kmsd's own development PKI
  };
  struct ServerTlsFiles {
    std::string cert_file, key_file, client_ca_file;
  };
  struct Options {
    std::string data_dir;                 // required; created by kmsd if missing
    std::vector<std::string> extra_args;  // more kmsd flags (not --config: use extra_yaml)
    std::vector<std::string> extra_env;   // e.g. libfaketime's LD_PRELOAD/FAKETIME
    // More config, appended to the generated file; must not repeat its
    // top-level keys (plaintext, tls, access).
    std::string extra_yaml;
    Transport transport = Transport::kPlaintext;
    ServerTlsFiles tls;                   // with Transport::kTls
    // access.administrators and access.auditors (not with kDevPki, whose
    // roles are kmsd's own defaults).
    std::vector<std::string> administrators = {kE2eAdmin};
    std::vector<std::string> auditors = {kE2eAuditor};
    // --listen; "unix:/path" serves a unix socket (endpoint() is then that).
    std::string listen = "127.0.0.1:0";
    absl::Duration start_timeout = absl::Seconds(60);
  };

  // The config file Start() gives kmsd for `options`, or "" if none is
  // needed.
  static std::string ConfigYaml(const Options& options);

  // Starts kmsd and waits until it serves. Errors: kUnavailable if it exits
  // or does not serve in time (the message carries its log's tail).
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(Options options);
  ~DaemonProcess();

  std::string endpoint() const {
    return options_.listen.rfind("unix", 0) == 0 ? options_.listen
                                                  : "127.0.0.1:" + std::to_string(port_);
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return options_.data_dir; }
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

  // Sends `signal` and waits for exit; returns the exit code (128+N if killed
  // by signal N).
  absl::StatusOr<int> Stop(int signal = 15, absl::Duration timeout = absl::Seconds(30));

 private:
  DaemonProcess(Options options, pid_t pid, std::string log_path, int port)
      : options_(std::move(options)), pid_(pid), log_path_(std::move(log_path)), port_(port) {}
  Options options_;
  pid_t pid_;
  std::string log_path_;
  int port_;
};

}  // namespace kms::testing

#endif  // KMS_TESTS_TESTING_DAEMON_PROCESS_H_
