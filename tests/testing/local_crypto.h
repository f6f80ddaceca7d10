// Local OpenSSL for tests: what an operator does on the key-generation
// machine (wrap material for import, as AWS KMS documents each algorithm),
// and what an auditor does to check kmsd's output without kmsd (AES-GCM
// decryption of a blob with known material). Written from the formats'
// specifications, independently of the code under test (client/ has its own
// wrapping for kmsctl), so each checks the other.
//
// Failures are reported as gtest failures (ADD_FAILURE) and an empty result.
#ifndef KMS_TESTS_TESTING_LOCAL_CRYPTO_H_
#define KMS_TESTS_TESTING_LOCAL_CRYPTO_H_

#include <openssl/evp.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "hsm/hsm.h"

namespace kms::testing {

using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// A DER SubjectPublicKeyInfo as an OpenSSL key; null unless the whole input
// is one.
Pkey ParsePublicKey(absl::string_view der);

bool IsRsaAesKeyWrap(hsm::WrappingAlgorithm algorithm);

// `material` (any length) wrapped for import under the public key `der`.
std::string WrapLocally(hsm::WrappingAlgorithm algorithm, absl::string_view der,
                        absl::string_view material);

// AES-256-GCM decryption of `ciphertext` (with its 16-byte tag); nullopt if
// it does not authenticate.
std::optional<std::string> DecryptGcmLocally(absl::string_view key, absl::string_view iv,
                                             absl::string_view ciphertext,
                                             absl::string_view aad);

// `size` bytes the test knows, varying with `seed`. Test material, not a
// secret, and never weak.
std::string KnownMaterial(size_t size = hsm::kAesKeySize, char seed = 0x11);

// hsm::LocalKeyCheckValue of `material`, raw.
std::string Kcv(absl::string_view material);

}  // namespace kms::testing

#endif  // KMS_TESTS_TESTING_LOCAL_CRYPTO_H_
