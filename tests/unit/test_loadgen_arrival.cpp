// Arrival times of `ember bench`: gamma gaps with mean 1/rate and coefficient
// of variation 1/sqrt(burstiness) (1 for a Poisson process), fixed by the seed.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "loadgen/arrival.h"
#include "loadgen/stats.h"

namespace ember {
namespace {

std::vector<double> gaps_of(const std::vector<double>& t) {
  std::vector<double> g;
  for (size_t i = 1; i < t.size(); ++i) g.push_back(t[i] - t[i - 1]);
  return g;
}

TEST(LoadgenArrival, InfiniteRateSendsAllAtOnce) {
  for (double rate : {0.0, std::numeric_limits<double>::infinity()}) {
    const auto t = arrival_times(10, rate, 1.0, 1);
    ASSERT_EQ(t.size(), 10u);
    for (double v : t) EXPECT_EQ(v, 0);
  }
  EXPECT_TRUE(arrival_times(0, 5, 1, 1).empty());
}

TEST(LoadgenArrival, PoissonGapsHaveMeanOneOverRateAndCvOne) {
  const auto t = arrival_times(20001, 50.0, 1.0, 42);
  EXPECT_EQ(t.front(), 0);
  const auto g = gaps_of(t);
  for (double v : g) ASSERT_GE(v, 0);
  const double mean = mean_of(g), cv = stddev_of(g) / mean;
  // 20000 exponential gaps: the standard error of the mean is 1/(50 sqrt(20000)) = 0.00014 s.
  EXPECT_NEAR(mean, 0.02, 0.0006);
  EXPECT_NEAR(cv, 1.0, 0.03);
  // An exponential's median is ln 2 / rate.
  EXPECT_NEAR(percentile(g, 50), std::log(2.0) / 50, 0.0008);
}

TEST(LoadgenArrival, BurstinessChangesTheSpreadNotTheRate) {
  for (double k : {0.25, 4.0}) {
    const auto g = gaps_of(arrival_times(20001, 10.0, k, 7));
    EXPECT_NEAR(mean_of(g), 0.1, 0.1 * 0.05) << "burstiness " << k;
    EXPECT_NEAR(stddev_of(g) / mean_of(g), 1 / std::sqrt(k), 0.05 / std::sqrt(k)) << "burstiness " << k;
  }
}

TEST(LoadgenArrival, TheSeedFixesTheSchedule) {
  EXPECT_EQ(arrival_times(100, 3, 1, 9), arrival_times(100, 3, 1, 9));
  EXPECT_NE(arrival_times(100, 3, 1, 9), arrival_times(100, 3, 1, 10));
}

}  // namespace
}  // namespace ember
