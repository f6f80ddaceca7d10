// libFuzzer target for the import token parser (daemon/service/import_token.h):
// ImportKeyMaterial parses a caller's token before the HSM checks its MAC.
//
// Properties checked on every input, beyond "does not crash":
//  - a token that parses re-serialises to exactly the input bytes;
//  - parse failures are always InvalidImportTokenException.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "daemon/common/errors.h"
#include "daemon/service/import_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<kms::service::ImportToken> token = kms::service::ImportToken::Parse(input);
  if (!token.ok()) {
    if (kms::ErrorTypeOf(token.status()) != "InvalidImportTokenException") std::abort();
    return 0;
  }
  if (token->Serialize() != input) std::abort();
  if (token->Body() != input.substr(0, kms::service::kImportTokenBodySize)) std::abort();
  return 0;
}
