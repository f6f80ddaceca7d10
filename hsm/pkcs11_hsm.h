// Pkcs11Hsm: the Hsm on a token of any PKCS#11 module (SoftHSMv2 in tests and
// the embedded default; Luna, nShield, CloudHSM, YubiHSM in production).
//
// Open() loads the module (shared per process, see hsm/pkcs11_module.h),
// finds the token by label, opens a pool of R/W sessions, logs in as the user
// once, and reads the handles of every AES secret key, every RSA wrapping
// key pair (private key with CKA_UNWRAP, public key with CKA_WRAP, paired by
// CKA_ID) and every EC signing key pair (private key with CKA_SIGN, public
// key with CKA_VERIFY, paired by CKA_ID) on the token into a cache (one
// C_FindObjects pass over the token's objects and one C_GetAttributeValue per
// object: with 10,000 keys on SoftHSM, Open takes about a second).
// After that no method searches the token: requests go straight from the
// cache to C_EncryptInit / C_DecryptInit / C_UnwrapKey. The cache assumes
// this process is the only one changing the token's keys (DESIGN.md: one
// kmsd process owns a token).
//
// Encryption and decryption run under a working copy of each AES key: a
// session object copied from the token object the first time the key is
// used, held by a session of its own for as long as the Pkcs11Hsm is open,
// and destroyed with the key (see MakeWorkingCopy). SoftHSM re-reads its
// token files on every operation on a token object; on a session object it
// does not, which makes GenerateDataKey and Decrypt several times cheaper in
// the HSM and independent of how many keys the token holds.
//
// Open() also decides, once, which import wrapping algorithms the token can
// do (SupportedWrappingAlgorithms): CKM_RSA_PKCS_KEY_PAIR_GEN and
// CKM_RSA_PKCS_OAEP with CKF_UNWRAP must be listed; the OAEP hashes are then
// tried for real (a throwaway session key pair, an OAEP encryption and an
// unwrap), because a mechanism list cannot say which hashes a module takes
// (SoftHSM 2.6.1 lists OAEP but rejects SHA-256 with CKR_ARGUMENTS_BAD); the
// RSA_AES_KEY_WRAP variants also need CKM_AES_KEY_WRAP_PAD with CKF_UNWRAP.
// Plain RSAES_OAEP_* is offered only if the module reports CKA_VALUE_LEN of
// an unwrapped key (the probe checks): the OAEP ciphertext says nothing of
// the material's length, and kmsd must refuse anything but 32 bytes without
// seeing it. SoftHSM 2.6.1 leaves CKA_VALUE_LEN 0 on unwrapped keys, so on
// it only RSA_AES_KEY_WRAP_SHA_1 is offered; there the length follows from
// the AES-KWP part's size (see UnwrapIntoToken).
// Signing: CKM_EC_KEY_PAIR_GEN on prime256v1 and CKM_ECDSA, which takes the
// SHA-256 hash (computed here with OpenSSL: modules differ on CKM_ECDSA_SHA256,
// SoftHSM 2.6.1 lacks it) and returns r || s, re-encoded as a DER
// ECDSA-Sig-Value.
//
// CKM_RSA_AES_KEY_WRAP itself is never used: an OAEP unwrap of the ephemeral
// key into a session object followed by an AES_KEY_WRAP_PAD unwrap is the
// same computation, and works on modules (SoftHSM) that lack it.
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
#include "absl/container/node_hash_map.h"
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
  // whatever the module's code for it (SoftHSM: CKR_GENERAL_ERROR), and so is
  // wrapped key material that does not unwrap.
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
  std::vector<WrappingAlgorithm> SupportedWrappingAlgorithms() override;
  absl::Status GenerateRsaWrappingKey(absl::string_view object_id, int modulus_bits) override;
  std::vector<std::string> ListWrappingKeyIds() override;
  absl::StatusOr<std::string> GetPublicKeyDer(absl::string_view object_id) override;
  absl::Status UnwrapAesKey(absl::string_view wrapping_key_id, WrappingAlgorithm algorithm,
                            absl::string_view wrapped,
                            absl::string_view new_object_id) override;
  absl::StatusOr<std::string> KeyCheckValue(absl::string_view object_id) override;
  absl::StatusOr<std::string> KeyFingerprint(absl::string_view object_id) override;
  absl::Status GenerateEcSigningKey(absl::string_view object_id) override;
  std::vector<std::string> ListSigningKeyIds() override;
  absl::StatusOr<std::string> SignEcdsaP256Sha256(absl::string_view object_id,
                                                  absl::string_view message) override;

  // Test-only: how many objects this process can see on the token, token and
  // session objects alike (session objects of every session of the process
  // are visible to each). Shows that no ephemeral key outlives an unwrap.
  // Errors: as CkStatus.
  absl::StatusOr<size_t> CountObjectsForTesting();

  // The label of the open token (for logs).
  const std::string& token_label() const { return token_label_; }

 private:
  // CK_OBJECT_HANDLE and CK_SLOT_ID, spelled out so this header need not
  // include pkcs11.h (static_assert'ed in the .cc).
  using ObjectHandle = unsigned long;
  using SlotId = unsigned long;

  enum class ObjectKind { kAesKey, kWrappingKey, kSigningKey };
  // One cached object id: an AES key, or both halves of a wrapping or
  // signing key pair.
  struct CachedObject {
    ObjectKind kind;
    ObjectHandle handle;         // the AES key, or the private half
    ObjectHandle public_handle;  // the public half of a key pair, else 0
    // AES keys only: the key's working copy (see MakeWorkingCopy), 0 until
    // one is made; and whether making one failed, so it is not tried again.
    ObjectHandle working_copy = 0;
    bool no_working_copy = false;
  };

  Pkcs11Hsm(std::shared_ptr<const internal::Pkcs11Module> module, std::string token_label);

  // Fills objects_ from one C_FindObjects pass. Only Open() searches the
  // token.
  absl::Status LoadHandleCache();
  // By CKA_ID. A hash map because every operation looks its key up here:
  // a tree of 36-character ids costs a string compare, and with thousands
  // of keys likely a cache miss, per level. Node-based, so a CachedObject
  // stays put while others are added.
  using ObjectMap = absl::node_hash_map<std::string, CachedObject>;
  absl::StatusOr<ObjectMap> ReadObjects();
  // Decides wrapping_algorithms_ (see the class comment). Only Open() calls
  // it. Errors: those of C_GetMechanismList; a failed trial only means the
  // algorithm is not offered.
  absl::Status ProbeWrappingAlgorithms(SlotId slot);
  // Checks that the id is free and reserves it in generating_.
  absl::Status ReserveId(const std::string& id);
  // A C_GenerateKeyPair call: mechanism, both templates, and how the pair is
  // cached and named in errors. Defined in the .cc, which alone sees pkcs11.h.
  struct KeyPairRequest;
  // Creates the key pair `request` describes for the id `id`, which the
  // caller has reserved (ReserveId) and which `request`'s templates name;
  // releases the reservation, and on success caches both halves.
  // Errors: as CkStatus.
  absl::Status GenerateKeyPair(const std::string& id, const KeyPairRequest& request);
  // The AES key `object_id`; mu_ must be held. nullptr if there is none.
  const CachedObject* FindAesKey(const std::string& object_id)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Makes the working copy of the AES key `object_id` if it has none yet:
  // a session object copied from the token object (C_CopyObject with
  // CKA_TOKEN=FALSE, every other attribute kept, so it is as sensitive and
  // unextractable as the original), owned by the pool's keeper session.
  // EncryptGcm and DecryptGcm then run under the copy. Operations on a
  // token object cost a module like SoftHSM a check of the token's files
  // every time (about 3x the work, growing with the number of keys); a
  // session object lives in memory. The copy is destroyed with the key
  // (DestroyKey) and, with the keeper session, when this Pkcs11Hsm closes;
  // it never outlives the process.
  // If the module refuses the copy (CKA_COPYABLE=FALSE, no keeper session,
  // any error), the key is marked and every operation keeps using the token
  // object; that is logged once per key. Takes mu_; cheap once the copy
  // exists or was refused.
  void MakeWorkingCopy(const std::string& object_id) ABSL_LOCKS_EXCLUDED(mu_);
  // The handle operations on the AES key `key` use: its working copy if it
  // has one, else the token object.
  static ObjectHandle OperationHandle(const CachedObject& key);
  // The body of UnwrapAesKey once `new_object_id` is reserved: the handle
  // of the new AES key object.
  absl::StatusOr<ObjectHandle> UnwrapIntoToken(absl::string_view wrapping_key_id,
                                               WrappingAlgorithm algorithm,
                                               absl::string_view wrapped,
                                               const std::string& new_object_id);
  // " (that id names an AES key)" and the like; "" if the id is free. mu_
  // must be held.
  std::string OtherKindNote(const std::string& object_id) ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The ids of every cached object of `kind`, sorted.
  std::vector<std::string> IdsOfKind(ObjectKind kind);
  // AES-ECB of the one block `block` under the AES key `object_id`.
  absl::StatusOr<std::string> EncryptBlock(absl::string_view object_id, absl::string_view block);

  const std::shared_ptr<const internal::Pkcs11Module> module_;
  const std::string token_label_;
  std::unique_ptr<internal::SessionPool> sessions_;

  // Set once by Open(), read-only afterwards.
  std::vector<WrappingAlgorithm> wrapping_algorithms_;
  // Whether the module sets CKA_VALUE_LEN on unwrapped AES keys.
  bool reports_unwrapped_length_ = false;

  // Guards the handle cache. Calls that use a handle hold it shared for the
  // whole token call, and DestroyKey holds it exclusively: a module may hand
  // a destroyed object's handle to the next new object, and a call must never
  // run under a different key than the id it looked up.
  absl::Mutex mu_;
  ObjectMap objects_ ABSL_GUARDED_BY(mu_);
  // Ids with a C_GenerateKey, C_GenerateKeyPair or C_UnwrapKey in flight, so
  // two callers cannot both create one.
  std::set<std::string> generating_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kms::hsm

#endif  // KMS_HSM_PKCS11_HSM_H_
