// LatencyHistogram: exact small values, nearest-rank percentiles, the bucket
// layout and its precision bound, merging.
#include "client/latency_histogram.h"

#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace kms::bench {
namespace {

TEST(LatencyHistogramTest, EmptyReportsZeros) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.Count(), 0u);
  EXPECT_EQ(histogram.Min(), 0);
  EXPECT_EQ(histogram.Max(), 0);
  EXPECT_EQ(histogram.Mean(), 0);
  EXPECT_EQ(histogram.Percentile(50), 0);
  EXPECT_EQ(histogram.Percentile(100), 0);
}

TEST(LatencyHistogramTest, PercentilesAreNearestRank) {
  LatencyHistogram histogram;
  // 1..100 in a scrambled order: the order of recording does not matter.
  for (int64_t i = 0; i < 100; ++i) histogram.Record((i * 37) % 100 + 1);
  EXPECT_EQ(histogram.Count(), 100u);
  EXPECT_EQ(histogram.Percentile(50), 50);
  EXPECT_EQ(histogram.Percentile(99), 99);
  EXPECT_EQ(histogram.Percentile(99.9), 100);
  EXPECT_EQ(histogram.Percentile(100), 100);
  EXPECT_EQ(histogram.Percentile(1), 1);
  EXPECT_EQ(histogram.Percentile(0), 1);
  EXPECT_EQ(histogram.Min(), 1);
  EXPECT_EQ(histogram.Max(), 100);
  EXPECT_DOUBLE_EQ(histogram.Mean(), 50.5);
}

TEST(LatencyHistogramTest, OneSlowCallShowsOnlyAtTheTop) {
  LatencyHistogram histogram;
  for (int i = 0; i < 999; ++i) histogram.Record(300'000);  // 300 us
  histogram.Record(50'000'000);                             // 50 ms
  const double bound = 1.0 + 1.0 / 256;
  EXPECT_LE(histogram.Percentile(50), 300'000 * bound);
  EXPECT_GE(histogram.Percentile(50), 300'000);
  EXPECT_LE(histogram.Percentile(99.9), 300'000 * bound);
  EXPECT_EQ(histogram.Percentile(100), 50'000'000);
  EXPECT_EQ(histogram.Max(), 50'000'000);
}

TEST(LatencyHistogramTest, ValuesBelow512AreExact) {
  for (int64_t value = 0; value < 512; ++value) {
    LatencyHistogram histogram;
    histogram.Record(value);
    histogram.Record(value);
    EXPECT_EQ(histogram.Percentile(50), value);
    EXPECT_EQ(LatencyHistogram::BucketOf(value), static_cast<size_t>(value));
    EXPECT_EQ(LatencyHistogram::BucketUpperBound(static_cast<size_t>(value)), value);
  }
}

TEST(LatencyHistogramTest, NegativeValuesCountAsZero) {
  LatencyHistogram histogram;
  histogram.Record(-5);
  EXPECT_EQ(histogram.Count(), 1u);
  EXPECT_EQ(histogram.Max(), 0);
  EXPECT_EQ(histogram.Percentile(50), 0);
}

TEST(LatencyHistogramTest, BucketsFollowEachOtherWithoutGaps) {
  // Every bucket's bound is one less than the next bucket's first value, and
  // a value is never above its bucket's bound.
  int64_t value = 0;
  for (size_t bucket = 0; bucket < 20000 && value >= 0; ++bucket) {
    ASSERT_EQ(LatencyHistogram::BucketOf(value), bucket) << value;
    const int64_t upper = LatencyHistogram::BucketUpperBound(bucket);
    ASSERT_GE(upper, value);
    ASSERT_EQ(LatencyHistogram::BucketOf(upper), bucket) << upper;
    if (upper == std::numeric_limits<int64_t>::max()) break;
    value = upper + 1;
  }
}

TEST(LatencyHistogramTest, LargestValueHasABucket) {
  LatencyHistogram histogram;
  histogram.Record(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(histogram.Percentile(50), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(LatencyHistogram::BucketUpperBound(
                LatencyHistogram::BucketOf(std::numeric_limits<int64_t>::max())),
            std::numeric_limits<int64_t>::max());
}

TEST(LatencyHistogramTest, ReportedValuesAreWithinOneIn256AboveTheRecordedOnes) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> values(512, int64_t{100} * 1000 * 1000 * 1000);
  for (int i = 0; i < 100000; ++i) {
    const int64_t value = values(rng);
    const int64_t upper = LatencyHistogram::BucketUpperBound(LatencyHistogram::BucketOf(value));
    ASSERT_GE(upper, value);
    ASSERT_LE(static_cast<double>(upper - value), static_cast<double>(value) / 256) << value;
  }
}

TEST(LatencyHistogramTest, MergeEqualsRecordingEverythingInOne) {
  LatencyHistogram a, b, all;
  for (int64_t v = 1; v <= 1000; ++v) {
    const int64_t value = v * 7919;
    (v % 3 == 0 ? a : b).Record(value);
    all.Record(value);
  }
  LatencyHistogram empty;
  a.Merge(b);
  a.Merge(empty);
  EXPECT_EQ(a.Count(), all.Count());
  EXPECT_EQ(a.Min(), all.Min());
  EXPECT_EQ(a.Max(), all.Max());
  EXPECT_DOUBLE_EQ(a.Mean(), all.Mean());
  for (double p : {0.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    EXPECT_EQ(a.Percentile(p), all.Percentile(p)) << p;
  }
  empty.Merge(all);
  EXPECT_EQ(empty.Min(), all.Min());
  EXPECT_EQ(empty.Percentile(50), all.Percentile(50));
}

}  // namespace
}  // namespace kms::bench
