// A throwaway ECDSA P-256 key made with OpenSSL, standing in for the HSM's
// audit signing key: signs checkpoints (AuditLog::Signer) and exports the
// public key an auditor would verify with. Thread-safe (signing is const).
#ifndef KMS_TESTS_DAEMON_AUDIT_TEST_SIGNING_KEY_H_
#define KMS_TESTS_DAEMON_AUDIT_TEST_SIGNING_KEY_H_

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/audit/audit_log.h"
#include "daemon/audit/audit_record.h"

namespace kms::audit {

class TestSigningKey {
 public:
  TestSigningKey() : key_(EVP_EC_gen("P-256"), EVP_PKEY_free) {}

  std::string PublicDer() const {
    unsigned char* der = nullptr;
    const int len = i2d_PUBKEY(key_.get(), &der);
    std::string out(reinterpret_cast<char*>(der), len > 0 ? len : 0);
    OPENSSL_free(der);
    return out;
  }
  std::string PublicPem() const {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PUBKEY(bio.get(), key_.get());
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, len);
  }
  std::string Fingerprint() const { return PublicKeyFingerprint(PublicDer()).value(); }

  absl::StatusOr<std::string> Sign(absl::string_view message) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                EVP_MD_CTX_free);
    size_t len = 0;
    if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
      return absl::InternalError("sign");
    }
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
      return absl::InternalError("sign");
    }
    sig.resize(len);
    return sig;
  }
  AuditLog::Signer Signer() const {
    return [this](absl::string_view message) { return Sign(message); };
  }

 private:
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_;
};

}  // namespace kms::audit

#endif  // KMS_TESTS_DAEMON_AUDIT_TEST_SIGNING_KEY_H_
