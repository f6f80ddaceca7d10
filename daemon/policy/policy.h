// Key policies: the AWS-KMS-style JSON policy language, parsed and evaluated.
//
// A `Policy` is an immutable, validated key policy document (one per key).
// `Policy::Parse` checks a document strictly and returns a Policy that keeps
// the exact text it was given (returned unchanged by GetKeyPolicy) plus a
// canonical serialisation; `Policy::Evaluate` decides one request. This
// library knows nothing of keys, gRPC or storage: the service asks it.
//
// Thread-safety: a Policy is immutable after Parse; concurrent Evaluate calls
// on one Policy are safe. Free functions are pure.
//
// ---- Document grammar (everything else is an error) -------------------------
//
//   {
//     "Version": "2012-10-17",            optional; if present, exactly this
//     "Statement": [ <statement>, ... ]   required; 1..100 statements; a single
//   }                                     statement object is also accepted
//
//   <statement> = {
//     "Sid": "...",        optional; [A-Za-z0-9]{0,128}; unique among the
//                          non-empty Sids of the document (an empty Sid is
//                          treated as absent)
//     "Effect": "Allow" | "Deny",                       required
//     "Principal": <pattern> | [<pattern>, ...],        required, non-empty
//     "Action": <action> | [<action>, ...],             required, non-empty
//     "Condition": { <operator>: { <condition key>: <values> } }   optional
//   }
//
// No other fields, at either level. Objects (e.g. AWS's {"AWS": ...}
// principal form) are rejected where strings are expected. Duplicate keys in
// any JSON object are rejected. The document must be valid UTF-8 and at most
// kMaxPolicyBytes bytes.
//
// Principals. A principal pattern is a non-empty string of at most
// kMaxPrincipalLength bytes, either exact ("spiffe://prod/billing") or a
// prefix ending in a single trailing '*' ("svc-batch-*"); '*' anywhere else is
// an error. "*" alone matches every principal except the empty one: a
// Request with an empty principal (unauthenticated) matches no statement. A prefix pattern "svc-*"
// matches every principal that starts with "svc-", INCLUDING "svc-" itself,
// and does not match "svc". Matching is byte-wise and case-sensitive.
//
// Actions. Each action is "kms:<Name>" from KnownActions(), or a pattern with
// one trailing '*' ("kms:GenerateDataKey*", "kms:*", "*") that must match at
// least one known action. Matching is case-sensitive (unlike AWS, which folds
// case): "kms:decrypt" is an unknown action. A request whose action is not a
// known action never matches any statement (implicit deny).
//
// ReEncrypt. AWS authorises a ReEncrypt call as kms:ReEncryptFrom on the
// source key and kms:ReEncryptTo on the destination key; the service must
// build two Requests with those actions. Both are in KnownActions(), and
// "kms:ReEncrypt*" matches both. There is no "kms:ReEncrypt" action (as in
// AWS): a policy naming it is malformed, and the message says what to write.
//
// Conditions. All condition entries of a statement must hold (AND); the
// values listed for one condition key are alternatives (OR). The operator
// object and each operator's key object must be non-empty. Values are a
// string or a non-empty array of strings. Condition keys (case-sensitive):
//
//   kms:EncryptionContext:<k>   single-valued: the request context's value for
//                               key <k> (<k> non-empty); absent if <k> is not
//                               in the context.
//   kms:EncryptionContextKeys   multi-valued: the set of context keys (empty
//                               for an empty or missing context).
//
// Operators, following AWS IAM semantics:
//
//   StringEquals      single-valued keys only. True iff the value is present
//                     and equals one of the listed values. Absent -> false.
//   StringNotEquals   single-valued keys only. Exactly NOT StringEquals: true
//                     iff the value is absent or differs from every listed
//                     value. Absent -> TRUE (as in AWS).
//   StringLike        single-valued keys only. Like StringEquals, with '*'
//                     (any run of characters, possibly empty) and '?'
//                     (exactly one UTF-8 character) wildcards in the listed
//                     values. Absent -> false.
//   ForAllValues:StringEquals   multi-valued key only. True iff every context
//                     key is one of the listed values. An empty context ->
//                     TRUE (vacuous, as in AWS): combine with
//                     Null "false" to require a non-empty context.
//   ForAnyValue:StringEquals    multi-valued key only. True iff at least one
//                     context key is one of the listed values. Empty -> false.
//   Null              either key; values "true" or "false". "true" holds iff
//                     the key is absent (for kms:EncryptionContextKeys: the
//                     context is empty); "false" iff it is present.
//
// Using a single-valued operator with kms:EncryptionContextKeys, or a set
// operator with kms:EncryptionContext:<k>, is an error (AWS accepts both with
// confusing results). Context keys and values compare case-sensitively.
//
// ---- Evaluation ---------------------------------------------------------------
//
// A statement matches a request when its principal, its action and all its
// conditions match. Any matching Deny -> kExplicitDeny, whatever the statement
// order; else any matching Allow -> kAllow; else kImplicitDeny.
#ifndef KMS_DAEMON_POLICY_POLICY_H_
#define KMS_DAEMON_POLICY_POLICY_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kms::policy {

inline constexpr absl::string_view kPolicyVersion = "2012-10-17";
inline constexpr std::size_t kMaxPolicyBytes = 32768;
inline constexpr std::size_t kMaxStatements = 100;
inline constexpr std::size_t kMaxSidLength = 128;
inline constexpr std::size_t kMaxPrincipalLength = 256;

// The AWS exception name for a bad policy document.
inline constexpr absl::string_view kMalformedPolicyDocument = "MalformedPolicyDocumentException";

// kInvalidArgument carrying the MalformedPolicyDocumentException name.
absl::Status MalformedPolicyDocumentError(absl::string_view message);

// Every action a policy may name: "kms:" + each RPC of
// kms.v1.KeyManagementService except ReEncrypt, plus kms:PutKeyPolicy, kms:GetKeyPolicy,
// kms:CreateGrant, kms:ListGrants, kms:RetireGrant, kms:RevokeGrant,
// kms:ReEncryptFrom and kms:ReEncryptTo. Sorted, no duplicates.
const std::vector<std::string>& KnownActions();
bool IsKnownAction(absl::string_view action);

// One authorisation question. A view: `encryption_context` is borrowed and
// must outlive the call; nullptr means no context (same as an empty one).
struct Request {
  std::string principal;  // the authenticated caller, e.g. "spiffe://prod/billing"
  std::string action;     // e.g. "kms:Decrypt"
  const std::map<std::string, std::string>* encryption_context = nullptr;
};

struct Decision {
  enum Effect { kAllow, kExplicitDeny, kImplicitDeny };
  Effect effect = kImplicitDeny;
  // For the server log, never for callers: names the deciding statement
  // ("statement 'Sid'" or "Statement[2]") or says that none matched.
  std::string reason;
};

// Principal and action pattern match: "abc*" matches every string starting
// with "abc" ("abc" included); any other pattern matches itself only. Also
// used for the configured roles (access.administrators, access.auditors).
bool PatternMatches(absl::string_view pattern, absl::string_view value);

// Glob match used by StringLike: '*' matches any run (possibly empty), '?'
// exactly one UTF-8 character; everything else literally. Exposed for tests.
bool StringLikeMatch(absl::string_view pattern, absl::string_view value);

class Policy {
 public:
  // Parses and validates `document`.
  // Errors: kInvalidArgument (MalformedPolicyDocumentException) naming the
  // JSON path and the rule, e.g.
  //   "Statement[1].Action[0]: unknown action 'kms:Encrypt2'".
  static absl::StatusOr<Policy> Parse(absl::string_view document);

  // The document exactly as given to Parse (what GetKeyPolicy returns).
  const std::string& text() const;
  // A canonical form: compact JSON, object keys sorted, no insignificant
  // whitespace. Parsing it yields a Policy with the same canonical text and
  // the same decisions.
  const std::string& canonical_text() const;
  std::size_t statement_count() const;

  Decision Evaluate(const Request& request) const;

 private:
  struct Parsed;
  explicit Policy(std::shared_ptr<const Parsed> parsed);
  std::shared_ptr<const Parsed> parsed_;  // shared: copies are cheap, immutable
};

}  // namespace kms::policy

#endif  // KMS_DAEMON_POLICY_POLICY_H_
