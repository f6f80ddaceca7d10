// libFuzzer target for the ciphertext-blob parser (the one parser that reads
// bytes straight from callers before any authentication).
//
// Properties checked on every input, beyond "does not crash":
//  - a blob that parses re-serialises to exactly the input bytes;
//  - parse failures are always InvalidCiphertextException.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "daemon/common/errors.h"
#include "daemon/service/ciphertext_blob.h"
#include "daemon/service/encryption_context.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<kms::service::CiphertextBlob> blob = kms::service::CiphertextBlob::Parse(input);
  if (!blob.ok()) {
    if (kms::ErrorTypeOf(blob.status()) != "InvalidCiphertextException") std::abort();
    return 0;
  }
  if (blob->Serialize() != input) std::abort();
  // The AAD is built from parsed fields; it must not depend on anything else.
  const std::string aad = kms::service::BlobAad(*blob, kms::service::CanonicalContext({}));
  const size_t header = kms::service::kBlobAadHeaderSize;
  if (absl::string_view(aad).substr(0, header) != input.substr(0, header)) std::abort();
  return 0;
}
