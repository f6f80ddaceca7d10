// FaultInjectingHsm: wraps any Hsm and makes chosen calls fail, the way
// LevelDB's ErrorEnv wraps its Env. For testing how services handle an HSM
// that is briefly gone (kUnavailable), reports internal errors, or fails half
// way through a multi-step change.
//
//   FakeHsm fake;
//   FaultInjectingHsm hsm(fake);
//   hsm.FailOperation("GenerateAesKey", absl::UnavailableError("HSM down"));
//   hsm.FailNthCall(3, absl::InternalError("boom"));   // the 3rd call from now
//   hsm.FailOperation("GenerateAesKey", absl::UnavailableError("lost reply"),
//                     FaultInjectingHsm::When::kAfterCall);  // key made, error seen
//
// A fault fires before the call reaches the wrapped Hsm (nothing happens
// there), or, with When::kAfterCall, after it (the call takes effect but the
// caller sees the error: a crash or lost reply right after the HSM step).
//
// HasKey, ListKeyIds, ListWrappingKeyIds, ListSigningKeyIds and
// SupportedWrappingAlgorithms cannot report errors: they are counted but never fail,
// and FailNthCall counts only the fallible calls (all the others).
//
// Does not own the wrapped Hsm, which must outlive it. Thread-safe; faults
// and counters are shared by all threads, so the "Nth call" is the Nth in
// whatever order concurrent calls arrive.
#ifndef KMS_TESTS_TESTING_FAULT_INJECTING_HSM_H_
#define KMS_TESTS_TESTING_FAULT_INJECTING_HSM_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/secret_bytes.h"
#include "gtest/gtest.h"
#include "hsm/hsm.h"

namespace kms::testing {

class FaultInjectingHsm final : public hsm::Hsm {
 public:
  enum class When { kBeforeCall, kAfterCall };

  // The operation names FailOperation and CallCount accept.
  static constexpr absl::string_view kGenerateAesKey = "GenerateAesKey";
  static constexpr absl::string_view kDestroyKey = "DestroyKey";
  static constexpr absl::string_view kHasKey = "HasKey";
  static constexpr absl::string_view kListKeyIds = "ListKeyIds";
  static constexpr absl::string_view kGetKeyAttributes = "GetKeyAttributes";
  static constexpr absl::string_view kEncryptGcm = "EncryptGcm";
  static constexpr absl::string_view kDecryptGcm = "DecryptGcm";
  static constexpr absl::string_view kGenerateRandom = "GenerateRandom";
  static constexpr absl::string_view kSupportedWrappingAlgorithms =
      "SupportedWrappingAlgorithms";
  static constexpr absl::string_view kGenerateRsaWrappingKey = "GenerateRsaWrappingKey";
  static constexpr absl::string_view kListWrappingKeyIds = "ListWrappingKeyIds";
  static constexpr absl::string_view kGetPublicKeyDer = "GetPublicKeyDer";
  static constexpr absl::string_view kUnwrapAesKey = "UnwrapAesKey";
  static constexpr absl::string_view kKeyCheckValue = "KeyCheckValue";
  static constexpr absl::string_view kKeyFingerprint = "KeyFingerprint";
  static constexpr absl::string_view kGenerateEcSigningKey = "GenerateEcSigningKey";
  static constexpr absl::string_view kListSigningKeyIds = "ListSigningKeyIds";
  static constexpr absl::string_view kSignEcdsaP256Sha256 = "SignEcdsaP256Sha256";

  explicit FaultInjectingHsm(hsm::Hsm& target) : target_(target) {}
  FaultInjectingHsm(const FaultInjectingHsm&) = delete;
  FaultInjectingHsm& operator=(const FaultInjectingHsm&) = delete;

  // Fails the `n`th fallible call from now (n >= 1) with `status`, once.
  void FailNthCall(int n, absl::Status status, When when = When::kBeforeCall) {
    EXPECT_GE(n, 1) << "FailNthCall counts from 1";
    EXPECT_FALSE(status.ok()) << "a fault needs an error status";
    absl::MutexLock lock(&mu_);
    nth_fault_ = NthFault{fallible_calls_ + n, std::move(status), when};
  }

  // Fails every call to `operation` (one of the k* names above) with `status`
  // until ClearFaults() or another FailOperation for it.
  void FailOperation(absl::string_view operation, absl::Status status,
                     When when = When::kBeforeCall) {
    EXPECT_TRUE(IsFallible(operation))
        << "not a fallible Hsm operation: '" << operation << "'";
    EXPECT_FALSE(status.ok()) << "a fault needs an error status";
    absl::MutexLock lock(&mu_);
    operation_faults_[std::string(operation)] = Fault{std::move(status), when};
  }

  // Fails every fallible call with `status` until ClearFaults(): the HSM is
  // gone.
  void FailAllCalls(absl::Status status) {
    EXPECT_FALSE(status.ok()) << "a fault needs an error status";
    absl::MutexLock lock(&mu_);
    all_fault_ = std::move(status);
  }

  // Removes every fault. Counters keep counting.
  void ClearFaults() {
    absl::MutexLock lock(&mu_);
    nth_fault_.reset();
    operation_faults_.clear();
    all_fault_.reset();
  }

  // Calls made so far (failed ones included), in total or to one operation.
  int64_t CallCount() const {
    absl::MutexLock lock(&mu_);
    int64_t total = 0;
    for (const auto& [name, count] : calls_) total += count;
    return total;
  }
  int64_t CallCount(absl::string_view operation) const {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(std::string(operation));
    return it == calls_.end() ? 0 : it->second;
  }
  // Faults that fired so far.
  int64_t InjectedFaultCount() const {
    absl::MutexLock lock(&mu_);
    return injected_;
  }

  // hsm::Hsm.
  absl::Status GenerateAesKey(absl::string_view object_id) override {
    return Run(kGenerateAesKey, [&] { return target_.GenerateAesKey(object_id); });
  }
  absl::Status DestroyKey(absl::string_view object_id) override {
    return Run(kDestroyKey, [&] { return target_.DestroyKey(object_id); });
  }
  bool HasKey(absl::string_view object_id) override {
    Count(kHasKey);
    return target_.HasKey(object_id);
  }
  std::vector<std::string> ListKeyIds() override {
    Count(kListKeyIds);
    return target_.ListKeyIds();
  }
  absl::StatusOr<hsm::KeyAttributes> GetKeyAttributes(absl::string_view object_id) override {
    return Run(kGetKeyAttributes, [&] { return target_.GetKeyAttributes(object_id); });
  }
  absl::StatusOr<std::string> EncryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view plaintext,
                                         absl::string_view aad) override {
    return Run(kEncryptGcm,
               [&] { return target_.EncryptGcm(object_id, iv, plaintext, aad); });
  }
  absl::StatusOr<SecretBytes> DecryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view ciphertext,
                                         absl::string_view aad) override {
    return Run(kDecryptGcm,
               [&] { return target_.DecryptGcm(object_id, iv, ciphertext, aad); });
  }
  absl::StatusOr<SecretBytes> GenerateRandom(size_t length) override {
    return Run(kGenerateRandom, [&] { return target_.GenerateRandom(length); });
  }
  std::vector<hsm::WrappingAlgorithm> SupportedWrappingAlgorithms() override {
    Count(kSupportedWrappingAlgorithms);
    return target_.SupportedWrappingAlgorithms();
  }
  absl::Status GenerateRsaWrappingKey(absl::string_view object_id, int modulus_bits) override {
    return Run(kGenerateRsaWrappingKey,
               [&] { return target_.GenerateRsaWrappingKey(object_id, modulus_bits); });
  }
  std::vector<std::string> ListWrappingKeyIds() override {
    Count(kListWrappingKeyIds);
    return target_.ListWrappingKeyIds();
  }
  absl::StatusOr<std::string> GetPublicKeyDer(absl::string_view object_id) override {
    return Run(kGetPublicKeyDer, [&] { return target_.GetPublicKeyDer(object_id); });
  }
  absl::Status UnwrapAesKey(absl::string_view wrapping_key_id,
                            hsm::WrappingAlgorithm algorithm, absl::string_view wrapped,
                            absl::string_view new_object_id) override {
    return Run(kUnwrapAesKey, [&] {
      return target_.UnwrapAesKey(wrapping_key_id, algorithm, wrapped, new_object_id);
    });
  }
  absl::StatusOr<std::string> KeyCheckValue(absl::string_view object_id) override {
    return Run(kKeyCheckValue, [&] { return target_.KeyCheckValue(object_id); });
  }
  absl::StatusOr<std::string> KeyFingerprint(absl::string_view object_id) override {
    return Run(kKeyFingerprint, [&] { return target_.KeyFingerprint(object_id); });
  }
  absl::Status GenerateEcSigningKey(absl::string_view object_id) override {
    return Run(kGenerateEcSigningKey, [&] { return target_.GenerateEcSigningKey(object_id); });
  }
  std::vector<std::string> ListSigningKeyIds() override {
    Count(kListSigningKeyIds);
    return target_.ListSigningKeyIds();
  }
  absl::StatusOr<std::string> SignEcdsaP256Sha256(absl::string_view object_id,
                                                  absl::string_view message) override {
    return Run(kSignEcdsaP256Sha256,
               [&] { return target_.SignEcdsaP256Sha256(object_id, message); });
  }

 private:
  struct Fault {
    absl::Status status;
    When when;
  };
  struct NthFault {
    int64_t call;  // fires when fallible_calls_ reaches this
    absl::Status status;
    When when;
  };

  static bool IsFallible(absl::string_view operation) {
    for (absl::string_view name :
         {kGenerateAesKey, kDestroyKey, kGetKeyAttributes, kEncryptGcm, kDecryptGcm,
          kGenerateRandom, kGenerateRsaWrappingKey, kGetPublicKeyDer, kUnwrapAesKey,
          kKeyCheckValue, kKeyFingerprint, kGenerateEcSigningKey, kSignEcdsaP256Sha256}) {
      if (operation == name) return true;
    }
    return false;
  }

  void Count(absl::string_view operation) {
    absl::MutexLock lock(&mu_);
    ++calls_[std::string(operation)];
  }

  // Counts a fallible call and picks the fault that applies to it, if any.
  std::optional<Fault> NextFault(absl::string_view operation) {
    absl::MutexLock lock(&mu_);
    ++calls_[std::string(operation)];
    ++fallible_calls_;
    std::optional<Fault> fault;
    if (all_fault_.has_value()) {
      fault = Fault{*all_fault_, When::kBeforeCall};
    } else if (nth_fault_.has_value() && nth_fault_->call == fallible_calls_) {
      fault = Fault{nth_fault_->status, nth_fault_->when};
      nth_fault_.reset();
    } else if (auto it = operation_faults_.find(std::string(operation));
               it != operation_faults_.end()) {
      fault = it->second;
    }
    if (fault.has_value()) ++injected_;
    return fault;
  }

  // Runs `call` on the target unless a fault says otherwise. `call` returns
  // absl::Status or absl::StatusOr<T>; both convert from an error status.
  template <typename Call>
  auto Run(absl::string_view operation, Call call) -> decltype(call()) {
    std::optional<Fault> fault = NextFault(operation);
    if (fault.has_value() && fault->when == When::kBeforeCall) return fault->status;
    auto result = call();
    if (fault.has_value()) return fault->status;  // kAfterCall: the work is done
    return result;
  }

  hsm::Hsm& target_;
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> calls_ ABSL_GUARDED_BY(mu_);
  int64_t fallible_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t injected_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<NthFault> nth_fault_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Fault> operation_faults_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> all_fault_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kms::testing

#endif  // KMS_TESTS_TESTING_FAULT_INJECTING_HSM_H_
