// kmsctl: the command-line client of kmsd. One subcommand per RPC of
// kms/v1/kms.proto, named as the AWS CLI names it (describe-key,
// generate-data-key, ...; kmsd's own GetRotationComplianceReport is
// rotation-compliance-report), plus encrypt-file / decrypt-file /
// envelope-info for envelope-encrypted files (client/envelope.h), and
// generate-key-material / key-check-value for key material to import
// (client/key_material.h), which work on local files only and never call
// kmsd. The AuditService's RPCs are the `audit` group (audit query, audit
// export, audit public-key; a command group is a subcommand whose commands
// are added with CommandTable::Add(group, ...)) and key-inventory. `audit
// verify` checks an exported log and its checkpoint signatures offline with
// the daemon's own format code (daemon/audit/audit_record.h); it is a local
// command (CommandTable::AddLocal), for which kmsctl makes no client at all.
// list-grants, audit query and audit export follow every page. Besides bench
// (below), two commands make more than one kind of RPC: describe-key, which
// without --json also lists the key's versions (ListKeyRotations), and
// import-key-material, which gets a wrapping key (GetParametersForImport,
// again for each algorithm kmsd does not support if --wrapping-algorithm is
// auto), wraps the material locally and imports it (ImportKeyMaterial).
// bench (client/bench.h) measures kmsd with channels of its own, against
// --endpoint or against a kmsd it starts (client/local_kmsd.h).
//
// Exit codes (also printed by `kmsctl --help`; see kmsctl_support.h):
//   0  success
//   1  kmsd returned an error; stderr: "kmsctl: <ExceptionName>: <message>";
//      for audit verify, which calls no kmsd: the log failed verification
//   2  usage error: bad flags or arguments, caught before any RPC
//   3  kmsd unreachable, or no answer within --timeout
//   4  local failure: file I/O, an envelope file that fails verification,
//      key material that fails a local check (size, key check value), or a
//      public key that is not ECDSA P-256
//
// Each command is registered by an Add* function below, which declares its
// flags and a runner. Runners check every argument first (usage errors), then
// read input files, then call kmsd, so a usage error never reaches kmsd.
// CLI11 reports its own parse errors by throwing; main() catches them and
// turns them into exit code 2. Nothing else here throws.
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/bench.h"
#include "client/data_key_source.h"
#include "client/envelope.h"
#include "client/key_material.h"
#include "client/kms_client.h"
#include "client/kmsctl_output.h"
#include "client/kmsctl_support.h"
#include "client/local_kmsd.h"
#include "daemon/audit/audit_record.h"
#include "daemon/common/errors.h"
#include "daemon/common/secret_bytes.h"
#include "daemon/common/status_macros.h"
#include "proto/grant_operation_names.h"

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
  // mTLS (all three, or none for plaintext); default from KMSCTL_CA,
  // KMSCTL_CERT, KMSCTL_KEY.
  std::string ca_file, cert_file, key_file;
};

// What a command's runner works with.
struct Session {
  KmsClient& client;
  bool json;
  const GlobalFlags* flags;  // for commands that make their own channels (bench)
};

using Runner = std::function<absl::Status(Session&)>;

// What a command that never calls kmsd works with: no client, so it needs no
// endpoint or TLS files and cannot connect by mistake (audit verify).
struct LocalSession {
  bool json;
};

using LocalRunner = std::function<absl::Status(const LocalSession&)>;

// The subcommands and their runners.
class CommandTable {
 public:
  explicit CommandTable(CLI::App& app) : app_(app) {}

  CLI::App* Add(const std::string& name, const std::string& description, Runner run) {
    return Add(&app_, name, description, std::move(run));
  }

  // A command group ("audit"): a subcommand that holds subcommands and runs
  // none itself. Its commands are added with the Add below.
  CLI::App* AddGroup(const std::string& name, const std::string& description) {
    CLI::App* group = app_.add_subcommand(name, description);
    group->require_subcommand(1);
    group->fallthrough();  // global flags may follow the group's command too
    return group;
  }

  // A command in `group` (from AddGroup): `kmsctl GROUP NAME ...`.
  CLI::App* Add(CLI::App* group, const std::string& name, const std::string& description,
                Runner run) {
    CLI::App* command = group->add_subcommand(name, description);
    runners_[command] = std::move(run);
    return command;
  }

  // A command in `group` that works on local files only: Run() makes no
  // client for it and ignores --endpoint and the TLS flags.
  CLI::App* AddLocal(CLI::App* group, const std::string& name, const std::string& description,
                     LocalRunner run) {
    CLI::App* command = group->add_subcommand(name, description);
    local_runners_[command] = std::move(run);
    return command;
  }

  // The runner of the command on the command line, if it calls kmsd; nullptr
  // for a local command. Call after a successful parse (which requires
  // exactly one command, and one in a group).
  const Runner* Selected() const { return Find(runners_); }
  // The runner of the local command on the command line; nullptr if the
  // command calls kmsd.
  const LocalRunner* SelectedLocal() const { return Find(local_runners_); }

  // The innermost subcommand on the command line; nullptr if none.
  static const CLI::App* SelectedCommand(const CLI::App& app) {
    const CLI::App* selected = nullptr;
    for (const CLI::App* level = &app; !level->get_subcommands().empty();) {
      selected = level = level->get_subcommands().front();
    }
    return selected;
  }

 private:
  template <typename R>
  const R* Find(const std::map<const CLI::App*, R>& runners) const {
    auto it = runners.find(SelectedCommand(app_));
    return it == runners.end() ? nullptr : &it->second;
  }

  CLI::App& app_;
  std::map<const CLI::App*, Runner> runners_;
  std::map<const CLI::App*, LocalRunner> local_runners_;
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

// The key named by --key-id (the access and audit commands, as the AWS CLI
// names it).
CLI::Option* AddKeyIdFlag(CLI::App* command, std::string* key_id) {
  return command->add_option("--key-id", *key_id, "Key id, alias name (alias/...) or key ARN")
      ->type_name("KEY");
}

absl::Status RequireAtMostOne(const CLI::Option* a, const CLI::Option* b) {
  if (a->count() > 0 && b->count() > 0) {
    return UsageError(absl::StrCat("give at most one of ", a->get_name(), " and ", b->get_name()));
  }
  return absl::OkStatus();
}

// A key policy given as text or as a file, and the lockout check switch.
struct PolicyInput {
  std::string text;
  std::string file;
  bool bypass_lockout_check = false;
  CLI::Option* text_flag = nullptr;
  CLI::Option* file_flag = nullptr;

  void AddFlags(CLI::App* command) {
    text_flag =
        command->add_option("--policy", text, "The key policy, a JSON document")->type_name("JSON");
    file_flag = command
                    ->add_option("--policy-file", file,
                                 "File holding the key policy ('-': stdin), sent byte for byte")
                    ->type_name("FILE");
    command->add_flag("--bypass-policy-lockout-safety-check", bypass_lockout_check,
                      "Let kmsd accept a policy that would stop you from changing it again");
  }

  bool Given() const { return text_flag->count() > 0 || file_flag->count() > 0; }

  // Usage errors (which flag), then reading the file. The document goes to
  // kmsd exactly as given; kmsd checks it.
  absl::StatusOr<std::string> Read(bool required) const {
    if (required) {
      KMS_RETURN_IF_ERROR(RequireExactlyOne(text_flag, file_flag));
    } else {
      KMS_RETURN_IF_ERROR(RequireAtMostOne(text_flag, file_flag));
    }
    if (text_flag->count() > 0) return text;
    if (file_flag->count() > 0) return ReadInputFile(file);
    return std::string();
  }
};

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
      v1::DataKeySpec spec = v1::DATA_KEY_SPEC_UNSPECIFIED;
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
    PolicyInput policy;
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
        v1::OriginType origin = v1::ORIGIN_TYPE_UNSPECIFIED;
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
        // Empty without a flag: kmsd's default policy.
        KMS_ASSIGN_OR_RETURN(*request.mutable_policy(), args->policy.Read(/*required=*/false));
        request.set_bypass_policy_lockout_safety_check(args->policy.bypass_lockout_check);
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
  args->policy.AddFlags(command);
  command->footer(
      "At most one of --policy and --policy-file; without either the key gets kmsd's default\n"
      "policy, which lets the creating principal manage the key and nobody use it.\n");
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
        list.set_include_key_material(v1::ALL_KEY_MATERIAL);
        absl::StatusOr<v1::ListKeyRotationsResponse> rotations =
            FetchPages<v1::ListKeyRotationsRequest, v1::ListKeyRotationsResponse>(
                list, /*all=*/true, [&](const v1::ListKeyRotationsRequest& r) {
                  return session.client.ListKeyRotations(r);
                });
        std::string text = FormatFields(KeyMetadataFields(metadata));
        if (rotations.ok()) {
          absl::StrAppend(&text, FormatKeyVersions(metadata, {rotations->rotations().begin(),
                                                              rotations->rotations().end()}));
        } else if (absl::IsPermissionDenied(rotations.status())) {
          // A caller may describe a key (a grant can give just that)
          // without being allowed kms:ListKeyRotations: what it asked for
          // is there, so this is not a failure.
          absl::StrAppend(&text, "(versions not shown: not allowed kms:ListKeyRotations)\n");
          return WriteStdout(text);
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
    bool all_key_material = false;
    PageFlags pages;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "list-key-rotations",
      "List a key's rotations, oldest first (its original material too with "
      "--all-key-material)",
      [args](Session& session) -> absl::Status {
        v1::ListKeyRotationsRequest request;
        request.set_key_id(args->key_id);
        if (args->all_key_material) request.set_include_key_material(v1::ALL_KEY_MATERIAL);
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
  command->add_flag("--all-key-material", args->all_key_material,
                    "Also list the key's original material (type ORIGINAL)");
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

// ---------------------------------------------------------------- access

void AddPutKeyPolicy(CommandTable& commands) {
  struct Args {
    std::string key_id;
    PolicyInput policy;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "put-key-policy", "Replace a key's policy", [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(std::string policy, args->policy.Read(/*required=*/true));
        v1::PutKeyPolicyRequest request;
        request.set_key_id(args->key_id);
        request.set_policy(std::move(policy));
        request.set_bypass_policy_lockout_safety_check(args->policy.bypass_lockout_check);
        KMS_ASSIGN_OR_RETURN(v1::PutKeyPolicyResponse response,
                             session.client.PutKeyPolicy(request));
        return EmitJsonOnly(session, response);
      });
  AddKeyIdFlag(command, &args->key_id)->required();
  args->policy.AddFlags(command);
  command->footer(
      "Give exactly one of --policy and --policy-file. kmsd refuses a policy that would\n"
      "lock the caller out of PutKeyPolicy unless --bypass-policy-lockout-safety-check.\n");
}

void AddGetKeyPolicy(CommandTable& commands) {
  auto key_id = std::make_shared<std::string>();
  CLI::App* command = commands.Add(
      "get-key-policy", "Print a key's policy exactly as stored",
      [key_id](Session& session) -> absl::Status {
        v1::GetKeyPolicyRequest request;
        request.set_key_id(*key_id);
        KMS_ASSIGN_OR_RETURN(v1::GetKeyPolicyResponse response,
                             session.client.GetKeyPolicy(request));
        // Byte for byte, so the output can be edited and put back as is.
        return Emit(session, response, [&] { return absl::StrCat(response.policy(), "\n"); });
      });
  AddKeyIdFlag(command, key_id.get())->required();
}

// The AWS names of `operations`, joined by ",".
std::string GrantOperationList(const google::protobuf::RepeatedField<int>& operations) {
  std::vector<std::string> names;
  for (int operation : operations) {
    names.push_back(GrantOperationAwsName(static_cast<v1::GrantOperation>(operation)));
  }
  return names.empty() ? "-" : absl::StrJoin(names, ",");
}

// "equals:k=v,k2=v2", "subset:k=v" or "-".
std::string GrantConstraintsText(const v1::GrantConstraints& constraints) {
  auto join = [](const google::protobuf::Map<std::string, std::string>& map) {
    StringMap sorted(map.begin(), map.end());
    return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
  };
  std::vector<std::string> parts;
  if (!constraints.encryption_context_equals().empty()) {
    parts.push_back(absl::StrCat("equals:", join(constraints.encryption_context_equals())));
  }
  if (!constraints.encryption_context_subset().empty()) {
    parts.push_back(absl::StrCat("subset:", join(constraints.encryption_context_subset())));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, " ");
}

void AddCreateGrant(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string grantee_principal;
    std::vector<std::string> operations;
    std::string retiring_principal;
    std::string name;
    std::vector<std::string> context_equals;
    std::vector<std::string> context_subset;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "create-grant", "Let a principal use a key for some operations",
      [args](Session& session) -> absl::Status {
        v1::CreateGrantRequest request;
        request.set_key_id(args->key_id);
        request.set_grantee_principal(args->grantee_principal);
        std::vector<v1::GrantOperation> seen;
        for (const std::string& name : args->operations) {
          std::optional<v1::GrantOperation> operation = api::GrantOperationFromName(name);
          if (!operation.has_value()) {
            return UsageError(
                absl::StrCat("--operations: unknown operation '", name,
                             "'; valid (case-sensitive): ", GrantOperationAwsNames()));
          }
          // Once each, in the order given.
          if (std::find(seen.begin(), seen.end(), *operation) != seen.end()) continue;
          seen.push_back(*operation);
          request.add_operations(*operation);
        }
        if (request.operations().empty()) {
          return UsageError(
              absl::StrCat("--operations needs at least one of: ", GrantOperationAwsNames()));
        }
        if (!args->context_equals.empty() && !args->context_subset.empty()) {
          return UsageError(
              "give at most one of --encryption-context-equals and "
              "--encryption-context-subset");
        }
        KMS_ASSIGN_OR_RETURN(StringMap equals, ParseKeyValuePairs(args->context_equals,
                                                                  "--encryption-context-equals"));
        KMS_ASSIGN_OR_RETURN(StringMap subset, ParseKeyValuePairs(args->context_subset,
                                                                  "--encryption-context-subset"));
        if (!equals.empty()) {
          CopyPairs(equals, request.mutable_constraints()->mutable_encryption_context_equals());
        }
        if (!subset.empty()) {
          CopyPairs(subset, request.mutable_constraints()->mutable_encryption_context_subset());
        }
        request.set_retiring_principal(args->retiring_principal);
        request.set_name(args->name);
        KMS_ASSIGN_OR_RETURN(v1::CreateGrantResponse response, session.client.CreateGrant(request));
        return Emit(session, response, [&] {
          return FormatFields(
              {{"grant_id", response.grant_id()}, {"grant_token", response.grant_token()}});
        });
      });
  AddKeyIdFlag(command, &args->key_id)->required();
  command
      ->add_option("--grantee-principal", args->grantee_principal,
                   "The principal the grant lets use the key (exact, no patterns)")
      ->type_name("PRINCIPAL")
      ->required();
  command
      ->add_option("--operations", args->operations,
                   "Operations allowed, comma-separated AWS names: Decrypt, Encrypt, "
                   "GenerateDataKey, GenerateDataKeyWithoutPlaintext, ReEncryptFrom, "
                   "ReEncryptTo, CreateGrant, RetireGrant, DescribeKey")
      ->type_name("OP,...")
      ->delimiter(',')
      ->required();
  command
      ->add_option("--retiring-principal", args->retiring_principal,
                   "A principal who may also retire the grant")
      ->type_name("PRINCIPAL");
  command->add_option("--name", args->name, "A name for the grant, [a-zA-Z0-9:/_-]{1,256}");
  AddContextFlag(command, &args->context_equals, "--encryption-context-equals",
                 "Allow only requests whose encryption context is exactly these pairs:");
  AddContextFlag(command, &args->context_subset, "--encryption-context-subset",
                 "Allow only requests whose encryption context includes these pairs:");
  command->footer(
      "Prints the grant id and the grant token. At most one kind of constraint:\n"
      "--encryption-context-equals or --encryption-context-subset.\n");
}

void AddListGrants(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string grantee_principal;
    std::string grant_id;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "list-grants", "List a key's grants (every page)", [args](Session& session) -> absl::Status {
        v1::ListGrantsRequest request;
        request.set_key_id(args->key_id);
        request.set_grantee_principal(args->grantee_principal);
        request.set_grant_id(args->grant_id);
        KMS_ASSIGN_OR_RETURN(v1::ListGrantsResponse response,
                             (FetchPages<v1::ListGrantsRequest, v1::ListGrantsResponse>(
                                 request, /*all=*/true, [&](const v1::ListGrantsRequest& r) {
                                   return session.client.ListGrants(r);
                                 })));
        return Emit(session, response, [&] {
          std::vector<std::vector<std::string>> rows;
          auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
          for (const v1::GrantListEntry& grant : response.grants()) {
            rows.push_back({grant.grant_id(), or_dash(grant.name()), grant.grantee_principal(),
                            GrantOperationList(grant.operations()),
                            GrantConstraintsText(grant.constraints()),
                            or_dash(grant.retiring_principal()), or_dash(grant.issuing_principal()),
                            FormatTimestamp(grant.creation_date(), grant.has_creation_date())});
          }
          return FormatTable({"GRANT_ID", "NAME", "GRANTEE_PRINCIPAL", "OPERATIONS", "CONSTRAINTS",
                              "RETIRING_PRINCIPAL", "ISSUING_PRINCIPAL", "CREATION_DATE"},
                             rows);
        });
      });
  AddKeyIdFlag(command, &args->key_id)->required();
  command
      ->add_option("--grantee-principal", args->grantee_principal,
                   "Only the grants to this principal")
      ->type_name("PRINCIPAL");
  command->add_option("--grant-id", args->grant_id, "Only this grant");
}

void AddRetireGrant(CommandTable& commands) {
  struct Args {
    std::string grant_token;
    std::string key_id;
    std::string grant_id;
    CLI::Option* token_flag = nullptr;
    CLI::Option* key_flag = nullptr;
    CLI::Option* grant_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "retire-grant", "Retire a grant you are the grantee or retiring principal of",
      [args](Session& session) -> absl::Status {
        const bool by_token = args->token_flag->count() > 0;
        const bool by_id = args->key_flag->count() > 0 || args->grant_flag->count() > 0;
        if (by_token == by_id) {
          return UsageError("give either --grant-token, or --key-id with --grant-id");
        }
        if (by_id && (args->key_flag->count() == 0 || args->grant_flag->count() == 0)) {
          return UsageError("--key-id and --grant-id go together");
        }
        v1::RetireGrantRequest request;
        request.set_grant_token(args->grant_token);
        request.set_key_id(args->key_id);
        request.set_grant_id(args->grant_id);
        KMS_ASSIGN_OR_RETURN(v1::RetireGrantResponse response, session.client.RetireGrant(request));
        return EmitJsonOnly(session, response);
      });
  args->token_flag =
      command->add_option("--grant-token", args->grant_token, "The token create-grant printed")
          ->type_name("TOKEN");
  args->key_flag = AddKeyIdFlag(command, &args->key_id);
  args->grant_flag = command->add_option("--grant-id", args->grant_id, "With --key-id: the grant");
}

void AddRevokeGrant(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string grant_id;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add("revoke-grant", "Revoke a grant of a key you manage",
                                   [args](Session& session) -> absl::Status {
                                     v1::RevokeGrantRequest request;
                                     request.set_key_id(args->key_id);
                                     request.set_grant_id(args->grant_id);
                                     KMS_ASSIGN_OR_RETURN(v1::RevokeGrantResponse response,
                                                          session.client.RevokeGrant(request));
                                     return EmitJsonOnly(session, response);
                                   });
  AddKeyIdFlag(command, &args->key_id)->required();
  command->add_option("--grant-id", args->grant_id, "The grant to revoke")->required();
}

// ---------------------------------------------------------------- import

constexpr char kAutoWrappingAlgorithm[] = "auto";
constexpr char kDefaultWrappingKeySpec[] = "RSA_3072";
constexpr int kMaxKeyComponents = 16;

// What --wrapping-algorithm auto tries, strongest first; the next only when
// kmsd (its HSM) does not support the previous one.
constexpr v1::AlgorithmSpec kAutoWrappingOrder[] = {
    v1::RSA_AES_KEY_WRAP_SHA_256,
    v1::RSAES_OAEP_SHA_256,
    v1::RSA_AES_KEY_WRAP_SHA_1,
    v1::RSAES_OAEP_SHA_1,
};

const std::vector<std::string> kWrappingAlgorithmNames = {
    "RSA_AES_KEY_WRAP_SHA_256", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSAES_OAEP_SHA_1"};
const std::vector<std::string> kWrappingKeySpecNames = {"RSA_2048", "RSA_3072", "RSA_4096"};

v1::AlgorithmSpec ParseAlgorithmSpec(const std::string& name) {
  v1::AlgorithmSpec spec = v1::ALGORITHM_SPEC_UNSPECIFIED;
  v1::AlgorithmSpec_Parse(name, &spec);  // IsMember checked the name
  return spec;
}

v1::WrappingKeySpec ParseWrappingKeySpec(const std::string& name) {
  v1::WrappingKeySpec spec = v1::WRAPPING_KEY_SPEC_UNSPECIFIED;
  v1::WrappingKeySpec_Parse(name, &spec);  // IsMember checked the name
  return spec;
}

// A KCV given on the command line.
absl::StatusOr<std::string> ParseKcvArgument(const std::string& text, absl::string_view flag) {
  absl::StatusOr<std::string> kcv = client::ParseKeyCheckValue(text);
  if (!kcv.ok()) return UsageError(absl::StrCat(flag, ": ", kcv.status().message()));
  return kcv;
}

// The KCV of each key material file, and of their XOR.
struct MaterialFiles {
  std::vector<std::vector<std::string>> kcvs;  // rows {file, kcv}, in order
  SecretBytes material;                        // the one file, or the XOR of all
  std::string kcv;                             // of `material`
};

// Reads `paths` (each exactly 32 bytes) and computes their KCVs. Errors are
// local failures (exit 4): a file that cannot be read or has the wrong size.
absl::StatusOr<MaterialFiles> LoadMaterialFiles(const std::vector<std::string>& paths) {
  MaterialFiles files;
  std::vector<SecretBytes> parts;
  for (const std::string& path : paths) {
    absl::StatusOr<SecretBytes> part = client::ReadKeyMaterialFile(path);
    if (!part.ok()) return AsLocalFailure(part.status());
    absl::StatusOr<std::string> kcv = client::KeyCheckValue(*part);
    if (!kcv.ok()) return AsLocalFailure(kcv.status());
    files.kcvs.push_back({path, *kcv});
    parts.push_back(*std::move(part));
  }
  if (parts.size() == 1) {
    files.material = std::move(parts.front());
    files.kcv = files.kcvs.front()[1];
    return files;
  }
  absl::StatusOr<SecretBytes> combined = client::CombineKeyComponents(parts);
  if (!combined.ok()) return AsLocalFailure(combined.status());
  files.material = *std::move(combined);
  absl::StatusOr<std::string> kcv = client::KeyCheckValue(files.material);
  if (!kcv.ok()) return AsLocalFailure(kcv.status());
  files.kcv = *kcv;
  return files;
}

// People's view of KCVs: a FILE / KCV table, then the combined KCV if
// `combined` is not empty.
std::string FormatKcvTable(const std::vector<std::vector<std::string>>& rows,
                           const std::string& combined) {
  std::string text = FormatTable({"FILE", "KCV"}, rows);
  if (!combined.empty()) absl::StrAppend(&text, FormatFields({{"combined_kcv", combined}}));
  return text;
}

// Prints KCVs: FormatKcvTable, or with --json
// {"files":[{"file":..,"key_check_value":..},...],"combined_key_check_value":..}
// (the last only when `combined` is not empty).
absl::Status EmitKcvs(const Session& session, const std::vector<std::vector<std::string>>& rows,
                      const std::string& combined) {
  if (!session.json) return WriteStdout(FormatKcvTable(rows, combined));
  std::string json = "{\"files\":[";
  for (size_t i = 0; i < rows.size(); ++i) {
    absl::StrAppend(&json, i == 0 ? "" : ",", "{\"file\":", JsonQuote(rows[i][0]),
                    ",\"key_check_value\":", JsonQuote(rows[i][1]), "}");
  }
  absl::StrAppend(&json, "]");
  if (!combined.empty()) {
    absl::StrAppend(&json, ",\"combined_key_check_value\":", JsonQuote(combined));
  }
  absl::StrAppend(&json, "}\n");
  return WriteStdout(json);
}

void AddGetParametersForImport(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string wrapping_algorithm;
    std::string wrapping_key_spec = kDefaultWrappingKeySpec;
    std::string public_key_out;
    std::string import_token_out;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "get-parameters-for-import",
      "Get a wrapping public key and import token, to wrap key material yourself (e.g. with "
      "openssl) for import-key-material --import-token/--encrypted-key-material",
      [args](Session& session) -> absl::Status {
        v1::GetParametersForImportRequest request;
        request.set_key_id(args->key_id);
        request.set_wrapping_algorithm(ParseAlgorithmSpec(args->wrapping_algorithm));
        request.set_wrapping_key_spec(ParseWrappingKeySpec(args->wrapping_key_spec));
        KMS_ASSIGN_OR_RETURN(v1::GetParametersForImportResponse response,
                             session.client.GetParametersForImport(request));
        // Neither is secret: the public key is public, and the token is
        // useless without the private key that stays in kmsd's HSM.
        KMS_RETURN_IF_ERROR(
            WriteOutputFile(args->public_key_out, response.public_key(), FileMode::kPublic));
        KMS_RETURN_IF_ERROR(
            WriteOutputFile(args->import_token_out, response.import_token(), FileMode::kPublic));
        return Emit(session, response, [&] {
          return FormatFields({
              {"key_id", response.key_id()},
              {"wrapping_algorithm", args->wrapping_algorithm},
              {"wrapping_key_spec", args->wrapping_key_spec},
              {"public_key_file", args->public_key_out},
              {"import_token_file", args->import_token_out},
              {"parameters_valid_to",
               FormatTimestamp(response.parameters_valid_to(), response.has_parameters_valid_to())},
          });
        });
      });
  AddKeyArgument(command, &args->key_id);
  command
      ->add_option("--wrapping-algorithm", args->wrapping_algorithm,
                   "How you will wrap the material (see import-key-material --help)")
      ->check(CLI::IsMember(kWrappingAlgorithmNames))
      ->required();
  command->add_option("--wrapping-key-spec", args->wrapping_key_spec, "RSA wrapping key size")
      ->check(CLI::IsMember(kWrappingKeySpecNames))
      ->capture_default_str();
  command
      ->add_option("--public-key-out", args->public_key_out,
                   "Write the wrapping public key (DER SubjectPublicKeyInfo) here")
      ->type_name("FILE")
      ->required();
  command
      ->add_option("--import-token-out", args->import_token_out,
                   "Write the raw import token here (single use; expires at "
                   "parameters_valid_to)")
      ->type_name("FILE")
      ->required();
}

void AddImportKeyMaterial(CommandTable& commands) {
  struct Args {
    std::string key_id;
    std::string material;
    std::vector<std::string> components;
    std::vector<std::string> component_kcvs;
    std::string expected_kcv;
    std::string import_token;
    std::string encrypted_key_material;
    std::string wrapping_algorithm = kAutoWrappingAlgorithm;
    std::string wrapping_key_spec = kDefaultWrappingKeySpec;
    std::string valid_to;
    int32_t valid_for_days = 0;
    bool new_material = false;
    std::string key_material_id;
    bool allow_duplicate_material = false;
    CLI::Option* material_flag = nullptr;
    CLI::Option* component_flag = nullptr;
    CLI::Option* component_kcv_flag = nullptr;
    CLI::Option* expected_kcv_flag = nullptr;
    CLI::Option* import_token_flag = nullptr;
    CLI::Option* encrypted_flag = nullptr;
    CLI::Option* wrapping_algorithm_flag = nullptr;
    CLI::Option* wrapping_key_spec_flag = nullptr;
    CLI::Option* valid_to_flag = nullptr;
    CLI::Option* valid_for_days_flag = nullptr;
    CLI::Option* key_material_id_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "import-key-material",
      "Import key material into a key of origin EXTERNAL: kmsctl wraps it for kmsd's HSM",
      [args](Session& session) -> absl::Status {
        // Usage first: nothing is read and nothing is sent before these.
        const bool from_material = args->material_flag->count() > 0;
        const bool from_components = args->component_flag->count() > 0;
        const bool prewrapped =
            args->import_token_flag->count() > 0 || args->encrypted_flag->count() > 0;
        if (from_material + from_components + prewrapped != 1) {
          return UsageError(
              "give exactly one of --material, --component (repeated), and --import-token with "
              "--encrypted-key-material");
        }
        if (prewrapped &&
            (args->import_token_flag->count() == 0 || args->encrypted_flag->count() == 0)) {
          return UsageError("--import-token and --encrypted-key-material go together");
        }
        if (from_components &&
            (args->components.size() < 2 || args->components.size() > kMaxKeyComponents)) {
          return UsageError(absl::StrCat("--component needs 2 to ", kMaxKeyComponents,
                                         " component files, got ", args->components.size()));
        }
        std::vector<std::string> component_kcvs;
        if (args->component_kcv_flag->count() > 0) {
          if (!from_components) return UsageError("--component-kcv needs --component");
          if (args->component_kcvs.size() != args->components.size()) {
            return UsageError(absl::StrCat(
                "give one --component-kcv per --component, in the same order: got ",
                args->component_kcvs.size(), " for ", args->components.size(), " components"));
          }
          for (const std::string& text : args->component_kcvs) {
            KMS_ASSIGN_OR_RETURN(std::string kcv, ParseKcvArgument(text, "--component-kcv"));
            component_kcvs.push_back(kcv);
          }
        }
        std::string expected_kcv;
        if (args->expected_kcv_flag->count() > 0) {
          KMS_ASSIGN_OR_RETURN(expected_kcv,
                               ParseKcvArgument(args->expected_kcv, "--expected-kcv"));
        }
        if (prewrapped && (args->wrapping_algorithm_flag->count() > 0 ||
                           args->wrapping_key_spec_flag->count() > 0)) {
          return UsageError(
              "--wrapping-algorithm and --wrapping-key-spec do not apply to pre-wrapped material "
              "(the import token fixes them)");
        }
        if (args->key_material_id_flag->count() > 0 && args->new_material) {
          return UsageError(
              "--key-material-id names existing material to re-import; it does not go with "
              "--new-material");
        }
        v1::ImportKeyMaterialRequest request;
        request.set_key_id(args->key_id);
        if (args->valid_to_flag->count() > 0 && args->valid_for_days_flag->count() > 0) {
          return UsageError("give at most one of --valid-to and --valid-for-days");
        }
        if (args->valid_to_flag->count() > 0 || args->valid_for_days_flag->count() > 0) {
          absl::Time valid_to;
          if (args->valid_to_flag->count() > 0) {
            std::string error;
            if (!absl::ParseTime(absl::RFC3339_full, args->valid_to, &valid_to, &error)) {
              return UsageError(absl::StrCat(
                  "--valid-to must be an RFC 3339 time such as 2027-01-15T08:00:00Z, got '",
                  args->valid_to, "'"));
            }
          } else {
            valid_to = absl::Now() + absl::Hours(24) * args->valid_for_days;
          }
          request.set_expiration_model(v1::KEY_MATERIAL_EXPIRES);
          request.mutable_valid_to()->set_seconds(absl::ToUnixSeconds(valid_to));
        } else {
          request.set_expiration_model(v1::KEY_MATERIAL_DOES_NOT_EXPIRE);
        }
        request.set_import_type(args->new_material ? v1::NEW_KEY_MATERIAL
                                                   : v1::EXISTING_KEY_MATERIAL);
        request.set_key_material_id(args->key_material_id);
        request.set_allow_duplicate_key_material(args->allow_duplicate_material);

        std::string used_algorithm = "as the import token says";
        std::string local_kcv;
        if (prewrapped) {
          KMS_ASSIGN_OR_RETURN(*request.mutable_import_token(), ReadInputFile(args->import_token));
          KMS_ASSIGN_OR_RETURN(*request.mutable_encrypted_key_material(),
                               ReadInputFile(args->encrypted_key_material));
          // kmsctl never sees this material; kmsd checks the KCV if given.
          request.set_expected_key_check_value(expected_kcv);
        } else {
          KMS_ASSIGN_OR_RETURN(
              MaterialFiles files,
              LoadMaterialFiles(from_material ? std::vector<std::string>{args->material}
                                              : args->components));
          // The custodians compare their KCVs before anything leaves.
          if (from_components && !session.json) {
            KMS_RETURN_IF_ERROR(WriteStdout(FormatKcvTable(files.kcvs, files.kcv)));
          }
          for (size_t i = 0; i < component_kcvs.size(); ++i) {
            if (!client::SameKeyCheckValue(files.kcvs[i][1], component_kcvs[i])) {
              return AsLocalFailure(absl::FailedPreconditionError(absl::StrCat(
                  "component ", i + 1, " ('", files.kcvs[i][0], "') has key check value ",
                  files.kcvs[i][1], ", expected ", component_kcvs[i], "; nothing was sent")));
            }
          }
          if (!expected_kcv.empty() && !client::SameKeyCheckValue(files.kcv, expected_kcv)) {
            return AsLocalFailure(absl::FailedPreconditionError(
                absl::StrCat("the key material has key check value ", files.kcv, ", expected ",
                             expected_kcv, " (--expected-kcv); nothing was sent")));
          }
          local_kcv = files.kcv;

          std::vector<v1::AlgorithmSpec> algorithms;
          if (args->wrapping_algorithm == kAutoWrappingAlgorithm) {
            algorithms.assign(std::begin(kAutoWrappingOrder), std::end(kAutoWrappingOrder));
          } else {
            algorithms.push_back(ParseAlgorithmSpec(args->wrapping_algorithm));
          }
          v1::GetParametersForImportRequest parameters_request;
          parameters_request.set_key_id(args->key_id);
          parameters_request.set_wrapping_key_spec(ParseWrappingKeySpec(args->wrapping_key_spec));
          absl::StatusOr<v1::GetParametersForImportResponse> parameters;
          v1::AlgorithmSpec algorithm = v1::ALGORITHM_SPEC_UNSPECIFIED;
          for (v1::AlgorithmSpec candidate : algorithms) {
            algorithm = candidate;
            parameters_request.set_wrapping_algorithm(candidate);
            parameters = session.client.GetParametersForImport(parameters_request);
            if (parameters.ok() ||
                ErrorTypeOf(parameters.status()) != error_type::kUnsupportedOperation) {
              break;
            }
          }
          if (!parameters.ok()) return parameters.status();
          absl::StatusOr<std::string> wrapped =
              client::WrapKeyMaterial(parameters->public_key(), algorithm, files.material);
          if (!wrapped.ok()) {
            return InternalError(absl::StrCat("cannot wrap for the public key kmsd returned: ",
                                              wrapped.status().message()));
          }
          used_algorithm = AlgorithmSpecName(algorithm);
          // By the resolved key: an alias could be pointed elsewhere between
          // the two calls.
          if (!parameters->key_id().empty()) request.set_key_id(parameters->key_id());
          request.set_import_token(parameters->import_token());
          request.set_encrypted_key_material(*std::move(wrapped));
          // kmsd proves it unwrapped exactly this material.
          request.set_expected_key_check_value(local_kcv);
        }
        KMS_ASSIGN_OR_RETURN(v1::ImportKeyMaterialResponse response,
                             session.client.ImportKeyMaterial(request));
        if (!local_kcv.empty() && !response.key_check_value().empty() &&
            !client::SameKeyCheckValue(response.key_check_value(), local_kcv)) {
          return InternalError(absl::StrCat("kmsd reports key check value ",
                                            response.key_check_value(), ", but the material's is ",
                                            local_kcv));
        }
        return Emit(session, response, [&] {
          return FormatFields({
              {"key_id", response.key_id()},
              {"key_material_id", response.key_material_id()},
              {"key_check_value",
               response.key_check_value().empty() ? "-" : response.key_check_value()},
              {"wrapping_algorithm", used_algorithm},
              {"expiration_model", ExpirationModelName(request.expiration_model())},
              {"valid_to", FormatTimestamp(request.valid_to(), request.has_valid_to())},
          });
        });
      });
  AddKeyArgument(command, &args->key_id);
  command->footer(
      "Key material is 32 raw bytes (an AES-256 key): from one --material file, or the XOR of\n"
      "2..16 --component files made by generate-key-material --components (a key ceremony:\n"
      "no one custodian holds the key). kmsctl prints each component's key check value\n"
      "(KCV) and checks --component-kcv / --expected-kcv before anything is sent, then gets\n"
      "a wrapping key from kmsd, wraps the material locally, and imports it with its KCV,\n"
      "so kmsd proves it received exactly this material.\n"
      "Material wrapped elsewhere (e.g. with openssl, after get-parameters-for-import):\n"
      "--import-token with --encrypted-key-material, sent as they are.\n"
      "--wrapping-algorithm auto tries RSA_AES_KEY_WRAP_SHA_256, RSAES_OAEP_SHA_256,\n"
      "RSA_AES_KEY_WRAP_SHA_1, RSAES_OAEP_SHA_1, in that order, moving on only when kmsd\n"
      "answers UnsupportedOperationException.\n");
  args->material_flag = command
                            ->add_option("--material", args->material,
                                         "File holding the 32 raw bytes of key material")
                            ->type_name("FILE");
  args->component_flag =
      command
          ->add_option("--component", args->components,
                       "Key component file (32 raw bytes); repeat, 2..16; the material is their "
                       "XOR")
          ->type_name("FILE")
          ->allow_extra_args(false);
  args->component_kcv_flag =
      command
          ->add_option("--component-kcv", args->component_kcvs,
                       "Expected KCV (6 hex digits) of each --component, in order; repeat")
          ->type_name("HEX")
          ->allow_extra_args(false);
  args->expected_kcv_flag =
      command
          ->add_option("--expected-kcv", args->expected_kcv,
                       "Expected KCV (6 hex digits) of the material; with pre-wrapped material "
                       "kmsd checks it")
          ->type_name("HEX");
  args->import_token_flag =
      command
          ->add_option("--import-token", args->import_token,
                       "Pre-wrapped path: import token file from get-parameters-for-import")
          ->type_name("FILE");
  args->encrypted_flag =
      command
          ->add_option("--encrypted-key-material", args->encrypted_key_material,
                       "Pre-wrapped path: the material wrapped for that token's public key")
          ->type_name("FILE");
  std::vector<std::string> algorithm_names = {kAutoWrappingAlgorithm};
  algorithm_names.insert(algorithm_names.end(), kWrappingAlgorithmNames.begin(),
                         kWrappingAlgorithmNames.end());
  args->wrapping_algorithm_flag = command
                                      ->add_option("--wrapping-algorithm", args->wrapping_algorithm,
                                                   "How kmsctl wraps the material for kmsd")
                                      ->check(CLI::IsMember(algorithm_names))
                                      ->capture_default_str();
  args->wrapping_key_spec_flag =
      command->add_option("--wrapping-key-spec", args->wrapping_key_spec, "RSA wrapping key size")
          ->check(CLI::IsMember(kWrappingKeySpecNames))
          ->capture_default_str();
  args->valid_to_flag =
      command
          ->add_option("--valid-to", args->valid_to,
                       "The material expires then (RFC 3339, e.g. 2027-01-15T08:00:00Z; at most "
                       "365 days ahead); default: never")
          ->type_name("TIME");
  args->valid_for_days_flag = command
                                  ->add_option("--valid-for-days", args->valid_for_days,
                                               "The material expires this many days from now")
                                  ->check(CLI::Range(1, 365));
  command->add_flag("--new-material", args->new_material,
                    "Import new material that becomes current (an on-demand rotation); "
                    "default: the key's first or existing material");
  args->key_material_id_flag = command->add_option(
      "--key-material-id", args->key_material_id,
      "Re-import of existing material: the key version to restore (default: the current one)");
  command->add_flag("--allow-duplicate-material", args->allow_duplicate_material,
                    "Accept material that another key already has");
}

void AddGenerateKeyMaterial(CommandTable& commands) {
  struct Args {
    std::string out;
    int components = 0;
    std::string out_prefix;
    CLI::Option* out_flag = nullptr;
    CLI::Option* components_flag = nullptr;
    CLI::Option* out_prefix_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "generate-key-material",
      "Make key material for import with OpenSSL's CSPRNG, as one file or as components "
      "(no call to kmsd)",
      [args](Session& session) -> absl::Status {
        KMS_RETURN_IF_ERROR(RequireExactlyOne(args->out_flag, args->components_flag));
        if ((args->components_flag->count() > 0) != (args->out_prefix_flag->count() > 0)) {
          return UsageError("--components and --out-prefix go together");
        }
        std::vector<std::string> paths;
        if (args->out_flag->count() > 0) {
          paths.push_back(args->out);
        } else {
          for (int i = 1; i <= args->components; ++i) {
            paths.push_back(absl::StrCat(args->out_prefix, ".", i));
          }
        }
        // Refuse before writing anything, rather than leave a partial set.
        for (const std::string& path : paths) {
          struct stat st;
          if (lstat(path.c_str(), &st) == 0) {
            return AsLocalFailure(absl::AlreadyExistsError(
                absl::StrCat("'", path, "' exists; key material files are never overwritten")));
          }
        }
        std::vector<std::vector<std::string>> rows;
        std::vector<SecretBytes> parts;
        std::vector<std::string> written;
        absl::Cleanup remove_partial_set = [&written] {
          for (const std::string& path : written) unlink(path.c_str());
        };
        for (const std::string& path : paths) {
          absl::StatusOr<SecretBytes> material = client::GenerateKeyMaterial();
          if (!material.ok()) return AsLocalFailure(material.status());
          absl::Status status = client::WriteNewKeyMaterialFile(path, *material);
          if (!status.ok()) return AsLocalFailure(status);
          written.push_back(path);
          absl::StatusOr<std::string> kcv = client::KeyCheckValue(*material);
          if (!kcv.ok()) return AsLocalFailure(kcv.status());
          rows.push_back({path, *kcv});
          parts.push_back(*std::move(material));
        }
        std::string combined;
        if (parts.size() > 1) {
          absl::StatusOr<SecretBytes> material = client::CombineKeyComponents(parts);
          if (!material.ok()) return AsLocalFailure(material.status());
          absl::StatusOr<std::string> kcv = client::KeyCheckValue(*material);
          if (!kcv.ok()) return AsLocalFailure(kcv.status());
          combined = *kcv;
        }
        std::move(remove_partial_set).Cancel();
        return EmitKcvs(session, rows, combined);
      });
  args->out_flag =
      command
          ->add_option("--out", args->out,
                       "Write 32 raw bytes of key material to this new file (mode 0600)")
          ->type_name("FILE");
  args->components_flag =
      command
          ->add_option("--components", args->components,
                       "Make this many components instead (2..16), one per custodian; the "
                       "material is their XOR")
          ->check(CLI::Range(2, kMaxKeyComponents));
  args->out_prefix_flag =
      command
          ->add_option("--out-prefix", args->out_prefix,
                       "With --components: write PREFIX.1 .. PREFIX.N, new files, mode 0600")
          ->type_name("PREFIX");
  command->footer(
      "Existing files are never overwritten. Prints each file's key check value (KCV) and,\n"
      "for components, the KCV of the combined material; never the key bytes.\n");
}

void AddKeyCheckValue(CommandTable& commands) {
  auto paths = std::make_shared<std::vector<std::string>>();
  CLI::App* command =
      commands.Add("key-check-value",
                   "Show the key check value of key material files and, for several, of their XOR "
                   "(no call to kmsd)",
                   [paths](Session& session) -> absl::Status {
                     if (paths->size() > kMaxKeyComponents) {
                       return UsageError(absl::StrCat("at most ", kMaxKeyComponents, " files, got ",
                                                      paths->size()));
                     }
                     KMS_ASSIGN_OR_RETURN(MaterialFiles files, LoadMaterialFiles(*paths));
                     return EmitKcvs(session, files.kcvs, paths->size() > 1 ? files.kcv : "");
                   });
  command->add_option("FILE", *paths, "Key material or component file (32 raw bytes)")->required();
  command->footer(
      "The key check value (KCV) is the first 3 bytes of AES-256-ECB(material, 16 zero\n"
      "bytes), in hex, as kmsd reports it: it identifies material without revealing it.\n");
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

// ---------------------------------------------------------------- audit

// The format of a command with --output: --json alone means `json_format`;
// --json with another --output is a contradiction.
absl::StatusOr<std::string> OutputFormat(const Session& session, const CLI::Option* output_flag,
                                         const std::string& output,
                                         const std::string& json_format) {
  if (!session.json) return output;
  if (output_flag->count() > 0 && output != json_format) {
    return UsageError(absl::StrCat("--json asks for ", json_format, " output but --output says ",
                                   output, "; give one of them"));
  }
  return json_format;
}

// An RFC 3339 time given on the command line.
absl::StatusOr<google::protobuf::Timestamp> ParseTimeArgument(const std::string& text,
                                                              absl::string_view flag) {
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error)) {
    return UsageError(absl::StrCat(
        flag, " must be an RFC 3339 time such as 2027-01-15T08:00:00Z, got '", text, "'"));
  }
  google::protobuf::Timestamp timestamp;
  const int64_t seconds = absl::ToUnixSeconds(time);
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  return timestamp;
}

std::string DashIfEmpty(const std::string& text) { return text.empty() ? "-" : text; }

// RFC 3339, or "" when unset (CSV cells).
std::string CsvTime(const google::protobuf::Timestamp& timestamp, bool set) {
  return set ? FormatTimestamp(timestamp, true) : "";
}

const std::vector<std::string> kAuditCsvHeader = {
    "sequence", "time",       "type",         "request_id",     "principal",
    "peer",     "operation",  "key_id",       "key_version_id", "encryption_context",
    "outcome",  "error_type", "hsm_function", "hsm_object_id",  "hsm_result",
    "message"};

std::string AuditCsvRow(const v1::AuditRecord& r) {
  StringMap context(r.encryption_context().begin(), r.encryption_context().end());
  return FormatCsvRow({
      absl::StrCat(r.sequence()),
      CsvTime(r.time(), r.has_time()),
      AuditRecordTypeName(r.type()),
      r.request_id(),
      r.principal(),
      r.peer(),
      r.operation(),
      r.key_id(),
      r.key_version_id(),
      context.empty() ? "" : JsonObject(context),
      r.outcome() == v1::AUDIT_OUTCOME_UNSPECIFIED ? "" : AuditOutcomeName(r.outcome()),
      r.error_type(),
      r.hsm_function(),
      r.hsm_object_id(),
      r.hsm_result(),
      r.message(),
  });
}

// The people's table: one row per record, oldest first, each HSM call
// indented under the call it was made for (matched by request_id, wherever
// it falls in the sequence); HSM calls of no listed call stay in place.
std::string FormatAuditTable(const std::vector<v1::AuditRecord>& records) {
  std::map<std::string, size_t> call_of_request;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].type() != v1::HSM_CALL && !records[i].request_id().empty()) {
      call_of_request.emplace(records[i].request_id(), i);
    }
  }
  std::map<size_t, std::vector<size_t>> hsm_calls_of;
  std::vector<bool> nested(records.size(), false);
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].type() != v1::HSM_CALL) continue;
    auto it = call_of_request.find(records[i].request_id());
    if (records[i].request_id().empty() || it == call_of_request.end()) continue;
    hsm_calls_of[it->second].push_back(i);
    nested[i] = true;
  }
  auto hsm_row = [](const v1::AuditRecord& r, bool under_call) -> std::vector<std::string> {
    return {absl::StrCat(r.sequence()),
            FormatTimestamp(r.time(), r.has_time()),
            under_call ? "" : DashIfEmpty(r.principal()),
            absl::StrCat("  ", DashIfEmpty(r.hsm_function())),
            DashIfEmpty(!r.hsm_object_id().empty() ? r.hsm_object_id() : r.key_version_id()),
            DashIfEmpty(r.hsm_result()),
            ""};
  };
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < records.size(); ++i) {
    if (nested[i]) continue;
    const v1::AuditRecord& r = records[i];
    if (r.type() == v1::HSM_CALL) {
      rows.push_back(hsm_row(r, false));
      continue;
    }
    std::string operation = r.operation();
    if (operation.empty()) {
      operation = AuditRecordTypeName(r.type());
      if (!r.message().empty()) absl::StrAppend(&operation, ": ", r.message());
    }
    rows.push_back(
        {absl::StrCat(r.sequence()), FormatTimestamp(r.time(), r.has_time()),
         DashIfEmpty(r.principal()), operation, DashIfEmpty(r.key_id()),
         r.outcome() == v1::AUDIT_OUTCOME_UNSPECIFIED ? "-" : AuditOutcomeName(r.outcome()),
         DashIfEmpty(r.error_type())});
    for (size_t child : hsm_calls_of[i]) rows.push_back(hsm_row(records[child], true));
  }
  return FormatTable({"SEQ", "TIME", "PRINCIPAL", "OPERATION", "KEY", "OUTCOME", "ERROR_TYPE"},
                     rows);
}

constexpr int32_t kMaxAuditPage = 1000;  // QueryAuditLog's largest page

void AddAuditQuery(CommandTable& commands, CLI::App* audit) {
  struct Args {
    std::string key_id;
    std::string principal;
    std::string operation;
    std::string outcome;
    std::string since;
    std::string until;
    bool include_hsm_calls = false;
    int64_t limit = 0;
    std::string output = "table";
    CLI::Option* outcome_flag = nullptr;
    CLI::Option* since_flag = nullptr;
    CLI::Option* until_flag = nullptr;
    CLI::Option* limit_flag = nullptr;
    CLI::Option* output_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      audit, "query", "Audit records matching every filter, oldest first (every page)",
      [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(std::string format,
                             OutputFormat(session, args->output_flag, args->output, "jsonl"));
        v1::QueryAuditLogRequest request;
        request.set_key_id(args->key_id);
        request.set_principal(args->principal);
        request.set_operation(args->operation);
        if (args->outcome_flag->count() > 0) {
          static const std::map<std::string, v1::AuditOutcome> kOutcomes = {
              {"success", v1::SUCCESS}, {"denied", v1::DENIED}, {"failed", v1::FAILED}};
          request.set_outcome(kOutcomes.at(absl::AsciiStrToLower(args->outcome)));
        }
        if (args->since_flag->count() > 0) {
          KMS_ASSIGN_OR_RETURN(*request.mutable_start_time(),
                               ParseTimeArgument(args->since, "--since"));
        }
        if (args->until_flag->count() > 0) {
          KMS_ASSIGN_OR_RETURN(*request.mutable_end_time(),
                               ParseTimeArgument(args->until, "--until"));
        }
        request.set_include_hsm_calls(args->include_hsm_calls);
        const bool limited = args->limit_flag->count() > 0;
        int64_t remaining = args->limit;

        // jsonl and csv go out page by page; the table needs every row first.
        std::vector<v1::AuditRecord> table_records;
        bool first_page = true;
        for (;;) {
          if (limited) {
            request.set_limit(static_cast<int32_t>(std::min<int64_t>(remaining, kMaxAuditPage)));
          }
          KMS_ASSIGN_OR_RETURN(v1::QueryAuditLogResponse page,
                               session.client.QueryAuditLog(request));
          int count = page.records_size();
          if (limited && count > remaining) count = static_cast<int>(remaining);
          std::string text;
          if (format == "csv" && first_page) text = FormatCsvRow(kAuditCsvHeader);
          first_page = false;
          for (int i = 0; i < count; ++i) {
            const v1::AuditRecord& record = page.records(i);
            if (format == "jsonl") {
              if (record.line().empty()) {
                return InternalError(absl::StrCat("kmsd sent audit record ", record.sequence(),
                                                  " without its stored line"));
              }
              absl::StrAppend(&text, record.line(), "\n");
            } else if (format == "csv") {
              absl::StrAppend(&text, AuditCsvRow(record));
            } else {
              table_records.push_back(record);
            }
          }
          KMS_RETURN_IF_ERROR(WriteStdout(text));
          if (limited) remaining -= count;
          if (!page.truncated() || page.next_sequence() == 0 || (limited && remaining == 0)) break;
          if (page.next_sequence() <= request.after_sequence()) {
            return InternalError("kmsd returned a truncated page without a new next_sequence");
          }
          request.set_after_sequence(page.next_sequence());
        }
        if (format == "table") return WriteStdout(FormatAuditTable(table_records));
        return absl::OkStatus();
      });
  AddKeyIdFlag(command, &args->key_id)
      ->description("Only records of this key: key id or ARN (aliases are not resolved)");
  command->add_option("--principal", args->principal, "Only calls by this principal");
  command->add_option("--operation", args->operation,
                      "Only calls of this operation (RPC name, e.g. GenerateDataKey)");
  args->outcome_flag =
      command->add_option("--outcome", args->outcome, "Only calls with this outcome")
          ->check(CLI::IsMember({"success", "denied", "failed"}, CLI::ignore_case));
  args->since_flag = command->add_option("--since", args->since, "From this time on (inclusive)")
                         ->type_name("RFC3339");
  args->until_flag = command->add_option("--until", args->until, "Before this time (exclusive)")
                         ->type_name("RFC3339");
  command->add_flag("--include-hsm-calls", args->include_hsm_calls,
                    "Also the HSM calls made for each matching call");
  args->limit_flag = command->add_option("--limit", args->limit, "Stop after N records")
                         ->check(CLI::PositiveNumber)
                         ->type_name("N");
  args->output_flag = command->add_option("--output", args->output, "Output format")
                          ->check(CLI::IsMember({"table", "jsonl", "csv"}))
                          ->capture_default_str();
  command->footer(
      "table: SEQ, TIME, PRINCIPAL, OPERATION, KEY, OUTCOME, ERROR_TYPE; HSM calls indented\n"
      "under their call. jsonl: each record's stored line exactly as kmsd keeps it (hashes\n"
      "included), one per line. csv: RFC 4180 with a header row. --json means --output jsonl.\n");
}

// The `"seq":N` of a stored audit line (daemon/audit/audit_record.h); nullopt if it has none.
std::optional<uint64_t> SequenceOfLine(absl::string_view line) {
  constexpr absl::string_view kKey = "\"seq\"";
  size_t at = line.find(kKey);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest = line.substr(at + kKey.size());
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (!absl::ConsumePrefix(&rest, ":")) return std::nullopt;
  rest = absl::StripLeadingAsciiWhitespace(rest);
  absl::ConsumePrefix(&rest, "\"");  // a 64-bit number may be quoted, as protobuf's JSON does
  size_t digits = 0;
  while (digits < rest.size() && absl::ascii_isdigit(rest[digits])) ++digits;
  uint64_t sequence = 0;
  if (digits == 0 || !absl::SimpleAtoi(rest.substr(0, digits), &sequence)) return std::nullopt;
  return sequence;
}

void AddAuditExport(CommandTable& commands, CLI::App* audit) {
  struct Args {
    std::string out;
    uint64_t after_sequence = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      audit, "export", "Write the audit log's lines exactly as stored to a new file",
      [args](Session& session) -> absl::Status {
        // Refuse an existing file before asking kmsd for anything.
        KMS_ASSIGN_OR_RETURN(std::unique_ptr<NewOutputFile> file, NewOutputFile::Create(args->out));
        v1::ExportAuditLogRequest request;
        request.set_after_sequence(args->after_sequence);
        uint64_t records = 0;
        std::optional<uint64_t> last_sequence;
        for (;;) {
          KMS_ASSIGN_OR_RETURN(v1::ExportAuditLogResponse page,
                               session.client.ExportAuditLog(request));
          std::string text;
          for (const std::string& line : page.lines()) absl::StrAppend(&text, line, "\n");
          KMS_RETURN_IF_ERROR(file->Append(text));
          records += static_cast<uint64_t>(page.lines_size());
          if (page.truncated() && page.next_sequence() != 0) {
            if (page.next_sequence() <= request.after_sequence()) {
              return InternalError("kmsd returned a truncated page without a new next_sequence");
            }
            // next_sequence is the page's last record.
            last_sequence = page.next_sequence();
            request.set_after_sequence(page.next_sequence());
            continue;
          }
          // The last page says nothing of where it ends: its last line does.
          if (!page.lines().empty()) {
            last_sequence = SequenceOfLine(page.lines(page.lines_size() - 1));
          }
          break;
        }
        KMS_RETURN_IF_ERROR(file->Commit());
        const std::string last = last_sequence.has_value() ? absl::StrCat(*last_sequence) : "";
        if (session.json) {
          return WriteStdout(
              absl::StrCat("{\"file\":", JsonQuote(args->out), ",\"records\":", records,
                           ",\"last_sequence\":", last.empty() ? "null" : last, "}\n"));
        }
        return WriteStdout(FormatFields({{"file", args->out},
                                         {"records", absl::StrCat(records)},
                                         {"last_sequence", DashIfEmpty(last)}}));
      });
  command->add_option("--out", args->out, "The new file to write (never overwritten)")
      ->type_name("FILE")
      ->required();
  command
      ->add_option("--after-sequence", args->after_sequence,
                   "Only the records after this sequence number (default: from the start)")
      ->type_name("N");
  command->footer(
      "Each line is written exactly as kmsd stores it, plus '\\n', and the file is synced\n"
      "before the count of records and the last sequence number are printed. A failed\n"
      "export removes its file.\n");
}

void AddAuditPublicKey(CommandTable& commands, CLI::App* audit) {
  auto out = std::make_shared<std::string>();
  CLI::App* command = commands.Add(
      audit, "public-key", "Write the public key that verifies the log's checkpoints (PEM)",
      [out](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(v1::GetAuditPublicKeyResponse response,
                             session.client.GetAuditPublicKey(v1::GetAuditPublicKeyRequest()));
        if (response.public_key_pem().empty()) {
          return InternalError("kmsd sent no PEM public key");
        }
        KMS_RETURN_IF_ERROR(WriteOutputFile(*out, response.public_key_pem(), FileMode::kPublic));
        return Emit(session, response, [&] {
          return FormatFields(
              {{"public_key_file", *out}, {"key_fingerprint", response.key_fingerprint()}});
        });
      });
  command->add_option("--out", *out, "Write the PEM here ('-': stdout)")
      ->type_name("FILE")
      ->required();
}

// "1 record", "2 records".
std::string CountOf(uint64_t n, absl::string_view noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

// audit verify's line for a log that verified.
std::string VerifiedSummary(const audit::VerifyResult& result, bool partial) {
  if (result.records == 0) return "audit log verified: empty (no records)\n";
  const uint64_t first = result.last_sequence - result.records + 1;
  std::string line = absl::StrCat("audit log verified: ", CountOf(result.records, "record"),
                                  " (seq ", first, "..", result.last_sequence);
  if (partial && first > 1) {
    absl::StrAppend(&line, "; its link to seq ", first - 1, " is taken on trust");
  }
  absl::StrAppend(&line, "), ", CountOf(result.checkpoints, "signed checkpoint"), "; ");
  if (result.unsigned_tail == 0) {
    absl::StrAppend(&line, "every record is covered by a signed checkpoint");
  } else if (result.checkpoints == 0) {
    absl::StrAppend(&line, "no record is signed, all are only chained");
  } else {
    absl::StrAppend(&line, CountOf(result.unsigned_tail, "record"), " after the last checkpoint ",
                    result.unsigned_tail == 1 ? "is" : "are", " chained but not yet signed");
  }
  return absl::StrCat(line, "\n");
}

// audit verify's --json object: every member always present, null where it
// does not apply (first_bad_sequence and problem on success; the range and
// the unsigned tail on failure, where they would describe a broken log).
std::string VerifyJson(const audit::VerifyResult& result) {
  const auto number_or_null = [](bool set, uint64_t n) {
    return set ? absl::StrCat(n) : std::string("null");
  };
  const bool any = result.ok && result.records > 0;
  return absl::StrCat(
      "{\"verified\":", BoolName(result.ok), ",\"records\":", result.records,
      ",\"first_sequence\":", number_or_null(any, result.last_sequence - result.records + 1),
      ",\"last_sequence\":", number_or_null(any, result.last_sequence),
      ",\"checkpoints\":", result.checkpoints,
      ",\"unsigned_tail\":", number_or_null(result.ok, result.unsigned_tail),
      ",\"first_bad_sequence\":",
      number_or_null(result.first_bad_sequence.has_value(), result.first_bad_sequence.value_or(0)),
      ",\"problem\":", result.ok ? "null" : JsonQuote(result.problem), "}\n");
}

void AddAuditVerify(CommandTable& commands, CLI::App* audit) {
  struct Args {
    std::string log;
    std::string public_key;
    bool partial = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.AddLocal(
      audit, "verify",
      "Check an audit log's hash chain and checkpoint signatures (no call to kmsd)",
      [args](const LocalSession& session) -> absl::Status {
        if (args->log == "-" && args->public_key == "-") {
          return UsageError("--log and --public-key cannot both be stdin ('-')");
        }
        KMS_ASSIGN_OR_RETURN(std::string public_key, ReadInputFile(args->public_key));
        // Streamed, not read whole: a log grows for as long as kmsd runs.
        std::ifstream file;
        std::istream* lines = &std::cin;
        if (args->log != "-") {
          errno = 0;
          file.open(args->log, std::ios::binary);
          if (!file.is_open()) {
            return AsLocalFailure(absl::ErrnoToStatus(
                errno != 0 ? errno : EIO, absl::StrCat("cannot open '", args->log, "'")));
          }
          lines = &file;
        }
        absl::StatusOr<audit::VerifyResult> result =
            audit::VerifyAuditLog(*lines, public_key, args->partial);
        if (!result.ok()) {
          return AsLocalFailure(absl::InvalidArgumentError(
              absl::StrCat("--public-key '", args->public_key, "': ", result.status().message())));
        }
        // A read error ends getline as the end of the file would: the records
        // seen so far may verify, but the log was not checked.
        if (lines->bad()) {
          return AsLocalFailure(absl::ErrnoToStatus(errno != 0 ? errno : EIO,
                                                    absl::StrCat("cannot read '", args->log, "'")));
        }
        if (session.json) KMS_RETURN_IF_ERROR(WriteStdout(VerifyJson(*result)));
        if (!result->ok) {
          return AsFailedCheck(absl::DataLossError(
              absl::StrCat("audit log NOT verified: first bad record seq ",
                           result->first_bad_sequence.value_or(0), ": ", result->problem)));
        }
        if (session.json) return absl::OkStatus();
        return WriteStdout(VerifiedSummary(*result, args->partial));
      });
  command->add_option("--log", args->log, "The audit log, e.g. from audit export ('-': stdin)")
      ->type_name("FILE")
      ->required();
  command
      ->add_option("--public-key", args->public_key,
                   "The checkpoint signing key, PEM or DER, e.g. from audit public-key")
      ->type_name("FILE")
      ->required();
  command->add_flag("--partial", args->partial,
                    "For an export made with --after-sequence: trust its first record's link "
                    "to the record before it");
  command->footer(
      "Checks, with no call to kmsd, that every line parses, seq runs 1, 2, 3, ... without a\n"
      "gap, each record's hash matches its bytes and names the record before it, and every\n"
      "checkpoint's signature verifies under the public key. Stops at the first bad record and\n"
      "names its seq. Records after the last checkpoint are protected by the chain alone:\n"
      "whoever can write the file can rewrite or drop them unnoticed, so the summary counts\n"
      "them. Exit 0: verified; 1: not verified; 2: bad flags; 4: a file could not be read\n"
      "or the public key is not an ECDSA P-256 key.\n");
}

const std::vector<std::string> kInventoryCsvHeader = {"key_id",
                                                      "arn",
                                                      "aliases",
                                                      "description",
                                                      "key_state",
                                                      "origin",
                                                      "creation_date",
                                                      "key_version_count",
                                                      "current_material_date",
                                                      "rotation_enabled",
                                                      "rotation_period_in_days",
                                                      "next_rotation_date",
                                                      "rotation_status",
                                                      "last_used_date",
                                                      "expiration_model",
                                                      "valid_to",
                                                      "deletion_date"};

void AddKeyInventory(CommandTable& commands) {
  struct Args {
    int32_t max_age_in_days = 0;
    std::string output = "table";
    CLI::Option* max_age_flag = nullptr;
    CLI::Option* output_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "key-inventory", "Every key: state, origin, versions, rotation, last use, expiry",
      [args](Session& session) -> absl::Status {
        KMS_ASSIGN_OR_RETURN(std::string format,
                             OutputFormat(session, args->output_flag, args->output, "json"));
        v1::GetKeyInventoryReportRequest request;
        if (args->max_age_flag->count() > 0) request.set_max_age_in_days(args->max_age_in_days);
        KMS_ASSIGN_OR_RETURN(v1::GetKeyInventoryReportResponse response,
                             session.client.GetKeyInventoryReport(request));
        if (format == "json") {
          KMS_ASSIGN_OR_RETURN(std::string json, FormatJson(response));
          return WriteStdout(json);
        }
        if (format == "csv") {
          std::string text = FormatCsvRow(kInventoryCsvHeader);
          for (const v1::KeyInventoryEntry& k : response.keys()) {
            absl::StrAppend(
                &text,
                FormatCsvRow({
                    k.key_id(),
                    k.arn(),
                    absl::StrJoin(k.aliases(), ","),
                    k.description(),
                    KeyStateName(k.key_state()),
                    OriginName(k.origin()),
                    CsvTime(k.creation_date(), k.has_creation_date()),
                    absl::StrCat(k.key_version_count()),
                    CsvTime(k.current_material_date(), k.has_current_material_date()),
                    BoolName(k.rotation_enabled()),
                    k.rotation_period_in_days() == 0 ? ""
                                                     : absl::StrCat(k.rotation_period_in_days()),
                    CsvTime(k.next_rotation_date(), k.has_next_rotation_date()),
                    k.has_rotation_status() ? RotationComplianceStatusName(k.rotation_status())
                                            : "",
                    CsvTime(k.last_used_date(), k.has_last_used_date()),
                    k.expiration_model() == v1::EXPIRATION_MODEL_TYPE_UNSPECIFIED
                        ? ""
                        : ExpirationModelName(k.expiration_model()),
                    CsvTime(k.valid_to(), k.has_valid_to()),
                    CsvTime(k.deletion_date(), k.has_deletion_date()),
                }));
          }
          return WriteStdout(text);
        }
        std::vector<std::vector<std::string>> rows;
        for (const v1::KeyInventoryEntry& k : response.keys()) {
          rows.push_back({
              k.key_id(),
              k.aliases().empty() ? "-" : absl::StrJoin(k.aliases(), ","),
              KeyStateName(k.key_state()),
              OriginName(k.origin()),
              absl::StrCat(k.key_version_count()),
              FormatTimestamp(k.current_material_date(), k.has_current_material_date()),
              k.rotation_enabled() ? "enabled" : "disabled",
              NumberOrDash(k.rotation_period_in_days()),
              FormatTimestamp(k.next_rotation_date(), k.has_next_rotation_date()),
              k.has_rotation_status() ? RotationComplianceStatusName(k.rotation_status()) : "-",
              FormatTimestamp(k.last_used_date(), k.has_last_used_date()),
              k.expiration_model() == v1::EXPIRATION_MODEL_TYPE_UNSPECIFIED
                  ? "-"
                  : ExpirationModelName(k.expiration_model()),
              FormatTimestamp(k.valid_to(), k.has_valid_to()),
              FormatTimestamp(k.deletion_date(), k.has_deletion_date()),
          });
        }
        return WriteStdout(absl::StrCat(
            FormatFields({{"generated_at",
                           FormatTimestamp(response.generated_at(), response.has_generated_at())}}),
            FormatTable({"KEY_ID", "ALIASES", "STATE", "ORIGIN", "VERSIONS", "CURRENT_MATERIAL",
                         "ROTATION", "PERIOD_DAYS", "NEXT_ROTATION", "ROTATION_STATUS", "LAST_USED",
                         "EXPIRATION", "VALID_TO", "DELETION_DATE"},
                        rows)));
      });
  args->max_age_flag = command->add_option(
      "--max-age-days,--max-age-in-days", args->max_age_in_days,
      "Current material older than this is OVERDUE (kmsd's default: from its configuration)");
  args->output_flag = command->add_option("--output", args->output, "Output format")
                          ->check(CLI::IsMember({"table", "json", "csv"}))
                          ->capture_default_str();
  command->footer(
      "json is the GetKeyInventoryReport response (protobuf's JSON mapping); csv is RFC 4180\n"
      "with a header row and every field. --json means --output json.\n");
}

// ---------------------------------------------------------------- bench

void AddBench(CommandTable& commands) {
  struct Args {
    std::vector<std::string> ops = {"generate-data-key", "decrypt"};
    std::vector<int> concurrency = {64};
    std::string duration = "10s";
    std::string warmup = "2s";
    int keys = 1;
    std::vector<std::string> key_ids;
    std::string principal;
    int context_pairs = 3;
    bool no_baseline = false;
    int rounds = 1;
    int channels = 2;
    int client_threads = 1;
    int setup_concurrency = 16;
    int ciphertexts = 0;
    bool start_daemon = false;
    std::string kmsd;
    std::string data_dir;
    CLI::Option* keys_flag = nullptr;
    CLI::Option* key_id_flag = nullptr;
  };
  auto args = std::make_shared<Args>();
  CLI::App* command = commands.Add(
      "bench", "Measure kmsd: ops/s and latency of an op mix against the Health/Check baseline",
      [args](Session& session) -> absl::Status {
        // Everything the user may have got wrong, before anything runs.
        bench::BenchOptions options;
        for (const std::string& text : args->ops) {
          absl::StatusOr<bench::OpMix> mix = bench::ParseOpMix(text);
          if (!mix.ok()) return UsageError(absl::StrCat("--ops: ", mix.status().message()));
          options.mixes.push_back(*std::move(mix));
        }
        absl::StatusOr<absl::Duration> duration = bench::ParseBenchDuration(args->duration);
        if (!duration.ok()) {
          return UsageError(absl::StrCat("--duration: ", duration.status().message()));
        }
        absl::StatusOr<absl::Duration> warmup = bench::ParseBenchDuration(args->warmup);
        if (!warmup.ok()) return UsageError(absl::StrCat("--warmup: ", warmup.status().message()));
        KMS_RETURN_IF_ERROR(RequireAtMostOne(args->keys_flag, args->key_id_flag));
        options.concurrencies = args->concurrency;
        options.duration = *duration;
        options.warmup = *warmup;
        options.baseline = !args->no_baseline;
        options.rounds = args->rounds;
        options.keys = args->keys;
        options.key_ids = args->key_ids;
        options.context_pairs = args->context_pairs;
        options.channels = args->channels;
        options.threads = args->client_threads;
        options.setup_concurrency = args->setup_concurrency;
        options.ciphertexts = args->ciphertexts;
        options.progress = [](const std::string& line) {
          fprintf(stderr, "kmsctl bench: %s\n", line.c_str());
        };

        const GlobalFlags& flags = *session.flags;
        bench::Target target;
        target.endpoint = flags.endpoint;
        target.client.timeout = absl::Seconds(flags.timeout_seconds);
        target.client.ca_file = flags.ca_file;
        target.client.cert_file = flags.cert_file;
        target.client.key_file = flags.key_file;
        // The principal the bench's keys let use them: kmsd names this
        // client by its certificate. A kmsd we start is known to take the
        // development PKI's admin certificate, which exists only once it runs.
        options.principal = args->principal;
        if (options.principal.empty() && !args->start_daemon && !flags.cert_file.empty()) {
          absl::StatusOr<std::string> principal =
              bench::PrincipalOfCertificateFile(flags.cert_file);
          if (!principal.ok()) return UsageError(principal.status().message());
          options.principal = *std::move(principal);
        }
        {
          bench::BenchOptions checked = options;
          if (args->start_daemon && checked.principal.empty()) checked.principal = "admin";
          if (absl::Status valid = bench::ValidateBenchOptions(checked); !valid.ok()) {
            if (checked.principal.empty()) {
              return UsageError(
                  "give --principal, kmsd's name for this client (plaintext: its "
                  "plaintext.principal): the keys the bench creates let it use them");
            }
            return UsageError(valid.message());
          }
        }

        std::unique_ptr<bench::LocalKmsd> daemon;
        if (args->start_daemon) {
          bench::LocalKmsd::Options daemon_options;
          daemon_options.kmsd_path = args->kmsd;
          if (daemon_options.kmsd_path.empty()) {
            absl::StatusOr<std::string> found = bench::FindKmsdBinary();
            if (!found.ok()) {
              return UsageError(absl::StrCat(found.status().message(), "; give --kmsd PATH"));
            }
            daemon_options.kmsd_path = *std::move(found);
          }
          daemon_options.data_dir = args->data_dir;
          options.progress(absl::StrCat("starting ", daemon_options.kmsd_path));
          absl::StatusOr<std::unique_ptr<bench::LocalKmsd>> started =
              bench::LocalKmsd::Start(std::move(daemon_options));
          if (!started.ok()) return AsLocalFailure(started.status());
          daemon = *std::move(started);
          options.progress(absl::StrCat("kmsd ", daemon->pid(), " serves ", daemon->endpoint(),
                                        "; data ", daemon->data_dir(), ", log ",
                                        daemon->log_path(), " (removed at the end, a --data-dir "
                                        "kept; left behind if kmsctl is killed)"));
          target.endpoint = daemon->endpoint();
          const absl::Duration timeout = target.client.timeout;
          target.client = daemon->ClientOptionsForAdmin();
          target.client.timeout = timeout;
          options.kmsd_pid = daemon->pid();
          if (options.principal.empty()) {
            absl::StatusOr<std::string> principal =
                bench::PrincipalOfCertificateFile(target.client.cert_file);
            if (!principal.ok()) return AsLocalFailure(principal.status());
            options.principal = *std::move(principal);
          }
        }

        absl::StatusOr<bench::BenchReport> report = bench::RunBench(target, options);
        // RunBench has closed its channels, so kmsd drains at once.
        absl::Status stopped = absl::OkStatus();
        if (daemon != nullptr) {
          options.progress("stopping kmsd");
          stopped = daemon->Stop();
        }
        if (!report.ok()) return report.status();
        report->started_daemon = daemon != nullptr;
        KMS_RETURN_IF_ERROR(WriteStdout(session.json ? bench::FormatBenchReportJson(*report)
                                                     : bench::FormatBenchReport(*report)));
        if (!stopped.ok()) return AsLocalFailure(stopped);
        return bench::CheckEveryRunSucceeded(*report);
      });
  command
      ->add_option("--ops", args->ops,
                   "Op mix OP[=WEIGHT],... of generate-data-key, decrypt, encrypt, create-key, "
                   "health; repeat to run several mixes one after another (default: "
                   "generate-data-key, then decrypt)")
      ->type_name("MIX")
      ->allow_extra_args(false);
  command->add_option("--concurrency", args->concurrency,
                      "Requests in flight; a list (1,16,64) runs each in turn")
      ->type_name("N[,N...]")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->capture_default_str();
  command->add_option("--duration", args->duration, "Measured time of each run (10s, 500ms, 1m)")
      ->type_name("TIME")
      ->capture_default_str();
  command->add_option("--warmup", args->warmup, "Unmeasured load before each run")
      ->type_name("TIME")
      ->capture_default_str();
  args->keys_flag = command->add_option("--keys", args->keys,
                                        "Create this many keys first (timed: CreateKey/s)")
                        ->capture_default_str();
  args->key_id_flag = command
                          ->add_option("--key-id", args->key_ids,
                                       "Use this existing key instead of creating keys; repeat")
                          ->type_name("KEY")
                          ->allow_extra_args(false);
  command->add_option("--principal", args->principal,
                      "Who the created keys let use them (default: from the client certificate)");
  command->add_option("--context-pairs", args->context_pairs,
                      "Encryption context pairs per request")
      ->capture_default_str();
  command->add_flag("--no-baseline", args->no_baseline,
                    "Skip the Health/Check run at each concurrency (and so the ratio)");
  command->add_option("--rounds", args->rounds,
                      "Cut each run into this many slices, taking turns with the other runs at "
                      "the same concurrency")
      ->capture_default_str();
  command->add_option("--channels", args->channels, "gRPC channels (connections) to spread over")
      ->capture_default_str();
  command->add_option("--client-threads", args->client_threads,
                      "Threads sending and completing requests")
      ->capture_default_str();
  command->add_option("--setup-concurrency", args->setup_concurrency,
                      "Requests in flight while creating keys and data keys for decrypt")
      ->capture_default_str();
  command->add_option("--ciphertexts", args->ciphertexts,
                      "Data keys to make for decrypt (default: the larger of 256 and --keys)");
  CLI::Option* start_flag =
      command->add_flag("--start-daemon", args->start_daemon,
                        "Start a kmsd of its own (embedded SoftHSM, mTLS with its development "
                        "PKI, on a free port), bench it, stop it");
  command->add_option("--kmsd", args->kmsd, "The kmsd binary to start (default: next to kmsctl)")
      ->type_name("PATH")
      ->needs(start_flag);
  command->add_option("--data-dir", args->data_dir,
                      "Data directory of the started kmsd, kept (default: a temporary one)")
      ->type_name("DIR")
      ->needs(start_flag);
  command->footer(
      "Prints, per run, successful calls per second, latency percentiles, failures, shed calls\n"
      "(RESOURCE_EXHAUSTED) and the ratio to Health/Check at the same concurrency. Keys it\n"
      "creates are kept, tagged kmsctl-bench=true. Without --start-daemon it benches the kmsd at\n"
      "--endpoint with the global TLS flags.\n");
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
  AddGetParametersForImport(commands);
  AddImportKeyMaterial(commands);
  AddKeyOnlyCommand(commands, "delete-imported-key-material",
                    "Delete a key's imported material; the key waits for a re-import",
                    &KmsClient::DeleteImportedKeyMaterial);
  AddGenerateKeyMaterial(commands);
  AddKeyCheckValue(commands);
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
  AddPutKeyPolicy(commands);
  AddGetKeyPolicy(commands);
  AddCreateGrant(commands);
  AddListGrants(commands);
  AddRetireGrant(commands);
  AddRevokeGrant(commands);
  // Compliance.
  CLI::App* audit = commands.AddGroup(
      "audit", "Compliance: query and export the audit log, get its signing key, verify it");
  AddAuditQuery(commands, audit);
  AddAuditExport(commands, audit);
  AddAuditPublicKey(commands, audit);
  AddAuditVerify(commands, audit);
  AddKeyInventory(commands);
  AddBench(commands);
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
  app.add_option("--ca", flags.ca_file, "PEM file of the CA that issued kmsd's certificate (mTLS)")
      ->envname("KMSCTL_CA");
  app.add_option("--cert", flags.cert_file, "PEM file of this client's certificate (mTLS)")
      ->envname("KMSCTL_CERT");
  app.add_option("--key", flags.key_file, "PEM file of this client's private key (mTLS)")
      ->envname("KMSCTL_KEY");
}

// --ca, --cert and --key go together. Errors: kInvalidArgument naming the
// missing ones.
absl::Status CheckTlsFlags(const GlobalFlags& flags) {
  const bool ca = !flags.ca_file.empty(), cert = !flags.cert_file.empty(),
             key = !flags.key_file.empty();
  if (ca == cert && cert == key) return absl::OkStatus();
  std::string missing;
  if (!ca) missing += " --ca (KMSCTL_CA)";
  if (!cert) missing += " --cert (KMSCTL_CERT)";
  if (!key) missing += " --key (KMSCTL_KEY)";
  return UsageError(absl::StrCat("--ca, --cert and --key go together for mTLS; missing", missing));
}

// Prints a usage error with a pointer to the right help, and gives exit 2.
int UsageFailure(const CLI::App& app, const std::string& message) {
  std::string help = "kmsctl";
  for (const CLI::App* level = &app; !level->get_subcommands().empty();) {
    level = level->get_subcommands().front();
    help += " " + level->get_name();
  }
  help += " --help";
  fprintf(stderr, "kmsctl: %s (see %s)\n", message.c_str(), help.c_str());
  return kExitUsage;
}

// Runs the selected command and reports its outcome.
int Run(const GlobalFlags& flags, const CLI::App& app, const CommandTable& commands) {
  absl::Status status;
  if (const LocalRunner* run_local = commands.SelectedLocal()) {
    status = (*run_local)(LocalSession{flags.json});
  } else {
    client::ClientOptions options;
    options.timeout = absl::Seconds(flags.timeout_seconds);
    options.ca_file = flags.ca_file;
    options.cert_file = flags.cert_file;
    options.key_file = flags.key_file;
    status = CheckTlsFlags(flags);
    if (status.ok()) {
      absl::StatusOr<std::unique_ptr<KmsClient>> client =
          KmsClient::Connect(flags.endpoint, options);
      if (client.ok()) {
        Session session{**client, flags.json, &flags};
        status = (*commands.Selected())(session);
      } else {
        // A bad endpoint or an unreadable TLS file: the user's to fix.
        status = UsageError(client.status().message());
      }
    }
  }
  if (status.ok()) return kExitOk;
  ExitCode code = ExitCodeFor(status);
  if (code == kExitUsage) return UsageFailure(app, std::string(status.message()));
  fprintf(stderr, "%s\n", ErrorLine(status, flags.endpoint).c_str());
  return code;
}

int Main(int argc, char** argv) {
#ifdef NDEBUG
  // As in kmsd: Debian's Abseil checks every Mutex acquisition for lock-order
  // cycles, and under `kmsctl bench` that bookkeeping is CPU taken from the
  // kmsd it measures. Debug and sanitizer builds keep the check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
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
    // A group ("audit") given a command it does not have.
    const CLI::App* selected = CommandTable::SelectedCommand(app);
    if (selected != nullptr && selected->get_require_subcommand_min() > 0 &&
        selected->get_subcommands().empty()) {
      std::vector<std::string> rest = selected->remaining();
      if (rest.empty()) rest = app.remaining();
      if (!rest.empty()) {
        return UsageFailure(app,
                            "unknown " + selected->get_name() + " command '" + rest.front() + "'");
      }
      std::vector<std::string> names;
      for (const CLI::App* command : selected->get_subcommands(nullptr)) {
        names.push_back(command->get_name());
      }
      return UsageFailure(
          app, "'" + selected->get_name() + "' needs a command: " + absl::StrJoin(names, ", "));
    }
    return UsageFailure(app, e.what());
  }
  if (app.get_subcommands().empty()) return UsageFailure(app, "a command is required");
  return Run(flags, app, commands);
}

}  // namespace
}  // namespace kms::kmsctl

int main(int argc, char** argv) { return kms::kmsctl::Main(argc, argv); }
