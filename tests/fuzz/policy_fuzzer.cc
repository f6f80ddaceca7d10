// libFuzzer target for the key policy parser (daemon/policy/policy.h):
// documents come from key administrators and are parsed strictly.
//
// Properties checked on every input, beyond "does not crash":
//  - failures are always MalformedPolicyDocumentException;
//  - a parsed policy keeps the input text, and its canonical text parses to
//    the same canonical text (a fixed point);
//  - evaluation of a fixed request does not crash and decides the same way
//    for the document and its canonical form.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "daemon/common/errors.h"
#include "daemon/policy/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<kms::policy::Policy> policy = kms::policy::Policy::Parse(input);
  if (!policy.ok()) {
    if (kms::ErrorTypeOf(policy.status()) != kms::policy::kMalformedPolicyDocument) std::abort();
    return 0;
  }
  if (policy->text() != input) std::abort();
  absl::StatusOr<kms::policy::Policy> canonical =
      kms::policy::Policy::Parse(policy->canonical_text());
  if (!canonical.ok() || canonical->canonical_text() != policy->canonical_text()) std::abort();
  const std::map<std::string, std::string> context = {{"tenant", "acme"}, {"file", "a.csv"}};
  for (const char* action : {"kms:Decrypt", "kms:ReEncryptFrom", "kms:PutKeyPolicy"}) {
    const kms::policy::Request request{"svc-batch-7", action, &context};
    if (policy->Evaluate(request).effect != canonical->Evaluate(request).effect) std::abort();
  }
  return 0;
}
