#include "daemon/policy/policy.h"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/errors.h"
#include "daemon/common/status_macros.h"

namespace kms::policy {

using Json = nlohmann::json;

absl::Status MalformedPolicyDocumentError(absl::string_view message) {
  return WithErrorType(absl::InvalidArgumentError(message), kMalformedPolicyDocument);
}

// ------------------------------------------------------------------ actions

const std::vector<std::string>& KnownActions() {
  static const std::vector<std::string>* const kActions = [] {
    // Keep in step with proto/kms/v1/kms.proto's KeyManagementService.
    const char* const kNames[] = {
        // Control plane: keys.
        "CreateKey", "DescribeKey", "ListKeys", "EnableKey", "DisableKey", "UpdateKeyDescription",
        "ScheduleKeyDeletion", "CancelKeyDeletion",
        // Aliases.
        "CreateAlias", "UpdateAlias", "DeleteAlias", "ListAliases",
        // Tags.
        "TagResource", "UntagResource", "ListResourceTags",
        // Rotation.
        "EnableKeyRotation", "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand",
        "ListKeyRotations", "GetRotationComplianceReport",
        // Import.
        "GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial",
        // Data plane.
        "Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
        "GenerateRandom",
        // Policies and grants.
        "PutKeyPolicy", "GetKeyPolicy", "CreateGrant", "ListGrants", "RetireGrant", "RevokeGrant",
        // The ReEncrypt RPC is authorised in two halves, as in AWS KMS (there
        // is no kms:ReEncrypt action): ReEncryptFrom on the source key,
        // ReEncryptTo on the destination.
        "ReEncryptFrom", "ReEncryptTo"};
    auto* actions = new std::vector<std::string>();
    for (const char* name : kNames) actions->push_back(absl::StrCat("kms:", name));
    std::sort(actions->begin(), actions->end());
    actions->erase(std::unique(actions->begin(), actions->end()), actions->end());
    return actions;
  }();
  return *kActions;
}

bool IsKnownAction(absl::string_view action) {
  const auto& actions = KnownActions();
  return std::binary_search(actions.begin(), actions.end(), action,
                            [](absl::string_view a, absl::string_view b) { return a < b; });
}

bool PatternMatches(absl::string_view pattern, absl::string_view value) {
  if (!pattern.empty() && pattern.back() == '*') {
    return absl::StartsWith(value, pattern.substr(0, pattern.size() - 1));
  }
  return pattern == value;
}

namespace {

// Length of the UTF-8 character starting at s[i], clamped to the string.
std::size_t CharLength(absl::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t n = 1;
  if (lead >= 0xF0 && lead <= 0xF7) {
    n = 4;
  } else if (lead >= 0xE0) {
    n = lead <= 0xEF ? 3 : 1;
  } else if (lead >= 0xC0) {
    n = 2;
  }
  return std::min(n, s.size() - i);
}

// Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
// Returns the offset of the first bad byte, or npos.
std::size_t FindInvalidUtf8(absl::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n;
    uint32_t cp;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + n > s.size()) return i;
    for (std::size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n;
  }
  return absl::string_view::npos;
}

// Offending values are quoted in messages, shortened so a 32 KiB string does
// not become a 32 KiB log line.
std::string Quote(absl::string_view s) {
  constexpr std::size_t kMax = 80;
  if (s.size() <= kMax) return absl::StrCat("'", s, "'");
  return absl::StrCat("'", s.substr(0, kMax), "...'");
}

absl::Status Error(absl::string_view path, absl::string_view message) {
  return MalformedPolicyDocumentError(
      absl::StrCat(path.empty() ? "document" : path, ": ", message));
}

// ------------------------------------------------------------ JSON reading

// A SAX handler that builds a DOM like nlohmann's own, but rejects duplicate
// object keys (nlohmann keeps the last one silently) and remembers the JSON
// path of the first error.
class StrictDomBuilder : public nlohmann::json_sax<Json> {
 public:
  Json& root() { return root_; }
  const std::string& error() const { return error_; }

  bool null() override { return Put(Json(nullptr)); }
  bool boolean(bool v) override { return Put(Json(v)); }
  bool number_integer(number_integer_t v) override { return Put(Json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Put(Json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return Put(Json(v)); }
  bool string(string_t& v) override { return Put(Json(std::move(v))); }
  // JSON text never yields binary values.
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return Open(Json::object()); }
  bool start_array(std::size_t) override { return Open(Json::array()); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }
  bool key(string_t& k) override {
    Frame& top = stack_.back();
    if (!top.keys.insert(k).second) {
      error_ =
          absl::StrCat(PathOf(stack_.size() - 1).empty() ? "document" : PathOf(stack_.size() - 1),
                       ": duplicate key ", Quote(k));
      return false;
    }
    top.key = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    // what() is "[json.exception.parse_error.101] parse error at line 1,
    // column 5: syntax error while parsing ..."; drop the bracketed id.
    absl::string_view what = ex.what();
    if (const std::size_t end = what.find("] "); end != absl::string_view::npos) {
      what.remove_prefix(end + 2);
    }
    constexpr std::size_t kMaxDetail = 200;  // "last read" can quote a long token
    if (what.size() > kMaxDetail) what = what.substr(0, kMaxDetail);
    error_ = absl::StrCat("document: invalid JSON: ", what);
    return false;
  }

 private:
  struct Frame {
    Json* node;
    std::set<std::string> keys;
    std::string key;  // key of the member being read, for objects
  };

  // Stores `v` where the parser is and returns where it went.
  Json* Insert(Json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& top = stack_.back();
    if (top.node->is_object()) {
      Json& slot = (*top.node)[top.key];
      slot = std::move(v);
      return &slot;
    }
    top.node->push_back(std::move(v));
    return &top.node->back();
  }
  bool Put(Json v) {
    Insert(std::move(v));
    return true;
  }
  bool Open(Json container) {
    // Pointers into arrays stay valid: an array only grows again after the
    // child we point into has been closed.
    stack_.push_back(Frame{Insert(std::move(container)), {}, {}});
    return true;
  }
  bool Close() {
    stack_.pop_back();
    return true;
  }
  // The path of the container at stack_[depth], e.g. "Statement[1].Condition".
  std::string PathOf(std::size_t depth) const {
    std::string path;
    for (std::size_t i = 0; i < depth; ++i) {
      const Frame& f = stack_[i];
      if (f.node->is_object()) {
        absl::StrAppend(&path, path.empty() ? "" : ".", f.key);
      } else {
        absl::StrAppend(&path, "[", f.node->size() - 1, "]");
      }
    }
    return path;
  }

  Json root_;
  std::vector<Frame> stack_;
  std::string error_;
};

// ------------------------------------------------------------ the model

enum class Operator {
  kStringEquals,
  kStringNotEquals,
  kStringLike,
  kForAllValuesStringEquals,
  kForAnyValueStringEquals,
  kNull,
};

struct OperatorInfo {
  absl::string_view name;
  Operator op;
};
constexpr OperatorInfo kOperators[] = {
    {"StringEquals", Operator::kStringEquals},
    {"StringNotEquals", Operator::kStringNotEquals},
    {"StringLike", Operator::kStringLike},
    {"ForAllValues:StringEquals", Operator::kForAllValuesStringEquals},
    {"ForAnyValue:StringEquals", Operator::kForAnyValueStringEquals},
    {"Null", Operator::kNull},
};

constexpr absl::string_view kContextKeyPrefix = "kms:EncryptionContext:";
constexpr absl::string_view kContextKeysKey = "kms:EncryptionContextKeys";

struct Condition {
  Operator op;
  bool multi_valued;        // kms:EncryptionContextKeys
  std::string context_key;  // for kms:EncryptionContext:<k>
  std::vector<std::string> values;
};

struct Statement {
  std::string label;  // "statement 'Sid'" or "Statement[i]", for reasons
  bool deny = false;
  std::vector<std::string> principals;
  std::vector<std::string> actions;
  std::vector<Condition> conditions;
};

using Context = std::map<std::string, std::string>;

bool ConditionHolds(const Condition& c, const Context& context) {
  auto any_of_values = [&c](auto&& pred) {
    return std::any_of(c.values.begin(), c.values.end(), pred);
  };
  if (c.multi_valued) {
    switch (c.op) {
      case Operator::kForAllValuesStringEquals:
        return std::all_of(context.begin(), context.end(), [&](const auto& kv) {
          return std::find(c.values.begin(), c.values.end(), kv.first) != c.values.end();
        });
      case Operator::kForAnyValueStringEquals:
        return std::any_of(context.begin(), context.end(), [&](const auto& kv) {
          return std::find(c.values.begin(), c.values.end(), kv.first) != c.values.end();
        });
      case Operator::kNull:
        return any_of_values(
            [&](const std::string& v) { return (v == "true") == context.empty(); });
      default:
        return false;  // rejected by the parser
    }
  }
  auto it = context.find(c.context_key);
  const bool present = it != context.end();
  switch (c.op) {
    case Operator::kStringEquals:
      return present && any_of_values([&](const std::string& v) { return v == it->second; });
    case Operator::kStringNotEquals:
      return !(present && any_of_values([&](const std::string& v) { return v == it->second; }));
    case Operator::kStringLike:
      return present &&
             any_of_values([&](const std::string& v) { return StringLikeMatch(v, it->second); });
    case Operator::kNull:
      return any_of_values([&](const std::string& v) { return (v == "true") == !present; });
    default:
      return false;  // rejected by the parser
  }
}

bool StatementMatches(const Statement& s, const Request& request, const Context& context) {
  auto matches = [](const std::vector<std::string>& patterns, absl::string_view value) {
    return std::any_of(patterns.begin(), patterns.end(),
                       [value](const std::string& p) { return PatternMatches(p, value); });
  };
  // An empty principal (an unauthenticated caller) matches nothing, not even "*".
  if (request.principal.empty() || !matches(s.principals, request.principal)) return false;
  if (!IsKnownAction(request.action) || !matches(s.actions, request.action)) return false;
  return std::all_of(s.conditions.begin(), s.conditions.end(),
                     [&context](const Condition& c) { return ConditionHolds(c, context); });
}

// ------------------------------------------------------------ validation

absl::Status CheckFields(const Json& object, absl::string_view path,
                         std::initializer_list<absl::string_view> allowed,
                         std::initializer_list<absl::string_view> required) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Error(path, absl::StrCat("unknown field ", Quote(key)));
    }
  }
  for (absl::string_view key : required) {
    if (!object.contains(std::string(key))) {
      return Error(path, absl::StrCat("missing required field '", key, "'"));
    }
  }
  return absl::OkStatus();
}

std::string Child(absl::string_view path, absl::string_view field) {
  return path.empty() ? std::string(field) : absl::StrCat(path, ".", field);
}

// A string, or a non-empty array of strings. On success fills `out` and the
// element paths ("X" for a lone string, "X[i]" for elements).
absl::Status ReadStrings(const Json& value, const std::string& path,
                         std::vector<std::pair<std::string, std::string>>* out) {
  if (value.is_string()) {
    out->emplace_back(value.get_ref<const std::string&>(), path);
    return absl::OkStatus();
  }
  if (!value.is_array()) {
    return Error(path,
                 absl::StrCat("must be a string or an array of strings, got ", value.type_name()));
  }
  if (value.empty()) return Error(path, "must not be an empty array");
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string element_path = absl::StrCat(path, "[", i, "]");
    if (!value[i].is_string()) {
      return Error(element_path, absl::StrCat("must be a string, got ", value[i].type_name()));
    }
    out->emplace_back(value[i].get_ref<const std::string&>(), element_path);
  }
  return absl::OkStatus();
}

// A '*' is allowed only as the last character.
bool HasInnerStar(absl::string_view s) {
  const std::size_t star = s.find('*');
  return star != absl::string_view::npos && star + 1 != s.size();
}

absl::Status ParsePrincipals(const Json& value, const std::string& path, Statement* s) {
  if (value.is_object()) {
    return Error(path,
                 "must be \"*\", a principal string or an array of them; the object form "
                 "(e.g. {\"AWS\": ...}) is not supported");
  }
  std::vector<std::pair<std::string, std::string>> items;
  KMS_RETURN_IF_ERROR(ReadStrings(value, path, &items));
  for (auto& [principal, item_path] : items) {
    if (principal.empty()) return Error(item_path, "principal must not be empty");
    if (principal.size() > kMaxPrincipalLength) {
      return Error(item_path, absl::StrCat("principal must be at most ", kMaxPrincipalLength,
                                           " bytes, got ", principal.size()));
    }
    if (HasInnerStar(principal)) {
      return Error(item_path, absl::StrCat("'*' is allowed only as the last character of a "
                                           "principal pattern, got ",
                                           Quote(principal)));
    }
    s->principals.push_back(std::move(principal));
  }
  return absl::OkStatus();
}

absl::Status ParseActions(const Json& value, const std::string& path, Statement* s) {
  std::vector<std::pair<std::string, std::string>> items;
  KMS_RETURN_IF_ERROR(ReadStrings(value, path, &items));
  for (auto& [action, item_path] : items) {
    if (HasInnerStar(action)) {
      return Error(item_path,
                   absl::StrCat("'*' is allowed only as the last character of an action, got ",
                                Quote(action)));
    }
    if (!action.empty() && action.back() == '*') {
      const auto& known = KnownActions();
      // A named copy: C++17 lambdas cannot capture a structured binding.
      const std::string& pattern = action;
      const bool any = std::any_of(known.begin(), known.end(),
                                   [&](const std::string& k) { return PatternMatches(pattern, k); });
      if (!any) {
        return Error(item_path,
                     absl::StrCat("action pattern ", Quote(action), " matches no known action"));
      }
    } else if (!IsKnownAction(action)) {
      return Error(item_path,
                   absl::StrCat("unknown action ", Quote(action),
                                action == "kms:ReEncrypt"
                                    ? " (ReEncrypt needs kms:ReEncryptFrom on the source key "
                                      "and kms:ReEncryptTo on the destination; kms:ReEncrypt* "
                                      "names both)"
                                    : ""));
    }
    s->actions.push_back(std::move(action));
  }
  return absl::OkStatus();
}

absl::Status ParseConditions(const Json& value, const std::string& path, Statement* s) {
  if (!value.is_object()) {
    return Error(path, absl::StrCat("must be an object, got ", value.type_name()));
  }
  if (value.empty()) return Error(path, "must not be an empty object");
  for (const auto& [op_name, block] : value.items()) {
    const OperatorInfo* info = nullptr;
    for (const OperatorInfo& candidate : kOperators) {
      if (candidate.name == op_name) info = &candidate;
    }
    if (info == nullptr) {
      return Error(path, absl::StrCat("unknown condition operator ", Quote(op_name)));
    }
    const std::string op_path = Child(path, op_name);
    if (!block.is_object()) {
      return Error(op_path, absl::StrCat("must be an object, got ", block.type_name()));
    }
    if (block.empty()) return Error(op_path, "must not be an empty object");
    for (const auto& [key, values] : block.items()) {
      const std::string key_path = Child(op_path, key);
      Condition c{info->op, false, "", {}};
      if (key == kContextKeysKey) {
        c.multi_valued = true;
      } else if (absl::StartsWith(key, kContextKeyPrefix) &&
                 key.size() > kContextKeyPrefix.size()) {
        c.context_key = key.substr(kContextKeyPrefix.size());
      } else {
        return Error(op_path, absl::StrCat("unknown condition key ", Quote(key)));
      }
      const bool set_op = info->op == Operator::kForAllValuesStringEquals ||
                          info->op == Operator::kForAnyValueStringEquals;
      if (c.multi_valued && !set_op && info->op != Operator::kNull) {
        return Error(key_path,
                     absl::StrCat("operator '", op_name, "' cannot test the multi-valued key '",
                                  kContextKeysKey, "'; use ForAllValues:/ForAnyValue:"));
      }
      if (!c.multi_valued && set_op) {
        return Error(key_path, absl::StrCat("operator '", op_name, "' needs a multi-valued key; ",
                                            Quote(key), " is single-valued"));
      }
      std::vector<std::pair<std::string, std::string>> items;
      KMS_RETURN_IF_ERROR(ReadStrings(values, key_path, &items));
      for (auto& [v, item_path] : items) {
        if (info->op == Operator::kNull && v != "true" && v != "false") {
          return Error(item_path, absl::StrCat("Null takes \"true\" or \"false\", got ", Quote(v)));
        }
        c.values.push_back(std::move(v));
      }
      s->conditions.push_back(std::move(c));
    }
  }
  return absl::OkStatus();
}

bool IsValidSid(absl::string_view sid) {
  return std::all_of(sid.begin(), sid.end(), [](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
  });
}

absl::StatusOr<Statement> ParseStatement(const Json& value, const std::string& path,
                                         std::set<std::string>* sids) {
  if (!value.is_object()) {
    return Error(path, absl::StrCat("statement must be an object, got ", value.type_name()));
  }
  KMS_RETURN_IF_ERROR(CheckFields(value, path,
                                  {"Sid", "Effect", "Principal", "Action", "Condition"},
                                  {"Effect", "Principal", "Action"}));
  Statement s;
  s.label = path;
  if (value.contains("Sid")) {
    const Json& sid = value["Sid"];
    const std::string sid_path = Child(path, "Sid");
    if (!sid.is_string()) {
      return Error(sid_path, absl::StrCat("must be a string, got ", sid.type_name()));
    }
    const auto& text = sid.get_ref<const std::string&>();
    if (text.size() > kMaxSidLength) {
      return Error(sid_path, absl::StrCat("must be at most ", kMaxSidLength, " characters, got ",
                                          text.size()));
    }
    if (!IsValidSid(text)) {
      return Error(sid_path, absl::StrCat("must contain only A-Z, a-z and 0-9, got ", Quote(text)));
    }
    if (!text.empty()) {
      if (!sids->insert(text).second) {
        return Error(sid_path, absl::StrCat("duplicate Sid ", Quote(text)));
      }
      s.label = absl::StrCat("statement ", Quote(text));
    }
  }
  const Json& effect = value["Effect"];
  const std::string effect_path = Child(path, "Effect");
  if (!effect.is_string()) {
    return Error(effect_path, absl::StrCat("must be a string, got ", effect.type_name()));
  }
  if (effect == "Deny") {
    s.deny = true;
  } else if (effect != "Allow") {
    return Error(effect_path, absl::StrCat("must be \"Allow\" or \"Deny\", got ",
                                           Quote(effect.get_ref<const std::string&>())));
  }
  KMS_RETURN_IF_ERROR(ParsePrincipals(value["Principal"], Child(path, "Principal"), &s));
  KMS_RETURN_IF_ERROR(ParseActions(value["Action"], Child(path, "Action"), &s));
  if (value.contains("Condition")) {
    KMS_RETURN_IF_ERROR(ParseConditions(value["Condition"], Child(path, "Condition"), &s));
  }
  return s;
}

}  // namespace

struct Policy::Parsed {
  std::string text;
  std::string canonical;
  std::vector<Statement> statements;
};

Policy::Policy(std::shared_ptr<const Parsed> parsed) : parsed_(std::move(parsed)) {}

const std::string& Policy::text() const { return parsed_->text; }
const std::string& Policy::canonical_text() const { return parsed_->canonical; }
std::size_t Policy::statement_count() const { return parsed_->statements.size(); }

absl::StatusOr<Policy> Policy::Parse(absl::string_view document) {
  if (document.size() > kMaxPolicyBytes) {
    return Error(
        "", absl::StrCat("must be at most ", kMaxPolicyBytes, " bytes, got ", document.size()));
  }
  if (const std::size_t bad = FindInvalidUtf8(document); bad != absl::string_view::npos) {
    return Error("", absl::StrCat("invalid UTF-8 at byte ", bad));
  }
  StrictDomBuilder builder;
  if (!Json::sax_parse(document.begin(), document.end(), &builder)) {
    return MalformedPolicyDocumentError(builder.error());
  }
  const Json& root = builder.root();
  if (!root.is_object()) {
    return Error("", absl::StrCat("must be a JSON object, got ", root.type_name()));
  }
  KMS_RETURN_IF_ERROR(CheckFields(root, "", {"Version", "Statement"}, {"Statement"}));
  if (root.contains("Version")) {
    const Json& version = root["Version"];
    if (!version.is_string() || version.get_ref<const std::string&>() != kPolicyVersion) {
      return Error("Version",
                   absl::StrCat("must be \"", kPolicyVersion, "\", got ", version.dump()));
    }
  }
  auto parsed = std::make_shared<Parsed>();
  std::set<std::string> sids;
  const Json& statements = root["Statement"];
  if (statements.is_object()) {
    KMS_ASSIGN_OR_RETURN(Statement s, ParseStatement(statements, "Statement", &sids));
    parsed->statements.push_back(std::move(s));
  } else if (statements.is_array()) {
    if (statements.empty()) return Error("Statement", "must not be an empty array");
    if (statements.size() > kMaxStatements) {
      return Error("Statement", absl::StrCat("at most ", kMaxStatements,
                                             " statements are allowed, got ", statements.size()));
    }
    for (std::size_t i = 0; i < statements.size(); ++i) {
      KMS_ASSIGN_OR_RETURN(
          Statement s, ParseStatement(statements[i], absl::StrCat("Statement[", i, "]"), &sids));
      parsed->statements.push_back(std::move(s));
    }
  } else {
    return Error("Statement", absl::StrCat("must be an object or an array of objects, got ",
                                           statements.type_name()));
  }
  parsed->text = std::string(document);
  // Validated UTF-8 and only strings/objects/arrays: dump cannot fail.
  parsed->canonical = root.dump(-1, ' ', false, Json::error_handler_t::replace);
  return Policy(std::move(parsed));
}

Decision Policy::Evaluate(const Request& request) const {
  const Context empty;  // no allocation
  const Context& context =
      request.encryption_context != nullptr ? *request.encryption_context : empty;
  const Statement* allow = nullptr;
  for (const Statement& s : parsed_->statements) {
    if (!StatementMatches(s, request, context)) continue;
    if (s.deny) return Decision{Decision::kExplicitDeny, absl::StrCat("denied by ", s.label)};
    if (allow == nullptr) allow = &s;
  }
  if (allow != nullptr)
    return Decision{Decision::kAllow, absl::StrCat("allowed by ", allow->label)};
  if (!IsKnownAction(request.action)) {
    return Decision{Decision::kImplicitDeny, absl::StrCat("no statement matched (unknown action ",
                                                          Quote(request.action), ")")};
  }
  return Decision{Decision::kImplicitDeny, "no statement matched"};
}

bool StringLikeMatch(absl::string_view pattern, absl::string_view value) {
  std::size_t p = 0;
  std::size_t v = 0;
  std::size_t star = absl::string_view::npos;
  std::size_t mark = 0;
  while (v < value.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = v;
    } else if (p < pattern.size() && pattern[p] == '?') {
      ++p;
      v += CharLength(value, v);
    } else if (p < pattern.size() && pattern[p] == value[v]) {
      ++p;
      ++v;
    } else if (star != absl::string_view::npos) {
      // Let the last '*' swallow one more character and retry.
      p = star + 1;
      mark += CharLength(value, mark);
      v = mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace kms::policy
