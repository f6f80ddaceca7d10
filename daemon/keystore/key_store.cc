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

}  // namespace kms::keystore
