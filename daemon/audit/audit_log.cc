#include "daemon/audit/audit_log.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/common/logging.h"
#include "daemon/common/status_macros.h"

namespace kms::audit {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path, int err) {
  return absl::UnavailableError(absl::StrCat(what, " audit log ", path, ": ", std::strerror(err)));
}

absl::Status SyncDirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open the directory of", path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync the directory of", path, err);
  return absl::OkStatus();
}

class FileSink final : public Sink {
 public:
  FileSink(std::string path, uint64_t preallocate_bytes)
      : path_(std::move(path)), preallocate_bytes_(preallocate_bytes) {}
  ~FileSink() override {
    if (fd_ < 0) return;
    // A clean stop leaves no zeros behind: the file is its records.
    if (reserved_end_ > end_ && ::ftruncate(fd_, static_cast<off_t>(end_)) != 0) {
      KMS_LOG(WARNING) << "audit log " << path_ << ": could not remove the " << reserved_end_ - end_
                       << " zero bytes reserved after its last record: " << std::strerror(errno)
                       << " (the next start removes them)";
    }
    ::close(fd_);
  }

  absl::Status Open() {
    struct stat st;
    const bool existed = ::stat(path_.c_str(), &st) == 0;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) return ErrnoError("open", path_, errno);
    KMS_ASSIGN_OR_RETURN(end_, FileSize());
    reserved_end_ = end_;
    if (!existed) return SyncDirectoryOf(path_);
    return absl::OkStatus();
  }

  absl::Status Append(absl::string_view bytes) override {
    const uint64_t needed = end_ + bytes.size();
    if (needed > reserved_end_ && preallocate_bytes_ > 0 && end_ >= next_reserve_try_) {
      Reserve(needed + preallocate_bytes_);
    }
    KMS_RETURN_IF_ERROR(WriteAt(bytes, end_));
    end_ = needed;
    reserved_end_ = std::max(reserved_end_, end_);
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    if (::fdatasync(fd_) != 0) return ErrnoError("fdatasync", path_, errno);
    return absl::OkStatus();
  }
  absl::Status TruncateTo(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return ErrnoError("truncate", path_, errno);
    end_ = reserved_end_ = size;
    return absl::OkStatus();
  }
  absl::Status Reopen() override {
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) return ErrnoError("reopen", path_, errno);
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> Size() override { return end_; }

 private:
  absl::StatusOr<uint64_t> FileSize() {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return ErrnoError("stat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  absl::Status WriteAt(absl::string_view bytes, uint64_t offset) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                                 static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("write", path_, errno);
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  // Writes zeros from the reserved end up to `target` and syncs them, so
  // that the records written over them later need no metadata on disk. The
  // zeros must be durable before any record lands on them: otherwise a
  // crash could leave the new blocks holding whatever the disk had there,
  // where recovery expects zeros. On failure (a full disk), the partial
  // zeros are cut off again and the caller appends without a reserve.
  void Reserve(uint64_t target) {
    static const std::string kZeros(64 * 1024, '\0');
    absl::Status status;
    for (uint64_t at = reserved_end_; at < target && status.ok();) {
      const uint64_t n = std::min<uint64_t>(target - at, kZeros.size());
      status = WriteAt(absl::string_view(kZeros.data(), n), at);
      at += n;
    }
    if (status.ok()) status = Sync();
    if (status.ok()) {
      if (reserve_failing_) KMS_LOG(INFO) << "audit log " << path_ << ": reserving ahead again";
      reserve_failing_ = false;
      reserved_end_ = target;
      return;
    }
    if (!reserve_failing_) {
      KMS_LOG(WARNING) << "audit log " << path_ << ": cannot reserve " << target - reserved_end_
                       << " bytes ahead (" << status.message()
                       << "); appending records without a reserve until it can";
    }
    reserve_failing_ = true;
    next_reserve_try_ = end_ + preallocate_bytes_;  // not on every write of a full disk
    (void)::ftruncate(fd_, static_cast<off_t>(reserved_end_));
  }

  const std::string path_;
  const uint64_t preallocate_bytes_;
  int fd_ = -1;
  uint64_t end_ = 0;           // where the next record goes
  uint64_t reserved_end_ = 0;  // the file's size: end_ plus zeros written ahead
  bool reserve_failing_ = false;
  uint64_t next_reserve_try_ = 0;  // after a failure, try again once end_ is here
};

// What Open learns from an existing file.
struct Tail {
  uint64_t file_size = 0;
  uint64_t complete_size = 0;  // bytes up to and including the last record's '\n'
  uint64_t torn_bytes = 0;     // bytes of an unfinished write after it
  std::string last_line;       // the last complete line, without '\n'; empty if none
  uint64_t last_line_start = 0;
};

// Reads [start, end) of fd into *buf.
absl::Status ReadRange(int fd, const std::string& path, uint64_t start, uint64_t end,
                       std::string* buf) {
  buf->resize(end - start);
  size_t got = 0;
  while (got < buf->size()) {
    const ssize_t n =
        ::pread(fd, buf->data() + got, buf->size() - got, static_cast<off_t>(start + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("read", path, n < 0 ? errno : EIO);
    got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<Tail> ReadTailOf(int fd, const std::string& path) {
  Tail tail;
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError("stat", path, errno);
  tail.file_size = static_cast<uint64_t>(st.st_size);
  std::string buf;

  // 1. Skip the zeros reserved ahead of the records.
  constexpr uint64_t kStep = 64 * 1024;
  uint64_t data_end = tail.file_size;
  while (data_end > 0) {
    const uint64_t start = data_end > kStep ? data_end - kStep : 0;
    KMS_RETURN_IF_ERROR(ReadRange(fd, path, start, data_end, &buf));
    const size_t last = buf.find_last_not_of('\0');
    if (last != std::string::npos) {
      data_end = start + last + 1;
      break;
    }
    data_end = start;
  }

  // 2. Only the last write can be unfinished, and it is at most
  // kMaxUnsyncedBytes: everything before it was synced. No record holds a
  // zero byte, so one within its reach (a page the crash kept from the disk)
  // ends the records there. The byte before the window is included so that
  // a write starting right after a '\n' still finds it.
  uint64_t end = data_end;
  {
    const uint64_t start = data_end > kMaxUnsyncedBytes + 1 ? data_end - kMaxUnsyncedBytes - 1 : 0;
    KMS_RETURN_IF_ERROR(ReadRange(fd, path, start, data_end, &buf));
    const size_t zero = buf.find('\0');
    if (zero != std::string::npos) end = start + zero;
  }

  // 3. Read ever larger pieces back from `end` until the last complete line
  // (two '\n's, or one and the file's start) is inside.
  uint64_t chunk = kStep;
  while (true) {
    const uint64_t start = end > chunk ? end - chunk : 0;
    KMS_RETURN_IF_ERROR(ReadRange(fd, path, start, end, &buf));
    const size_t last_nl = buf.rfind('\n');
    if (last_nl == std::string::npos && start > 0) {
      chunk *= 2;
      continue;
    }
    if (last_nl == std::string::npos) break;  // no complete line at all
    const size_t prev_nl = last_nl == 0 ? std::string::npos : buf.rfind('\n', last_nl - 1);
    if (prev_nl == std::string::npos && start > 0) {
      chunk *= 2;
      continue;
    }
    const size_t line_start = prev_nl == std::string::npos ? 0 : prev_nl + 1;
    tail.complete_size = start + last_nl + 1;
    tail.last_line = buf.substr(line_start, last_nl - line_start);
    tail.last_line_start = start + line_start;
    break;
  }
  tail.torn_bytes = data_end - tail.complete_size;
  return tail;
}

absl::StatusOr<Tail> ReadTail(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Tail{};
    return ErrnoError("open", path, errno);
  }
  absl::StatusOr<Tail> tail = ReadTailOf(fd, path);
  ::close(fd);
  return tail;
}

// 1-based number of the line starting at byte `offset`.
uint64_t LineNumberAt(const std::string& path, uint64_t offset) {
  std::ifstream in(path, std::ios::binary);
  uint64_t line = 1;
  char buf[1 << 16];
  while (offset > 0 && in) {
    in.read(buf, static_cast<std::streamsize>(std::min<uint64_t>(sizeof(buf), offset)));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    line += static_cast<uint64_t>(std::count(buf, buf + n, '\n'));
    offset -= static_cast<uint64_t>(n);
  }
  return line;
}

Entry CheckpointEntry() {
  Entry e;
  e.type = RecordType::kCheckpoint;
  return e;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Sink>> OpenFileSink(const std::string& path,
                                                   uint64_t preallocate_bytes) {
  auto sink = std::make_unique<FileSink>(path, preallocate_bytes);
  KMS_RETURN_IF_ERROR(sink->Open());
  return std::unique_ptr<Sink>(std::move(sink));
}

AuditLog::AuditLog(Options options, const Clock& clock, Signer signer, std::string fingerprint,
                   std::unique_ptr<Sink> sink)
    : options_(std::move(options)),
      clock_(clock),
      signer_(std::move(signer)),
      fingerprint_(std::move(fingerprint)),
      sink_(std::move(sink)) {}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(Options options, const Clock& clock,
                                                         Signer signer,
                                                         std::string signing_key_fingerprint,
                                                         std::unique_ptr<Sink> sink) {
  if (options.path.empty()) return absl::InvalidArgumentError("audit log path is empty");
  if (!signer) return absl::InvalidArgumentError("audit log needs a checkpoint signer");
  if (signing_key_fingerprint.empty()) {
    return absl::InvalidArgumentError("audit log needs the signing key's fingerprint");
  }
  KMS_ASSIGN_OR_RETURN(Tail tail, ReadTail(options.path));
  if (sink == nullptr) {
    KMS_ASSIGN_OR_RETURN(sink, OpenFileSink(options.path, options.preallocate_bytes));
  }

  uint64_t last_seq = 0;
  std::string last_hash(kZeroHash);
  if (!tail.last_line.empty()) {
    auto last = ParseRecord(tail.last_line);
    if (last.ok() && Sha256Hex(last->HashedBytes()) != last->hash) {
      last = absl::InvalidArgumentError("its hash does not match its contents");
    }
    if (!last.ok()) {
      return absl::DataLossError(absl::StrCat(
          "audit log ", options.path, " line ", LineNumberAt(options.path, tail.last_line_start),
          " (the last complete one) is damaged: ", last.status().message(),
          "; refusing to continue the chain from it"));
    }
    last_seq = last->seq;
    last_hash = last->hash;
  } else if (tail.complete_size > 0) {
    return absl::DataLossError(absl::StrCat("audit log ", options.path,
                                            " ends with an empty line"));
  }
  std::string opened = "audit log opened";
  if (tail.torn_bytes > 0) {
    KMS_LOG(WARNING) << "audit log " << options.path << ": discarding " << tail.torn_bytes
                     << " bytes of an unfinished record after seq " << last_seq
                     << " (a write cut short by a crash; it was never acknowledged)";
    absl::StrAppend(&opened, "; recovered ", tail.torn_bytes,
                    " bytes of an unfinished record");
  }
  if (tail.file_size != tail.complete_size) {
    KMS_RETURN_IF_ERROR(sink->TruncateTo(tail.complete_size));
  }

  std::unique_ptr<AuditLog> log(new AuditLog(std::move(options), clock, std::move(signer),
                                             std::move(signing_key_fingerprint),
                                             std::move(sink)));
  log->last_hash_ = std::move(last_hash);
  log->durable_size_ = tail.complete_size;
  {
    absl::MutexLock lock(&log->mu_);
    log->next_seq_ = last_seq + 1;
    log->durable_seq_ = last_seq;
    log->last_checkpoint_time_ = clock.Now();
  }
  log->writer_ = std::thread([raw = log.get()] { raw->WriterLoop(); });
  Entry event;
  event.type = RecordType::kEvent;
  event.message = std::move(opened);
  KMS_RETURN_IF_ERROR(log->WaitDurable(log->Append(std::move(event))));
  return log;
}

AuditLog::~AuditLog() { Close(); }

uint64_t AuditLog::EnqueueLocked(Entry entry, bool report) {
  const bool checkpoint = entry.type == RecordType::kCheckpoint;
  const absl::Time now = clock_.Now();
  if (checkpoint) {
    entry = CheckpointEntry();
    records_since_checkpoint_ = 0;
    last_checkpoint_time_ = now;
  }
  const uint64_t seq = next_seq_++;
  queue_.push_back(Pending{std::move(entry), seq, now, report});
  // No signal: a record is written when someone waits for it or a later one
  // (WantDurableLocked), or by the writer's next timed pass.
  if (!checkpoint && ++records_since_checkpoint_ >= options_.checkpoint_every_records &&
      options_.checkpoint_every_records > 0) {
    EnqueueLocked(CheckpointEntry());
  }
  return seq;
}

void AuditLog::MaybeScheduleTimedCheckpointLocked() {
  if (records_since_checkpoint_ > 0 && !stop_ &&
      clock_.Now() - last_checkpoint_time_ >= options_.checkpoint_interval) {
    EnqueueLocked(CheckpointEntry());
  }
}

uint64_t AuditLog::Append(Entry entry) {
  absl::MutexLock lock(&mu_);
  return EnqueueLocked(std::move(entry));
}

void AuditLog::WantDurableLocked(uint64_t seq) {
  if (seq <= wanted_seq_) return;
  wanted_seq_ = seq;
  if (writer_idle_) work_cv_.Signal();
}

std::optional<absl::Status> AuditLog::SettledLocked(uint64_t seq) const {
  if (durable_seq_ >= seq) return absl::OkStatus();
  if (!health_.ok()) {
    return absl::UnavailableError(
        absl::StrCat("audit record ", seq, " is not durable: ", health_.message()));
  }
  if (writer_done_) {
    return absl::UnavailableError(
        absl::StrCat("audit record ", seq, " is not durable: the audit log is closed"));
  }
  return std::nullopt;
}

absl::Status AuditLog::WaitDurable(uint64_t seq) {
  absl::MutexLock lock(&mu_);
  if (seq == 0 || seq >= next_seq_) {
    return absl::InvalidArgumentError(absl::StrCat("no audit record ", seq, " was appended"));
  }
  std::optional<absl::Status> settled = SettledLocked(seq);
  if (!settled) WantDurableLocked(seq);
  while (!(settled = SettledLocked(seq))) durable_cv_.Wait(&mu_);
  return *settled;
}

void AuditLog::WhenDurable(uint64_t seq, DurableCallback done) {
  absl::Status now;
  {
    absl::MutexLock lock(&mu_);
    if (seq == 0 || seq >= next_seq_) {
      now = absl::InvalidArgumentError(absl::StrCat("no audit record ", seq, " was appended"));
    } else if (std::optional<absl::Status> settled = SettledLocked(seq)) {
      now = *std::move(settled);
    } else {
      durable_callbacks_.emplace(seq, std::move(done));
      WantDurableLocked(seq);
      return;
    }
  }
  done(std::move(now));
}

absl::Status AuditLog::Healthy() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

absl::Status AuditLog::Checkpoint() {
  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::UnavailableError("the audit log is closed");
    seq = EnqueueLocked(CheckpointEntry(), /*report=*/true);
  }
  absl::Status durable = WaitDurable(seq);
  absl::MutexLock lock(&mu_);
  absl::Status signed_status;
  if (auto it = checkpoint_results_.find(seq); it != checkpoint_results_.end()) {
    signed_status = it->second;
    checkpoint_results_.erase(it);
  }
  if (!durable.ok()) return durable;
  return signed_status;
}

void AuditLog::Tick() {
  absl::MutexLock lock(&mu_);
  MaybeScheduleTimedCheckpointLocked();
  const uint64_t mine = ++tick_requested_;
  const auto done = [this, mine]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return tick_done_ >= mine || writer_done_;
  };
  work_cv_.Signal();
  while (!done()) durable_cv_.Wait(&mu_);
}

void AuditLog::Close() {
  absl::MutexLock close_lock(&close_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (!stop_) {
      if (records_since_checkpoint_ > 0) EnqueueLocked(CheckpointEntry());
      stop_ = true;
      work_cv_.Signal();  // the writer flushes everything before it stops
    }
  }
  if (writer_.joinable()) writer_.join();
}

uint64_t AuditLog::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return next_seq_ - 1;
}

uint64_t AuditLog::durable_sequence() const {
  absl::MutexLock lock(&mu_);
  return durable_seq_;
}

absl::Status AuditLog::ReadDurable(
    uint64_t after_seq, const std::function<bool(const ParsedRecord&)>& visit) const {
  const uint64_t limit = durable_sequence();
  return ReadAuditLog(options_.path, after_seq, [&](const ParsedRecord& r) {
    return r.seq <= limit && visit(r);
  });
}

std::string AuditLog::FormatPending(Pending& p) {
  FormattedRecord f = FormatRecord(p.entry, p.seq, p.time, last_hash_);
  std::string line;
  if (p.entry.type == RecordType::kCheckpoint) {
    absl::StatusOr<std::string> signature = signer_(absl::StrCat(f.body, "}"));
    if (signature.ok()) {
      line = FinishRecord(f, fingerprint_, *signature);
      if (p.report) signer_results_.emplace_back(p.seq, absl::OkStatus());
    } else {
      KMS_LOG(ERROR) << "audit checkpoint " << p.seq
                     << " not signed: " << signature.status().ToString();
      Entry event;
      event.type = RecordType::kEvent;
      event.message =
          absl::StrCat("checkpoint not signed: ", signature.status().message());
      f = FormatRecord(event, p.seq, p.time, last_hash_);
      line = FinishRecord(f);
      if (p.report) signer_results_.emplace_back(p.seq, signature.status());
    }
  } else {
    line = FinishRecord(f);
  }
  last_hash_ = std::move(f.hash);
  return line;
}

absl::Status AuditLog::WriteOut() {
  if (need_rewrite_) {
    if (need_reopen_) {
      KMS_RETURN_IF_ERROR(sink_->Reopen());
      need_reopen_ = false;
    }
    // Whatever a failed attempt left past the durable end goes; the records
    // are rewritten from memory.
    KMS_RETURN_IF_ERROR(sink_->TruncateTo(durable_size_));
    need_rewrite_ = false;
  }
  // Usually one write and one fdatasync. A longer backlog (after an outage)
  // goes in pieces, each synced before the next is written, so that after a
  // crash only the last kMaxUnsyncedBytes can be unfinished (ReadTail).
  for (size_t at = 0; at < unwritten_.size(); at += kMaxUnsyncedBytes) {
    const absl::string_view piece = absl::string_view(unwritten_).substr(at, kMaxUnsyncedBytes);
    if (absl::Status s = sink_->Append(piece); !s.ok()) {
      need_rewrite_ = true;
      return s;
    }
    if (absl::Status s = sink_->Sync(); !s.ok()) {
      // The page cache's state is unknown after a failed fdatasync: reopen,
      // truncate and write again rather than trust a later fsync.
      need_rewrite_ = true;
      need_reopen_ = true;
      return s;
    }
  }
  durable_size_ += unwritten_.size();
  unwritten_.clear();
  return absl::OkStatus();
}

void AuditLog::WriterLoop() {
  std::vector<Pending> batch;
  while (true) {
    uint64_t tick_seen;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      const bool failing = !health_.ok();
      const auto has_work = [this, failing]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        // Records are written when someone waits for one of them. While
        // failing, they wait for the next retry instead.
        return stop_ || tick_requested_ > tick_done_ ||
               (!failing && !queue_.empty() && wanted_seq_ >= queue_.front().seq);
      };
      absl::Duration timeout = options_.retry_interval;
      if (!failing) {
        timeout = options_.checkpoint_interval;
        if (records_since_checkpoint_ > 0) {
          timeout = std::clamp(last_checkpoint_time_ + options_.checkpoint_interval - clock_.Now(),
                               absl::Milliseconds(1), options_.checkpoint_interval);
        }
        // Records nobody waits for yet go out on a timed pass.
        timeout = std::min(timeout, options_.unwaited_write_delay);
      }
      // Waiters signal work_cv_ only while the writer is idle here, so a
      // busy writer costs them nothing.
      const absl::Time deadline = absl::Now() + timeout;
      writer_idle_ = true;
      while (!has_work() && !work_cv_.WaitWithDeadline(&mu_, deadline)) {
      }
      writer_idle_ = false;
      tick_seen = tick_requested_;
      MaybeScheduleTimedCheckpointLocked();
      batch.swap(queue_);
      stopping = stop_;
    }

    for (Pending& p : batch) {
      unwritten_ += FormatPending(p);
      unwritten_last_seq_ = p.seq;
    }
    batch.clear();
    absl::Status status;
    uint64_t written_through = 0;
    if (!unwritten_.empty()) {
      written_through = unwritten_last_seq_;
      status = WriteOut();
    }

    absl::MutexLock lock(&mu_);
    for (auto& [seq, result] : signer_results_) checkpoint_results_[seq] = std::move(result);
    signer_results_.clear();
    if (status.ok()) {
      if (written_through > 0) durable_seq_ = written_through;
      if (!health_.ok()) {
        KMS_LOG(INFO) << "audit log " << options_.path << " is writable again; durable through "
                      << durable_seq_;
        health_ = absl::OkStatus();
      }
    } else {
      if (health_.ok()) {
        KMS_LOG(ERROR) << "audit log failing, answering no calls until it recovers: "
                       << status.ToString();
      }
      health_ = status;
    }
    tick_done_ = tick_seen;
    durable_cv_.SignalAll();
    // The callbacks this pass settles, run once the lock is released.
    std::vector<std::pair<DurableCallback, absl::Status>> settled_callbacks;
    if (stopping) writer_done_ = true;  // so that what is left settles as closed
    for (auto it = durable_callbacks_.begin(); it != durable_callbacks_.end();) {
      std::optional<absl::Status> settled = SettledLocked(it->first);
      if (!settled) break;  // by seq: every later one waits too
      settled_callbacks.emplace_back(std::move(it->second), *std::move(settled));
      it = durable_callbacks_.erase(it);
    }
    if (!settled_callbacks.empty()) {
      mu_.Unlock();
      for (auto& [done, status] : settled_callbacks) done(std::move(status));
      mu_.Lock();
    }
    if (stopping) {
      if (!unwritten_.empty()) {
        KMS_LOG(ERROR) << "audit log closed with records up to seq " << unwritten_last_seq_
                       << " not durable: " << status.ToString();
      }
      writer_done_ = true;
      return;
    }
  }
}

absl::Status ReadAuditLog(const std::string& path, uint64_t after_seq,
                          const std::function<bool(const ParsedRecord&)>& visit) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no audit log ", path));
    return ErrnoError("stat", path, errno);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot open audit log ", path));
  std::string line;
  uint64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (in.eof()) break;  // no '\n': a record still being written (or torn)
    if (!line.empty() && line.front() == '\0') break;  // zeros reserved ahead (OpenFileSink)
    auto record = ParseRecord(line);
    if (!record.ok()) {
      return absl::DataLossError(absl::StrCat("audit log ", path, " line ", number, ": ",
                                              record.status().message()));
    }
    if (record->seq <= after_seq) continue;
    if (!visit(*record)) return absl::OkStatus();
  }
  if (in.bad()) return absl::UnavailableError(absl::StrCat("cannot read audit log ", path));
  return absl::OkStatus();
}

}  // namespace kms::audit
