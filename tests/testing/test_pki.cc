#include "tests/testing/test_pki.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testing/daemon_process.h"

namespace kms::testing {

absl::Status TestPki::Openssl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("openssl ", absl::StrJoin(args, " "), " failed: ", r.err, r.out));
  }
  return absl::OkStatus();
}

std::string TestPki::ExtensionsFile(const std::string& name, const CertSpec& spec) const {
  const std::string path = absl::StrCat(dir_, "/", name, ".ext");
  std::ofstream out(path);
  out << "[v3]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
      << "extendedKeyUsage = " << (spec.server ? "serverAuth" : "clientAuth") << "\n";
  if (!spec.san.empty()) out << "subjectAltName = " << spec.san << "\n";
  return path;
}

absl::Status TestPki::MakeCa(const std::string& name, const std::string& cn) {
  return Openssl({"req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", Key(name), "-out", Cert(name),
                  "-subj", "/CN=" + cn, "-days", "3650", "-addext",
                  "basicConstraints=critical,CA:TRUE", "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign"});
}

absl::Status TestPki::MakeSelfSigned(const std::string& name, const CertSpec& spec) {
  std::vector<std::string> args = {"req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", Key(name),
                                   "-out", Cert(name), "-subj", spec.subject, "-days",
                                   std::to_string(spec.days)};
  if (!spec.san.empty()) {
    args.push_back("-addext");
    args.push_back("subjectAltName=" + spec.san);
  }
  return Openssl(args);
}

absl::Status TestPki::MakeCert(const std::string& name, const std::string& ca,
                               const CertSpec& spec) {
  const std::string csr = absl::StrCat(dir_, "/", name, ".csr");
  if (absl::Status s = Openssl({"req", "-new", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:P-256", "-nodes", "-keyout", Key(name),
                                "-out", csr, "-subj", spec.subject});
      !s.ok()) {
    return s;
  }
  const std::string ext = ExtensionsFile(name, spec);
  if (spec.not_before.empty()) {
    return Openssl({"x509", "-req", "-in", csr, "-CA", Cert(ca), "-CAkey", Key(ca),
                    "-set_serial", std::to_string(++serial_), "-days", std::to_string(spec.days),
                    "-extfile", ext, "-extensions", "v3", "-out", Cert(name)});
  }
  // openssl x509 (3.0) cannot set dates in the past; openssl ca can.
  const std::string ca_dir = absl::StrCat(dir_, "/", ca, "-ca-db");
  const std::string config = ca_dir + "/ca.cnf";
  std::error_code ignored;
  std::filesystem::create_directories(ca_dir, ignored);
  std::ofstream(ca_dir + "/index.txt", std::ios::app);
  // openssl ca wants an even number of hex digits.
  std::ofstream(ca_dir + "/serial") << absl::StrCat(absl::Hex(++serial_, absl::kZeroPad4)) << "\n";
  std::ofstream(config) << "[ca]\ndefault_ca = d\n[d]\ndir = " << ca_dir
                        << "\ndatabase = " << ca_dir << "/index.txt\nnew_certs_dir = " << ca_dir
                        << "\nserial = " << ca_dir << "/serial\ndefault_md = sha256\n"
                        << "policy = p\nunique_subject = no\n[p]\ncommonName = optional\n"
                        << "organizationName = optional\n";
  return Openssl({"ca", "-batch", "-notext", "-config", config, "-cert", Cert(ca), "-keyfile",
                  Key(ca), "-in", csr, "-out", Cert(name), "-startdate", spec.not_before,
                  "-enddate", spec.not_after, "-extfile", ext, "-extensions", "v3"});
}

}  // namespace kms::testing
