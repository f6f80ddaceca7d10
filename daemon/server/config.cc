#include "daemon/server/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "daemon/common/status_macros.h"

namespace kms::server {
namespace {

absl::Status Bad(absl::string_view key, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", problem));
}

absl::StatusOr<std::string> AsString(const std::string& key, const YAML::Node& node) {
  if (!node.IsScalar()) return Bad(key, "must be a string");
  return node.Scalar();
}

absl::StatusOr<long long> AsInt(const std::string& key, const YAML::Node& node, long long lo,
                                long long hi) {
  long long value = 0;
  if (!node.IsScalar() || !YAML::convert<long long>::decode(node, value)) {
    return Bad(key, absl::StrCat("must be an integer ", lo, "..", hi, ", got '",
                                 node.IsScalar() ? node.Scalar() : "(not a scalar)", "'"));
  }
  if (value < lo || value > hi) {
    return Bad(key, absl::StrCat("must be ", lo, "..", hi, ", got ", value));
  }
  return value;
}

absl::StatusOr<bool> AsBool(const std::string& key, const YAML::Node& node) {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    return Bad(key, absl::StrCat("must be true or false, got '",
                                 node.IsScalar() ? node.Scalar() : "(not a scalar)", "'"));
  }
  return value;
}

absl::StatusOr<std::vector<std::string>> AsStringList(const std::string& key,
                                                      const YAML::Node& node) {
  if (!node.IsSequence()) return Bad(key, "must be a list of strings, e.g. [\"admin\"]");
  std::vector<std::string> out;
  for (const YAML::Node& item : node) {
    if (!item.IsScalar()) return Bad(key, "must be a list of strings, e.g. [\"admin\"]");
    out.push_back(item.Scalar());
  }
  return out;
}

// A principal pattern: exact, or a prefix ending in one '*'.
absl::Status CheckPattern(const std::string& key, const std::string& pattern) {
  if (pattern.empty()) return Bad(key, "a principal pattern must not be empty");
  if (pattern.size() > 256) {
    return Bad(key, absl::StrCat("a principal pattern must be at most 256 bytes, got ",
                                 pattern.size()));
  }
  const size_t star = pattern.find('*');
  if (star != std::string::npos && star != pattern.size() - 1) {
    return Bad(key, absl::StrCat("'*' may only end a principal pattern, got '", pattern, "'"));
  }
  return absl::OkStatus();
}

// A setter for an integer field of Config::rotation with its allowed range.
template <typename T>
std::function<absl::Status(const std::string&, const YAML::Node&, Config&)> IntKey(
    T Config::Rotation::*field, long long lo, long long hi) {
  return [field, lo, hi](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
    KMS_ASSIGN_OR_RETURN(long long value, AsInt(key, n, lo, hi));
    c.rotation.*field = static_cast<T>(value);
    return absl::OkStatus();
  };
}

// One entry per accepted key, dotted for nested maps. Unknown keys are errors,
// so a typo ("hsm.sesions") is caught instead of silently ignored.
const std::map<std::string, std::function<absl::Status(const std::string&, const YAML::Node&,
                                                       Config&)>>&
Keys() {
  using F = std::function<absl::Status(const std::string&, const YAML::Node&, Config&)>;
  auto str = [](std::string* (*field)(Config&)) -> F {
    return [field](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
      KMS_ASSIGN_OR_RETURN(*field(c), AsString(key, n));
      return absl::OkStatus();
    };
  };
  static const auto* keys = new std::map<std::string, F>{
      {"listen", str([](Config& c) { return &c.listen; })},
      {"data_dir", str([](Config& c) { return &c.data_dir; })},
      {"database", str([](Config& c) { return &c.database; })},
      {"resource_name_prefix", str([](Config& c) { return &c.resource_name_prefix; })},
      {"log_level", str([](Config& c) { return &c.log_level; })},
      {"hsm.module", str([](Config& c) { return &c.hsm.module; })},
      {"hsm.token_label", str([](Config& c) { return &c.hsm.token_label; })},
      {"hsm.pin_file", str([](Config& c) { return &c.hsm.pin_file; })},
      {"hsm.pin_env", str([](Config& c) { return &c.hsm.pin_env; })},
      {"hsm.sessions",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.hsm.sessions, AsInt(key, n, 1, 64));
         return absl::OkStatus();
       }},
      {"limits.max_receive_message_bytes",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.limits.max_receive_message_bytes,
                              AsInt(key, n, 4096, 64 << 20));
         return absl::OkStatus();
       }},
      {"limits.max_concurrent_rpcs",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.limits.max_concurrent_rpcs, AsInt(key, n, 1, 100000));
         return absl::OkStatus();
       }},
      {"limits.max_in_flight_calls",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.limits.max_in_flight_calls, AsInt(key, n, 1, 1000000));
         return absl::OkStatus();
       }},
      {"deletion.check_interval_seconds",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(long long s, AsInt(key, n, 1, 86400));
         c.deletion_check_interval = absl::Seconds(s);
         return absl::OkStatus();
       }},
      {"rotation.min_period_days", IntKey(&Config::Rotation::min_period_days, 1, 36500)},
      {"rotation.max_period_days", IntKey(&Config::Rotation::max_period_days, 1, 36500)},
      {"rotation.default_period_days", IntKey(&Config::Rotation::default_period_days, 1, 36500)},
      {"rotation.on_demand_limit", IntKey(&Config::Rotation::on_demand_limit, 0, 100000)},
      {"rotation.usage_threshold",
       IntKey(&Config::Rotation::usage_threshold, 1, 1LL << 32)},
      {"rotation.usage_hard_limit",
       IntKey(&Config::Rotation::usage_hard_limit, 1, 1LL << 32)},
      {"rotation.usage_reservation_block",
       IntKey(&Config::Rotation::usage_reservation_block, 1, 1000000)},
      {"rotation.compliance_max_age_days",
       IntKey(&Config::Rotation::compliance_max_age_days, 1, 36500)},
      {"rotation.check_interval_seconds",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(long long s, AsInt(key, n, 1, 86400));
         c.rotation.check_interval = absl::Seconds(s);
         return absl::OkStatus();
       }},
      {"import.parameters_valid_hours",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(long long h, AsInt(key, n, 1, 720));
         c.import.parameters_lifetime = absl::Hours(h);
         return absl::OkStatus();
       }},
      {"import.max_outstanding_parameters",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.import.max_outstanding_parameters, AsInt(key, n, 1, 1000));
         return absl::OkStatus();
       }},
      {"import.max_valid_days",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.import.max_valid_days, AsInt(key, n, 1, 365));
         return absl::OkStatus();
       }},
      {"import.check_interval_seconds",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(long long s, AsInt(key, n, 1, 86400));
         c.import.check_interval = absl::Seconds(s);
         return absl::OkStatus();
       }},
      {"tls.cert_file", str([](Config& c) { return &c.tls.cert_file; })},
      {"tls.key_file", str([](Config& c) { return &c.tls.key_file; })},
      {"tls.client_ca_file", str([](Config& c) { return &c.tls.client_ca_file; })},
      {"plaintext.enabled",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.plaintext.enabled, AsBool(key, n));
         return absl::OkStatus();
       }},
      {"plaintext.principal", str([](Config& c) { return &c.plaintext.principal; })},
      {"access.administrators",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.access.administrators, AsStringList(key, n));
         return absl::OkStatus();
       }},
      {"access.auditors",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.access.auditors, AsStringList(key, n));
         return absl::OkStatus();
       }},
      {"audit.path", str([](Config& c) { return &c.audit.path; })},
      {"audit.checkpoint_every_records",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.audit.checkpoint_every_records, AsInt(key, n, 1, 1000000));
         return absl::OkStatus();
       }},
      {"audit.checkpoint_interval_seconds",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(long long s, AsInt(key, n, 1, 86400));
         c.audit.checkpoint_interval = absl::Seconds(s);
         return absl::OkStatus();
       }},
      {"audit.preallocate_kib",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(c.audit.preallocate_kib, AsInt(key, n, 0, 1048576));
         return absl::OkStatus();
       }},
      {"testing.crash_point", str([](Config& c) { return &c.testing_crash_point; })},
      {"shutdown_grace_seconds",
       [](const std::string& key, const YAML::Node& n, Config& c) -> absl::Status {
         KMS_ASSIGN_OR_RETURN(long long s, AsInt(key, n, 0, 600));
         c.shutdown_grace = absl::Seconds(s);
         return absl::OkStatus();
       }},
  };
  return *keys;
}

absl::Status Apply(const std::string& prefix, const YAML::Node& map, Config& config) {
  for (const auto& entry : map) {
    if (!entry.first.IsScalar()) return Bad(prefix.empty() ? "(top level)" : prefix, "keys must be strings");
    const std::string key =
        prefix.empty() ? entry.first.Scalar() : absl::StrCat(prefix, ".", entry.first.Scalar());
    if (entry.second.IsMap()) {
      KMS_RETURN_IF_ERROR(Apply(key, entry.second, config));
      continue;
    }
    auto it = Keys().find(key);
    if (it == Keys().end()) return Bad(key, "unknown key (see config/kmsd.example.yaml)");
    if (entry.second.IsNull()) continue;  // "key:" with no value keeps the default
    KMS_RETURN_IF_ERROR(it->second(key, entry.second, config));
  }
  return absl::OkStatus();
}

// The transport rules: mTLS anywhere, plaintext only locally and only when
// asked for.
absl::Status ValidateTransport(const Config& config) {
  const Config::Tls& tls = config.tls;
  const int tls_files =
      !tls.cert_file.empty() + !tls.key_file.empty() + !tls.client_ca_file.empty();
  if (tls_files != 0 && tls_files != 3) {
    const char* missing = tls.cert_file.empty()  ? "tls.cert_file"
                          : tls.key_file.empty() ? "tls.key_file"
                                                 : "tls.client_ca_file";
    return Bad(missing, "set all of tls.cert_file, tls.key_file and tls.client_ca_file, or none");
  }
  if (config.plaintext.enabled) {
    if (config.plaintext.principal.empty()) {
      return Bad("plaintext.principal",
                 "required with plaintext.enabled: every plaintext caller acts as it");
    }
    if (tls_files != 0) {
      return Bad("plaintext.enabled", "plaintext and tls exclude each other; remove one");
    }
    if (!IsLocalListen(config.listen)) {
      return Bad("plaintext.enabled",
                 absl::StrCat("only on a loopback address or a unix: socket, but listen is '",
                              config.listen, "'"));
    }
    return absl::OkStatus();
  }
  if (!config.plaintext.principal.empty()) {
    return Bad("plaintext.principal", "only used with plaintext.enabled: true");
  }
  if (tls_files == 3) return absl::OkStatus();
  if (!IsLocalListen(config.listen)) {
    return Bad("listen", absl::StrCat("'", config.listen,
                                      "' is not loopback: it needs tls.cert_file, tls.key_file "
                                      "and tls.client_ca_file (mTLS)"));
  }
  if (!config.hsm.module.empty()) {
    return Bad("tls", "required with hsm.module: set tls.cert_file, tls.key_file and "
                      "tls.client_ca_file, or plaintext.enabled (development only)");
  }
  return absl::OkStatus();  // embedded mode: the development PKI (dev_pki.h)
}

}  // namespace

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports parse errors by exception; this is the edge where they
    // become a Status.
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": line ", e.mark.line + 1, ": ", e.msg));
  }
  Config config;
  if (root.IsNull()) return config;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": must be a map of keys to values"));
  }
  absl::Status s = Apply("", root, config);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  return config;
}

absl::Status ValidateConfig(const Config& config) {
  if (config.listen.empty() || config.listen.rfind(':') == std::string::npos ||
      config.listen.back() == ':') {
    return Bad("listen", absl::StrCat("must be HOST:PORT, got '", config.listen, "'"));
  }
  if (config.hsm.module.empty()) {
    if (config.data_dir.empty()) {
      return Bad("data_dir", "required unless hsm.module is set (use --data-dir DIR)");
    }
    if (!config.hsm.pin_file.empty() || !config.hsm.pin_env.empty()) {
      return Bad("hsm.pin_file",
                 "only used with hsm.module; the embedded token's PIN is <data_dir>/user.pin");
    }
  } else {
    if (config.hsm.pin_file.empty() == config.hsm.pin_env.empty()) {
      return Bad("hsm.pin_file", "set exactly one of hsm.pin_file and hsm.pin_env with hsm.module");
    }
    if (config.database.empty() && config.data_dir.empty()) {
      return Bad("database", "required with hsm.module unless data_dir is set");
    }
  }
  if (config.hsm.token_label.empty() || config.hsm.token_label.size() > 32) {
    return Bad("hsm.token_label",
               absl::StrCat("must be 1..32 characters, got '", config.hsm.token_label, "'"));
  }
  if (config.log_level != "debug" && config.log_level != "info" &&
      config.log_level != "warning" && config.log_level != "error") {
    return Bad("log_level", absl::StrCat("must be debug, info, warning or error, got '",
                                         config.log_level, "'"));
  }
  const Config::Rotation& r = config.rotation;
  if (r.min_period_days > r.max_period_days) {
    return Bad("rotation.min_period_days",
               absl::StrCat("must not exceed rotation.max_period_days (", r.max_period_days,
                            "), got ", r.min_period_days));
  }
  if (r.default_period_days < r.min_period_days || r.default_period_days > r.max_period_days) {
    return Bad("rotation.default_period_days",
               absl::StrCat("must be within rotation.min_period_days..max_period_days (",
                            r.min_period_days, "..", r.max_period_days, "), got ",
                            r.default_period_days));
  }
  if (r.usage_threshold > r.usage_hard_limit) {
    return Bad("rotation.usage_threshold",
               absl::StrCat("must not exceed rotation.usage_hard_limit (", r.usage_hard_limit,
                            "), got ", r.usage_threshold));
  }
  if (config.resource_name_prefix.rfind("arn:", 0) != 0) {
    return Bad("resource_name_prefix",
               absl::StrCat("must start with 'arn:', got '", config.resource_name_prefix, "'"));
  }
  KMS_RETURN_IF_ERROR(ValidateTransport(config));
  for (const std::string& p : config.access.administrators) {
    KMS_RETURN_IF_ERROR(CheckPattern("access.administrators", p));
  }
  for (const std::string& p : config.access.auditors) {
    KMS_RETURN_IF_ERROR(CheckPattern("access.auditors", p));
  }
  if (config.audit.checkpoint_every_records < 1 ||
      config.audit.checkpoint_every_records > 1000000) {
    return Bad("audit.checkpoint_every_records",
               absl::StrCat("must be 1..1000000, got ", config.audit.checkpoint_every_records));
  }
  if (config.audit.checkpoint_interval < absl::Seconds(1) ||
      config.audit.checkpoint_interval > absl::Hours(24)) {
    return Bad("audit.checkpoint_interval_seconds",
               absl::StrCat("must be 1..86400, got ",
                            absl::ToInt64Seconds(config.audit.checkpoint_interval)));
  }
  return absl::OkStatus();
}

std::string StateDirectory(const std::string& data_dir, const std::string& database) {
  if (!data_dir.empty()) return data_dir;
  const size_t slash = database.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : database.substr(0, slash);
}

std::string AuditLogPath(const Config& config, const std::string& data_dir,
                         const std::string& database) {
  if (!config.audit.path.empty()) return config.audit.path;
  const std::string dir = StateDirectory(data_dir, database);
  return dir == "/" ? "/audit.log" : dir + "/audit.log";
}

bool HasTlsFiles(const Config& config) {
  return !config.tls.cert_file.empty() && !config.tls.key_file.empty() &&
         !config.tls.client_ca_file.empty();
}

bool IsLoopbackListen(const std::string& listen) {
  if (IsUnixListen(listen)) return false;
  const std::string host = listen.substr(0, listen.rfind(':'));
  return host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

bool IsUnixListen(const std::string& listen) {
  return (listen.rfind("unix:", 0) == 0 && listen.size() > 5) ||
         (listen.rfind("unix-abstract:", 0) == 0 && listen.size() > 14);
}

bool IsLocalListen(const std::string& listen) {
  return IsUnixListen(listen) || IsLoopbackListen(listen);
}

}  // namespace kms::server
