#include "loadgen/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace ember {
namespace {

std::vector<double> to_ms(const std::vector<double>& seconds) {
  std::vector<double> ms;
  ms.reserve(seconds.size());
  for (double s : seconds) ms.push_back(s * 1000.0);
  return ms;
}

// Content-chunk arrival times of one request, in seconds from the run start.
std::vector<double> chunk_times(const RequestRecord& r) {
  std::vector<double> t;
  if (r.content_chunks == 0) return t;
  double now = r.start_s + r.ttft_s;
  t.push_back(now);
  for (double gap : r.itl_s) t.push_back(now += gap);
  return t;
}

}  // namespace

Result<GoodputSlo> parse_goodput(const std::vector<std::string>& items) {
  GoodputSlo slo;
  for (const std::string& item : items) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) return Error{"--goodput: '" + item + "' is not NAME:MS (ttft, tpot or e2el)"};
    const std::string name = item.substr(0, colon), value = item.substr(colon + 1);
    char* end = nullptr;
    const double ms = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !(ms > 0) || !std::isfinite(ms)) {
      return Error{"--goodput: '" + item + "': the value must be a positive number of milliseconds"};
    }
    if (name == "ttft") {
      slo.ttft_ms = ms;
    } else if (name == "tpot") {
      slo.tpot_ms = ms;
    } else if (name == "e2el") {
      slo.e2el_ms = ms;
    } else {
      return Error{"--goodput: unknown metric '" + name + "' (use ttft, tpot or e2el)"};
    }
  }
  return slo;
}

double tpot_of(const RequestRecord& r) {
  if (r.output_tokens <= 1) return 0;
  return (r.latency_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1);
}

int64_t peak_concurrency_of(const std::vector<RequestRecord>& records) {
  std::vector<std::pair<double, int>> events;  // (+1 at start, -1 at end)
  for (const auto& r : records) {
    events.emplace_back(r.start_s, +1);
    events.emplace_back(r.start_s + r.latency_s, -1);
  }
  // At equal times the end sorts first: a request that ends as another starts
  // did not overlap it (a slot handed over under --max-concurrency).
  std::sort(events.begin(), events.end());
  int64_t now = 0, peak = 0;
  for (const auto& e : events) peak = std::max(peak, now += e.second);
  return peak;
}

TimeSeries time_series_of(const std::vector<RequestRecord>& records, double duration_s, double bin_s) {
  TimeSeries ts;
  ts.bin_s = bin_s > 0 ? bin_s : 1;
  double end = duration_s;
  for (const auto& r : records) end = std::max(end, r.start_s + r.latency_s);
  const size_t bins = std::max<size_t>(1, static_cast<size_t>(std::ceil(end / ts.bin_s)));
  ts.output_tokens_per_s.assign(bins, 0);
  ts.concurrency.assign(bins, 0);
  for (const auto& r : records) {
    if (r.success) {
      const auto times = chunk_times(r);
      const double per_chunk = times.empty() ? 0 : static_cast<double>(r.output_tokens) / static_cast<double>(times.size());
      for (double t : times) {
        const size_t b = std::min(bins - 1, static_cast<size_t>(t / ts.bin_s));
        ts.output_tokens_per_s[b] += per_chunk / ts.bin_s;
      }
    }
    const double a = r.start_s, z = r.start_s + r.latency_s;
    for (size_t b = static_cast<size_t>(a / ts.bin_s); b < bins; ++b) {
      const double lo = static_cast<double>(b) * ts.bin_s, hi = lo + ts.bin_s;
      if (lo >= z) break;
      ts.concurrency[b] += (std::min(hi, z) - std::max(lo, a)) / ts.bin_s;
    }
  }
  return ts;
}

BenchMetrics compute_metrics(const std::vector<RequestRecord>& records, double duration_s,
                             const std::vector<double>& percentiles, const GoodputSlo& slo) {
  BenchMetrics m;
  m.num_requests = static_cast<int64_t>(records.size());
  m.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  for (const auto& r : records) {
    if (!r.success) {
      ++m.failed;
      ++m.failure_reasons[r.error.empty() ? "unknown" : r.error];
      continue;
    }
    ++m.completed;
    m.total_input_tokens += r.prompt_tokens;
    m.total_output_tokens += r.output_tokens;
    if (!r.usage_from_server) m.usage_from_server = false;
    ttfts.push_back(r.ttft_s);
    e2els.push_back(r.latency_s);
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    const double tpot = tpot_of(r);
    if (r.output_tokens > 1) tpots.push_back(tpot);
    // As vLLM: a one-token request has TPOT 0 for goodput, so it meets any TPOT SLO.
    if (slo.any()) {
      const bool good = (slo.ttft_ms <= 0 || r.ttft_s * 1000 <= slo.ttft_ms) &&
                        (slo.tpot_ms <= 0 || tpot * 1000 <= slo.tpot_ms) &&
                        (slo.e2el_ms <= 0 || r.latency_s * 1000 <= slo.e2el_ms);
      if (good) ++m.good_requests;
    }
  }
  if (duration_s > 0) {
    m.request_throughput = static_cast<double>(m.completed) / duration_s;
    m.output_throughput = static_cast<double>(m.total_output_tokens) / duration_s;
    m.total_token_throughput = static_cast<double>(m.total_input_tokens + m.total_output_tokens) / duration_s;
    if (slo.any()) m.request_goodput = static_cast<double>(m.good_requests) / duration_s;
  }
  m.peak_concurrency = peak_concurrency_of(records);
  const TimeSeries ts = time_series_of(records, duration_s, 1.0);
  for (double v : ts.output_tokens_per_s) m.max_output_tokens_per_s = std::max(m.max_output_tokens_per_s, v);
  m.ttft_ms = summarize(to_ms(ttfts), percentiles);
  m.tpot_ms = summarize(to_ms(tpots), percentiles);
  m.itl_ms = summarize(to_ms(itls), percentiles);
  m.e2el_ms = summarize(to_ms(e2els), percentiles);
  return m;
}

}  // namespace ember
