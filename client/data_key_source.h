// DataKeySource: where the envelope helpers get and unwrap data keys.
//
// KmsClient (client/kms_client.h) implements it over gRPC; envelope tests use
// an in-memory fake. Kept apart so the file format can be tested without a
// daemon. Implementations are thread-safe.
#ifndef KMS_CLIENT_DATA_KEY_SOURCE_H_
#define KMS_CLIENT_DATA_KEY_SOURCE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/common/secret_bytes.h"

namespace kms::client {

// Encryption context: string pairs bound to a ciphertext. Ordered, so it
// prints and serialises canonically.
using EncryptionContext = std::map<std::string, std::string>;

struct DataKey {
  SecretBytes plaintext;        // the data key itself; wiped on destruction
  std::string ciphertext_blob;  // the data key wrapped under the CMK
  std::string key_arn;          // the CMK that wrapped it
};

class DataKeySource {
 public:
  virtual ~DataKeySource() = default;

  // A fresh 32-byte (AES-256) data key under the CMK `key_id`, bound to `context`.
  virtual absl::StatusOr<DataKey> GenerateDataKey(const std::string& key_id,
                                                  const EncryptionContext& context) = 0;

  // Unwraps a blob made by GenerateDataKey. The same `context` must be given.
  virtual absl::StatusOr<SecretBytes> DecryptDataKey(const std::string& ciphertext_blob,
                                                     const EncryptionContext& context) = 0;
};

}  // namespace kms::client

#endif  // KMS_CLIENT_DATA_KEY_SOURCE_H_
