#include "client/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kms::bench {
namespace {

constexpr uint64_t kSubBuckets = uint64_t{1} << LatencyHistogram::kSubBucketBits;
// Values below this are their own bucket.
constexpr uint64_t kExactLimit = 2 * kSubBuckets;
// One past the last bucket, which holds the largest int64 (top bit 62).
constexpr size_t kBucketCount = (62 - LatencyHistogram::kSubBucketBits) * kSubBuckets + kExactLimit;

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBucketCount, 0) {}

// Bucket layout, for v >= kExactLimit: let m be the index of v's top bit and
// shift = m - kSubBucketBits; then top = v >> shift lies in
// [kSubBuckets, 2 * kSubBuckets) and the bucket is shift * kSubBuckets + top.
// Buckets of one power of two follow those of the one below without a gap:
// v = 511 is bucket 511, v = 512 (shift 1, top 256) bucket 512.
size_t LatencyHistogram::BucketOf(int64_t value) {
  const uint64_t v = value < 0 ? 0 : static_cast<uint64_t>(value);
  if (v < kExactLimit) return static_cast<size_t>(v);
  const int top_bit = 63 - __builtin_clzll(v);
  const int shift = top_bit - kSubBucketBits;
  return static_cast<size_t>(static_cast<uint64_t>(shift) * kSubBuckets + (v >> shift));
}

int64_t LatencyHistogram::BucketUpperBound(size_t bucket) {
  if (bucket < kExactLimit) return static_cast<int64_t>(bucket);
  const uint64_t shift = bucket / kSubBuckets - 1;
  const uint64_t top = bucket - shift * kSubBuckets;
  // The last bucket's bound is 2^63 - 1, which unsigned arithmetic reaches
  // without overflow.
  const uint64_t upper = ((top + 1) << shift) - 1;
  return static_cast<int64_t>(
      std::min<uint64_t>(upper, static_cast<uint64_t>(std::numeric_limits<int64_t>::max())));
}

void LatencyHistogram::Record(int64_t nanoseconds) {
  const int64_t value = std::max<int64_t>(nanoseconds, 0);
  ++counts_[BucketOf(value)];
  min_ = count_ == 0 ? value : std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
  ++count_;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
  count_ += other.count_;
}

int64_t LatencyHistogram::Percentile(double percent) const {
  if (count_ == 0) return 0;
  if (!(percent > 0)) return min_;  // also NaN
  percent = std::min(percent, 100.0);
  // Nearest rank, 1-based. The epsilon keeps 99% of 100 values at rank 99
  // when 0.99 * 100 comes out as 99.00000000000001.
  const double exact = percent / 100.0 * static_cast<double>(count_);
  uint64_t rank = static_cast<uint64_t>(std::ceil(exact - 1e-9));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(BucketUpperBound(i), min_, max_);
  }
  return max_;
}

}  // namespace kms::bench
