#pragma once
// What one benchmark run measured, per request and in aggregate. Definitions
// follow vLLM's benchmark_serving so the numbers compare one to one:
//   TTFT  = first content chunk - request start
//   TPOT  = (E2E - TTFT) / (output_tokens - 1), only for requests with > 1 token
//   ITL   = every gap between consecutive content chunks, all requests pooled
//   E2E   = end of the stream - request start
//   goodput = completed requests meeting every SLO given, per second
// Times are seconds from the start of the run (steady_clock); reports print ms.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "loadgen/stats.h"

namespace ember {

struct RequestRecord {
  int64_t index = 0;
  int64_t prompt_len = 0;       // the dataset's count (the server's usage wins when it sends one)
  int64_t max_tokens = 0;       // asked for
  bool success = false;
  std::string error;            // why it failed ("" on success)
  int http_status = 0;          // 0: no HTTP response (connection refused, timeout)
  double scheduled_s = 0;       // its arrival time; start_s is later when no slot was free
  double start_s = 0;           // when the request was sent, from the run's start
  double ttft_s = 0;            // first content chunk, from start_s
  double latency_s = 0;         // end of stream, from start_s
  std::vector<double> itl_s;    // gaps between content chunks
  int64_t output_tokens = 0;    // usage.completion_tokens, or counted chunks (usage_from_server false)
  int64_t prompt_tokens = 0;    // usage.prompt_tokens, or prompt_len
  bool usage_from_server = false;
  int64_t content_chunks = 0;   // chunks that carried text
  std::string generated_text;
};

// Service-level objectives for goodput, in milliseconds; <= 0: not set.
struct GoodputSlo {
  double ttft_ms = 0, tpot_ms = 0, e2el_ms = 0;
  bool any() const { return ttft_ms > 0 || tpot_ms > 0 || e2el_ms > 0; }
};

// Parses "ttft:200 tpot:50 e2el:1000" (any subset, space separated or repeated flags).
Result<GoodputSlo> parse_goodput(const std::vector<std::string>& items);

struct BenchMetrics {
  int64_t num_requests = 0;
  int64_t completed = 0;
  int64_t failed = 0;
  std::map<std::string, int64_t> failure_reasons;  // reason -> count
  double duration_s = 0;
  int64_t total_input_tokens = 0;   // completed requests only
  int64_t total_output_tokens = 0;  // completed requests only
  bool usage_from_server = true;    // false if any completed request had to count chunks
  double request_throughput = 0;    // completed / duration
  double output_throughput = 0;     // output tokens / duration
  double total_token_throughput = 0;
  double request_goodput = 0;       // only when an SLO is set
  int64_t good_requests = 0;
  int64_t peak_concurrency = 0;     // most requests in flight at one instant
  double max_output_tokens_per_s = 0;  // peak over 1 s windows
  Distribution ttft_ms, tpot_ms, itl_ms, e2el_ms;
};

BenchMetrics compute_metrics(const std::vector<RequestRecord>& records, double duration_s,
                             const std::vector<double>& percentiles, const GoodputSlo& slo);

// TPOT of one request in seconds; 0 when it has one output token or fewer.
double tpot_of(const RequestRecord& r);

// Most intervals [start, start + latency) open at one instant (ends sort before starts).
int64_t peak_concurrency_of(const std::vector<RequestRecord>& records);

// Time series for plots: bins of `bin_s` seconds from 0 to the last event.
struct TimeSeries {
  double bin_s = 1;
  std::vector<double> output_tokens_per_s;  // chunks' tokens, spread evenly over each request's chunks
  std::vector<double> concurrency;          // mean requests in flight during the bin
};
TimeSeries time_series_of(const std::vector<RequestRecord>& records, double duration_s, double bin_s);

}  // namespace ember
