// End-to-end import of key material: the real kmsctl and kmsd binaries, a
// real SoftHSM token, and OpenSSL on the test's side standing in for the
// operator's key-generation machine and for an auditor who checks kmsd's
// output without kmsd.
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "daemon/common/errors.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/testing/local_crypto.h"

namespace kms {
namespace {

using testing::CommandResult;
using testing::RunCommand;
using testing::RunKmsctl;



std::string KcvHex(const std::string& material) {
  return absl::AsciiStrToUpper(absl::BytesToHexString(testing::Kcv(material)));
}

// "name:   value" lines of kmsctl's human output.
std::string Field(const std::string& out, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::StartsWith(line, name + ":")) {
      return std::string(absl::StripAsciiWhitespace(line.substr(name.size() + 1)));
    }
  }
  return "";
}

class ImportE2eTest : public testing::KmsdE2eTest {
 protected:
  CommandResult Kmsctl(const std::vector<std::string>& args) {
    return RunKmsctl(daemon_->endpoint(), args);
  }

  std::string NewExternalKey() {
    CommandResult created = Kmsctl({"create-key", "--origin", "EXTERNAL", "--policy", kms::testing::kE2eKeyPolicy});
    EXPECT_EQ(created.exit_code, 0) << created.err;
    return Field(created.out, "key_id");
  }

  std::string Path(const std::string& name) { return dir_->path() + "/" + name; }
};

// The operator's round trip, and the proof outside kmsd: a blob kmsd made
// under the imported key decrypts with OpenSSL under the material the
// operator generated, read by the README's blob format.
TEST_F(ImportE2eTest, KmsctlImportsGeneratedMaterialThatOpenSslThenDecryptsWith) {
  const std::string key = NewExternalKey();
  ASSERT_FALSE(key.empty());
  CommandResult generated = Kmsctl({"generate-key-material", "--out", Path("material.bin")});
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  const std::string material = testing::ReadTestFile(Path("material.bin"));
  ASSERT_EQ(material.size(), 32u);
  struct stat st {};
  ASSERT_EQ(::stat(Path("material.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(absl::StrContains(generated.out, KcvHex(material))) << generated.out;
  EXPECT_FALSE(absl::StrContains(absl::AsciiStrToUpper(generated.out),
                                 absl::AsciiStrToUpper(absl::BytesToHexString(material))));

  CommandResult imported = Kmsctl({"import-key-material", key, "--material", Path("material.bin")});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(Field(imported.out, "key_check_value"), KcvHex(material)) << imported.out;
  EXPECT_EQ(Field(imported.out, "wrapping_algorithm"), "RSA_AES_KEY_WRAP_SHA_1") << imported.out;
  EXPECT_EQ(Describe(key)->key_state(), v1::ENABLED);

  v1::EncryptRequest e;
  e.set_key_id(key);
  e.set_plaintext("checked outside kmsd");
  (*e.mutable_encryption_context())["tenant"] = "acme";
  auto blob = client_->Encrypt(e);
  ASSERT_TRUE(blob.ok()) << blob.status();
  const std::string& b = blob->ciphertext_blob();
  ASSERT_GT(b.size(), 45u + 16u);
  // Header (version, key id, version id) || canonical context is the AAD.
  const std::string context("\0\0\0\1\0\0\0\6tenant\0\0\0\4acme", 4 + 4 + 6 + 4 + 4);
  EXPECT_EQ(testing::DecryptGcmLocally(material, b.substr(33, 12), b.substr(45),
                                       b.substr(0, 33) + context),
            "checked outside kmsd");
}

// A key ceremony: three custodians' components, each checked against the
// KCV its custodian wrote down, XORed only inside kmsctl.
TEST_F(ImportE2eTest, ComponentsAreCheckedAndCombined) {
  const std::string key = NewExternalKey();
  CommandResult generated =
      Kmsctl({"generate-key-material", "--components", "3", "--out-prefix", Path("part")});
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  std::vector<std::string> parts;
  std::string combined(32, '\0');
  for (int i = 1; i <= 3; ++i) {
    parts.push_back(testing::ReadTestFile(Path(absl::StrCat("part.", i))));
    ASSERT_EQ(parts.back().size(), 32u);
    for (size_t j = 0; j < 32; ++j) combined[j] ^= parts.back()[j];
    EXPECT_TRUE(absl::StrContains(generated.out, KcvHex(parts.back()))) << generated.out;
  }
  std::vector<std::string> args = {"import-key-material", key};
  for (int i = 1; i <= 3; ++i) {
    args.insert(args.end(), {"--component", Path(absl::StrCat("part.", i)), "--component-kcv",
                             KcvHex(parts[static_cast<size_t>(i - 1)])});
  }
  // One wrong component KCV: nothing is sent.
  std::vector<std::string> wrong = args;
  wrong.back() = "000000";
  CommandResult refused = Kmsctl(wrong);
  EXPECT_EQ(refused.exit_code, 4) << refused.err;
  EXPECT_EQ(Describe(key)->key_state(), v1::PENDING_IMPORT);

  CommandResult imported = Kmsctl(args);
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(Field(imported.out, "key_check_value"), KcvHex(combined)) << imported.out;
  CommandResult kcv = Kmsctl({"key-check-value", Path("part.1"), Path("part.2"), Path("part.3")});
  ASSERT_EQ(kcv.exit_code, 0) << kcv.err;
  EXPECT_TRUE(absl::StrContains(kcv.out, KcvHex(combined))) << kcv.out;
}

// The README's openssl-only procedure: parameters from kmsctl, wrapping by
// deploy/wrap-key-material.sh (openssl alone), import of the files.
TEST_F(ImportE2eTest, MaterialWrappedByTheOpenSslScriptImports) {
  const std::string key = NewExternalKey();
  const std::string material = testing::KnownMaterial(32, 0x42);
  testing::WriteTestFile(Path("material.bin"), material);
  CommandResult parameters = Kmsctl(
      {"get-parameters-for-import", key, "--wrapping-algorithm", "RSA_AES_KEY_WRAP_SHA_1",
       "--wrapping-key-spec", "RSA_3072", "--public-key-out", Path("public.der"),
       "--import-token-out", Path("token.bin")});
  ASSERT_EQ(parameters.exit_code, 0) << parameters.err;
  CommandResult wrapped = RunCommand(
      {"/bin/sh", std::string(KMS_SOURCE_DIR) + "/deploy/wrap-key-material.sh",
       "RSA_AES_KEY_WRAP_SHA_1", Path("public.der"), Path("material.bin"), Path("wrapped.bin")},
      {});
  ASSERT_EQ(wrapped.exit_code, 0) << wrapped.err;
  EXPECT_EQ(testing::ReadTestFile(Path("wrapped.bin")).size(), 384u + 40u);

  CommandResult imported =
      Kmsctl({"import-key-material", key, "--import-token", Path("token.bin"),
              "--encrypted-key-material", Path("wrapped.bin"), "--expected-kcv", KcvHex(material)});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(Field(imported.out, "key_check_value"), KcvHex(material)) << imported.out;
  // The token is spent.
  CommandResult again =
      Kmsctl({"import-key-material", key, "--import-token", Path("token.bin"),
              "--encrypted-key-material", Path("wrapped.bin")});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(again.err, "InvalidImportTokenException")) << again.err;

  // SHA-256 OAEP is not something SoftHSM can unwrap: the answer says what is.
  CommandResult unsupported = Kmsctl(
      {"get-parameters-for-import", key, "--wrapping-algorithm", "RSAES_OAEP_SHA_256",
       "--wrapping-key-spec", "RSA_2048", "--public-key-out", Path("p2.der"),
       "--import-token-out", Path("t2.bin")});
  EXPECT_EQ(unsupported.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(unsupported.err, "UnsupportedOperationException")) << unsupported.err;
  EXPECT_TRUE(absl::StrContains(unsupported.err, "RSA_AES_KEY_WRAP_SHA_1")) << unsupported.err;
}

// Expiry is durable: material that expired while kmsd was down is destroyed
// as it starts, and re-importing the same material brings old ciphertexts
// back.
TEST_F(ImportE2eTest, ExpiryHappensAcrossARestartAndReimportRestores) {
  if (!testing::HaveFaketime()) GTEST_SKIP() << "libfaketime not installed";
  const std::string key = NewExternalKey();
  testing::WriteTestFile(Path("material.bin"), testing::KnownMaterial(32, 0x17));
  CommandResult imported = Kmsctl({"import-key-material", key, "--material",
                                   Path("material.bin"), "--valid-for-days", "1"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(Describe(key)->expiration_model(), v1::KEY_MATERIAL_EXPIRES);
  v1::EncryptRequest e;
  e.set_key_id(key);
  e.set_plaintext("before expiry");
  auto blob = client_->Encrypt(e);
  ASSERT_TRUE(blob.ok()) << blob.status();

  Restart(testing::FakeTimeEnv("+2d"));
  EXPECT_EQ(Describe(key)->key_state(), v1::PENDING_IMPORT);
  auto refused = Decrypt(blob->ciphertext_blob());
  EXPECT_EQ(ErrorTypeOf(refused.status()), "KMSInvalidStateException") << refused.status();
  CommandResult wrong = Kmsctl({"import-key-material", key, "--material", Path("material.bin"),
                                "--key-material-id", "not-a-uuid"});
  EXPECT_NE(wrong.exit_code, 0);

  CommandResult again = Kmsctl({"import-key-material", key, "--material", Path("material.bin")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Describe(key)->key_state(), v1::ENABLED);
  EXPECT_EQ(Decrypt(blob->ciphertext_blob()).value_or(""), "before expiry");
}

// kill -9 at each step of an import and of a deletion of imported material,
// then restart: the key is in its old state or its new one, re-importing
// restores it, and the token then holds exactly one copy of the material
// (plus the import token key): nothing was orphaned.
class ImportCrashPointTest : public ImportE2eTest,
                             public ::testing::WithParamInterface<std::string> {};

TEST_P(ImportCrashPointTest, KillAtThisPointLeavesOldStateOrNewAndNoOrphans) {
  const std::string point = GetParam();
  const bool deleting = absl::StartsWith(point, "delete-material:");
  const std::string key = NewExternalKey();
  testing::WriteTestFile(Path("material.bin"), testing::KnownMaterial(32, 0x29));
  if (deleting) {
    CommandResult imported = Kmsctl({"import-key-material", key, "--material", Path("material.bin")});
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
  }

  client_.reset();
  ASSERT_EQ(*daemon_->Stop(SIGTERM), 0);
  StartDaemon({}, "testing:\n  crash_point: " + point + "\n");
  CommandResult call =
      deleting ? Kmsctl({"delete-imported-key-material", key})
               : Kmsctl({"import-key-material", key, "--material", Path("material.bin")});
  EXPECT_NE(call.exit_code, 0) << "the crash point was not reached";
  auto code = daemon_->Stop(SIGTERM);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 128 + SIGKILL) << daemon_->ReadLog();

  StartDaemon();
  // Old state or new: with material (ENABLED) or without (PENDING_IMPORT).
  const v1::KeyState state = Describe(key)->key_state();
  EXPECT_TRUE(state == v1::ENABLED || state == v1::PENDING_IMPORT) << state;
  if (point == "import:after-intent" || point == "import:after-unwrap") {
    EXPECT_EQ(state, v1::PENDING_IMPORT);
  }
  if (point == "import:after-commit") {
    EXPECT_EQ(state, v1::ENABLED);
  }
  // Either way the same material (and only it) brings the key back.
  CommandResult restore = Kmsctl({"import-key-material", key, "--material", Path("material.bin")});
  ASSERT_EQ(restore.exit_code, 0) << restore.err;
  EXPECT_EQ(Describe(key)->key_state(), v1::ENABLED);

  client_.reset();
  ASSERT_EQ(*daemon_->Stop(SIGTERM), 0);
  const std::string objects = ListTokenObjects();
  if (objects.empty()) GTEST_SKIP() << "pkcs11-tool not installed; orphan check skipped";
  EXPECT_EQ(CountCmkObjects(objects), 2) << objects;  // the material and the import token key
}

INSTANTIATE_TEST_SUITE_P(
    Points, ImportCrashPointTest,
    ::testing::Values("import:after-intent", "import:after-unwrap", "import:after-commit",
                      "delete-material:after-commit"),
    testing::CrashPointTestName);

}  // namespace
}  // namespace kms
