// kmsctl: the command-line client of kmsd. One subcommand per RPC of
// kms/v1/kms.proto, named as the AWS CLI names it (describe-key,
// generate-data-key, ...; kmsd's own GetRotationComplianceReport is
// rotation-compliance-report), plus encrypt-file / decrypt-file /
// envelope-info for envelope-encrypted files (client/envelope.h).
// describe-key alone makes two RPCs: without --json it also lists the key's
// versions (ListKeyRotations).
//
// Exit codes (also printed by `kmsctl --help`; see kmsctl_support.h):
//   0  success
//   1  kmsd returned an error; stderr: "kmsctl: <ExceptionName>: <message>"
//   2  usage error: bad flags or arguments, caught before any RPC
//   3  kmsd unreachable, or no answer within --timeout
//   4  local failure: file I/O, or an envelope file that fails verification
//
// Each command is registered by an Add* function below, which declares its
// flags and a runner. Runners check every argument first (usage errors), then
// read input files, then call kmsd, so a usage error never reaches kmsd.
// CLI11 reports its own parse errors by throwing; main() catches them and
// turns them into exit code 2. Nothing else here throws.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/data_key_source.h"
#include "client/envelope.h"
#include "client/kms_client.h"
#include "client/kmsctl_output.h"
#include "client/kmsctl_support.h"
#include "daemon/common/errors.h"
#include "daemon/common/secret_bytes.h"
#include "daemon/common/status_macros.h"

namespace kms::kmsctl {
namespace {

using client::KmsClient;
using StringMap = std::map<std::string, std::string>;

constexpr char kDefaultEndpoint[] = "127.0.0.1:7700";
constexpr char kEndpointEnv[] = "KMSD_ENDPOINT";

struct GlobalFlags {
  std::string endpoint = kDefaultEndpoint;
  bool json = false;
  double timeout_seconds = 10;
};

// What a command's runner works with.
struct Session {
  KmsClient& client;
  bool json;
};

using Runner = std::function<absl::Status(Session&)>;

// The subcommands and their runners.
class CommandTable {
 public:
  explicit CommandTable(CLI::App& app) : app_(app) {}

  CLI::App* Add(const std::string& name, const std::string& description, Runner run) {
    CLI::App* command = app_.add_subcommand(name, description);
    runners_[command] = std::move(run);
    return command;
  }

  // The runner of the subcommand on the command line. Call after a
  // successful parse (which requires exactly one subcommand).
  const Runner& Selected() const { return runners_.at(app_.get_subcommands().front()); }

 private:
  CLI::App& app_;
  std::map<const CLI::App*, Runner> runners_;
};

// ---------------------------------------------------------------- output

// Prints `response` as JSON with --json, else what `human` returns. The
// printed text is wiped afterwards: it may hold a plaintext the user asked
// for.
absl::Status Emit(const Session& session, const google::protobuf::Message& response,
                  absl::FunctionRef<std::string()> human) {
  std::string text;
  if (session.json) {
    KMS_ASSIGN_OR_RETURN(text, FormatJson(response));
  } else {
    text = human();
  }
  absl::Status status = WriteStdout(text);
  WipeString(&text);
  return status;
}

// Prints `response` with --json; people see nothing (an empty response, or
// one whose contents went to files).
absl::Status EmitJsonOnly(const Session& session, const google::protobuf::Message& response) {
  return Emit(session, response, [] { return std::string(); });
}

std::string Base64Line(absl::string_view bytes) {
  return absl::StrCat(absl::Base64Escape(bytes), "\n");
}

// ---------------------------------------------------------------- arguments

void AddKeyArgument(CLI::App* command, std::string* key_id) {
  command->add_option("KEY", *key_id, "Key id, alias name (alias/...) or key ARN")->required();
}

void AddContextFlag(CLI::App* command, std::vector<std::string>* pairs,
                    const std::string& name = "--context",
                    const std::string& description = "Encryption context pair") {
  // One pair per flag, so a pair never swallows a following positional.
  command->add_option(name, *pairs, description + " K=V, split at the first '='; repeat")
      ->type_name("K=V")
      ->allow_extra_args(false);
}

absl::Status RequireExactlyOne(const CLI::Option* a, const CLI::Option* b) {
  if ((a->count() > 0) == (b->count() > 0)) {
    return UsageError(absl::StrCat("give exactly one of ", a->get_name(), " and ", b->get_name()));
  }
  return absl::OkStatus();
}

void CopyPairs(const StringMap& from, google::protobuf::Map<std::string, std::string>* to) {
  to->insert(from.begin(), from.end());
}

// A ciphertext given as a file or as base64 on the command line.
struct CiphertextInput {
  std::string file;
  std::string base64;
  CLI::Option* file_flag = nullptr;
  CLI::Option* base64_flag = nullptr;

  void AddFlags(CLI::App* command) {
    file_flag = command->add_option("--ciphertext-file", file,
                                    "File holding the binary ciphertext blob ('-': stdin)");
    base64_flag =
        command->add_option("--ciphertext-base64", base64, "The ciphertext blob in base64");
  }

  // Usage errors first (which flag, base64), then reading the file.
  absl::StatusOr<std::string> Read() const {
    KMS_RETURN_IF_ERROR(RequireExactlyOne(file_flag, base64_flag));
    if (base64_flag->count() > 0) return DecodeBase64Argument(base64, "--ciphertext-base64");
    return ReadInputFile(file);
  }
};

// --key-spec / --number-of-bytes of the two GenerateDataKey RPCs.
struct DataKeyShape {
  std::string key_spec;
  int32_t number_of_bytes = 0;
  CLI::Option* key_spec_flag = nullptr;
  CLI::Option* number_of_bytes_flag = nullptr;

  void AddFlags(CLI::App* command) {
    key_spec_flag = command->add_option("--key-spec", key_spec, "Data key length by name")
                        ->check(CLI::IsMember({"AES_256", "AES_128"}));
    number_of_bytes_flag =
        command->add_option("--number-of-bytes", number_of_bytes, "Data key length in bytes");
  }

  template <typename Request>
  absl::Status Apply(Request* request) const {
    KMS_RETURN_IF_ERROR(RequireExactlyOne(key_spec_flag, number_of_bytes_flag));
    if (number_of_bytes_flag->count() > 0) {
      request->set_number_of_bytes(number_of_bytes);
    } else {
      v1::DataKeySpec spec;
      v1::DataKeySpec_Parse(key_spec, &spec);  // IsMember checked the name
      request->set_key_spec(spec);
    }
    return absl::OkStatus();
  }
};

// --limit / --marker / --all of the list commands.
struct PageFlags {
  int32_t limit = 0;
  std::string marker;
  bool all = false;
  CLI::Option* limit_flag = nullptr;

  void AddFlags(CLI::App* command) {
    limit_flag = command->add_option("--limit", limit, "Entries per page (kmsd's default: 100)");
    command->add_option("--marker", marker, "Start after this next_marker of a previous page");
    command->add_flag("--all", all, "Fetch every page from --marker on");
  }

  template <typename Request>
  void Apply(Request* request) const {
    if (limit_flag->count() > 0) request->set_limit(limit);
    request->set_marker(marker);
  }
};

// One page, or with --all every following page merged into one response.
template <typename Request, typename Response>
absl::StatusOr<Response> FetchPages(
    Request request, bool all, absl::FunctionRef<absl::StatusOr<Response>(const Request&)> list) {
  KMS_ASSIGN_OR_RETURN(Response merged, list(request));
  while (all && merged.truncated()) {
    if (merged.next_marker().empty() || merged.next_marker() == request.marker()) {
      return InternalError("kmsd returned a truncated page without a new next_marker");
    }
    request.set_marker(merged.next_marker());
    KMS_ASSIGN_OR_RETURN(Response page, list(request));
    merged.MergeFrom(page);  // appends the entries
    // MergeFrom keeps non-default scalars; the last page's say wins.
    merged.set_truncated(page.truncated());
    merged.set_next_marker(page.next_marker());
  }
  return merged;
}

// A table, then where to continue if kmsd has more.
std::string TableWithMarker(const std::vector<std::string>& header,
                            const std::vector<std::vector<std::string>>& rows, bool truncated,
                            const std::string& next_marker) {
  std::string out = FormatTable(header, rows);
  if (truncated) absl::StrAppend(&out, "next_marker: ", next_marker, "\n");
  return out;
}

// ---------------------------------------------------------------- keys

void AddCreateKey(CommandTable& commands) {
  struct Args {
    std::string description;
    std::string origin = "AWS_KMS";
    std::vector<std::string> tags;
    bool enable_key_rotation = false;
    int32_t rotation_period_in_days = 0;
    CLI::Option* period_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "create-key", "Create a customer master key", [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(StringMap tags, ParseKeyValuePairs(args->tags, "--tag"));
        // kmsd would ignore a period without rotation; say so instead.
        if (args->period_flag->count() > 0 && !args->enable_key_rotation) {
          return UsageError("--rotation-period-in-days requires --enable-key-rotation");
        }
        v1::CreateKeyRequest request;
        request.set_description(args->description);
        v1::OriginType origin;
        v1::OriginType_Parse(args->origin, &origin);  // IsMember checked the name
        request.set_origin(origin);
        for (const auto& [key, value] : tags) {
          v1::Tag* tag = request.add_tags();
          tag->set_tag_key(key);
          tag->set_tag_value(value);
        }
        request.set_enable_key_rotation(args->enable_key_rotation);
        if (args->period_flag->count() > 0) {
          request.set_rotation_period_in_days(args->rotation_period_in_days);
        }
        KMS_ASSIGN_OR_RETURN(v1::CreateKeyResponse response, session.client.CreateKey(request));
        return Emit(session, response,
                    [&] { return FormatFields(KeyMetadataFields(response.key_metadata())); });
      });
  command->add_option("--description", args->description, "What the key is for");
  command->add_option("--origin", args->origin, "Where the key material comes from")
      ->check(CLI::IsMember({"AWS_KMS", "EXTERNAL"}))
      ->capture_default_str();
  command->add_option("--tag", args->tags, "Tag KEY=VALUE; repeat")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  command->add_flag("--enable-key-rotation", args->enable_key_rotation,
                    "Rotate the key material automatically");
  args->period_flag =
      command->add_option("--rotation-period-in-days", args->rotation_period_in_days,
                          "Days between rotations; needs --enable-key-rotation");
}

void AddDescribeKey(CommandTable& commands) {
  auto key_id = std::make_shared<std::string>();
  CLI::App* command = commands.Add(
      "describe-key", "Show a key's metadata and, without --json, its versions",
      [key_id](Session& session) -> absl::Status {
        v1::DescribeKeyRequest request;
        request.set_key_id(*key_id);
        KMS_ASSIGN_OR_RETURN(v1::DescribeKeyResponse response, session.client.DescribeKey(request));
        const v1::KeyMetadata& metadata = response.key_metadata();
        if (session.json || metadata.key_version_count() == 0) {
          return Emit(session, response, [&] {
            return FormatFields(KeyMetadataFields(metadata)) + FormatKeyVersions(metadata, {});
          });
        }
        // Ask by key id, not by what the user typed: an alias could be
        // pointed at another key in between.
        v1::ListKeyRotationsRequest list;
        list.set_key_id(metadata.key_id());
        absl::StatusOr<v1::ListKeyRotationsResponse> rotations =
            FetchPages<v1::ListKeyRotationsRequest, v1::ListKeyRotationsResponse>(
                list, /*all=*/true, [&](const v1::ListKeyRotationsRequest& r) {
                  return session.client.ListKeyRotations(r);
                });
        std::string text = FormatFields(KeyMetadataFields(metadata));
        if (rotations.ok()) {
          absl::StrAppend(&text, FormatKeyVersions(metadata, {rotations->rotations().begin(),
                                                              rotations->rotations().end()}));
        }
        KMS_RETURN_IF_ERROR(WriteStdout(text));
        // The metadata is worth having even when the versions are not.
        return rotations.status();
      });
  AddKeyArgument(command, key_id.get());
}

void AddListKeys(CommandTable& commands) {
  auto pages = std::make_shared<PageFlags>();
  CLI::App* command =
      commands.Add("list-keys", "List keys", [pages](Session& session) -> absl::Status {
        v1::ListKeysRequest request;
        pages->Apply(&request);
        KMS_ASSIGN_OR_RETURN(v1::ListKeysResponse response,
                             (FetchPages<v1::ListKeysRequest, v1::ListKeysResponse>(
                                 request, pages->all, [&](const v1::ListKeysRequest& r) {
                                   return session.client.ListKeys(r);
                                 })));
        return Emit(session, response, [&] {
          std::vector<std::vector<std::string>> rows;
          for (const v1::KeyListEntry& key : response.keys()) {
            rows.push_back({key.key_id(), key.key_arn()});
          }
          return TableWithMarker({"KEY_ID", "KEY_ARN"}, rows, response.truncated(),
                                 response.next_marker());
        });
      });
  pages->AddFlags(command);
}

// The commands that take only a key and answer with an empty message.
template <typename Request, typename Response>
void AddKeyOnlyCommand(CommandTable& commands, const std::string& name,
                       const std::string& description,
                       absl::StatusOr<Response> (KmsClient::*rpc)(const Request&) const) {
  auto key_id = std::make_shared<std::string>();
  CLI::App* command =
      commands.Add(name, description, [key_id, rpc](Session& session) -> absl::Status {
        Request request;
        request.set_key_id(*key_id);
        KMS_ASSIGN_OR_RETURN(Response response, (session.client.*rpc)(request));
        return EmitJsonOnly(session, response);
      });
  AddKeyArgument(command, key_id.get());
}

void AddUpdateKeyDescription(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string description;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command =
      commands.Add("update-key-description", "Replace a key's description",
                   [args](Session& session) -> absl::Status {
                     v1::UpdateKeyDescriptionRequest request;
                     request.set_key_id(args->key_id);
                     request.set_description(args->description);
                     KMS_ASSIGN_OR_RETURN(v1::UpdateKeyDescriptionResponse response,
                                          session.client.UpdateKeyDescription(request));
                     return EmitJsonOnly(session, response);
                   });
  AddKeyArgument(command, &args->key_id);
  command->add_option("DESCRIPTION", args->description, "The new description")->required();
}

void AddScheduleKeyDeletion(CommandTable& commands) {
  struct Args {
    std::string key_id;
    int32_t pending_window_in_days = 0;
    CLI::Option* window_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "schedule-key-deletion", "Delete a key after a waiting period",
      [args](Session& session) -> absl::Status {
        v1::ScheduleKeyDeletionRequest request;
        request.set_key_id(args->key_id);
        if (args->window_flag->count() > 0) {
          request.set_pending_window_in_days(args->pending_window_in_days);
        }
        KMS_ASSIGN_OR_RETURN(v1::ScheduleKeyDeletionResponse response,
                             session.client.ScheduleKeyDeletion(request));
        return Emit(session, response, [&] {
          return FormatFields({
              {"key_id", response.key_id()},
              {"deletion_date",
               FormatTimestamp(response.deletion_date(), response.has_deletion_date())},
              {"key_state", KeyStateName(response.key_state())},
              {"pending_window_in_days", absl::StrCat(response.pending_window_in_days())},
          });
        });
      });
  AddKeyArgument(command, &args->key_id);
  args->window_flag = command->add_option("--pending-window-in-days", args->pending_window_in_days,
                                          "Days until deletion, 7..30 (kmsd's default: 30)");
}

void AddCancelKeyDeletion(CommandTable& commands) {
  auto key_id = std::make_shared<std::string>();
  CLI::App* command =
      commands.Add("cancel-key-deletion", "Cancel a scheduled deletion; the key stays disabled",
                   [key_id](Session& session) -> absl::Status {
                     v1::CancelKeyDeletionRequest request;
                     request.set_key_id(*key_id);
                     KMS_ASSIGN_OR_RETURN(v1::CancelKeyDeletionResponse response,
                                          session.client.CancelKeyDeletion(request));
                     return Emit(session, response, [&] {
                       return FormatFields({{"key_id", response.key_id()}});
                     });
                   });
  AddKeyArgument(command, key_id.get());
}

// ---------------------------------------------------------------- rotation

void AddEnableKeyRotation(CommandTable& commands) {
  struct Args {
    std::string key_id;
    int32_t rotation_period_in_days = 0;
    CLI::Option* period_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command =
      commands.Add("enable-key-rotation", "Rotate a key's material automatically, every period",
                   [args](Session& session) -> absl::Status {
                     v1::EnableKeyRotationRequest request;
                     request.set_key_id(args->key_id);
                     if (args->period_flag->count() > 0) {
                       request.set_rotation_period_in_days(args->rotation_period_in_days);
                     }
                     KMS_ASSIGN_OR_RETURN(v1::EnableKeyRotationResponse response,
                                          session.client.EnableKeyRotation(request));
                     return EmitJsonOnly(session, response);
                   });
  AddKeyArgument(command, &args->key_id);
  args->period_flag = command->add_option(
      "--rotation-period-in-days", args->rotation_period_in_days,
      "Days between rotations (kmsd's default: the key's previous period, else 365)");
}

void AddGetKeyRotationStatus(CommandTable& commands) {
  auto key_id = std::make_shared<std::string>();
  CLI::App* command = commands.Add(
      "get-key-rotation-status", "Show whether and when a key rotates",
      [key_id](Session& session) -> absl::Status {
        v1::GetKeyRotationStatusRequest request;
        request.set_key_id(*key_id);
        KMS_ASSIGN_OR_RETURN(v1::GetKeyRotationStatusResponse response,
                             session.client.GetKeyRotationStatus(request));
        return Emit(session, response, [&] {
          return FormatFields({
              {"key_id", response.key_id()},
              {"key_rotation_enabled", BoolName(response.key_rotation_enabled())},
              {"rotation_period_in_days", NumberOrDash(response.rotation_period_in_days())},
              {"next_rotation_date",
               FormatTimestamp(response.next_rotation_date(), response.has_next_rotation_date())},
              {"on_demand_rotation_start_date",
               FormatTimestamp(response.on_demand_rotation_start_date(),
                               response.has_on_demand_rotation_start_date())},
          });
        });
      });
  AddKeyArgument(command, key_id.get());
}

void AddRotateKeyOnDemand(CommandTable& commands) {
  auto key_id = std::make_shared<std::string>();
  CLI::App* command = commands.Add(
      "rotate-key-on-demand", "Give a key new material now; old ciphertexts still decrypt",
      [key_id](Session& session) -> absl::Status {
        v1::RotateKeyOnDemandRequest request;
        request.set_key_id(*key_id);
        KMS_ASSIGN_OR_RETURN(v1::RotateKeyOnDemandResponse response,
                             session.client.RotateKeyOnDemand(request));
        return Emit(session, response, [&] {
          return FormatFields(
              {{"key_id", response.key_id()}, {"key_version_id", response.key_version_id()}});
        });
      });
  AddKeyArgument(command, key_id.get());
}

void AddListKeyRotations(CommandTable& commands) {
  struct Args {
    std::string key_id;
    PageFlags pages;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "list-key-rotations", "List a key's rotations, oldest first (not its original material)",
      [args](Session& session) -> absl::Status {
        v1::ListKeyRotationsRequest request;
        request.set_key_id(args->key_id);
        args->pages.Apply(&request);
        KMS_ASSIGN_OR_RETURN(
            v1::ListKeyRotationsResponse response,
            (FetchPages<v1::ListKeyRotationsRequest, v1::ListKeyRotationsResponse>(
                request, args->pages.all, [&](const v1::ListKeyRotationsRequest& r) {
                  return session.client.ListKeyRotations(r);
                })));
        return Emit(session, response, [&] {
          std::vector<std::vector<std::string>> rows;
          for (const v1::RotationsListEntry& rotation : response.rotations()) {
            rows.push_back({rotation.key_version_id(),
                            FormatTimestamp(rotation.rotation_date(), rotation.has_rotation_date()),
                            RotationTypeName(rotation.rotation_type()),
                            BoolName(rotation.current())});
          }
          return TableWithMarker({"KEY_VERSION_ID", "ROTATION_DATE", "ROTATION_TYPE", "CURRENT"},
                                 rows, response.truncated(), response.next_marker());
        });
      });
  AddKeyArgument(command, &args->key_id);
  args->pages.AddFlags(command);
}

void AddRotationComplianceReport(CommandTable& commands) {
  struct Args {
    int32_t max_age_in_days = 0;
    bool include_compliant = false;
    CLI::Option* max_age_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "rotation-compliance-report", "List keys whose rotation is disabled or overdue",
      [args](Session& session) -> absl::Status {
        v1::GetRotationComplianceReportRequest request;
        if (args->max_age_flag->count() > 0) request.set_max_age_in_days(args->max_age_in_days);
        request.set_include_compliant(args->include_compliant);
        KMS_ASSIGN_OR_RETURN(v1::GetRotationComplianceReportResponse response,
                             session.client.GetRotationComplianceReport(request));
        return Emit(session, response, [&] {
          std::vector<std::vector<std::string>> rows;
          for (const v1::RotationComplianceEntry& key : response.keys()) {
            rows.push_back({
                key.key_id(),
                KeyStateName(key.key_state()),
                key.key_rotation_enabled() ? "enabled" : "disabled",
                NumberOrDash(key.rotation_period_in_days()),
                FormatTimestamp(key.last_rotation_date(), key.has_last_rotation_date()),
                FormatTimestamp(key.next_rotation_date(), key.has_next_rotation_date()),
                RotationComplianceStatusName(key.status()),
            });
          }
          return absl::StrCat(
              FormatFields({{"max_age_in_days", absl::StrCat(response.max_age_in_days())}}),
              FormatTable({"KEY_ID", "STATE", "ROTATION", "PERIOD_DAYS", "LAST_ROTATION",
                           "NEXT_ROTATION", "STATUS"},
                          rows));
        });
      });
  args->max_age_flag = command->add_option(
      "--max-age-in-days", args->max_age_in_days,
      "Current material older than this is OVERDUE (kmsd's default: from its configuration)");
  command->add_flag("--include-compliant", args->include_compliant,
                    "List every key, not only the non-compliant ones");
}

// ---------------------------------------------------------------- aliases

// create-alias and update-alias: ALIAS KEY, empty answer.
template <typename Request, typename Response>
void AddAliasTargetCommand(CommandTable& commands, const std::string& name,
                           const std::string& description,
                           absl::StatusOr<Response> (KmsClient::*rpc)(const Request&) const) {
  struct Args {
    std::string alias_name;
    std::string target_key_id;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command =
      commands.Add(name, description, [args, rpc](Session& session) -> absl::Status {
        Request request;
        request.set_alias_name(args->alias_name);
        request.set_target_key_id(args->target_key_id);
        KMS_ASSIGN_OR_RETURN(Response response, (session.client.*rpc)(request));
        return EmitJsonOnly(session, response);
      });
  command->add_option("ALIAS", args->alias_name, "Alias name, alias/...")->required();
  AddKeyArgument(command, &args->target_key_id);
}

void AddDeleteAlias(CommandTable& commands) {
  auto alias_name = std::make_shared<std::string>();
  CLI::App* command = commands.Add("delete-alias", "Delete an alias (not its key)",
                                   [alias_name](Session& session) -> absl::Status {
                                     v1::DeleteAliasRequest request;
                                     request.set_alias_name(*alias_name);
                                     KMS_ASSIGN_OR_RETURN(v1::DeleteAliasResponse response,
                                                          session.client.DeleteAlias(request));
                                     return EmitJsonOnly(session, response);
                                   });
  command->add_option("ALIAS", *alias_name, "Alias name, alias/...")->required();
}

void AddListAliases(CommandTable& commands) {
  struct Args {
    std::string key_id;
    PageFlags pages;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command =
      commands.Add("list-aliases", "List aliases", [args](Session& session) -> absl::Status {
        v1::ListAliasesRequest request;
        request.set_key_id(args->key_id);
        args->pages.Apply(&request);
        KMS_ASSIGN_OR_RETURN(v1::ListAliasesResponse response,
                             (FetchPages<v1::ListAliasesRequest, v1::ListAliasesResponse>(
                                 request, args->pages.all, [&](const v1::ListAliasesRequest& r) {
                                   return session.client.ListAliases(r);
                                 })));
        return Emit(session, response, [&] {
          std::vector<std::vector<std::string>> rows;
          for (const v1::AliasListEntry& alias : response.aliases()) {
            rows.push_back(
                {alias.alias_name(), alias.target_key_id(),
                 FormatTimestamp(alias.creation_date(), alias.has_creation_date()),
                 FormatTimestamp(alias.last_updated_date(), alias.has_last_updated_date())});
          }
          return TableWithMarker(
              {"ALIAS_NAME", "TARGET_KEY_ID", "CREATION_DATE", "LAST_UPDATED_DATE"}, rows,
              response.truncated(), response.next_marker());
        });
      });
  command->add_option("--key-id", args->key_id, "Only the aliases of this key");
  args->pages.AddFlags(command);
}

// ---------------------------------------------------------------- tags

void AddTagResource(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::vector<std::string> tags;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "tag-resource", "Add or overwrite tags on a key", [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(StringMap tags, ParseKeyValuePairs(args->tags, "TAG"));
        v1::TagResourceRequest request;
        request.set_key_id(args->key_id);
        for (const auto& [key, value] : tags) {
          v1::Tag* tag = request.add_tags();
          tag->set_tag_key(key);
          tag->set_tag_value(value);
        }
        KMS_ASSIGN_OR_RETURN(v1::TagResourceResponse response, session.client.TagResource(request));
        return EmitJsonOnly(session, response);
      });
  AddKeyArgument(command, &args->key_id);
  command->add_option("TAG", args->tags, "KEY=VALUE; one or more")->required();
}

void AddUntagResource(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::vector<std::string> tag_keys;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add("untag-resource", "Remove tags from a key",
                                   [args](Session& session) -> absl::Status {
                                     v1::UntagResourceRequest request;
                                     request.set_key_id(args->key_id);
                                     for (const std::string& key : args->tag_keys)
                                       request.add_tag_keys(key);
                                     KMS_ASSIGN_OR_RETURN(v1::UntagResourceResponse response,
                                                          session.client.UntagResource(request));
                                     return EmitJsonOnly(session, response);
                                   });
  AddKeyArgument(command, &args->key_id);
  command->add_option("TAGKEY", args->tag_keys, "Tag keys; one or more")->required();
}

void AddListResourceTags(CommandTable& commands) {
  struct Args {
    std::string key_id;
    PageFlags pages;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "list-resource-tags", "List a key's tags", [args](Session& session) -> absl::Status {
        v1::ListResourceTagsRequest request;
        request.set_key_id(args->key_id);
        args->pages.Apply(&request);
        KMS_ASSIGN_OR_RETURN(
            v1::ListResourceTagsResponse response,
            (FetchPages<v1::ListResourceTagsRequest, v1::ListResourceTagsResponse>(
                request, args->pages.all, [&](const v1::ListResourceTagsRequest& r) {
                  return session.client.ListResourceTags(r);
                })));
        return Emit(session, response, [&] {
          std::vector<std::vector<std::string>> rows;
          for (const v1::Tag& tag : response.tags()) {
            rows.push_back({tag.tag_key(), tag.tag_value()});
          }
          return TableWithMarker({"TAG_KEY", "TAG_VALUE"}, rows, response.truncated(),
                                 response.next_marker());
        });
      });
  AddKeyArgument(command, &args->key_id);
  args->pages.AddFlags(command);
}

// ---------------------------------------------------------------- data plane

// A ciphertext blob to --output (raw) or stdout (base64); bytes that went to
// a file are left out of the JSON.
template <typename Response>
absl::Status EmitCiphertext(const Session& session, Response& response, const std::string& output) {
  if (!output.empty()) {
    KMS_RETURN_IF_ERROR(WriteOutputFile(output, response.ciphertext_blob(), FileMode::kPublic));
    response.clear_ciphertext_blob();
    return EmitJsonOnly(session, response);
  }
  return Emit(session, response, [&] { return Base64Line(response.ciphertext_blob()); });
}

void AddEncrypt(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string plaintext;
    std::string plaintext_file;
    std::vector<std::string> context;
    std::string output;
    CLI::Option* plaintext_flag = nullptr;
    CLI::Option* plaintext_file_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "encrypt", "Encrypt up to 4096 bytes under a key", [args](Session& session) -> absl::Status {
        KMS_RETURN_IF_ERROR(RequireExactlyOne(args->plaintext_flag, args->plaintext_file_flag));
        KMS_ASSIGN_OR_RETURN(StringMap context, ParseKeyValuePairs(args->context, "--context"));
        v1::EncryptRequest request;
        request.set_key_id(args->key_id);
        CopyPairs(context, request.mutable_encryption_context());
        if (args->plaintext_flag->count() > 0) {
          request.set_plaintext(args->plaintext);
        } else {
          KMS_ASSIGN_OR_RETURN(*request.mutable_plaintext(), ReadInputFile(args->plaintext_file));
        }
        absl::StatusOr<v1::EncryptResponse> response = session.client.Encrypt(request);
        WipeString(request.mutable_plaintext());
        if (!response.ok()) return response.status();
        return EmitCiphertext(session, *response, args->output);
      });
  AddKeyArgument(command, &args->key_id);
  args->plaintext_flag =
      command->add_option("--plaintext", args->plaintext, "The plaintext, as given");
  args->plaintext_file_flag = command->add_option("--plaintext-file", args->plaintext_file,
                                                  "File holding the plaintext ('-': stdin)");
  AddContextFlag(command, &args->context);
  command->add_option("--output", args->output,
                      "Write the binary blob to this file (default: base64 to stdout)");
}

void AddDecrypt(CommandTable& commands) {
  struct Args {
    CiphertextInput ciphertext;
    std::vector<std::string> context;
    std::string key_id;
    std::string output;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "decrypt", "Decrypt a ciphertext blob; prints the raw plaintext",
      [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(StringMap context, ParseKeyValuePairs(args->context, "--context"));
        v1::DecryptRequest request;
        KMS_ASSIGN_OR_RETURN(*request.mutable_ciphertext_blob(), args->ciphertext.Read());
        CopyPairs(context, request.mutable_encryption_context());
        request.set_key_id(args->key_id);
        KMS_ASSIGN_OR_RETURN(v1::DecryptResponse response, session.client.Decrypt(request));
        absl::Cleanup wipe = [&response] { WipeString(response.mutable_plaintext()); };
        if (!args->output.empty()) {
          KMS_RETURN_IF_ERROR(
              WriteOutputFile(args->output, response.plaintext(), FileMode::kSecret));
          WipeString(response.mutable_plaintext());
          return EmitJsonOnly(session, response);
        }
        return session.json ? EmitJsonOnly(session, response) : WriteStdout(response.plaintext());
      });
  args->ciphertext.AddFlags(command);
  AddContextFlag(command, &args->context);
  command->add_option("--key-id", args->key_id,
                      "Fail unless the blob belongs to this key (id, alias or ARN)");
  command->add_option("--output", args->output,
                      "Write the plaintext to this file, mode 0600 (default: stdout)");
}

void AddReEncrypt(CommandTable& commands) {
  struct Args {
    CiphertextInput ciphertext;
    std::vector<std::string> source_context;
    std::string source_key_id;
    std::string destination_key_id;
    std::vector<std::string> destination_context;
    std::string output;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "re-encrypt", "Decrypt and encrypt again inside kmsd, under another key or context",
      [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(StringMap source_context,
                             ParseKeyValuePairs(args->source_context, "--source-context"));
        KMS_ASSIGN_OR_RETURN(
            StringMap destination_context,
            ParseKeyValuePairs(args->destination_context, "--destination-context"));
        v1::ReEncryptRequest request;
        KMS_ASSIGN_OR_RETURN(*request.mutable_ciphertext_blob(), args->ciphertext.Read());
        CopyPairs(source_context, request.mutable_source_encryption_context());
        request.set_source_key_id(args->source_key_id);
        request.set_destination_key_id(args->destination_key_id);
        CopyPairs(destination_context, request.mutable_destination_encryption_context());
        KMS_ASSIGN_OR_RETURN(v1::ReEncryptResponse response, session.client.ReEncrypt(request));
        return EmitCiphertext(session, response, args->output);
      });
  args->ciphertext.AddFlags(command);
  AddContextFlag(command, &args->source_context, "--source-context",
                 "Encryption context pair of the blob,");
  command->add_option("--source-key-id", args->source_key_id,
                      "Fail unless the blob belongs to this key");
  command->add_option("--destination-key-id", args->destination_key_id, "Key to encrypt under")
      ->required();
  AddContextFlag(command, &args->destination_context, "--destination-context",
                 "Encryption context pair of the new blob,");
  command->add_option("--output", args->output,
                      "Write the binary blob to this file (default: base64 to stdout)");
}

void AddGenerateDataKey(CommandTable& commands) {
  struct Args {
    std::string key_id;
    DataKeyShape shape;
    std::vector<std::string> context;
    std::string plaintext_output;
    std::string ciphertext_output;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "generate-data-key", "Make a data key; prints it in the clear and wrapped",
      [args](Session& session) -> absl::Status {
        v1::GenerateDataKeyRequest request;
        request.set_key_id(args->key_id);
        KMS_RETURN_IF_ERROR(args->shape.Apply(&request));
        KMS_ASSIGN_OR_RETURN(StringMap context, ParseKeyValuePairs(args->context, "--context"));
        CopyPairs(context, request.mutable_encryption_context());
        KMS_ASSIGN_OR_RETURN(v1::GenerateDataKeyResponse response,
                             session.client.GenerateDataKey(request));
        absl::Cleanup wipe = [&response] { WipeString(response.mutable_plaintext()); };
        // The wrapped key first: a plaintext key saved without its blob
        // could encrypt data that nobody can decrypt later.
        if (!args->ciphertext_output.empty()) {
          KMS_RETURN_IF_ERROR(WriteOutputFile(args->ciphertext_output, response.ciphertext_blob(),
                                              FileMode::kPublic));
          response.clear_ciphertext_blob();
        }
        if (!args->plaintext_output.empty()) {
          KMS_RETURN_IF_ERROR(
              WriteOutputFile(args->plaintext_output, response.plaintext(), FileMode::kSecret));
          WipeString(response.mutable_plaintext());
        }
        return Emit(session, response, [&] {
          std::vector<Field> fields = {{"key_id", response.key_id()}};
          if (!response.plaintext().empty()) {
            fields.push_back({"plaintext", absl::Base64Escape(response.plaintext())});
          }
          if (!response.ciphertext_blob().empty()) {
            fields.push_back({"ciphertext_blob", absl::Base64Escape(response.ciphertext_blob())});
          }
          std::string text = FormatFields(fields);
          for (Field& field : fields) WipeString(&field.second);
          return text;
        });
      });
  AddKeyArgument(command, &args->key_id);
  args->shape.AddFlags(command);
  AddContextFlag(command, &args->context);
  command->add_option("--plaintext-output", args->plaintext_output,
                      "Write the raw data key to this file, mode 0600, instead of stdout");
  command->add_option("--ciphertext-output", args->ciphertext_output,
                      "Write the raw wrapped key to this file instead of stdout");
}

void AddGenerateDataKeyWithoutPlaintext(CommandTable& commands) {
  struct Args {
    std::string key_id;
    DataKeyShape shape;
    std::vector<std::string> context;
    std::string ciphertext_output;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "generate-data-key-without-plaintext", "Make a data key; prints it wrapped only",
      [args](Session& session) -> absl::Status {
        v1::GenerateDataKeyWithoutPlaintextRequest request;
        request.set_key_id(args->key_id);
        KMS_RETURN_IF_ERROR(args->shape.Apply(&request));
        KMS_ASSIGN_OR_RETURN(StringMap context, ParseKeyValuePairs(args->context, "--context"));
        CopyPairs(context, request.mutable_encryption_context());
        KMS_ASSIGN_OR_RETURN(v1::GenerateDataKeyWithoutPlaintextResponse response,
                             session.client.GenerateDataKeyWithoutPlaintext(request));
        if (!args->ciphertext_output.empty()) {
          KMS_RETURN_IF_ERROR(WriteOutputFile(args->ciphertext_output, response.ciphertext_blob(),
                                              FileMode::kPublic));
          response.clear_ciphertext_blob();
        }
        return Emit(session, response, [&] {
          std::vector<Field> fields = {{"key_id", response.key_id()}};
          if (!response.ciphertext_blob().empty()) {
            fields.push_back({"ciphertext_blob", absl::Base64Escape(response.ciphertext_blob())});
          }
          return FormatFields(fields);
        });
      });
  AddKeyArgument(command, &args->key_id);
  args->shape.AddFlags(command);
  AddContextFlag(command, &args->context);
  command->add_option("--ciphertext-output", args->ciphertext_output,
                      "Write the raw wrapped key to this file instead of stdout");
}

void AddGenerateRandom(CommandTable& commands) {
  struct Args {
    int32_t number_of_bytes = 0;
    std::string output;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "generate-random", "Random bytes from the HSM; base64 to stdout",
      [args](Session& session) -> absl::Status {
        v1::GenerateRandomRequest request;
        request.set_number_of_bytes(args->number_of_bytes);
        KMS_ASSIGN_OR_RETURN(v1::GenerateRandomResponse response,
                             session.client.GenerateRandom(request));
        // Random bytes are often used as keys: treat them as secrets.
        absl::Cleanup wipe = [&response] { WipeString(response.mutable_plaintext()); };
        if (!args->output.empty()) {
          KMS_RETURN_IF_ERROR(
              WriteOutputFile(args->output, response.plaintext(), FileMode::kSecret));
          WipeString(response.mutable_plaintext());
          return EmitJsonOnly(session, response);
        }
        return Emit(session, response, [&] { return Base64Line(response.plaintext()); });
      });
  command->add_option("N", args->number_of_bytes, "Number of bytes, 1..1024")->required();
  command->add_option("--output", args->output,
                      "Write the raw bytes to this file, mode 0600 (default: base64 to stdout)");
}

// ---------------------------------------------------------------- envelope files

// Passes data-key calls on to kmsd and remembers the last error, so a failed
// EncryptFile / DecryptFile can be blamed on kmsd (exit 1 or 3) or on local
// causes (exit 4).
class RecordingDataKeySource final : public client::DataKeySource {
 public:
  explicit RecordingDataKeySource(client::DataKeySource& source) : source_(source) {}

  absl::StatusOr<client::DataKey> GenerateDataKey(
      const std::string& key_id, const client::EncryptionContext& context) override {
    return Record(source_.GenerateDataKey(key_id, context));
  }
  absl::StatusOr<SecretBytes> DecryptDataKey(const std::string& ciphertext_blob,
                                             const client::EncryptionContext& context) override {
    return Record(source_.DecryptDataKey(ciphertext_blob, context));
  }

  // What to report for `status`, an error an envelope function returned.
  absl::Status Blame(absl::Status status) const {
    return error_.ok() ? AsLocalFailure(std::move(status)) : error_;
  }

 private:
  template <typename T>
  absl::StatusOr<T> Record(absl::StatusOr<T> result) {
    if (!result.ok()) error_ = result.status();
    return result;
  }

  client::DataKeySource& source_;
  absl::Status error_;
};

absl::Status EmitEnvelopeHeader(const Session& session, const client::EnvelopeHeader& header) {
  std::string text = session.json
                         ? absl::StrCat("{\"key_arn\":", JsonQuote(header.key_arn),
                                        ",\"encryption_context\":", JsonObject(header.context),
                                        ",\"chunk_size\":", header.chunk_size, "}\n")
                         : FormatFields({{"key_arn", header.key_arn},
                                         {"encryption_context", FormatPairs(header.context)},
                                         {"chunk_size", absl::StrCat(header.chunk_size)}});
  return WriteStdout(text);
}

void AddEncryptFile(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string input;
    std::string output;
    std::vector<std::string> context;
    size_t chunk_size = client::EnvelopeOptions().chunk_size;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "encrypt-file", "Envelope-encrypt a file of any size under a fresh data key",
      [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(StringMap context, ParseKeyValuePairs(args->context, "--context"));
        client::EnvelopeOptions options;
        options.chunk_size = args->chunk_size;
        RecordingDataKeySource source(session.client);
        absl::StatusOr<client::EnvelopeHeader> header =
            client::EncryptFile(source, args->key_id, context, args->input, args->output, options);
        if (!header.ok()) return source.Blame(header.status());
        return EmitEnvelopeHeader(session, *header);
      });
  AddKeyArgument(command, &args->key_id);
  command->add_option("INPUT", args->input, "File to encrypt")->required();
  command->add_option("OUTPUT", args->output, "Envelope file to write (mode 0600)")->required();
  AddContextFlag(command, &args->context);
  command->add_option("--chunk-size", args->chunk_size, "Plaintext bytes per chunk")
      ->check(CLI::Range(client::kMinEnvelopeChunkSize, client::kMaxEnvelopeChunkSize))
      ->capture_default_str();
}

void AddDecryptFile(CommandTable& commands) {
  struct Args {
    std::string input;
    std::string output;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command =
      commands.Add("decrypt-file", "Decrypt and verify an envelope file made by encrypt-file",
                   [args](Session& session) -> absl::Status {
                     RecordingDataKeySource source(session.client);
                     absl::StatusOr<client::EnvelopeHeader> header =
                         client::DecryptFile(source, args->input, args->output);
                     if (!header.ok()) return source.Blame(header.status());
                     return EmitEnvelopeHeader(session, *header);
                   });
  command->add_option("INPUT", args->input, "Envelope file")->required();
  command->add_option("OUTPUT", args->output, "Plaintext file to write (mode 0600)")->required();
}

void AddEnvelopeInfo(CommandTable& commands) {
  auto path = std::make_shared<std::string>();
  CLI::App* command = commands.Add(
      "envelope-info", "Show an envelope file's header (not verified; no call to kmsd)",
      [path](Session& session) -> absl::Status {
        absl::StatusOr<client::EnvelopeHeader> header = client::ReadEnvelopeHeader(*path);
        if (!header.ok()) return AsLocalFailure(header.status());
        return EmitEnvelopeHeader(session, *header);
      });
  command->add_option("FILE", *path, "Envelope file")->required();
}

// ---------------------------------------------------------------- main

void AddCommands(CommandTable& commands) {
  AddCreateKey(commands);
  AddDescribeKey(commands);
  AddListKeys(commands);
  AddKeyOnlyCommand(commands, "enable-key", "Enable a disabled key", &KmsClient::EnableKey);
  AddKeyOnlyCommand(commands, "disable-key", "Disable a key: data-plane calls fail",
                    &KmsClient::DisableKey);
  AddUpdateKeyDescription(commands);
  AddScheduleKeyDeletion(commands);
  AddCancelKeyDeletion(commands);
  AddEnableKeyRotation(commands);
  AddKeyOnlyCommand(commands, "disable-key-rotation", "Stop rotating a key's material",
                    &KmsClient::DisableKeyRotation);
  AddGetKeyRotationStatus(commands);
  AddRotateKeyOnDemand(commands);
  AddListKeyRotations(commands);
  AddRotationComplianceReport(commands);
  AddAliasTargetCommand(commands, "create-alias", "Name a key with a new alias",
                        &KmsClient::CreateAlias);
  AddAliasTargetCommand(commands, "update-alias", "Point an alias at another key",
                        &KmsClient::UpdateAlias);
  AddDeleteAlias(commands);
  AddListAliases(commands);
  AddTagResource(commands);
  AddUntagResource(commands);
  AddListResourceTags(commands);
  AddEncrypt(commands);
  AddDecrypt(commands);
  AddReEncrypt(commands);
  AddGenerateDataKey(commands);
  AddGenerateDataKeyWithoutPlaintext(commands);
  AddGenerateRandom(commands);
  AddEncryptFile(commands);
  AddDecryptFile(commands);
  AddEnvelopeInfo(commands);
}

void AddGlobalFlags(CLI::App& app, GlobalFlags& flags) {
  app.add_option("--endpoint", flags.endpoint, "kmsd address, HOST:PORT")
      ->envname(kEndpointEnv)
      ->capture_default_str();
  app.add_flag("--json", flags.json,
               "Print one JSON object per command (API field names, bytes in base64)");
  app.add_option("--timeout", flags.timeout_seconds, "Seconds to wait for each call to kmsd")
      ->check(
          [](const std::string& text) -> std::string {
            double seconds = 0;
            if (absl::SimpleAtod(text, &seconds) && seconds > 0 && seconds < 1e9) return "";
            return "must be a positive number of seconds, got " + text;
          },
          "SECONDS")
      ->capture_default_str();
}

// Prints a usage error with a pointer to the right help, and gives exit 2.
int UsageFailure(const CLI::App& app, const std::string& message) {
  std::vector<CLI::App*> selected = app.get_subcommands();
  std::string help =
      selected.empty() ? "kmsctl --help" : "kmsctl " + selected.front()->get_name() + " --help";
  fprintf(stderr, "kmsctl: %s (see %s)\n", message.c_str(), help.c_str());
  return kExitUsage;
}

// Runs the selected command and reports its outcome.
int Run(const GlobalFlags& flags, const CLI::App& app, const Runner& run) {
  client::ClientOptions options;
  options.timeout = absl::Seconds(flags.timeout_seconds);
  absl::Status status;
  absl::StatusOr<std::unique_ptr<KmsClient>> client = KmsClient::Connect(flags.endpoint, options);
  if (client.ok()) {
    Session session{**client, flags.json};
    status = run(session);
  } else {
    status = UsageError(client.status().message());
  }
  if (status.ok()) return kExitOk;
  ExitCode code = ExitCodeFor(status);
  if (code == kExitUsage) return UsageFailure(app, std::string(status.message()));
  fprintf(stderr, "%s\n", ErrorLine(status, flags.endpoint).c_str());
  return code;
}

int Main(int argc, char** argv) {
  CLI::App app("kmsctl: command-line client of kmsd, the on-prem key management daemon", "kmsctl");
  app.require_subcommand(0, 1);  // none is reported below, more clearly than CLI11 does
  app.fallthrough();             // global flags may follow the command
  app.footer(kExitCodeHelp);
  GlobalFlags flags;
  AddGlobalFlags(app, flags);
  CommandTable commands(app);
  AddCommands(commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e);  // --help
    }
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr && app.get_subcommands().empty() &&
        !app.remaining().empty()) {
      return UsageFailure(app, "unknown command '" + app.remaining().front() + "'");
    }
    return UsageFailure(app, e.what());
  }
  if (app.get_subcommands().empty()) return UsageFailure(app, "a command is required");
  return Run(flags, app, commands.Selected());
}

}  // namespace
}  // namespace kms::kmsctl

int main(int argc, char** argv) { return kms::kmsctl::Main(argc, argv); }
