#include "daemon/server/data_dir.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "hsm/pkcs11_hsm.h"
#include "tests/testing/daemon_process.h"

namespace kms::server {
namespace {

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

class DataDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kmsd-datadir");
    ASSERT_TRUE(dir.ok());
    dir_ = *std::move(dir);
  }
  std::unique_ptr<testing::TempDir> dir_;
};

TEST_F(DataDirTest, FirstStartCreatesEverythingAndLaterStartsReuseIt) {
  const std::string data = dir_->path() + "/data";
  auto first = PrepareEmbeddedDataDir(data, KMS_SOFTHSM_MODULE, "kmsd");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->token_created);
  EXPECT_EQ(ModeOf(data), 0700u);
  EXPECT_EQ(ModeOf(data + "/user.pin"), 0600u);
  EXPECT_EQ(ModeOf(data + "/so.pin"), 0600u);
  EXPECT_EQ(ModeOf(data + "/softhsm2.conf"), 0600u);
  EXPECT_EQ(std::string(std::getenv("SOFTHSM2_CONF")), data + "/softhsm2.conf");
  const std::string pin = ReadLine(data + "/user.pin");
  EXPECT_EQ(pin.size(), 32u);
  EXPECT_EQ(first->user_pin.secret(), pin);

  auto second = PrepareEmbeddedDataDir(data, KMS_SOFTHSM_MODULE, "kmsd");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->token_created);
  EXPECT_EQ(ReadLine(data + "/user.pin"), pin);

  // The PIN on disk opens the token.
  hsm::Pkcs11Config config;
  config.module_path = KMS_SOFTHSM_MODULE;
  config.token_label = "kmsd";
  config.user_pin = std::move(second->user_pin);
  auto hsm = hsm::Pkcs11Hsm::Open(std::move(config));
  EXPECT_TRUE(hsm.ok()) << hsm.status();
}

TEST_F(DataDirTest, AFileInTheWayIsAClearError) {
  const std::string path = dir_->path() + "/file";
  std::ofstream(path) << "x";
  auto setup = PrepareEmbeddedDataDir(path, KMS_SOFTHSM_MODULE, "kmsd");
  EXPECT_EQ(setup.status().code(), absl::StatusCode::kFailedPrecondition) << setup.status();
}

TEST_F(DataDirTest, PinFilesAreTrimmedAndEmptyOnesRefused) {
  const std::string path = dir_->path() + "/pin";
  std::ofstream(path) << "1234\n";
  auto pin = ReadPinFile(path);
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(pin->secret(), "1234");
  std::ofstream(path, std::ios::trunc) << "\n";
  EXPECT_EQ(ReadPinFile(path).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadPinFile(dir_->path() + "/missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DataDirTest, PinFromEnvironment) {
  ::setenv("KMSD_TEST_PIN", "9876", 1);
  auto pin = ReadPinEnv("KMSD_TEST_PIN");
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(pin->secret(), "9876");
  ::unsetenv("KMSD_TEST_PIN");
  auto missing = ReadPinEnv("KMSD_TEST_PIN");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("KMSD_TEST_PIN"), absl::string_view::npos);
}

}  // namespace
}  // namespace kms::server
