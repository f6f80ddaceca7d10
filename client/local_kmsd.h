// LocalKmsd: a kmsd child process for `kmsctl bench --start-daemon`, on the
// embedded defaults that deploy/run.sh uses: a SoftHSM token and an SQLite
// database in a data directory, the audit log on, mTLS with kmsd's
// development PKI, here on a free loopback port.
//
// Start() makes a temporary directory ($TMPDIR or /tmp,
// "kmsctl-bench-XXXXXX") for kmsd's port file and log and, unless a data
// directory is given, for the data directory; runs
//   kmsd --data-dir DIR --listen 127.0.0.1:0 --port-file PORT_FILE [extra args]
// with stdout and stderr to the log; and waits until kmsd has written the
// port, which it does once it serves. Clients reach it with the development
// PKI's admin certificate (ClientOptionsForAdmin), an administrator.
//
// Stop() sends SIGTERM and waits for kmsd to drain; close every channel to
// it first, or the drain waits for them. The destructor kills a kmsd still
// running and removes the temporary directory (never a data directory the
// caller gave). If kmsctl dies first, kmsd gets SIGTERM (PR_SET_PDEATHSIG).
//
// Not thread-safe. Construct and destroy on the same thread (the death
// signal follows the thread that started kmsd).
#ifndef KMS_CLIENT_LOCAL_KMSD_H_
#define KMS_CLIENT_LOCAL_KMSD_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/kms_client.h"

namespace kms::bench {

class LocalKmsd {
 public:
  struct Options {
    std::string kmsd_path;                // the kmsd binary (FindKmsdBinary)
    std::string data_dir;                 // empty: a fresh one, removed afterwards
    std::vector<std::string> extra_args;  // more kmsd flags
    absl::Duration start_timeout = absl::Minutes(2);
    absl::Duration stop_timeout = absl::Seconds(30);
  };

  // Starts kmsd and waits until it serves.
  // Errors: kInternal if the temporary directory or log cannot be made or
  // fork fails; kUnavailable if kmsd exits or does not serve within
  // start_timeout (the message ends with the tail of its log).
  static absl::StatusOr<std::unique_ptr<LocalKmsd>> Start(Options options);
  ~LocalKmsd();
  LocalKmsd(const LocalKmsd&) = delete;
  LocalKmsd& operator=(const LocalKmsd&) = delete;

  // "127.0.0.1:PORT".
  std::string endpoint() const;
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_path() const { return log_path_; }

  // The development PKI's CA and admin client certificate and key, with
  // the default timeout.
  client::ClientOptions ClientOptionsForAdmin() const;

  // SIGTERM, then waits up to stop_timeout.
  // Errors: kFailedPrecondition if already stopped; kDeadlineExceeded if kmsd
  // did not exit in time (it is then killed); kInternal if it exited with a
  // code other than 0 (the message ends with the tail of its log).
  absl::Status Stop();

 private:
  LocalKmsd(Options options, std::string temp_dir, std::string data_dir, std::string log_path,
            pid_t pid, int port);

  const Options options_;
  const std::string temp_dir_;
  const std::string data_dir_;
  const std::string log_path_;
  pid_t pid_;  // -1 once stopped
  const int port_;
};

// The kmsd binary that belongs with this kmsctl: `kmsd` in kmsctl's own
// directory (an installation), else `../daemon/kmsd` from it (the build
// tree). Errors: kNotFound naming where it looked.
absl::StatusOr<std::string> FindKmsdBinary();

}  // namespace kms::bench

#endif  // KMS_CLIENT_LOCAL_KMSD_H_
