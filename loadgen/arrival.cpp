#include "loadgen/arrival.h"

#include <cmath>
#include <random>

namespace ember {

std::vector<double> arrival_times(int64_t count, double rate, double burstiness, uint64_t seed) {
  std::vector<double> times(static_cast<size_t>(count > 0 ? count : 0), 0.0);
  if (!(rate > 0) || std::isinf(rate) || !(burstiness > 0)) return times;
  std::mt19937_64 rng(seed);
  // Mean of gamma(k, theta) is k * theta: theta = 1 / (rate * k) keeps the mean gap 1/rate.
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  double t = 0;
  for (size_t i = 1; i < times.size(); ++i) times[i] = t += gap(rng);
  return times;
}

}  // namespace ember
