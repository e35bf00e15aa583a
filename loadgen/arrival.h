#pragma once
// When each request is sent. A rate R gives gaps drawn from a gamma
// distribution with shape = burstiness and mean 1/R (vLLM's definition):
// burstiness 1 is a Poisson process (exponential gaps), < 1 burstier, > 1 more
// regular. An infinite rate sends everything at t = 0. The schedule is fixed
// up front from the seed, so two runs with one seed offer the same load.

#include <cstdint>
#include <vector>

namespace ember {

// Send times in seconds from the start, non-decreasing; the first is 0.
// rate <= 0 or infinite: all zeros. burstiness must be > 0.
std::vector<double> arrival_times(int64_t count, double rate, double burstiness, uint64_t seed);

}  // namespace ember
