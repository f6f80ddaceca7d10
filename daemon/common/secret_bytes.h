// SecretBytes: a move-only buffer for key bytes and other secrets.
//
// The bytes are wiped (OPENSSL_cleanse) when the buffer is destroyed, moved
// from, or assigned over. They are read through one accessor, `secret()`, so a
// reviewer can find every place that touches raw secret bytes with one search.
// SecretBytes never prints its contents (there is no operator<<), and copying
// is explicit (Copy()).
//
// Not thread-safe; like std::string, one owner at a time.
#ifndef KMS_DAEMON_COMMON_SECRET_BYTES_H_
#define KMS_DAEMON_COMMON_SECRET_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace kms {

class SecretBytes {
 public:
  SecretBytes() = default;
  // A buffer of `size` zero bytes, to be filled through mutable_data().
  explicit SecretBytes(size_t size);
  // Copies `bytes` in. The caller remains responsible for wiping its source.
  static SecretBytes CopyFrom(absl::string_view bytes);
  // Takes the contents of `*source` and wipes `*source`.
  static SecretBytes TakeFrom(std::string* source);

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  // The one accessor for the secret bytes.
  absl::string_view secret() const { return absl::string_view(bytes_.data(), bytes_.size()); }
  uint8_t* mutable_data() { return reinterpret_cast<uint8_t*>(bytes_.data()); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(bytes_.data()); }

  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  SecretBytes Copy() const { return CopyFrom(secret()); }
  // Wipes and empties the buffer.
  void Clear();
  // Shrinks to `size` bytes, wiping the tail.
  void Truncate(size_t size);

  // Constant-time comparison of contents (the lengths are not secret).
  bool Equals(const SecretBytes& other) const;

 private:
  std::string bytes_;
};

// Wipes a std::string that held secret bytes (a protobuf field, say) and
// empties it.
void WipeString(std::string* s);

}  // namespace kms

#endif  // KMS_DAEMON_COMMON_SECRET_BYTES_H_
