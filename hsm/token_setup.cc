#include "hsm/token_setup.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"
#include "hsm/pkcs11_module.h"

namespace kms::hsm {

using internal::Annotate;
using internal::CkStatus;
using internal::Pkcs11Module;

absl::Status InitializeToken(const std::string& module_path, const std::string& label,
                             const SecretBytes& so_pin, const SecretBytes& user_pin) {
  KMS_RETURN_IF_ERROR(internal::ValidateTokenLabel(label));
  if (so_pin.empty() || user_pin.empty()) {
    return absl::InvalidArgumentError("SO PIN and user PIN must not be empty");
  }
  KMS_ASSIGN_OR_RETURN(std::shared_ptr<const Pkcs11Module> module,
                       Pkcs11Module::Load(module_path));
  CK_FUNCTION_LIST* fn = module->fn();
  const std::string where =
      absl::StrCat("token '", label, "' in PKCS#11 module '", module_path, "'");

  absl::StatusOr<CK_SLOT_ID> existing = module->FindTokenSlot(label);
  if (existing.ok()) return absl::AlreadyExistsError(absl::StrCat(where, " already exists"));
  if (existing.status().code() != absl::StatusCode::kNotFound) return existing.status();

  KMS_ASSIGN_OR_RETURN(CK_SLOT_ID free_slot, module->FindFreeSlot());
  auto padded_label = internal::PaddedLabel(label);
  KMS_RETURN_IF_ERROR(Annotate(
      CkStatus(fn->C_InitToken(free_slot, const_cast<CK_UTF8CHAR_PTR>(so_pin.data()),
                               so_pin.size(), padded_label.data()),
               "C_InitToken"),
      absl::StrCat("initialising ", where)));

  // The token may now sit in another slot (SoftHSM renumbers it from its
  // serial number): find it again by label.
  KMS_ASSIGN_OR_RETURN(CK_SLOT_ID slot, module->FindTokenSlot(label));
  CK_SESSION_HANDLE session;
  KMS_RETURN_IF_ERROR(Annotate(
      CkStatus(fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                 &session),
               "C_OpenSession"),
      absl::StrCat("setting the user PIN of ", where)));
  absl::Status status =
      CkStatus(fn->C_Login(session, CKU_SO, const_cast<CK_UTF8CHAR_PTR>(so_pin.data()),
                           so_pin.size()),
               "C_Login(SO)");
  if (status.ok()) {
    status = CkStatus(fn->C_InitPIN(session, const_cast<CK_UTF8CHAR_PTR>(user_pin.data()),
                                    user_pin.size()),
                      "C_InitPIN");
    fn->C_Logout(session);  // closing the session would log out too; be explicit
  }
  fn->C_CloseSession(session);
  KMS_RETURN_IF_ERROR(Annotate(status, absl::StrCat("setting the user PIN of ", where)));
  KMS_LOG(INFO) << "initialised " << where;
  return absl::OkStatus();
}

absl::StatusOr<bool> TokenExists(const std::string& module_path, const std::string& label) {
  KMS_RETURN_IF_ERROR(internal::ValidateTokenLabel(label));
  KMS_ASSIGN_OR_RETURN(std::shared_ptr<const Pkcs11Module> module,
                       Pkcs11Module::Load(module_path));
  absl::StatusOr<CK_SLOT_ID> slot = module->FindTokenSlot(label);
  if (slot.ok()) return true;
  if (slot.status().code() == absl::StatusCode::kNotFound) return false;
  return slot.status();
}

absl::StatusOr<std::shared_ptr<const void>> HoldModule(const std::string& module_path) {
  KMS_ASSIGN_OR_RETURN(std::shared_ptr<const Pkcs11Module> module,
                       Pkcs11Module::Load(module_path));
  return std::shared_ptr<const void>(std::move(module));
}

}  // namespace kms::hsm
