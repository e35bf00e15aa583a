#include <cstdio>

#include "loadgen/report.h"

namespace ember {
namespace {

void row(std::string& o, const std::string& label, const std::string& value) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-42s%s\n", label.c_str(), value.c_str());
  o += buf;
}

std::string f2(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

void heading(std::string& o, const std::string& title, char fill = '-') {
  const size_t width = 50;
  const size_t pad = title.size() + 2 < width ? (width - title.size() - 2) / 2 : 0;
  std::string line(pad, fill);
  line += " " + title + " ";
  line.resize(width, fill);
  o += line + "\n";
}

void distribution(std::string& o, const std::string& title, const std::string& name, const Distribution& d) {
  heading(o, title);
  row(o, "Mean " + name + " (ms):", f2(d.mean));
  row(o, "Median " + name + " (ms):", f2(d.median));
  row(o, "Std " + name + " (ms):", f2(d.stddev));
  for (const auto& [p, v] : d.percentiles) {
    std::string key = percentile_key(p);
    key[0] = 'P';
    row(o, key + " " + name + " (ms):", f2(v));
  }
}

}  // namespace

std::string summary_text(const BenchRun& run) {
  const BenchMetrics& m = run.metrics;
  std::string o;
  heading(o, "Serving Benchmark Result", '=');
  row(o, "Successful requests:", std::to_string(m.completed));
  row(o, "Failed requests:", std::to_string(m.failed));
  row(o, "Maximum request concurrency:", run.max_concurrency > 0 ? std::to_string(run.max_concurrency) : "none");
  row(o, "Request rate (req/s):", run.request_rate > 0 ? f2(run.request_rate) : "inf");
  row(o, "Benchmark duration (s):", f2(m.duration_s));
  row(o, "Total input tokens:", std::to_string(m.total_input_tokens));
  row(o, "Total generated tokens:", std::to_string(m.total_output_tokens));
  row(o, "Request throughput (req/s):", f2(m.request_throughput));
  if (run.slo.any()) row(o, "Request goodput (req/s):", f2(m.request_goodput));
  row(o, "Output token throughput (tok/s):", f2(m.output_throughput));
  row(o, "Peak output token throughput (tok/s):", f2(m.max_output_tokens_per_s));
  row(o, "Peak concurrent requests:", std::to_string(m.peak_concurrency));
  row(o, "Total token throughput (tok/s):", f2(m.total_token_throughput));
  distribution(o, "Time to First Token", "TTFT", m.ttft_ms);
  distribution(o, "Time per Output Token (excl. 1st token)", "TPOT", m.tpot_ms);
  distribution(o, "Inter-token Latency", "ITL", m.itl_ms);
  distribution(o, "End-to-end Latency", "E2EL", m.e2el_ms);
  if (run.spec_decode && run.spec_decode->num_drafts > 0) {
    const SpecDecodeCounters& s = *run.spec_decode;
    heading(o, "Speculative Decoding", '-');
    row(o, "Acceptance rate (%):", f2(100.0 * s.acceptance_rate()));
    row(o, "Acceptance length:", f2(s.mean_acceptance_length()));
    row(o, "Drafts:", std::to_string(static_cast<int64_t>(s.num_drafts)));
    row(o, "Draft tokens:", std::to_string(static_cast<int64_t>(s.num_draft_tokens)));
    row(o, "Accepted tokens:", std::to_string(static_cast<int64_t>(s.num_accepted_tokens)));
  }
  o += std::string(50, '=') + "\n";
  if (!m.usage_from_server && m.completed > 0) {
    o += "note: the server sent no usage for some requests; their output tokens are counted content chunks\n";
  }
  if (!m.failure_reasons.empty()) {
    o += "Failures:\n";
    for (const auto& [reason, count] : m.failure_reasons) o += "  " + std::to_string(count) + " x " + reason + "\n";
  }
  return o;
}

std::string sweep_summary_text(const std::vector<BenchRun>& runs, const std::string& swept) {
  std::string o;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-14s %9s %9s %11s %11s %11s %11s %11s\n", swept.c_str(), "ok", "failed", "req/s",
                "out tok/s", "p50 TTFT", "p99 TTFT", "p50 TPOT");
  o += buf;
  for (const BenchRun& r : runs) {
    const std::string point = swept == "max-concurrency" ? std::to_string(r.max_concurrency)
                              : r.request_rate > 0       ? f2(r.request_rate)
                                                         : "inf";
    double p99 = 0;
    for (const auto& [p, v] : r.metrics.ttft_ms.percentiles) {
      if (p == 99) p99 = v;
    }
    std::snprintf(buf, sizeof buf, "%-14s %9lld %9lld %11.2f %11.1f %11.1f %11.1f %11.2f\n", point.c_str(),
                  static_cast<long long>(r.metrics.completed), static_cast<long long>(r.metrics.failed),
                  r.metrics.request_throughput, r.metrics.output_throughput, r.metrics.ttft_ms.median, p99,
                  r.metrics.tpot_ms.median);
    o += buf;
  }
  o += "(latencies in ms)\n";
  return o;
}

}  // namespace ember
