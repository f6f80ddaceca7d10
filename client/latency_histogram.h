// LatencyHistogram: a fixed-size log-linear histogram of durations in
// nanoseconds, in the manner of HdrHistogram, for `kmsctl bench`.
//
// Values below 2^(kSubBucketBits+1) ns (512 ns) are counted exactly. Above
// that each power of two is split into 2^kSubBucketBits (256) equal buckets,
// so a reported value is at most 1/256 (0.4%) above the value recorded, from
// 512 ns up to the largest int64. Recording is O(1) with no allocation; the
// buckets take ~120 KiB, allocated once.
//
// Percentiles use the nearest-rank definition: Percentile(q) is the smallest
// bucket upper bound below which at least ceil(q/100 * Count()) values lie,
// clamped to the largest value recorded, so Percentile(100) == Max() exactly
// and an exactly counted value is reported exactly.
//
// Thread-compatible: one histogram per thread, merged afterwards (Merge).
#ifndef KMS_CLIENT_LATENCY_HISTOGRAM_H_
#define KMS_CLIENT_LATENCY_HISTOGRAM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kms::bench {

class LatencyHistogram {
 public:
  // Mantissa bits per power of two: 2^8 buckets, 0.4% resolution.
  static constexpr int kSubBucketBits = 8;

  LatencyHistogram();

  // Counts one duration. Negative values count as 0.
  void Record(int64_t nanoseconds);
  // Adds every value counted by `other`.
  void Merge(const LatencyHistogram& other);

  uint64_t Count() const { return count_; }
  // 0 when empty.
  int64_t Min() const { return count_ == 0 ? 0 : min_; }
  int64_t Max() const { return max_; }
  double Mean() const { return count_ == 0 ? 0 : static_cast<double>(sum_) / count_; }

  // The nearest-rank percentile, `percent` in [0, 100] (clamped); 0 when
  // empty. See the file comment for the precision.
  int64_t Percentile(double percent) const;

  // Which bucket `value` (>= 0) falls in, and the largest value that bucket
  // holds; public for tests of the bucket layout.
  static size_t BucketOf(int64_t value);
  static int64_t BucketUpperBound(size_t bucket);

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  // Sum of the values, for the mean; 2^63 ns is 292 years of latency.
  int64_t sum_ = 0;
};

}  // namespace kms::bench

#endif  // KMS_CLIENT_LATENCY_HISTOGRAM_H_
