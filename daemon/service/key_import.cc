// KeyService: import of key material (AWS KMS "bring your own key"):
// GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial and
// the expiry of imported material.
//
// The material is only ever in the clear outside kmsd and inside the HSM:
// it arrives wrapped under an RSA key pair generated in the HSM for this one
// import, is unwrapped straight into a non-extractable token object, and is
// then judged by values the HSM computes from it (hsm::Hsm::KeyCheckValue and
// KeyFingerprint), never by reading it. Until the metadata commit the new
// object is covered by a create_version intent, so a crash at any point
// leaves either no trace of the import or all of it (Recover()).
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/common/errors.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/uuid.h"
#include "daemon/service/key_service.h"
#include "daemon/service/service_internal.h"
#include "daemon/service/validation.h"
#include "openssl/crypto.h"

namespace kms::service {
namespace {

using internal::FromHsm;
using internal::NowMicros;
using internal::RefuseIfPendingDeletion;
using internal::ToTimestamp;
using keystore::KeyRecord;
using keystore::KeyState;
using keystore::KeyVersionRecord;

absl::StatusOr<hsm::WrappingAlgorithm> FromProto(v1::AlgorithmSpec spec) {
  switch (spec) {
    case v1::RSAES_OAEP_SHA_1: return hsm::WrappingAlgorithm::kRsaesOaepSha1;
    case v1::RSAES_OAEP_SHA_256: return hsm::WrappingAlgorithm::kRsaesOaepSha256;
    case v1::RSA_AES_KEY_WRAP_SHA_1: return hsm::WrappingAlgorithm::kRsaAesKeyWrapSha1;
    case v1::RSA_AES_KEY_WRAP_SHA_256: return hsm::WrappingAlgorithm::kRsaAesKeyWrapSha256;
    default: break;
  }
  return ValidationError(absl::StrCat(
      "wrapping_algorithm must be one of RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, "
      "RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256; got ",
      spec == v1::ALGORITHM_SPEC_UNSPECIFIED ? "none" : absl::StrCat(static_cast<int>(spec))));
}

absl::StatusOr<int> ModulusBits(v1::WrappingKeySpec spec) {
  switch (spec) {
    case v1::RSA_2048: return 2048;
    case v1::RSA_3072: return 3072;
    case v1::RSA_4096: return 4096;
    default: break;
  }
  return ValidationError(absl::StrCat(
      "wrapping_key_spec must be one of RSA_2048, RSA_3072, RSA_4096; got ",
      spec == v1::WRAPPING_KEY_SPEC_UNSPECIFIED ? "none" : absl::StrCat(static_cast<int>(spec))));
}

std::string AlgorithmList(const std::vector<hsm::WrappingAlgorithm>& algorithms) {
  std::string out;
  for (hsm::WrappingAlgorithm a : algorithms) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", hsm::WrappingAlgorithmName(a));
  }
  return out.empty() ? "none" : out;
}

// Key check values are shown as 6 upper-case hex digits.
std::string KcvText(absl::string_view kcv) {
  return absl::AsciiStrToUpper(absl::BytesToHexString(kcv));
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// The expected KCV argument as raw bytes; empty when not given.
absl::StatusOr<std::string> ParseExpectedKcv(absl::string_view text) {
  if (text.empty()) return std::string();
  const bool hex = text.size() == 2 * hsm::kKeyCheckValueSize &&
                   std::all_of(text.begin(), text.end(),
                               [](char c) { return absl::ascii_isxdigit(c); });
  if (!hex) {
    return ValidationError(absl::StrCat(
        "expected_key_check_value must be ", 2 * hsm::kKeyCheckValueSize,
        " hex digits, got '", text, "'"));
  }
  return absl::HexStringToBytes(text);
}

absl::StatusOr<absl::Time> FromTimestamp(absl::string_view field,
                                         const google::protobuf::Timestamp& ts) {
  if (ts.nanos() < 0 || ts.nanos() > 999'999'999) {
    return ValidationError(absl::StrCat(field, " has invalid nanos ", ts.nanos()));
  }
  // Whole microseconds: what the store keeps.
  return absl::FromUnixSeconds(ts.seconds()) + absl::Microseconds(ts.nanos() / 1000);
}

// The import is refused if its fingerprint is that of material anyone could
// guess: one byte repeated (all zero, all 0xFF, ...). The comparison uses the
// 16-byte fingerprint, not the 3-byte KCV: 256 candidates against a 24-bit
// KCV would refuse one good key in 65,536.
absl::Status RefuseWeakMaterial(absl::string_view fingerprint) {
  for (int byte = 0; byte < 256; ++byte) {
    SecretBytes candidate(hsm::kAesKeySize);
    std::memset(candidate.mutable_data(), byte, candidate.size());
    KMS_ASSIGN_OR_RETURN(std::string weak, hsm::LocalKeyFingerprint(candidate));
    if (weak == fingerprint) {
      return IncorrectKeyMaterialError(absl::StrFormat(
          "the key material is weak: every byte is 0x%02X; generate it with a cryptographic "
          "random number generator (kmsctl generate-key-material)",
          byte));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ------------------------------------------------------------------ tokens

absl::StatusOr<std::string> KeyService::ImportTokenMac(const ImportToken& token) {
  // AES-GMAC: GCM over an empty plaintext leaves only the tag, which
  // authenticates the AAD.
  absl::StatusOr<std::string> tag =
      hsm_.EncryptGcm(kImportTokenKeyId, token.mac_iv, "", token.MacAad());
  if (!tag.ok()) return tag.status();
  if (tag->size() != kImportTokenMacSize) {
    return absl::InternalError(absl::StrCat("GMAC gave ", tag->size(), " bytes"));
  }
  return tag;
}

absl::StatusOr<ImportToken> KeyService::VerifyImportToken(absl::string_view bytes) {
  KMS_ASSIGN_OR_RETURN(ImportToken token, ImportToken::Parse(bytes));
  absl::StatusOr<std::string> mac = ImportTokenMac(token);
  if (absl::IsNotFound(mac.status())) {
    // No token key: this kmsd never issued a token.
    return InvalidImportTokenError("the import token was not issued by this kmsd");
  }
  if (!mac.ok()) return FromHsm(mac.status(), "EncryptGcm(import token)");
  if (CRYPTO_memcmp(mac->data(), token.mac.data(), kImportTokenMacSize) != 0) {
    return InvalidImportTokenError(
        "the import token is not valid: it was altered, or was not issued by this kmsd");
  }
  return token;
}

// ------------------------------------------------------------------ parameters

absl::StatusOr<KeyRecord> KeyService::KeyForImportParameters(absl::string_view key_id) {
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", key_id));
  if (key.origin != keystore::KeyOrigin::kExternal) {
    return UnsupportedOperationError(absl::StrCat(
        "key '", key_id,
        "' was created with origin AWS_KMS: its material was generated in the HSM and cannot "
        "be imported; create a key with origin EXTERNAL"));
  }
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, key_id));
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::ImportParametersRecord> outstanding,
                       store_.ListImportParameters(key.key_id));
  if (static_cast<int>(outstanding.size()) >= options_.max_outstanding_import_parameters) {
    return LimitExceededError(absl::StrCat(
        "key '", key_id, "' has ", outstanding.size(),
        " unused import parameters, the limit; use one, or wait until the oldest expires at ",
        TimeText(outstanding.front().expiration_time)));
  }
  return key;
}

absl::StatusOr<v1::GetParametersForImportResponse> KeyService::GetParametersForImport(
    const v1::GetParametersForImportRequest& request) {
  KMS_ASSIGN_OR_RETURN(hsm::WrappingAlgorithm algorithm, FromProto(request.wrapping_algorithm()));
  KMS_ASSIGN_OR_RETURN(int modulus_bits, ModulusBits(request.wrapping_key_spec()));
  const std::vector<hsm::WrappingAlgorithm> supported = hsm_.SupportedWrappingAlgorithms();
  if (std::find(supported.begin(), supported.end(), algorithm) == supported.end()) {
    return UnsupportedOperationError(absl::StrCat(
        "this HSM cannot unwrap ", hsm::WrappingAlgorithmName(algorithm),
        " without exposing the key material; it supports: ", AlgorithmList(supported)));
  }

  // The pair is generated without the control-plane lock (RSA-4096 takes
  // seconds in SoftHSM); the rules are checked before and again at commit.
  KeyRecord key;
  {
    absl::MutexLock lock(&control_mu_);
    KMS_ASSIGN_OR_RETURN(key, KeyForImportParameters(request.key_id()));
    if (!hsm_.HasKey(kImportTokenKeyId)) {
      absl::Status made = hsm_.GenerateAesKey(kImportTokenKeyId);
      if (!made.ok() && !absl::IsAlreadyExists(made)) {
        return FromHsm(made, "GenerateAesKey(import token key)");
      }
      KMS_LOG(INFO) << "created the import token key in the HSM";
    }
  }

  const absl::Time now = NowMicros(clock_);
  keystore::ImportParametersRecord record;
  record.wrapping_key_id = NewUuid();
  record.key_id = key.key_id;
  record.wrapping_algorithm = std::string(hsm::WrappingAlgorithmName(algorithm));
  record.wrapping_key_spec = v1::WrappingKeySpec_Name(request.wrapping_key_spec());
  record.creation_time = now;
  record.expiration_time = now + options_.import_parameters_lifetime;

  // A crash between generating the pair and committing its record leaves a
  // pair without a record; Recover() removes those.
  absl::Status generated = hsm_.GenerateRsaWrappingKey(record.wrapping_key_id, modulus_bits);
  if (!generated.ok()) return FromHsm(generated, "GenerateRsaWrappingKey");
  auto fail = [&](absl::Status status) {
    if (absl::Status s = hsm_.DestroyKey(record.wrapping_key_id); !s.ok()) {
      KMS_LOG(ERROR) << "could not destroy unused wrapping key " << record.wrapping_key_id
                     << " (removed at the next start): " << s;
    }
    return status;
  };
  absl::StatusOr<std::string> public_key = hsm_.GetPublicKeyDer(record.wrapping_key_id);
  if (!public_key.ok()) return fail(FromHsm(public_key.status(), "GetPublicKeyDer"));

  ImportToken token;
  token.wrapping_key_id = record.wrapping_key_id;
  token.key_id = key.key_id;
  token.algorithm = algorithm;
  token.expiration_time = record.expiration_time;
  absl::StatusOr<SecretBytes> iv = hsm_.GenerateRandom(kImportTokenMacIvSize);
  if (!iv.ok()) return fail(FromHsm(iv.status(), "GenerateRandom(import token)"));
  token.mac_iv = std::string(iv->secret());
  absl::StatusOr<std::string> mac = ImportTokenMac(token);
  if (!mac.ok()) return fail(FromHsm(mac.status(), "EncryptGcm(import token)"));
  token.mac = *std::move(mac);

  {
    absl::MutexLock lock(&control_mu_);
    // By key id: an alias may have been pointed elsewhere meanwhile.
    if (absl::StatusOr<KeyRecord> again = KeyForImportParameters(key.key_id); !again.ok()) {
      return fail(again.status());
    }
    if (absl::Status s = store_.AddImportParameters(record); !s.ok()) return fail(s);
  }
  KMS_LOG(INFO) << "import parameters for key " << key.key_id << ": wrapping key "
                << record.wrapping_key_id << " (" << record.wrapping_key_spec << ", "
                << record.wrapping_algorithm << "), valid until "
                << TimeText(record.expiration_time);

  v1::GetParametersForImportResponse response;
  response.set_key_id(names_.KeyArn(key.key_id));
  response.set_import_token(token.Serialize());
  response.set_public_key(*std::move(public_key));
  *response.mutable_parameters_valid_to() = ToTimestamp(record.expiration_time);
  return response;
}

// ------------------------------------------------------------------ import

absl::StatusOr<v1::ImportKeyMaterialResponse> KeyService::ImportKeyMaterial(
    const v1::ImportKeyMaterialRequest& request) {
  // ---- Arguments, before anything is looked up.
  KMS_RETURN_IF_ERROR(CheckRequired("import_token", request.import_token()));
  KMS_RETURN_IF_ERROR(CheckRequired("encrypted_key_material", request.encrypted_key_material()));
  if (!v1::ImportType_IsValid(request.import_type())) {
    return ValidationError(absl::StrCat(
        "import_type must be EXISTING_KEY_MATERIAL or NEW_KEY_MATERIAL, got ",
        static_cast<int>(request.import_type())));
  }
  const bool new_material = request.import_type() == v1::NEW_KEY_MATERIAL;
  if (new_material && !request.key_material_id().empty()) {
    return ValidationError("key_material_id is for EXISTING_KEY_MATERIAL re-imports only");
  }
  if (!request.key_material_id().empty() && !UuidToBytes(request.key_material_id())) {
    return ValidationError(absl::StrCat("key_material_id must be a key version id, got '",
                                        request.key_material_id(), "'"));
  }
  v1::ExpirationModelType model = request.expiration_model();
  if (!v1::ExpirationModelType_IsValid(model)) {
    return ValidationError(absl::StrCat(
        "expiration_model must be KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE, got ",
        static_cast<int>(model)));
  }
  if (model == v1::EXPIRATION_MODEL_TYPE_UNSPECIFIED) {
    model = request.has_valid_to() ? v1::KEY_MATERIAL_EXPIRES : v1::KEY_MATERIAL_DOES_NOT_EXPIRE;
  }
  const absl::Time now = NowMicros(clock_);
  std::optional<absl::Time> valid_to;
  if (model == v1::KEY_MATERIAL_EXPIRES) {
    if (!request.has_valid_to()) {
      return ValidationError("valid_to is required with KEY_MATERIAL_EXPIRES");
    }
    KMS_ASSIGN_OR_RETURN(valid_to, FromTimestamp("valid_to", request.valid_to()));
    const absl::Time latest = now + absl::Hours(24) * options_.max_import_valid_days;
    if (*valid_to <= now || *valid_to > latest) {
      return ValidationError(absl::StrCat("valid_to must be in the future and at most ",
                                          options_.max_import_valid_days,
                                          " days ahead (", TimeText(latest), "), got ",
                                          TimeText(*valid_to)));
    }
  } else if (request.has_valid_to()) {
    return ValidationError("valid_to must not be set with KEY_MATERIAL_DOES_NOT_EXPIRE");
  }
  KMS_ASSIGN_OR_RETURN(const std::string expected_kcv,
                       ParseExpectedKcv(request.expected_key_check_value()));

  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  if (key.origin != keystore::KeyOrigin::kExternal) {
    return UnsupportedOperationError(absl::StrCat(
        "key '", request.key_id(), "' was created with origin AWS_KMS: it cannot take imported "
        "key material"));
  }
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, request.key_id()));

  // ---- The token: authentic, for this key, in date, unused.
  KMS_ASSIGN_OR_RETURN(ImportToken token, VerifyImportToken(request.import_token()));
  if (token.key_id != key.key_id) {
    return InvalidImportTokenError(absl::StrCat(
        "the import token was issued for another key, not '", request.key_id(), "'"));
  }
  if (now >= token.expiration_time) {
    return ExpiredImportTokenError(absl::StrCat(
        "the import token expired at ", TimeText(token.expiration_time),
        "; call GetParametersForImport again and wrap the material under the new public key"));
  }
  absl::StatusOr<keystore::ImportParametersRecord> parameters =
      store_.GetImportParameters(token.wrapping_key_id);
  if (absl::IsNotFound(parameters.status()) ||
      (parameters.ok() && parameters->key_id != key.key_id)) {
    return InvalidImportTokenError(
        "the import token has already been used; each token imports once: call "
        "GetParametersForImport again");
  }
  KMS_RETURN_IF_ERROR(parameters.status());

  // ---- Where the material goes.
  KMS_ASSIGN_OR_RETURN(std::vector<KeyVersionRecord> versions, store_.ListVersions(key.key_id));
  enum class Kind {
    kFirst,       // the key's first material: a new version, current
    kNew,         // NEW_KEY_MATERIAL: a new version, current (a rotation)
    kRestore,     // re-import of deleted material into its old version
    kVerifyOnly,  // re-import of material that is present: checked, not kept
  };
  Kind kind;
  std::optional<KeyVersionRecord> target;  // kRestore, kVerifyOnly
  std::string object_id;
  if (new_material) {
    if (versions.empty()) {
      return ValidationError(absl::StrCat(
          "key '", request.key_id(),
          "' has no key material yet: import its first material with EXISTING_KEY_MATERIAL"));
    }
    if (key.state == KeyState::kPendingImport) {
      return InvalidStateError(absl::StrCat(
          "key '", request.key_id(),
          "' is pending import: re-import its current material before importing new material"));
    }
    const auto rotations = std::count_if(versions.begin(), versions.end(), [](const auto& v) {
      return v.origin == keystore::VersionOrigin::kOnDemand;
    });
    if (rotations >= options_.on_demand_rotation_limit) {
      return LimitExceededError(absl::StrCat(
          "key '", request.key_id(), "' has had ", rotations,
          " on-demand rotations, the limit is ", options_.on_demand_rotation_limit));
    }
    kind = Kind::kNew;
    object_id = NewUuid();
  } else if (versions.empty()) {
    if (!request.key_material_id().empty()) {
      return NotFoundError(absl::StrCat("key '", request.key_id(),
                                        "' has no key material '", request.key_material_id(),
                                        "': it has never had material"));
    }
    kind = Kind::kFirst;
    object_id = NewUuid();
  } else {
    const std::string& wanted = request.key_material_id().empty() ? key.current_version_id
                                                                  : request.key_material_id();
    auto it = std::find_if(versions.begin(), versions.end(),
                           [&](const auto& v) { return v.version_id == wanted; });
    if (it == versions.end()) {
      return NotFoundError(absl::StrCat("key material '", wanted, "' is not a version of key '",
                                        request.key_id(), "'"));
    }
    target = *it;
    if (target->material_deleted) {
      kind = Kind::kRestore;
      object_id = target->version_id;
      // Left by a destruction that failed half-way: it is marked deleted, so
      // nothing uses it; clear the way for the re-import.
      if (hsm_.HasKey(object_id)) {
        absl::Status s = hsm_.DestroyKey(object_id);
        if (!s.ok() && !absl::IsNotFound(s)) return FromHsm(s, "DestroyKey(leftover material)");
      }
    } else {
      kind = Kind::kVerifyOnly;
      object_id = NewUuid();
    }
  }

  // ---- Unwrap inside the HSM, under an intent.
  KMS_ASSIGN_OR_RETURN(const int64_t intent_id,
                       store_.AddIntent({0, std::string(kIntentCreateVersion), key.key_id,
                                         object_id, now}));
  CrashPoint("import:after-intent");
  absl::Status unwrapped = hsm_.UnwrapAesKey(token.wrapping_key_id, token.algorithm,
                                             request.encrypted_key_material(), object_id);
  if (!unwrapped.ok()) {
    (void)store_.RemoveIntent(intent_id);  // nothing was created
    switch (unwrapped.code()) {
      case absl::StatusCode::kInvalidArgument:
        return InvalidCiphertextError(absl::StrCat(
            "the encrypted key material does not unwrap as ",
            hsm::WrappingAlgorithmName(token.algorithm),
            " under this import token's wrapping key: it is corrupt, was wrapped under "
            "another public key, or with another algorithm"));
      case absl::StatusCode::kOutOfRange:
        return IncorrectKeyMaterialError(unwrapped.message());
      case absl::StatusCode::kNotFound:
        return InvalidImportTokenError(
            "the import token's wrapping key no longer exists; call GetParametersForImport "
            "again");
      case absl::StatusCode::kFailedPrecondition:
        return UnsupportedOperationError(unwrapped.message());
      default:
        return FromHsm(unwrapped, "UnwrapAesKey");
    }
  }
  CrashPoint("import:after-unwrap");
  // From here on, every failure removes the new object.
  auto fail = [&](absl::Status status) {
    if (absl::Status s = hsm_.DestroyKey(object_id); s.ok()) {
      (void)store_.RemoveIntent(intent_id);
    } else {
      KMS_LOG(ERROR) << "could not destroy refused key material " << object_id
                     << " (removed at the next start): " << s;
    }
    return status;
  };

  // ---- Judge the material by what the HSM computes from it.
  absl::StatusOr<std::string> kcv = hsm_.KeyCheckValue(object_id);
  if (!kcv.ok()) return fail(FromHsm(kcv.status(), "KeyCheckValue"));
  absl::StatusOr<std::string> fingerprint = hsm_.KeyFingerprint(object_id);
  if (!fingerprint.ok()) return fail(FromHsm(fingerprint.status(), "KeyFingerprint"));
  if (absl::Status s = RefuseWeakMaterial(*fingerprint); !s.ok()) return fail(s);
  if (!expected_kcv.empty() && *kcv != expected_kcv) {
    return fail(IncorrectKeyMaterialError(absl::StrCat(
        "the key material's key check value is ", KcvText(*kcv), ", not the expected ",
        KcvText(expected_kcv), ": this is not the material you meant to import")));
  }
  if (target.has_value() && target->fingerprint != *fingerprint) {
    return fail(IncorrectKeyMaterialError(absl::StrCat(
        "this is not the material previously imported as version ", target->version_id,
        " of key '", request.key_id(), "' (its key check value is ", KcvText(*kcv),
        "; that material's is ", KcvText(target->key_check_value),
        "); a re-import must be exactly the same material")));
  }
  absl::StatusOr<std::vector<KeyVersionRecord>> same =
      store_.FindVersionsByFingerprint(*fingerprint);
  if (!same.ok()) return fail(same.status());
  for (const KeyVersionRecord& other : *same) {
    if (target.has_value() && other.version_id == target->version_id) continue;
    if (other.key_id == key.key_id) {
      return fail(IncorrectKeyMaterialError(absl::StrCat(
          "this material is already version ", other.version_id, " of key '", request.key_id(),
          "'; new key material must differ from every earlier version")));
    }
    if (!request.allow_duplicate_key_material()) {
      return fail(IncorrectKeyMaterialError(absl::StrCat(
          "this material is already imported into key ", other.key_id,
          "; set allow_duplicate_key_material to import the same material into a second key")));
    }
  }

  // ---- Commit: the key's fields, the version, the consumed token, at once.
  keystore::ImportCommit commit;
  commit.consumed_wrapping_key_id = token.wrapping_key_id;
  commit.key = key;
  commit.key.expiration_model = model == v1::KEY_MATERIAL_EXPIRES
                                    ? keystore::ExpirationModel::kExpires
                                    : keystore::ExpirationModel::kDoesNotExpire;
  commit.key.valid_to = valid_to;
  bool current_present = false;
  switch (kind) {
    case Kind::kFirst:
    case Kind::kNew: {
      KeyVersionRecord version;
      version.version_id = object_id;
      version.key_id = key.key_id;
      version.creation_time = now;
      version.origin =
          kind == Kind::kNew ? keystore::VersionOrigin::kOnDemand : keystore::VersionOrigin::kCreated;
      version.key_check_value = *kcv;
      version.fingerprint = *fingerprint;
      commit.new_version = version;
      commit.key.current_version_id = object_id;
      current_present = true;
      break;
    }
    case Kind::kRestore:
    case Kind::kVerifyOnly: {
      if (kind == Kind::kRestore) commit.restored_version_id = object_id;
      if (target->version_id == key.current_version_id) {
        current_present = true;
      } else {
        auto current = std::find_if(versions.begin(), versions.end(), [&](const auto& v) {
          return v.version_id == key.current_version_id;
        });
        current_present = current != versions.end() && !current->material_deleted;
      }
      break;
    }
  }
  if (key.state == KeyState::kPendingImport && current_present) {
    commit.key.state = KeyState::kEnabled;
  }
  if (absl::Status s = store_.CommitImport(commit); !s.ok()) return fail(s);
  CrashPoint("import:after-commit");

  // ---- Tidy up: the verification copy, the intent, the spent wrapping key.
  if (kind == Kind::kVerifyOnly) {
    if (absl::Status s = hsm_.DestroyKey(object_id); !s.ok()) {
      // The intent stays, so the next start removes the copy.
      KMS_LOG(ERROR) << "could not destroy the verification copy " << object_id << ": " << s;
    } else {
      (void)store_.RemoveIntent(intent_id);
    }
  } else if (absl::Status s = store_.RemoveIntent(intent_id); !s.ok()) {
    KMS_LOG(WARNING) << "could not clear intent " << intent_id << ": " << s;
  }
  if (absl::Status s = hsm_.DestroyKey(token.wrapping_key_id); !s.ok()) {
    KMS_LOG(ERROR) << "could not destroy spent wrapping key " << token.wrapping_key_id
                   << " (removed at the next start): " << s;
  }
  const std::string version_id = target.has_value() ? target->version_id : object_id;
  static constexpr absl::string_view kKindText[] = {"first material", "new material",
                                                    "re-imported deleted material",
                                                    "re-imported present material"};
  KMS_LOG(INFO) << "imported key material into key " << key.key_id << " ("
                << kKindText[static_cast<int>(kind)] << ", version " << version_id
                << ", KCV " << KcvText(*kcv) << ", "
                << keystore::ExpirationModelName(commit.key.expiration_model)
                << (valid_to ? absl::StrCat(" until ", TimeText(*valid_to)) : "") << ")";

  v1::ImportKeyMaterialResponse response;
  response.set_key_id(names_.KeyArn(key.key_id));
  response.set_key_material_id(version_id);
  response.set_key_check_value(KcvText(*kcv));
  return response;
}

// ------------------------------------------------------------------ deletion and expiry

absl::StatusOr<v1::DeleteImportedKeyMaterialResponse> KeyService::DeleteImportedKeyMaterial(
    const v1::DeleteImportedKeyMaterialRequest& request) {
  absl::MutexLock lock(&control_mu_);
  KMS_ASSIGN_OR_RETURN(KeyRecord key, ResolveKey("key_id", request.key_id()));
  if (key.origin != keystore::KeyOrigin::kExternal) {
    return UnsupportedOperationError(absl::StrCat(
        "key '", request.key_id(),
        "' was created with origin AWS_KMS: it has no imported material to delete"));
  }
  KMS_RETURN_IF_ERROR(RefuseIfPendingDeletion(key, request.key_id()));
  KMS_ASSIGN_OR_RETURN(std::vector<KeyVersionRecord> versions, store_.ListVersions(key.key_id));
  const bool any_present = std::any_of(versions.begin(), versions.end(),
                                       [](const auto& v) { return !v.material_deleted; });
  if (any_present) KMS_RETURN_IF_ERROR(DeleteMaterialLocked(key, "DeleteImportedKeyMaterial"));
  v1::DeleteImportedKeyMaterialResponse response;
  response.set_key_id(names_.KeyArn(key.key_id));
  return response;
}

absl::Status KeyService::DeleteMaterialLocked(KeyRecord key, absl::string_view why) {
  KMS_ASSIGN_OR_RETURN(const int64_t intent_id,
                       store_.AddIntent({0, std::string(kIntentDeleteMaterial), key.key_id, "",
                                         NowMicros(clock_)}));
  // Metadata first: from the commit on, nothing uses the material, and the
  // intent makes Recover() finish the destruction after a crash.
  if (key.state != KeyState::kPendingDeletion) key.state = KeyState::kPendingImport;
  key.expiration_model = keystore::ExpirationModel::kNone;
  key.valid_to.reset();
  if (absl::Status s = store_.MarkMaterialDeleted(key); !s.ok()) {
    (void)store_.RemoveIntent(intent_id);
    return s;
  }
  CrashPoint("delete-material:after-commit");
  // On failure the intent stays for the next start; the material is already
  // unusable.
  KMS_RETURN_IF_ERROR(DestroyDeletedMaterial(key.key_id));
  if (absl::Status s = store_.RemoveIntent(intent_id); !s.ok()) {
    KMS_LOG(WARNING) << "could not clear intent " << intent_id << ": " << s;
  }
  KMS_LOG(INFO) << "destroyed the imported key material of key " << key.key_id << " (" << why
                << "); the key is now " << keystore::KeyStateName(key.state);
  return absl::OkStatus();
}

absl::Status KeyService::DestroyDeletedMaterial(const std::string& key_id) {
  KMS_ASSIGN_OR_RETURN(std::vector<KeyVersionRecord> versions, store_.ListVersions(key_id));
  for (const KeyVersionRecord& version : versions) {
    if (!version.material_deleted || !hsm_.HasKey(version.version_id)) continue;
    absl::Status s = hsm_.DestroyKey(version.version_id);
    if (!s.ok() && !absl::IsNotFound(s)) return FromHsm(s, "DestroyKey(imported material)");
  }
  return absl::OkStatus();
}

absl::StatusOr<int> KeyService::ExpireImports() {
  absl::MutexLock lock(&control_mu_);
  const absl::Time now = clock_.Now();
  int expired = 0;
  absl::Status first_error;
  KMS_ASSIGN_OR_RETURN(std::vector<KeyRecord> keys, store_.ListKeysWithExpiredMaterial(now));
  for (const KeyRecord& key : keys) {
    absl::Status s = DeleteMaterialLocked(
        key, absl::StrCat("expired at ", TimeText(key.valid_to.value_or(now))));
    if (s.ok()) {
      ++expired;
    } else {
      KMS_LOG(ERROR) << "expiring the imported material of key " << key.key_id
                     << " failed, will retry: " << s;
      if (first_error.ok()) first_error = s;
    }
  }
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::ImportParametersRecord> stale,
                       store_.ListExpiredImportParameters(now));
  for (const auto& parameters : stale) {
    absl::Status s = hsm_.DestroyKey(parameters.wrapping_key_id);
    if (s.ok() || absl::IsNotFound(s)) s = store_.DeleteImportParameters(parameters.wrapping_key_id);
    if (!s.ok()) {
      KMS_LOG(ERROR) << "removing expired wrapping key " << parameters.wrapping_key_id
                     << " failed, will retry: " << s;
      if (first_error.ok()) first_error = s;
    }
  }
  if (!first_error.ok() && expired == 0) return first_error;
  return expired;
}

absl::Status KeyService::RemoveOrphanWrappingKeys() {
  KMS_ASSIGN_OR_RETURN(std::vector<keystore::ImportParametersRecord> records,
                       store_.ListImportParameters(""));
  for (const std::string& id : hsm_.ListWrappingKeyIds()) {
    const bool known = std::any_of(records.begin(), records.end(),
                                   [&](const auto& r) { return r.wrapping_key_id == id; });
    if (known) continue;
    absl::Status s = hsm_.DestroyKey(id);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    KMS_LOG(INFO) << "recovery: removed wrapping key " << id << " that had no import parameters";
  }
  return absl::OkStatus();
}

}  // namespace kms::service
