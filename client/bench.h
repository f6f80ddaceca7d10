// The load generator behind `kmsctl bench`: closed-loop runs of a mix of
// kmsd operations at a fixed number of requests in flight, with per-request
// latency, against grpc.health.v1.Health/Check as the trivial-RPC baseline
// measured in the same invocation.
//
// A benchmark (RunBench) goes:
//  1. connect `channels` channels (each its own HTTP/2 connection) and wait
//     until they are ready;
//  2. keys: use BenchOptions::key_ids, or create `keys` keys (CreateKey with
//     a policy letting `principal` Encrypt, Decrypt and GenerateDataKey with
//     them), timing the creation (CreateKey/s);
//  3. if a mix has decrypt: make `ciphertexts` data keys with GenerateDataKey
//     (spread over the keys) whose blobs the decrypt requests carry;
//  4. for each concurrency: a Health/Check run (the baseline, unless turned
//     off), then one run per mix. A run is `warmup` of load whose results
//     are dropped, then `duration` measured: a call counts if it completes
//     inside the measured window. With `rounds` > 1 each run is cut into
//     that many slices (warm-up and measured time alike), and the rounds
//     take turns (baseline, mix 1, mix 2, baseline, ...), so that a change
//     in the machine's other load falls on the baseline and the mixes alike;
//     a run's figures add up its slices.
// Each request picks its op by weight and its key (or ciphertext) uniformly
// at random. GenerateDataKey asks for AES_256 under an encryption context of
// `context_pairs` pairs; Encrypt sends 32 bytes under the same context.
//
// The load comes from gRPC's completion-queue API: `threads` threads, each
// polling its own queue and owning a share of the in-flight requests, so the
// client stays cheap on the CPU it shares with a local kmsd. Data keys that
// come back are wiped and dropped.
//
// Thread-compatible: RunBench starts and joins its own threads.
#ifndef KMS_CLIENT_BENCH_H_
#define KMS_CLIENT_BENCH_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/kms_client.h"
#include "client/latency_histogram.h"

namespace kms::bench {

enum class Op {
  kGenerateDataKey,  // "generate-data-key"
  kDecrypt,          // "decrypt": of blobs made before the runs
  kEncrypt,          // "encrypt": 32 bytes
  kCreateKey,        // "create-key": keys with the bench policy, kept
  kHealth,           // "health": grpc.health.v1.Health/Check, the baseline
};
inline constexpr int kOpCount = 5;

// The op's name on the command line and in reports.
std::string OpName(Op op);
// nullopt for anything but an exact OpName.
std::optional<Op> ParseOp(absl::string_view name);

struct WeightedOp {
  Op op;
  int weight;  // 1..1000000
};
// A mix: ops in the order given, each at most once.
using OpMix = std::vector<WeightedOp>;

// Parses "generate-data-key=3,decrypt=1"; "decrypt" alone means weight 1.
// Errors: kInvalidArgument naming the offending item: an unknown op (the
// message lists the known ones), a weight that is not an integer in
// 1..1000000, an op given twice, an empty item or text.
absl::StatusOr<OpMix> ParseOpMix(absl::string_view text);
// The canonical text of a mix: "decrypt" for one op, else every op with its
// weight, "generate-data-key=1,decrypt=1".
std::string OpMixName(const OpMix& mix);
bool MixHas(const OpMix& mix, Op op);

// Parses a duration: "10s", "500ms", "1m30s" (absl::ParseDuration), or a bare
// number of seconds ("2.5"). Errors: kInvalidArgument if it parses as neither
// or is negative.
absl::StatusOr<absl::Duration> ParseBenchDuration(absl::string_view text);

// Picks an op of a mix in proportion to the weights. Immutable; thread-safe.
class OpPicker {
 public:
  explicit OpPicker(const OpMix& mix);
  uint64_t TotalWeight() const { return total_; }
  // The op for `draw`, taken modulo TotalWeight(): draws 0..w1-1 give the
  // first op, w1..w1+w2-1 the second, and so on.
  Op Pick(uint64_t draw) const;

 private:
  std::vector<std::pair<uint64_t, Op>> upper_;  // cumulative weight, op
  uint64_t total_ = 0;
};

// The encryption context of the bench's requests: `pairs` pairs,
// "bench-key-<i>" -> "bench-value-<i>".
std::map<std::string, std::string> BenchContext(int pairs);

// The key policy of the keys the bench creates: `principal` may Encrypt,
// Decrypt and GenerateDataKey; management is left to kmsd's administrators.
std::string BenchKeyPolicy(const std::string& principal);

// The principal kmsd names a caller by from its client certificate, by
// kmsd's rule (daemon/server/peer_identity.h): the first URI SAN, else the
// subject CN. Errors: kNotFound if the file cannot be read;
// kInvalidArgument if it is not a PEM certificate or names no principal.
absl::StatusOr<std::string> PrincipalOfCertificateFile(const std::string& path);

struct BenchOptions {
  std::vector<OpMix> mixes;        // run in this order, each on its own
  std::vector<int> concurrencies;  // requests in flight, 1..10000
  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
  bool baseline = true;              // Health/Check run at each concurrency
  int rounds = 1;                    // 1..1000; see the file comment
  int keys = 1;                      // keys to create, if key_ids is empty
  std::vector<std::string> key_ids;  // existing keys to use instead
  std::string principal;             // for BenchKeyPolicy; required to create keys
  int context_pairs = 3;             // 0..64
  int channels = 2;                  // 1..64
  int threads = 1;                   // completion-queue threads, 1..64
  int setup_concurrency = 16;        // in flight while creating keys and blobs
  int ciphertexts = 0;               // blobs for decrypt; 0: max(keys, 256)
  pid_t kmsd_pid = 0;                // a local kmsd whose CPU time to report; 0: none
  // Progress lines for people ("creating 1000 keys"), without newline.
  std::function<void(const std::string&)> progress;
};

// Checks what can be checked without kmsd. Errors: kInvalidArgument naming
// the option.
absl::Status ValidateBenchOptions(const BenchOptions& options);

// The outcome of one op in one run (or one setup step).
struct OpResult {
  Op op = Op::kHealth;
  LatencyHistogram latency;  // successful calls only
  uint64_t ok = 0;
  std::map<absl::StatusCode, uint64_t> errors;  // every failed call, by code
  // The first failure of each code, as kmsd (or the channel) reported it.
  std::map<absl::StatusCode, absl::Status> first_error;

  // Calls failed with RESOURCE_EXHAUSTED: kmsd shedding load.
  uint64_t Shed() const;
  // Failed calls of any other code.
  uint64_t Failed() const;
  void Merge(const OpResult& other);
};

struct RunResult {
  int concurrency = 0;
  OpMix mix;
  bool baseline = false;        // the Health/Check run
  absl::Duration measured;      // the measured window
  OpResult total;               // every op of the mix together
  std::vector<OpResult> by_op;  // one per op of the mix, in mix order
  // CPU time used during the measured window, in % of one core; nullopt
  // if unknown (kmsd not started by us, or its /proc entry unreadable).
  double client_cpu_percent = 0;
  std::optional<double> kmsd_cpu_percent;

  double OkPerSecond(const OpResult& result) const;
};

struct KeySetupResult {
  int used = 0;            // keys the runs pick from
  bool created = false;    // false: BenchOptions::key_ids
  absl::Duration elapsed;  // creating them
  int concurrency = 0;
  OpResult create_key;  // the CreateKey calls
};

struct BenchReport {
  std::string endpoint;
  bool tls = false;
  bool started_daemon = false;
  int channels = 0;
  int threads = 0;
  int context_pairs = 0;
  absl::Duration warmup, duration;  // of each run, all its rounds together
  int rounds = 1;
  KeySetupResult keys;
  int ciphertexts = 0;  // blobs prepared for decrypt
  std::vector<RunResult> runs;

  // The baseline run at `concurrency`; nullptr if none.
  const RunResult* BaselineFor(int concurrency) const;
  // `run`'s successful calls per second over its baseline's; nullopt without
  // a baseline or when the baseline had none.
  std::optional<double> RatioToBaseline(const RunResult& run) const;
};

struct Target {
  std::string endpoint;
  client::ClientOptions client;  // TLS files; timeout is every call's deadline
};

// Runs the benchmark described in the file comment.
// Errors: kInvalidArgument (options, see ValidateBenchOptions); kUnavailable
// if a channel does not connect within the call timeout; the first error of
// a failed CreateKey or GenerateDataKey while setting up (as kmsd returned
// it, e.g. AccessDeniedException when `principal` is not the caller). Errors
// during the runs are counted in the report, not returned.
absl::StatusOr<BenchReport> RunBench(const Target& target, const BenchOptions& options);

// The first run in which no call succeeded, as an error carrying that run's
// first failure; OK if every run had a success.
absl::Status CheckEveryRunSucceeded(const BenchReport& report);

// The report for people: a header, one table row per op and run, then the
// errors. Latencies in milliseconds.
std::string FormatBenchReport(const BenchReport& report);
// The report as one JSON object and a newline (documented in
// docs-draft/bench.md).
std::string FormatBenchReportJson(const BenchReport& report);

}  // namespace kms::bench

#endif  // KMS_CLIENT_BENCH_H_
