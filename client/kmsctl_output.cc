#include "client/kmsctl_output.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "proto/grant_operation_names.h"

namespace kms::kmsctl {
namespace {

// `text` padded with spaces to `width` characters.
std::string PadRight(absl::string_view text, size_t width) {
  std::string out(text);
  if (out.size() < width) out.append(width - out.size(), ' ');
  return out;
}

// The proto's name for an enum value; the number if this build does not know
// it (a newer kmsd).
template <typename Enum>
std::string EnumName(const google::protobuf::EnumDescriptor* descriptor, Enum value) {
  const google::protobuf::EnumValueDescriptor* v =
      descriptor->FindValueByNumber(static_cast<int>(value));
  return v != nullptr ? v->name() : absl::StrCat(static_cast<int>(value));
}

// `rows` as lines starting with `indent`, `columns` cells each (missing
// cells are empty), separated by two spaces and padded to the widest cell;
// the last column is not padded and no line ends in a space.
std::string AlignColumns(const std::vector<std::vector<std::string>>& rows, size_t columns,
                         absl::string_view indent) {
  std::vector<size_t> widths(columns, 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line(indent);
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      if (i + 1 == widths.size()) {
        absl::StrAppend(&line, cell);
      } else {
        absl::StrAppend(&line, PadRight(cell, widths[i]), "  ");
      }
    }
    // A blank last cell would leave padding at the end of the line.
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace

std::string FormatFields(const std::vector<Field>& fields) {
  size_t width = 0;
  for (const Field& field : fields) width = std::max(width, field.first.size() + 1);
  std::string out;
  for (const auto& [name, value] : fields) {
    std::string label = name + ":";
    for (absl::string_view line : absl::StrSplit(value, '\n')) {
      absl::StrAppend(&out, PadRight(label, width), " ", line, "\n");
      label.clear();
    }
  }
  return out;
}

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::vector<std::string>> all = {header};
  all.insert(all.end(), rows.begin(), rows.end());
  return AlignColumns(all, header.size(), "");
}

absl::StatusOr<std::string> FormatJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print the response as JSON: ", status.message().as_string()));
  }
  json.push_back('\n');
  return json;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp, bool set) {
  if (!set) return "-";
  return google::protobuf::util::TimeUtil::ToString(timestamp);
}

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;  // UTF-8 passes through as is
        }
    }
  }
  out += '"';
  return out;
}

std::string JsonObject(const std::map<std::string, std::string>& pairs) {
  return absl::StrCat("{",
                      absl::StrJoin(pairs, ",",
                                    [](std::string* out, const auto& pair) {
                                      absl::StrAppend(out, JsonQuote(pair.first), ":",
                                                      JsonQuote(pair.second));
                                    }),
                      "}");
}

std::string FormatPairs(const std::map<std::string, std::string>& pairs) {
  if (pairs.empty()) return "-";
  return absl::StrJoin(pairs, "\n", absl::PairFormatter("="));
}

std::string BoolName(bool value) { return value ? "true" : "false"; }

std::string NumberOrDash(int64_t value) { return value == 0 ? "-" : absl::StrCat(value); }

std::string KeyStateName(v1::KeyState state) { return EnumName(v1::KeyState_descriptor(), state); }

std::string RotationTypeName(v1::RotationType type) {
  return EnumName(v1::RotationType_descriptor(), type);
}

std::string AlgorithmSpecName(v1::AlgorithmSpec spec) {
  return EnumName(v1::AlgorithmSpec_descriptor(), spec);
}

std::string ExpirationModelName(v1::ExpirationModelType model) {
  return EnumName(v1::ExpirationModelType_descriptor(), model);
}

std::string RotationComplianceStatusName(v1::RotationComplianceStatus status) {
  return EnumName(v1::RotationComplianceStatus_descriptor(), status);
}

std::string OriginName(v1::OriginType origin) {
  return EnumName(v1::OriginType_descriptor(), origin);
}

std::string AuditRecordTypeName(v1::AuditRecordType type) {
  return EnumName(v1::AuditRecordType_descriptor(), type);
}

std::string AuditOutcomeName(v1::AuditOutcome outcome) {
  return EnumName(v1::AuditOutcome_descriptor(), outcome);
}

std::string FormatCsvRow(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += ',';
    const std::string& field = fields[i];
    if (field.find_first_of(",\"\r\n") == std::string::npos) {
      out += field;
      continue;
    }
    out += '"';
    for (char c : field) {
      if (c == '"') out += '"';
      out += c;
    }
    out += '"';
  }
  out += "\r\n";
  return out;
}

std::string GrantOperationAwsName(v1::GrantOperation operation) {
  absl::string_view name = api::GrantOperationName(operation);
  if (!name.empty()) return std::string(name);
  // A newer kmsd's operation: its proto name, else its number.
  return EnumName(v1::GrantOperation_descriptor(), operation);
}

std::string GrantOperationAwsNames() {
  std::vector<absl::string_view> names;
  for (const api::NamedGrantOperation& entry : api::NamedGrantOperations()) {
    names.push_back(entry.name);
  }
  return absl::StrJoin(names, ", ");
}

std::vector<Field> KeyMetadataFields(const v1::KeyMetadata& m) {
  std::vector<std::string> algorithms;
  for (int algorithm : m.encryption_algorithms()) {
    algorithms.push_back(EnumName(v1::EncryptionAlgorithmSpec_descriptor(), algorithm));
  }
  auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::vector<Field> fields = {
      {"key_id", m.key_id()},
      {"arn", m.arn()},
      {"creation_date", FormatTimestamp(m.creation_date(), m.has_creation_date())},
      {"enabled", m.enabled() ? "true" : "false"},
      {"description", or_dash(m.description())},
      {"key_usage", EnumName(v1::KeyUsage_descriptor(), m.key_usage())},
      {"key_state", KeyStateName(m.key_state())},
      {"deletion_date", FormatTimestamp(m.deletion_date(), m.has_deletion_date())},
      {"origin", EnumName(v1::OriginType_descriptor(), m.origin())},
      {"key_spec", EnumName(v1::KeySpec_descriptor(), m.key_spec())},
      {"current_key_version_id", or_dash(m.current_key_version_id())},
      {"encryption_algorithms", algorithms.empty() ? "-" : absl::StrJoin(algorithms, ", ")},
      {"key_version_count", absl::StrCat(m.key_version_count())},
  };
  // Only keys with imported material have an expiration model.
  if (m.expiration_model() != v1::EXPIRATION_MODEL_TYPE_UNSPECIFIED) {
    fields.push_back({"expiration_model", ExpirationModelName(m.expiration_model())});
    fields.push_back({"valid_to", FormatTimestamp(m.valid_to(), m.has_valid_to())});
  }
  return fields;
}

std::string FormatKeyVersions(const v1::KeyMetadata& metadata,
                              const std::vector<v1::RotationsListEntry>& rotations) {
  if (metadata.key_version_count() == 0) return "versions: -\n";
  bool rotated_current = false;
  for (const v1::RotationsListEntry& rotation : rotations) rotated_current |= rotation.current();
  // kmsd lists the original material itself when asked (ALL_KEY_MATERIAL);
  // otherwise it is made up from the metadata: current until the first
  // rotation, its id unknown after that.
  const bool listed_original =
      !rotations.empty() && rotations.front().rotation_type() == v1::ORIGINAL;
  std::vector<std::vector<std::string>> rows;
  if (!listed_original) {
    rows.push_back({
        rotated_current || metadata.current_key_version_id().empty()
            ? std::string("-")
            : metadata.current_key_version_id(),
        FormatTimestamp(metadata.creation_date(), metadata.has_creation_date()),
        "ORIGINAL",
        rotated_current ? "" : "current",
    });
  }
  // Import columns only for keys with imported versions, so other keys'
  // lists stay as they were.
  bool imported = false;
  for (const v1::RotationsListEntry& rotation : rotations) {
    imported |= rotation.import_state() != v1::IMPORT_STATE_UNSPECIFIED ||
                !rotation.key_check_value().empty();
  }
  if (imported && !listed_original) rows.front().insert(rows.front().begin() + 3, {"-", "-"});
  for (const v1::RotationsListEntry& rotation : rotations) {
    std::vector<std::string> row = {
        rotation.key_version_id(),
        FormatTimestamp(rotation.rotation_date(), rotation.has_rotation_date()),
        RotationTypeName(rotation.rotation_type())};
    if (imported) {
      row.push_back(rotation.import_state() == v1::IMPORT_STATE_UNSPECIFIED
                        ? std::string("-")
                        : EnumName(v1::ImportState_descriptor(), rotation.import_state()));
      row.push_back(rotation.key_check_value().empty()
                        ? std::string("-")
                        : absl::StrCat("kcv=", rotation.key_check_value()));
    }
    row.push_back(rotation.current() ? "current" : "");
    rows.push_back(std::move(row));
  }
  return absl::StrCat("versions:\n", AlignColumns(rows, imported ? 6 : 4, "  "));
}

}  // namespace kms::kmsctl
