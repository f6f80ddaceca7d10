// Pkcs11Hsm, token provisioning and the SoftHsmToken fixture on a real
// SoftHSM token: what the conformance suite cannot show through the Hsm
// interface alone (persistence, PINs, module loading, session recovery).
#include "hsm/pkcs11_hsm.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11_module.h"
#include "hsm/token_setup.h"
#include "tests/testing/softhsm_token.h"

namespace kms::hsm {
namespace {

using ::kms::testing::SoftHsmToken;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::string_view kIv = "0123456789ab";
constexpr absl::string_view kAad = "aad";

class Pkcs11HsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto token = SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = std::move(*token);
  }

  std::unique_ptr<Pkcs11Hsm> Open(int session_count = 4) {
    auto hsm = token_->OpenHsm(session_count);
    EXPECT_TRUE(hsm.ok()) << hsm.status();
    return hsm.ok() ? std::move(*hsm) : nullptr;
  }

  std::unique_ptr<SoftHsmToken> token_;
};

TEST_F(Pkcs11HsmTest, KeysPersistAcrossCloseAndReopen) {
  std::string ciphertext;
  {
    std::unique_ptr<Pkcs11Hsm> hsm = Open();
    ASSERT_NE(hsm, nullptr);
    for (const char* id : {"v2", "v1", "v3"}) ASSERT_TRUE(hsm->GenerateAesKey(id).ok());
    ASSERT_TRUE(hsm->DestroyKey("v3").ok());
    auto encrypted = hsm->EncryptGcm("v1", kIv, "data key", kAad);
    ASSERT_TRUE(encrypted.ok()) << encrypted.status();
    ciphertext = *encrypted;
  }  // the module is finalised here: nothing else holds it
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  // The handle cache is rebuilt from the token.
  EXPECT_THAT(hsm->ListKeyIds(), ElementsAre("v1", "v2"));
  auto decrypted = hsm->DecryptGcm("v1", kIv, ciphertext, kAad);
  ASSERT_TRUE(decrypted.ok()) << decrypted.status();
  EXPECT_EQ(decrypted->secret(), "data key");
  auto attributes = hsm->GetKeyAttributes("v2");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_TRUE(attributes->never_extractable);
}

TEST_F(Pkcs11HsmTest, WrongPinIsPermissionDeniedWithoutThePin) {
  const std::string wrong_pin = "wrong-pin-4711";
  Pkcs11Config config = token_->Config();
  config.user_pin = SecretBytes::CopyFrom(wrong_pin);
  auto hsm = Pkcs11Hsm::Open(std::move(config));
  ASSERT_FALSE(hsm.ok());
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kPermissionDenied) << hsm.status();
  const std::string message(hsm.status().message());
  EXPECT_THAT(message, HasSubstr("CKR_PIN_INCORRECT"));
  EXPECT_THAT(message, HasSubstr(token_->label()));
  EXPECT_THAT(message, Not(HasSubstr(wrong_pin)));
  EXPECT_THAT(message, Not(HasSubstr(std::string(token_->user_pin().secret()))));
  // The right PIN still works afterwards.
  EXPECT_NE(Open(), nullptr);
}

TEST_F(Pkcs11HsmTest, WrongPinIsDeniedEvenWhileTheTokenIsLoggedIn) {
  // PKCS#11 login state is per process: with `open` logged in, C_Login says
  // CKR_USER_ALREADY_LOGGED_IN to any PIN. The wrong one must still fail.
  std::unique_ptr<Pkcs11Hsm> open = Open();
  ASSERT_NE(open, nullptr);
  Pkcs11Config config = token_->Config();
  config.user_pin = SecretBytes::CopyFrom("wrong-pin-4711");
  auto hsm = Pkcs11Hsm::Open(std::move(config));
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kPermissionDenied) << hsm.status();
  EXPECT_THAT(hsm.status().message(), Not(HasSubstr("wrong-pin-4711")));
  // The right PIN is accepted alongside.
  EXPECT_NE(Open(), nullptr);
}

TEST_F(Pkcs11HsmTest, UnknownTokenLabelIsNotFound) {
  Pkcs11Config config = token_->Config();
  config.token_label = "no-such-token";
  auto hsm = Pkcs11Hsm::Open(std::move(config));
  ASSERT_FALSE(hsm.ok());
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kNotFound) << hsm.status();
  EXPECT_THAT(hsm.status().message(), HasSubstr("no-such-token"));
  EXPECT_THAT(hsm.status().message(), HasSubstr(token_->module_path()));
}

TEST_F(Pkcs11HsmTest, MissingModuleFailsClearly) {
  Pkcs11Config config = token_->Config();
  config.module_path = "/nonexistent/libpkcs11-module.so";
  auto hsm = Pkcs11Hsm::Open(std::move(config));
  ASSERT_FALSE(hsm.ok());
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kFailedPrecondition) << hsm.status();
  EXPECT_THAT(hsm.status().message(), HasSubstr("/nonexistent/libpkcs11-module.so"));
}

TEST_F(Pkcs11HsmTest, LibraryThatIsNotAPkcs11ModuleFailsClearly) {
  Pkcs11Config config = token_->Config();
  config.module_path = "libm.so.6";
  auto hsm = Pkcs11Hsm::Open(std::move(config));
  ASSERT_FALSE(hsm.ok());
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kFailedPrecondition) << hsm.status();
  EXPECT_THAT(hsm.status().message(), HasSubstr("not a PKCS#11 module"));
}

TEST_F(Pkcs11HsmTest, InvalidConfigIsInvalidArgument) {
  struct Case {
    const char* name;
    void (*change)(Pkcs11Config&);
  };
  const Case cases[] = {
      {"no module", [](Pkcs11Config& c) { c.module_path.clear(); }},
      {"no label", [](Pkcs11Config& c) { c.token_label.clear(); }},
      {"33-byte label", [](Pkcs11Config& c) { c.token_label = std::string(33, 'l'); }},
      {"no PIN", [](Pkcs11Config& c) { c.user_pin = SecretBytes(); }},
      {"no sessions", [](Pkcs11Config& c) { c.session_count = 0; }},
      {"257 sessions", [](Pkcs11Config& c) { c.session_count = 257; }},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    Pkcs11Config config = token_->Config();
    test_case.change(config);
    auto hsm = Pkcs11Hsm::Open(std::move(config));
    EXPECT_EQ(hsm.status().code(), absl::StatusCode::kInvalidArgument) << hsm.status();
  }
}

TEST_F(Pkcs11HsmTest, InitializingAnExistingLabelIsAlreadyExists) {
  absl::Status status = InitializeToken(token_->module_path(), token_->label(),
                                        token_->so_pin(), token_->user_pin());
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_THAT(status.message(), HasSubstr(token_->label()));
}

TEST_F(Pkcs11HsmTest, TokenExistsFindsTokensByLabel) {
  auto exists = TokenExists(token_->module_path(), token_->label());
  ASSERT_TRUE(exists.ok()) << exists.status();
  EXPECT_TRUE(*exists);
  auto missing = TokenExists(token_->module_path(), "other");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(*missing);
}

TEST_F(Pkcs11HsmTest, SecondTokenIsFoundByLabelAndKeptApart) {
  // Initialising a token re-numbers SoftHSM's slots; both must still be found.
  ASSERT_TRUE(
      InitializeToken(token_->module_path(), "second", token_->so_pin(), token_->user_pin())
          .ok());
  std::unique_ptr<Pkcs11Hsm> first = Open();
  Pkcs11Config config = token_->Config();
  config.token_label = "second";
  auto second = Pkcs11Hsm::Open(std::move(config));
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(first->GenerateAesKey("only-in-first").ok());
  EXPECT_THAT((*second)->ListKeyIds(), IsEmpty());
  EXPECT_FALSE((*second)->HasKey("only-in-first"));
}

TEST_F(Pkcs11HsmTest, ModuleStaysInitialisedWhileAnyHsmIsOpen) {
  std::unique_ptr<Pkcs11Hsm> a = Open();
  std::unique_ptr<Pkcs11Hsm> b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->GenerateAesKey("k1").ok());
  a.reset();  // must neither finalise the module nor log b out
  ASSERT_TRUE(b->GenerateAesKey("k2").ok());
  auto ciphertext = b->EncryptGcm("k2", kIv, "data key", kAad);
  ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
  EXPECT_TRUE(b->DecryptGcm("k2", kIv, *ciphertext, kAad).ok());
  b.reset();
  std::unique_ptr<Pkcs11Hsm> c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->ListKeyIds(), ElementsAre("k1", "k2"));
}

TEST_F(Pkcs11HsmTest, KeyDestroyedBehindTheCacheIsUnavailableNotNotFound) {
  std::unique_ptr<Pkcs11Hsm> kmsd = Open();
  std::unique_ptr<Pkcs11Hsm> other_client = Open();
  ASSERT_NE(kmsd, nullptr);
  ASSERT_NE(other_client, nullptr);
  ASSERT_TRUE(kmsd->GenerateAesKey("k1").ok());
  // other_client's cache was filled before k1 existed; it cannot touch it.
  EXPECT_FALSE(other_client->HasKey("k1"));
  // A third party deletes the object under kmsd's cache.
  other_client.reset();
  {
    std::unique_ptr<Pkcs11Hsm> deleter = Open();
    ASSERT_NE(deleter, nullptr);
    ASSERT_TRUE(deleter->DestroyKey("k1").ok());
  }
  // kmsd must not report the key as gone (a caller could act on that), only
  // that the token is out of step with its cache.
  auto encrypted = kmsd->EncryptGcm("k1", kIv, "data key", kAad);
  EXPECT_EQ(encrypted.status().code(), absl::StatusCode::kUnavailable) << encrypted.status();
  EXPECT_THAT(encrypted.status().message(), HasSubstr("HANDLE_INVALID"));
  EXPECT_EQ(kmsd->DestroyKey("k1").code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(kmsd->HasKey("k1"));
  // Reopening resynchronises.
  kmsd.reset();
  kmsd = Open();
  ASSERT_NE(kmsd, nullptr);
  EXPECT_FALSE(kmsd->HasKey("k1"));
}

TEST_F(Pkcs11HsmTest, TagFailureLeavesEverySessionUsable) {
  constexpr int kSessions = 4;
  std::unique_ptr<Pkcs11Hsm> hsm = Open(kSessions);
  ASSERT_NE(hsm, nullptr);
  ASSERT_TRUE(hsm->GenerateAesKey("k1").ok());
  auto ciphertext = hsm->EncryptGcm("k1", kIv, "data key", kAad);
  ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
  std::string tampered = *ciphertext;
  tampered.back() ^= 0x01;

  auto expect_good_decrypt = [&] {
    auto decrypted = hsm->DecryptGcm("k1", kIv, *ciphertext, kAad);
    ASSERT_TRUE(decrypted.ok()) << decrypted.status();
    EXPECT_EQ(decrypted->secret(), "data key");
  };
  auto expect_tag_failure = [&] {
    auto decrypted = hsm->DecryptGcm("k1", kIv, tampered, kAad);
    EXPECT_EQ(decrypted.status().code(), absl::StatusCode::kInvalidArgument)
        << decrypted.status();
  };
  // Sessions are lent round-robin, so runs of 2 * kSessions calls hit every
  // session at least twice, whatever the order.
  for (int i = 0; i < 2 * kSessions; ++i) {
    expect_tag_failure();
    expect_good_decrypt();
  }
  for (int i = 0; i < 2 * kSessions; ++i) expect_tag_failure();
  for (int i = 0; i < 2 * kSessions; ++i) expect_good_decrypt();
  // Replacement sessions are still logged in: private objects stay usable.
  EXPECT_TRUE(hsm->GetKeyAttributes("k1").ok());
  EXPECT_TRUE(hsm->GenerateAesKey("k2").ok());

  // The same from several threads at once.
  std::vector<std::thread> threads;
  for (int t = 0; t < 2 * kSessions; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        expect_tag_failure();
        expect_good_decrypt();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
}

// A logged-in session of this process on the fixture's token, straight on
// the module: to look at what Pkcs11Hsm leaves on the token, and to make
// objects it would never make. Session objects of every session of the
// process are visible to it.
class RawSession {
 public:
  explicit RawSession(const SoftHsmToken& token) {
    auto module = internal::Pkcs11Module::Load(token.module_path());
    EXPECT_TRUE(module.ok()) << module.status();
    if (!module.ok()) return;
    module_ = *module;
    auto slot = module_->FindTokenSlot(token.label());
    EXPECT_TRUE(slot.ok()) << slot.status();
    if (!slot.ok()) return;
    EXPECT_EQ(fn()->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                  nullptr, &session_),
              CKR_OK);
    absl::Status login = module_->LoginUser(session_, *slot, token.user_pin());
    EXPECT_TRUE(login.ok()) << login;
  }
  ~RawSession() {
    if (session_ != CK_INVALID_HANDLE) fn()->C_CloseSession(session_);
  }
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;

  CK_FUNCTION_LIST* fn() const { return module_->fn(); }
  CK_SESSION_HANDLE session() const { return session_; }

  // Every AES secret key the process sees with CKA_TOKEN = `on_token`.
  std::vector<CK_OBJECT_HANDLE> AesKeys(bool on_token) {
    CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
    CK_BBOOL token = on_token ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE search[] = {{CKA_CLASS, &secret, sizeof(secret)},
                             {CKA_TOKEN, &token, sizeof(token)}};
    std::vector<CK_OBJECT_HANDLE> found;
    EXPECT_EQ(fn()->C_FindObjectsInit(session_, search, 2), CKR_OK);
    CK_OBJECT_HANDLE batch[64];
    CK_ULONG count = 0;
    while (fn()->C_FindObjects(session_, batch, 64, &count) == CKR_OK && count > 0) {
      found.insert(found.end(), batch, batch + count);
    }
    EXPECT_EQ(fn()->C_FindObjectsFinal(session_), CKR_OK);
    return found;
  }

  CK_BBOOL Flag(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE attribute = {type, &value, sizeof(value)};
    EXPECT_EQ(fn()->C_GetAttributeValue(session_, object, &attribute, 1), CKR_OK);
    return value;
  }

 private:
  std::shared_ptr<const internal::Pkcs11Module> module_;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

TEST_F(Pkcs11HsmTest, WorkingCopyIsMadeOnFirstUseAndDestroyedWithTheKey) {
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  RawSession raw(*token_);
  ASSERT_TRUE(hsm->GenerateAesKey("k1").ok());
  ASSERT_TRUE(hsm->GenerateAesKey("k2").ok());
  EXPECT_THAT(raw.AesKeys(/*on_token=*/false), IsEmpty());

  auto ciphertext = hsm->EncryptGcm("k1", kIv, "data key", kAad);
  ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
  const std::vector<CK_OBJECT_HANDLE> copies = raw.AesKeys(/*on_token=*/false);
  ASSERT_EQ(copies.size(), 1u);
  // The copy is as closed as the token object: its value cannot be read.
  EXPECT_EQ(raw.Flag(copies[0], CKA_SENSITIVE), CK_TRUE);
  EXPECT_EQ(raw.Flag(copies[0], CKA_EXTRACTABLE), CK_FALSE);
  EXPECT_EQ(raw.Flag(copies[0], CKA_PRIVATE), CK_TRUE);
  CK_BYTE value[32];
  CK_ATTRIBUTE value_attribute = {CKA_VALUE, value, sizeof(value)};
  EXPECT_EQ(raw.fn()->C_GetAttributeValue(raw.session(), copies[0], &value_attribute, 1),
            CKR_ATTRIBUTE_SENSITIVE);

  // One copy per key, however often it is used, and it is the same key.
  for (int i = 0; i < 3; ++i) {
    auto decrypted = hsm->DecryptGcm("k1", kIv, *ciphertext, kAad);
    ASSERT_TRUE(decrypted.ok()) << decrypted.status();
    EXPECT_EQ(decrypted->secret(), "data key");
  }
  EXPECT_EQ(raw.AesKeys(/*on_token=*/false), copies);

  // Crypto-erase takes the copy too, and the key is gone for callers.
  ASSERT_TRUE(hsm->DestroyKey("k1").ok());
  EXPECT_THAT(raw.AesKeys(/*on_token=*/false), IsEmpty());
  EXPECT_EQ(raw.AesKeys(/*on_token=*/true).size(), 1u);  // k2
  EXPECT_EQ(hsm->DecryptGcm("k1", kIv, *ciphertext, kAad).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(Pkcs11HsmTest, WorkingCopiesCloseWithTheHsmAndNeverConfuseAnother) {
  std::unique_ptr<Pkcs11Hsm> first = Open();
  ASSERT_NE(first, nullptr);
  RawSession raw(*token_);
  ASSERT_TRUE(first->GenerateAesKey("k1").ok());
  auto ciphertext = first->EncryptGcm("k1", kIv, "data key", kAad);
  ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
  ASSERT_EQ(raw.AesKeys(/*on_token=*/false).size(), 1u);

  // A second Pkcs11Hsm in the process sees the first's copy on the token
  // but reads only token objects: one key "k1", not two.
  std::unique_ptr<Pkcs11Hsm> second = Open();
  ASSERT_NE(second, nullptr);
  EXPECT_THAT(second->ListKeyIds(), ElementsAre("k1"));
  auto decrypted = second->DecryptGcm("k1", kIv, *ciphertext, kAad);
  ASSERT_TRUE(decrypted.ok()) << decrypted.status();
  EXPECT_EQ(raw.AesKeys(/*on_token=*/false).size(), 2u);

  // Closing a Pkcs11Hsm closes the session that holds its copies.
  first.reset();
  EXPECT_EQ(raw.AesKeys(/*on_token=*/false).size(), 1u);
  second.reset();
  EXPECT_THAT(raw.AesKeys(/*on_token=*/false), IsEmpty());
  EXPECT_EQ(raw.AesKeys(/*on_token=*/true).size(), 1u);
}

TEST_F(Pkcs11HsmTest, KeyTheModuleWillNotCopyIsUsedFromTheToken) {
  RawSession raw(*token_);
  // An AES key like kmsd's, but with CKA_COPYABLE false, as some sites set.
  CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_ULONG length = 32;
  char id[] = "nocopy";
  CK_ATTRIBUTE key_template[] = {
      {CKA_CLASS, &secret, sizeof(secret)},   {CKA_KEY_TYPE, &aes, sizeof(aes)},
      {CKA_TOKEN, &yes, sizeof(yes)},         {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},     {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_ENCRYPT, &yes, sizeof(yes)},       {CKA_DECRYPT, &yes, sizeof(yes)},
      {CKA_COPYABLE, &no, sizeof(no)},        {CKA_VALUE_LEN, &length, sizeof(length)},
      {CKA_ID, id, sizeof(id) - 1},
  };
  CK_MECHANISM generate = {CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  ASSERT_EQ(raw.fn()->C_GenerateKey(raw.session(), &generate, key_template,
                                    sizeof(key_template) / sizeof(key_template[0]), &key),
            CKR_OK);

  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  for (int i = 0; i < 2; ++i) {
    auto ciphertext = hsm->EncryptGcm("nocopy", kIv, "data key", kAad);
    ASSERT_TRUE(ciphertext.ok()) << ciphertext.status();
    auto decrypted = hsm->DecryptGcm("nocopy", kIv, *ciphertext, kAad);
    ASSERT_TRUE(decrypted.ok()) << decrypted.status();
    EXPECT_EQ(decrypted->secret(), "data key");
  }
  EXPECT_THAT(raw.AesKeys(/*on_token=*/false), IsEmpty());
  ASSERT_TRUE(hsm->DestroyKey("nocopy").ok());
  EXPECT_THAT(raw.AesKeys(/*on_token=*/true), IsEmpty());
}

// Runs `command` through the shell; returns its exit status and output.
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  char buffer[4096];
  size_t size;
  while ((size = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, size);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// The comma-separated items after `field` ("Usage:", "Access:") in
// pkcs11-tool's listing.
std::vector<std::string> ListedValue(const std::string& listing, absl::string_view field) {
  for (absl::string_view line : absl::StrSplit(listing, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, field)) {
      return absl::StrSplit(absl::StripAsciiWhitespace(line), ", ");
    }
  }
  return {};
}

// pkcs11-tool (OpenSC) as a second, independent PKCS#11 client: it reads the
// token through SOFTHSM2_CONF, which the fixture set for this process and so
// for its children. Tests that need it skip when it is not installed.
class Pkcs11ToolTest : public Pkcs11HsmTest {
 protected:
  void SetUp() override {
    if (RunCommand("command -v pkcs11-tool").first != 0) {
      GTEST_SKIP() << "pkcs11-tool (OpenSC) is not installed";
    }
    Pkcs11HsmTest::SetUp();
  }

  // Runs pkcs11-tool on the token with `arguments`, logged in as the user
  // unless `login` is false. The PIN is a random test PIN.
  std::pair<int, std::string> Pkcs11Tool(const std::string& arguments, bool login = true) {
    std::string command = absl::StrCat("pkcs11-tool --module '", token_->module_path(),
                                       "' --token-label '", token_->label(), "' ", arguments);
    if (login) absl::StrAppend(&command, " --login --pin '", token_->user_pin().secret(), "'");
    return RunCommand(absl::StrCat(command, " 2>&1"));
  }
};

TEST_F(Pkcs11ToolTest, SeesAPrivateSensitiveNeverExtractableKey) {
  {
    std::unique_ptr<Pkcs11Hsm> hsm = Open();
    ASSERT_NE(hsm, nullptr);
    ASSERT_TRUE(hsm->GenerateAesKey("v-1234").ok());
  }
  const auto [exit_code, listed] = Pkcs11Tool("--list-objects --type secrkey");
  ASSERT_EQ(exit_code, 0) << listed;
  EXPECT_THAT(listed, HasSubstr("AES length 32"));
  EXPECT_THAT(listed, HasSubstr("label:      kmsd:v-1234"));
  EXPECT_THAT(listed, HasSubstr("ID:         762d31323334"));  // hex of "v-1234"
  EXPECT_THAT(ListedValue(listed, "Usage:"), ElementsAre("encrypt", "decrypt"));
  EXPECT_THAT(ListedValue(listed, "Access:"),
              AllOf(Contains("sensitive"), Contains("always sensitive"),
                    Contains("never extractable"), Not(Contains("extractable"))));
  // pkcs11-tool tries to read the value and the token refuses.
  EXPECT_THAT(listed, HasSubstr("CKR_ATTRIBUTE_SENSITIVE"));
  // Private: without logging in the key is invisible.
  const auto [public_exit_code, public_listing] =
      Pkcs11Tool("--list-objects --type secrkey", /*login=*/false);
  EXPECT_EQ(public_exit_code, 0) << public_listing;
  EXPECT_THAT(public_listing, Not(HasSubstr("kmsd:v-1234")));
}

TEST_F(Pkcs11ToolTest, KeysMadeElsewhereAreListedByIdAndKeysWithoutIdIgnored) {
  auto [exit_code, output] =
      Pkcs11Tool("--keygen --key-type AES:32 --id 666f726569676e --label foreign");
  ASSERT_EQ(exit_code, 0) << output;
  std::tie(exit_code, output) = Pkcs11Tool("--keygen --key-type AES:32 --label no-id");
  ASSERT_EQ(exit_code, 0) << output;
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  EXPECT_THAT(hsm->ListKeyIds(), ElementsAre("foreign"));
}

TEST_F(Pkcs11ToolTest, KeyWithAnIdLongerThanKmsdMakesIsStillListed) {
  // Open reads ids into a buffer sized for kmsd's own; a longer one takes a
  // second call, not an error.
  const std::string long_id(100, 'x');
  const auto [exit_code, output] = Pkcs11Tool(absl::StrCat(
      "--keygen --key-type AES:32 --label long --id ", absl::BytesToHexString(long_id)));
  ASSERT_EQ(exit_code, 0) << output;
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  EXPECT_THAT(hsm->ListKeyIds(), ElementsAre(long_id));
}

TEST_F(Pkcs11ToolTest, ObjectsThatAreNotKeysAreIgnored) {
  {
    std::unique_ptr<Pkcs11Hsm> hsm = Open();
    ASSERT_NE(hsm, nullptr);
    ASSERT_TRUE(hsm->GenerateAesKey("k1").ok());
  }
  // A data object under the same id: it has no key type and no usage flags,
  // so Open's one-call attribute read reports some attributes invalid.
  const std::string data_file = absl::StrCat(::testing::TempDir(), "/kmsd-data-object");
  FILE* file = fopen(data_file.c_str(), "w");
  ASSERT_NE(file, nullptr);
  fputs("not a key", file);
  fclose(file);
  const auto [exit_code, output] = Pkcs11Tool(absl::StrCat(
      "--write-object ", data_file, " --type data --id 6b31 --label data --private"));
  ASSERT_EQ(exit_code, 0) << output;
  std::unique_ptr<Pkcs11Hsm> hsm = Open();
  ASSERT_NE(hsm, nullptr);
  EXPECT_THAT(hsm->ListKeyIds(), ElementsAre("k1"));
  auto ciphertext = hsm->EncryptGcm("k1", kIv, "data key", kAad);
  EXPECT_TRUE(ciphertext.ok()) << ciphertext.status();
}

TEST_F(Pkcs11ToolTest, TwoKeysWithOneIdStopOpen) {
  {
    std::unique_ptr<Pkcs11Hsm> hsm = Open();
    ASSERT_NE(hsm, nullptr);
    ASSERT_TRUE(hsm->GenerateAesKey("k1").ok());
  }
  const auto [exit_code, output] =
      Pkcs11Tool("--keygen --key-type AES:32 --id 6b31 --label impostor");  // id "k1"
  ASSERT_EQ(exit_code, 0) << output;
  auto hsm = token_->OpenHsm();
  ASSERT_FALSE(hsm.ok());
  EXPECT_EQ(hsm.status().code(), absl::StatusCode::kFailedPrecondition) << hsm.status();
  EXPECT_THAT(hsm.status().message(), HasSubstr("'k1'"));
}

TEST_F(Pkcs11ToolTest, SeesAnUnwrapOnlyWrappingKeyPair) {
  {
    std::unique_ptr<Pkcs11Hsm> hsm = Open();
    ASSERT_NE(hsm, nullptr);
    ASSERT_TRUE(hsm->GenerateRsaWrappingKey("w-1", 2048).ok());
  }
  const auto [exit_code, listed] = Pkcs11Tool("--list-objects --type privkey");
  ASSERT_EQ(exit_code, 0) << listed;
  EXPECT_THAT(listed, HasSubstr("label:      kmsd-wrap:w-1"));
  EXPECT_THAT(listed, HasSubstr("ID:         772d31"));  // hex of "w-1"
  EXPECT_THAT(ListedValue(listed, "Usage:"), ElementsAre("unwrap"));
  EXPECT_THAT(ListedValue(listed, "Access:"),
              AllOf(Contains("sensitive"), Contains("always sensitive"),
                    Contains("never extractable"), Not(Contains("extractable"))));
  const auto [public_exit_code, public_listing] = Pkcs11Tool("--list-objects --type pubkey");
  ASSERT_EQ(public_exit_code, 0) << public_listing;
  EXPECT_THAT(public_listing, HasSubstr("ID:         772d31"));
  EXPECT_THAT(ListedValue(public_listing, "Usage:"), AllOf(Contains("encrypt"), Contains("wrap")));
}

// The fixture itself: SoftHSM's one-configuration-per-initialisation rule.
TEST(SoftHsmTokenTest, TokensCanBeCreatedOneAfterAnother) {
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    auto token = SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    auto hsm = (*token)->OpenHsm();
    ASSERT_TRUE(hsm.ok()) << hsm.status();
    // A fresh directory each time, so the previous token's key is not here.
    EXPECT_THAT((*hsm)->ListKeyIds(), IsEmpty());
    ASSERT_TRUE((*hsm)->GenerateAesKey(absl::StrCat("key-", i)).ok());
  }
}

TEST(SoftHsmTokenTest, OnlyOneTokenAtATime) {
  auto first = SoftHsmToken::Create();
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = SoftHsmToken::Create("other");
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  first->reset();
  auto third = SoftHsmToken::Create("other");
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(SoftHsmTokenTest, CreateFailsWhileAnHsmOfAnEarlierTokenIsOpen) {
  auto first = SoftHsmToken::Create();
  ASSERT_TRUE(first.ok()) << first.status();
  auto hsm = (*first)->OpenHsm();
  ASSERT_TRUE(hsm.ok()) << hsm.status();
  first->reset();  // wrong order: the Hsm still holds SoftHSM initialised

  auto second = SoftHsmToken::Create();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr("still open"));

  hsm->reset();  // the module is finalised now
  auto third = SoftHsmToken::Create();
  ASSERT_TRUE(third.ok()) << third.status();
  auto reopened = (*third)->OpenHsm();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_THAT((*reopened)->ListKeyIds(), IsEmpty());
}

TEST(SoftHsmTokenTest, DestructorRemovesTheDirectory) {
  std::string dir;
  {
    auto token = SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    dir = (*token)->dir();
    EXPECT_EQ(access((*token)->conf_path().c_str(), R_OK), 0);
  }
  EXPECT_NE(access(dir.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace kms::hsm
