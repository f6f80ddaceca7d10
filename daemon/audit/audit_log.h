// AuditLog: kmsd's hash-chained, fail-closed audit log writer.
//
// Callers Append an Entry (one per RPC, one per PKCS#11 call made for it) and
// get its sequence number at once; before answering, the RPC calls
// WaitDurable(seq) (or WhenDurable, its callback form), which returns OK only
// once the record is fdatasync'ed.
// One writer thread drains everything appended so far, formats and chains it
// (audit_record.h), writes it with one write(2) and one fdatasync, then wakes
// every waiter: concurrent callers share one fdatasync (group commit).
// The writer starts a pass when someone waits for a record not yet written,
// not on every Append: a call's PKCS#11 records then go out in the same
// write and fdatasync as its rpc record (which waits), instead of costing
// a sync each while the call is still running. Records nobody waits for
// (background work) are written within `unwaited_write_delay`. The file is
// sequential, so a durable record means every earlier one is durable too.
//
// Every `checkpoint_every_records` records, and every `checkpoint_interval`
// (by the injected Clock) if records were added since the last one, a
// "checkpoint" record is inserted whose signature (Signer, an ECDSA P-256 key
// in the HSM) covers its own body and so, through the chain, every record
// before it. If the Signer fails, the record is written as an "event"
// ("checkpoint not signed: ...") so the chain stays whole; the next
// checkpoint covers the same records.
//
// Fail closed: when a write or fdatasync fails, Healthy() turns kUnavailable
// and WaitDurable fails for every record not yet durable; the records stay
// queued in order, and every retry_interval the writer truncates the file to
// its last durable size, rewrites them and syncs (reopening the file first
// after an fdatasync failure). Records are never dropped or reordered; seq
// stays gapless. A caller whose WaitDurable failed must not answer with a
// result; its record may still become durable later (the log then says more
// than was answered, never less).
//
// Thread-safe. Owns its writer thread; Close() (or the destructor) stops it.
#ifndef KMS_DAEMON_AUDIT_AUDIT_LOG_H_
#define KMS_DAEMON_AUDIT_AUDIT_LOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/audit/audit_record.h"
#include "daemon/common/clock.h"

namespace kms::audit {

// The log file as the writer sees it: the one seam to the disk, wrapped by
// tests to inject failures (as LevelDB's ErrorEnv wraps its Env). Used by one
// thread at a time.
// Errors: kUnavailable with the path and the strerror text.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual absl::Status Append(absl::string_view bytes) = 0;  // all of it, at the end
  virtual absl::Status Sync() = 0;                           // fdatasync
  virtual absl::Status TruncateTo(uint64_t size) = 0;
  virtual absl::Status Reopen() = 0;  // close and open the same path again
  virtual absl::StatusOr<uint64_t> Size() = 0;
};

// The most the writer hands the sink between two Syncs. After a crash, only
// the last write can be unfinished, so recovery looks for its remains in
// the file's last kMaxUnsyncedBytes (plus any reserved zeros after them).
inline constexpr uint64_t kMaxUnsyncedBytes = 1 << 20;

// The real file, created 0600 if missing (and its directory fsync'ed then,
// so the new name is durable).
//
// With preallocate_bytes > 0 the file is kept that much longer than its
// records, in zero bytes written and synced ahead of time, and records
// overwrite those zeros in place. An fdatasync then only has data to write:
// appending would also make it write the new size and the block allocation,
// which on ext4 takes about twice as long. The zeros past the last record go
// when the sink is destroyed (a clean stop); after a crash, Open finds the
// end by the first zero byte, which no record contains. If the zeros cannot
// be written (a full disk), records are appended as without preallocation.
absl::StatusOr<std::unique_ptr<Sink>> OpenFileSink(const std::string& path,
                                                   uint64_t preallocate_bytes = 0);

class AuditLog {
 public:
  struct Options {
    std::string path;                          // the log file; created 0600 if missing
    uint64_t checkpoint_every_records = 1000;  // N (0: never by count)
    absl::Duration checkpoint_interval = absl::Seconds(60);  // T (only if records were added)
    absl::Duration retry_interval = absl::Seconds(1);        // after a write failure
    // How long a record may stay in memory while nobody waits for it or a
    // later one. A kill -9 loses such records (never those of an answered
    // call: its answer waited for its rpc record, and so for all before).
    absl::Duration unwaited_write_delay = absl::Milliseconds(20);
    // Zero bytes kept written ahead of the last record (see OpenFileSink);
    // 0 appends instead.
    uint64_t preallocate_bytes = 0;
  };
  // Signs body bytes for a checkpoint: returns the DER ECDSA signature.
  using Signer = std::function<absl::StatusOr<std::string>(absl::string_view message)>;

  // Opens (or creates) the log at options.path and starts the writer. An
  // existing file's unfinished end is truncated away: zeros reserved ahead
  // (see OpenFileSink) silently, and with a WARNING a torn last line (no
  // '\n') or anything after a zero byte in the last kMaxUnsyncedBytes (a
  // write cut by a crash, never acknowledged). The last record gives the
  // next seq and prev. Then an "event" record "audit log opened" is
  // written and made durable. `sink` replaces the real file (tests); the file
  // at options.path is still what Open reads to recover.
  // Errors: kInvalidArgument (empty path or fingerprint, no signer),
  // kDataLoss (the last complete line does not parse or its hash does not
  // match: the message names the line number; an operator must look),
  // kUnavailable (the file cannot be opened, read or written).
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(Options options, const Clock& clock,
                                                        Signer signer,
                                                        std::string signing_key_fingerprint,
                                                        std::unique_ptr<Sink> sink = nullptr);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Queues `entry`, assigning its seq and time; never waits for I/O. It is
  // written with the next record someone waits for, or within
  // unwaited_write_delay. An entry of type kCheckpoint asks for a checkpoint
  // (its other fields are ignored).
  uint64_t Append(Entry entry);

  // Blocks until record `seq` is durable: OK. kUnavailable (with the reason)
  // as soon as the log is failing or closed while `seq` is not durable.
  absl::Status WaitDurable(uint64_t seq);

  // WaitDurable without the wait, for callers that must not block a thread
  // (the gRPC callback handlers): calls `done` with what WaitDurable would
  // return, exactly once. If that is known now, `done` runs at once on this
  // thread; otherwise on the writer thread, after the pass that settles it,
  // in seq order and outside the log's lock. `done` must be quick (it
  // delays the next group commit) and may Append but not wait on the log.
  using DurableCallback = std::function<void(absl::Status)>;
  void WhenDurable(uint64_t seq, DurableCallback done);

  // kUnavailable (with the reason) while writes fail; OK otherwise.
  absl::Status Healthy() const;

  // Writes a checkpoint now and waits for it to be durable. Errors:
  // kUnavailable (the log is failing or closed), or the Signer's error (an
  // unsigned "event" record was written in its place).
  absl::Status Checkpoint();

  // Test hook, instead of sleeping: runs the timers now, as if the writer had
  // woken (a checkpoint if checkpoint_interval has passed by the Clock and
  // records were added; a retry at once if the log is failing), and returns
  // when that pass of the writer is done.
  void Tick();

  // A final checkpoint if records were added since the last one, then flush
  // and stop the writer. Idempotent. Records appended afterwards are never
  // written (their WaitDurable fails).
  void Close();

  uint64_t last_sequence() const;  // the last seq assigned
  uint64_t durable_sequence() const;

  // Visits the durable records with seq > after_seq, in order (visit returns
  // false to stop). Errors as ReadAuditLog.
  absl::Status ReadDurable(uint64_t after_seq,
                           const std::function<bool(const ParsedRecord&)>& visit) const;

 private:
  struct Pending {
    Entry entry;
    uint64_t seq;
    absl::Time time;
    bool report = false;  // an explicit Checkpoint() waits for its outcome
  };

  AuditLog(Options options, const Clock& clock, Signer signer, std::string fingerprint,
           std::unique_ptr<Sink> sink);

  uint64_t EnqueueLocked(Entry entry, bool report = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeScheduleTimedCheckpointLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriterLoop();
  std::string FormatPending(Pending& p);  // writer thread only
  absl::Status WriteOut();                // writer thread only
  // Records through `seq` are waited for: wakes an idle writer if that is news.
  void WantDurableLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What a waiter for `seq` gets once settled; nullopt while it must wait.
  std::optional<absl::Status> SettledLocked(uint64_t seq) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const Clock& clock_;
  const Signer signer_;
  const std::string fingerprint_;

  mutable absl::Mutex mu_;
  std::vector<Pending> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t durable_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t wanted_seq_ ABSL_GUARDED_BY(mu_) = 0;  // the highest seq anyone waited for
  uint64_t records_since_checkpoint_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_checkpoint_time_ ABSL_GUARDED_BY(mu_);
  absl::Status health_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_idle_ ABSL_GUARDED_BY(mu_) = false;  // waiting on work_cv_
  // The writer waits on work_cv_ (records, a tick, Close); callers wait on
  // durable_cv_, signalled after every pass. Condition variables rather than
  // absl::Condition, so an Append's unlock does not re-evaluate 64 waiters.
  absl::CondVar work_cv_;
  absl::CondVar durable_cv_;
  uint64_t tick_requested_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t tick_done_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, absl::Status> checkpoint_results_ ABSL_GUARDED_BY(mu_);
  // WhenDurable callbacks not yet settled, by seq.
  std::multimap<uint64_t, DurableCallback> durable_callbacks_ ABSL_GUARDED_BY(mu_);

  // Writer thread only.
  std::unique_ptr<Sink> sink_;
  std::string last_hash_;
  std::vector<std::pair<uint64_t, absl::Status>> signer_results_;  // for Checkpoint()
  std::string unwritten_;          // formatted records not yet durable, in order
  uint64_t unwritten_last_seq_ = 0;
  uint64_t durable_size_ = 0;
  bool need_rewrite_ = false;      // a failed attempt may have left bytes past durable_size_
  bool need_reopen_ = false;       // after an fdatasync failure

  absl::Mutex close_mu_;           // serialises Close()
  std::thread writer_;
};

// Visits the complete records of the log at `path` with seq > after_seq, in
// order (visit returns false to stop). A trailing partial line is ignored.
// From another process nothing says which records are durable; in kmsd use
// AuditLog::ReadDurable.
// Errors: kNotFound (no such file), kUnavailable (read error), kDataLoss (a
// line does not parse: the message names its line number).
absl::Status ReadAuditLog(const std::string& path, uint64_t after_seq,
                          const std::function<bool(const ParsedRecord&)>& visit);

}  // namespace kms::audit

#endif  // KMS_DAEMON_AUDIT_AUDIT_LOG_H_
