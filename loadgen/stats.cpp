#include "loadgen/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ember {

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

double mean_of(const std::vector<double>& values) {
  if (values.empty()) return 0;
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

double stddev_of(const std::vector<double>& values) {
  if (values.empty()) return 0;
  const double m = mean_of(values);
  double sq = 0;
  for (double v : values) sq += (v - m) * (v - m);
  return std::sqrt(sq / static_cast<double>(values.size()));
}

Distribution summarize(const std::vector<double>& values, const std::vector<double>& percentiles) {
  Distribution d;
  d.count = values.size();
  if (values.empty()) {
    for (double p : percentiles) d.percentiles.emplace_back(p, 0.0);
    return d;
  }
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  d.mean = mean_of(sorted);
  d.stddev = stddev_of(sorted);
  d.min = sorted.front();
  d.max = sorted.back();
  d.median = percentile(sorted, 50);
  for (double p : percentiles) d.percentiles.emplace_back(p, percentile(sorted, p));
  return d;
}

}  // namespace ember
