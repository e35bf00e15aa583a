#include "engine/cuda/step_profile.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace ember {

StepProfile::StepProfile() {
  for (int i = 0; i < kRing; ++i) {
    cudaEventCreate(&start[i]);
    cudaEventCreate(&end[i]);
  }
}

StepProfile::~StepProfile() {
  for (int i = 0; i < kRing; ++i) {
    cudaEventDestroy(start[i]);
    cudaEventDestroy(end[i]);
  }
}

double StepProfile::ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

void StepProfile::begin(std::string kind, int64_t tokens, int64_t seqs, cudaStream_t stream) {
  Open o{std::move(kind), tokens, seqs, 0.0, next};
  next = (next + 1) % kRing;
  cudaEventRecord(start[o.slot], stream);
  open.push_back(std::move(o));
}

void StepProfile::end_launch(double host_ms, cudaStream_t stream) {
  cudaEventRecord(end[open.back().slot], stream);
  open.back().host_ms += host_ms;
}

void StepProfile::finish(double host_ms) {
  Open o = std::move(open.front());
  open.pop_front();
  Kind& k = kinds[o.kind];
  ++k.steps;
  k.tokens += o.tokens;
  k.seqs += o.seqs;
  k.host_ms += o.host_ms + host_ms;
  float ms = 0;
  if (cudaEventSynchronize(end[o.slot]) == cudaSuccess &&
      cudaEventElapsedTime(&ms, start[o.slot], end[o.slot]) == cudaSuccess)
    k.gpu_ms += ms;
  if (prev >= 0 && cudaEventElapsedTime(&ms, end[prev], start[o.slot]) == cudaSuccess) k.idle_ms += std::max(ms, 0.0f);
  prev = o.slot;
}

void StepProfile::report() const {
  std::fprintf(stderr,
               "ember: CUDA step profile (host ms inside the runner, the GPU's span of each step, and the GPU's "
               "idle ms before each step)\n");
  std::fprintf(stderr, "  %-22s %7s %9s %9s %11s %11s %11s %9s\n", "step kind", "steps", "tokens", "seqs", "host ms",
               "gpu ms", "idle ms", "idle/step");
  for (const auto& [name, k] : kinds) {
    std::fprintf(stderr, "  %-22s %7lld %9lld %9lld %11.1f %11.1f %11.1f %9.3f\n", name.c_str(),
                 static_cast<long long>(k.steps), static_cast<long long>(k.tokens), static_cast<long long>(k.seqs),
                 k.host_ms, k.gpu_ms, k.idle_ms, k.idle_ms / static_cast<double>(k.steps));
  }
}

}  // namespace ember
