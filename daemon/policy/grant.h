// Grants: AWS-KMS-style delegated permissions on one key, matching only.
//
// A Grant names one grantee principal, the operations it may perform on the
// key, and optionally one encryption-context constraint. This file validates
// grants and decides whether a grant covers a policy::Request; storing,
// listing, retiring and revoking grants belong to the service.
//
// Thread-safety: plain values and pure functions.
//
// Semantics (documented decisions):
// - Operations are AWS grant operation names without "kms:" ("Decrypt").
//   GrantAllows matches request.action == "kms:" + operation, exactly.
//   ReEncrypt: AWS needs ReEncryptFrom on the source key and ReEncryptTo on
//   the destination key; the service asks with actions "kms:ReEncryptFrom"
//   and "kms:ReEncryptTo" (two Requests), which grant operations
//   "ReEncryptFrom" / "ReEncryptTo" match. A request for "kms:ReEncrypt"
//   matches no grant.
// - The grantee matches the request principal exactly, byte for byte; no
//   patterns ('*' in a grantee is rejected by ValidateGrant).
// - An empty constraint map means "no constraint of that kind"; at most one
//   of the two maps may be non-empty.
// - Constraints apply only to operations that take an encryption context
//   (Encrypt, Decrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext,
//   ReEncryptFrom, ReEncryptTo). As in AWS, they are ignored for DescribeKey,
//   RetireGrant and CreateGrant; for CreateGrant the service must instead
//   check ConstraintsAtLeastAsStrict(parent grant, new grant).
//   EncryptionContextEquals: the request context (nullptr = empty) equals the
//   map exactly. EncryptionContextSubset: the request context contains every
//   pair of the map (extra pairs allowed).
// - Context keys compare case-sensitively (AWS folds the key's case in grant
//   constraints; kmsd does not, matching its case-sensitive AAD).
#ifndef KMS_DAEMON_POLICY_GRANT_H_
#define KMS_DAEMON_POLICY_GRANT_H_

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/policy/policy.h"

namespace kms::policy {

inline constexpr std::size_t kMaxGranteePrincipalLength = 256;

struct Grant {
  std::string grant_id;
  std::string grantee_principal;
  std::string retiring_principal;       // optional
  std::vector<std::string> operations;  // e.g. "Decrypt", "GenerateDataKey"
  std::map<std::string, std::string> encryption_context_equals;
  std::map<std::string, std::string> encryption_context_subset;
};

// The grant operations kmsd supports: Decrypt, Encrypt, GenerateDataKey,
// GenerateDataKeyWithoutPlaintext, ReEncryptFrom, ReEncryptTo, CreateGrant,
// RetireGrant, DescribeKey. (GenerateRandom is not key-scoped.)
const std::vector<std::string>& GrantOperations();

// True for the operations whose requests carry an encryption context, so
// that grant constraints apply to them.
bool GrantOperationUsesContext(absl::string_view operation);

// Checks a grant before it is stored.
// Errors: kInvalidArgument (ValidationException) when operations is empty,
// names an unsupported or duplicate operation, both constraint kinds are
// set, the grantee is empty, longer than kMaxGranteePrincipalLength or
// contains '*', or the retiring principal is longer than that limit.
absl::Status ValidateGrant(const Grant& grant);

// True iff `grant` allows `request` (see the semantics above). Assumes a
// grant that passed ValidateGrant.
bool GrantAllows(const Grant& grant, const Request& request);

// For CreateGrant under a grant: true iff `child`'s constraint is equally
// strict or stricter than `parent`'s. No parent constraint: anything goes.
// Parent Equals E: child must have Equals E. Parent Subset S: child Subset
// S' with S ⊆ S', or child Equals E with S ⊆ E.
bool ConstraintsAtLeastAsStrict(const Grant& parent, const Grant& child);

}  // namespace kms::policy

#endif  // KMS_DAEMON_POLICY_GRANT_H_
