#include "daemon/server/tls_credentials.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <grpc/support/log.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"

namespace kms::server {
namespace {

constexpr char kCurrent[] = "current";
constexpr char kKeyName[] = "key.pem";
constexpr char kCertName[] = "cert.pem";
constexpr char kCaName[] = "ca.pem";
constexpr unsigned kRefreshSeconds = 1;

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

std::unique_ptr<BIO, decltype(&BIO_free)> MemBio(absl::string_view pem) {
  return {BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free};
}

// Every certificate in `pem`, in order.
std::vector<X509Ptr> ReadCertificates(absl::string_view pem) {
  std::vector<X509Ptr> out;
  auto bio = MemBio(pem);
  while (bio != nullptr) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    out.push_back(std::move(cert));
  }
  ERR_clear_error();  // the end of the input shows up as an error
  return out;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(what, " ", path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::Status WriteFile(const std::string& path, absl::string_view contents) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  const bool ok = ::write(fd, contents.data(), contents.size()) ==
                      static_cast<ssize_t>(contents.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTlsMaterial(absl::string_view cert_pem, absl::string_view key_pem,
                              absl::string_view ca_pem, absl::Time now) {
  std::vector<X509Ptr> chain = ReadCertificates(cert_pem);
  if (chain.empty()) {
    return absl::InvalidArgumentError("tls.cert_file: holds no PEM certificate");
  }
  auto key_bio = MemBio(key_pem);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      key_bio == nullptr ? nullptr : PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
      &EVP_PKEY_free);
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("tls.key_file: holds no PEM private key (or it is encrypted)");
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "tls.key_file: the private key does not match the certificate in tls.cert_file");
  }
  const time_t t = absl::ToTimeT(now);
  time_t at = t;
  if (X509_cmp_time(X509_get0_notBefore(chain.front().get()), &at) >= 0) {
    return absl::InvalidArgumentError("tls.cert_file: the certificate is not valid yet");
  }
  at = t;
  if (X509_cmp_time(X509_get0_notAfter(chain.front().get()), &at) <= 0) {
    return absl::InvalidArgumentError("tls.cert_file: the certificate has expired");
  }
  if (ReadCertificates(ca_pem).empty()) {
    return absl::InvalidArgumentError("tls.client_ca_file: holds no PEM certificate");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ServerTls>> ServerTls::Create(TlsFiles files,
                                                             std::string staging_dir) {
  std::unique_ptr<ServerTls> tls(new ServerTls(std::move(files), std::move(staging_dir)));
  // A fresh staging area each start: generations of an earlier run are stale.
  std::error_code error;
  std::filesystem::remove_all(tls->staging_dir_, error);
  if (::mkdir(tls->staging_dir_.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("cannot create TLS staging directory ",
                                            tls->staging_dir_, ": ", std::strerror(errno)));
  }
  {
    absl::MutexLock lock(&tls->mu_);
    KMS_RETURN_IF_ERROR(tls->Stage());
  }
  const std::string current = absl::StrCat(tls->staging_dir_, "/", kCurrent, "/");
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      current + kKeyName, current + kCertName, current + kCaName, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  options.watch_root_certs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  tls->credentials_ = grpc::experimental::TlsServerCredentials(options);
  if (tls->credentials_ == nullptr) return absl::InternalError("gRPC refused the TLS options");
  return tls;
}

absl::Status ServerTls::Reload() {
  absl::MutexLock lock(&mu_);
  return Stage();
}

absl::Status ServerTls::Stage() {
  KMS_ASSIGN_OR_RETURN(std::string cert, ReadWholeFile("tls.cert_file", files_.cert_file));
  KMS_ASSIGN_OR_RETURN(std::string key, ReadWholeFile("tls.key_file", files_.key_file));
  absl::Cleanup wipe_key = [&key] { std::fill(key.begin(), key.end(), '\0'); };
  KMS_ASSIGN_OR_RETURN(std::string ca, ReadWholeFile("tls.client_ca_file", files_.client_ca_file));
  if (absl::Status checked = CheckTlsMaterial(cert, key, ca, absl::Now()); !checked.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(checked.message(), " (", files_.cert_file, ", ", files_.key_file, ", ",
                     files_.client_ca_file, ")"));
  }
  const long next = generation_ + 1;
  const std::string name = absl::StrCat("gen-", next);
  const std::string dir = absl::StrCat(staging_dir_, "/", name);
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", std::strerror(errno)));
  }
  KMS_RETURN_IF_ERROR(WriteFile(absl::StrCat(dir, "/", kKeyName), key));
  KMS_RETURN_IF_ERROR(WriteFile(absl::StrCat(dir, "/", kCertName), cert));
  KMS_RETURN_IF_ERROR(WriteFile(absl::StrCat(dir, "/", kCaName), ca));
  // One rename swaps all three files for the watcher.
  const std::string link = absl::StrCat(staging_dir_, "/", kCurrent);
  const std::string tmp_link = link + ".tmp";
  ::unlink(tmp_link.c_str());
  if (::symlink(name.c_str(), tmp_link.c_str()) != 0 ||
      ::rename(tmp_link.c_str(), link.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot switch ", link, ": ", std::strerror(errno)));
  }
  // Keep the previous generation: the watcher may be reading it right now.
  if (next > 2) {
    std::filesystem::remove_all(absl::StrCat(staging_dir_, "/gen-", next - 2), error);
  }
  generation_ = next;
  return absl::OkStatus();
}

namespace {

void LogGrpcLine(gpr_log_func_args* args) {
  const absl::string_view message = args->message;
  // A refused handshake: a missing, expired or foreign client certificate, or
  // a client that does not speak TLS. Worded for people reading kmsd's log.
  if (absl::StrContains(message, "Handshake failed") ||
      absl::StrContains(message, "Certificate verify failed") ||
      absl::StrContains(message, "Security handshake failed")) {
    KMS_LOG(WARNING) << "TLS connection refused: " << message;
    return;
  }
  switch (args->severity) {
    case GPR_LOG_SEVERITY_ERROR:
      KMS_LOG(ERROR) << "grpc: " << message << " (" << args->file << ":" << args->line << ")";
      break;
    case GPR_LOG_SEVERITY_INFO:
      KMS_LOG(INFO) << "grpc: " << message;
      break;
    default:
      KMS_LOG(DEBUG) << "grpc: " << message;
      break;
  }
}

}  // namespace

void RouteGrpcLogToKmsLog() { gpr_set_log_function(&LogGrpcLine); }

}  // namespace kms::server
