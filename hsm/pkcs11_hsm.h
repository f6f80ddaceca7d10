// Pkcs11Hsm: the Hsm on a token of any PKCS#11 module (SoftHSMv2 in tests and
// the embedded default; Luna, nShield, CloudHSM, YubiHSM in production).
//
// Open() loads the module (shared per process, see hsm/pkcs11_module.h),
// finds the token by label, opens a pool of R/W sessions, logs in as the user
// once, and reads the handles of every AES secret key on the token into a
// cache (one C_FindObjects pass). After that no method searches the token:
// requests go straight from the cache to C_EncryptInit / C_DecryptInit.
// The cache assumes this process is the only one changing the token's AES
// keys (DESIGN.md: one kmsd process owns a token).
//
// Ownership: the caller owns the Pkcs11Hsm. Destroying it closes its sessions
// and releases the module (the last user finalises and unloads it). It does
// not C_Logout: login state is per process and token, so that would log out
// any other Pkcs11Hsm on the same token; closing the process's last session
// on the token logs out anyway.
//
// Thread-safe. Each call borrows one session from the pool for its duration
// (a PKCS#11 session must not be used by two threads at once) and blocks
// while all sessions are busy. A session on which a call failed is replaced
// (a new one opened, the old one closed) before it goes back to the pool, so
// an operation a failing module left active, or a dead session, never
// poisons later calls.
//
// PINs live only in SecretBytes and never appear in messages or logs.
#ifndef KMS_HSM_PKCS11_HSM_H_
#define KMS_HSM_PKCS11_HSM_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/secret_bytes.h"
#include "hsm/hsm.h"

namespace kms::hsm {

namespace internal {
class Pkcs11Module;
class SessionPool;
}  // namespace internal

struct Pkcs11Config {
  std::string module_path;  // e.g. /usr/lib/softhsm/libsofthsm2.so
  std::string token_label;  // 1..32 bytes, as given to C_InitToken
  SecretBytes user_pin;
  int session_count = 4;    // 1..256 sessions in the pool
};

class Pkcs11Hsm final : public Hsm {
 public:
  // Opens the token `config.token_label` of the module `config.module_path`.
  // Errors:
  //   kInvalidArgument    empty module path or PIN, label not 1..32 bytes,
  //                       session_count not 1..256
  //   kFailedPrecondition the module cannot be loaded or is not a PKCS#11
  //                       module; two tokens share the label; the user PIN
  //                       is not set; the token holds two AES keys with one
  //                       CKA_ID
  //   kNotFound           no initialised token has that label
  //   kPermissionDenied   wrong, locked or expired user PIN
  //   kUnavailable        token or device gone
  //   kResourceExhausted  the token refused to open that many sessions
  //   kInternal           anything else the module reported
  // The message names the module path and label, never the PIN. If this
  // process is already logged in to the token (another Pkcs11Hsm on it is
  // open), PKCS#11 accepts any PIN; the PIN is then compared with the one the
  // token accepted (see Pkcs11Module::LoginUser).
  static absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> Open(Pkcs11Config config);

  Pkcs11Hsm(const Pkcs11Hsm&) = delete;
  Pkcs11Hsm& operator=(const Pkcs11Hsm&) = delete;
  ~Pkcs11Hsm() override;

  // Hsm. Error codes as documented in hsm/hsm.h, plus: kUnavailable when the
  // token lost the session or login, or when a cached handle is no longer
  // valid (the token was reset or another client deleted the object; reopen
  // to resynchronise; never reported as kNotFound); kResourceExhausted when
  // the module is out of memory. A GCM tag mismatch is kInvalidArgument
  // whatever the module's code for it (SoftHSM: CKR_GENERAL_ERROR).
  absl::Status GenerateAesKey(absl::string_view object_id) override;
  absl::Status DestroyKey(absl::string_view object_id) override;
  bool HasKey(absl::string_view object_id) override;
  std::vector<std::string> ListKeyIds() override;
  absl::StatusOr<KeyAttributes> GetKeyAttributes(absl::string_view object_id) override;
  absl::StatusOr<std::string> EncryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view plaintext,
                                         absl::string_view aad) override;
  absl::StatusOr<SecretBytes> DecryptGcm(absl::string_view object_id, absl::string_view iv,
                                         absl::string_view ciphertext,
                                         absl::string_view aad) override;
  absl::StatusOr<SecretBytes> GenerateRandom(size_t length) override;

  // The label of the open token (for logs).
  const std::string& token_label() const { return token_label_; }

 private:
  // CK_OBJECT_HANDLE, spelled out so this header need not include pkcs11.h
  // (static_assert'ed in the .cc).
  using ObjectHandle = unsigned long;

  Pkcs11Hsm(std::shared_ptr<const internal::Pkcs11Module> module, std::string token_label);

  // Fills handles_ with one C_FindObjects pass over the token's AES keys.
  // Only Open() searches the token.
  absl::Status LoadHandleCache();
  absl::StatusOr<std::map<std::string, ObjectHandle>> ReadKeyHandles();

  const std::shared_ptr<const internal::Pkcs11Module> module_;
  const std::string token_label_;
  std::unique_ptr<internal::SessionPool> sessions_;

  // Guards the handle cache. Calls that use a handle hold it shared for the
  // whole token call, and DestroyKey holds it exclusively: a module may hand
  // a destroyed object's handle to the next new object, and a call must never
  // run under a different key than the id it looked up.
  absl::Mutex mu_;
  std::map<std::string, ObjectHandle> handles_ ABSL_GUARDED_BY(mu_);  // by CKA_ID
  // Ids with a C_GenerateKey in flight, so two callers cannot both create one.
  std::set<std::string> generating_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kms::hsm

#endif  // KMS_HSM_PKCS11_HSM_H_
