// kmsd: the key management daemon. The only place concrete classes are
// chosen: Pkcs11Hsm, SqliteKeyStore, SystemClock, KeyService, the gRPC server.
//
//   kmsd --data-dir DIR [--listen HOST:PORT]     embedded SoftHSM + SQLite in DIR
//   kmsd --config FILE [--listen ...]            anything else (config/kmsd.example.yaml)
//
// Transport: mTLS with client certificates (tls.* in the config, or in
// embedded mode with nothing configured a development PKI under
// DIR/tls), or plaintext on loopback/unix sockets when plaintext.enabled.
// SIGHUP re-reads the certificate files; the listener stays up.
//
// Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT); 1 if start-up or
// serving failed; 2 for a bad command line or config.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#ifdef KMS_WITH_TCMALLOC
#include <gperftools/malloc_extension.h>
#endif
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/clock.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"
#include "daemon/keystore/caching_key_store.h"
#include "daemon/keystore/sqlite_key_store.h"
#include "daemon/server/config.h"
#include "daemon/server/data_dir.h"
#include "daemon/server/dev_pki.h"
#include "daemon/audit/audit_log.h"
#include "daemon/audit/context_hasher.h"
#include "daemon/audit/request_scope.h"
#include "daemon/server/call_auditor.h"
#include "daemon/server/kms_grpc_service.h"
#include "daemon/service/access_control.h"
#include "daemon/service/audit_service.h"
#include "daemon/service/authorized_service.h"
#include "hsm/recording_hsm.h"
#include "daemon/server/peer_identity.h"
#include "daemon/server/tls_credentials.h"
#include "daemon/service/key_service.h"
#include "hsm/pkcs11_hsm.h"

namespace kms {
namespace {

constexpr char kDefaultSoftHsmModule[] = "/usr/lib/softhsm/libsofthsm2.so";
// The HSM object id of the ECDSA P-256 key that signs audit checkpoints.
constexpr char kAuditSigningKeyId[] = "kmsd-audit-signing-key";

// Runs `task` every `interval` on its own thread until destroyed: the
// deletion sweep and the rotation scheduler. Failures are the task's to log.
class PeriodicTask {
 public:
  PeriodicTask(absl::Duration interval, std::function<void()> task)
      : interval_(interval), task_(std::move(task)), thread_([this] { Run(); }) {}
  ~PeriodicTask() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

 private:
  void Run() {
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_)) {
      mu_.Unlock();
      task_();
      mu_.Lock();
    }
  }

  const absl::Duration interval_;
  const std::function<void()> task_;
  absl::Mutex mu_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the fields it reads
};

LogLevel ParseLogLevel(const std::string& name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "warning") return LogLevel::kWarning;
  if (name == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

// Writes the bound port to `path` atomically, so a reader never sees half.
absl::Status WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  const std::string text = absl::StrCat(port, "\n");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    if (fd >= 0) ::close(fd);
    return absl::InternalError(absl::StrCat("cannot write port file ", tmp));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write port file ", path));
  }
  return absl::OkStatus();
}

// How the listener is secured, chosen from the config.
struct Transport {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::unique_ptr<server::ServerTls> tls;  // null in plaintext mode
  server::PeerIdentity identity = server::PeerIdentity::Tls();
};

// Picks the transport: plaintext if the config asks for it, else mTLS from
// tls.* or, in embedded mode with neither, from the development PKI (which
// also gives the default administrators and auditors). `config` is the
// effective config the rest of kmsd sees.
absl::StatusOr<Transport> MakeTransport(server::Config& config, const std::string& data_dir) {
  Transport transport;
  if (config.plaintext.enabled) {
    transport.credentials = grpc::InsecureServerCredentials();
    transport.identity = server::PeerIdentity::Plaintext(config.plaintext.principal);
    KMS_LOG(WARNING) << "DEVELOPMENT MODE: plaintext, every caller is principal '"
                     << config.plaintext.principal << "' (listen " << config.listen
                     << "). Never use plaintext.enabled in production.";
    return transport;
  }
  server::TlsFiles files{config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file};
  if (!server::HasTlsFiles(config)) {
    // ValidateConfig allows this only in embedded mode.
    KMS_ASSIGN_OR_RETURN(server::DevPki pki, server::EnsureDevPki(data_dir));
    files = {pki.server_cert, pki.server_key, pki.ca_cert};
    KMS_LOG(WARNING) << "development PKI: serving mTLS with the certificates under " << pki.dir
                     << " (CA " << pki.ca_cert << "). Configure tls.* for production.";
    KMS_LOG(INFO) << "development PKI client certificates: admin " << pki.admin_cert << " + "
                  << pki.admin_key << "; auditor " << pki.auditor_cert << " + "
                  << pki.auditor_key;
    KMS_LOG(INFO) << "kmsctl: export KMSCTL_CA=" << pki.ca_cert
                  << " KMSCTL_CERT=" << pki.admin_cert << " KMSCTL_KEY=" << pki.admin_key;
    if (config.access.administrators.empty()) config.access.administrators = {"admin"};
    if (config.access.auditors.empty()) config.access.auditors = {"auditor"};
  }
  // The staging copies live next to kmsd's other state.
  const std::string state_dir = server::StateDirectory(data_dir, config.database);
  KMS_ASSIGN_OR_RETURN(transport.tls, server::ServerTls::Create(files, state_dir + "/tls-active"));
  transport.credentials = transport.tls->credentials();
  KMS_LOG(INFO) << "mTLS: certificate " << files.cert_file << ", key " << files.key_file
                << ", client CAs " << files.client_ca_file << " (SIGHUP reloads them)";
  return transport;
}

// The allocator kmsd runs on, for the start-up log, as the allocator itself
// reports it: a release build links tcmalloc (CMake's KMS_TCMALLOC), and this
// call is also what keeps the linker's --as-needed from dropping it.
std::string AllocatorDescription() {
#ifdef KMS_WITH_TCMALLOC
  size_t heap = 0;
  MallocExtension::instance()->GetNumericProperty("generic.heap_size", &heap);
  return absl::StrCat("tcmalloc (heap ", heap / 1024, " KiB)");
#elif defined(__SANITIZE_ADDRESS__)
  return "AddressSanitizer's (a sanitizer build)";
#else
  return "the C library's malloc";
#endif
}

absl::Status Serve(server::Config config, const std::string& port_file,
                   const sigset_t& signals) {
  KMS_LOG(INFO) << "memory allocator: " << AllocatorDescription();
  // ---- the HSM
  hsm::Pkcs11Config hsm_config;
  hsm_config.token_label = config.hsm.token_label;
  hsm_config.session_count = config.hsm.sessions;
  std::string data_dir = config.data_dir;
  std::shared_ptr<const void> embedded_module;  // held until the token is open
  if (config.hsm.module.empty()) {
    hsm_config.module_path = kDefaultSoftHsmModule;
    KMS_ASSIGN_OR_RETURN(server::EmbeddedSetup setup,
                         server::PrepareEmbeddedDataDir(config.data_dir, hsm_config.module_path,
                                                        config.hsm.token_label));
    data_dir = setup.data_dir;
    hsm_config.user_pin = std::move(setup.user_pin);
    embedded_module = std::move(setup.module);
    KMS_LOG(INFO) << "embedded mode: SoftHSM token '" << config.hsm.token_label << "' under "
                  << data_dir << " (SOFTHSM2_CONF=" << setup.softhsm_conf << ")";
  } else {
    hsm_config.module_path = config.hsm.module;
    if (!config.hsm.pin_file.empty()) {
      KMS_ASSIGN_OR_RETURN(hsm_config.user_pin, server::ReadPinFile(config.hsm.pin_file));
    } else {
      KMS_ASSIGN_OR_RETURN(hsm_config.user_pin, server::ReadPinEnv(config.hsm.pin_env));
    }
  }
  KMS_ASSIGN_OR_RETURN(std::unique_ptr<hsm::Pkcs11Hsm> hsm,
                       hsm::Pkcs11Hsm::Open(std::move(hsm_config)));
  embedded_module.reset();  // the Pkcs11Hsm holds the module now

  // ---- metadata
  const std::string database =
      config.database.empty() ? absl::StrCat(data_dir, "/kmsd.db") : config.database;
  KMS_ASSIGN_OR_RETURN(std::unique_ptr<keystore::SqliteKeyStore> sqlite_store,
                       keystore::SqliteKeyStore::Open(database));
  // Every read and write of the database goes through the cache from here on
  // (it relies on seeing every write).
  auto store = std::make_unique<keystore::CachingKeyStore>(std::move(sqlite_store));
  KMS_LOG(INFO) << "key store: " << database;

  // ---- the audit log, open before anything is done that it must record
  SystemClock clock;
  const std::string audit_path = server::AuditLogPath(config, data_dir, database);
  if (const auto signing_keys = hsm->ListSigningKeyIds();
      std::find(signing_keys.begin(), signing_keys.end(), kAuditSigningKeyId) ==
      signing_keys.end()) {
    KMS_RETURN_IF_ERROR(hsm->GenerateEcSigningKey(kAuditSigningKeyId));
    KMS_LOG(INFO) << "audit: made the checkpoint signing key " << kAuditSigningKeyId
                  << " (ECDSA P-256, never extractable) in the HSM";
  }
  KMS_ASSIGN_OR_RETURN(std::string audit_public_key, hsm->GetPublicKeyDer(kAuditSigningKeyId));
  KMS_ASSIGN_OR_RETURN(std::string audit_fingerprint,
                       audit::PublicKeyFingerprint(audit_public_key));
  KMS_ASSIGN_OR_RETURN(audit::ContextHasher context_hasher,
                       audit::LoadOrCreateContextHasher(*hsm, audit_path + ".context-key"));
  audit::AuditLog::Options audit_options;
  audit_options.path = audit_path;
  audit_options.checkpoint_every_records =
      static_cast<uint64_t>(config.audit.checkpoint_every_records);
  audit_options.checkpoint_interval = config.audit.checkpoint_interval;
  audit_options.preallocate_bytes = static_cast<uint64_t>(config.audit.preallocate_kib) * 1024;
  hsm::Hsm* raw_hsm = hsm.get();
  KMS_ASSIGN_OR_RETURN(
      std::unique_ptr<audit::AuditLog> audit_log,
      audit::AuditLog::Open(
          audit_options, clock,
          [raw_hsm](absl::string_view message) {
            return raw_hsm->SignEcdsaP256Sha256(kAuditSigningKeyId, message);
          },
          audit_fingerprint));
  KMS_LOG(INFO) << "audit log: " << audit_path << " (checkpoints signed by key "
                << audit_fingerprint << ")";
  // Every HSM operation kmsd makes from here on is recorded, under the
  // request (or task) the thread is working for.
  hsm::RecordingHsm recorded_hsm(*hsm, [&audit_log](const hsm::HsmCall& call) {
    audit::Entry entry;
    entry.type = audit::RecordType::kHsm;
    entry.request_id = audit::RequestScope::Current();
    entry.function = call.function;
    entry.mechanism = call.mechanism;
    entry.object_id = call.object_id;
    entry.result = call.result;
    audit_log->Append(std::move(entry));
  });

  // ---- the service, recovered before it serves anyone
  service::ServiceOptions options;
  options.resource_name_prefix = config.resource_name_prefix;
  options.min_rotation_period_days = config.rotation.min_period_days;
  options.max_rotation_period_days = config.rotation.max_period_days;
  options.default_rotation_period_days = config.rotation.default_period_days;
  options.on_demand_rotation_limit = config.rotation.on_demand_limit;
  options.usage_rotation_threshold = config.rotation.usage_threshold;
  options.usage_hard_limit = config.rotation.usage_hard_limit;
  options.usage_reservation_block = config.rotation.usage_reservation_block;
  options.compliance_max_age_days = config.rotation.compliance_max_age_days;
  options.import_parameters_lifetime = config.import.parameters_lifetime;
  options.max_outstanding_import_parameters = config.import.max_outstanding_parameters;
  options.max_import_valid_days = config.import.max_valid_days;
  if (!config.testing_crash_point.empty()) {
    KMS_LOG(WARNING) << "TEST SETTING testing.crash_point='" << config.testing_crash_point
                     << "': kmsd will kill itself there. Never use this in production.";
    options.crash_hook = [point = config.testing_crash_point](absl::string_view at) {
      if (at != point) return;
      KMS_LOG(WARNING) << "crash point " << at << " reached: SIGKILL";
      ::raise(SIGKILL);
    };
  }
  service::KeyService key_service(recorded_hsm, *store, clock, options);
  audit::RequestScope startup_scope("kmsd:start-up");
  KMS_RETURN_IF_ERROR(key_service.Recover());
  // Keys that fell due while kmsd was down rotate now, once each; a failure
  // here is retried by the scheduler rather than stopping start-up.
  if (absl::StatusOr<int> rotated = key_service.RotateDueKeys(); !rotated.ok()) {
    KMS_LOG(ERROR) << "start-up rotation check failed, will retry: " << rotated.status();
  } else if (*rotated > 0) {
    KMS_LOG(INFO) << "start-up: rotated " << *rotated << " key(s) that fell due while down";
  }

  // ---- transport and principals
  KMS_ASSIGN_OR_RETURN(Transport transport, MakeTransport(config, data_dir));
  KMS_LOG(INFO) << "access: administrators [" << absl::StrJoin(config.access.administrators, ", ")
                << "], auditors [" << absl::StrJoin(config.access.auditors, ", ") << "]";

  // ---- access control and the audit trail of every call
  service::AccessControl access(
      service::Roles{config.access.administrators, config.access.auditors});
  service::AuthorizedService authorized(key_service, *store, access, clock);
  service::AuditService audit_service(key_service, *audit_log, access,
                                      {audit_public_key, audit_fingerprint});
  server::CallAuditor call_auditor(*audit_log, context_hasher);
  server::InFlightLimit in_flight(config.limits.max_in_flight_calls);
  const server::CallGate gate{transport.identity, call_auditor, in_flight};

  // ---- gRPC
  server::KmsGrpcService grpc_service(authorized, gate);
  server::AuditGrpcService audit_grpc_service(audit_service, gate);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, transport.credentials, &port);
  builder.RegisterService(&grpc_service);
  builder.RegisterService(&audit_grpc_service);
  builder.SetMaxReceiveMessageSize(config.limits.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, config.limits.max_concurrent_rpcs);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  // A unix socket has no port; gRPC reports 1 for it.
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen,
                                               " (address in use or not local?)"));
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  PeriodicTask deletion_sweep(config.deletion_check_interval, [&key_service] {
    audit::RequestScope scope("kmsd:deletion-sweep");
    absl::StatusOr<int> erased = key_service.DeleteDueKeys();
    if (!erased.ok()) KMS_LOG(ERROR) << "deletion sweep failed, will retry: " << erased.status();
  });
  PeriodicTask rotation_scheduler(config.rotation.check_interval, [&key_service] {
    audit::RequestScope scope("kmsd:rotation-scheduler");
    absl::StatusOr<int> rotated = key_service.RotateDueKeys();
    if (!rotated.ok()) KMS_LOG(ERROR) << "rotation check failed, will retry: " << rotated.status();
  });
  PeriodicTask import_expiry(config.import.check_interval, [&key_service] {
    audit::RequestScope scope("kmsd:import-expiry");
    absl::StatusOr<int> expired = key_service.ExpireImports();
    if (!expired.ok()) KMS_LOG(ERROR) << "import expiry sweep failed, will retry: " << expired.status();
  });
  // While the audit log cannot be written kmsd answers no call, so the
  // health service says NOT_SERVING and load balancers route around it.
  bool audit_writable = true;  // only the task's thread touches it
  PeriodicTask audit_health(absl::Seconds(1), [&server, &audit_log, &audit_writable] {
    const absl::Status healthy = audit_log->Healthy();
    if (healthy.ok() == audit_writable) return;
    audit_writable = healthy.ok();
    server->GetHealthCheckService()->SetServingStatus(audit_writable);
    if (audit_writable) {
      KMS_LOG(INFO) << "audit log writable again; health SERVING";
    } else {
      KMS_LOG(ERROR) << "audit log cannot be written; health NOT_SERVING until it can: "
                     << healthy;
    }
  });
  // Shed calls are not audited (they touch nothing); the log says how many.
  PeriodicTask shed_report(absl::Seconds(1), [&in_flight] {
    if (const uint64_t shed = in_flight.TakeShedCount(); shed > 0) {
      KMS_LOG(WARNING) << "shed " << shed << " calls in the last second: "
                       << in_flight.max() << " in flight (limits.max_in_flight_calls)";
    }
  });
  if (!port_file.empty()) KMS_RETURN_IF_ERROR(WritePortFile(port_file, port));
  KMS_LOG(INFO) << "kmsd serving on port " << port << " (listen " << config.listen << ")";

  // ---- SIGHUP reloads the certificates; SIGTERM/SIGINT drain and stop
  int signal_number = 0;
  while (true) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) break;
    if (transport.tls == nullptr) {
      KMS_LOG(INFO) << "SIGHUP: plaintext mode, no certificates to reload";
      continue;
    }
    if (absl::Status reloaded = transport.tls->Reload(); !reloaded.ok()) {
      KMS_LOG(ERROR) << "SIGHUP: TLS certificates NOT reloaded, the previous ones stay in "
                        "service: "
                     << reloaded;
    } else {
      KMS_LOG(INFO) << "SIGHUP: TLS certificates reloaded from "
                    << transport.tls->files().cert_file << ", "
                    << transport.tls->files().key_file << ", "
                    << transport.tls->files().client_ca_file << "; in service within 1 s";
    }
  }
  KMS_LOG(INFO) << "received " << strsignal(signal_number) << "; shutting down";
  server->GetHealthCheckService()->SetServingStatus(false);
  // Stops accepting at once; in-flight calls get the grace period to finish.
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::microseconds(absl::ToInt64Microseconds(config.shutdown_grace)));
  server->Wait();
  KMS_LOG(INFO) << "gRPC server drained";
  // Destruction order (reverse of construction) closes the sweeper, the
  // service, the database and finally the HSM session pool and module.
  KMS_LOG(INFO) << "kmsd stopped";
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles
  // (its graph bookkeeping was about 2% of kmsd's CPU under load). Debug and
  // sanitizer builds, where the tests run, keep the check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  CLI::App app{"kmsd: on-premises key management daemon (AWS KMS API over gRPC, keys in a "
               "PKCS#11 HSM)"};
  std::string config_path, data_dir, listen, port_file, log_level;
  app.add_option("--config", config_path, "YAML config file (see config/kmsd.example.yaml)");
  app.add_option("--data-dir", data_dir,
                 "data directory; with no hsm.module configured, kmsd keeps an embedded SoftHSM "
                 "token, its PINs and the SQLite database here, created on first start");
  app.add_option("--listen", listen, "HOST:PORT to serve gRPC on (default 127.0.0.1:7700)");
  app.add_option("--port-file", port_file,
                 "once serving, write the bound port to this file (useful with port 0)");
  app.add_option("--log-level", log_level, "debug, info, warning or error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  server::Config config;
  if (!config_path.empty()) {
    absl::StatusOr<server::Config> loaded = server::LoadConfigFile(config_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "kmsd: config error: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    config = *std::move(loaded);
  }
  if (!data_dir.empty()) config.data_dir = data_dir;
  if (!listen.empty()) config.listen = listen;
  if (!log_level.empty()) config.log_level = log_level;
  if (absl::Status s = server::ValidateConfig(config); !s.ok()) {
    std::fprintf(stderr, "kmsd: config error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  SetMinLogLevel(ParseLogLevel(config.log_level));

  // Block the stop and reload signals in every thread (threads inherit the
  // mask), so only the sigwait in Serve sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  server::RouteGrpcLogToKmsLog();

  absl::Status status = Serve(std::move(config), port_file, signals);
  if (!status.ok()) {
    KMS_LOG(ERROR) << "kmsd failed: " << status;
    std::fprintf(stderr, "kmsd: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace kms

int main(int argc, char** argv) { return kms::Main(argc, argv); }
