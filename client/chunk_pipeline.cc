#include "client/chunk_pipeline.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace kms::client {
namespace {

constexpr uint64_t kNoChunk = std::numeric_limits<uint64_t>::max();

// One run of the pipeline. Chunk i lives in slots_[i % slots]; a slot moves
// kFree -> kReading -> kRead -> kTransforming -> kDone -> kFree, and the stage
// that moved it into kReading, kTransforming or kDone (reader, a worker, the
// writer) is the only one touching its chunk until it moves it on. A slot can
// be in kRead or kDone only for the lowest chunk number it may hold, because
// chunk i + slots is not read before chunk i is written and its slot freed.
class Pipeline {
 public:
  Pipeline(const ChunkPipelineOptions& options, const ChunkReadFn& read,
           const ChunkTransformFn& transform, const ChunkWriteFn& write, int cancel_fd)
      : options_(options),
        read_(read),
        transform_(transform),
        write_(write),
        cancel_fd_(cancel_fd) {
    // Built in place: moving a SecretBytes copies it.
    slots_.reserve(static_cast<size_t>(options.slots));
    for (int i = 0; i < options.slots; ++i) slots_.emplace_back(options.buffer_size);
  }

  absl::Status Run() {
    std::vector<std::thread> threads;
    try {
      threads.emplace_back([this] { ReaderLoop(); });
      for (int w = 0; w < options_.workers; ++w) threads.emplace_back([this, w] { WorkerLoop(w); });
    } catch (const std::system_error& e) {
      Stop();
      for (std::thread& t : threads) t.join();
      return absl::InternalError(absl::StrCat("cannot start a pipeline thread: ", e.what()));
    }
    absl::Status status = WriterLoop();
    Stop();
    for (std::thread& t : threads) t.join();
    return status;
  }

 private:
  enum class State { kFree, kReading, kRead, kTransforming, kDone };
  struct Slot {
    explicit Slot(size_t buffer_size) : chunk{0, 0, false, SecretBytes(buffer_size)} {}

    State state = State::kFree;
    absl::Status status;  // of the stage that moved it to kDone
    PipelineChunk chunk;
  };

  Slot& SlotFor(uint64_t index) { return slots_[index % slots_.size()]; }

  // Records that chunk `index` failed. Wakes a reader blocked in a pipe read.
  void Fail(uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (failed_at_ == kNoChunk) Signal();
    if (index < failed_at_) failed_at_ = index;
  }

  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    Signal();
  }

  void Signal() {
    const uint64_t one = 1;
    // Best effort: the counter cannot overflow with a handful of writes.
    [[maybe_unused]] const ssize_t n = ::write(cancel_fd_, &one, sizeof(one));
  }

  void ReaderLoop() {
    for (uint64_t index = 0;; ++index) {
      Slot* slot = &SlotFor(index);
      {
        absl::MutexLock lock(&mu_);
        // Once anything failed, every chunk before the failure has been read
        // already: nothing more to read.
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || failed_at_ != kNoChunk || slot->state == State::kFree;
        };
        mu_.Await(absl::Condition(&ready));
        if (stopping_ || failed_at_ != kNoChunk) return;
        slot->state = State::kReading;
      }
      slot->chunk.index = index;
      slot->chunk.size = 0;
      slot->chunk.last = false;
      absl::Status status = read_(slot->chunk, cancel_fd_);
      absl::MutexLock lock(&mu_);
      if (!status.ok()) {
        slot->status = std::move(status);
        slot->state = State::kDone;
        Fail(index);
        return;
      }
      slot->state = State::kRead;
      if (slot->chunk.last) {
        end_ = index + 1;
        return;
      }
    }
  }

  void WorkerLoop(int worker) {
    for (;;) {
      Slot* slot = nullptr;
      uint64_t index = 0;
      {
        absl::MutexLock lock(&mu_);
        // Chunks after a failed one are never transformed; chunks before it
        // are, so the lowest failure is found whatever the timing.
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || next_transform_ >= end_ ||
                 (next_transform_ < failed_at_ &&
                  SlotFor(next_transform_).state == State::kRead);
        };
        mu_.Await(absl::Condition(&ready));
        if (stopping_ || next_transform_ >= end_) return;
        index = next_transform_++;
        slot = &SlotFor(index);
        slot->state = State::kTransforming;
      }
      absl::Status status = transform_(worker, slot->chunk);
      absl::MutexLock lock(&mu_);
      slot->state = State::kDone;
      if (!status.ok()) {
        slot->status = std::move(status);
        Fail(index);
      }
    }
  }

  absl::Status WriterLoop() {
    for (uint64_t index = 0;; ++index) {
      Slot* slot = &SlotFor(index);
      {
        absl::MutexLock lock(&mu_);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return slot->state == State::kDone;
        };
        mu_.Await(absl::Condition(&ready));
        // The lowest failure is always reached here: every chunk before it
        // gets read and transformed.
        if (!slot->status.ok()) return std::move(slot->status);
      }
      // Written even when a later chunk has failed already: this chunk's
      // write might fail too, and its error would come first.
      absl::Status status = write_(slot->chunk);
      if (!status.ok()) {
        absl::MutexLock lock(&mu_);
        Fail(index);
        return status;
      }
      const bool last = slot->chunk.last;
      absl::MutexLock lock(&mu_);
      slot->state = State::kFree;
      if (last) return absl::OkStatus();
    }
  }

  const ChunkPipelineOptions options_;
  const ChunkReadFn& read_;
  const ChunkTransformFn& transform_;
  const ChunkWriteFn& write_;
  const int cancel_fd_;

  absl::Mutex mu_;
  // The vector itself is fixed after construction; each element's state and
  // status are guarded by mu_, its chunk by the state (see above).
  std::vector<Slot> slots_;
  uint64_t next_transform_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t end_ ABSL_GUARDED_BY(mu_) = kNoChunk;        // last chunk + 1, once read
  uint64_t failed_at_ ABSL_GUARDED_BY(mu_) = kNoChunk;  // lowest chunk that failed
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;          // the writer is done
};

}  // namespace

absl::Status RunChunkPipeline(const ChunkPipelineOptions& options, const ChunkReadFn& read,
                              const ChunkTransformFn& transform, const ChunkWriteFn& write) {
  if (options.buffer_size == 0 || options.slots < 1 || options.workers < 1) {
    return absl::InternalError(absl::StrCat("bad chunk pipeline options: buffer_size ",
                                            options.buffer_size, ", slots ", options.slots,
                                            ", workers ", options.workers));
  }
  const int cancel_fd = eventfd(0, EFD_CLOEXEC);
  if (cancel_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create an eventfd: ", std::strerror(errno)));
  }
  absl::Status status = Pipeline(options, read, transform, write, cancel_fd).Run();
  close(cancel_fd);
  return status;
}

}  // namespace kms::client
