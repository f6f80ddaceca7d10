#include "hsm/pkcs11_hsm.h"

#include <cstring>
#include <deque>
#include <type_traits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
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
    return Login(first);
  }

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

  absl::Mutex mu_;
  std::deque<CK_SESSION_HANDLE> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

using internal::Annotate;
using internal::CkCall;
using internal::SessionPool;

Pkcs11Hsm::Pkcs11Hsm(std::shared_ptr<const internal::Pkcs11Module> module,
                     std::string token_label)
    : module_(std::move(module)), token_label_(std::move(token_label)) {
  static_assert(std::is_same_v<ObjectHandle, CK_OBJECT_HANDLE>,
                "Pkcs11Hsm::ObjectHandle must be CK_OBJECT_HANDLE");
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

  size_t key_count;
  {
    absl::ReaderMutexLock lock(&hsm->mu_);
    key_count = hsm->handles_.size();
  }
  KMS_LOG(INFO) << "opened " << where << " with " << config.session_count << " sessions and "
                << key_count << " AES keys";
  return hsm;
}

absl::Status Pkcs11Hsm::LoadHandleCache() {
  KMS_ASSIGN_OR_RETURN(auto handles, ReadKeyHandles());
  absl::MutexLock lock(&mu_);
  handles_ = std::move(handles);
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, Pkcs11Hsm::ObjectHandle>> Pkcs11Hsm::ReadKeyHandles() {
  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  const CK_SESSION_HANDLE session = lease.session();

  CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = CKK_AES;
  CK_BBOOL on_token = CK_TRUE;
  CK_ATTRIBUTE search[] = {
      {CKA_CLASS, &key_class, sizeof(key_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_TOKEN, &on_token, sizeof(on_token)},
  };
  KMS_RETURN_IF_ERROR(lease.Check(
      fn->C_FindObjectsInit(session, search, sizeof(search) / sizeof(search[0])),
      "C_FindObjectsInit"));
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

  std::map<std::string, ObjectHandle> handles;
  for (CK_OBJECT_HANDLE handle : found) {
    CK_ATTRIBUTE id_attribute = {CKA_ID, nullptr, 0};
    KMS_RETURN_IF_ERROR(lease.Check(fn->C_GetAttributeValue(session, handle, &id_attribute, 1),
                                    "C_GetAttributeValue(CKA_ID)"));
    if (id_attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION || id_attribute.ulValueLen == 0) {
      // Not a kmsd key: kmsd always sets CKA_ID.
      KMS_LOG(WARNING) << "ignoring an AES key without CKA_ID on token '" << token_label_ << "'";
      continue;
    }
    std::string id(id_attribute.ulValueLen, '\0');
    id_attribute.pValue = id.data();
    KMS_RETURN_IF_ERROR(lease.Check(fn->C_GetAttributeValue(session, handle, &id_attribute, 1),
                                    "C_GetAttributeValue(CKA_ID)"));
    id.resize(id_attribute.ulValueLen);
    if (!handles.emplace(id, handle).second) {
      // Which of the two holds the material a ciphertext was made under is
      // unknowable; guessing could make data undecryptable. Refuse to start.
      return absl::FailedPreconditionError(
          absl::StrCat("the token holds more than one AES key with CKA_ID '", Printable(id),
                       "'; remove the one kmsd did not create"));
    }
  }
  return handles;
}

absl::Status Pkcs11Hsm::GenerateAesKey(absl::string_view object_id) {
  if (object_id.empty() || object_id.size() > kMaxObjectIdSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "object id must be 1..", kMaxObjectIdSize, " bytes, got ", object_id.size()));
  }
  std::string id(object_id);
  {
    absl::MutexLock lock(&mu_);
    if (handles_.count(id) > 0 || generating_.count(id) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("an AES key with id '", Printable(id), "' already exists"));
    }
    generating_.insert(id);
  }

  // Every attribute that matters is set explicitly: module defaults differ,
  // and SoftHSM's (CKA_SENSITIVE=FALSE, and CKA_VALUE in clear on disk when
  // CKA_PRIVATE=FALSE) are unsafe.
  CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;
  CK_KEY_TYPE key_type = CKK_AES;
  CK_ULONG value_size = kAesKeySize;
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  std::string label = absl::StrCat("kmsd:", id);
  CK_ATTRIBUTE key_template[] = {
      {CKA_CLASS, &key_class, sizeof(key_class)},
      {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_VALUE_LEN, &value_size, sizeof(value_size)},
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
  CK_MECHANISM mechanism = {CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  absl::Status status;
  {
    SessionPool::Lease lease(sessions_.get());
    status = lease.Check(
        lease.fn()->C_GenerateKey(lease.session(), &mechanism, key_template,
                                  sizeof(key_template) / sizeof(key_template[0]), &handle),
        "C_GenerateKey");
  }

  absl::MutexLock lock(&mu_);
  generating_.erase(id);
  if (!status.ok()) return status;
  handles_.emplace(std::move(id), handle);
  return absl::OkStatus();
}

absl::Status Pkcs11Hsm::DestroyKey(absl::string_view object_id) {
  // Exclusive for the whole call: see mu_.
  absl::MutexLock lock(&mu_);
  auto it = handles_.find(std::string(object_id));
  if (it == handles_.end()) return NoSuchKey(object_id);
  absl::Status status;
  {
    SessionPool::Lease lease(sessions_.get());
    status = lease.Check(lease.fn()->C_DestroyObject(lease.session(), it->second),
                         "C_DestroyObject");
  }
  // On failure the entry stays: the object may well still exist.
  if (status.ok()) handles_.erase(it);
  return status;
}

bool Pkcs11Hsm::HasKey(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  return handles_.count(std::string(object_id)) > 0;
}

std::vector<std::string> Pkcs11Hsm::ListKeyIds() {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> ids;
  ids.reserve(handles_.size());
  for (const auto& [id, handle] : handles_) ids.push_back(id);  // std::map: sorted
  return ids;
}

absl::StatusOr<KeyAttributes> Pkcs11Hsm::GetKeyAttributes(absl::string_view object_id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = handles_.find(std::string(object_id));
  if (it == handles_.end()) return NoSuchKey(object_id);

  CK_BBOOL token = CK_FALSE, is_private = CK_FALSE, sensitive = CK_FALSE,
           always_sensitive = CK_FALSE, extractable = CK_TRUE, never_extractable = CK_FALSE,
           derive = CK_TRUE, encrypt = CK_FALSE, decrypt = CK_FALSE, wrap = CK_FALSE,
           unwrap = CK_FALSE;
  CK_ULONG value_size = 0;
  // Never CKA_VALUE: the token would refuse (sensitive), and kmsd never asks.
  CK_ATTRIBUTE attributes[] = {
      {CKA_TOKEN, &token, sizeof(token)},
      {CKA_PRIVATE, &is_private, sizeof(is_private)},
      {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
      {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof(always_sensitive)},
      {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
      {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(never_extractable)},
      {CKA_DERIVE, &derive, sizeof(derive)},
      {CKA_ENCRYPT, &encrypt, sizeof(encrypt)},
      {CKA_DECRYPT, &decrypt, sizeof(decrypt)},
      {CKA_WRAP, &wrap, sizeof(wrap)},
      {CKA_UNWRAP, &unwrap, sizeof(unwrap)},
      {CKA_VALUE_LEN, &value_size, sizeof(value_size)},
  };
  {
    SessionPool::Lease lease(sessions_.get());
    KMS_RETURN_IF_ERROR(lease.Check(
        lease.fn()->C_GetAttributeValue(lease.session(), it->second, attributes,
                                        sizeof(attributes) / sizeof(attributes[0])),
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
  result.encrypt = encrypt == CK_TRUE;
  result.decrypt = decrypt == CK_TRUE;
  result.wrap = wrap == CK_TRUE;
  result.unwrap = unwrap == CK_TRUE;
  result.value_len = value_size;
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
  absl::ReaderMutexLock lock(&mu_);  // held across the token call: see mu_
  auto it = handles_.find(std::string(object_id));
  if (it == handles_.end()) return NoSuchKey(object_id);

  GcmMechanism gcm(iv, aad);

  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  KMS_RETURN_IF_ERROR(
      lease.Check(fn->C_EncryptInit(lease.session(), &gcm.mechanism, it->second), "C_EncryptInit"));
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
  absl::ReaderMutexLock lock(&mu_);  // held across the token call: see mu_
  auto it = handles_.find(std::string(object_id));
  if (it == handles_.end()) return NoSuchKey(object_id);

  GcmMechanism gcm(iv, aad);

  SessionPool::Lease lease(sessions_.get());
  CK_FUNCTION_LIST* fn = lease.fn();
  KMS_RETURN_IF_ERROR(
      lease.Check(fn->C_DecryptInit(lease.session(), &gcm.mechanism, it->second), "C_DecryptInit"));
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

}  // namespace kms::hsm
