#include "hsm/pkcs11_hsm.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <type_traits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"
#include "hsm/pkcs11_module.h"

namespace kms::hsm {
namespace {

constexpr size_t kMaxObjectIdSize = 64;
constexpr size_t kMaxRandomSize = 65536;
constexpr int kMaxSessionCount = 256;

// PKCS#11 takes input buffers through non-const pointers but never writes to
// them. SoftHSM rejects a null data pointer even with length 0, so an empty
// input points at a dummy byte.
CK_BYTE_PTR InputBytes(absl::string_view bytes) {
  static CK_BYTE empty = 0;
  if (bytes.empty()) return &empty;
  return reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(bytes.data()));
}

// Object ids are kmsd version ids, but a token may hold anything: escape them
// before they go into a message.
std::string Printable(absl::string_view object_id) { return absl::CHexEscape(object_id); }

absl::Status NoSuchKey(absl::string_view object_id) {
  return absl::NotFoundError(absl::StrCat("no AES key with id '", Printable(object_id), "'"));
}

absl::Status CheckObjectId(absl::string_view object_id) {
  if (object_id.empty() || object_id.size() > kMaxObjectIdSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "object id must be 1..", kMaxObjectIdSize, " bytes, got ", object_id.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckIv(absl::string_view iv) {
  if (iv.size() != kGcmIvSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("GCM IV must be ", kGcmIvSize, " bytes, got ", iv.size()));
  }
  return absl::OkStatus();
}

}  // namespace

namespace internal {

// A fixed set of R/W sessions on one token. A session is lent to one thread
// at a time; borrowers block while every session is out. Thread-safe.
class SessionPool {
 public:
  // Keeps `user_pin` to log in again if the token forgets the login (every
  // session lost); it is never logged.
  SessionPool(std::shared_ptr<const Pkcs11Module> module, CK_SLOT_ID slot,
              SecretBytes user_pin)
      : module_(std::move(module)), fn_(module_->fn()), slot_(slot),
        user_pin_(std::move(user_pin)) {}

  // Closes every session. All leases must have been returned.
  ~SessionPool() {
    absl::MutexLock lock(&mu_);
    for (CK_SESSION_HANDLE session : idle_) fn_->C_CloseSession(session);
    if (keeper_ != CK_INVALID_HANDLE) fn_->C_CloseSession(keeper_);
  }

  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // Opens `count` sessions and logs in as the user (once: login state is per
  // process and token, shared by every session).
  absl::Status Open(int count) {
    for (int i = 0; i < count; ++i) {
      CK_SESSION_HANDLE session;
      KMS_RETURN_IF_ERROR(OpenSession(&session));
      absl::MutexLock lock(&mu_);
      idle_.push_back(session);
    }
    CK_SESSION_HANDLE first;
    {
      absl::MutexLock lock(&mu_);
      first = idle_.front();
    }
    KMS_RETURN_IF_ERROR(Login(first));
    // A module that caps sessions may refuse one more; kmsd then works on
    // the token objects alone (see Pkcs11Hsm::MakeWorkingCopy).
    absl::Status keeper = OpenSession(&keeper_);
    if (!keeper.ok()) {
      keeper_ = CK_INVALID_HANDLE;
      KMS_LOG(WARNING) << "no session for working copies of keys, so every operation uses "
                          "the token object: "
                       << keeper.message();
    }
    return absl::OkStatus();
  }

  // A session that is never lent and never replaced, open from Open() to
  // the pool's destruction; CK_INVALID_HANDLE if the module refused it. It
  // owns Pkcs11Hsm's working copies of keys: a session object lives exactly
  // as long as the session that made it, so copies made on a pooled session
  // would vanish (and their handles could be reused) whenever that session
  // is replaced. Callers serialise their use of it (Pkcs11Hsm: mu_ held
  // exclusively).
  CK_SESSION_HANDLE keeper() const { return keeper_; }

  // One borrowed session, returned when the Lease is destroyed. If a call
  // through Check() failed, the session is replaced on return.
  class Lease {
   public:
    explicit Lease(SessionPool* pool) : pool_(pool), session_(pool->Take()) {}
    ~Lease() { pool_->Give(session_, failed_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    CK_SESSION_HANDLE session() const { return session_; }
    CK_FUNCTION_LIST* fn() const { return pool_->fn_; }

    // Translates the result of a call made on this session. A failure may
    // have left an operation active (the standard lets CKR_BUFFER_TOO_SMALL
    // do so; modules differ on other errors) or mean the session is dead,
    // so a failed session is not reused as is.
    absl::Status Check(CK_RV rv, absl::string_view function,
                       CkCall call = CkCall::kDefault) {
      absl::Status status = CkStatus(rv, function, call);
      if (!status.ok()) failed_ = true;
      return status;
    }

   private:
    SessionPool* const pool_;
    const CK_SESSION_HANDLE session_;
    bool failed_ = false;
  };

 private:
  bool HasIdle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !idle_.empty(); }

  CK_SESSION_HANDLE Take() {
    absl::MutexLock lock(&mu_, absl::Condition(this, &SessionPool::HasIdle));
    CK_SESSION_HANDLE session = idle_.front();
    idle_.pop_front();
    return session;
  }

  void Give(CK_SESSION_HANDLE session, bool failed) {
    if (failed) session = Replace(session);
    absl::MutexLock lock(&mu_);
    // FIFO, so consecutive calls rotate through every session.
    idle_.push_back(session);
  }

  // Opens a fresh session in place of `old` and closes `old`, which also
  // cancels any operation left active on it. The new session is opened first
  // so the process never has zero sessions on the token, which would log it
  // out. If no new session can be opened, `old` is kept: it may still work,
  // and the next failure tries again.
  CK_SESSION_HANDLE Replace(CK_SESSION_HANDLE old) {
    CK_SESSION_HANDLE fresh;
    absl::Status status = OpenSession(&fresh);
    if (!status.ok()) {
      KMS_LOG(WARNING) << "cannot replace a failed PKCS#11 session: " << status.message();
      return old;
    }
    fn_->C_CloseSession(old);  // its result changes nothing
    CK_SESSION_INFO info;
    status = CkStatus(fn_->C_GetSessionInfo(fresh, &info), "C_GetSessionInfo");
    if (status.ok() && info.state != CKS_RW_USER_FUNCTIONS) status = Login(fresh);
    if (!status.ok()) {
      KMS_LOG(WARNING) << "replacement PKCS#11 session is not logged in: " << status.message();
    }
    return fresh;
  }

  absl::Status OpenSession(CK_SESSION_HANDLE* session) {
    return CkStatus(fn_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                       nullptr, session),
                    "C_OpenSession");
  }

  absl::Status Login(CK_SESSION_HANDLE session) {
    absl::Status status = module_->LoginUser(session, slot_, user_pin_);
    if (status.code() == absl::StatusCode::kPermissionDenied) {
      return Annotate(status, "the user PIN was rejected");
    }
    return status;
  }

  const std::shared_ptr<const Pkcs11Module> module_;
  CK_FUNCTION_LIST* const fn_;
  const CK_SLOT_ID slot_;
  const SecretBytes user_pin_;

  CK_SESSION_HANDLE keeper_ = CK_INVALID_HANDLE;  // set once by Open()

  absl::Mutex mu_;
  std::deque<CK_SESSION_HANDLE> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

using internal::Annotate;
using internal::CkCall;
using internal::CkStatus;
using internal::SessionPool;

Pkcs11Hsm::Pkcs11Hsm(std::shared_ptr<const internal::Pkcs11Module> module,
                     std::string token_label)
    : module_(std::move(module)), token_label_(std::move(token_label)) {
  static_assert(std::is_same_v<ObjectHandle, CK_OBJECT_HANDLE>,
                "Pkcs11Hsm::ObjectHandle must be CK_OBJECT_HANDLE");
  static_assert(std::is_same_v<SlotId, CK_SLOT_ID>, "Pkcs11Hsm::SlotId must be CK_SLOT_ID");
}

Pkcs11Hsm::~Pkcs11Hsm() = default;

absl::StatusOr<std::unique_ptr<Pkcs11Hsm>> Pkcs11Hsm::Open(Pkcs11Config config) {
  if (config.module_path.empty()) {
    return absl::InvalidArgumentError("PKCS#11 module path is empty");
  }
  KMS_RETURN_IF_ERROR(internal::ValidateTokenLabel(config.token_label));
  if (config.user_pin.empty()) return absl::InvalidArgumentError("user PIN is empty");
  if (config.session_count < 1 || config.session_count > kMaxSessionCount) {
    return absl::InvalidArgumentError(absl::StrCat("session count must be 1..",
                                                   kMaxSessionCount, ", got ",
                                                   config.session_count));
  }

  KMS_ASSIGN_OR_RETURN(std::shared_ptr<const internal::Pkcs11Module> module,
                       internal::Pkcs11Module::Load(config.module_path));
  const std::string where = absl::StrCat("token '", config.token_label,
                                         "' in PKCS#11 module '", config.module_path, "'");
  KMS_ASSIGN_OR_RETURN(CK_SLOT_ID slot, module->FindTokenSlot(config.token_label));

  std::unique_ptr<Pkcs11Hsm> hsm(new Pkcs11Hsm(module, config.token_label));
  hsm->sessions_ =
      std::make_unique<SessionPool>(std::move(module), slot, std::move(config.user_pin));
  KMS_RETURN_IF_ERROR(Annotate(hsm->sessions_->Open(config.session_count),
                               absl::StrCat("opening ", where)));
  KMS_RETURN_IF_ERROR(Annotate(hsm->LoadHandleCache(), absl::StrCat("reading keys of ", where)));
  KMS_RETURN_IF_ERROR(Annotate(hsm->ProbeWrappingAlgorithms(slot),
                               absl::StrCat("probing the mechanisms of ", where)));

  const size_t key_count = hsm->IdsOfKind(ObjectKind::kAesKey).size();
  const size_t wrapping_key_count = hsm->IdsOfKind(ObjectKind::kWrappingKey).size();
  const size_t signing_key_count = hsm->IdsOfKind(ObjectKind::kSigningKey).size();
  std::string algorithms;
  for (WrappingAlgorithm algorithm : hsm->wrapping_algorithms_) {
    absl::StrAppend(&algorithms, algorithms.empty() ? "" : ", ",
                    WrappingAlgorithmName(algorithm));
  }
  KMS_LOG(INFO) << "opened " << where << " with " << config.session_count << " sessions, "
                << key_count << " AES keys, " << wrapping_key_count << " wrapping keys and "
                << signing_key_count << " signing keys; import wrapping algorithms: "
                << (algorithms.empty() ? "none" : algorithms);
  return hsm;
}

absl::Status Pkcs11Hsm::LoadHandleCache() {
  KMS_ASSIGN_OR_RETURN(auto objects, ReadObjects());
  absl::MutexLock lock(&mu_);
  objects_ = std::move(objects);
  return absl::OkStatus();
}

namespace {

// Every object matching the `size` attributes of `search` (all objects the
// session can see for size 0), in one C_FindObjects search.
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindAll(SessionPool::Lease& lease,
                                                      CK_ATTRIBUTE* search, CK_ULONG size) {
  CK_FUNCTION_LIST* fn = lease.fn();
  const CK_SESSION_HANDLE session = lease.session();
  KMS_RETURN_IF_ERROR(
      lease.Check(fn->C_FindObjectsInit(session, search, size), "C_FindObjectsInit"));
  std::vector<CK_OBJECT_HANDLE> found;
  absl::Status status;
  for (;;) {
    CK_OBJECT_HANDLE batch[256];
    CK_ULONG count = 0;
    status = lease.Check(fn->C_FindObjects(session, batch, 256, &count), "C_FindObjects");
    if (!status.ok() || count == 0) break;
    found.insert(found.end(), batch, batch + count);
  }
  // Always end the search, even after an error, so the session is clean.
  absl::Status final_status =
      lease.Check(fn->C_FindObjectsFinal(session), "C_FindObjectsFinal");
  KMS_RETURN_IF_ERROR(status);
  KMS_RETURN_IF_ERROR(final_status);
  return found;
}

// What Open needs to know of one token object to cache it.
enum class FoundKind {
  kOther,            // not kmsd's kind of object: skipped
  kAesKey,
  kRsaPrivateUnwrap, // a wrapping key's private half
  kRsaPublicWrap,    // its public half
  kEcPrivateSign,    // a signing key's private half
  kEcPublicVerify,   // its public half
};

struct FoundObject {
  FoundKind kind;
  std::string id;  // empty: the object has no CKA_ID
  CK_OBJECT_HANDLE handle;
};

absl::string_view FoundKindName(FoundKind kind) {
  switch (kind) {
    case FoundKind::kAesKey: return "an AES key";
    case FoundKind::kRsaPrivateUnwrap: return "an RSA private key";
    case FoundKind::kRsaPublicWrap: return "an RSA public key";
    case FoundKind::kEcPrivateSign: return "an EC private key";
    case FoundKind::kEcPublicVerify: return "an EC public key";
    case FoundKind::kOther: break;
  }
  return "an object";
}

// Every token object, classified, with its CKA_ID: one C_FindObjects pass
// and one C_GetAttributeValue per object. (Open used to run one search per
// kind; each search, and each attribute read, costs SoftHSM a check of the
// object's file, which made a restart with 10,000 keys take seconds.)
// Wrapping keys are told from other RSA keys (a future signing key, say),
// and signing keys from other EC keys, by their usage.
absl::StatusOr<std::vector<FoundObject>> FindTokenObjects(SessionPool::Lease& lease) {
  CK_FUNCTION_LIST* fn = lease.fn();
  const CK_SESSION_HANDLE session = lease.session();
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE search[] = {{CKA_TOKEN, &yes, sizeof(yes)}};
  KMS_ASSIGN_OR_RETURN(const std::vector<CK_OBJECT_HANDLE> found, FindAll(lease, search, 1));

  std::vector<FoundObject> result;
  result.reserve(found.size());
  for (CK_OBJECT_HANDLE handle : found) {
    CK_OBJECT_CLASS object_class = CK_UNAVAILABLE_INFORMATION;
    CK_KEY_TYPE key_type = CK_UNAVAILABLE_INFORMATION;
    CK_BBOOL unwrap = CK_FALSE, wrap = CK_FALSE, sign = CK_FALSE, verify = CK_FALSE;
    // Room for any id kmsd makes; a longer one is read on its own below.
    std::string id(kMaxObjectIdSize, '\0');
    CK_ATTRIBUTE attributes[] = {
        {CKA_CLASS, &object_class, sizeof(object_class)},
        {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
        {CKA_UNWRAP, &unwrap, sizeof(unwrap)},
        {CKA_WRAP, &wrap, sizeof(wrap)},
        {CKA_SIGN, &sign, sizeof(sign)},
        {CKA_VERIFY, &verify, sizeof(verify)},
        {CKA_ID, id.data(), id.size()},
    };
    constexpr CK_ULONG kCount = sizeof(attributes) / sizeof(attributes[0]);
    // An attribute the object's class lacks (a wrap flag on a private key,
    // a key type on a data object) or an id too long for the buffer makes the
    // call report an error, but the module still fills in every other one
    // and marks the missing ones CK_UNAVAILABLE_INFORMATION (PKCS#11 2.40,
    // C_GetAttributeValue). Those codes are expected here and do not count as
    // a session failure.
    CK_RV rv = fn->C_GetAttributeValue(session, handle, attributes, kCount);
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_BUFFER_TOO_SMALL &&
        rv != CKR_ATTRIBUTE_SENSITIVE) {
      KMS_RETURN_IF_ERROR(lease.Check(rv, "C_GetAttributeValue"));
    }
    const auto flag = [&](int index, CK_BBOOL value) {
      return attributes[index].ulValueLen != CK_UNAVAILABLE_INFORMATION && value == CK_TRUE;
    };
    FoundKind kind = FoundKind::kOther;
    if (attributes[0].ulValueLen != CK_UNAVAILABLE_INFORMATION &&
        attributes[1].ulValueLen != CK_UNAVAILABLE_INFORMATION) {
      if (object_class == CKO_SECRET_KEY && key_type == CKK_AES) {
        kind = FoundKind::kAesKey;
      } else if (object_class == CKO_PRIVATE_KEY && key_type == CKK_RSA && flag(2, unwrap)) {
        kind = FoundKind::kRsaPrivateUnwrap;
      } else if (object_class == CKO_PUBLIC_KEY && key_type == CKK_RSA && flag(3, wrap)) {
        kind = FoundKind::kRsaPublicWrap;
      } else if (object_class == CKO_PRIVATE_KEY && key_type == CKK_EC && flag(4, sign)) {
        kind = FoundKind::kEcPrivateSign;
      } else if (object_class == CKO_PUBLIC_KEY && key_type == CKK_EC && flag(5, verify)) {
        kind = FoundKind::kEcPublicVerify;
      }
    }
    if (kind == FoundKind::kOther) continue;

    CK_ATTRIBUTE& id_attribute = attributes[6];
    if (id_attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION && rv == CKR_BUFFER_TOO_SMALL) {
      // A longer id (not kmsd's): ask for its size, then read it.
      id_attribute = {CKA_ID, nullptr, 0};
      KMS_RETURN_IF_ERROR(lease.Check(fn->C_GetAttributeValue(session, handle, &id_attribute, 1),
                                      "C_GetAttributeValue(CKA_ID)"));
      if (id_attribute.ulValueLen != CK_UNAVAILABLE_INFORMATION) {
        id.resize(id_attribute.ulValueLen);
        id_attribute.pValue = id.data();
        KMS_RETURN_IF_ERROR(
            lease.Check(fn->C_GetAttributeValue(session, handle, &id_attribute, 1),
                        "C_GetAttributeValue(CKA_ID)"));
      }
    }
    if (id_attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
      id.clear();
    } else {
      id.resize(id_attribute.ulValueLen);
    }
    result.push_back(FoundObject{kind, std::move(id), handle});
  }
  return result;
}

absl::Status DuplicateId(absl::string_view what, const std::string& id) {
  // Which of two objects holds the material a ciphertext was made under (or
  // which private key matches a public key handed out) is unknowable;
  // guessing could make data undecryptable. Refuse to start.
  return absl::FailedPreconditionError(
      absl::StrCat("the token holds more than one ", what, " with CKA_ID '", Printable(id),
                   "'; remove the one kmsd did not create"));
}

}  // namespace

absl::StatusOr<Pkcs11Hsm::ObjectMap> Pkcs11Hsm::ReadObjects() {
  std::vector<FoundObject> found;
  {
    SessionPool::Lease lease(sessions_.get());
    KMS_ASSIGN_OR_RETURN(found, FindTokenObjects(lease));
  }
  std::vector<std::pair<std::string, CK_OBJECT_HANDLE>> public_keys;
  std::vector<std::pair<std::string, CK_OBJECT_HANDLE>> signing_public_keys;
  ObjectMap objects;
  // Private halves and AES keys first, so public halves find their pair
  // whatever order the token lists objects in.
  for (FoundObject& object : found) {
    if (object.id.empty()) {
      // kmsd always sets CKA_ID: an object without one is not kmsd's.
      KMS_LOG(WARNING) << "ignoring " << FoundKindName(object.kind) << " without CKA_ID on token '"
                       << token_label_ << "'";
      continue;
    }
    switch (object.kind) {
      case FoundKind::kAesKey:
        if (!objects.emplace(object.id,
                             CachedObject{ObjectKind::kAesKey, object.handle, CK_INVALID_HANDLE})
                 .second) {
          const bool both_aes = objects.at(object.id).kind == ObjectKind::kAesKey;
          return DuplicateId(both_aes ? "AES key" : "key", object.id);
        }
        break;
      case FoundKind::kRsaPrivateUnwrap:
      case FoundKind::kEcPrivateSign: {
        const ObjectKind kind = object.kind == FoundKind::kRsaPrivateUnwrap
                                    ? ObjectKind::kWrappingKey
                                    : ObjectKind::kSigningKey;
        if (!objects.emplace(object.id, CachedObject{kind, object.handle, CK_INVALID_HANDLE})
                 .second) {
          return DuplicateId("key", object.id);
        }
        break;
      }
      case FoundKind::kRsaPublicWrap:
        public_keys.emplace_back(std::move(object.id), object.handle);
        break;
      case FoundKind::kEcPublicVerify:
        signing_public_keys.emplace_back(std::move(object.id), object.handle);
        break;
      case FoundKind::kOther:
        break;
    }
  }
  // Pairs each public half with the private half of `kind` under its id.
  auto pair_public_halves =
      [&](const std::vector<std::pair<std::string, CK_OBJECT_HANDLE>>& halves,
          ObjectKind kind, absl::string_view what) -> absl::Status {
    for (const auto& [id, handle] : halves) {
      auto it = objects.find(id);
      if (it == objects.end() || it->second.kind != kind) {
        // A public key is no secret: an orphan half is harmless, and not
        // kmsd's to delete.
        KMS_LOG(WARNING) << "ignoring an " << what << " without a private half, CKA_ID '"
                         << Printable(id) << "', on token '" << token_label_ << "'";
        continue;
      }
      if (it->second.public_handle != CK_INVALID_HANDLE) return DuplicateId(what, id);
      it->second.public_handle = handle;
    }
    return absl::OkStatus();
  };
  KMS_RETURN_IF_ERROR(
      pair_public_halves(public_keys, ObjectKind::kWrappingKey, "RSA public key"));
  KMS_RETURN_IF_ERROR(
      pair_public_halves(signing_public_keys, ObjectKind::kSigningKey, "EC public key"));
  return objects;
}

namespace {

// CKM_RSA_PKCS_OAEP with `hash` for both OAEP and MGF1 and an empty label.
// The mechanism points into this object's params, so it is neither copied
// nor moved.
struct OaepMechanism {
  explicit OaepMechanism(CK_MECHANISM_TYPE hash) {
    std::memset(&params, 0, sizeof(params));
    params.hashAlg = hash;
    params.mgf = hash == CKM_SHA256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1;
    params.source = CKZ_DATA_SPECIFIED;
    params.pSourceData = nullptr;
    params.ulSourceDataLen = 0;
    mechanism = {CKM_RSA_PKCS_OAEP, &params, sizeof(params)};
  }
  OaepMechanism(const OaepMechanism&) = delete;
  OaepMechanism& operator=(const OaepMechanism&) = delete;

  CK_RSA_PKCS_OAEP_PARAMS params;
  CK_MECHANISM mechanism;
};

CK_MECHANISM_TYPE OaepHash(WrappingAlgorithm algorithm) {
  switch (algorithm) {
    case WrappingAlgorithm::kRsaesOaepSha256:
    case WrappingAlgorithm::kRsaAesKeyWrapSha256:
      return CKM_SHA256;
    case WrappingAlgorithm::kRsaesOaepSha1:
    case WrappingAlgorithm::kRsaAesKeyWrapSha1:
      break;
  }
  return CKM_SHA_1;
}

// The template of a transient AES key that only unwraps: the ephemeral key
// of RSA_AES_KEY_WRAP, and the probe's. A session object (gone with the
// session at the latest), private and sensitive like every key kmsd makes.
struct EphemeralKeyTemplate {
  EphemeralKeyTemplate() = default;
  EphemeralKeyTemplate(const EphemeralKeyTemplate&) = delete;
  EphemeralKeyTemplate& operator=(const EphemeralKeyTemplate&) = delete;

  CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = CKK_AES;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  static constexpr CK_ULONG kSize = 13;
  CK_ATTRIBUTE attributes[kSize] = {
      {CKA_CLASS, &key_class, sizeof(key_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &no, sizeof(no)},
      {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_DERIVE, &no, sizeof(no)},
      {CKA_ENCRYPT, &no, sizeof(no)},
      {CKA_DECRYPT, &no, sizeof(no)},
      {CKA_WRAP, &no, sizeof(no)},
      {CKA_UNWRAP, &yes, sizeof(yes)},
      {CKA_SIGN, &no, sizeof(no)},
      {CKA_VERIFY, &no, sizeof(no)},
  };
};

// The template of every CMK key object, generated or imported. Every
// attribute that matters is set explicitly: module defaults differ, and
// SoftHSM's (CKA_SENSITIVE=FALSE, and CKA_VALUE in clear on disk when
// CKA_PRIVATE=FALSE) are unsafe. One definition, so generated and imported
// material can never drift apart. Without `with_value_len` (unwrapping) the
// length is the material's own; SoftHSM also refuses CKA_VALUE_LEN there.
// The attributes point into this object, so it is neither copied nor moved.
struct CmkKeyTemplate {
  CmkKeyTemplate(absl::string_view object_id, bool with_value_len)
      : id(object_id), label(absl::StrCat("kmsd:", object_id)) {
    attributes = {
        {CKA_CLASS, &key_class, sizeof(key_class)},
        {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_SIGN, &no, sizeof(no)},
        {CKA_VERIFY, &no, sizeof(no)},
        {CKA_ID, id.data(), id.size()},
        {CKA_LABEL, label.data(), label.size()},
    };
    if (with_value_len) attributes.push_back({CKA_VALUE_LEN, &value_size, sizeof(value_size)});
  }
  CmkKeyTemplate(const CmkKeyTemplate&) = delete;
  CmkKeyTemplate& operator=(const CmkKeyTemplate&) = delete;

  CK_ATTRIBUTE* data() { return attributes.data(); }
  CK_ULONG size() const { return attributes.size(); }

  CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = CKK_AES;
  CK_ULONG value_size = kAesKeySize;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  std::string id;
  std::string label;
  std::vector<CK_ATTRIBUTE> attributes;
};

// Destroys a transient object; a failure is logged, not returned: the
// object is a session object and goes with its session anyway, and the
// caller's own result matters more.
void DestroyTransient(SessionPool::Lease& lease, CK_OBJECT_HANDLE handle,
                      absl::string_view what) {
  absl::Status status =
      lease.Check(lease.fn()->C_DestroyObject(lease.session(), handle), "C_DestroyObject");
  if (!status.ok()) {
    KMS_LOG(WARNING) << "cannot destroy the " << what << ": " << status.message()
                     << "; its session is closed instead";
  }
}

// Encrypts a fixed 32-byte block with OAEP(`hash`) under `public_key` and
// unwraps it with `private_key`, into a session key destroyed at once. True
// if the module did both. Sets `*reports_length` to whether the module gave
// the unwrapped key's CKA_VALUE_LEN as 32 (SoftHSM 2.6.1 leaves it 0).
bool TryOaepUnwrap(SessionPool::Lease& lease, CK_OBJECT_HANDLE public_key,
                   CK_OBJECT_HANDLE private_key, CK_MECHANISM_TYPE hash,
                   bool* reports_length) {
  CK_FUNCTION_LIST* fn = lease.fn();
  const CK_SESSION_HANDLE session = lease.session();
  OaepMechanism oaep(hash);
  // Not a secret: the probe's key material is thrown away.
  std::string block(kAesKeySize, '\x5a');
  std::string wrapped(4096 / 8, '\0');
  CK_ULONG wrapped_size = wrapped.size();
  absl::Status status =
      lease.Check(fn->C_EncryptInit(session, &oaep.mechanism, public_key), "C_EncryptInit");
  if (status.ok()) {
    status = lease.Check(fn->C_Encrypt(session, InputBytes(block), block.size(),
                                       reinterpret_cast<CK_BYTE_PTR>(wrapped.data()),
                                       &wrapped_size),
                         "C_Encrypt");
  }
  CK_OBJECT_HANDLE unwrapped = CK_INVALID_HANDLE;
  if (status.ok()) {
    EphemeralKeyTemplate key_template;
    status = lease.Check(
        fn->C_UnwrapKey(session, &oaep.mechanism, private_key,
                        reinterpret_cast<CK_BYTE_PTR>(wrapped.data()), wrapped_size,
                        key_template.attributes, EphemeralKeyTemplate::kSize, &unwrapped),
        "C_UnwrapKey");
  }
  if (status.ok()) {
    CK_ULONG value_size = 0;
    CK_ATTRIBUTE length = {CKA_VALUE_LEN, &value_size, sizeof(value_size)};
    *reports_length =
        lease.Check(fn->C_GetAttributeValue(session, unwrapped, &length, 1),
                    "C_GetAttributeValue(CKA_VALUE_LEN)")
            .ok() &&
        value_size == kAesKeySize;
    DestroyTransient(lease, unwrapped, "probe key");
  }
  if (!status.ok()) {
    KMS_LOG(INFO) << "RSA-OAEP with " << (hash == CKM_SHA256 ? "SHA-256" : "SHA-1")
                  << " is not available: " << status.message();
  }
  return status.ok();
}

}  // namespace

absl::Status Pkcs11Hsm::ProbeWrappingAlgorithms(SlotId slot) {
  CK_FUNCTION_LIST* fn = module_->fn();
  std::vector<CK_MECHANISM_TYPE> mechanisms;
  CK_ULONG count = 0;
  KMS_RETURN_IF_ERROR(CkStatus(fn->C_GetMechanismList(slot, nullptr, &count),
                               "C_GetMechanismList"));
  mechanisms.resize(count);
  KMS_RETURN_IF_ERROR(CkStatus(fn->C_GetMechanismList(slot, mechanisms.data(), &count),
                               "C_GetMechanismList"));
  mechanisms.resize(count);
  // The mechanism's info, if it is listed and has every flag in `flags`.
  auto has = [&](CK_MECHANISM_TYPE type, CK_FLAGS flags, CK_MECHANISM_INFO* info) {
    if (std::find(mechanisms.begin(), mechanisms.end(), type) == mechanisms.end()) return false;
    return CkStatus(fn->C_GetMechanismInfo(slot, type, info), "C_GetMechanismInfo").ok() &&
           (info->flags & flags) == flags;
  };
  CK_MECHANISM_INFO generate_info, oaep_info, kwp_info;
  const bool can_generate =
      has(CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, &generate_info);
  const bool oaep = has(CKM_RSA_PKCS_OAEP, CKF_UNWRAP | CKF_ENCRYPT, &oaep_info);
  const bool kwp = has(CKM_AES_KEY_WRAP_PAD, CKF_UNWRAP, &kwp_info);
  wrapping_algorithms_.clear();
  if (!can_generate || !oaep) {
    KMS_LOG(WARNING) << "token '" << token_label_
                     << "' cannot generate RSA key pairs or unwrap with RSA-OAEP: no import";
    return absl::OkStatus();
  }

  // A throwaway session key pair, as small as the module allows (down to
  // 1024 bits): the probe only needs room for one OAEP block.
  CK_ULONG bits = std::max<CK_ULONG>(1024, generate_info.ulMinKeySize);
  CK_BYTE exponent[] = {0x01, 0x00, 0x01};
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_ATTRIBUTE public_template[] = {
      {CKA_TOKEN, &no, sizeof(no)},
      {CKA_MODULUS_BITS, &bits, sizeof(bits)},
      {CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)},
      {CKA_ENCRYPT, &yes, sizeof(yes)},
      {CKA_WRAP, &yes, sizeof(yes)},
  };
  CK_ATTRIBUTE private_template[] = {
      {CKA_TOKEN, &no, sizeof(no)},
      {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_UNWRAP, &yes, sizeof(yes)},
      {CKA_DECRYPT, &no, sizeof(no)},
      {CKA_SIGN, &no, sizeof(no)},
  };
  CK_MECHANISM generate = {CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
  SessionPool::Lease lease(sessions_.get());
  absl::Status status = lease.Check(
      fn->C_GenerateKeyPair(lease.session(), &generate, public_template, 5, private_template, 7,
                            &public_key, &private_key),
      "C_GenerateKeyPair");
  if (!status.ok()) {
    KMS_LOG(WARNING) << "token '" << token_label_
                     << "' cannot make a probe RSA key pair, so offers no import: "
                     << status.message();
    return absl::OkStatus();
  }
  bool sha1_reports_length = false;
  bool sha256_reports_length = false;
  const bool sha1 = TryOaepUnwrap(lease, public_key, private_key, CKM_SHA_1,
                                  &sha1_reports_length);
  const bool sha256 = TryOaepUnwrap(lease, public_key, private_key, CKM_SHA256,
                                    &sha256_reports_length);
  DestroyTransient(lease, private_key, "probe private key");
  DestroyTransient(lease, public_key, "probe public key");
  reports_unwrapped_length_ = sha1 ? sha1_reports_length : sha256_reports_length;

  // Plain RSAES_OAEP gives no clue to the material's length but the
  // unwrapped key's CKA_VALUE_LEN. A module that does not fill that in
  // (SoftHSM 2.6.1 leaves it 0 for unwrapped keys) would let 16- or 24-byte
  // material in unnoticed, so plain OAEP is offered only where the module
  // reports the length. RSA_AES_KEY_WRAP does not need it: see
  // UnwrapIntoToken.
  if (!reports_unwrapped_length_ && (sha1 || sha256)) {
    KMS_LOG(INFO) << "token '" << token_label_
                  << "' does not report the length of unwrapped keys (CKA_VALUE_LEN); "
                     "RSAES_OAEP_* is not offered";
  }
  if (sha1 && reports_unwrapped_length_) {
    wrapping_algorithms_.push_back(WrappingAlgorithm::kRsaesOaepSha1);
  }
  if (sha256 && reports_unwrapped_length_) {
    wrapping_algorithms_.push_back(WrappingAlgorithm::kRsaesOaepSha256);
  }
  if (sha1 && kwp) wrapping_algorithms_.push_back(WrappingAlgorithm::kRsaAesKeyWrapSha1);
  if (sha256 && kwp) wrapping_algorithms_.push_back(WrappingAlgorithm::kRsaAesKeyWrapSha256);
  return absl::OkStatus();
}

absl::Status Pkcs11Hsm::ReserveId(const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (objects_.count(id) > 0 || generating_.count(id) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("a key with id '", Printable(id), "' already exists"));
  }
  generating_.insert(id);
  return absl::OkStatus();
}

// The templates point into the caller's locals, which outlive the call.
struct Pkcs11Hsm::KeyPairRequest {
  CK_MECHANISM_TYPE mechanism;
  absl::Span<CK_ATTRIBUTE> public_template;
  absl::Span<CK_ATTRIBUTE> private_template;
  ObjectKind kind;             // as cached
  absl::string_view function;  // as named in errors, e.g. "C_GenerateKeyPair(EC)"
};

absl::Status Pkcs11Hsm::GenerateKeyPair(const std::string& id, const KeyPairRequest& request) {
  CK_MECHANISM mechanism = {request.mechanism, nullptr, 0};
  CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
  absl::Status status;
  {
    SessionPool::Lease lease(sessions_.get());
    status = lease.Check(
        lease.fn()->C_GenerateKeyPair(
            lease.session(), &mechanism, request.public_template.data(),
            request.public_template.size(), request.private_template.data(),
            request.private_template.size(), &public_key, &private_key),
        request.function);
  }
  absl::MutexLock lock(&mu_);
  generating_.erase(id);
  if (!status.ok()) return status;
  objects_.emplace(id, CachedObject{request.kind, private_key, public_key});
  return absl::OkStatus();
}

const Pkcs11Hsm::CachedObject* Pkcs11Hsm::FindAesKey(const std::string& object_id) {
  auto it = objects_.find(object_id);
  if (it == objects_.end() || it->second.kind != ObjectKind::kAesKey) return nullptr;
  return &it->second;
}

void Pkcs11Hsm::MakeWorkingCopy(const std::string& object_id) {
  {
    absl::ReaderMutexLock lock(&mu_);
    const CachedObject* key = FindAesKey(object_id);
    if (key == nullptr || key->working_copy != CK_INVALID_HANDLE || key->no_working_copy) {
      return;
    }
  }
  // Exclusive: the keeper session is used by one thread at a time, and a
  // copy is published to readers only once it is complete.
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(object_id);
  if (it == objects_.end() || it->second.kind != ObjectKind::kAesKey) return;
  CachedObject& key = it->second;
  if (key.working_copy != CK_INVALID_HANDLE || key.no_working_copy) return;  // raced

  const CK_SESSION_HANDLE keeper = sessions_->keeper();
  absl::Status status = absl::UnavailableError("no keeper session");
  CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
  if (keeper != CK_INVALID_HANDLE) {
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE session_object[] = {{CKA_TOKEN, &no, sizeof(no)}};
    status = CkStatus(module_->fn()->C_CopyObject(keeper, key.handle, session_object, 1, &copy),
                      "C_CopyObject");
  }
  if (!status.ok() || copy == CK_INVALID_HANDLE) {
    key.no_working_copy = true;
    KMS_LOG(WARNING) << "key '" << Printable(object_id)
                     << "' has no working copy, so its operations use the token object: "
                     << (status.ok() ? "C_CopyObject returned no handle" : status.message());
    return;
  }
  key.working_copy = copy;
}

Pkcs11Hsm::ObjectHandle Pkcs11Hsm::OperationHandle(const CachedObject& key) {
  return key.working_copy != CK_INVALID_HANDLE ? key.working_copy : key.handle;
}

absl::Status Pkcs11Hsm::GenerateAesKey(absl::string_view object_id) {
  KMS_RETURN_IF_ERROR(CheckObjectId(object_id));
  std::string id(object_id);
  KMS_RETURN_IF_ERROR(ReserveId(id));

  CmkKeyTemplate key_template(id, /*with_value_len=*/true);

  CK_MECHANISM mechanism = {CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  absl::Status status;
  {
    SessionPool::Lease lease(sessions_.get());
    status = lease.Check(
        lease.fn()->C_GenerateKey(lease.session(), &mechanism, key_template.data(),
                                  key_template.size(), &handle),
        "C_GenerateKey");
  }

  absl::MutexLock lock(&mu_);
  generating_.erase(id);
  if (!status.ok()) return status;
  objects_.emplace(std::move(id), CachedObject{ObjectKind::kAesKey, handle, CK_INVALID_HANDLE});
  return absl::OkStatus();
}

absl::Status Pkcs11Hsm::DestroyKey(absl::string_view object_id) {
  // Exclusive for the whole call: see mu_.
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(std::string(object_id));
  if (it == objects_.end()) return NoSuchKey(object_id);
  CachedObject& object = it->second;
  // The working copy first: it holds the same secret, and once the token
  // object is gone nothing would find it again until the process exits.
  if (object.working_copy != CK_INVALID_HANDLE) {
    KMS_RETURN_IF_ERROR(CkStatus(
        module_->fn()->C_DestroyObject(sessions_->keeper(), object.working_copy),
        "C_DestroyObject(working copy)"));
    object.working_copy = CK_INVALID_HANDLE;
  }
  SessionPool::Lease lease(sessions_.get());
  // The private half (the secret) first. A half destroyed is forgotten at
  // once, so a retry after a failure destroys only what is left.
  for (ObjectHandle* handle : {&object.handle, &object.public_handle}) {
    if (*handle == CK_INVALID_HANDLE) continue;
    // On failure the entry stays: the object may well still exist.
    KMS_RETURN_IF_ERROR(
        lease.Check(lease.fn()->C_DestroyObject(lease.session(), *handle), "C_DestroyObject"));
    *handle = CK_INVALID_HANDLE;
  }
  objects_.erase(it);
  return absl::OkStatus();
}

bool Pkcs11Hsm::HasKey(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  return FindAesKey(std::string(object_id)) != nullptr;
}

std::vector<std::string> Pkcs11Hsm::IdsOfKind(ObjectKind kind) {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [id, object] : objects_) {
    if (object.kind == kind) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::string> Pkcs11Hsm::ListKeyIds() { return IdsOfKind(ObjectKind::kAesKey); }

std::vector<std::string> Pkcs11Hsm::ListWrappingKeyIds() {
  return IdsOfKind(ObjectKind::kWrappingKey);
}

std::vector<std::string> Pkcs11Hsm::ListSigningKeyIds() {
  return IdsOfKind(ObjectKind::kSigningKey);
}

absl::StatusOr<KeyAttributes> Pkcs11Hsm::GetKeyAttributes(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = objects_.find(std::string(object_id));
  if (it == objects_.end()) return NoSuchKey(object_id);
  const bool wrapping_key = it->second.kind == ObjectKind::kWrappingKey;
  const bool signing_key = it->second.kind == ObjectKind::kSigningKey;

  // Pessimistic until the token answers; one call reads them all.
  CK_BBOOL token = CK_FALSE, is_private = CK_FALSE, sensitive = CK_FALSE,
           always_sensitive = CK_FALSE, extractable = CK_TRUE, never_extractable = CK_FALSE,
           derive = CK_TRUE, encrypt = CK_TRUE, decrypt = CK_TRUE, wrap = CK_TRUE,
           unwrap = CK_TRUE, sign = CK_TRUE;
  CK_ULONG value_size = 0;
  // Never CKA_VALUE: the token would refuse (sensitive), and kmsd never asks.
  std::vector<CK_ATTRIBUTE> attributes = {
      {CKA_TOKEN, &token, sizeof(token)},
      {CKA_PRIVATE, &is_private, sizeof(is_private)},
      {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
      {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof(always_sensitive)},
      {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
      {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(never_extractable)},
      {CKA_DERIVE, &derive, sizeof(derive)},
      {CKA_DECRYPT, &decrypt, sizeof(decrypt)},
      {CKA_UNWRAP, &unwrap, sizeof(unwrap)},
      {CKA_SIGN, &sign, sizeof(sign)},
  };
  if (wrapping_key) {
    // A private key has no CKA_ENCRYPT, CKA_WRAP or CKA_VALUE_LEN; its
    // CKA_MODULUS is public, and only its length is asked for.
    attributes.push_back({CKA_MODULUS, nullptr, 0});
  } else if (signing_key) {
    // An EC private key has no CKA_ENCRYPT, CKA_WRAP or CKA_VALUE_LEN either.
  } else {
    attributes.push_back({CKA_ENCRYPT, &encrypt, sizeof(encrypt)});
    attributes.push_back({CKA_WRAP, &wrap, sizeof(wrap)});
    attributes.push_back({CKA_VALUE_LEN, &value_size, sizeof(value_size)});
  }
  {
    SessionPool::Lease lease(sessions_.get());
    KMS_RETURN_IF_ERROR(lease.Check(
        lease.fn()->C_GetAttributeValue(lease.session(), it->second.handle, attributes.data(),
                                        attributes.size()),
        "C_GetAttributeValue"));
  }
  KeyAttributes result;
  result.token = token == CK_TRUE;
  result.is_private = is_private == CK_TRUE;
  result.sensitive = sensitive == CK_TRUE;
  result.always_sensitive = always_sensitive == CK_TRUE;
  result.extractable = extractable == CK_TRUE;
  result.never_extractable = never_extractable == CK_TRUE;
  result.derive = derive == CK_TRUE;
  result.decrypt = decrypt == CK_TRUE;
  result.unwrap = unwrap == CK_TRUE;
  result.sign = sign == CK_TRUE;
  if (wrapping_key) {
    result.encrypt = false;
    result.wrap = false;
    result.modulus_bits = attributes.back().ulValueLen * 8;
  } else if (signing_key) {
    result.encrypt = false;
    result.wrap = false;
  } else {
    result.encrypt = encrypt == CK_TRUE;
    result.wrap = wrap == CK_TRUE;
    result.value_len = value_size;
  }
  return result;
}

namespace {

// CKM_AES_GCM with a 12-byte IV, a 128-bit tag and `aad`. The mechanism
// points into this object's params, so it is neither copied nor moved.
struct GcmMechanism {
  GcmMechanism(absl::string_view iv, absl::string_view aad) {
    std::memset(&params, 0, sizeof(params));
    params.pIv = InputBytes(iv);
    params.ulIvLen = kGcmIvSize;
    params.ulIvBits = kGcmIvSize * 8;  // SoftHSM needs the bit length too
    params.pAAD = InputBytes(aad);
    params.ulAADLen = aad.size();
    params.ulTagBits = kGcmTagSize * 8;
    mechanism = {CKM_AES_GCM, &params, sizeof(params)};
  }
  GcmMechanism(const GcmMechanism&) = delete;
  GcmMechanism& operator=(const GcmMechanism&) = delete;

  CK_GCM_PARAMS params;
  CK_MECHANISM mechanism;
};

}  // namespace

absl::StatusOr<std::string> Pkcs11Hsm::EncryptGcm(absl::string_view object_id,
                                                  absl::string_view iv,
                                                  absl::string_view plaintext,
                                                  absl::string_view aad) {
  KMS_RETURN_IF_ERROR(CheckIv(iv));
  const std::string id(object_id);
  MakeWorkingCopy(id);
  absl::ReaderMutexLock lock(&mu_);  // held across the token call: see mu_
  const CachedObject* key = FindAesKey(id);
  if (key == nullptr) return NoSuchKey(object_id);

  GcmMechanism gcm(iv, aad);

  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  KMS_RETURN_IF_ERROR(
      lease.Check(fn->C_EncryptInit(lease.session(), &gcm.mechanism, OperationHandle(*key)),
                  "C_EncryptInit"));
  // GCM output is exactly plaintext || tag.
  std::string ciphertext(plaintext.size() + kGcmTagSize, '\0');
  CK_ULONG size = ciphertext.size();
  absl::Status status =
      lease.Check(fn->C_Encrypt(lease.session(), InputBytes(plaintext),
                                plaintext.size(), reinterpret_cast<CK_BYTE_PTR>(ciphertext.data()),
                                &size),
                  "C_Encrypt");
  if (status.code() == absl::StatusCode::kOutOfRange && size > ciphertext.size()) {
    // A module wanting more room; CKR_BUFFER_TOO_SMALL keeps the operation
    // active, so the same call can be repeated.
    ciphertext.resize(size);
    status = lease.Check(
        fn->C_Encrypt(lease.session(), InputBytes(plaintext), plaintext.size(),
                      reinterpret_cast<CK_BYTE_PTR>(ciphertext.data()), &size),
        "C_Encrypt");
  }
  KMS_RETURN_IF_ERROR(status);
  if (size != plaintext.size() + kGcmTagSize) {
    return absl::InternalError(absl::StrCat("C_Encrypt returned ", size, " bytes for ",
                                            plaintext.size(), " bytes of plaintext"));
  }
  ciphertext.resize(size);
  return ciphertext;
}

absl::StatusOr<SecretBytes> Pkcs11Hsm::DecryptGcm(absl::string_view object_id,
                                                  absl::string_view iv,
                                                  absl::string_view ciphertext,
                                                  absl::string_view aad) {
  KMS_RETURN_IF_ERROR(CheckIv(iv));
  if (ciphertext.size() < kGcmTagSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("ciphertext must hold at least the ", kGcmTagSize,
                     "-byte GCM tag, got ", ciphertext.size(), " bytes"));
  }
  const std::string id(object_id);
  MakeWorkingCopy(id);
  absl::ReaderMutexLock lock(&mu_);  // held across the token call: see mu_
  const CachedObject* key = FindAesKey(id);
  if (key == nullptr) return NoSuchKey(object_id);

  GcmMechanism gcm(iv, aad);

  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  KMS_RETURN_IF_ERROR(
      lease.Check(fn->C_DecryptInit(lease.session(), &gcm.mechanism, OperationHandle(*key)),
                  "C_DecryptInit"));
  // The plaintext goes straight into SecretBytes, so no other buffer ever
  // holds it. SoftHSM insists on room for the whole ciphertext, tag included.
  SecretBytes plaintext(ciphertext.size());
  CK_ULONG size = plaintext.size();
  absl::Status status = lease.Check(
      fn->C_Decrypt(lease.session(), InputBytes(ciphertext), ciphertext.size(),
                    plaintext.mutable_data(), &size),
      "C_Decrypt", CkCall::kDecrypt);
  if (status.code() == absl::StatusCode::kOutOfRange && size > plaintext.size()) {
    plaintext = SecretBytes(size);
    status = lease.Check(
        fn->C_Decrypt(lease.session(), InputBytes(ciphertext), ciphertext.size(),
                      plaintext.mutable_data(), &size),
        "C_Decrypt", CkCall::kDecrypt);
  }
  KMS_RETURN_IF_ERROR(status);
  if (size != ciphertext.size() - kGcmTagSize) {
    return absl::InternalError(absl::StrCat("C_Decrypt returned ", size, " bytes for ",
                                            ciphertext.size(), " bytes of ciphertext"));
  }
  plaintext.Truncate(size);
  return plaintext;
}

absl::StatusOr<SecretBytes> Pkcs11Hsm::GenerateRandom(size_t length) {
  if (length == 0 || length > kMaxRandomSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "random length must be 1..", kMaxRandomSize, " bytes, got ", length));
  }
  SecretBytes random(length);
  SessionPool::Lease lease(sessions_.get());
  KMS_RETURN_IF_ERROR(lease.Check(
      lease.fn()->C_GenerateRandom(lease.session(), random.mutable_data(), length),
      "C_GenerateRandom"));
  return random;
}

std::vector<WrappingAlgorithm> Pkcs11Hsm::SupportedWrappingAlgorithms() {
  return wrapping_algorithms_;
}

absl::Status Pkcs11Hsm::GenerateRsaWrappingKey(absl::string_view object_id, int modulus_bits) {
  KMS_RETURN_IF_ERROR(CheckObjectId(object_id));
  if (modulus_bits != 2048 && modulus_bits != 3072 && modulus_bits != 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RSA wrapping key size must be 2048, 3072 or 4096 bits, got ", modulus_bits));
  }
  std::string id(object_id);
  KMS_RETURN_IF_ERROR(ReserveId(id));

  // As for AES keys, every attribute that matters is explicit. The private
  // half can do nothing but unwrap: no decrypt (that would hand the
  // unwrapped material to the caller), no sign, no derive, never extractable.
  CK_ULONG bits = static_cast<CK_ULONG>(modulus_bits);
  CK_BYTE exponent[] = {0x01, 0x00, 0x01};  // 65537
  CK_OBJECT_CLASS public_class = CKO_PUBLIC_KEY;
  CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
  CK_KEY_TYPE key_type = CKK_RSA;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  std::string label = absl::StrCat("kmsd-wrap:", id);
  CK_ATTRIBUTE public_template[] = {
      {CKA_CLASS, &public_class, sizeof(public_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &no, sizeof(no)},
      {CKA_MODULUS_BITS, &bits, sizeof(bits)},
      {CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)},
      {CKA_WRAP, &yes, sizeof(yes)},
      {CKA_ENCRYPT, &yes, sizeof(yes)},
      {CKA_VERIFY, &no, sizeof(no)},
      {CKA_DERIVE, &no, sizeof(no)},
      {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, label.data(), label.size()},
  };
  CK_ATTRIBUTE private_template[] = {
      {CKA_CLASS, &private_class, sizeof(private_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_UNWRAP, &yes, sizeof(yes)},
      {CKA_DECRYPT, &no, sizeof(no)},
      {CKA_SIGN, &no, sizeof(no)},
      {CKA_DERIVE, &no, sizeof(no)},
      {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, label.data(), label.size()},
  };
  return GenerateKeyPair(id, {CKM_RSA_PKCS_KEY_PAIR_GEN, absl::MakeSpan(public_template),
                              absl::MakeSpan(private_template), ObjectKind::kWrappingKey,
                              "C_GenerateKeyPair"});
}

namespace {

}  // namespace

// " (that id names an AES key)" and the like, for a kNotFound message about
// an id that exists but names another kind of object; "" for a free id.
std::string Pkcs11Hsm::OtherKindNote(const std::string& object_id) {
  auto it = objects_.find(object_id);
  if (it == objects_.end()) return "";
  switch (it->second.kind) {
    case ObjectKind::kAesKey: return " (that id names an AES key)";
    case ObjectKind::kWrappingKey: return " (that id names a wrapping key)";
    case ObjectKind::kSigningKey: return " (that id names a signing key)";
  }
  return "";
}

namespace {

absl::Status NoSuchWrappingKey(absl::string_view object_id, absl::string_view note) {
  return absl::NotFoundError(
      absl::StrCat("no RSA wrapping key with id '", Printable(object_id), "'", note));
}

// A DER SubjectPublicKeyInfo for the RSA public key (n, e), big-endian.
absl::StatusOr<std::string> RsaPublicKeyDer(const std::string& modulus,
                                            const std::string& exponent) {
  using Bignum = std::unique_ptr<BIGNUM, decltype(&BN_free)>;
  Bignum n(BN_bin2bn(reinterpret_cast<const unsigned char*>(modulus.data()),
                     static_cast<int>(modulus.size()), nullptr),
           &BN_free);
  Bignum e(BN_bin2bn(reinterpret_cast<const unsigned char*>(exponent.data()),
                     static_cast<int>(exponent.size()), nullptr),
           &BN_free);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> builder(
      OSSL_PARAM_BLD_new(), &OSSL_PARAM_BLD_free);
  if (n == nullptr || e == nullptr || builder == nullptr ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    return absl::InternalError("OpenSSL: cannot build RSA public key parameters");
  }
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(
      OSSL_PARAM_BLD_to_param(builder.get()), &OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr), &EVP_PKEY_CTX_free);
  EVP_PKEY* raw_key = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return absl::InternalError("OpenSSL: cannot make an RSA public key from the token's");
  }
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(raw_key, &EVP_PKEY_free);
  unsigned char* der = nullptr;
  const int size = i2d_PUBKEY(key.get(), &der);
  if (size <= 0) return absl::InternalError("OpenSSL i2d_PUBKEY failed");
  std::string result(reinterpret_cast<const char*>(der), static_cast<size_t>(size));
  OPENSSL_free(der);
  return result;
}

// The DER of the OID prime256v1 (1.2.840.10045.3.1.7): CKA_EC_PARAMS of
// every signing key.
constexpr unsigned char kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                      0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr size_t kP256PointSize = 65;      // 0x04 || x || y
constexpr size_t kP256ScalarSize = 32;     // of r and of s

// A DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) for the token's
// CKA_EC_POINT: PKCS#11 says a DER OCTET STRING holding the uncompressed
// point (04 41 04 x y, 67 bytes; SoftHSM 2.6.1 does so); some modules give
// the bare point (04 x y, 65 bytes), which is taken too. The lengths tell
// them apart: both start with 0x04 (the OCTET STRING tag, and the
// uncompressed-point marker).
absl::StatusOr<std::string> EcP256PublicKeyDer(const std::string& ec_point) {
  std::string point = ec_point;
  if (ec_point.size() != kP256PointSize) {
    const unsigned char* cursor = reinterpret_cast<const unsigned char*>(ec_point.data());
    std::unique_ptr<ASN1_OCTET_STRING, decltype(&ASN1_OCTET_STRING_free)> octets(
        d2i_ASN1_OCTET_STRING(nullptr, &cursor, static_cast<long>(ec_point.size())),
        &ASN1_OCTET_STRING_free);
    if (octets != nullptr &&
        cursor == reinterpret_cast<const unsigned char*>(ec_point.data()) + ec_point.size()) {
      point.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(octets.get())),
                   static_cast<size_t>(ASN1_STRING_length(octets.get())));
    }
  }
  if (point.size() != kP256PointSize || point[0] != '\x04') {
    return absl::InternalError(absl::StrCat(
        "the token's CKA_EC_POINT is not an uncompressed P-256 point (", point.size(),
        " bytes)"));
  }
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> builder(
      OSSL_PARAM_BLD_new(), &OSSL_PARAM_BLD_free);
  if (builder == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1",
                                      0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return absl::InternalError("OpenSSL: cannot build EC public key parameters");
  }
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(
      OSSL_PARAM_BLD_to_param(builder.get()), &OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), &EVP_PKEY_CTX_free);
  EVP_PKEY* raw_key = nullptr;
  // fromdata checks that the point is on the curve.
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return absl::InternalError("OpenSSL: cannot make a P-256 public key from the token's");
  }
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(raw_key, &EVP_PKEY_free);
  unsigned char* der = nullptr;
  const int size = i2d_PUBKEY(key.get(), &der);
  if (size <= 0) return absl::InternalError("OpenSSL i2d_PUBKEY failed");
  std::string result(reinterpret_cast<const char*>(der), static_cast<size_t>(size));
  OPENSSL_free(der);
  return result;
}

// CKM_ECDSA's r || s (each 32 bytes, big-endian) as a DER ECDSA-Sig-Value
// (SEQUENCE { r INTEGER, s INTEGER }), what OpenSSL and X.509 verify.
absl::StatusOr<std::string> EcdsaSignatureDer(absl::string_view raw) {
  if (raw.size() != 2 * kP256ScalarSize) {
    return absl::InternalError(
        absl::StrCat("CKM_ECDSA on P-256 returned ", raw.size(), " bytes, not 64"));
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(bytes, kP256ScalarSize, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + kP256ScalarSize, kP256ScalarSize, nullptr);
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> signature(ECDSA_SIG_new(),
                                                                   &ECDSA_SIG_free);
  if (r == nullptr || s == nullptr || signature == nullptr ||
      ECDSA_SIG_set0(signature.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return absl::InternalError("OpenSSL: cannot build an ECDSA signature");
  }
  // r and s belong to `signature` now.
  unsigned char* der = nullptr;
  const int size = i2d_ECDSA_SIG(signature.get(), &der);
  if (size <= 0) return absl::InternalError("OpenSSL i2d_ECDSA_SIG failed");
  std::string result(reinterpret_cast<const char*>(der), static_cast<size_t>(size));
  OPENSSL_free(der);
  return result;
}

}  // namespace

absl::StatusOr<std::string> Pkcs11Hsm::GetPublicKeyDer(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);  // held across the token call: see mu_
  const std::string id(object_id);
  auto it = objects_.find(id);
  if (it == objects_.end() || it->second.kind == ObjectKind::kAesKey) {
    return absl::NotFoundError(absl::StrCat("no wrapping or signing key with id '",
                                            Printable(object_id), "'", OtherKindNote(id)));
  }
  if (it->second.public_handle == CK_INVALID_HANDLE) {
    return absl::InternalError(absl::StrCat("the public half of key pair '",
                                            Printable(object_id), "' is missing"));
  }
  SessionPool::Lease lease(sessions_.get());
  if (it->second.kind == ObjectKind::kSigningKey) {
    CK_ATTRIBUTE point = {CKA_EC_POINT, nullptr, 0};
    KMS_RETURN_IF_ERROR(lease.Check(
        lease.fn()->C_GetAttributeValue(lease.session(), it->second.public_handle, &point, 1),
        "C_GetAttributeValue(CKA_EC_POINT)"));
    std::string encoded(point.ulValueLen, '\0');
    point.pValue = encoded.data();
    KMS_RETURN_IF_ERROR(lease.Check(
        lease.fn()->C_GetAttributeValue(lease.session(), it->second.public_handle, &point, 1),
        "C_GetAttributeValue(CKA_EC_POINT)"));
    encoded.resize(point.ulValueLen);
    return EcP256PublicKeyDer(encoded);
  }
  CK_ATTRIBUTE attributes[] = {
      {CKA_MODULUS, nullptr, 0},
      {CKA_PUBLIC_EXPONENT, nullptr, 0},
  };
  KMS_RETURN_IF_ERROR(lease.Check(
      lease.fn()->C_GetAttributeValue(lease.session(), it->second.public_handle, attributes, 2),
      "C_GetAttributeValue"));
  std::string modulus(attributes[0].ulValueLen, '\0');
  std::string exponent(attributes[1].ulValueLen, '\0');
  attributes[0].pValue = modulus.data();
  attributes[1].pValue = exponent.data();
  KMS_RETURN_IF_ERROR(lease.Check(
      lease.fn()->C_GetAttributeValue(lease.session(), it->second.public_handle, attributes, 2),
      "C_GetAttributeValue"));
  modulus.resize(attributes[0].ulValueLen);
  exponent.resize(attributes[1].ulValueLen);
  return RsaPublicKeyDer(modulus, exponent);
}

absl::Status Pkcs11Hsm::UnwrapAesKey(absl::string_view wrapping_key_id,
                                     WrappingAlgorithm algorithm, absl::string_view wrapped,
                                     absl::string_view new_object_id) {
  KMS_RETURN_IF_ERROR(CheckObjectId(new_object_id));
  std::string id(new_object_id);
  KMS_RETURN_IF_ERROR(ReserveId(id));
  absl::StatusOr<ObjectHandle> handle = UnwrapIntoToken(wrapping_key_id, algorithm, wrapped, id);
  absl::MutexLock lock(&mu_);
  generating_.erase(id);
  if (!handle.ok()) return handle.status();
  objects_.emplace(std::move(id), CachedObject{ObjectKind::kAesKey, *handle, CK_INVALID_HANDLE});
  return absl::OkStatus();
}

absl::StatusOr<Pkcs11Hsm::ObjectHandle> Pkcs11Hsm::UnwrapIntoToken(
    absl::string_view wrapping_key_id, WrappingAlgorithm algorithm, absl::string_view wrapped,
    const std::string& new_object_id) {
  absl::ReaderMutexLock lock(&mu_);  // held across the token calls: see mu_
  const std::string wrapping_id(wrapping_key_id);
  auto it = objects_.find(wrapping_id);
  if (it == objects_.end() || it->second.kind != ObjectKind::kWrappingKey) {
    return NoSuchWrappingKey(wrapping_key_id, OtherKindNote(wrapping_id));
  }
  const CK_OBJECT_HANDLE private_key = it->second.handle;
  if (std::find(wrapping_algorithms_.begin(), wrapping_algorithms_.end(), algorithm) ==
      wrapping_algorithms_.end()) {
    std::string supported;
    for (WrappingAlgorithm a : wrapping_algorithms_) {
      absl::StrAppend(&supported, supported.empty() ? "" : ", ", WrappingAlgorithmName(a));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("this HSM cannot unwrap ", WrappingAlgorithmName(algorithm),
                     "; it supports: ", supported.empty() ? "none" : supported));
  }

  // The length is whatever was wrapped, found below and refused unless 32.
  CmkKeyTemplate key_template(new_object_id, /*with_value_len=*/false);
  const absl::Status did_not_unwrap =
      absl::InvalidArgumentError("wrapped key material did not unwrap");

  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  const CK_SESSION_HANDLE session = lease.session();
  OaepMechanism oaep(OaepHash(algorithm));
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  size_t rsa_size = 0;  // of an RSA_AES_KEY_WRAP input
  if (algorithm == WrappingAlgorithm::kRsaesOaepSha1 ||
      algorithm == WrappingAlgorithm::kRsaesOaepSha256) {
    KMS_RETURN_IF_ERROR(lease.Check(
        fn->C_UnwrapKey(session, &oaep.mechanism, private_key, InputBytes(wrapped),
                        wrapped.size(), key_template.data(), key_template.size(), &handle),
        "C_UnwrapKey(RSA-OAEP)", CkCall::kUnwrap));
  } else {
    // The RSA part is exactly as long as the modulus.
    CK_ATTRIBUTE modulus = {CKA_MODULUS, nullptr, 0};
    KMS_RETURN_IF_ERROR(lease.Check(fn->C_GetAttributeValue(session, private_key, &modulus, 1),
                                    "C_GetAttributeValue(CKA_MODULUS)"));
    rsa_size = modulus.ulValueLen;
    if (wrapped.size() <= rsa_size) return did_not_unwrap;
    const absl::string_view rsa_part = wrapped.substr(0, rsa_size);
    const absl::string_view kwp_part = wrapped.substr(rsa_size);
    EphemeralKeyTemplate ephemeral_template;
    CK_OBJECT_HANDLE ephemeral = CK_INVALID_HANDLE;
    KMS_RETURN_IF_ERROR(lease.Check(
        fn->C_UnwrapKey(session, &oaep.mechanism, private_key, InputBytes(rsa_part),
                        rsa_part.size(), ephemeral_template.attributes, EphemeralKeyTemplate::kSize,
                        &ephemeral),
        "C_UnwrapKey(RSA-OAEP)", CkCall::kUnwrap));
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    absl::Status status = lease.Check(
        fn->C_UnwrapKey(session, &kwp, ephemeral, InputBytes(kwp_part), kwp_part.size(),
                        key_template.data(), key_template.size(), &handle),
        "C_UnwrapKey(AES-KWP)", CkCall::kUnwrap);
    // On every path: the ephemeral key could unwrap the material again.
    DestroyTransient(lease, ephemeral, "ephemeral key");
    KMS_RETURN_IF_ERROR(status);
  }

  absl::Status status;
  if (reports_unwrapped_length_) {
    CK_ULONG value_size = 0;
    CK_ATTRIBUTE length = {CKA_VALUE_LEN, &value_size, sizeof(value_size)};
    status = lease.Check(fn->C_GetAttributeValue(session, handle, &length, 1),
                         "C_GetAttributeValue(CKA_VALUE_LEN)");
    if (status.ok() && value_size != kAesKeySize) {
      status = absl::OutOfRangeError(
          absl::StrCat("key material must be ", kAesKeySize, " bytes, got ", value_size));
    }
  } else if (rsa_size == 0) {
    // Cannot happen: plain OAEP is not offered without reported lengths.
    status = absl::InternalError("cannot check the length of the imported material");
  } else {
    // Only RSA_AES_KEY_WRAP gets here (see ProbeWrappingAlgorithms). RFC 5649
    // pads to 8 bytes and adds 8, so the wrapped length pins the material to
    // 8 possible lengths: 32 bytes wrap to exactly 40, and of 25..32 bytes
    // only 32 is an AES key size. An AES operation on the new key then
    // proves it is one (a module refuses other lengths).
    const size_t kwp_size = wrapped.size() - rsa_size;
    if (kwp_size != kAesKeySize + 8) {
      // The one AES key size in the range, if any, is what was most likely
      // sent (16 and 24 bytes wrap to 24 and 32).
      const size_t longest = kwp_size >= 16 ? kwp_size - 8 : 0;
      status = absl::OutOfRangeError(absl::StrCat(
          "key material must be ", kAesKeySize, " bytes, got ",
          longest == 16 || longest == 24 ? absl::StrCat(longest)
                                         : absl::StrCat(kwp_size - 15, "..", longest)));
    } else {
      CK_MECHANISM ecb = {CKM_AES_ECB, nullptr, 0};
      std::string block(16, '\0');
      std::string out(16, '\0');
      CK_ULONG out_size = out.size();
      status = lease.Check(fn->C_EncryptInit(session, &ecb, handle), "C_EncryptInit");
      if (status.ok()) {
        status = lease.Check(fn->C_Encrypt(session, InputBytes(block), block.size(),
                                           reinterpret_cast<CK_BYTE_PTR>(out.data()),
                                           &out_size),
                             "C_Encrypt");
      }
      // A token or session that is gone says nothing about the material.
      if (!status.ok() && status.code() != absl::StatusCode::kUnavailable &&
          status.code() != absl::StatusCode::kResourceExhausted) {
        status = absl::OutOfRangeError(
            absl::StrCat("key material must be ", kAesKeySize,
                         " bytes, got 25..31 (not an AES key size)"));
      }
    }
  }
  if (!status.ok()) {
    absl::Status destroyed =
        lease.Check(fn->C_DestroyObject(session, handle), "C_DestroyObject");
    if (!destroyed.ok()) {
      // A token object now exists that the cache does not know; reopening
      // finds it (and the reconciler removes it as an orphan).
      KMS_LOG(ERROR) << "cannot destroy refused imported key '" << Printable(new_object_id)
                     << "': " << destroyed.message();
    }
    return status;
  }
  return handle;
}

absl::StatusOr<std::string> Pkcs11Hsm::EncryptBlock(absl::string_view object_id,
                                                    absl::string_view block) {
  absl::ReaderMutexLock lock(&mu_);  // held across the token call: see mu_
  const CachedObject* key = FindAesKey(std::string(object_id));
  if (key == nullptr) return NoSuchKey(object_id);
  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  CK_MECHANISM ecb = {CKM_AES_ECB, nullptr, 0};
  KMS_RETURN_IF_ERROR(
      lease.Check(fn->C_EncryptInit(lease.session(), &ecb, key->handle), "C_EncryptInit"));
  std::string out(block.size(), '\0');
  CK_ULONG size = out.size();
  KMS_RETURN_IF_ERROR(lease.Check(
      fn->C_Encrypt(lease.session(), InputBytes(block), block.size(),
                    reinterpret_cast<CK_BYTE_PTR>(out.data()), &size),
      "C_Encrypt"));
  if (size != block.size()) {
    return absl::InternalError(absl::StrCat("C_Encrypt(AES-ECB) returned ", size, " bytes"));
  }
  return out;
}

absl::StatusOr<std::string> Pkcs11Hsm::KeyCheckValue(absl::string_view object_id) {
  KMS_ASSIGN_OR_RETURN(std::string block, EncryptBlock(object_id, std::string(16, '\0')));
  return block.substr(0, kKeyCheckValueSize);
}

absl::StatusOr<std::string> Pkcs11Hsm::KeyFingerprint(absl::string_view object_id) {
  return EncryptBlock(object_id, kKeyFingerprintBlock);
}

absl::Status Pkcs11Hsm::GenerateEcSigningKey(absl::string_view object_id) {
  KMS_RETURN_IF_ERROR(CheckObjectId(object_id));
  std::string id(object_id);
  KMS_RETURN_IF_ERROR(ReserveId(id));

  // As for every key kmsd makes, every attribute that matters is explicit.
  // The private half can do nothing but sign: a checkpoint signature is its
  // only use, and an audit log key that could decrypt, unwrap or derive
  // would be a second way in.
  CK_OBJECT_CLASS public_class = CKO_PUBLIC_KEY;
  CK_OBJECT_CLASS private_class = CKO_PRIVATE_KEY;
  CK_KEY_TYPE key_type = CKK_EC;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  CK_BYTE curve[sizeof(kP256Oid)];
  std::memcpy(curve, kP256Oid, sizeof(curve));
  std::string label = absl::StrCat("kmsd-sign:", id);
  CK_ATTRIBUTE public_template[] = {
      {CKA_CLASS, &public_class, sizeof(public_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &no, sizeof(no)},
      {CKA_EC_PARAMS, curve, sizeof(curve)},
      {CKA_VERIFY, &yes, sizeof(yes)},
      {CKA_ENCRYPT, &no, sizeof(no)},
      {CKA_WRAP, &no, sizeof(no)},
      {CKA_DERIVE, &no, sizeof(no)},
      {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, label.data(), label.size()},
  };
  CK_ATTRIBUTE private_template[] = {
      {CKA_CLASS, &private_class, sizeof(private_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_SIGN, &yes, sizeof(yes)},
      {CKA_DECRYPT, &no, sizeof(no)},
      {CKA_UNWRAP, &no, sizeof(no)},
      {CKA_DERIVE, &no, sizeof(no)},
      {CKA_ID, id.data(), id.size()},
      {CKA_LABEL, label.data(), label.size()},
  };
  return GenerateKeyPair(id, {CKM_EC_KEY_PAIR_GEN, absl::MakeSpan(public_template),
                              absl::MakeSpan(private_template), ObjectKind::kSigningKey,
                              "C_GenerateKeyPair(EC)"});
}

absl::StatusOr<std::string> Pkcs11Hsm::SignEcdsaP256Sha256(absl::string_view object_id,
                                                           absl::string_view message) {
  // The hash is no secret (the message is what gets audited), so it is
  // computed here; CKM_ECDSA signs the 32 bytes as given.
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(message.data(), message.size(), digest, &digest_size, EVP_sha256(),
                 nullptr) != 1 ||
      digest_size != 32) {
    return absl::InternalError("OpenSSL SHA-256 failed");
  }
  absl::ReaderMutexLock lock(&mu_);  // held across the token call: see mu_
  const std::string id(object_id);
  auto it = objects_.find(id);
  if (it == objects_.end() || it->second.kind != ObjectKind::kSigningKey) {
    return absl::NotFoundError(absl::StrCat("no signing key with id '", Printable(object_id),
                                            "'", OtherKindNote(id)));
  }
  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  CK_MECHANISM ecdsa = {CKM_ECDSA, nullptr, 0};
  KMS_RETURN_IF_ERROR(
      lease.Check(fn->C_SignInit(lease.session(), &ecdsa, it->second.handle), "C_SignInit"));
  std::string raw(2 * kP256ScalarSize, '\0');
  CK_ULONG size = raw.size();
  KMS_RETURN_IF_ERROR(lease.Check(fn->C_Sign(lease.session(), digest, digest_size,
                                             reinterpret_cast<CK_BYTE_PTR>(raw.data()), &size),
                                  "C_Sign"));
  raw.resize(size);
  return EcdsaSignatureDer(raw);
}

absl::StatusOr<size_t> Pkcs11Hsm::CountObjectsForTesting() {
  SessionPool::Lease lease(sessions_.get());
  KMS_ASSIGN_OR_RETURN(const std::vector<CK_OBJECT_HANDLE> found, FindAll(lease, nullptr, 0));
  return found.size();
}

}  // namespace kms::hsm
