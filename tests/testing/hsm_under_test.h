// Every Hsm implementation, for the suites that must pass against all of
// them (tests/hsm/hsm_conformance_test.cc, import_conformance_test.cc,
// signing_conformance_test.cc): a
// FakeHsm, a FakeHsm behind a FaultInjectingHsm with no faults set (which
// must be invisible), and Pkcs11Hsm on a fresh SoftHSM token.
//
//   class MySuite : public ::testing::TestWithParam<HsmFactory> { ... };
//   INSTANTIATE_TEST_SUITE_P(AllHsms, MySuite, AllHsmFactories(), HsmFactoryName);
#ifndef KMS_TESTS_TESTING_HSM_UNDER_TEST_H_
#define KMS_TESTS_TESTING_HSM_UNDER_TEST_H_

#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "hsm/hsm.h"
#include "hsm/pkcs11_hsm.h"
#include "tests/testing/fake_hsm.h"
#include "tests/testing/fault_injecting_hsm.h"
#include "tests/testing/softhsm_token.h"

namespace kms::testing {

// One Hsm implementation and whatever it needs to live.
class HsmUnderTest {
 public:
  virtual ~HsmUnderTest() = default;
  virtual hsm::Hsm& hsm() = 0;
  // Every object the token holds, session objects included; nullopt where
  // there is no token to count (the fakes).
  virtual std::optional<size_t> ObjectCount() { return std::nullopt; }
};

class FakeHsmUnderTest final : public HsmUnderTest {
 public:
  hsm::Hsm& hsm() override { return fake_; }

 private:
  FakeHsm fake_;
};

class UnfaultedHsmUnderTest final : public HsmUnderTest {
 public:
  hsm::Hsm& hsm() override { return wrapper_; }

 private:
  FakeHsm fake_;
  FaultInjectingHsm wrapper_{fake_};
};

class SoftHsmUnderTest final : public HsmUnderTest {
 public:
  static absl::StatusOr<std::unique_ptr<HsmUnderTest>> Create() {
    auto under_test = std::make_unique<SoftHsmUnderTest>();
    auto token = SoftHsmToken::Create();
    if (!token.ok()) return token.status();
    under_test->token_ = std::move(*token);
    auto opened = under_test->token_->OpenHsm();
    if (!opened.ok()) return opened.status();
    under_test->hsm_ = std::move(*opened);
    return under_test;
  }
  hsm::Hsm& hsm() override { return *hsm_; }
  std::optional<size_t> ObjectCount() override {
    auto count = hsm_->CountObjectsForTesting();
    EXPECT_TRUE(count.ok()) << count.status();
    return count.ok() ? std::optional<size_t>(*count) : std::nullopt;
  }

 private:
  // Declared in this order so the Hsm is closed before its token goes.
  std::unique_ptr<SoftHsmToken> token_;
  std::unique_ptr<hsm::Pkcs11Hsm> hsm_;
};

struct HsmFactory {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<HsmUnderTest>>()> make;
};

// So test names and failures say which implementation, not a byte dump.
inline void PrintTo(const HsmFactory& factory, std::ostream* os) { *os << factory.name; }

inline auto AllHsmFactories() {
  return ::testing::Values(
      HsmFactory{"FakeHsm",
                 []() -> absl::StatusOr<std::unique_ptr<HsmUnderTest>> {
                   return std::make_unique<FakeHsmUnderTest>();
                 }},
      HsmFactory{"FaultInjectingHsmWithoutFaults",
                 []() -> absl::StatusOr<std::unique_ptr<HsmUnderTest>> {
                   return std::make_unique<UnfaultedHsmUnderTest>();
                 }},
      HsmFactory{"SoftHsm", &SoftHsmUnderTest::Create});
}

inline std::string HsmFactoryName(const ::testing::TestParamInfo<HsmFactory>& info) {
  return info.param.name;
}

}  // namespace kms::testing

#endif  // KMS_TESTS_TESTING_HSM_UNDER_TEST_H_
