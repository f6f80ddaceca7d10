#include "daemon/audit/audit_record.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kms::audit {
namespace {

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

constexpr char kTimeFormat[] = "%Y-%m-%dT%H:%M:%E6SZ";
constexpr char kHexDigits[] = "0123456789abcdef";

// Members in the order they are written. Index order is the only order
// ParseRecord accepts.
enum Field {
  kSeq, kTime, kType, kRequestId, kPrincipal, kPeer, kOperation, kKeyId, kKeyVersionId,
  kContext, kOutcome, kErrorType, kFunction, kMechanism, kObjectId, kResult, kMessage,
  kPrev, kHash, kSigningKey, kSignature, kFieldCount
};
constexpr std::array<absl::string_view, kFieldCount> kFieldNames = {
    "seq", "time", "type", "request_id", "principal", "peer", "operation", "key_id",
    "key_version_id", "context", "outcome", "error_type", "function", "mechanism",
    "object_id", "result", "message", "prev", "hash", "signing_key", "signature"};

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void AppendU4(uint32_t v, std::string* out) {
  out->append("\\u");
  for (int shift = 12; shift >= 0; shift -= 4) out->push_back(kHexDigits[(v >> shift) & 0xF]);
}

// Length of the well-formed UTF-8 sequence at s[i] (2..4) and its code point;
// 0 if the bytes there are not one.
size_t Utf8SequenceAt(absl::string_view s, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  size_t len;
  uint32_t v;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2; v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3; v = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4; v = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) || v > 0x10FFFF ||
      (v >= 0xD800 && v <= 0xDFFF)) {
    return 0;  // overlong, out of range, or a surrogate
  }
  *cp = v;
  return len;
}

// True when JsonEscape(s) == s: printable ASCII without '"' or '\\'. Ids,
// ARNs, names and hashes, most of what a record holds, are like that.
bool IsPlainJson(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<uint8_t>(ch);
    return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
  });
}

void AppendQuoted(absl::string_view s, std::string* out) {
  out->push_back('"');
  if (IsPlainJson(s)) {
    out->append(s.data(), s.size());
  } else {
    out->append(JsonEscape(s));
  }
  out->push_back('"');
}

void AppendMember(Field field, absl::string_view value, std::string* out) {
  if (value.empty()) return;
  out->append(",\"");
  out->append(kFieldNames[field].data(), kFieldNames[field].size());
  out->append("\":");
  AppendQuoted(value, out);
}

std::string Sha256(absl::string_view a, absl::string_view b = "") {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), b.data(), b.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) {
    abort();  // SHA-256 cannot fail short of memory exhaustion
  }
  return std::string(reinterpret_cast<char*>(md), len);
}

bool IsLowerHex(absl::string_view s, size_t size) {
  if (s.size() != size) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("audit record: ", what));
}

// A cursor over one line.
class Reader {
 public:
  explicit Reader(absl::string_view s) : s_(s) {}
  size_t pos() const { return pos_; }
  bool AtEnd() const { return pos_ >= s_.size(); }
  bool Peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  bool Consume(char c) {
    if (!Peek(c)) return false;
    ++pos_;
    return true;
  }
  absl::Status Expect(char c) {
    if (Consume(c)) return absl::OkStatus();
    return Invalid(absl::StrFormat("expected '%c' at byte %d", c, pos_));
  }

  absl::Status ReadString(std::string* out) {
    out->clear();
    if (!Consume('"')) return Invalid(absl::StrFormat("expected a string at byte %d", pos_));
    while (true) {
      if (AtEnd()) return Invalid("unterminated string");
      const uint8_t c = static_cast<uint8_t>(s_[pos_++]);
      if (c == '"') return absl::OkStatus();
      if (c < 0x20) {
        return Invalid(absl::StrFormat("unescaped control byte 0x%02x at byte %d", c, pos_ - 1));
      }
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (AtEnd()) return Invalid("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!ReadHex4(&cp)) return Invalid("bad \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low;
            if (!Consume('\\') || !Consume('u') || !ReadHex4(&low) || low < 0xDC00 ||
                low > 0xDFFF) {
              return Invalid("high surrogate without a low one");
            }
            AppendUtf8(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00), out);
          } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
            out->push_back(static_cast<char>(cp - 0xDC00));  // an escaped raw byte
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Invalid("lone low surrogate below \\udc80");
          } else {
            AppendUtf8(cp, out);
          }
          break;
        }
        default:
          return Invalid(absl::StrFormat("bad escape '\\%c'", e));
      }
    }
  }

  absl::Status ReadUint64(uint64_t* out) {
    const size_t start = pos_;
    uint64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const uint64_t d = static_cast<uint64_t>(s_[pos_] - '0');
      if (v > (UINT64_MAX - d) / 10) return Invalid("seq out of range");
      v = v * 10 + d;
      ++pos_;
    }
    if (pos_ == start) return Invalid("seq is not a number");
    if (s_[start] == '0' && pos_ - start > 1) return Invalid("seq has a leading zero");
    *out = v;
    return absl::OkStatus();
  }

 private:
  bool ReadHex4(uint32_t* out) {
    if (pos_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[pos_ + k];
      uint32_t d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return false;
      v = (v << 4) | d;
    }
    pos_ += 4;
    *out = v;
    return true;
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

absl::StatusOr<PkeyPtr> LoadP256PublicKey(absl::string_view key) {
  PkeyPtr pkey(nullptr, EVP_PKEY_free);
  const auto* p = reinterpret_cast<const unsigned char*>(key.data());
  EVP_PKEY* der = d2i_PUBKEY(nullptr, &p, static_cast<long>(key.size()));
  if (der != nullptr && p == reinterpret_cast<const unsigned char*>(key.data()) + key.size()) {
    pkey.reset(der);
  } else {
    EVP_PKEY_free(der);
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(key.data(), static_cast<int>(key.size())), BIO_free);
    if (bio != nullptr) pkey.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  }
  ERR_clear_error();
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        "audit public key is neither a PEM nor a DER SubjectPublicKeyInfo");
  }
  char group[64] = {0};
  size_t group_len = 0;
  if (!EVP_PKEY_is_a(pkey.get(), "EC") ||
      EVP_PKEY_get_utf8_string_param(pkey.get(), "group", group, sizeof(group), &group_len) != 1 ||
      absl::string_view(group, group_len) != "prime256v1") {
    ERR_clear_error();
    return absl::InvalidArgumentError("audit public key is not an ECDSA P-256 key");
  }
  return pkey;
}

absl::StatusOr<std::string> FingerprintOf(EVP_PKEY* pkey) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0) {
    ERR_clear_error();
    return absl::InternalError("cannot encode the audit public key");
  }
  const std::string digest = Sha256(absl::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return absl::BytesToHexString(digest.substr(0, 16));
}

bool VerifySignature(EVP_PKEY* pkey, absl::string_view message, absl::string_view signature) {
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  const bool ok =
      ctx != nullptr &&
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace

absl::string_view RecordTypeName(RecordType type) {
  switch (type) {
    case RecordType::kRpc: return "rpc";
    case RecordType::kHsm: return "hsm";
    case RecordType::kCheckpoint: return "checkpoint";
    case RecordType::kEvent: return "event";
  }
  return "event";
}

absl::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kNone: return "";
    case Outcome::kSuccess: return "success";
    case Outcome::kDenied: return "denied";
    case Outcome::kFailed: return "failed";
  }
  return "";
}

bool operator==(const Entry& a, const Entry& b) {
  return a.type == b.type && a.request_id == b.request_id && a.principal == b.principal &&
         a.peer == b.peer && a.operation == b.operation && a.key_id == b.key_id &&
         a.key_version_id == b.key_version_id && a.context == b.context &&
         a.outcome == b.outcome && a.error_type == b.error_type && a.function == b.function &&
         a.mechanism == b.mechanism && a.object_id == b.object_id && a.result == b.result &&
         a.message == b.message;
}

std::string ParsedRecord::HashedBytes() const {
  return absl::StrCat(absl::string_view(raw).substr(0, body_size), "}");
}

std::string JsonEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\b': out.append("\\b"); break;
        case '\f': out.append("\\f"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default:
          if (c < 0x20 || c == 0x7F) {
            AppendU4(c, &out);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t len = Utf8SequenceAt(s, i, &cp);
    if (len == 0) {
      AppendU4(0xDC00 + c, &out);  // surrogateescape: a byte, not a character
      ++i;
    } else {
      if ((cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029) {
        AppendU4(cp, &out);
      } else {
        out.append(s.data() + i, len);
      }
      i += len;
    }
  }
  return out;
}

std::string FormatRecordTime(absl::Time time) {
  return absl::FormatTime(kTimeFormat, time, absl::UTCTimeZone());
}

std::string Sha256Hex(absl::string_view bytes) { return absl::BytesToHexString(Sha256(bytes)); }

FormattedRecord FormatRecord(const Entry& e, uint64_t seq, absl::Time time,
                             absl::string_view prev_hash) {
  std::string b;
  b.reserve(256);
  absl::StrAppend(&b, "{\"seq\":", seq, ",\"time\":\"", FormatRecordTime(time),
                  "\",\"type\":\"", RecordTypeName(e.type), "\"");
  AppendMember(kRequestId, e.request_id, &b);
  AppendMember(kPrincipal, e.principal, &b);
  AppendMember(kPeer, e.peer, &b);
  AppendMember(kOperation, e.operation, &b);
  AppendMember(kKeyId, e.key_id, &b);
  AppendMember(kKeyVersionId, e.key_version_id, &b);
  if (!e.context.empty()) {
    const auto by_key = [](const auto& x, const auto& y) { return x.first < y.first; };
    std::vector<std::pair<std::string, std::string>> sorted;
    const auto* context = &e.context;
    if (!std::is_sorted(e.context.begin(), e.context.end(), by_key)) {
      sorted = e.context;
      std::stable_sort(sorted.begin(), sorted.end(), by_key);
      context = &sorted;
    }
    b.append(",\"context\":{");
    bool first = true;
    for (const auto& [key, value] : *context) {
      if (!first) b.push_back(',');
      first = false;
      AppendQuoted(key, &b);
      b.push_back(':');
      AppendQuoted(value, &b);
    }
    b.push_back('}');
  }
  AppendMember(kOutcome, OutcomeName(e.outcome), &b);
  AppendMember(kErrorType, e.error_type, &b);
  AppendMember(kFunction, e.function, &b);
  AppendMember(kMechanism, e.mechanism, &b);
  AppendMember(kObjectId, e.object_id, &b);
  AppendMember(kResult, e.result, &b);
  AppendMember(kMessage, e.message, &b);
  absl::StrAppend(&b, ",\"prev\":\"", prev_hash, "\"");
  FormattedRecord r;
  r.hash = absl::BytesToHexString(Sha256(b, "}"));
  r.body = std::move(b);
  return r;
}

std::string FinishRecord(const FormattedRecord& record, absl::string_view signing_key,
                         absl::string_view signature_der) {
  std::string line;
  line.reserve(record.body.size() + 80 + signature_der.size() * 2);
  absl::StrAppend(&line, record.body, ",\"hash\":\"", record.hash, "\"");
  if (!signing_key.empty() || !signature_der.empty()) {
    absl::StrAppend(&line, ",\"signing_key\":\"", signing_key, "\",\"signature\":\"",
                    absl::Base64Escape(signature_der), "\"");
  }
  line.append("}\n");
  return line;
}

absl::StatusOr<ParsedRecord> ParseRecord(absl::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  ParsedRecord r;
  Reader in(line);
  if (!in.Consume('{')) return Invalid("a record must start with '{'");
  int last = -1;
  bool seen[kFieldCount] = {};
  std::string name, value;
  while (true) {
    const size_t member_start = in.pos();
    if (last >= 0 && !in.Consume(',')) break;
    if (auto s = in.ReadString(&name); !s.ok()) return s;
    const auto it = std::find(kFieldNames.begin(), kFieldNames.end(), name);
    if (it == kFieldNames.end()) return Invalid(absl::StrCat("unknown member \"", JsonEscape(name), "\""));
    const int field = static_cast<int>(it - kFieldNames.begin());
    if (field <= last) return Invalid(absl::StrCat("member \"", name, "\" is out of order or repeated"));
    last = field;
    seen[field] = true;
    if (auto s = in.Expect(':'); !s.ok()) return s;
    if (field == kSeq) {
      if (auto s = in.ReadUint64(&r.seq); !s.ok()) return s;
      if (r.seq == 0) return Invalid("seq must be at least 1");
      continue;
    }
    if (field == kContext) {
      if (auto s = in.Expect('{'); !s.ok()) return s;
      std::string key;
      while (!in.Consume('}')) {
        if (!r.entry.context.empty()) {
          if (auto s = in.Expect(','); !s.ok()) return s;
        }
        if (auto s = in.ReadString(&key); !s.ok()) return s;
        if (auto s = in.Expect(':'); !s.ok()) return s;
        if (auto s = in.ReadString(&value); !s.ok()) return s;
        if (!r.entry.context.empty() && !(r.entry.context.back().first < key)) {
          return Invalid("context keys are not sorted and unique");
        }
        r.entry.context.emplace_back(key, value);
      }
      continue;
    }
    if (auto s = in.ReadString(&value); !s.ok()) return s;
    switch (field) {
      case kTime: {
        std::string err;
        if (!absl::ParseTime(kTimeFormat, value, absl::UTCTimeZone(), &r.time, &err)) {
          return Invalid(absl::StrCat("time \"", JsonEscape(value), "\" is not RFC 3339 UTC"));
        }
        break;
      }
      case kType:
        if (value == "rpc") r.entry.type = RecordType::kRpc;
        else if (value == "hsm") r.entry.type = RecordType::kHsm;
        else if (value == "checkpoint") r.entry.type = RecordType::kCheckpoint;
        else if (value == "event") r.entry.type = RecordType::kEvent;
        else return Invalid(absl::StrCat("unknown type \"", JsonEscape(value), "\""));
        break;
      case kRequestId: r.entry.request_id = value; break;
      case kPrincipal: r.entry.principal = value; break;
      case kPeer: r.entry.peer = value; break;
      case kOperation: r.entry.operation = value; break;
      case kKeyId: r.entry.key_id = value; break;
      case kKeyVersionId: r.entry.key_version_id = value; break;
      case kOutcome:
        if (value == "success") r.entry.outcome = Outcome::kSuccess;
        else if (value == "denied") r.entry.outcome = Outcome::kDenied;
        else if (value == "failed") r.entry.outcome = Outcome::kFailed;
        else return Invalid(absl::StrCat("unknown outcome \"", JsonEscape(value), "\""));
        break;
      case kErrorType: r.entry.error_type = value; break;
      case kFunction: r.entry.function = value; break;
      case kMechanism: r.entry.mechanism = value; break;
      case kObjectId: r.entry.object_id = value; break;
      case kResult: r.entry.result = value; break;
      case kMessage: r.entry.message = value; break;
      case kPrev:
        if (!IsLowerHex(value, 64)) return Invalid("prev is not 64 lower-case hex digits");
        r.prev = value;
        break;
      case kHash:
        if (!IsLowerHex(value, 64)) return Invalid("hash is not 64 lower-case hex digits");
        r.hash = value;
        r.body_size = member_start;
        break;
      case kSigningKey:
        if (!IsLowerHex(value, 32)) return Invalid("signing_key is not 32 lower-case hex digits");
        r.signing_key = value;
        break;
      case kSignature:
        if (!absl::Base64Unescape(value, &r.signature) || r.signature.empty()) {
          return Invalid("signature is not base64");
        }
        break;
      default:
        break;
    }
  }
  if (auto s = in.Expect('}'); !s.ok()) return s;
  if (!in.AtEnd()) return Invalid(absl::StrFormat("trailing bytes after the record at byte %d", in.pos()));
  for (Field f : {kSeq, kTime, kType, kPrev, kHash}) {
    if (!seen[f]) return Invalid(absl::StrCat("member \"", kFieldNames[f], "\" is missing"));
  }
  const bool checkpoint = r.entry.type == RecordType::kCheckpoint;
  if (checkpoint && (!seen[kSigningKey] || !seen[kSignature])) {
    return Invalid("a checkpoint needs signing_key and signature");
  }
  if (!checkpoint && (seen[kSigningKey] || seen[kSignature])) {
    return Invalid("only a checkpoint carries signing_key and signature");
  }
  // The backstop for "exactly one spelling": escapes, omitted empty members,
  // base64 and time must all be written the way the writer writes them.
  FormattedRecord again = FormatRecord(r.entry, r.seq, r.time, r.prev);
  again.hash = r.hash;
  std::string canonical = FinishRecord(again, r.signing_key, r.signature);
  canonical.pop_back();
  if (canonical != line) return Invalid("not in canonical form (a member is spelled differently)");
  r.raw = std::string(line);
  return r;
}

absl::StatusOr<std::string> PublicKeyFingerprint(absl::string_view public_key) {
  auto pkey = LoadP256PublicKey(public_key);
  if (!pkey.ok()) return pkey.status();
  return FingerprintOf(pkey->get());
}

absl::StatusOr<VerifyResult> VerifyAuditLog(std::istream& lines, absl::string_view public_key,
                                            bool allow_partial) {
  auto pkey = LoadP256PublicKey(public_key);
  if (!pkey.ok()) return pkey.status();
  auto fingerprint = FingerprintOf(pkey->get());
  if (!fingerprint.ok()) return fingerprint.status();

  VerifyResult result;
  uint64_t expected = 1;
  std::string prev_hash(kZeroHash);
  const auto fail = [&](uint64_t seq, std::string problem) {
    result.first_bad_sequence = seq;
    result.problem = std::move(problem);
    return result;
  };
  std::string line;
  while (std::getline(lines, line)) {
    const bool torn = lines.eof();  // the last line had no '\n'
    // A copy of a live log ends in the zeros kmsd reserves ahead of its
    // records (OpenFileSink). They hold no record.
    if (torn && line.find_first_not_of('\0') == std::string::npos) break;
    ++result.records;
    auto parsed = ParseRecord(line);
    if (!parsed.ok()) {
      const uint64_t due = result.records == 1 && allow_partial ? 1 : expected;
      return fail(due, absl::StrCat("line ", result.records, torn ? " (unterminated)" : "",
                                    ": ", parsed.status().message()));
    }
    const ParsedRecord& r = *parsed;
    if (result.records == 1 && allow_partial) {
      expected = r.seq;
      prev_hash = r.prev;  // taken on trust: the chain before the export is not here
    }
    if (r.seq != expected) {
      return fail(expected, absl::StrCat("line ", result.records, ": seq ", r.seq,
                                         " where ", expected, " was due"));
    }
    if (Sha256Hex(r.HashedBytes()) != r.hash) {
      return fail(r.seq, absl::StrCat("record ", r.seq, ": its hash does not match its contents"));
    }
    if (r.prev != prev_hash) {
      const uint64_t culprit = r.seq > 1 ? r.seq - 1 : 1;
      return fail(culprit, absl::StrCat("record ", culprit, ": record ", r.seq,
                                        " does not chain to it (prev differs)"));
    }
    if (r.entry.type == RecordType::kCheckpoint) {
      if (r.signing_key != *fingerprint) {
        return fail(r.seq, absl::StrCat("record ", r.seq, ": checkpoint signed by key ",
                                        r.signing_key, ", not ", *fingerprint));
      }
      if (!VerifySignature(pkey->get(), r.HashedBytes(), r.signature)) {
        return fail(r.seq, absl::StrCat("record ", r.seq, ": checkpoint signature does not verify"));
      }
      ++result.checkpoints;
      result.unsigned_tail = 0;
    } else {
      ++result.unsigned_tail;
    }
    if (torn) {
      return fail(r.seq, absl::StrCat("record ", r.seq, ": the last line has no newline (torn write)"));
    }
    result.last_sequence = r.seq;
    prev_hash = r.hash;
    expected = r.seq + 1;
  }
  result.ok = true;
  return result;
}

}  // namespace kms::audit
