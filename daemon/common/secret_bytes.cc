#include "daemon/common/secret_bytes.h"

#include <openssl/crypto.h>

namespace kms {

void WipeString(std::string* s) {
  if (s->empty()) return;
  // Wipe the whole capacity: short-string and shrunk buffers keep old bytes.
  s->resize(s->capacity());
  OPENSSL_cleanse(s->data(), s->size());
  s->clear();
}

SecretBytes::SecretBytes(size_t size) : bytes_(size, '\0') {}

SecretBytes SecretBytes::CopyFrom(absl::string_view bytes) {
  SecretBytes out;
  out.bytes_.assign(bytes.data(), bytes.size());
  return out;
}

SecretBytes SecretBytes::TakeFrom(std::string* source) {
  SecretBytes out = CopyFrom(*source);
  WipeString(source);
  return out;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept {
  // Copy-then-wipe rather than std::string's move: a moved short string would
  // leave its bytes in `other`'s inline buffer.
  bytes_.assign(other.bytes_.data(), other.bytes_.size());
  other.Clear();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Clear();
    bytes_.assign(other.bytes_.data(), other.bytes_.size());
    other.Clear();
  }
  return *this;
}

SecretBytes::~SecretBytes() { Clear(); }

void SecretBytes::Clear() { WipeString(&bytes_); }

void SecretBytes::Truncate(size_t size) {
  if (size >= bytes_.size()) return;
  OPENSSL_cleanse(bytes_.data() + size, bytes_.size() - size);
  bytes_.resize(size);
}

bool SecretBytes::Equals(const SecretBytes& other) const {
  return size() == other.size() && CRYPTO_memcmp(data(), other.data(), size()) == 0;
}

}  // namespace kms
