#pragma once
// The three outputs of a run: the terminal summary, --result-json (every
// metric and every request, vLLM's key names where vLLM has the metric) and
// --report-html (one self-contained page of inline-SVG plots).

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loadgen/metrics.h"
#include "loadgen/openai_client.h"
#include "loadgen/server_metrics.h"

namespace ember {

// One run and how it was configured.
struct BenchRun {
  TargetOptions target;
  std::string dataset;
  int64_t num_prompts = 0;
  double request_rate = 0;  // 0: inf
  double burstiness = 1;
  int64_t max_concurrency = 0;
  uint64_t seed = 0;
  std::string date;  // local time, YYYYMMDD-HHMMSS
  std::vector<double> percentiles;
  GoodputSlo slo;
  std::vector<RequestRecord> records;
  BenchMetrics metrics;
  // The server's speculative decoding during the run (its /metrics before and after), when it reports any.
  std::optional<SpecDecodeCounters> spec_decode;
};

// vLLM's key for a percentile: 99 -> "p99", 99.9 -> "p99.9".
std::string percentile_key(double p);

nlohmann::json result_json(const BenchRun& run);
std::string summary_text(const BenchRun& run);
std::string html_report(const BenchRun& run);

// `ember bench sweep`: one summary row per run and the throughput-latency plots.
std::string sweep_summary_text(const std::vector<BenchRun>& runs, const std::string& swept);
std::string sweep_html_report(const std::vector<BenchRun>& runs, const std::string& swept);

}  // namespace ember
