#pragma once
// Drives one benchmark run: sends the requests at their arrival times with at
// most max_concurrency in flight, and collects one record per request.
// A pool of worker threads, each with its own keep-alive connection, takes
// requests in arrival order; a worker waits for the request's send time, so a
// request starts at max(arrival, a free slot), like vLLM's semaphore.

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "loadgen/metrics.h"
#include "loadgen/openai_client.h"

namespace ember {

struct RunOptions {
  double request_rate = 0;     // requests/s; 0 or inf: all at once
  double burstiness = 1;       // gamma shape of the gaps (1: Poisson)
  int64_t max_concurrency = 0;  // 0: unlimited (capped at kMaxWorkers threads)
  int64_t num_warmups = 0;     // sent one by one before the run; not measured
  uint64_t seed = 0;
  bool progress = true;        // a live progress line on stderr when it is a terminal
};

struct RunResult {
  std::vector<RequestRecord> records;  // in request order
  double duration_s = 0;               // first send to last completion
  int64_t workers = 0;
  int64_t warmup_failures = 0;
};

constexpr int64_t kMaxWorkers = 1024;

Result<RunResult> run_load(const TargetOptions& target, const std::vector<BenchRequest>& requests, const RunOptions& options);

}  // namespace ember
