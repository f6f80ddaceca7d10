#include "daemon/policy/grant.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"

namespace kms::policy {

namespace {

using Context = std::map<std::string, std::string>;

bool Includes(const Context& big, const Context& small) {
  return std::all_of(small.begin(), small.end(), [&big](const auto& kv) {
    auto it = big.find(kv.first);
    return it != big.end() && it->second == kv.second;
  });
}

}  // namespace

const std::vector<std::string>& GrantOperations() {
  static const std::vector<std::string>* const kOperations = new std::vector<std::string>{
      "Decrypt",       "Encrypt",     "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
      "ReEncryptFrom", "ReEncryptTo", "CreateGrant",     "RetireGrant",
      "DescribeKey"};
  return *kOperations;
}

bool GrantOperationUsesContext(absl::string_view operation) {
  return operation == "Encrypt" || operation == "Decrypt" || operation == "GenerateDataKey" ||
         operation == "GenerateDataKeyWithoutPlaintext" || operation == "ReEncryptFrom" ||
         operation == "ReEncryptTo";
}

absl::Status ValidateGrant(const Grant& grant) {
  if (grant.grantee_principal.empty()) {
    return ValidationError("grantee principal must not be empty");
  }
  if (grant.grantee_principal.size() > kMaxGranteePrincipalLength) {
    return ValidationError(absl::StrCat("grantee principal must be at most ",
                                        kMaxGranteePrincipalLength, " bytes, got ",
                                        grant.grantee_principal.size()));
  }
  if (grant.grantee_principal.find('*') != std::string::npos) {
    return ValidationError("grantee principal must be exact; '*' is not allowed");
  }
  if (grant.retiring_principal.size() > kMaxGranteePrincipalLength) {
    return ValidationError(absl::StrCat("retiring principal must be at most ",
                                        kMaxGranteePrincipalLength, " bytes, got ",
                                        grant.retiring_principal.size()));
  }
  if (grant.operations.empty()) return ValidationError("grant operations must not be empty");
  const auto& supported = GrantOperations();
  std::set<std::string> seen;
  for (const std::string& op : grant.operations) {
    if (std::find(supported.begin(), supported.end(), op) == supported.end()) {
      return ValidationError(absl::StrCat("unsupported grant operation '", op, "'"));
    }
    if (!seen.insert(op).second) {
      return ValidationError(absl::StrCat("duplicate grant operation '", op, "'"));
    }
  }
  if (!grant.encryption_context_equals.empty() && !grant.encryption_context_subset.empty()) {
    return ValidationError(
        "a grant may have EncryptionContextEquals or EncryptionContextSubset, not both");
  }
  return absl::OkStatus();
}

bool GrantAllows(const Grant& grant, const Request& request) {
  if (grant.grantee_principal.empty() || request.principal != grant.grantee_principal) {
    return false;
  }
  constexpr absl::string_view kPrefix = "kms:";
  if (request.action.compare(0, kPrefix.size(), kPrefix.data(), kPrefix.size()) != 0) {
    return false;
  }
  const std::string operation = request.action.substr(kPrefix.size());
  if (std::find(grant.operations.begin(), grant.operations.end(), operation) ==
      grant.operations.end()) {
    return false;
  }
  if (!GrantOperationUsesContext(operation)) return true;
  const Context empty;  // no allocation
  const Context& context =
      request.encryption_context != nullptr ? *request.encryption_context : empty;
  if (!grant.encryption_context_equals.empty() && context != grant.encryption_context_equals) {
    return false;
  }
  return Includes(context, grant.encryption_context_subset);
}

bool ConstraintsAtLeastAsStrict(const Grant& parent, const Grant& child) {
  if (!parent.encryption_context_equals.empty()) {
    return child.encryption_context_equals == parent.encryption_context_equals;
  }
  if (!parent.encryption_context_subset.empty()) {
    if (!child.encryption_context_equals.empty()) {
      return Includes(child.encryption_context_equals, parent.encryption_context_subset);
    }
    return !child.encryption_context_subset.empty() &&
           Includes(child.encryption_context_subset, parent.encryption_context_subset);
  }
  return true;
}

}  // namespace kms::policy
