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
  return absl::OkStatus();
}

bool IsLoopbackListen(const std::string& listen) {
  const std::string host = listen.substr(0, listen.rfind(':'));
  return host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

}  // namespace kms::server
