// RunChunkPipeline: reads, transforms and writes the numbered chunks of a
// stream with the three stages overlapping, so I/O system calls and crypto run
// on different cores. The engine behind EncryptFile and DecryptFile
// (client/envelope.h); it knows nothing about the file format.
//
// Threads and memory: the call starts one reader thread and `workers`
// transform threads, runs the write stage itself, and joins every thread
// before it returns. Chunks travel through a ring of `slots` buffers of
// `buffer_size` bytes each, allocated once (SecretBytes, so whatever they held
// is wiped when the call returns); chunk i always uses slot i % slots. That
// ring is all the chunk memory there is, whatever the stream's length:
//   - `read` is called on the reader thread, in chunk order, one chunk at a
//     time;
//   - `transform` is called on the worker threads, each chunk once, up to
//     `workers` chunks at a time, never two at once with the same worker
//     number (so a worker may keep per-thread state, such as an EVP context,
//     indexed by it);
//   - `write` is called on the calling thread, in chunk order, only for
//     chunks that have been read and transformed successfully, and never
//     after a write failed.
// A buffer is owned by exactly one stage at a time; the hand-over between
// stages goes through one absl::Mutex, so a stage sees everything the
// previous one wrote.
#ifndef KMS_CLIENT_CHUNK_PIPELINE_H_
#define KMS_CLIENT_CHUNK_PIPELINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "daemon/common/secret_bytes.h"

namespace kms::client {

struct PipelineChunk {
  uint64_t index = 0;  // 0, 1, 2, ... in stream order; set by the pipeline
  size_t size = 0;     // bytes of `buffer` in use; set by read, may be changed by transform
  bool last = false;   // set by read: this is the final chunk
  SecretBytes buffer;  // options.buffer_size bytes, reused from chunk to chunk
};

struct ChunkPipelineOptions {
  size_t buffer_size = 0;  // bytes per slot; > 0
  int slots = 8;           // >= 1; more than workers + 2 lets stages run ahead
  int workers = 2;         // >= 1
};

// Fills `chunk.buffer` with chunk `chunk.index`, sets `size` and `last`.
// `cancel_fd` becomes readable once the pipeline has failed: a read that can
// block indefinitely (a pipe) should poll it and give up (with any error).
using ChunkReadFn = std::function<absl::Status(PipelineChunk& chunk, int cancel_fd)>;
// Transforms the chunk in place; `worker` is in [0, workers).
using ChunkTransformFn = std::function<absl::Status(int worker, PipelineChunk& chunk)>;
using ChunkWriteFn = std::function<absl::Status(const PipelineChunk& chunk)>;

// Runs the stream through read -> transform -> write until the chunk marked
// `last` has been written. Returns OK only if every chunk up to and including
// that one was read, transformed and written successfully.
//
// On failure, returns the error of the lowest-numbered chunk that failed (for
// one chunk, stages fail in the order read, transform, write), exactly as if
// the stages had run one chunk at a time, so errors do not depend on thread
// timing. A failure stops everything promptly: once it is seen, no later
// chunk is read or transformed (so no chunk at or beyond failed + slots ever
// is); the chunks before it, already in the ring, are still transformed and
// written, since one of them might fail too.
// Errors: whatever the callbacks return; kInternal if a thread or the cancel
// eventfd cannot be created.
absl::Status RunChunkPipeline(const ChunkPipelineOptions& options, const ChunkReadFn& read,
                              const ChunkTransformFn& transform, const ChunkWriteFn& write);

}  // namespace kms::client

#endif  // KMS_CLIENT_CHUNK_PIPELINE_H_
