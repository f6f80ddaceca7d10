#include "daemon/service/access_control.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/common/errors.h"
#include "daemon/common/logging.h"
#include "daemon/policy/grant.h"

namespace kms::service {
namespace {

// Data-plane actions: a key's creator and the administrators do not get
// these by role (separation of duties).
constexpr absl::string_view kUsageActions[] = {
    "kms:Decrypt",         "kms:Encrypt",       "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",      "kms:ReEncryptFrom",
    "kms:ReEncryptTo"};

// Actions that name no key; a key policy naming them has no effect.
constexpr absl::string_view kAccountActions[] = {
    "kms:CreateKey", "kms:ListKeys", "kms:ListAliases", "kms:GenerateRandom",
    "kms:GetRotationComplianceReport"};

bool Contains(absl::Span<const absl::string_view> list, absl::string_view action) {
  return std::find(list.begin(), list.end(), action) != list.end();
}

bool MatchesAny(const std::vector<std::string>& patterns, absl::string_view principal) {
  if (principal.empty()) return false;
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
    return policy::PatternMatches(p, principal);
  });
}

absl::Status Denied(const Caller& caller, absl::string_view action, absl::string_view resource,
                    absl::string_view reason) {
  KMS_LOG(WARNING) << "access denied: request " << caller.request_id << " principal '"
                   << caller.principal << "' action " << action << " on " << resource << ": "
                   << reason;
  return AccessDeniedError(absl::StrCat("'", caller.principal, "' is not authorized to perform ",
                                        action, " on ", resource));
}

}  // namespace

const std::vector<std::string>& KeyManagementActions() {
  static const std::vector<std::string>* const kActions = [] {
    auto* actions = new std::vector<std::string>();
    for (const std::string& action : policy::KnownActions()) {
      if (Contains(kUsageActions, action) || Contains(kAccountActions, action)) continue;
      actions->push_back(action);
    }
    return actions;  // KnownActions is sorted, so this is too
  }();
  return *kActions;
}

bool IsKeyManagementAction(absl::string_view action) {
  const auto& actions = KeyManagementActions();
  return std::binary_search(actions.begin(), actions.end(), action,
                            [](absl::string_view a, absl::string_view b) { return a < b; });
}

std::string DefaultKeyPolicy(absl::string_view creator) {
  std::vector<std::string> quoted;
  for (const std::string& action : KeyManagementActions()) {
    quoted.push_back(absl::StrCat("\"", action, "\""));
  }
  // The creator is a principal from a certificate: escape it for JSON.
  std::string escaped;
  for (char c : creator) {
    if (c == '"' || c == '\\') {
      escaped += '\\';
      escaped += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static const char kHex[] = "0123456789abcdef";
      escaped += "\\u00";
      escaped += kHex[(c >> 4) & 0xf];
      escaped += kHex[c & 0xf];
    } else {
      escaped += c;
    }
  }
  return absl::StrCat(
      "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\n"
      "      \"Sid\": \"KeyAdministration\",\n      \"Effect\": \"Allow\",\n"
      "      \"Principal\": \"", escaped, "\",\n      \"Action\": [\n        ",
      absl::StrJoin(quoted, ",\n        "), "\n      ]\n    }\n  ]\n}\n");
}

policy::Grant ToPolicyGrant(const keystore::GrantRecord& record) {
  policy::Grant grant;
  grant.grant_id = record.grant_id;
  grant.grantee_principal = record.grantee_principal;
  grant.retiring_principal = record.retiring_principal;
  grant.operations = record.operations;
  grant.encryption_context_equals = record.encryption_context_equals;
  grant.encryption_context_subset = record.encryption_context_subset;
  return grant;
}

AccessControl::AccessControl(Roles roles) : roles_(std::move(roles)) {}

bool AccessControl::IsAdministrator(absl::string_view principal) const {
  return MatchesAny(roles_.administrators, principal);
}

bool AccessControl::IsAuditor(absl::string_view principal) const {
  return MatchesAny(roles_.auditors, principal);
}

absl::Status AccessControl::AuthorizeAccount(const Caller& caller,
                                             absl::string_view action) const {
  if (caller.principal.empty()) {
    return Denied(caller, action, "this kmsd", "unauthenticated caller");
  }
  if (action == "kms:GenerateRandom") return absl::OkStatus();
  if (action == "kms:GetRotationComplianceReport") {
    if (IsAdministrator(caller.principal) || IsAuditor(caller.principal)) {
      return absl::OkStatus();
    }
    return Denied(caller, action, "this kmsd", "neither an administrator nor an auditor");
  }
  if (action == "kms:CreateKey" || action == "kms:ListKeys" || action == "kms:ListAliases") {
    if (IsAdministrator(caller.principal)) return absl::OkStatus();
    return Denied(caller, action, "this kmsd", "not in access.administrators");
  }
  return Denied(caller, action, "this kmsd", "not an account-level action");
}

absl::Status AccessControl::AuthorizeAudit(const Caller& caller,
                                           absl::string_view operation) const {
  if (IsAuditor(caller.principal)) return absl::OkStatus();
  return Denied(caller, absl::StrCat("audit:", operation), "the audit log",
                "not in access.auditors");
}

std::shared_ptr<const policy::Policy> AccessControl::PolicyFor(const std::string& text) const {
  if (text.empty()) return nullptr;
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(text);
    if (it != cache_.end()) return it->second;
  }
  absl::StatusOr<policy::Policy> parsed = policy::Policy::Parse(text);
  std::shared_ptr<const policy::Policy> result;
  if (parsed.ok()) {
    result = std::make_shared<const policy::Policy>(*std::move(parsed));
  } else {
    // Policies are validated before they are stored; this is a bug or a
    // database edited by hand. Deny everything the policy would decide.
    KMS_LOG(ERROR) << "a stored key policy does not parse (denying what it would allow): "
                   << parsed.status();
  }
  absl::MutexLock lock(&cache_mu_);
  // Bounded: distinct policies are few; a flood of them just re-parses.
  if (cache_.size() >= 4096) cache_.clear();
  cache_.emplace(text, result);
  return result;
}

absl::Status AccessControl::AuthorizeKey(const Caller& caller, absl::string_view action,
                                         const keystore::KeyRecord& key,
                                         const std::vector<keystore::GrantRecord>& grants,
                                         const std::map<std::string, std::string>* context,
                                         absl::string_view key_arn) const {
  if (caller.principal.empty()) return Denied(caller, action, key_arn, "unauthenticated caller");
  policy::Request request;
  request.principal = caller.principal;
  request.action = std::string(action);
  request.encryption_context = context;

  std::string reason = "the key has no policy";
  if (std::shared_ptr<const policy::Policy> policy = PolicyFor(key.policy)) {
    const policy::Decision decision = policy->Evaluate(request);
    if (decision.effect == policy::Decision::kExplicitDeny) {
      return Denied(caller, action, key_arn, absl::StrCat("explicit deny: ", decision.reason));
    }
    if (decision.effect == policy::Decision::kAllow) return absl::OkStatus();
    reason = decision.reason;
  }
  if (IsKeyManagementAction(action) && IsAdministrator(caller.principal)) return absl::OkStatus();
  for (const keystore::GrantRecord& grant : grants) {
    if (policy::GrantAllows(ToPolicyGrant(grant), request)) return absl::OkStatus();
  }
  return Denied(caller, action, key_arn,
                absl::StrCat(reason, "; not allowed by role",
                             grants.empty() ? "" : " or by any of the key's grants"));
}

absl::Status AccessControl::CheckNotExplicitlyDenied(const Caller& caller,
                                                     absl::string_view action,
                                                     const keystore::KeyRecord& key,
                                                     absl::string_view key_arn) const {
  std::shared_ptr<const policy::Policy> policy = PolicyFor(key.policy);
  if (policy == nullptr) return absl::OkStatus();
  policy::Request request;
  request.principal = caller.principal;
  request.action = std::string(action);
  const policy::Decision decision = policy->Evaluate(request);
  if (decision.effect != policy::Decision::kExplicitDeny) return absl::OkStatus();
  return Denied(caller, action, key_arn, absl::StrCat("explicit deny: ", decision.reason));
}

bool AccessControl::CanStillPutKeyPolicy(const Caller& caller,
                                         const policy::Policy& policy) const {
  policy::Request request;
  request.principal = caller.principal;
  request.action = "kms:PutKeyPolicy";
  const policy::Decision decision = policy.Evaluate(request);
  if (decision.effect == policy::Decision::kExplicitDeny) return false;
  return decision.effect == policy::Decision::kAllow || IsAdministrator(caller.principal);
}

const keystore::GrantRecord* AccessControl::ParentGrantFor(
    const Caller& caller, const std::vector<keystore::GrantRecord>& grants,
    const policy::Grant& child) const {
  for (const keystore::GrantRecord& grant : grants) {
    if (grant.grantee_principal != caller.principal) continue;
    const auto& ops = grant.operations;
    if (std::find(ops.begin(), ops.end(), "CreateGrant") == ops.end()) continue;
    const bool covers = std::all_of(child.operations.begin(), child.operations.end(),
                                    [&](const std::string& op) {
                                      return std::find(ops.begin(), ops.end(), op) != ops.end();
                                    });
    if (!covers) continue;
    if (!policy::ConstraintsAtLeastAsStrict(ToPolicyGrant(grant), child)) continue;
    return &grant;
  }
  return nullptr;
}

}  // namespace kms::service
