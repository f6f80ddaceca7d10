// How kmsctl prints results: aligned `field: value` lines and tables for
// people, one JSON object per command for scripts.
//
// Human output names fields as the API does (key_id, key_state, ...), prints
// enum values by their proto names, times as RFC 3339 UTC and "-" for an
// unset value. JSON output is the response message as protobuf's JSON mapping
// prints it with the proto field names, all fields present and bytes in
// base64.
//
// Everything here formats strings and never prints a secret by itself: a
// caller that passes a plaintext in decides to print it.
// Thread-compatible free functions.
#ifndef KMS_CLIENT_KMSCTL_OUTPUT_H_
#define KMS_CLIENT_KMSCTL_OUTPUT_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "kms/v1/kms.pb.h"

namespace kms::kmsctl {

// One `name: value` line; a value with several lines is indented under the
// first.
using Field = std::pair<std::string, std::string>;

// The fields as lines, the values aligned in one column, each line ending in
// '\n'.
std::string FormatFields(const std::vector<Field>& fields);

// A table: the header row, then the rows, columns separated by two spaces
// and padded to the widest cell (the last column is not padded). Each line
// ends in '\n'. Rows shorter than the header are padded with empty cells.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// `message` as one line of JSON plus '\n' (see the file comment).
// Errors: kInternal if protobuf cannot print it (only for invalid UTF-8 in a
// string field, which kmsd never sends).
absl::StatusOr<std::string> FormatJson(const google::protobuf::Message& message);

// RFC 3339 in UTC ("2027-01-15T08:00:00Z"), or "-" when `set` is false.
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp, bool set);

// A JSON string literal for `text`, quotes included.
std::string JsonQuote(absl::string_view text);

// A JSON object of string pairs, keys in order.
std::string JsonObject(const std::map<std::string, std::string>& pairs);

// "K=V" lines, one per pair; "-" if there are none.
std::string FormatPairs(const std::map<std::string, std::string>& pairs);

// Every KeyMetadata field, in proto order; expiration_model and valid_to only
// when expiration_model is set (keys with imported material).
std::vector<Field> KeyMetadataFields(const v1::KeyMetadata& metadata);

// describe-key's "versions:" section: a line for the key's original material
// (type ORIGINAL, dated at the key's creation; its id is shown only while it is
// current, since kmsd names it nowhere else), then one line per rotation,
// oldest first, the current version marked "current". Columns are aligned and
// indented by two spaces. If any rotation reports an import state or a key
// check value (imported material), two columns come before "current": the
// ImportState name and "kcv=<KCV>", "-" where unset (always for the original
// material, which ListKeyRotations does not describe). "versions: -" for a
// key without material (key_version_count 0, e.g. PENDING_IMPORT).
std::string FormatKeyVersions(const v1::KeyMetadata& metadata,
                              const std::vector<v1::RotationsListEntry>& rotations);

// "true" or "false".
std::string BoolName(bool value);

// A count or period, or "-" if it is 0 (unset in proto3).
std::string NumberOrDash(int64_t value);

// One CSV record as RFC 4180 writes it: fields separated by commas, a field
// that holds a comma, a double quote, CR or LF enclosed in double quotes with
// its quotes doubled, the record ending in CRLF.
std::string FormatCsvRow(const std::vector<std::string>& fields);

// Grant operations by their AWS names ("Decrypt", "GenerateDataKey",
// "ReEncryptFrom", ...), as kmsctl takes and prints them (the table and the
// parser are in proto/grant_operation_names.h). An operation without an AWS
// name prints as its proto name, else its number.
std::string GrantOperationAwsName(v1::GrantOperation operation);
// Every valid AWS name, in proto order, joined by ", " (for error messages).
std::string GrantOperationAwsNames();

// Enum value names as the proto spells them.
std::string KeyStateName(v1::KeyState state);
std::string RotationTypeName(v1::RotationType type);
std::string RotationComplianceStatusName(v1::RotationComplianceStatus status);
std::string AlgorithmSpecName(v1::AlgorithmSpec spec);
std::string ExpirationModelName(v1::ExpirationModelType model);
std::string OriginName(v1::OriginType origin);
std::string AuditRecordTypeName(v1::AuditRecordType type);
std::string AuditOutcomeName(v1::AuditOutcome outcome);

}  // namespace kms::kmsctl

#endif  // KMS_CLIENT_KMSCTL_OUTPUT_H_
