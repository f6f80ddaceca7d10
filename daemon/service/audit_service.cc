#include "daemon/service/audit_service.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <deque>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "daemon/common/status_macros.h"
#include "daemon/service/service_internal.h"

namespace kms::service {
namespace {

using audit::Outcome;
using audit::ParsedRecord;
using audit::RecordType;

constexpr int kDefaultQueryLimit = 100;
constexpr int kMaxQueryLimit = 1000;
constexpr int kDefaultExportLimit = 1000;
constexpr int kMaxExportLimit = 10000;
// HSM records held back while looking for the call they belong to (they come
// before it). Records of periodic tasks never meet a call; the oldest go.
constexpr size_t kMaxHeldHsmRecords = 100000;
// How far before after_sequence a query with include_hsm_calls looks for the
// HSM records of calls after it: the bound, in records, on how far a call's
// HSM records may precede its own record and still be found on any page.
// The same as the cap above, so a page boundary costs no records that one
// long page would have kept.
constexpr uint64_t kHsmLookback = kMaxHeldHsmRecords;

v1::AuditRecordType ToProto(RecordType type) {
  switch (type) {
    case RecordType::kRpc: return v1::RPC;
    case RecordType::kHsm: return v1::HSM_CALL;
    case RecordType::kCheckpoint: return v1::CHECKPOINT;
    case RecordType::kEvent: return v1::EVENT;
  }
  return v1::AUDIT_RECORD_TYPE_UNSPECIFIED;
}

v1::AuditOutcome ToProto(Outcome outcome) {
  switch (outcome) {
    case Outcome::kSuccess: return v1::SUCCESS;
    case Outcome::kDenied: return v1::DENIED;
    case Outcome::kFailed: return v1::FAILED;
    case Outcome::kNone: break;
  }
  return v1::AUDIT_OUTCOME_UNSPECIFIED;
}

void ToProto(const ParsedRecord& record, v1::AuditRecord* out) {
  const audit::Entry& e = record.entry;
  out->set_sequence(record.seq);
  *out->mutable_time() = internal::ToTimestamp(record.time);
  out->set_type(ToProto(e.type));
  out->set_request_id(e.request_id);
  out->set_principal(e.principal);
  out->set_peer(e.peer);
  out->set_operation(e.operation);
  out->set_key_id(e.key_id);
  out->set_key_version_id(e.key_version_id);
  for (const auto& [k, v] : e.context) (*out->mutable_encryption_context())[k] = v;
  out->set_outcome(ToProto(e.outcome));
  out->set_error_type(e.error_type);
  out->set_hsm_function(e.function);
  out->set_hsm_object_id(e.object_id);
  out->set_hsm_result(e.result);
  out->set_message(e.message);
  out->set_line(record.raw);
}

// A key id filter may be a key's resource name: compare the id part.
std::string KeyIdPart(absl::string_view key_id) {
  const size_t slash = key_id.rfind("key/");
  return std::string(slash == absl::string_view::npos ? key_id : key_id.substr(slash + 4));
}

bool IsDataPlane(absl::string_view operation) {
  return operation == "Encrypt" || operation == "Decrypt" || operation == "ReEncrypt" ||
         operation == "GenerateDataKey" || operation == "GenerateDataKeyWithoutPlaintext";
}

absl::StatusOr<std::string> DerToPem(const std::string& der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (key == nullptr) return InternalError("the audit signing key's public half does not parse");
  BIO* bio = BIO_new(BIO_s_mem());
  const bool ok = bio != nullptr && PEM_write_bio_PUBKEY(bio, key) == 1;
  std::string pem;
  if (ok) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    pem.assign(data, static_cast<size_t>(n));
  }
  BIO_free(bio);
  EVP_PKEY_free(key);
  if (!ok) return InternalError("cannot write the audit public key as PEM");
  return pem;
}

}  // namespace

AuditService::AuditService(KeyService& keys, audit::AuditLog& log, const AccessControl& access,
                           Options options)
    : keys_(keys), log_(log), access_(access), options_(std::move(options)) {}

absl::StatusOr<v1::QueryAuditLogResponse> AuditService::QueryAuditLog(
    const Caller& caller, const v1::QueryAuditLogRequest& request, CallFacts*) {
  KMS_RETURN_IF_ERROR(access_.AuthorizeAudit(caller, "QueryAuditLog"));
  const int limit = request.has_limit() ? request.limit() : kDefaultQueryLimit;
  if (limit < 1 || limit > kMaxQueryLimit) {
    return ValidationError(absl::StrCat("limit: must be 1..", kMaxQueryLimit, ", got ", limit));
  }
  const std::string key_id = KeyIdPart(request.key_id());
  const std::optional<absl::Time> start =
      request.has_start_time()
          ? std::optional<absl::Time>(absl::FromUnixSeconds(request.start_time().seconds()) +
                                      absl::Nanoseconds(request.start_time().nanos()))
          : std::nullopt;
  const std::optional<absl::Time> end =
      request.has_end_time()
          ? std::optional<absl::Time>(absl::FromUnixSeconds(request.end_time().seconds()) +
                                      absl::Nanoseconds(request.end_time().nanos()))
          : std::nullopt;

  auto matches = [&](const ParsedRecord& r) {
    const audit::Entry& e = r.entry;
    if (e.type != RecordType::kRpc) return false;
    if (!key_id.empty() && e.key_id != key_id) return false;
    if (!request.principal().empty() && e.principal != request.principal()) return false;
    if (!request.operation().empty() && e.operation != request.operation()) return false;
    if (request.outcome() != v1::AUDIT_OUTCOME_UNSPECIFIED &&
        ToProto(e.outcome) != request.outcome()) {
      return false;
    }
    if (start && r.time < *start) return false;
    if (end && r.time >= *end) return false;
    return true;
  };

  v1::QueryAuditLogResponse response;
  // HSM records of a call precede its record; hold them until it comes.
  std::map<std::string, std::vector<ParsedRecord>> held;
  std::deque<std::string> held_order;
  size_t held_count = 0;
  auto hold = [&](const ParsedRecord& r) {
    auto& list = held[r.entry.request_id];
    if (list.empty()) held_order.push_back(r.entry.request_id);
    list.push_back(r);
    if (++held_count > kMaxHeldHsmRecords && !held_order.empty()) {
      held_count -= held[held_order.front()].size();
      held.erase(held_order.front());
      held_order.pop_front();
    }
  };
  // The held records of `request_id`, no longer held (empty if none).
  auto release = [&](const std::string& request_id) {
    std::vector<ParsedRecord> list;
    auto it = held.find(request_id);
    if (it != held.end()) {
      list = std::move(it->second);
      held_count -= list.size();
      held.erase(it);
    }
    return list;
  };

  // Concurrent calls interleave, so a call after `after` (where the previous
  // page ended, at its last call) may have HSM records at or before it,
  // which that page held and dropped. Read again from up to kHsmLookback
  // records back, only to hold HSM records; a call whose own record is also
  // at or before `after` was paged already (or did not match), so its held
  // records go. Nothing at or before `after` is returned. ReadAuditLog reads
  // the file from its start whatever it is asked, so this costs no I/O.
  const uint64_t after = request.after_sequence();
  const uint64_t read_after =
      !request.include_hsm_calls() ? after : (after > kHsmLookback ? after - kHsmLookback : 0);
  int emitted = 0;
  uint64_t last_seen = after;
  bool more = false;
  KMS_RETURN_IF_ERROR(log_.ReadDurable(read_after, [&](const ParsedRecord& r) {
    const bool paged_already = r.seq <= after;
    if (paged_already) {
      if (r.entry.type == RecordType::kHsm) {
        hold(r);
      } else if (r.entry.type == RecordType::kRpc) {
        release(r.entry.request_id);
      }
      return true;
    }
    if (emitted >= limit) {
      more = true;
      return false;
    }
    last_seen = r.seq;
    if (r.entry.type == RecordType::kHsm) {
      if (request.include_hsm_calls()) hold(r);
      return true;
    }
    const bool match = matches(r);
    if (request.include_hsm_calls() && r.entry.type == RecordType::kRpc) {
      const std::vector<ParsedRecord> calls = release(r.entry.request_id);
      if (match) {
        for (const ParsedRecord& h : calls) ToProto(h, response.add_records());
      }
    }
    if (match) {
      ToProto(r, response.add_records());
      ++emitted;
    }
    return true;
  }));
  if (more) {
    response.set_next_sequence(last_seen);
    response.set_truncated(true);
  }
  return response;
}

absl::StatusOr<v1::ExportAuditLogResponse> AuditService::ExportAuditLog(
    const Caller& caller, const v1::ExportAuditLogRequest& request, CallFacts*) {
  KMS_RETURN_IF_ERROR(access_.AuthorizeAudit(caller, "ExportAuditLog"));
  const int limit = request.has_limit() ? request.limit() : kDefaultExportLimit;
  if (limit < 1 || limit > kMaxExportLimit) {
    return ValidationError(absl::StrCat("limit: must be 1..", kMaxExportLimit, ", got ", limit));
  }
  v1::ExportAuditLogResponse response;
  bool more = false;
  uint64_t last = request.after_sequence();
  KMS_RETURN_IF_ERROR(log_.ReadDurable(request.after_sequence(), [&](const ParsedRecord& r) {
    if (response.lines_size() >= limit) {
      more = true;
      return false;
    }
    response.add_lines(r.raw);
    last = r.seq;
    return true;
  }));
  if (more) {
    response.set_next_sequence(last);
    response.set_truncated(true);
  }
  return response;
}

absl::StatusOr<v1::GetAuditPublicKeyResponse> AuditService::GetAuditPublicKey(
    const Caller& caller, const v1::GetAuditPublicKeyRequest&, CallFacts*) {
  KMS_RETURN_IF_ERROR(access_.AuthorizeAudit(caller, "GetAuditPublicKey"));
  v1::GetAuditPublicKeyResponse response;
  response.set_public_key_der(options_.public_key_der);
  KMS_ASSIGN_OR_RETURN(std::string pem, DerToPem(options_.public_key_der));
  response.set_public_key_pem(std::move(pem));
  response.set_key_fingerprint(options_.key_fingerprint);
  return response;
}

absl::StatusOr<v1::GetKeyInventoryReportResponse> AuditService::GetKeyInventoryReport(
    const Caller& caller, const v1::GetKeyInventoryReportRequest& request, CallFacts*) {
  KMS_RETURN_IF_ERROR(access_.AuthorizeAudit(caller, "GetKeyInventoryReport"));
  KMS_ASSIGN_OR_RETURN(v1::GetKeyInventoryReportResponse response,
                       keys_.GetKeyInventoryReport(request));
  // Last use: the last successful data-plane call per key, from the log.
  absl::flat_hash_map<std::string, absl::Time> last_used;
  KMS_RETURN_IF_ERROR(log_.ReadDurable(0, [&](const ParsedRecord& r) {
    const audit::Entry& e = r.entry;
    if (e.type == RecordType::kRpc && e.outcome == Outcome::kSuccess && !e.key_id.empty() &&
        IsDataPlane(e.operation)) {
      last_used[e.key_id] = r.time;
    }
    return true;
  }));
  for (v1::KeyInventoryEntry& entry : *response.mutable_keys()) {
    auto it = last_used.find(entry.key_id());
    if (it != last_used.end()) *entry.mutable_last_used_date() = internal::ToTimestamp(it->second);
  }
  return response;
}

}  // namespace kms::service
