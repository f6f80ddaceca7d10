// kmsd's configuration: the YAML file given with --config, merged with the
// command-line flags, and checked before anything starts.
//
// Two modes:
//  - Embedded (no hsm.module): everything lives under data_dir — a SoftHSM
//    token with its softhsm2.conf, the user PIN in data_dir/user.pin and the
//    SQLite database — created on first start (data_dir.h).
//  - External (hsm.module set): a vendor PKCS#11 module, its token found by
//    hsm.token_label, the PIN read from hsm.pin_file or hsm.pin_env (never
//    from the command line), and `database` naming the SQLite file.
//
// Every key is documented in config/kmsd.example.yaml. Value type; not
// thread-safe to mutate.
#ifndef KMS_DAEMON_SERVER_CONFIG_H_
#define KMS_DAEMON_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kms::server {

struct Config {
  std::string listen = "127.0.0.1:7700";
  std::string data_dir;  // embedded mode: the data directory
  std::string database;  // default: <data_dir>/kmsd.db
  std::string resource_name_prefix = "arn:kmsd:kms:local:000000000000";
  std::string log_level = "info";  // debug, info, warning, error

  struct Hsm {
    std::string module;               // empty: embedded SoftHSM under data_dir
    std::string token_label = "kmsd";
    std::string pin_file;             // external mode: one of pin_file, pin_env
    std::string pin_env;
    int sessions = 4;                 // PKCS#11 sessions in the pool, 1..64
  } hsm;

  struct Limits {
    int max_receive_message_bytes = 64 * 1024;  // 4 KiB..64 MiB
    int max_concurrent_rpcs = 1024;             // 1..100000 per client connection (HTTP/2 streams)
    // Calls being served at once, over all connections, 1..1000000; beyond it
    // a call is shed at once with RESOURCE_EXHAUSTED (ThrottlingException).
    int max_in_flight_calls = 4096;
  } limits;

  struct Rotation {
    int min_period_days = 1;          // allowed rotation_period_in_days
    int max_period_days = 2560;
    int default_period_days = 365;
    int on_demand_limit = 25;         // RotateKeyOnDemand calls per key
    long long usage_threshold = 1LL << 30;   // encryptions per version, then rotate
    long long usage_hard_limit = 1LL << 32;  // then refuse (AES-GCM random-IV bound)
    long long usage_reservation_block = 10000;
    int compliance_max_age_days = 365;
    absl::Duration check_interval = absl::Seconds(60);
  } rotation;

  // Import of key material (keys of origin EXTERNAL).
  struct Import {
    absl::Duration parameters_lifetime = absl::Hours(24);  // token + wrapping key
    int max_outstanding_parameters = 10;                   // unused, per key
    int max_valid_days = 365;                              // ImportKeyMaterial valid_to
    absl::Duration check_interval = absl::Seconds(60);     // expiry sweep
  } import;

  // Transport security (README "Transport"). mTLS: all three files, or none.
  // With none and no plaintext, embedded mode makes a development PKI under
  // <data_dir>/tls (dev_pki.h); external mode refuses to start.
  struct Tls {
    std::string cert_file;       // server certificate chain, PEM
    std::string key_file;        // its private key, PEM
    std::string client_ca_file;  // CA certificates that issue client certificates
  } tls;

  // Development only: plaintext on loopback or a unix socket, every caller
  // acting as `principal`.
  struct Plaintext {
    bool enabled = false;
    std::string principal;
  } plaintext;

  // Principal patterns: exact, or a prefix ending in one '*'. Parsed and
  // checked here; enforced by the authorisation layer.
  struct Access {
    std::vector<std::string> administrators;  // may create keys and manage every key
    std::vector<std::string> auditors;        // may read the audit log and reports only
  } access;

  // The audit log. Parsed and checked here; used by the audit layer.
  struct Audit {
    std::string path;  // default: <data_dir>/audit.log, else next to `database`
    int64_t checkpoint_every_records = 1000;                 // 1..1000000
    absl::Duration checkpoint_interval = absl::Seconds(60);  // 1 s..1 day
    int64_t preallocate_kib = 1024;  // zeros written ahead of the records; 0..1048576
  } audit;

  // Test only: the name of a crash point ("rotate:after-generate", ...) at
  // which kmsd kills itself with SIGKILL. Used by the crash-safety tests;
  // kmsd logs loudly when it is set. Never set it in production.
  std::string testing_crash_point;

  // How often kmsd looks for keys whose deletion date has passed.
  absl::Duration deletion_check_interval = absl::Seconds(60);  // 1 s..1 day
  // How long SIGTERM waits for in-flight calls before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(10);  // 0..10 min
};

// Reads `path` over a default Config. Errors: kInvalidArgument with one line
// "<path>: <key>: <problem>" naming the first bad key (unknown key, wrong
// type, out of range), kNotFound if the file does not exist.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// Checks a merged Config (file + flags). Errors: kInvalidArgument naming the
// key and the problem (e.g. "data_dir: required unless hsm.module is set").
absl::Status ValidateConfig(const Config& config);

// True if `listen` (HOST:PORT) names a loopback host: localhost, 127.0.0.0/8
// or [::1].
bool IsLoopbackListen(const std::string& listen);

// True if `listen` is a loopback address or a unix socket ("unix:/path",
// "unix:path" or "unix-abstract:name", gRPC's syntax): reachable only from
// this machine.
bool IsLocalListen(const std::string& listen);

// True if `listen` names a unix socket.
bool IsUnixListen(const std::string& listen);

// Where kmsd keeps the state it owns besides the token: `data_dir` (as
// resolved at start-up) if set, else the directory of `database`.
std::string StateDirectory(const std::string& data_dir, const std::string& database);

// The audit log's file: audit.path if set, else audit.log in
// StateDirectory(data_dir, database).
std::string AuditLogPath(const Config& config, const std::string& data_dir,
                         const std::string& database);

// True if mTLS is configured (all three tls files set).
bool HasTlsFiles(const Config& config);

}  // namespace kms::server

#endif  // KMS_DAEMON_SERVER_CONFIG_H_
