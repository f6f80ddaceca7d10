// The audit log's record format: one JSON object per line, hash-chained, with
// periodic checkpoints signed by an ECDSA P-256 key in the HSM. Shared by the
// daemon's writer (audit_log.h) and kmsctl's offline verifier, so everything
// here is pure: no I/O except the istream VerifyAuditLog reads.
//
// Thread-safe: free functions over values.
//
// ---- The file, byte by byte
//
// A single file of UTF-8 text, one record per line, each line ended by one
// '\n' (JSON Lines). No blank lines, no whitespace inside a line. A line is a
// JSON object whose members appear in exactly this order, a member being left
// out when its value is empty (the empty string, an empty context, outcome
// kNone):
//
//   "seq"            uint64 in decimal, no sign, no leading zeros; 1 for the
//                    first record of a log, +1 per record, never reused
//   "time"           "YYYY-MM-DDTHH:MM:SS.ffffffZ": RFC 3339, UTC, always six
//                    fraction digits, e.g. "2026-11-22T10:00:00.123456Z"
//   "type"           "rpc" | "hsm" | "checkpoint" | "event"
//   "request_id"     string
//   "principal"      string
//   "peer"           string
//   "operation"      string (the RPC name, e.g. "GenerateDataKey")
//   "key_id"         string
//   "key_version_id" string
//   "context"        object: encryption-context key -> keyed hash of its value
//                    (ContextHasher: 32 lower-case hex digits); members sorted
//                    by key (bytewise), no duplicates; values never in clear
//   "outcome"        "success" | "denied" | "failed"
//   "error_type"     string (the AWS exception name)
//   "function"       string (for "hsm" records: the PKCS#11 function)
//   "mechanism"      string
//   "object_id"      string
//   "result"         string (for "hsm" records: "CKR_OK", or the failure as
//                    "<absl code name>: <message>", see hsm::HsmCall)
//   "message"        string
//   "prev"           64 lower-case hex digits: the "hash" of the previous
//                    record; 64 '0's for seq 1
//   "hash"           64 lower-case hex digits (see below)
//   "signing_key"    checkpoints only: 32 lower-case hex digits, the first 16
//                    bytes of SHA-256 over the signing public key's DER
//                    SubjectPublicKeyInfo (PublicKeyFingerprint)
//   "signature"      checkpoints only: standard base64 (with '=' padding) of
//                    the DER ECDSA-Sig-Value, ECDSA P-256 with SHA-256
//
// Every string is written the one way JsonEscape writes it (below), so a line
// has exactly one valid spelling and ParseRecord rejects any other.
//
// ---- Hash and signature (byte-exact, no canonicalisation needed)
//
// `body` is the line from its '{' up to and including the "prev" member's
// closing quote:
//   {"seq":7,"time":"...","type":"rpc",...,"prev":"<64 hex>"
// hash      = lower-case hex of SHA-256(body + "}")
// signature = ECDSA-P256-SHA256 over exactly body + "}"   (checkpoints only)
// line      = body + ",\"hash\":\"" + hash + "\""
//             [+ ",\"signing_key\":\"" + fp + "\",\"signature\":\"" + b64 + "\""]
//             + "}\n"
// So body + "}" is itself a JSON object, and `openssl dgst -sha256 -verify
// pub.pem -signature sig.der` over those bytes checks a checkpoint.
// A checkpoint commits, through the chain of "prev" hashes, to every record
// before it; records after the last checkpoint (the unsigned tail) are
// protected only by the chain.
//
// ---- String escaping (JsonEscape)
//
//   '"' -> \"    '\\' -> \\    0x08 -> \b  0x0C -> \f  0x0A -> \n  0x0D -> \r
//   0x09 -> \t   other bytes 0x00-0x1F and 0x7F -> \u00XX (lower-case hex)
//   well-formed UTF-8 sequences (shortest form, not a surrogate, <= U+10FFFF)
//     are copied as they are, except the C1 controls U+0080..U+009F, U+2028
//     and U+2029 (line separators), which become \u0080.. / \u2028 / \u2029
//   every byte 0x80-0xFF that is not part of a well-formed sequence ->
//     \udcXX (XX = the byte, lower-case): a lone low surrogate, as Python's
//     "surrogateescape" does. Well-formed text can never produce one, so any
//     byte string round-trips exactly and two different byte strings never
//     share a spelling (principals are attacker-influenced).
#ifndef KMS_DAEMON_AUDIT_AUDIT_RECORD_H_
#define KMS_DAEMON_AUDIT_AUDIT_RECORD_H_

#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kms::audit {

enum class RecordType { kRpc, kHsm, kCheckpoint, kEvent };
enum class Outcome { kNone, kSuccess, kDenied, kFailed };

// "rpc", "hsm", "checkpoint", "event" / "", "success", "denied", "failed".
absl::string_view RecordTypeName(RecordType type);
absl::string_view OutcomeName(Outcome outcome);

inline constexpr absl::string_view kZeroHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// What a caller appends. Empty fields are left out of the line.
struct Entry {
  RecordType type = RecordType::kEvent;
  std::string request_id;
  std::string principal;
  std::string peer;
  std::string operation;
  std::string key_id;
  std::string key_version_id;
  // Encryption-context key -> ContextHasher::Hash(value). Written sorted by
  // key whatever the order here.
  std::vector<std::pair<std::string, std::string>> context;
  Outcome outcome = Outcome::kNone;
  std::string error_type;
  std::string function;
  std::string mechanism;
  std::string object_id;
  std::string result;
  std::string message;

  friend bool operator==(const Entry& a, const Entry& b);
};

// A line as read back.
struct ParsedRecord {
  Entry entry;
  uint64_t seq = 0;
  absl::Time time;
  std::string prev;         // hex
  std::string hash;         // hex, as written (not checked by ParseRecord)
  std::string signing_key;  // hex; checkpoints only
  std::string signature;    // DER bytes (decoded from base64); checkpoints only
  std::string raw;          // the line, without its '\n'
  size_t body_size = 0;     // raw.substr(0, body_size) is `body`

  // body + "}": the bytes "hash" and "signature" are computed over.
  std::string HashedBytes() const;
};

// A record's body and its hash, before the line is finished.
struct FormattedRecord {
  std::string body;  // up to and including the "prev" member
  std::string hash;  // hex SHA-256(body + "}")
};

// Builds the body of the record `entry` with `seq`, `time` (truncated to
// microseconds) and `prev_hash`, and hashes it.
FormattedRecord FormatRecord(const Entry& entry, uint64_t seq, absl::Time time,
                             absl::string_view prev_hash);

// The finished line, '\n' included. For a checkpoint pass the signer's
// fingerprint (hex) and the DER signature over body + "}".
std::string FinishRecord(const FormattedRecord& record, absl::string_view signing_key = "",
                         absl::string_view signature_der = "");

// Parses one line (with or without its '\n'). Strict: the members, their
// order and every spelling must be exactly what FormatRecord/FinishRecord
// write. Does not check "hash" against the bytes (VerifyAuditLog does).
// Errors: kInvalidArgument naming the problem.
absl::StatusOr<ParsedRecord> ParseRecord(absl::string_view line);

// The escaping described above, without the surrounding quotes.
std::string JsonEscape(absl::string_view bytes);

// "2026-11-22T10:00:00.123456Z".
std::string FormatRecordTime(absl::Time time);

// Lower-case hex of SHA-256(bytes).
std::string Sha256Hex(absl::string_view bytes);

// The signing_key value for an ECDSA P-256 public key given as PEM or DER
// SubjectPublicKeyInfo: lower-case hex of the first 16 bytes of SHA-256 over
// its DER SubjectPublicKeyInfo.
// Errors: kInvalidArgument (not a P-256 public key in either form).
absl::StatusOr<std::string> PublicKeyFingerprint(absl::string_view public_key);

struct VerifyResult {
  bool ok = false;
  uint64_t records = 0;          // lines read
  uint64_t checkpoints = 0;      // signatures checked and valid
  uint64_t last_sequence = 0;    // of the last record that passed every check
  uint64_t unsigned_tail = 0;    // records after the last valid checkpoint
  std::optional<uint64_t> first_bad_sequence;
  std::string problem;           // one line, e.g. "record 17: its hash does not match its contents"
};

// Reads every line of `lines` and checks: each parses; seq runs 1,2,3,... (or
// from the first line's seq if `allow_partial` — an export of a later range —
// with its prev taken on trust); each hash matches its bytes; each prev equals
// the previous record's hash; each checkpoint's signature verifies under
// `public_key` (PEM or DER SubjectPublicKeyInfo, ECDSA P-256) and names that
// key; the last line ends with '\n'. Zero bytes after the last '\n' (the
// space a running kmsd reserves ahead, in a copy of its live file) are not a
// line. Stops at the first problem.
//
// first_bad_sequence, by cause:
//   a line that does not parse           the seq that was due there
//   seq is not the one due               the seq that was due (so a deleted
//                                        record k, or k and k+1 swapped, -> k)
//   hash does not match the bytes        that record's seq
//   prev does not match                  the previous record's seq: the
//                                        record whose bytes the chain no
//                                        longer commits to (1 for seq 1)
//   checkpoint bad signature/other key   the checkpoint's seq
//   last line without '\n' (torn)        its seq if it parses, else the seq due
// Errors (status, not a result): only an unusable public key
// (kInvalidArgument).
absl::StatusOr<VerifyResult> VerifyAuditLog(std::istream& lines, absl::string_view public_key,
                                            bool allow_partial = false);

}  // namespace kms::audit

#endif  // KMS_DAEMON_AUDIT_AUDIT_RECORD_H_
