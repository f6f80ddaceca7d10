#include "client/bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/common/certificate_principal.h"
#include "daemon/common/errors.h"
#include "daemon/common/secret_bytes.h"
#include "daemon/common/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kms/v1/kms.grpc.pb.h"

namespace kms::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxWeight = 1000000;
constexpr int kMaxConcurrency = 10000;
constexpr int kMaxContextPairs = 64;
constexpr int kMaxChannels = 64;
constexpr int kMaxThreads = 64;
constexpr int kMinCiphertexts = 256;
// Distinct values of this channel argument keep gRPC from sharing one
// connection between the bench's channels.
constexpr char kChannelIndexArg[] = "kmsctl.bench.channel";
constexpr char kBenchTagKey[] = "kmsctl-bench";

constexpr std::array<const char*, kOpCount> kOpNames = {"generate-data-key", "decrypt", "encrypt",
                                                        "create-key", "health"};

int64_t Nanos(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// ---------------------------------------------------------------- calls

// Data keys come back in these; wipe them before the memory goes.
void WipeResponse(v1::GenerateDataKeyResponse& response) {
  WipeString(response.mutable_plaintext());
}
void WipeResponse(v1::DecryptResponse& response) { WipeString(response.mutable_plaintext()); }
template <typename Response>
void WipeResponse(Response&) {}

// One request in flight: the completion queue hands it back as its tag.
class PendingCall {
 public:
  virtual ~PendingCall() = default;

  Op op = Op::kHealth;
  int slot = 0;
  int64_t item = -1;  // budgeted runs: which item this call makes
  Clock::time_point started;
  grpc::ClientContext context;
  grpc::Status status;
};

template <typename Response>
class Call final : public PendingCall {
 public:
  ~Call() override { WipeResponse(response); }

  Response response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
};

template <typename Response>
const Response& ResponseOf(const PendingCall& call) {
  return static_cast<const Call<Response>&>(call).response;
}

// What a call is for, kept in it for when it comes back.
struct CallSite {
  Op op;
  int slot;
  int64_t item;
};

// Starts `request` through the stub's PrepareAsync method; the completion
// comes back on `cq` with the call as its tag.
template <typename Stub, typename Request, typename Response>
void Start(const CallSite& site, Stub& stub,
           std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> (Stub::*prepare)(
               grpc::ClientContext*, const Request&, grpc::CompletionQueue*),
           const Request& request, grpc::CompletionQueue& cq,
           std::chrono::system_clock::duration timeout) {
  auto* call = new Call<Response>();
  call->op = site.op;
  call->slot = site.slot;
  call->item = site.item;
  call->context.set_deadline(std::chrono::system_clock::now() + timeout);
  call->started = Clock::now();
  call->reader = (stub.*prepare)(&call->context, request, &cq);
  call->reader->StartCall();
  call->reader->Finish(&call->response, &call->status, call);
}

// ---------------------------------------------------------------- runs

struct Channels {
  std::vector<std::unique_ptr<v1::KeyManagementService::Stub>> kms;
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> health;
};

// What the requests are made of, built before a run so the load threads only
// pick and send. Read-only while a run goes.
struct Corpus {
  std::vector<v1::GenerateDataKeyRequest> generate;  // one per key
  std::vector<v1::EncryptRequest> encrypt;           // one per key
  std::vector<v1::DecryptRequest> decrypt;           // one per prepared blob
  v1::CreateKeyRequest create_key;
  grpc::health::v1::HealthCheckRequest health;
};

struct RunPlan {
  OpMix mix;
  int concurrency = 1;
  // Timed runs: no call starts at or after measure_until, and only calls
  // completing in [measure_from, measure_until) count.
  Clock::time_point measure_from, measure_until;
  // Budgeted runs (budget >= 0): calls for items 0..budget-1, every one
  // counted; the first failure stops further calls.
  int64_t budget = -1;
  // Given every successful call of a budgeted run, on a load thread.
  std::function<void(const PendingCall&)> on_success;
};

// Drives runs over the channels: each load thread owns a completion queue and
// the in-flight slots s with s % threads == its index; slot s sends on
// channel s % channels. A finished call is recorded and its slot sends the
// next one at once (closed loop).
class LoadRunner {
 public:
  LoadRunner(const Channels& channels, const Corpus& corpus, absl::Duration timeout, int threads)
      : channels_(channels),
        corpus_(corpus),
        timeout_(std::chrono::duration_cast<std::chrono::system_clock::duration>(
            absl::ToChronoNanoseconds(timeout))),
        threads_(threads) {}

  // Runs `plan` to its end; returns one result per op of the mix, in order.
  // `at_measure_start` and `at_measure_end` run on the calling thread at
  // those moments of a timed run (CPU sampling).
  std::vector<OpResult> Run(const RunPlan& plan, const std::function<void()>& at_measure_start,
                            const std::function<void()>& at_measure_end) const {
    const int threads = std::min(threads_, plan.concurrency);
    std::vector<std::vector<OpResult>> outputs(static_cast<size_t>(threads));
    Shared shared;
    std::vector<std::thread> workers;
    std::random_device seed;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([this, &plan, &shared, &outputs, t, threads, s = seed()] {
        Drive(plan, t, threads, s, shared, outputs[static_cast<size_t>(t)]);
      });
    }
    if (plan.budget < 0) {
      std::this_thread::sleep_until(plan.measure_from);
      if (at_measure_start) at_measure_start();
      std::this_thread::sleep_until(plan.measure_until);
      if (at_measure_end) at_measure_end();
    }
    for (std::thread& worker : workers) worker.join();
    std::vector<OpResult> merged = EmptyResults(plan.mix);
    for (const auto& output : outputs) {
      for (size_t i = 0; i < merged.size(); ++i) merged[i].Merge(output[i]);
    }
    return merged;
  }

 private:
  struct Shared {
    std::atomic<int64_t> next_item{0};
    std::atomic<bool> stop{false};
  };

  static std::vector<OpResult> EmptyResults(const OpMix& mix) {
    std::vector<OpResult> results(mix.size());
    for (size_t i = 0; i < mix.size(); ++i) results[i].op = mix[i].op;
    return results;
  }

  void Drive(const RunPlan& plan, int thread, int threads, uint64_t seed, Shared& shared,
             std::vector<OpResult>& results) const {
    results = EmptyResults(plan.mix);
    std::array<size_t, kOpCount> result_of{};
    for (size_t i = 0; i < plan.mix.size(); ++i) {
      result_of[static_cast<size_t>(plan.mix[i].op)] = i;
    }
    const OpPicker picker(plan.mix);
    std::mt19937_64 rng(seed);
    grpc::CompletionQueue cq;

    // Starts the next call on `slot`; false once the run sends no more.
    const auto send = [&](int slot) {
      int64_t item = -1;
      if (plan.budget >= 0) {
        if (shared.stop.load(std::memory_order_relaxed)) return false;
        item = shared.next_item.fetch_add(1, std::memory_order_relaxed);
        if (item >= plan.budget) return false;
      } else if (Clock::now() >= plan.measure_until) {
        return false;
      }
      StartOne({picker.Pick(rng()), slot, item}, rng, cq);
      return true;
    };

    int in_flight = 0;
    for (int slot = thread; slot < plan.concurrency; slot += threads) {
      if (send(slot)) ++in_flight;
    }
    void* tag = nullptr;
    bool ok = false;
    while (in_flight > 0 && cq.Next(&tag, &ok)) {
      std::unique_ptr<PendingCall> call(static_cast<PendingCall*>(tag));
      const Clock::time_point done = Clock::now();
      const bool counts =
          plan.budget >= 0 || (done >= plan.measure_from && done < plan.measure_until);
      OpResult& result = results[result_of[static_cast<size_t>(call->op)]];
      if (call->status.ok()) {
        if (counts) {
          ++result.ok;
          result.latency.Record(Nanos(done - call->started));
        }
        if (plan.on_success) plan.on_success(*call);
      } else {
        if (counts) {
          const auto code = static_cast<absl::StatusCode>(call->status.error_code());
          ++result.errors[code];
          if (result.first_error.count(code) == 0) {
            result.first_error.emplace(code, client::FromGrpcStatus(call->status, call->context));
          }
        }
        if (plan.budget >= 0) shared.stop.store(true, std::memory_order_relaxed);
      }
      if (!send(call->slot)) --in_flight;
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }

  void StartOne(const CallSite& site, std::mt19937_64& rng, grpc::CompletionQueue& cq) const {
    const size_t channel = static_cast<size_t>(site.slot) % channels_.kms.size();
    v1::KeyManagementService::Stub& kms = *channels_.kms[channel];
    using KmsStub = v1::KeyManagementService::Stub;
    // Budgeted runs walk the keys in order, so the blobs for decrypt cover
    // every key; timed runs pick at random.
    const auto pick = [&](size_t size) {
      return static_cast<size_t>(site.item >= 0 ? static_cast<uint64_t>(site.item) : rng()) % size;
    };
    switch (site.op) {
      case Op::kGenerateDataKey:
        Start(site, kms, &KmsStub::PrepareAsyncGenerateDataKey,
              corpus_.generate[pick(corpus_.generate.size())], cq, timeout_);
        return;
      case Op::kDecrypt:
        Start(site, kms, &KmsStub::PrepareAsyncDecrypt,
              corpus_.decrypt[pick(corpus_.decrypt.size())], cq, timeout_);
        return;
      case Op::kEncrypt:
        Start(site, kms, &KmsStub::PrepareAsyncEncrypt,
              corpus_.encrypt[pick(corpus_.encrypt.size())], cq, timeout_);
        return;
      case Op::kCreateKey:
        Start(site, kms, &KmsStub::PrepareAsyncCreateKey, corpus_.create_key, cq, timeout_);
        return;
      case Op::kHealth:
        Start(site, *channels_.health[channel], &grpc::health::v1::Health::Stub::PrepareAsyncCheck,
              corpus_.health, cq, timeout_);
        return;
    }
  }

  const Channels& channels_;
  const Corpus& corpus_;
  const std::chrono::system_clock::duration timeout_;
  const int threads_;
};

// ---------------------------------------------------------------- set-up

absl::StatusOr<Channels> Connect(const Target& target, int count) {
  KMS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                       client::ChannelCredentialsFor(target.client));
  Channels channels;
  const auto deadline =
      std::chrono::system_clock::now() + absl::ToChronoNanoseconds(target.client.timeout);
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(kChannelIndexArg, i);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(target.endpoint, credentials, args);
    if (!channel->WaitForConnected(deadline)) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to kmsd at ", target.endpoint, " within ",
                       absl::FormatDuration(target.client.timeout),
                       " (is it running? with mTLS: does its CA issue both certificates?)"));
    }
    channels.kms.push_back(v1::KeyManagementService::NewStub(channel));
    channels.health.push_back(grpc::health::v1::Health::NewStub(channel));
  }
  return channels;
}

// `status` with `prefix` before its message, code and payloads kept.
absl::Status Prefixed(const absl::Status& status, absl::string_view prefix) {
  absl::Status result(status.code(), absl::StrCat(prefix, status.message()));
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { result.SetPayload(url, payload); });
  return result;
}

// The first failure of the most frequent failing code; OK if none failed.
absl::Status MostFrequentError(const OpResult& result) {
  absl::StatusCode worst = absl::StatusCode::kOk;
  uint64_t most = 0;
  for (const auto& [code, count] : result.errors) {
    if (count > most) {
      worst = code;
      most = count;
    }
  }
  if (most == 0) return absl::OkStatus();
  return result.first_error.at(worst);
}

// Whether a budgeted run made all its items; else its error.
absl::Status CheckBudgetedRun(const OpResult& result, int64_t budget, absl::string_view what) {
  if (static_cast<int64_t>(result.ok) == budget) return absl::OkStatus();
  absl::Status error = MostFrequentError(result);
  if (error.ok()) {
    return absl::InternalError(absl::StrCat(what, ": ", result.ok, " of ", budget, " succeeded"));
  }
  return Prefixed(error, absl::StrCat(what, ": "));
}

// CPU time of this process and of `pid` (0: none), for utilisation.
struct CpuSample {
  Clock::time_point at;
  int64_t self_ns = 0;
  std::optional<int64_t> kmsd_ns;
};

std::optional<int64_t> ProcessCpuNanos(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // Fields after the parenthesised command name, which may hold spaces:
  // state is field 3, utime 14, stime 15.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return std::nullopt;
  }
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (ticks <= 0) return std::nullopt;
  return (utime + stime) * (int64_t{1000000000} / ticks);
}

CpuSample SampleCpu(pid_t kmsd_pid) {
  CpuSample sample;
  sample.at = Clock::now();
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto nanos = [](const timeval& tv) {
    return int64_t{tv.tv_sec} * 1000000000 + int64_t{tv.tv_usec} * 1000;
  };
  sample.self_ns = nanos(usage.ru_utime) + nanos(usage.ru_stime);
  if (kmsd_pid > 0) sample.kmsd_ns = ProcessCpuNanos(kmsd_pid);
  return sample;
}

void FillKeyRequests(const std::vector<std::string>& key_ids,
                     const std::map<std::string, std::string>& context, Corpus& corpus) {
  // 32 bytes, not secret: what Encrypt carries.
  const std::string plaintext(32, 'b');
  for (const std::string& key_id : key_ids) {
    v1::GenerateDataKeyRequest& generate = corpus.generate.emplace_back();
    generate.set_key_id(key_id);
    generate.set_key_spec(v1::AES_256);
    generate.mutable_encryption_context()->insert(context.begin(), context.end());
    v1::EncryptRequest& encrypt = corpus.encrypt.emplace_back();
    encrypt.set_key_id(key_id);
    encrypt.set_plaintext(plaintext);
    encrypt.mutable_encryption_context()->insert(context.begin(), context.end());
  }
}

void Progress(const BenchOptions& options, const std::string& line) {
  if (options.progress) options.progress(line);
}

std::string Seconds(absl::Duration d) {
  return absl::StrFormat("%.3g s", absl::ToDoubleSeconds(d));
}

}  // namespace

// ---------------------------------------------------------------- ops and mixes

std::string OpName(Op op) { return kOpNames[static_cast<size_t>(op)]; }

std::optional<Op> ParseOp(absl::string_view name) {
  for (size_t i = 0; i < kOpNames.size(); ++i) {
    if (name == kOpNames[i]) return static_cast<Op>(i);
  }
  return std::nullopt;
}

absl::StatusOr<OpMix> ParseOpMix(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError("op mix is empty; give OP[=WEIGHT],...");
  }
  OpMix mix;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("op mix '", text, "' has an empty item"));
    }
    std::pair<absl::string_view, absl::string_view> parts =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::optional<Op> op = ParseOp(parts.first);
    if (!op.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown op '", parts.first, "'; known ops: ", absl::StrJoin(kOpNames, ", ")));
    }
    int weight = 1;
    if (item.find('=') != absl::string_view::npos &&
        (!absl::SimpleAtoi(parts.second, &weight) || weight < 1 || weight > kMaxWeight)) {
      return absl::InvalidArgumentError(absl::StrCat("weight of ", parts.first,
                                                     " must be an integer 1..", kMaxWeight,
                                                     ", got '", parts.second, "'"));
    }
    if (MixHas(mix, *op)) {
      return absl::InvalidArgumentError(
          absl::StrCat("op ", parts.first, " is given twice in op mix '", text, "'"));
    }
    mix.push_back({*op, weight});
  }
  return mix;
}

std::string OpMixName(const OpMix& mix) {
  if (mix.size() == 1) return OpName(mix.front().op);
  return absl::StrJoin(mix, ",", [](std::string* out, const WeightedOp& item) {
    absl::StrAppend(out, OpName(item.op), "=", item.weight);
  });
}

bool MixHas(const OpMix& mix, Op op) {
  return std::any_of(mix.begin(), mix.end(), [op](const WeightedOp& w) { return w.op == op; });
}

absl::StatusOr<absl::Duration> ParseBenchDuration(absl::string_view text) {
  absl::Duration duration;
  double seconds = 0;
  if (absl::ParseDuration(text, &duration)) {
    // ParseDuration also takes "inf".
    if (duration == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("duration must be finite, got '", text, "'"));
    }
  } else if (absl::SimpleAtod(text, &seconds) && std::isfinite(seconds)) {
    duration = absl::Seconds(seconds);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "duration must be like 10s, 500ms, 1m30s or a number of seconds, got '", text, "'"));
  }
  if (duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration must not be negative, got '", text, "'"));
  }
  return duration;
}

OpPicker::OpPicker(const OpMix& mix) {
  for (const WeightedOp& item : mix) {
    total_ += static_cast<uint64_t>(item.weight);
    upper_.emplace_back(total_, item.op);
  }
}

Op OpPicker::Pick(uint64_t draw) const {
  if (upper_.size() == 1) return upper_.front().second;
  const uint64_t point = draw % total_;
  for (const auto& [upper, op] : upper_) {
    if (point < upper) return op;
  }
  return upper_.back().second;
}

std::map<std::string, std::string> BenchContext(int pairs) {
  std::map<std::string, std::string> context;
  for (int i = 0; i < pairs; ++i) {
    context.emplace(absl::StrCat("bench-key-", i), absl::StrCat("bench-value-", i));
  }
  return context;
}

std::string BenchKeyPolicy(const std::string& principal) {
  nlohmann::ordered_json statement = {
      {"Sid", "KmsctlBench"},
      {"Effect", "Allow"},
      {"Principal", principal},
      {"Action", {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}},
  };
  nlohmann::ordered_json policy = {{"Statement", nlohmann::ordered_json::array({statement})}};
  return policy.dump();
}

absl::StatusOr<std::string> PrincipalOfCertificateFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream pem;
  if (in) pem << in.rdbuf();
  if (!in || pem.str().empty()) {
    return absl::NotFoundError(absl::StrCat("client certificate ", path, " cannot be read"));
  }
  // kmsd's own rule, so the policy names the principal kmsd will see.
  absl::StatusOr<std::string> principal = PrincipalFromCertificatePem(pem.str());
  if (!principal.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("client certificate ", path, ": ", principal.status().message()));
  }
  return principal;
}

absl::Status ValidateBenchOptions(const BenchOptions& options) {
  if (options.mixes.empty()) return absl::InvalidArgumentError("no op mix to run");
  for (const OpMix& mix : options.mixes) {
    if (mix.empty()) return absl::InvalidArgumentError("an op mix is empty");
  }
  if (options.concurrencies.empty()) return absl::InvalidArgumentError("no concurrency to run");
  for (int concurrency : options.concurrencies) {
    if (concurrency < 1 || concurrency > kMaxConcurrency) {
      return absl::InvalidArgumentError(
          absl::StrCat("concurrency must be 1..", kMaxConcurrency, ", got ", concurrency));
    }
  }
  if (options.warmup < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("warm-up must not be negative");
  }
  if (options.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration must be positive, got ", absl::FormatDuration(options.duration)));
  }
  const bool creates_keys =
      options.key_ids.empty() ||
      std::any_of(options.mixes.begin(), options.mixes.end(),
                  [](const OpMix& mix) { return MixHas(mix, Op::kCreateKey); });
  if (options.key_ids.empty() && (options.keys < 1 || options.keys > 1000000)) {
    return absl::InvalidArgumentError(absl::StrCat("keys must be 1..1000000, got ", options.keys));
  }
  if (creates_keys && options.principal.empty()) {
    return absl::InvalidArgumentError(
        "the principal to let use the bench's keys is unknown; name it (kmsd's principal for "
        "this client: its certificate's URI SAN or CN, or plaintext.principal)");
  }
  if (options.context_pairs < 0 || options.context_pairs > kMaxContextPairs) {
    return absl::InvalidArgumentError(absl::StrCat("context pairs must be 0..", kMaxContextPairs,
                                                   ", got ", options.context_pairs));
  }
  if (options.channels < 1 || options.channels > kMaxChannels) {
    return absl::InvalidArgumentError(
        absl::StrCat("channels must be 1..", kMaxChannels, ", got ", options.channels));
  }
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("client threads must be 1..", kMaxThreads, ", got ", options.threads));
  }
  if (options.setup_concurrency < 1 || options.setup_concurrency > kMaxConcurrency) {
    return absl::InvalidArgumentError(absl::StrCat(
        "set-up concurrency must be 1..", kMaxConcurrency, ", got ", options.setup_concurrency));
  }
  if (options.rounds < 1 || options.rounds > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("rounds must be 1..1000, got ", options.rounds));
  }
  if (options.ciphertexts < 0 || options.ciphertexts > 10000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("ciphertexts must be 0..10000000, got ", options.ciphertexts));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- results

uint64_t OpResult::Shed() const {
  auto it = errors.find(absl::StatusCode::kResourceExhausted);
  return it == errors.end() ? 0 : it->second;
}

uint64_t OpResult::Failed() const {
  uint64_t failed = 0;
  for (const auto& [code, count] : errors) failed += count;
  return failed - Shed();
}

void OpResult::Merge(const OpResult& other) {
  latency.Merge(other.latency);
  ok += other.ok;
  for (const auto& [code, count] : other.errors) errors[code] += count;
  for (const auto& [code, status] : other.first_error) first_error.emplace(code, status);
}

double RunResult::OkPerSecond(const OpResult& result) const {
  const double seconds = absl::ToDoubleSeconds(measured);
  return seconds > 0 ? static_cast<double>(result.ok) / seconds : 0;
}

const RunResult* BenchReport::BaselineFor(int concurrency) const {
  for (const RunResult& run : runs) {
    if (run.baseline && run.concurrency == concurrency) return &run;
  }
  return nullptr;
}

std::optional<double> BenchReport::RatioToBaseline(const RunResult& run) const {
  const RunResult* baseline = BaselineFor(run.concurrency);
  if (baseline == nullptr) return std::nullopt;
  const double base = baseline->OkPerSecond(baseline->total);
  if (base <= 0) return std::nullopt;
  return run.OkPerSecond(run.total) / base;
}

absl::Status CheckEveryRunSucceeded(const BenchReport& report) {
  for (const RunResult& run : report.runs) {
    for (const OpResult& result : run.by_op) {
      if (result.ok > 0) continue;
      const std::string what = absl::StrCat("no ", OpName(result.op), " call succeeded at ",
                                            run.concurrency, " in flight: ");
      absl::Status error = MostFrequentError(result);
      if (error.ok()) error = absl::DeadlineExceededError("no call completed in the window");
      return Prefixed(error, what);
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- the benchmark

absl::StatusOr<BenchReport> RunBench(const Target& target, const BenchOptions& options) {
  KMS_RETURN_IF_ERROR(ValidateBenchOptions(options));
  BenchReport report;
  report.endpoint = target.endpoint;
  report.tls = !target.client.ca_file.empty();
  report.channels = options.channels;
  report.threads = options.threads;
  report.context_pairs = options.context_pairs;
  report.warmup = options.warmup;
  report.duration = options.duration;
  report.rounds = options.rounds;

  KMS_ASSIGN_OR_RETURN(const Channels channels, Connect(target, options.channels));
  Corpus corpus;
  corpus.create_key.set_description("kmsctl bench");
  corpus.create_key.set_policy(BenchKeyPolicy(options.principal));
  v1::Tag* tag = corpus.create_key.add_tags();
  tag->set_tag_key(kBenchTagKey);
  tag->set_tag_value("true");
  const LoadRunner runner(channels, corpus, target.client.timeout, options.threads);

  // ---- keys
  std::vector<std::string> key_ids = options.key_ids;
  if (key_ids.empty()) {
    const int count = options.keys;
    key_ids.resize(static_cast<size_t>(count));
    RunPlan plan;
    plan.mix = {{Op::kCreateKey, 1}};
    plan.concurrency = std::min(options.setup_concurrency, count);
    plan.budget = count;
    plan.on_success = [&key_ids](const PendingCall& call) {
      key_ids[static_cast<size_t>(call.item)] =
          ResponseOf<v1::CreateKeyResponse>(call).key_metadata().key_id();
    };
    Progress(options, absl::StrCat("creating ", count, count == 1 ? " key, " : " keys, ",
                                   plan.concurrency, " CreateKey calls in flight"));
    const Clock::time_point start = Clock::now();
    std::vector<OpResult> results = runner.Run(plan, nullptr, nullptr);
    report.keys.elapsed = absl::FromChrono(Clock::now() - start);
    report.keys.created = true;
    report.keys.concurrency = plan.concurrency;
    report.keys.create_key = std::move(results.front());
    KMS_RETURN_IF_ERROR(
        CheckBudgetedRun(report.keys.create_key, count, "creating the bench's keys"));
  }
  report.keys.used = static_cast<int>(key_ids.size());
  FillKeyRequests(key_ids, BenchContext(options.context_pairs), corpus);

  // ---- blobs for decrypt
  const bool decrypts = std::any_of(options.mixes.begin(), options.mixes.end(),
                                    [](const OpMix& mix) { return MixHas(mix, Op::kDecrypt); });
  if (decrypts) {
    const int count = options.ciphertexts > 0
                          ? options.ciphertexts
                          : std::max(kMinCiphertexts, static_cast<int>(key_ids.size()));
    std::vector<std::string> blobs(static_cast<size_t>(count));
    RunPlan plan;
    plan.mix = {{Op::kGenerateDataKey, 1}};
    plan.concurrency = std::min(options.setup_concurrency, count);
    plan.budget = count;
    plan.on_success = [&blobs](const PendingCall& call) {
      blobs[static_cast<size_t>(call.item)] =
          ResponseOf<v1::GenerateDataKeyResponse>(call).ciphertext_blob();
    };
    Progress(options, absl::StrCat("making ", count, " data keys for decrypt"));
    std::vector<OpResult> results = runner.Run(plan, nullptr, nullptr);
    KMS_RETURN_IF_ERROR(CheckBudgetedRun(results.front(), count, "making data keys for decrypt"));
    const std::map<std::string, std::string> context = BenchContext(options.context_pairs);
    for (std::string& blob : blobs) {
      v1::DecryptRequest& decrypt = corpus.decrypt.emplace_back();
      decrypt.set_ciphertext_blob(std::move(blob));
      decrypt.mutable_encryption_context()->insert(context.begin(), context.end());
    }
    report.ciphertexts = count;
  }

  // ---- the runs: at each concurrency, every round runs the baseline and
  // each mix for its share of the time, so that a change in the machine's
  // load over the minutes lands on all of them alike.
  const OpMix health = {{Op::kHealth, 1}};
  const absl::Duration slice = options.duration / options.rounds;
  const absl::Duration slice_warmup = options.warmup / options.rounds;
  for (int concurrency : options.concurrencies) {
    struct Pending {
      OpMix mix;
      bool baseline;
      std::vector<OpResult> results;
      int64_t window_ns = 0;                               // the measured windows, for rates
      int64_t sampled_ns = 0, client_ns = 0, kmsd_ns = 0;  // for CPU use
      bool kmsd_known = true;
    };
    std::vector<Pending> runs;
    if (options.baseline) runs.push_back({health, true, {}});
    for (const OpMix& mix : options.mixes) runs.push_back({mix, false, {}});
    for (int round = 0; round < options.rounds; ++round) {
      for (Pending& pending : runs) {
        Progress(options,
                 absl::StrCat(OpMixName(pending.mix), " at ", concurrency, " in flight: ",
                              Seconds(slice_warmup), " warm-up, ", Seconds(slice), " measured",
                              options.rounds > 1
                                  ? absl::StrCat(" (round ", round + 1, " of ", options.rounds, ")")
                                  : ""));
        RunPlan plan;
        plan.mix = pending.mix;
        plan.concurrency = concurrency;
        plan.measure_from = Clock::now() + absl::ToChronoNanoseconds(slice_warmup);
        plan.measure_until = plan.measure_from + absl::ToChronoNanoseconds(slice);
        CpuSample before, after;
        std::vector<OpResult> results = runner.Run(
            plan, [&] { before = SampleCpu(options.kmsd_pid); },
            [&] { after = SampleCpu(options.kmsd_pid); });
        if (pending.results.empty()) {
          pending.results = std::move(results);
        } else {
          for (size_t i = 0; i < results.size(); ++i) pending.results[i].Merge(results[i]);
        }
        pending.window_ns += Nanos(plan.measure_until - plan.measure_from);
        pending.sampled_ns += Nanos(after.at - before.at);
        pending.client_ns += after.self_ns - before.self_ns;
        if (before.kmsd_ns.has_value() && after.kmsd_ns.has_value()) {
          pending.kmsd_ns += *after.kmsd_ns - *before.kmsd_ns;
        } else {
          pending.kmsd_known = false;
        }
      }
    }
    for (Pending& pending : runs) {
      RunResult& run = report.runs.emplace_back();
      run.concurrency = concurrency;
      run.mix = pending.mix;
      run.baseline = pending.baseline;
      run.measured = absl::Nanoseconds(pending.window_ns);
      run.total.op = pending.mix.front().op;  // not shown: the total is of every op
      for (const OpResult& result : pending.results) run.total.Merge(result);
      run.by_op = std::move(pending.results);
      if (pending.sampled_ns > 0) {
        const double wall = static_cast<double>(pending.sampled_ns);
        run.client_cpu_percent = 100.0 * static_cast<double>(pending.client_ns) / wall;
        if (pending.kmsd_known) {
          run.kmsd_cpu_percent = 100.0 * static_cast<double>(pending.kmsd_ns) / wall;
        }
      }
    }
  }
  return report;
}

// ---------------------------------------------------------------- formatting

namespace {

std::string Millis(int64_t nanos) {
  return absl::StrFormat("%.3f", static_cast<double>(nanos) / 1e6);
}

std::string Rate(double per_second) { return absl::StrFormat("%.1f", per_second); }

std::string Percent(double percent) { return absl::StrFormat("%.0f%%", percent); }

// Columns padded to the widest cell, separated by two spaces; `right` says
// which columns are numbers, aligned right.
std::string AlignedTable(const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& right) {
  std::vector<size_t> width(right.size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      const std::string pad(width[i] - row[i].size(), ' ');
      line += right[i] ? pad + row[i] : row[i] + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

// "CODE: ExceptionName: message", the name only if kmsd sent one.
std::string DescribeError(const absl::Status& status) {
  std::string out = CodeName(status.code());
  if (status.GetPayload(kErrorTypePayloadUrl).has_value()) {
    absl::StrAppend(&out, ": ", ErrorTypeOf(status));
  }
  absl::StrAppend(&out, ": ", status.message());
  return out;
}

nlohmann::ordered_json OpJson(const RunResult* run, const OpResult& result,
                              absl::Duration measured) {
  nlohmann::ordered_json json;
  json["op"] = OpName(result.op);
  json["ok"] = result.ok;
  const double seconds = absl::ToDoubleSeconds(measured);
  json["ok_per_second"] = run != nullptr ? run->OkPerSecond(result)
                          : seconds > 0  ? static_cast<double>(result.ok) / seconds
                                         : 0.0;
  nlohmann::ordered_json latency;
  latency["p50"] = static_cast<double>(result.latency.Percentile(50)) / 1e6;
  latency["p99"] = static_cast<double>(result.latency.Percentile(99)) / 1e6;
  latency["p999"] = static_cast<double>(result.latency.Percentile(99.9)) / 1e6;
  latency["max"] = static_cast<double>(result.latency.Max()) / 1e6;
  latency["mean"] = result.latency.Mean() / 1e6;
  json["latency_ms"] = latency;
  json["shed"] = result.Shed();
  json["failed"] = result.Failed();
  nlohmann::ordered_json errors = nlohmann::ordered_json::object();
  for (const auto& [code, count] : result.errors) {
    errors[CodeName(code)] = {{"count", count},
                              {"first", DescribeError(result.first_error.at(code))}};
  }
  json["errors"] = errors;
  return json;
}

}  // namespace

std::string FormatBenchReport(const BenchReport& report) {
  std::string out =
      absl::StrCat("kmsd ", report.endpoint, report.started_daemon ? " (started for this run)" : "",
                   ", ", report.tls ? "mTLS" : "plaintext", ", ", report.channels,
                   report.channels == 1 ? " channel, " : " channels, ", report.threads,
                   report.threads == 1 ? " client thread\n" : " client threads\n");
  const KeySetupResult& keys = report.keys;
  if (keys.created) {
    const double seconds = absl::ToDoubleSeconds(keys.elapsed);
    absl::StrAppend(&out, "keys: ", keys.used, " created in ", absl::StrFormat("%.2f", seconds),
                    " s: ", Rate(seconds > 0 ? keys.used / seconds : 0), " CreateKey/s at ",
                    keys.concurrency, " in flight (p50 ",
                    Millis(keys.create_key.latency.Percentile(50)), " ms, p99 ",
                    Millis(keys.create_key.latency.Percentile(99)), " ms)\n");
  } else {
    absl::StrAppend(&out, "keys: ", keys.used, " given\n");
  }
  if (report.ciphertexts > 0) {
    absl::StrAppend(&out, "decrypt: ", report.ciphertexts,
                    " blobs made by GenerateDataKey beforehand\n");
  }
  absl::StrAppend(&out, "requests: AES_256 data keys, ", report.context_pairs,
                  "-pair encryption context; each run ", Seconds(report.warmup), " warm-up, ",
                  Seconds(report.duration), " measured",
                  report.rounds > 1 ? absl::StrCat(", in ", report.rounds, " rounds") : "", "\n\n");

  std::vector<std::vector<std::string>> rows = {{"in flight", "mix", "op", "ok/s", "p50 ms",
                                                 "p99 ms", "p99.9 ms", "max ms", "failed", "shed",
                                                 "vs health", "cpu kmsctl", "cpu kmsd"}};
  const std::vector<bool> right = {true, false, false, true, true, true, true,
                                   true, true,  true,  true, true, true};
  const auto row = [&](const RunResult& run, const OpResult& result, const std::string& op,
                       bool whole_run) {
    const std::optional<double> ratio = report.RatioToBaseline(run);
    rows.push_back({absl::StrCat(run.concurrency), OpMixName(run.mix), op,
                    Rate(run.OkPerSecond(result)), Millis(result.latency.Percentile(50)),
                    Millis(result.latency.Percentile(99)), Millis(result.latency.Percentile(99.9)),
                    Millis(result.latency.Max()), absl::StrCat(result.Failed()),
                    absl::StrCat(result.Shed()),
                    whole_run && ratio.has_value() ? absl::StrFormat("%.2f", *ratio) : "-",
                    whole_run ? Percent(run.client_cpu_percent) : "",
                    whole_run && run.kmsd_cpu_percent.has_value() ? Percent(*run.kmsd_cpu_percent)
                    : whole_run                                   ? "-"
                                                                  : ""});
  };
  std::string errors;
  for (const RunResult& run : report.runs) {
    if (run.by_op.size() == 1) {
      row(run, run.by_op.front(), OpName(run.by_op.front().op), true);
    } else {
      row(run, run.total, "all", true);
      for (const OpResult& result : run.by_op) row(run, result, OpName(result.op), false);
    }
    for (const OpResult& result : run.by_op) {
      for (const auto& [code, count] : result.errors) {
        absl::StrAppend(&errors, "  ", run.concurrency, " in flight, ", OpName(result.op), ": ",
                        count, " x ", DescribeError(result.first_error.at(code)),
                        code == absl::StatusCode::kResourceExhausted ? " (shed)" : "", "\n");
      }
    }
  }
  out += AlignedTable(rows, right);
  if (!errors.empty()) absl::StrAppend(&out, "\nerrors (count x first seen):\n", errors);
  return out;
}

std::string FormatBenchReportJson(const BenchReport& report) {
  nlohmann::ordered_json json;
  json["endpoint"] = report.endpoint;
  json["tls"] = report.tls;
  json["started_daemon"] = report.started_daemon;
  json["channels"] = report.channels;
  json["client_threads"] = report.threads;
  json["context_pairs"] = report.context_pairs;
  json["warmup_seconds"] = absl::ToDoubleSeconds(report.warmup);
  json["duration_seconds"] = absl::ToDoubleSeconds(report.duration);
  json["rounds"] = report.rounds;
  nlohmann::ordered_json keys;
  keys["count"] = report.keys.used;
  keys["created"] = report.keys.created;
  if (report.keys.created) {
    const double seconds = absl::ToDoubleSeconds(report.keys.elapsed);
    keys["create_seconds"] = seconds;
    keys["create_per_second"] = seconds > 0 ? report.keys.used / seconds : 0.0;
    keys["create_concurrency"] = report.keys.concurrency;
    keys["create_key"] = OpJson(nullptr, report.keys.create_key, report.keys.elapsed);
  }
  json["keys"] = keys;
  json["ciphertexts"] = report.ciphertexts;
  nlohmann::ordered_json runs = nlohmann::ordered_json::array();
  for (const RunResult& run : report.runs) {
    nlohmann::ordered_json entry;
    entry["concurrency"] = run.concurrency;
    entry["mix"] = OpMixName(run.mix);
    entry["baseline"] = run.baseline;
    entry["measured_seconds"] = absl::ToDoubleSeconds(run.measured);
    nlohmann::ordered_json total = OpJson(&run, run.total, run.measured);
    total.erase("op");
    entry.update(total);
    const std::optional<double> ratio = report.RatioToBaseline(run);
    entry["ratio_to_baseline"] = ratio.has_value() ? nlohmann::ordered_json(*ratio) : nullptr;
    entry["client_cpu_percent"] = run.client_cpu_percent;
    entry["kmsd_cpu_percent"] =
        run.kmsd_cpu_percent.has_value() ? nlohmann::ordered_json(*run.kmsd_cpu_percent) : nullptr;
    nlohmann::ordered_json by_op = nlohmann::ordered_json::array();
    for (const OpResult& result : run.by_op) by_op.push_back(OpJson(&run, result, run.measured));
    entry["by_op"] = by_op;
    runs.push_back(entry);
  }
  json["runs"] = runs;
  return json.dump() + "\n";
}

}  // namespace kms::bench
