// The fixture the KeyService tests share: a KeyService over a FakeHsm (behind
// a FaultInjectingHsm), SQLite ":memory:" and a FakeClock, with helpers for
// the calls most tests make. A derived fixture may point base_hsm_ at another
// Hsm (a SoftHSM token) before calling SetUp().
#ifndef KMS_TESTS_DAEMON_SERVICE_SERVICE_FIXTURE_H_
#define KMS_TESTS_DAEMON_SERVICE_SERVICE_FIXTURE_H_

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "daemon/keystore/sqlite_key_store.h"
#include "daemon/service/key_service.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"

namespace kms::service {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = keystore::SqliteKeyStore::Open(":memory:");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    faulty_ = std::make_unique<testing::FaultInjectingHsm>(*base_hsm_);
    Restart();
  }

  // A new KeyService over the same HSM and store, as after a daemon restart;
  // picks up changes to options_.
  void Restart() { service_ = std::make_unique<KeyService>(*faulty_, *store_, clock_, options_); }

  std::string NewKey(const std::string& description = "test key") {
    v1::CreateKeyRequest request;
    request.set_description(description);
    auto response = service_->CreateKey(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->key_metadata().key_id() : "";
  }

  v1::KeyMetadata Describe(const std::string& key_id) {
    v1::DescribeKeyRequest request;
    request.set_key_id(key_id);
    auto response = service_->DescribeKey(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->key_metadata() : v1::KeyMetadata();
  }

  absl::StatusOr<std::string> Encrypt(const std::string& key_id, const std::string& plaintext,
                                      const EncryptionContext& context = {}) {
    v1::EncryptRequest request;
    request.set_key_id(key_id);
    request.set_plaintext(plaintext);
    for (const auto& [k, v] : context) (*request.mutable_encryption_context())[k] = v;
    auto response = service_->Encrypt(request);
    if (!response.ok()) return response.status();
    return response->ciphertext_blob();
  }

  absl::StatusOr<std::string> Decrypt(const std::string& blob,
                                      const EncryptionContext& context = {},
                                      const std::string& key_id = "") {
    v1::DecryptRequest request;
    request.set_ciphertext_blob(blob);
    request.set_key_id(key_id);
    for (const auto& [k, v] : context) (*request.mutable_encryption_context())[k] = v;
    auto response = service_->Decrypt(request);
    if (!response.ok()) return response.status();
    return response->plaintext();
  }

  ServiceOptions options_;
  testing::FakeClock clock_;
  testing::FakeHsm fake_hsm_;
  hsm::Hsm* base_hsm_ = &fake_hsm_;  // what faulty_ wraps
  std::unique_ptr<testing::FaultInjectingHsm> faulty_;
  std::unique_ptr<keystore::SqliteKeyStore> store_;
  std::unique_ptr<KeyService> service_;
};

}  // namespace kms::service

#endif  // KMS_TESTS_DAEMON_SERVICE_SERVICE_FIXTURE_H_
