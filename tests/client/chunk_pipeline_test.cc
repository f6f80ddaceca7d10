// Tests for RunChunkPipeline (client/chunk_pipeline.h): order of writes,
// deterministic choice of the error to return whatever the thread timing,
// prompt stop after a failure, and the bound on chunks in flight.
#include "client/chunk_pipeline.h"

#include <poll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kms::client {
namespace {

constexpr size_t kBuffer = 64;

// A stream of `chunks` chunks; chunk i holds i's bytes, and the transform
// adds 1 to each byte. Faults and random delays (to shake the thread timing)
// are injected per chunk and stage. Thread-safe.
class FakeStream {
 public:
  FakeStream(uint64_t chunks, uint32_t seed) : chunks_(chunks), seed_(seed) {}

  void FailRead(uint64_t index) { fail_read_ = index; }
  void FailTransform(uint64_t index) { fail_transform_ = index; }
  void FailWrite(uint64_t index) { fail_write_ = index; }

  ChunkReadFn Read() {
    return [this](PipelineChunk& chunk, int) -> absl::Status {
      Jitter(chunk.index, 0);
      max_read_ = std::max<uint64_t>(max_read_, chunk.index);
      if (chunk.index == fail_read_) return absl::DataLossError(absl::StrCat("read ", chunk.index));
      chunk.size = 1 + chunk.index % kBuffer;
      std::memset(chunk.buffer.mutable_data(), static_cast<int>(chunk.index & 0x7f), chunk.size);
      chunk.last = chunk.index + 1 == chunks_;
      return absl::OkStatus();
    };
  }

  ChunkTransformFn Transform() {
    return [this](int worker, PipelineChunk& chunk) -> absl::Status {
      {
        absl::MutexLock lock(&mu_);
        EXPECT_FALSE(worker_busy_[worker]) << "worker " << worker << " used twice at once";
        worker_busy_[worker] = true;
      }
      Jitter(chunk.index, 1);
      transformed_.fetch_add(1);
      max_transformed_ = std::max<uint64_t>(max_transformed_, chunk.index);
      absl::Status status = absl::OkStatus();
      if (chunk.index == fail_transform_) {
        status = absl::InvalidArgumentError(absl::StrCat("transform ", chunk.index));
      } else {
        for (size_t i = 0; i < chunk.size; ++i) chunk.buffer.mutable_data()[i] += 1;
      }
      absl::MutexLock lock(&mu_);
      worker_busy_[worker] = false;
      return status;
    };
  }

  ChunkWriteFn Write() {
    return [this](const PipelineChunk& chunk) -> absl::Status {
      Jitter(chunk.index, 2);
      if (chunk.index == fail_write_) {
        return absl::ResourceExhaustedError(absl::StrCat("write ", chunk.index));
      }
      written_.push_back(chunk.index);
      for (size_t i = 0; i < chunk.size; ++i) {
        if (chunk.buffer.data()[i] != static_cast<uint8_t>((chunk.index & 0x7f) + 1)) {
          ADD_FAILURE() << "chunk " << chunk.index << " byte " << i << " was not transformed";
          break;
        }
      }
      return absl::OkStatus();
    };
  }

  const std::vector<uint64_t>& written() const { return written_; }
  uint64_t max_read() const { return max_read_; }
  uint64_t max_transformed() const { return max_transformed_; }

 private:
  // Sleeps 0..200 us for about one call in four, decided by the seed, the
  // chunk and the stage.
  void Jitter(uint64_t index, int stage) const {
    std::mt19937 rng(static_cast<uint32_t>(seed_ * 1000003u + index * 7u + stage));
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
  }

  const uint64_t chunks_;
  const uint32_t seed_;
  uint64_t fail_read_ = UINT64_MAX;
  uint64_t fail_transform_ = UINT64_MAX;
  uint64_t fail_write_ = UINT64_MAX;
  std::atomic<uint64_t> max_read_{0};
  std::atomic<uint64_t> max_transformed_{0};
  std::atomic<int> transformed_{0};
  std::vector<uint64_t> written_;  // only the calling thread writes
  absl::Mutex mu_;
  bool worker_busy_[8] = {};
};

ChunkPipelineOptions Options(int slots, int workers) {
  ChunkPipelineOptions options;
  options.buffer_size = kBuffer;
  options.slots = slots;
  options.workers = workers;
  return options;
}

std::vector<uint64_t> Iota(uint64_t n) {
  std::vector<uint64_t> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

TEST(ChunkPipelineTest, WritesEveryChunkOnceInOrder) {
  for (int slots : {1, 2, 4, 8}) {
    for (int workers : {1, 2, 3}) {
      for (uint32_t seed = 0; seed < 3; ++seed) {
        FakeStream stream(200, seed);
        ASSERT_TRUE(RunChunkPipeline(Options(slots, workers), stream.Read(), stream.Transform(),
                                     stream.Write())
                        .ok());
        EXPECT_EQ(stream.written(), Iota(200)) << slots << " slots, " << workers << " workers";
      }
    }
  }
}

TEST(ChunkPipelineTest, ASingleLastChunkIsWritten) {
  FakeStream stream(1, 0);
  ASSERT_TRUE(
      RunChunkPipeline(Options(8, 2), stream.Read(), stream.Transform(), stream.Write()).ok());
  EXPECT_EQ(stream.written(), Iota(1));
}

// Whatever the timing, the error returned is the one of the lowest chunk, as
// if the stages ran one chunk at a time; nothing beyond the ring after it is
// read or transformed, and nothing from it on is written.
TEST(ChunkPipelineTest, ReturnsTheLowestFailureAndStopsPromptly) {
  struct Case {
    uint64_t read, transform, write;
    std::string expected;
  };
  const Case cases[] = {
      {UINT64_MAX, 30, UINT64_MAX, "transform 30"},
      {30, UINT64_MAX, UINT64_MAX, "read 30"},
      {UINT64_MAX, UINT64_MAX, 30, "write 30"},
      {31, 30, UINT64_MAX, "transform 30"},
      {30, 31, UINT64_MAX, "read 30"},
      {UINT64_MAX, 31, 30, "write 30"},
      {UINT64_MAX, 30, 31, "transform 30"},
      {UINT64_MAX, 0, UINT64_MAX, "transform 0"},
      {0, UINT64_MAX, UINT64_MAX, "read 0"},
  };
  constexpr int kSlots = 6;
  for (const Case& c : cases) {
    for (uint32_t seed = 0; seed < 20; ++seed) {
      FakeStream stream(1000, seed);
      stream.FailRead(c.read);
      stream.FailTransform(c.transform);
      stream.FailWrite(c.write);
      const absl::Status status = RunChunkPipeline(Options(kSlots, 2), stream.Read(),
                                                   stream.Transform(), stream.Write());
      const uint64_t failed = std::min({c.read, c.transform, c.write});
      EXPECT_EQ(status.message(), c.expected) << "seed " << seed;
      EXPECT_LT(stream.max_read(), failed + kSlots) << c.expected << " seed " << seed;
      EXPECT_LT(stream.max_transformed(), failed + kSlots) << c.expected << " seed " << seed;
      for (uint64_t index : stream.written()) EXPECT_LT(index, failed) << c.expected;
    }
  }
}

// A reader blocked on a pipe that will never deliver is woken through the
// cancel fd when a later stage fails, so the call returns instead of hanging.
TEST(ChunkPipelineTest, FailureWakesAReaderBlockedOnAPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto read = [&](PipelineChunk& chunk, int cancel_fd) -> absl::Status {
    if (chunk.index < 3) {
      chunk.size = 1;
      return absl::OkStatus();
    }
    pollfd polls[2] = {{fds[0], POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    if (poll(polls, 2, /*timeout_ms=*/30000) == 1 && (polls[1].revents & POLLIN) != 0) {
      return absl::CancelledError("reader woken");
    }
    return absl::DeadlineExceededError("reader was not woken");
  };
  auto transform = [](int, PipelineChunk& chunk) -> absl::Status {
    if (chunk.index == 1) return absl::InvalidArgumentError("transform 1");
    return absl::OkStatus();
  };
  auto write = [](const PipelineChunk&) { return absl::OkStatus(); };
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = RunChunkPipeline(Options(8, 2), read, transform, write);
  EXPECT_EQ(status.message(), "transform 1");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  close(fds[0]);
  close(fds[1]);
}

TEST(ChunkPipelineTest, RejectsBadOptions) {
  FakeStream stream(1, 0);
  for (const ChunkPipelineOptions& options :
       {Options(0, 1), Options(1, 0), ChunkPipelineOptions{0, 4, 2}}) {
    EXPECT_EQ(RunChunkPipeline(options, stream.Read(), stream.Transform(), stream.Write()).code(),
              absl::StatusCode::kInternal);
  }
}

}  // namespace
}  // namespace kms::client
