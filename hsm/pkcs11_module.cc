#include "hsm/pkcs11_module.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"

namespace kms::hsm::internal {
namespace {

// PKCS#11 3.0's code for a failed AEAD decryption; p11-kit's 2.40 header
// lacks it, and 3.0 modules return it for a GCM tag mismatch.
constexpr CK_RV kCkrAeadDecryptFailed = 0x35UL;

// One loaded module and how many references Load() has handed out.
struct Entry {
  Pkcs11Module* module;
  int references;
};

// The process-wide registry of loaded modules, keyed by dlopen handle so that
// two paths naming the same file (a symlink, say) share one initialisation.
// Global because C_Initialize / C_Finalize are global per module and process
// (see the header). Never destroyed: a module may be released during static
// destruction.
struct Registry {
  absl::Mutex mu;
  std::map<void*, Entry> modules ABSL_GUARDED_BY(mu);
};

Registry& GlobalRegistry() {
  static Registry* const registry = new Registry;
  return *registry;
}

std::string DlError() {
  const char* error = dlerror();
  return error != nullptr ? error : "unknown dlopen error";
}

}  // namespace

Pkcs11Module::Pkcs11Module(std::string path, void* library, CK_FUNCTION_LIST* functions,
                           bool finalize_on_release)
    : path_(std::move(path)),
      library_(library),
      functions_(functions),
      finalize_on_release_(finalize_on_release) {}

Pkcs11Module::~Pkcs11Module() = default;

absl::StatusOr<std::shared_ptr<const Pkcs11Module>> Pkcs11Module::Load(
    const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("PKCS#11 module path is empty");
  Registry& registry = GlobalRegistry();
  // Loading and initialising happen under the registry lock, so a concurrent
  // Release() cannot finalise the module between our dlopen and C_Initialize.
  absl::MutexLock lock(&registry.mu);

  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load PKCS#11 module '", path, "': ", DlError()));
  }
  auto it = registry.modules.find(library);
  if (it != registry.modules.end()) {
    // The registry already holds a dlopen reference for this file.
    dlclose(library);
    ++it->second.references;
    return std::shared_ptr<const Pkcs11Module>(it->second.module, &Pkcs11Module::Release);
  }

  auto get_function_list =
      reinterpret_cast<CK_C_GetFunctionList>(dlsym(library, "C_GetFunctionList"));
  if (get_function_list == nullptr) {
    dlclose(library);
    return absl::FailedPreconditionError(absl::StrCat(
        "'", path, "' is not a PKCS#11 module: it has no C_GetFunctionList"));
  }
  CK_FUNCTION_LIST* functions = nullptr;
  absl::Status status = CkStatus(get_function_list(&functions), "C_GetFunctionList");
  if (status.ok() && functions == nullptr) {
    status = absl::InternalError("C_GetFunctionList returned no function list");
  }
  if (!status.ok()) {
    dlclose(library);
    return Annotate(status, absl::StrCat("loading PKCS#11 module '", path, "'"));
  }

  // The module must use OS locking: kmsd calls it from many threads, and
  // SoftHSM crashes under threads when C_Initialize gets NULL arguments.
  CK_C_INITIALIZE_ARGS args;
  std::memset(&args, 0, sizeof(args));
  args.flags = CKF_OS_LOCKING_OK;
  status = CkStatus(functions->C_Initialize(&args), "C_Initialize");
  // Someone outside this registry (another library in the process) may have
  // initialised the module already; use it, but leave finalising to them.
  const bool initialized_here = status.ok();
  if (!status.ok() && status.code() != absl::StatusCode::kAlreadyExists) {
    dlclose(library);
    return Annotate(status, absl::StrCat("initialising PKCS#11 module '", path, "'"));
  }
  if (!initialized_here) {
    KMS_LOG(WARNING) << "PKCS#11 module '" << path
                     << "' was already initialised in this process; kmsd will not finalise it";
  }

  auto* module = new Pkcs11Module(path, library, functions, initialized_here);
  registry.modules.emplace(library, Entry{module, 1});
  return std::shared_ptr<const Pkcs11Module>(module, &Pkcs11Module::Release);
}

void Pkcs11Module::Release(const Pkcs11Module* module) {
  Registry& registry = GlobalRegistry();
  absl::MutexLock lock(&registry.mu);
  auto it = registry.modules.find(module->library_);
  if (it == registry.modules.end() || it->second.module != module) {
    // Cannot happen: every reference comes from Load().
    KMS_LOG(ERROR) << "releasing an unregistered PKCS#11 module";
    return;
  }
  if (--it->second.references > 0) return;
  registry.modules.erase(it);
  // Under the lock, so a concurrent Load() of the same file waits until the
  // module is finalised and then initialises it afresh.
  if (module->finalize_on_release_) {
    absl::Status status = CkStatus(module->functions_->C_Finalize(nullptr), "C_Finalize");
    if (!status.ok()) {
      KMS_LOG(WARNING) << "PKCS#11 module '" << module->path_ << "': " << status.message();
    }
  }
  dlclose(module->library_);
  delete module;
}

absl::StatusOr<std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>>> Pkcs11Module::Tokens()
    const {
  std::vector<CK_SLOT_ID> slots;
  // The slot count can change between the size query and the fetch (a token
  // inserted, or SoftHSM adding a fresh slot after C_InitToken); retry then.
  for (int attempt = 0;; ++attempt) {
    CK_ULONG count = 0;
    KMS_RETURN_IF_ERROR(CkStatus(functions_->C_GetSlotList(CK_TRUE, nullptr, &count),
                                 "C_GetSlotList"));
    slots.resize(count);
    absl::Status status =
        CkStatus(functions_->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
    if (status.ok()) {
      slots.resize(count);
      break;
    }
    if (status.code() != absl::StatusCode::kOutOfRange || attempt >= 3) return status;
  }

  std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>> tokens;
  tokens.reserve(slots.size());
  absl::Status last_error;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    absl::Status status = CkStatus(functions_->C_GetTokenInfo(slot, &info), "C_GetTokenInfo");
    if (!status.ok()) {
      // A token removed since C_GetSlotList; others may still be fine.
      last_error = status;
      continue;
    }
    tokens.emplace_back(slot, info);
  }
  if (tokens.empty() && !last_error.ok()) return last_error;
  return tokens;
}

absl::StatusOr<CK_SLOT_ID> Pkcs11Module::FindTokenSlot(absl::string_view label) const {
  KMS_ASSIGN_OR_RETURN(auto tokens, Tokens());
  int matches = 0;
  CK_SLOT_ID found = 0;
  for (const auto& [slot, info] : tokens) {
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    if (TrimmedLabel(info.label) != label) continue;
    ++matches;
    found = slot;
  }
  if (matches == 0) {
    return absl::NotFoundError(absl::StrCat("no initialised token labelled '", label,
                                            "' in PKCS#11 module '", path_, "'"));
  }
  if (matches > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(matches, " tokens are labelled '", label, "' in PKCS#11 module '", path_,
                     "'; token labels must be unique"));
  }
  return found;
}

absl::StatusOr<CK_SLOT_ID> Pkcs11Module::FindFreeSlot() const {
  KMS_ASSIGN_OR_RETURN(auto tokens, Tokens());
  for (const auto& [slot, info] : tokens) {
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) return slot;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("PKCS#11 module '", path_, "' has no slot with an uninitialised token"));
}

absl::Status Pkcs11Module::LoginUser(CK_SESSION_HANDLE session, CK_SLOT_ID slot,
                                     const SecretBytes& pin) const {
  // One login at a time, so the record always matches the token's state.
  absl::MutexLock lock(&login_mu_);
  absl::Status status = CkStatus(
      functions_->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR_PTR>(pin.data()),
                          pin.size()),
      "C_Login");
  if (status.ok()) {
    accepted_pins_[slot] = pin.Copy();
    return status;
  }
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    auto it = accepted_pins_.find(slot);
    // No record: logged in by something outside this module's users; the
    // PIN cannot be checked then.
    if (it == accepted_pins_.end() || it->second.Equals(pin)) return absl::OkStatus();
    return absl::PermissionDeniedError(
        "C_Login: the user PIN differs from the one this token accepted earlier in this "
        "process");
  }
  return status;
}

std::string CkrName(CK_RV rv) {
#define KMS_CKR_CASE(name) \
  case name:               \
    return #name
  switch (rv) {
    KMS_CKR_CASE(CKR_OK);
    KMS_CKR_CASE(CKR_CANCEL);
    KMS_CKR_CASE(CKR_HOST_MEMORY);
    KMS_CKR_CASE(CKR_SLOT_ID_INVALID);
    KMS_CKR_CASE(CKR_GENERAL_ERROR);
    KMS_CKR_CASE(CKR_FUNCTION_FAILED);
    KMS_CKR_CASE(CKR_ARGUMENTS_BAD);
    KMS_CKR_CASE(CKR_NO_EVENT);
    KMS_CKR_CASE(CKR_NEED_TO_CREATE_THREADS);
    KMS_CKR_CASE(CKR_CANT_LOCK);
    KMS_CKR_CASE(CKR_ATTRIBUTE_READ_ONLY);
    KMS_CKR_CASE(CKR_ATTRIBUTE_SENSITIVE);
    KMS_CKR_CASE(CKR_ATTRIBUTE_TYPE_INVALID);
    KMS_CKR_CASE(CKR_ATTRIBUTE_VALUE_INVALID);
    KMS_CKR_CASE(CKR_ACTION_PROHIBITED);
    KMS_CKR_CASE(CKR_DATA_INVALID);
    KMS_CKR_CASE(CKR_DATA_LEN_RANGE);
    KMS_CKR_CASE(CKR_DEVICE_ERROR);
    KMS_CKR_CASE(CKR_DEVICE_MEMORY);
    KMS_CKR_CASE(CKR_DEVICE_REMOVED);
    KMS_CKR_CASE(CKR_ENCRYPTED_DATA_INVALID);
    KMS_CKR_CASE(CKR_ENCRYPTED_DATA_LEN_RANGE);
    KMS_CKR_CASE(CKR_FUNCTION_CANCELED);
    KMS_CKR_CASE(CKR_FUNCTION_NOT_PARALLEL);
    KMS_CKR_CASE(CKR_FUNCTION_NOT_SUPPORTED);
    KMS_CKR_CASE(CKR_KEY_HANDLE_INVALID);
    KMS_CKR_CASE(CKR_KEY_SIZE_RANGE);
    KMS_CKR_CASE(CKR_KEY_TYPE_INCONSISTENT);
    KMS_CKR_CASE(CKR_KEY_NOT_NEEDED);
    KMS_CKR_CASE(CKR_KEY_CHANGED);
    KMS_CKR_CASE(CKR_KEY_NEEDED);
    KMS_CKR_CASE(CKR_KEY_INDIGESTIBLE);
    KMS_CKR_CASE(CKR_KEY_FUNCTION_NOT_PERMITTED);
    KMS_CKR_CASE(CKR_KEY_NOT_WRAPPABLE);
    KMS_CKR_CASE(CKR_KEY_UNEXTRACTABLE);
    KMS_CKR_CASE(CKR_MECHANISM_INVALID);
    KMS_CKR_CASE(CKR_MECHANISM_PARAM_INVALID);
    KMS_CKR_CASE(CKR_OBJECT_HANDLE_INVALID);
    KMS_CKR_CASE(CKR_OPERATION_ACTIVE);
    KMS_CKR_CASE(CKR_OPERATION_NOT_INITIALIZED);
    KMS_CKR_CASE(CKR_PIN_INCORRECT);
    KMS_CKR_CASE(CKR_PIN_INVALID);
    KMS_CKR_CASE(CKR_PIN_LEN_RANGE);
    KMS_CKR_CASE(CKR_PIN_EXPIRED);
    KMS_CKR_CASE(CKR_PIN_LOCKED);
    KMS_CKR_CASE(CKR_SESSION_CLOSED);
    KMS_CKR_CASE(CKR_SESSION_COUNT);
    KMS_CKR_CASE(CKR_SESSION_HANDLE_INVALID);
    KMS_CKR_CASE(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    KMS_CKR_CASE(CKR_SESSION_READ_ONLY);
    KMS_CKR_CASE(CKR_SESSION_EXISTS);
    KMS_CKR_CASE(CKR_SESSION_READ_ONLY_EXISTS);
    KMS_CKR_CASE(CKR_SESSION_READ_WRITE_SO_EXISTS);
    KMS_CKR_CASE(CKR_SIGNATURE_INVALID);
    KMS_CKR_CASE(CKR_SIGNATURE_LEN_RANGE);
    KMS_CKR_CASE(CKR_TEMPLATE_INCOMPLETE);
    KMS_CKR_CASE(CKR_TEMPLATE_INCONSISTENT);
    KMS_CKR_CASE(CKR_TOKEN_NOT_PRESENT);
    KMS_CKR_CASE(CKR_TOKEN_NOT_RECOGNIZED);
    KMS_CKR_CASE(CKR_TOKEN_WRITE_PROTECTED);
    KMS_CKR_CASE(CKR_UNWRAPPING_KEY_HANDLE_INVALID);
    KMS_CKR_CASE(CKR_UNWRAPPING_KEY_SIZE_RANGE);
    KMS_CKR_CASE(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT);
    KMS_CKR_CASE(CKR_USER_ALREADY_LOGGED_IN);
    KMS_CKR_CASE(CKR_USER_NOT_LOGGED_IN);
    KMS_CKR_CASE(CKR_USER_PIN_NOT_INITIALIZED);
    KMS_CKR_CASE(CKR_USER_TYPE_INVALID);
    KMS_CKR_CASE(CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    KMS_CKR_CASE(CKR_USER_TOO_MANY_TYPES);
    KMS_CKR_CASE(CKR_WRAPPED_KEY_INVALID);
    KMS_CKR_CASE(CKR_WRAPPED_KEY_LEN_RANGE);
    KMS_CKR_CASE(CKR_WRAPPING_KEY_HANDLE_INVALID);
    KMS_CKR_CASE(CKR_WRAPPING_KEY_SIZE_RANGE);
    KMS_CKR_CASE(CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
    KMS_CKR_CASE(CKR_RANDOM_SEED_NOT_SUPPORTED);
    KMS_CKR_CASE(CKR_RANDOM_NO_RNG);
    KMS_CKR_CASE(CKR_DOMAIN_PARAMS_INVALID);
    KMS_CKR_CASE(CKR_CURVE_NOT_SUPPORTED);
    KMS_CKR_CASE(CKR_BUFFER_TOO_SMALL);
    KMS_CKR_CASE(CKR_SAVED_STATE_INVALID);
    KMS_CKR_CASE(CKR_INFORMATION_SENSITIVE);
    KMS_CKR_CASE(CKR_STATE_UNSAVEABLE);
    KMS_CKR_CASE(CKR_CRYPTOKI_NOT_INITIALIZED);
    KMS_CKR_CASE(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    KMS_CKR_CASE(CKR_MUTEX_BAD);
    KMS_CKR_CASE(CKR_MUTEX_NOT_LOCKED);
    KMS_CKR_CASE(CKR_NEW_PIN_MODE);
    KMS_CKR_CASE(CKR_NEXT_OTP);
    KMS_CKR_CASE(CKR_EXCEEDED_MAX_ITERATIONS);
    KMS_CKR_CASE(CKR_FIPS_SELF_TEST_FAILED);
    KMS_CKR_CASE(CKR_LIBRARY_LOAD_FAILED);
    KMS_CKR_CASE(CKR_PIN_TOO_WEAK);
    KMS_CKR_CASE(CKR_PUBLIC_KEY_INVALID);
    KMS_CKR_CASE(CKR_FUNCTION_REJECTED);
    KMS_CKR_CASE(kCkrAeadDecryptFailed);
    default:
      break;
  }
#undef KMS_CKR_CASE
  char buffer[40];
  if (rv >= CKR_VENDOR_DEFINED) {
    std::snprintf(buffer, sizeof(buffer), "CKR_VENDOR_DEFINED+0x%lx",
                  static_cast<unsigned long>(rv - CKR_VENDOR_DEFINED));
  } else {
    std::snprintf(buffer, sizeof(buffer), "CKR_0x%08lx", static_cast<unsigned long>(rv));
  }
  return buffer;
}

absl::Status CkStatus(CK_RV rv, absl::string_view function, CkCall call) {
  if (rv == CKR_OK) return absl::OkStatus();
  std::string name = CkrName(rv);
  if (rv == kCkrAeadDecryptFailed) name = "CKR_AEAD_DECRYPT_FAILED";
  const std::string message = absl::StrCat(function, ": ", name);

  if (call == CkCall::kDecrypt) {
    switch (rv) {
      // A GCM tag mismatch. The standard says CKR_ENCRYPTED_DATA_INVALID
      // (2.40) or CKR_AEAD_DECRYPT_FAILED (3.0); SoftHSM 2.6 returns
      // CKR_GENERAL_ERROR; other modules CKR_FUNCTION_FAILED. A device
      // failure reported as one of these is indistinguishable from bad
      // input, and bad input is by far the likelier cause.
      case CKR_ENCRYPTED_DATA_INVALID:
      case CKR_ENCRYPTED_DATA_LEN_RANGE:
      case CKR_DATA_INVALID:
      case CKR_DATA_LEN_RANGE:
      case CKR_GENERAL_ERROR:
      case CKR_FUNCTION_FAILED:
      case kCkrAeadDecryptFailed:
        return absl::InvalidArgumentError(
            absl::StrCat(message, " (ciphertext did not authenticate)"));
      default:
        break;
    }
  }

  if (call == CkCall::kUnwrap) {
    switch (rv) {
      // What modules return for a wrapped key that is corrupt, under another
      // key or of the wrong size. Like a GCM tag failure, a device fault
      // reported this way is indistinguishable from bad input.
      case CKR_WRAPPED_KEY_INVALID:
      case CKR_WRAPPED_KEY_LEN_RANGE:
      case CKR_ENCRYPTED_DATA_INVALID:
      case CKR_ENCRYPTED_DATA_LEN_RANGE:
      case CKR_DATA_INVALID:
      case CKR_DATA_LEN_RANGE:
      case CKR_GENERAL_ERROR:
      case CKR_FUNCTION_FAILED:
        return absl::InvalidArgumentError(
            absl::StrCat(message, " (wrapped key material did not unwrap)"));
      default:
        break;
    }
  }

  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SLOT_ID_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    // The login state went with the sessions (all closed, token re-inserted).
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_FUNCTION_CANCELED:
      return absl::UnavailableError(message);

    // kmsd only uses handles from its cache, so the token changed under it
    // (reset, re-plugged, or an object deleted by another client). Not
    // kNotFound: callers must not conclude the key is gone. Reopening the
    // token rebuilds the cache.
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
      return absl::UnavailableError(
          absl::StrCat(message, " (the token changed under kmsd; reopen it)"));

    case CKR_PIN_INCORRECT:
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
      return absl::PermissionDeniedError(message);

    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_TOO_WEAK:
    case CKR_DATA_LEN_RANGE:
      return absl::InvalidArgumentError(message);


    case CKR_CRYPTOKI_ALREADY_INITIALIZED:
    case CKR_USER_ALREADY_LOGGED_IN:
      return absl::AlreadyExistsError(message);

    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
    case CKR_USER_TOO_MANY_TYPES:
    case CKR_TOKEN_WRITE_PROTECTED:
    case CKR_SESSION_READ_ONLY:
    case CKR_SESSION_READ_ONLY_EXISTS:
    case CKR_SESSION_READ_WRITE_SO_EXISTS:
    case CKR_SESSION_EXISTS:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
      return absl::FailedPreconditionError(message);

    case CKR_MECHANISM_INVALID:
    case CKR_FUNCTION_NOT_SUPPORTED:
    case CKR_RANDOM_NO_RNG:
      return absl::UnimplementedError(message);

    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
    case CKR_SESSION_COUNT:
      return absl::ResourceExhaustedError(message);

    case CKR_BUFFER_TOO_SMALL:
      return absl::OutOfRangeError(message);

    default:
      return absl::InternalError(message);
  }
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

std::array<CK_UTF8CHAR, kMaxTokenLabelSize> PaddedLabel(absl::string_view label) {
  std::array<CK_UTF8CHAR, kMaxTokenLabelSize> padded;
  padded.fill(' ');
  std::memcpy(padded.data(), label.data(), std::min(label.size(), padded.size()));
  return padded;
}

std::string TrimmedLabel(const CK_UTF8CHAR (&label)[kMaxTokenLabelSize]) {
  size_t size = kMaxTokenLabelSize;
  // The standard pads with blanks; some modules pad with NULs.
  while (size > 0 && (label[size - 1] == ' ' || label[size - 1] == '\0')) --size;
  return std::string(reinterpret_cast<const char*>(label), size);
}

absl::Status ValidateTokenLabel(absl::string_view label) {
  if (label.empty() || label.size() > kMaxTokenLabelSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token label must be 1..", kMaxTokenLabelSize, " bytes, got ", label.size()));
  }
  return absl::OkStatus();
}

}  // namespace kms::hsm::internal
