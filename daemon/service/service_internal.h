// Helpers the KeyService's translation units share (key_service.cc,
// key_import.cc). Not part of the service's interface.
#ifndef KMS_DAEMON_SERVICE_SERVICE_INTERNAL_H_
#define KMS_DAEMON_SERVICE_SERVICE_INTERNAL_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/common/clock.h"
#include "daemon/keystore/key_store.h"
#include "google/protobuf/timestamp.pb.h"

namespace kms::service::internal {

google::protobuf::Timestamp ToTimestamp(absl::Time t);

// Clock::Now() truncated to the microsecond. The store keeps microseconds;
// so do responses, so what one call returns equals what a later one reads.
absl::Time NowMicros(const Clock& clock);

// An HSM error for the caller: KeyUnavailableException for a transient
// outage, else KMSInternalException with a generic message (the HSM's text
// may carry token details; it goes to the log with `operation`).
absl::Status FromHsm(const absl::Status& status, absl::string_view operation);

// Control-plane changes a key pending deletion refuses (AWS KMS does the
// same): its metadata is frozen until the deletion is cancelled.
absl::Status RefuseIfPendingDeletion(const keystore::KeyRecord& key, absl::string_view name);

}  // namespace kms::service::internal

#endif  // KMS_DAEMON_SERVICE_SERVICE_INTERNAL_H_
