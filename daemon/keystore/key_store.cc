#include "daemon/keystore/key_store.h"

#include "absl/strings/str_cat.h"

namespace kms::keystore {

absl::string_view KeyStateName(KeyState state) {
  switch (state) {
    case KeyState::kEnabled: return "ENABLED";
    case KeyState::kDisabled: return "DISABLED";
    case KeyState::kPendingDeletion: return "PENDING_DELETION";
    case KeyState::kPendingImport: return "PENDING_IMPORT";
  }
  return "UNKNOWN";
}

absl::StatusOr<KeyState> ParseKeyState(absl::string_view name) {
  for (KeyState s : {KeyState::kEnabled, KeyState::kDisabled, KeyState::kPendingDeletion,
                     KeyState::kPendingImport}) {
    if (KeyStateName(s) == name) return s;
  }
  return absl::InternalError(absl::StrCat("unknown key state in store: ", name));
}

absl::string_view KeyOriginName(KeyOrigin origin) {
  switch (origin) {
    case KeyOrigin::kKms: return "AWS_KMS";
    case KeyOrigin::kExternal: return "EXTERNAL";
  }
  return "UNKNOWN";
}

absl::StatusOr<KeyOrigin> ParseKeyOrigin(absl::string_view name) {
  for (KeyOrigin o : {KeyOrigin::kKms, KeyOrigin::kExternal}) {
    if (KeyOriginName(o) == name) return o;
  }
  return absl::InternalError(absl::StrCat("unknown key origin in store: ", name));
}

absl::string_view VersionOriginName(VersionOrigin origin) {
  switch (origin) {
    case VersionOrigin::kCreated: return "CREATED";
    case VersionOrigin::kAutomatic: return "AUTOMATIC";
    case VersionOrigin::kOnDemand: return "ON_DEMAND";
    case VersionOrigin::kUsageLimit: return "USAGE_LIMIT";
  }
  return "UNKNOWN";
}

absl::StatusOr<VersionOrigin> ParseVersionOrigin(absl::string_view name) {
  for (VersionOrigin o : {VersionOrigin::kCreated, VersionOrigin::kAutomatic,
                          VersionOrigin::kOnDemand, VersionOrigin::kUsageLimit}) {
    if (VersionOriginName(o) == name) return o;
  }
  return absl::InternalError(absl::StrCat("unknown version origin in store: ", name));
}

absl::string_view ExpirationModelName(ExpirationModel model) {
  switch (model) {
    case ExpirationModel::kNone: return "NONE";
    case ExpirationModel::kExpires: return "KEY_MATERIAL_EXPIRES";
    case ExpirationModel::kDoesNotExpire: return "KEY_MATERIAL_DOES_NOT_EXPIRE";
  }
  return "UNKNOWN";
}

absl::StatusOr<ExpirationModel> ParseExpirationModel(absl::string_view name) {
  for (ExpirationModel m :
       {ExpirationModel::kNone, ExpirationModel::kExpires, ExpirationModel::kDoesNotExpire}) {
    if (ExpirationModelName(m) == name) return m;
  }
  return absl::InternalError(absl::StrCat("unknown expiration model in store: ", name));
}

}  // namespace kms::keystore
