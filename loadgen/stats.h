#pragma once
// Summary statistics with numpy's conventions, so ember's numbers can be
// checked against (and compared with) vLLM's benchmark_serving output:
// percentiles interpolate linearly between closest ranks (numpy's default
// "linear" method) and the standard deviation is the population one (ddof=0).

#include <cstddef>
#include <utility>
#include <vector>

namespace ember {

// p in [0, 100]. An empty input gives 0 (vLLM reports 0 for "no data").
double percentile(std::vector<double> values, double p);
double mean_of(const std::vector<double>& values);
double stddev_of(const std::vector<double>& values);

struct Distribution {
  double mean = 0, median = 0, stddev = 0, min = 0, max = 0;
  std::vector<std::pair<double, double>> percentiles;  // (p, value), in the order asked
  size_t count = 0;
};

Distribution summarize(const std::vector<double>& values, const std::vector<double>& percentiles);

}  // namespace ember
