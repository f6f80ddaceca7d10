// End-to-end: the real kmsd binary on a free loopback port, a fresh data
// directory (SoftHSM token + SQLite) per test, driven through the C++ client.
#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/kms_client.h"
#include "daemon/common/errors.h"
#include "tests/testing/status_matchers.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/testing/daemon_process.h"

namespace kms {
namespace {

using client::KmsClient;
using testing::DaemonProcess;
using testing::TempDir;

using DaemonE2eTest = testing::KmsdE2eTest;
using testing::FakeTimeEnv;
using testing::HaveFaketime;

TEST_F(DaemonE2eTest, FirstStartCreatesTheDataDirectory) {
  struct stat st {};
  ASSERT_EQ(::stat((data_dir_ + "/user.pin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((data_dir_ + "/so.pin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(::stat((data_dir_ + "/softhsm2.conf").c_str(), &st), 0);
  EXPECT_EQ(::stat((data_dir_ + "/tokens").c_str(), &st), 0);
  EXPECT_EQ(::stat((data_dir_ + "/kmsd.db").c_str(), &st), 0);
  ASSERT_EQ(::stat(data_dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The PIN never reaches the log.
  std::ifstream pin_file(data_dir_ + "/user.pin");
  std::string pin;
  std::getline(pin_file, pin);
  ASSERT_FALSE(pin.empty());
  EXPECT_FALSE(absl::StrContains(daemon_->ReadLog(), pin));
}

TEST_F(DaemonE2eTest, TheStartUpLogNamesTheAllocator) {
  const std::string log = daemon_->ReadLog();
#ifdef KMS_KMSD_HAS_TCMALLOC
  // A release-style build links tcmalloc (KMS_TCMALLOC); sanitizer builds do not.
  EXPECT_TRUE(absl::StrContains(log, "memory allocator: tcmalloc (heap ")) << log;
#else
  EXPECT_TRUE(absl::StrContains(log, "memory allocator: ")) << log;
  EXPECT_FALSE(absl::StrContains(log, "tcmalloc")) << log;
#endif
}

TEST_F(DaemonE2eTest, EnvelopeRoundTripWithContextOverTheWire) {
  const std::string key_id = NewKey();
  v1::GenerateDataKeyRequest r;
  r.set_key_id(key_id);
  r.set_key_spec(v1::AES_256);
  (*r.mutable_encryption_context())["service"] = "billing";
  (*r.mutable_encryption_context())["file"] = "2026-11.csv";
  auto dk = client_->GenerateDataKey(r);
  ASSERT_TRUE(dk.ok()) << dk.status();
  EXPECT_EQ(dk->plaintext().size(), 32u);
  auto plaintext = Decrypt(dk->ciphertext_blob(), {{"file", "2026-11.csv"}, {"service", "billing"}});
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  EXPECT_EQ(*plaintext, dk->plaintext());
  EXPECT_ERROR(Decrypt(dk->ciphertext_blob(), {{"service", "billing"}}), kInvalidArgument,
               "InvalidCiphertextException");
}

TEST_F(DaemonE2eTest, ErrorsCarryTheirCodeAndExceptionNameOverTheWire) {
  const std::string key_id = NewKey();
  EXPECT_ERROR(Describe("alias/nope"), kNotFound, "NotFoundException");
  EXPECT_ERROR(Describe("bogus"), kInvalidArgument, "ValidationException");
  EXPECT_ERROR(Decrypt(""), kInvalidArgument, "ValidationException");
  EXPECT_ERROR(Decrypt("garbage"), kInvalidArgument, "InvalidCiphertextException");
  v1::CreateAliasRequest alias;
  alias.set_alias_name("alias/aws/x");
  alias.set_target_key_id(key_id);
  EXPECT_ERROR(client_->CreateAlias(alias), kInvalidArgument, "InvalidAliasNameException");
  alias.set_alias_name("alias/x");
  ASSERT_TRUE(client_->CreateAlias(alias).ok());
  EXPECT_ERROR(client_->CreateAlias(alias), kAlreadyExists, "AlreadyExistsException");
  v1::DisableKeyRequest disable;
  disable.set_key_id("alias/x");
  ASSERT_TRUE(client_->DisableKey(disable).ok());
  v1::EncryptRequest encrypt;
  encrypt.set_key_id("alias/x");
  encrypt.set_plaintext("p");
  EXPECT_ERROR(client_->Encrypt(encrypt), kFailedPrecondition, "DisabledException");
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(key_id);
  schedule.set_pending_window_in_days(3);
  auto refused = client_->ScheduleKeyDeletion(schedule);
  EXPECT_ERROR(refused, kInvalidArgument, "ValidationException");
  EXPECT_EQ(refused.status().message(), "pending_window_in_days must be 7..30, got 3");
  v1::GenerateRandomRequest random;
  random.set_number_of_bytes(2000);
  EXPECT_ERROR(client_->GenerateRandom(random), kInvalidArgument, "ValidationException");
}

TEST_F(DaemonE2eTest, AliasesMoveAndGoAndKeysPage) {
  const std::string a = NewKey();
  const std::string b = NewKey();
  v1::CreateAliasRequest create;
  create.set_alias_name("alias/moving");
  create.set_target_key_id(a);
  ASSERT_TRUE(client_->CreateAlias(create).ok());
  v1::UpdateAliasRequest update;
  update.set_alias_name("alias/moving");
  update.set_target_key_id(b);
  ASSERT_TRUE(client_->UpdateAlias(update).ok());
  EXPECT_EQ(Describe("alias/moving")->key_id(), b);
  v1::DeleteAliasRequest del;
  del.set_alias_name("alias/moving");
  ASSERT_TRUE(client_->DeleteAlias(del).ok());
  EXPECT_ERROR(Describe("alias/moving"), kNotFound, "NotFoundException");
  EXPECT_EQ(Describe(b)->key_state(), v1::ENABLED);  // the key outlives its alias

  v1::ListKeysRequest list;
  list.set_limit(1);
  auto first = client_->ListKeys(list);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->keys_size(), 1);
  EXPECT_TRUE(first->truncated());
  list.set_marker(first->next_marker());
  auto second = client_->ListKeys(list);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->keys_size(), 1);
  EXPECT_FALSE(second->truncated());
  EXPECT_NE(first->keys(0).key_id(), second->keys(0).key_id());
}

TEST_F(DaemonE2eTest, DataKeyWithoutPlaintextDecryptsLater) {
  const std::string key_id = NewKey();
  v1::GenerateDataKeyWithoutPlaintextRequest r;
  r.set_key_id(key_id);
  r.set_key_spec(v1::AES_128);
  (*r.mutable_encryption_context())["stage"] = "later";
  auto dk = client_->GenerateDataKeyWithoutPlaintext(r);
  ASSERT_TRUE(dk.ok()) << dk.status();
  auto plaintext = Decrypt(dk->ciphertext_blob(), {{"stage", "later"}});
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();
  EXPECT_EQ(plaintext->size(), 16u);
}

// Bad input over the wire: each gets its code and exception name, and none
// changes anything (the key list and the key's state are as before).
TEST_F(DaemonE2eTest, BadInputIsRefusedOverTheWireAndChangesNothing) {
  const std::string key_id = NewKey("untouched");
  struct Case {
    std::string name;
    std::function<absl::Status()> call;
    absl::StatusCode code;
    std::string type;
  };
  auto& c = *client_;
  std::vector<Case> cases = {
      {"CreateKeyLongDescription", [&] { v1::CreateKeyRequest r; r.set_description(std::string(9000, 'd')); return c.CreateKey(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"CreateKeyBadTag", [&] { v1::CreateKeyRequest r; r.add_tags()->set_tag_key(""); return c.CreateKey(r).status(); }, absl::StatusCode::kInvalidArgument, "TagException"},
      {"ListKeysLimitZero", [&] { v1::ListKeysRequest r; r.set_limit(0); return c.ListKeys(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"ListKeysLimitTooBig", [&] { v1::ListKeysRequest r; r.set_limit(1001); return c.ListKeys(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"DescribeMissingKeyId", [&] { return c.DescribeKey(v1::DescribeKeyRequest()).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"ScheduleWindowTooLong", [&] { v1::ScheduleKeyDeletionRequest r; r.set_key_id(key_id); r.set_pending_window_in_days(31); return c.ScheduleKeyDeletion(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"CancelWhenNotPending", [&] { v1::CancelKeyDeletionRequest r; r.set_key_id(key_id); return c.CancelKeyDeletion(r).status(); }, absl::StatusCode::kFailedPrecondition, "KMSInvalidStateException"},
      {"AliasWithoutPrefix", [&] { v1::CreateAliasRequest r; r.set_alias_name("x"); r.set_target_key_id(key_id); return c.CreateAlias(r).status(); }, absl::StatusCode::kInvalidArgument, "InvalidAliasNameException"},
      {"UpdateMissingAlias", [&] { v1::UpdateAliasRequest r; r.set_alias_name("alias/none"); r.set_target_key_id(key_id); return c.UpdateAlias(r).status(); }, absl::StatusCode::kNotFound, "NotFoundException"},
      {"DeleteMissingAlias", [&] { v1::DeleteAliasRequest r; r.set_alias_name("alias/none"); return c.DeleteAlias(r).status(); }, absl::StatusCode::kNotFound, "NotFoundException"},
      {"UntagNothing", [&] { v1::UntagResourceRequest r; r.set_key_id(key_id); return c.UntagResource(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"EncryptEmpty", [&] { v1::EncryptRequest r; r.set_key_id(key_id); return c.Encrypt(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"EncryptTooBig", [&] { v1::EncryptRequest r; r.set_key_id(key_id); r.set_plaintext(std::string(4097, 'p')); return c.Encrypt(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"DataKeyBothSizes", [&] { v1::GenerateDataKeyRequest r; r.set_key_id(key_id); r.set_key_spec(v1::AES_256); r.set_number_of_bytes(8); return c.GenerateDataKey(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"DataKeyNoSize", [&] { v1::GenerateDataKeyWithoutPlaintextRequest r; r.set_key_id(key_id); return c.GenerateDataKeyWithoutPlaintext(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"ReEncryptNoDestination", [&] { v1::ReEncryptRequest r; r.set_ciphertext_blob("x"); return c.ReEncrypt(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"RandomZero", [&] { v1::GenerateRandomRequest r; return c.GenerateRandom(r).status(); }, absl::StatusCode::kInvalidArgument, "ValidationException"},
      {"UnknownKey", [&] { v1::EnableKeyRequest r; r.set_key_id("00000000-0000-4000-8000-000000000000"); return c.EnableKey(r).status(); }, absl::StatusCode::kNotFound, "NotFoundException"},
  };
  for (const Case& test : cases) {
    EXPECT_TRUE(testing::HasError(test.call(), test.code, test.type)) << test.name;
  }
  auto listed = client_->ListKeys(v1::ListKeysRequest());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->keys_size(), 1);
  EXPECT_EQ(Describe(key_id)->key_state(), v1::ENABLED);
  EXPECT_EQ(Describe(key_id)->description(), "untouched");
}

TEST_F(DaemonE2eTest, RestartKeepsKeysAliasesTagsAndStates) {
  const std::string enabled = NewKey("stays enabled");
  const std::string disabled = NewKey("gets disabled");
  const std::string doomed = NewKey("pending deletion");
  v1::CreateAliasRequest alias;
  alias.set_alias_name("alias/kept");
  alias.set_target_key_id(enabled);
  ASSERT_TRUE(client_->CreateAlias(alias).ok());
  v1::TagResourceRequest tag;
  tag.set_key_id(enabled);
  auto* t = tag.add_tags();
  t->set_tag_key("owner");
  t->set_tag_value("ops");
  ASSERT_TRUE(client_->TagResource(tag).ok());
  v1::DisableKeyRequest disable;
  disable.set_key_id(disabled);
  ASSERT_TRUE(client_->DisableKey(disable).ok());
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(doomed);
  auto scheduled = client_->ScheduleKeyDeletion(schedule);
  ASSERT_TRUE(scheduled.ok());
  v1::EncryptRequest encrypt;
  encrypt.set_key_id("alias/kept");
  encrypt.set_plaintext("survives restarts");
  auto blob = client_->Encrypt(encrypt);
  ASSERT_TRUE(blob.ok());

  Restart();

  EXPECT_EQ(Describe("alias/kept")->key_id(), enabled);
  EXPECT_EQ(Describe(enabled)->key_state(), v1::ENABLED);
  EXPECT_EQ(Describe(disabled)->key_state(), v1::DISABLED);
  EXPECT_EQ(Describe(doomed)->key_state(), v1::PENDING_DELETION);
  EXPECT_EQ(Describe(doomed)->deletion_date().seconds(), scheduled->deletion_date().seconds());
  EXPECT_EQ(Describe(enabled)->description(), "stays enabled");
  v1::ListResourceTagsRequest tags;
  tags.set_key_id(enabled);
  auto listed = client_->ListResourceTags(tags);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->tags_size(), 1);
  EXPECT_EQ(listed->tags(0).tag_value(), "ops");
  EXPECT_EQ(*Decrypt(blob->ciphertext_blob()), "survives restarts");
}

TEST_F(DaemonE2eTest, AnsweredDataKeyDecryptsAfterKill9) {
  const std::string key_id = NewKey();
  v1::GenerateDataKeyRequest r;
  r.set_key_id(key_id);
  r.set_number_of_bytes(64);
  (*r.mutable_encryption_context())["k"] = "v";
  auto dk = client_->GenerateDataKey(r);
  ASSERT_TRUE(dk.ok());
  auto killed = daemon_->Stop(SIGKILL);
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(*killed, 128 + SIGKILL);
  StartDaemon();
  auto plaintext = Decrypt(dk->ciphertext_blob(), {{"k", "v"}});
  ASSERT_TRUE(plaintext.ok()) << plaintext.status() << daemon_->ReadLog();
  EXPECT_EQ(*plaintext, dk->plaintext());
}

TEST_F(DaemonE2eTest, KeyCreatedJustBeforeKill9IsUsableAfterRestart) {
  std::vector<std::string> keys;
  for (int i = 0; i < 5; ++i) keys.push_back(NewKey());
  ASSERT_TRUE(daemon_->Stop(SIGKILL).ok());
  StartDaemon();
  for (const auto& key : keys) {
    v1::EncryptRequest e;
    e.set_key_id(key);
    e.set_plaintext("p");
    EXPECT_TRUE(client_->Encrypt(e).ok()) << key;
  }
}

TEST_F(DaemonE2eTest, KeyPastItsDeletionDateIsErasedAtStartUp) {
  if (!HaveFaketime()) GTEST_SKIP() << "libfaketime not installed";
  const std::string doomed = NewKey("doomed");
  const std::string kept = NewKey("kept");
  v1::EncryptRequest e;
  e.set_key_id(doomed);
  e.set_plaintext("gone for good");
  auto blob = client_->Encrypt(e);
  ASSERT_TRUE(blob.ok());
  v1::ScheduleKeyDeletionRequest schedule;
  schedule.set_key_id(doomed);
  schedule.set_pending_window_in_days(7);
  ASSERT_TRUE(client_->ScheduleKeyDeletion(schedule).ok());

  // Six days later the key is still there, pending deletion.
  Restart(FakeTimeEnv("+6d"));
  EXPECT_EQ(Describe(doomed)->key_state(), v1::PENDING_DELETION);

  // Eight days later the daemon erases it while starting.
  Restart(FakeTimeEnv("+8d"));
  EXPECT_ERROR(Describe(doomed), kNotFound, "NotFoundException");
  EXPECT_ERROR(Decrypt(blob->ciphertext_blob()), kInvalidArgument, "InvalidCiphertextException");
  EXPECT_EQ(Describe(kept)->key_state(), v1::ENABLED);
  EXPECT_TRUE(absl::StrContains(daemon_->ReadLog(), "key " + doomed + " deleted"));

  // And it stays gone at the real time.
  Restart();
  EXPECT_ERROR(Describe(doomed), kNotFound, "NotFoundException");
}

TEST_F(DaemonE2eTest, ManyConcurrentClientsAllSucceed) {
  const std::string key_id = NewKey();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        v1::GenerateDataKeyRequest r;
        r.set_key_id(key_id);
        r.set_key_spec(v1::AES_256);
        (*r.mutable_encryption_context())["thread"] = std::to_string(t);
        auto dk = client_->GenerateDataKey(r);
        if (!dk.ok()) {
          ++failures;
          continue;
        }
        auto plaintext = Decrypt(dk->ciphertext_blob(), {{"thread", std::to_string(t)}});
        if (!plaintext.ok() || *plaintext != dk->plaintext()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// Inspects the token the way an operator would (README: "Inspecting the
// token"). Every CMK object must be sensitive, never extractable and private:
// private objects are invisible without logging in.
TEST_F(DaemonE2eTest, TokenObjectsAreSensitiveNeverExtractableAndPrivate) {
  const std::string pkcs11_tool = "/usr/bin/pkcs11-tool";
  struct stat st {};
  if (::stat(pkcs11_tool.c_str(), &st) != 0) GTEST_SKIP() << "pkcs11-tool not installed";
  std::vector<std::string> versions;
  for (int i = 0; i < 3; ++i) versions.push_back(Describe(NewKey())->current_key_version_id());
  v1::CreateKeyRequest external;
  external.set_origin(v1::EXTERNAL);
  ASSERT_TRUE(client_->CreateKey(external).ok());
  // One process owns a SoftHSM token at a time: stop kmsd before looking.
  ASSERT_EQ(*daemon_->Stop(SIGTERM), 0);

  std::ifstream pin_file(data_dir_ + "/user.pin");
  std::string pin;
  std::getline(pin_file, pin);
  const std::vector<std::string> env = {"SOFTHSM2_CONF=" + data_dir_ + "/softhsm2.conf"};
  const std::vector<std::string> base = {pkcs11_tool, "--module", KMS_SOFTHSM_MODULE,
                                         "--token-label", "kmsd", "--list-objects"};
  auto anonymous = testing::RunCommand(base, env);
  ASSERT_EQ(anonymous.exit_code, 0) << anonymous.err;
  EXPECT_FALSE(absl::StrContains(anonymous.out, "Secret Key Object")) << anonymous.out;

  std::vector<std::string> login = base;
  login.insert(login.end(), {"--login", "--pin", pin});
  auto listed = testing::RunCommand(login, env);
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  std::vector<std::string> blocks = absl::StrSplit(listed.out, "Secret Key Object");
  blocks.erase(blocks.begin());  // text before the first object
  // The CMK versions, and the key that seals the audit log's context key.
  ASSERT_EQ(blocks.size(), versions.size() + 1) << listed.out;
  EXPECT_EQ(CountCmkObjects(listed.out), static_cast<int>(versions.size())) << listed.out;
  for (const std::string& block : blocks) {
    EXPECT_TRUE(absl::StrContains(block, "AES length 32")) << block;
    EXPECT_TRUE(absl::StrContains(block, "Access:     sensitive, always sensitive, never extractable"))
        << block;
    if (!absl::StrContains(block, testing::kAuditContextKeyLabel)) {
      EXPECT_TRUE(absl::StrContains(block, "Usage:      encrypt, decrypt\n")) << block;
    }
  }
  for (const std::string& version : versions) {
    EXPECT_TRUE(absl::StrContains(listed.out, "label:      kmsd:" + version)) << version;
  }
  // The audit checkpoint signing key: a private key that signs and never
  // leaves the token.
  std::vector<std::string> private_keys = absl::StrSplit(listed.out, "Private Key Object");
  ASSERT_EQ(private_keys.size(), 2u) << listed.out;
  EXPECT_TRUE(absl::StrContains(private_keys[1], testing::kAuditSigningKeyLabel)) << private_keys[1];
  EXPECT_TRUE(absl::StrContains(private_keys[1], "EC")) << private_keys[1];
  EXPECT_TRUE(absl::StrContains(private_keys[1], "sensitive, always sensitive, never extractable"))
      << private_keys[1];
}

// SIGTERM under load: calls already answered are durable, calls refused are
// refused cleanly, and nothing in between. A refused call is UNAVAILABLE
// (the listener is gone) or CANCELLED (it reached the server after shutdown
// began, and gRPC refused it before any handler ran).
TEST_F(DaemonE2eTest, SigtermUnderLoadLosesNoAnsweredDataKey) {
  const std::string key_id = NewKey();
  struct Answer {
    std::string blob;
    std::string plaintext;
  };
  absl::Mutex mu;
  std::vector<Answer> answered;
  std::atomic<int> refused{0}, other{0}, started{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 400; ++i) {
        v1::GenerateDataKeyRequest r;
        r.set_key_id(key_id);
        r.set_key_spec(v1::AES_256);
        ++started;
        auto dk = client_->GenerateDataKey(r);
        if (dk.ok()) {
          absl::MutexLock lock(&mu);
          answered.push_back({dk->ciphertext_blob(), dk->plaintext()});
        } else if (absl::IsUnavailable(dk.status()) || absl::IsCancelled(dk.status())) {
          ++refused;
        } else {
          ++other;
          ADD_FAILURE() << dk.status();
        }
      }
    });
  }
  // Signal once the load is well under way; the polling has no clock to
  // inject (the daemon is another process).
  while (started.load() < 200) std::this_thread::yield();
  ASSERT_EQ(::kill(daemon_->pid(), SIGTERM), 0);
  for (auto& t : threads) t.join();
  auto code = daemon_->Stop(SIGTERM);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << daemon_->ReadLog();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(refused.load(), 0) << "the signal came after all the work";
  ASSERT_FALSE(answered.empty());

  StartDaemon();
  for (const Answer& a : answered) {
    auto plaintext = Decrypt(a.blob);
    ASSERT_TRUE(plaintext.ok()) << plaintext.status();
    EXPECT_EQ(*plaintext, a.plaintext);
  }
}

TEST_F(DaemonE2eTest, SigtermShutsDownCleanly) {
  auto code = daemon_->Stop(SIGTERM);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  EXPECT_TRUE(absl::StrContains(daemon_->ReadLog(), "kmsd stopped"));
}

TEST(DaemonConfigE2eTest, BadConfigIsOneClearLineAndExitCodeTwo) {
  auto dir = TempDir::Create("kmsd-cfg");
  ASSERT_TRUE(dir.ok());
  struct Case {
    std::string yaml;
    std::string expected;
  };
  for (const Case& c : {Case{"hsm:\n  sessions: lots\n", "hsm.sessions: must be an integer 1..64"},
                        Case{"hsm:\n  sesions: 4\n", "hsm.sesions: unknown key"},
                        Case{"log_level: loud\n", "log_level: must be debug, info, warning or error"},
                        Case{"hsm:\n  module: /x.so\n", "hsm.pin_file: set exactly one of"},
                        Case{"listen: [1, 2\n", "line"}}) {
    const std::string path = (*dir)->path() + "/kmsd.yaml";
    std::ofstream(path) << c.yaml;
    auto result = testing::RunCommand(
        {KMS_KMSD_BINARY, "--config", path, "--data-dir", (*dir)->path() + "/d"});
    EXPECT_EQ(result.exit_code, 2) << c.yaml << result.err;
    EXPECT_TRUE(absl::StrContains(result.err, c.expected)) << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
  }
  auto no_dir = testing::RunCommand({KMS_KMSD_BINARY});
  EXPECT_EQ(no_dir.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(no_dir.err, "data_dir")) << no_dir.err;
}

}  // namespace
}  // namespace kms
