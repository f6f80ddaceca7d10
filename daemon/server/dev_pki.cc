#include "daemon/server/dev_pki.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"

namespace kms::server {
namespace {

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

constexpr long kDay = 24 * 60 * 60;

absl::Status OpenSslError(absl::string_view what) {
  char buf[256] = "";
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  ERR_clear_error();
  return absl::InternalError(absl::StrCat("development PKI: ", what, ": ", buf));
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// tmp + fsync + rename, so a crash leaves the old file or the whole new one.
absl::Status WriteAtomically(const std::string& path, absl::string_view contents, mode_t mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  const bool ok = ::fchmod(fd, mode) == 0 &&
                  ::write(fd, contents.data(), contents.size()) ==
                      static_cast<ssize_t>(contents.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string message = absl::StrCat("cannot write ", path, ": ", std::strerror(errno));
    ::unlink(tmp.c_str());
    return absl::InternalError(message);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InternalError(absl::StrCat("cannot read ", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(length));
}

absl::StatusOr<KeyPtr> NewKey() {
  KeyPtr key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  if (key == nullptr) return OpenSslError("generating a P-256 key");
  return key;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return OpenSslError(absl::StrCat("extension ", OBJ_nid2sn(nid)));
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return OpenSslError("adding an extension");
  return absl::OkStatus();
}

enum class Kind { kCa, kServer, kClient };

// A certificate for `key` named `cn`, signed by `issuer_key` (`issuer`
// null: self-signed).
absl::StatusOr<CertPtr> MakeCertificate(Kind kind, const std::string& cn, EVP_PKEY* key,
                                        X509* issuer, EVP_PKEY* issuer_key, long days) {
  CertPtr cert(X509_new(), &X509_free);
  if (cert == nullptr) return OpenSslError("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return OpenSslError("serial");
  serial_bytes[0] &= 0x7f;  // positive
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(
      BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr), &BN_free);
  if (serial == nullptr ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslError("serial");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(),
                       issuer == nullptr ? name : X509_get_subject_name(issuer));
  // Back-dated a little so a client with a slightly slow clock accepts it.
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * kDay);
  if (X509_set_pubkey(cert.get(), key) != 1) return OpenSslError("set public key");
  X509* signer = issuer == nullptr ? cert.get() : issuer;
  KMS_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash"));
  KMS_RETURN_IF_ERROR(
      AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
  switch (kind) {
    case Kind::kCa:
      KMS_RETURN_IF_ERROR(
          AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
      KMS_RETURN_IF_ERROR(
          AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
      break;
    case Kind::kServer:
      KMS_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_basic_constraints, "CA:FALSE"));
      KMS_RETURN_IF_ERROR(
          AddExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
      KMS_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth"));
      KMS_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_subject_alt_name,
                                       "DNS:localhost,IP:127.0.0.1,IP:::1"));
      break;
    case Kind::kClient:
      KMS_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_basic_constraints, "CA:FALSE"));
      KMS_RETURN_IF_ERROR(
          AddExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
      KMS_RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_ext_key_usage, "clientAuth"));
      break;
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) return OpenSslError("signing");
  return cert;
}

absl::Status WriteKey(const std::string& path, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("encoding a private key");
  }
  std::string pem = BioContents(bio.get());
  absl::Status s = WriteAtomically(path, pem, 0600);
  std::fill(pem.begin(), pem.end(), '\0');
  return s;
}

absl::Status WriteCert(const std::string& path, X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return OpenSslError("encoding a certificate");
  }
  return WriteAtomically(path, BioContents(bio.get()), 0644);
}

absl::StatusOr<KeyPtr> LoadKey(const std::string& path) {
  KMS_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  std::fill(pem.begin(), pem.end(), '\0');
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a PEM private key"));
  }
  return key;
}

absl::StatusOr<CertPtr> LoadCert(const std::string& path) {
  KMS_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (cert == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a PEM certificate"));
  }
  return cert;
}

// Makes `<name>.key` and `<name>.pem` unless both exist (and `force` is off).
absl::Status EnsureLeaf(const std::string& dir, const std::string& name, Kind kind,
                        const std::string& cn, X509* ca, EVP_PKEY* ca_key, bool force,
                        bool& created) {
  const std::string key_path = absl::StrCat(dir, "/", name, ".key");
  const std::string cert_path = absl::StrCat(dir, "/", name, ".pem");
  if (!force && Exists(key_path) && Exists(cert_path)) return absl::OkStatus();
  KMS_ASSIGN_OR_RETURN(KeyPtr key, NewKey());
  KMS_ASSIGN_OR_RETURN(CertPtr cert, MakeCertificate(kind, cn, key.get(), ca, ca_key, 2 * 365));
  KMS_RETURN_IF_ERROR(WriteKey(key_path, key.get()));
  KMS_RETURN_IF_ERROR(WriteCert(cert_path, cert.get()));
  created = true;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DevPki> EnsureDevPki(const std::string& data_dir) {
  DevPki pki;
  pki.dir = data_dir + "/tls";
  if (::mkdir(pki.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("cannot create directory ", pki.dir, ": ", std::strerror(errno)));
  }
  pki.ca_cert = pki.dir + "/ca.pem";
  const std::string ca_key_path = pki.dir + "/ca.key";
  pki.server_cert = pki.dir + "/server.pem";
  pki.server_key = pki.dir + "/server.key";
  pki.admin_cert = pki.dir + "/admin.pem";
  pki.admin_key = pki.dir + "/admin.key";
  pki.auditor_cert = pki.dir + "/auditor.pem";
  pki.auditor_key = pki.dir + "/auditor.key";

  KeyPtr ca_key(nullptr, &EVP_PKEY_free);
  CertPtr ca(nullptr, &X509_free);
  bool new_ca = false;
  if (Exists(ca_key_path) && Exists(pki.ca_cert)) {
    KMS_ASSIGN_OR_RETURN(ca_key, LoadKey(ca_key_path));
    KMS_ASSIGN_OR_RETURN(ca, LoadCert(pki.ca_cert));
  } else {
    KMS_ASSIGN_OR_RETURN(ca_key, NewKey());
    KMS_ASSIGN_OR_RETURN(ca, MakeCertificate(Kind::kCa, "kmsd development CA", ca_key.get(),
                                             nullptr, ca_key.get(), 10 * 365));
    KMS_RETURN_IF_ERROR(WriteKey(ca_key_path, ca_key.get()));
    KMS_RETURN_IF_ERROR(WriteCert(pki.ca_cert, ca.get()));
    new_ca = true;
    pki.created = true;
  }
  KMS_RETURN_IF_ERROR(EnsureLeaf(pki.dir, "server", Kind::kServer, "localhost", ca.get(),
                                 ca_key.get(), new_ca, pki.created));
  KMS_RETURN_IF_ERROR(EnsureLeaf(pki.dir, "admin", Kind::kClient, "admin", ca.get(),
                                 ca_key.get(), new_ca, pki.created));
  KMS_RETURN_IF_ERROR(EnsureLeaf(pki.dir, "auditor", Kind::kClient, "auditor", ca.get(),
                                 ca_key.get(), new_ca, pki.created));
  if (pki.created) {
    KMS_LOG(INFO) << "development PKI: made a CA and server, admin and auditor certificates "
                     "under "
                  << pki.dir;
  }
  return pki;
}

}  // namespace kms::server
