// AccessControl: who may do what. Pure decisions over a key's policy, its
// grants and the configured roles; no storage, no gRPC.
//
// The rules (README "Security model"):
//  - Roles come from configuration. Administrators may create and list keys
//    and aliases, and manage every key (the management actions below) unless
//    the key's policy explicitly denies them. Auditors may read the audit log
//    and the reports, nothing else.
//  - A key-scoped action is allowed when the key's policy allows it, or the
//    caller is an administrator and the action is a management action, or a
//    grant on the key allows it. An explicit Deny in the policy wins over all
//    three.
//  - Using a key (the data-plane actions) needs a policy statement or a
//    grant: administrators and the key's creator manage it but do not use it
//    (separation of duties). The default policy a key gets when CreateKey
//    names none (DefaultKeyPolicy) lets its creator manage it, no more.
//  - An empty principal (an unauthenticated call) is allowed nothing.
//
// A denial is AccessDeniedException (PERMISSION_DENIED) naming the
// principal, the action and the key; which statement decided goes to the
// log only, never to the caller.
//
// Thread-safe: parsed policies are cached under a mutex.
#ifndef KMS_DAEMON_SERVICE_ACCESS_CONTROL_H_
#define KMS_DAEMON_SERVICE_ACCESS_CONTROL_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/keystore/key_store.h"
#include "daemon/policy/grant.h"
#include "daemon/policy/policy.h"

namespace kms::service {

// Who is calling: set by the transport for every call.
struct Caller {
  std::string principal;   // from the client certificate (or dev-mode config)
  std::string request_id;  // unique per call; links its audit records
  std::string peer;        // e.g. "ipv4:127.0.0.1:53422"
};

struct Roles {
  std::vector<std::string> administrators;  // principal patterns
  std::vector<std::string> auditors;
};

// The actions key management covers ("kms:DescribeKey", "kms:PutKeyPolicy",
// ...): every key-scoped action except the data-plane ones. Sorted.
const std::vector<std::string>& KeyManagementActions();
bool IsKeyManagementAction(absl::string_view action);

// The policy a key gets when CreateKey gives none: one statement allowing
// `creator` every key management action.
std::string DefaultKeyPolicy(absl::string_view creator);

class AccessControl {
 public:
  explicit AccessControl(Roles roles);

  bool IsAdministrator(absl::string_view principal) const;
  bool IsAuditor(absl::string_view principal) const;

  // Account-level actions (no key): kms:CreateKey, kms:ListKeys and
  // kms:ListAliases for administrators; kms:GetRotationComplianceReport for
  // administrators and auditors; kms:GenerateRandom for any authenticated
  // caller. Errors: AccessDeniedException.
  absl::Status AuthorizeAccount(const Caller& caller, absl::string_view action) const;

  // The audit service (queries, export, public key, inventory): auditors
  // only. `operation` names the RPC for the message.
  absl::Status AuthorizeAudit(const Caller& caller, absl::string_view operation) const;

  // A key-scoped action on `key`, with the request's encryption context
  // (nullptr: none). `grants` are the key's grants. Errors:
  // AccessDeniedException; MalformedPolicyDocument never (a stored policy
  // that no longer parses denies everything and is logged as an error).
  absl::Status AuthorizeKey(const Caller& caller, absl::string_view action,
                            const keystore::KeyRecord& key,
                            const std::vector<keystore::GrantRecord>& grants,
                            const std::map<std::string, std::string>* context,
                            absl::string_view key_arn) const;

  // AccessDeniedException if the key's policy explicitly denies `action` to
  // the caller, else OK. For the paths that do not go through AuthorizeKey
  // (a grantee passing on its grant, a retiring principal or grantee
  // retiring one) but where a Deny must still win.
  absl::Status CheckNotExplicitlyDenied(const Caller& caller, absl::string_view action,
                                        const keystore::KeyRecord& key,
                                        absl::string_view key_arn) const;

  // The policy lockout safety check (as AWS's): true if, under `policy`, the
  // caller could still change the key's policy. Assumes a valid policy.
  bool CanStillPutKeyPolicy(const Caller& caller, const policy::Policy& policy) const;

  // CreateGrant by a grantee: the grant among `grants` that lets `caller`
  // create `child` — granted to the caller, with the CreateGrant operation,
  // every operation of `child`, and constraints `child` is at least as
  // strict as. nullptr if there is none.
  const keystore::GrantRecord* ParentGrantFor(const Caller& caller,
                                              const std::vector<keystore::GrantRecord>& grants,
                                              const policy::Grant& child) const;

 private:
  // The parsed policy for `text` (cached); nullptr for an empty text or one
  // that does not parse (logged).
  std::shared_ptr<const policy::Policy> PolicyFor(const std::string& text) const;

  const Roles roles_;
  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::shared_ptr<const policy::Policy>> cache_
      ABSL_GUARDED_BY(cache_mu_);
};

// GrantRecord -> the policy library's Grant.
policy::Grant ToPolicyGrant(const keystore::GrantRecord& record);

}  // namespace kms::service

#endif  // KMS_DAEMON_SERVICE_ACCESS_CONTROL_H_
