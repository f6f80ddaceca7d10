// Envelope encryption of files: the format behind `kmsctl encrypt-file` and
// `kmsctl decrypt-file`.
//
// A file is encrypted locally with AES-256-GCM under a fresh 32-byte data key
// from a DataKeySource (kmsd's GenerateDataKey); the wrapped data key, the
// encryption context and the CMK's ARN travel in the file header. Plaintext is
// processed in fixed-size chunks with the STREAM construction (Hoang,
// Reyhanitabar, Rogaway, Vizár, "Online authenticated-encryption and its
// nonce-reuse misuse-resistance", CRYPTO 2015), so memory use is constant
// (kEnvelopeChunkBuffers chunks) for any file size, and every chunk is
// authenticated before its plaintext is written. A changed byte anywhere, a
// reordered, dropped, duplicated or appended chunk, and a truncated file are
// all detected.
//
// Nothing partial is ever left at the output path: output goes to a temporary
// file (mode 0600) in the output's directory, is fsync'ed, and is renamed over
// the output only once the last chunk has been processed (for decryption: has
// authenticated). On any failure the temporary file is removed and a
// pre-existing output file is left untouched. A process killed mid-way can
// leave a `.<output name>.kmsenv-XXXXXX` file behind, holding at most the
// already-authenticated plaintext prefix; it is 0600 like the output.
//
// Threads and memory: EncryptFile and DecryptFile run the chunks through a
// pipeline (client/chunk_pipeline.h) so that I/O and crypto overlap on
// different cores. Each call starts, and joins before it returns, one reader
// thread (reads chunk after chunk into the ring) and two crypto threads (each
// seals or opens whichever chunk is next, in place, with its own EVP context);
// the calling thread writes the finished chunks to the temporary file in
// order, and only after they authenticated. The ring is kEnvelopeChunkBuffers
// SecretBytes buffers of chunk_size + 16 bytes each, allocated once per call;
// chunk i uses buffer i % kEnvelopeChunkBuffers. A failure anywhere stops all
// three stages within the chunks already in the ring, and the error returned
// is the one of the lowest-numbered chunk that failed, exactly as if the
// chunks were processed one at a time.
//
// Key bytes live only in SecretBytes and the EVP contexts (one per crypto
// thread; the SecretBytes copy is wiped once they are keyed), plaintext only
// in the ring's SecretBytes buffers; all are wiped when the call returns.
//
// Thread-safety: the functions keep no shared state. Concurrent calls are safe
// when they use different output paths (DataKeySource implementations are
// thread-safe).
#ifndef KMS_CLIENT_ENVELOPE_H_
#define KMS_CLIENT_ENVELOPE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/data_key_source.h"

namespace kms::client {

// ---------------------------------------------------------------------------
// File format, version 1. All integers are unsigned big-endian.
//
// Header (H = header_length bytes):
//
//   offset     size  field
//   ---------  ----  ---------------------------------------------------------
//   0          8     magic "KMSDENV1" (4B 4D 53 44 45 4E 56 31)
//   8          2     format_version = 1
//   10         4     header_length H: bytes from offset 0 to the end of the
//                    key ARN (= offset of chunk 0); 38 .. kMaxHeaderLength
//   14         4     chunk_size C: plaintext bytes per chunk; 1024 .. 16 MiB
//   18         7     nonce_prefix: random, fresh for every file
//   25         4     W: wrapped data key length; 1 .. 8192
//   29         W     wrapped data key (the kmsd ciphertext blob)
//   29+W       4     N: number of encryption-context pairs
//   33+W       ...   N pairs, each:
//                       4  key length K
//                       K  key bytes
//                       4  value length V
//                       V  value bytes
//                    keys strictly ascending (bytewise, unsigned), so each
//                    context has exactly one encoding; all N pairs together,
//                    length prefixes included, <= 65536 bytes
//   P          4     A: key ARN length; 0 .. 2048
//   P+4        A     key ARN (UTF-8, informational; authenticated as below)
//   P+4+A = H
//
// Body: chunks i = 0, 1, ..., n-1, each
//
//   ciphertext (C bytes for chunks 0..n-2; 0 .. C-1 bytes for chunk n-1)
//   || 16-byte GCM tag
//
// and nothing after chunk n-1. The final chunk is always shorter than C, so
// an input whose size is a multiple of C (including 0) ends with an empty
// final chunk (just a tag); a reader knows the final chunk by its length, and
// a file ending right after a full chunk is truncated.
//
// Chunk i is AES-256-GCM under the data key with
//   nonce (12 bytes) = nonce_prefix (7) || i as uint32 (4) || last (1)
//                      where last = 0x01 for chunk n-1, else 0x00
//   AAD   (32 bytes) = SHA-256(header bytes [0, H))
// so every chunk is bound to its position, to whether it is the last one, and
// to every header byte. At most 2^32 chunks per file.
// ---------------------------------------------------------------------------

inline constexpr absl::string_view kEnvelopeMagic = "KMSDENV1";
inline constexpr uint16_t kEnvelopeFormatVersion = 1;
inline constexpr size_t kEnvelopeNoncePrefixSize = 7;
inline constexpr size_t kEnvelopeTagSize = 16;
inline constexpr size_t kEnvelopeDataKeySize = 32;
inline constexpr size_t kMinEnvelopeChunkSize = 1024;
inline constexpr size_t kMaxEnvelopeChunkSize = 16 * 1024 * 1024;
inline constexpr size_t kMaxWrappedDataKeySize = 8 * 1024;
inline constexpr size_t kMaxEncodedContextSize = 64 * 1024;
inline constexpr size_t kMaxKeyArnSize = 2048;
// Chunk buffers EncryptFile and DecryptFile hold at once (see above): enough
// for the reader to run ahead while both crypto threads and the writer are
// busy.
inline constexpr size_t kEnvelopeChunkBuffers = 6;
// Fixed fields plus the largest variable ones.
inline constexpr size_t kMinHeaderLength = 8 + 2 + 4 + 4 + 7 + 4 + 1 + 4 + 4;
inline constexpr size_t kMaxHeaderLength = 8 + 2 + 4 + 4 + 7 + 4 + kMaxWrappedDataKeySize + 4 +
                                           kMaxEncodedContextSize + 4 + kMaxKeyArnSize;

struct EnvelopeOptions {
  // Plaintext bytes per chunk: kMinEnvelopeChunkSize .. kMaxEnvelopeChunkSize.
  // Memory use is about kEnvelopeChunkBuffers times this. 1 MiB: each chunk
  // costs a few thread hand-overs, which at 64 KiB took as much CPU as the
  // crypto saved by the second thread.
  size_t chunk_size = 1024 * 1024;
};

// The parsed header of an envelope file.
struct EnvelopeHeader {
  uint16_t format_version = kEnvelopeFormatVersion;
  uint32_t header_length = 0;  // bytes; the offset of chunk 0
  uint32_t chunk_size = 0;
  std::string nonce_prefix;      // kEnvelopeNoncePrefixSize bytes, not secret
  std::string wrapped_data_key;  // the kmsd ciphertext blob
  EncryptionContext context;
  std::string key_arn;  // the CMK that wrapped the data key
};

// Encrypts `input_path` into `output_path` under a fresh data key from
// `source` (GenerateDataKey(key_id, context)). The output is created with mode
// 0600. `input_path` may be any readable file, including a pipe.
// Returns the header written.
// Errors:
//   kInvalidArgument (ValidationException): chunk_size out of range, an
//     encryption context too large for the format, output path equal to (or
//     the same file as) the input, output path is a directory, input is a
//     directory, input larger than 2^32 chunks.
//   kNotFound / kPermissionDenied / kResourceExhausted (disk full) / kInternal:
//     an I/O failure; the message names the path.
//   Anything GenerateDataKey returns, unchanged.
absl::StatusOr<EnvelopeHeader> EncryptFile(DataKeySource& source, const std::string& key_id,
                                           const EncryptionContext& context,
                                           const std::string& input_path,
                                           const std::string& output_path,
                                           const EnvelopeOptions& options = {});

// Decrypts a file made by EncryptFile into `output_path` (created with mode
// 0600), unwrapping its data key with source.DecryptDataKey(wrapped key,
// context from the header). Returns the header (context, key ARN, ...).
// Errors:
//   kInvalidArgument (InvalidCiphertextException): not an envelope file, a
//     malformed header, a chunk that fails authentication (any change to the
//     header or the chunks, reordered/dropped/duplicated chunks), a truncated
//     file, trailing bytes.
//   kInvalidArgument (ValidationException): output path equal to (or the same
//     file as) the input, or a directory.
//   kNotFound / kPermissionDenied / kResourceExhausted / kInternal: an I/O
//     failure; the message names the path.
//   Anything DecryptDataKey returns, unchanged (e.g. a context mismatch).
absl::StatusOr<EnvelopeHeader> DecryptFile(DataKeySource& source, const std::string& input_path,
                                           const std::string& output_path);

// Reads and validates only the header of the envelope file at `path` (the
// chunks are not checked, and nothing is authenticated: the header is
// authenticated only by a successful DecryptFile).
// Errors: kInvalidArgument (InvalidCiphertextException) for a malformed header;
// kNotFound / kPermissionDenied / kInternal for I/O failures.
absl::StatusOr<EnvelopeHeader> ReadEnvelopeHeader(const std::string& path);

// Parses a header from `bytes`, which must start with the header; bytes after
// header_length are ignored. The parser behind ReadEnvelopeHeader, exposed
// for tests and as a fuzz target. Never reads outside `bytes`.
// Errors: kInvalidArgument (InvalidCiphertextException), with a message naming
// the field and the offending value.
absl::StatusOr<EnvelopeHeader> ParseEnvelopeHeader(absl::string_view bytes);

}  // namespace kms::client

#endif  // KMS_CLIENT_ENVELOPE_H_
