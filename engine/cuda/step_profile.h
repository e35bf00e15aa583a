#pragma once
// EMBER_CUDA_PROFILE=1: where a step's time goes, by step kind, printed to
// stderr when the runner is destroyed: host wall time inside the runner
// (preparation, launches, and the wait for the tokens), the GPU's span of the
// step (CUDA events from the inputs' upload to the tokens' copy back), and the
// GPU's idle time before the step: from the previous step's last copy to this
// step's first (what async scheduling exists to remove).

#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace ember {

struct StepProfile {
  using Clock = std::chrono::steady_clock;
  struct Kind {
    int64_t steps = 0, tokens = 0, seqs = 0;
    double host_ms = 0, gpu_ms = 0, idle_ms = 0;
  };
  struct Open {  // launched, not finished
    std::string kind;
    int64_t tokens = 0, seqs = 0;
    double host_ms = 0;
    int slot = 0;
  };
  // Events of the outstanding steps and of the last finished one.
  static constexpr int kRing = 4;
  cudaEvent_t start[kRing] = {}, end[kRing] = {};
  std::deque<Open> open;
  std::map<std::string, Kind> kinds;
  int next = 0;
  int prev = -1;  // the last finished step's slot

  StepProfile();
  ~StepProfile();
  static double ms_since(Clock::time_point t);
  // Before the step's first GPU work.
  void begin(std::string kind, int64_t tokens, int64_t seqs, cudaStream_t stream);
  // After its last GPU work was enqueued; host_ms: the host's time so far.
  void end_launch(double host_ms, cudaStream_t stream);
  // Its tokens are back; host_ms: the host's time spent collecting them.
  void finish(double host_ms);
  void report() const;
};

}  // namespace ember
