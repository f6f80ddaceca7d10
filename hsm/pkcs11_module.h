// Internal to hsm/: a loaded, C_Initialize'd PKCS#11 module shared by every
// user in the process, plus the helpers Pkcs11Hsm and token_setup both need
// (the one CK_RV -> absl::Status translation, token lookup by label).
//
// Why a process-wide registry: C_Initialize / C_Finalize act on the whole
// module in the process, not on a caller. Two independent owners of the same
// module would C_Finalize it under each other. So every user takes a reference
// from Pkcs11Module::Load(); the first reference loads (dlopen) and
// initialises the module, the last one released finalises and unloads it.
// This registry is the one justified global in the code base.
//
// Thread-safe: Load() and releasing references may race freely; the function
// list is immutable once loaded, and the module itself is initialised with
// CKF_OS_LOCKING_OK, so its functions may be called from any thread.
//
// Only code in hsm/ may include this header (it includes pkcs11.h).
#ifndef KMS_HSM_PKCS11_MODULE_H_
#define KMS_HSM_PKCS11_MODULE_H_

#include <array>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/secret_bytes.h"

// p11-kit's pkcs11.h, in its default CRYPTOKI_COMPAT mode, renames its
// lower-case struct members to the standard names with macros (iv_ptr -> pIv,
// aad_len -> ulAADLen, ...) and forgets to #undef some of them. Left defined,
// they would rewrite any later header using those words (OpenSSL's evp.h
// does). The members are already declared under the standard names, so
// dropping the macros here is safe; use the standard names (pIv, ulIvLen,
// ulIvBits, pAAD, ulAADLen, ulTagBits). Include pkcs11.h only through this
// header.
#include <p11-kit/pkcs11.h>
#undef iv_ptr
#undef iv_len
#undef iv_bits
#undef aad_ptr
#undef aad_len
#undef tag_bits
#undef hash_alg
#undef s_len
#undef source_data
#undef source_data_len
#undef counter_bits
#undef shared_data_len
#undef shared_data
#undef public_data_len
#undef public_data
#undef string_data
#undef string_data_len
#undef data_params
#undef ck_rsa_pkcs_mgf_type_t
#undef ck_rsa_pkcs_oaep_source_type_t

namespace kms::hsm::internal {

// The longest token label PKCS#11 can hold (CK_TOKEN_INFO.label).
inline constexpr size_t kMaxTokenLabelSize = 32;

class Pkcs11Module {
 public:
  // Returns a reference to the module at `path`, loading and initialising it
  // (C_Initialize with CKF_OS_LOCKING_OK) if no reference exists yet. Paths
  // that name the same file share one module. If something else in the
  // process already initialised the module, it is used but never finalised.
  // Errors: kInvalidArgument (empty path), kFailedPrecondition (the file
  // cannot be loaded or is not a PKCS#11 module), kUnavailable / kInternal
  // (C_Initialize failed).
  static absl::StatusOr<std::shared_ptr<const Pkcs11Module>> Load(const std::string& path);

  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;

  // The module's function table. Valid while the reference is held.
  CK_FUNCTION_LIST* fn() const { return functions_; }
  // The path the module was first loaded from (for messages).
  const std::string& path() const { return path_; }

  // The slot holding the initialised token labelled `label` (compared after
  // trimming the blank padding). Slot ids are looked up afresh on every call:
  // they change when a token is initialised.
  // Errors: kNotFound (no such token), kFailedPrecondition (more than one
  // token has that label), kUnavailable / kInternal (module errors).
  absl::StatusOr<CK_SLOT_ID> FindTokenSlot(absl::string_view label) const;

  // The first slot with a token present that is not yet initialised.
  // Errors: kFailedPrecondition (none), kUnavailable / kInternal.
  absl::StatusOr<CK_SLOT_ID> FindFreeSlot() const;

  // Logs `session` in as the user with `pin`. Login state is per process and
  // token, and C_Login answers CKR_USER_ALREADY_LOGGED_IN without looking at
  // the PIN, so a second user of an already logged-in token would never have
  // its PIN checked. The module therefore remembers the PIN the token
  // accepted for each slot and holds later logins to it.
  // Errors: kPermissionDenied (the token, or the remembered PIN, rejects
  // `pin`), others as CkStatus.
  absl::Status LoginUser(CK_SESSION_HANDLE session, CK_SLOT_ID slot,
                         const SecretBytes& pin) const;

 private:
  Pkcs11Module(std::string path, void* library, CK_FUNCTION_LIST* functions,
               bool finalize_on_release);
  ~Pkcs11Module();
  // The deleter of every reference Load() hands out.
  static void Release(const Pkcs11Module* module);

  // Every slot with a token present, with that token's info.
  absl::StatusOr<std::vector<std::pair<CK_SLOT_ID, CK_TOKEN_INFO>>> Tokens() const;

  const std::string path_;
  void* const library_;                 // from dlopen
  CK_FUNCTION_LIST* const functions_;   // owned by the module
  const bool finalize_on_release_;      // false if someone else initialised it

  mutable absl::Mutex login_mu_;
  // The user PIN each slot's token accepted, while this module is loaded.
  mutable std::map<CK_SLOT_ID, SecretBytes> accepted_pins_ ABSL_GUARDED_BY(login_mu_);
};

// What a failing call was doing, for the few return values whose meaning
// depends on it.
enum class CkCall {
  kDefault,
  // C_Decrypt of AES-GCM: data errors (and SoftHSM's CKR_GENERAL_ERROR on a
  // tag mismatch) mean the ciphertext did not authenticate.
  kDecrypt,
  // C_UnwrapKey of caller-supplied wrapped bytes: data and padding errors
  // (and SoftHSM's CKR_GENERAL_ERROR / CKR_FUNCTION_FAILED for a bad OAEP or
  // key-wrap block) mean the bytes did not unwrap.
  kUnwrap,
};

// The one place a CK_RV becomes an absl::Status. The message is
// "<function>: <CKR_NAME>". CKR_OK -> OK. Codes, by what the caller should do:
//   kUnavailable        session, token, device or module gone; retry. Also
//                       an invalid object handle: the token changed under
//                       kmsd's handle cache
//   kPermissionDenied   wrong, locked or expired PIN
//   kInvalidArgument    bad PIN format, data too long; with kDecrypt, any
//                       ciphertext that fails to decrypt; with kUnwrap, any
//                       wrapped key that fails to unwrap
//   kAlreadyExists      CKR_CRYPTOKI_ALREADY_INITIALIZED,
//                       CKR_USER_ALREADY_LOGGED_IN (callers may tolerate)
//   kFailedPrecondition token state forbids it (PIN not set, read-only, ...)
//   kUnimplemented      the module lacks the mechanism or function
//   kResourceExhausted  out of memory or sessions
//   kOutOfRange         CKR_BUFFER_TOO_SMALL (ask for the size again)
//   kInternal           anything else
// Never pass a message that holds a secret; this function adds none.
absl::Status CkStatus(CK_RV rv, absl::string_view function, CkCall call = CkCall::kDefault);

// "CKR_PIN_INCORRECT", or "CKR_0x..." for an unknown value.
std::string CkrName(CK_RV rv);

// `status` with `context` put in front of its message; code kept.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// A label as PKCS#11 stores it: blank-padded to 32 bytes. The caller checks
// the length (at most kMaxTokenLabelSize).
std::array<CK_UTF8CHAR, kMaxTokenLabelSize> PaddedLabel(absl::string_view label);

// A stored label without its padding (trailing blanks and NULs).
std::string TrimmedLabel(const CK_UTF8CHAR (&label)[kMaxTokenLabelSize]);

// Checks a token label given by a caller: 1..32 bytes.
// Errors: kInvalidArgument.
absl::Status ValidateTokenLabel(absl::string_view label);

}  // namespace kms::hsm::internal

#endif  // KMS_HSM_PKCS11_MODULE_H_
