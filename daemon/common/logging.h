// Minimal structured logging to stderr (Debian's Abseil has no absl/log).
//
//   KMS_LOG(INFO) << "created key " << key_id;
//
// One line per statement, prefixed with an RFC 3339 UTC time and the level,
// written with a single write(2) so concurrent lines do not interleave.
// Never log key bytes, plaintexts, PINs or encryption-context values.
// Thread-safe.
#ifndef KMS_DAEMON_COMMON_LOGGING_H_
#define KMS_DAEMON_COMMON_LOGGING_H_

#include <sstream>

namespace kms {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below `level` are dropped. Default kInfo.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Turns `stream << ...` into void so both arms of KMS_LOG's ?: match; `&`
// binds looser than `<<` and tighter than `?:`.
struct LogMessageVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace kms

#define KMS_LOG_LEVEL_DEBUG ::kms::LogLevel::kDebug
#define KMS_LOG_LEVEL_INFO ::kms::LogLevel::kInfo
#define KMS_LOG_LEVEL_WARNING ::kms::LogLevel::kWarning
#define KMS_LOG_LEVEL_ERROR ::kms::LogLevel::kError

// An expression, not an if-statement, so `if (x) KMS_LOG(INFO) << y; else ...`
// binds as written. The stream is not evaluated when the level is off.
#define KMS_LOG(level)                                                   \
  (KMS_LOG_LEVEL_##level < ::kms::MinLogLevel())                         \
      ? (void)0                                                          \
      : ::kms::LogMessageVoidify() &                                     \
            ::kms::LogMessage(KMS_LOG_LEVEL_##level, __FILE__, __LINE__).stream()

#endif  // KMS_DAEMON_COMMON_LOGGING_H_
