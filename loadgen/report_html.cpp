#include <algorithm>
#include <cstdio>

#include "loadgen/report.h"
#include "loadgen/svg_plot.h"

namespace ember {
namespace {

// An empirical CDF, thinned to at most `max_points` so a big run keeps the page small.
std::vector<std::pair<double, double>> cdf(std::vector<double> values, size_t max_points = 400) {
  std::sort(values.begin(), values.end());
  std::vector<std::pair<double, double>> pts;
  const size_t n = values.size();
  if (n == 0) return pts;
  const size_t step = std::max<size_t>(1, n / max_points);
  for (size_t i = 0; i < n; i += step) pts.emplace_back(values[i], static_cast<double>(i + 1) / static_cast<double>(n));
  if (pts.back().second < 1.0) pts.emplace_back(values.back(), 1.0);
  return pts;
}

std::string fmt(double v, const char* f = "%.2f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

constexpr const char* kStyle =
    "<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 16px}"
    "td,th{border:1px solid #ddd;padding:3px 10px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child"
    "{text-align:left}.plots{display:flex;flex-wrap:wrap;gap:12px}.fail{color:#b00}</style>\n";

std::string page(const std::string& title, const std::string& body) {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(title) + "</title>\n" +
         kStyle + "</head><body>\n<h1>" + html_escape(title) + "</h1>\n" + body + "</body></html>\n";
}

std::string config_table(const BenchRun& run) {
  std::string o = "<table id=\"config\"><tr><th>setting</th><th>value</th></tr>\n";
  auto row = [&](const std::string& k, const std::string& v) {
    o += "<tr><td>" + html_escape(k) + "</td><td>" + html_escape(v) + "</td></tr>\n";
  };
  row("date", run.date);
  row("server", run.target.base_url + run.target.endpoint);
  row("model", run.target.model);
  row("dataset", run.dataset);
  row("prompts", std::to_string(run.num_prompts));
  row("request rate", run.request_rate > 0 ? fmt(run.request_rate) + " req/s (burstiness " + fmt(run.burstiness) + ")" : "inf");
  row("max concurrency", run.max_concurrency > 0 ? std::to_string(run.max_concurrency) : "none");
  return o + "</table>\n";
}

std::string metrics_table(const BenchRun& run) {
  const BenchMetrics& m = run.metrics;
  std::string o = "<table id=\"summary\"><tr><th>metric</th><th>value</th></tr>\n";
  auto row = [&](const std::string& k, const std::string& v) {
    o += "<tr><td>" + html_escape(k) + "</td><td>" + html_escape(v) + "</td></tr>\n";
  };
  row("completed / failed", std::to_string(m.completed) + " / " + std::to_string(m.failed));
  row("duration (s)", fmt(m.duration_s));
  row("input / output tokens", std::to_string(m.total_input_tokens) + " / " + std::to_string(m.total_output_tokens) +
                                   (m.usage_from_server ? "" : " (some counted from chunks: no usage)"));
  row("request throughput (req/s)", fmt(m.request_throughput));
  if (run.slo.any()) row("request goodput (req/s)", fmt(m.request_goodput));
  row("output throughput (tok/s)", fmt(m.output_throughput));
  row("peak output throughput (tok/s)", fmt(m.max_output_tokens_per_s));
  row("total token throughput (tok/s)", fmt(m.total_token_throughput));
  row("peak concurrency", std::to_string(m.peak_concurrency));
  o += "</table>\n<table id=\"latency\"><tr><th>ms</th><th>mean</th><th>median</th><th>std</th>";
  for (const auto& [p, v] : m.ttft_ms.percentiles) o += "<th>" + percentile_key(p) + "</th>";
  o += "</tr>\n";
  for (const auto& [name, d] : {std::pair<const char*, const Distribution*>{"TTFT", &m.ttft_ms}, {"TPOT", &m.tpot_ms},
                                {"ITL", &m.itl_ms}, {"E2E", &m.e2el_ms}}) {
    o += std::string("<tr><td>") + name + "</td><td>" + fmt(d->mean) + "</td><td>" + fmt(d->median) + "</td><td>" + fmt(d->stddev) + "</td>";
    for (const auto& [p, v] : d->percentiles) o += "<td>" + fmt(v) + "</td>";
    o += "</tr>\n";
  }
  o += "</table>\n";
  if (!m.failure_reasons.empty()) {
    o += "<h2 class=\"fail\">Failures</h2><ul id=\"failures\">\n";
    for (const auto& [reason, count] : m.failure_reasons) o += "<li>" + std::to_string(count) + " &times; " + html_escape(reason) + "</li>\n";
    o += "</ul>\n";
  }
  return o;
}

}  // namespace

std::string html_report(const BenchRun& run) {
  std::vector<double> ttft, tpot;
  PlotSeries e2e_dots = dot_series("E2E latency", "#1f77b4"), ttft_dots = dot_series("TTFT", "#ff7f0e");
  for (const RequestRecord& r : run.records) {
    if (!r.success) continue;
    ttft.push_back(r.ttft_s * 1000);
    if (r.output_tokens > 1) tpot.push_back(tpot_of(r) * 1000);
    e2e_dots.points.emplace_back(r.start_s, r.latency_s * 1000);
    ttft_dots.points.emplace_back(r.start_s, r.ttft_s * 1000);
  }
  const double bin = std::max(0.25, run.metrics.duration_s / 60);
  const TimeSeries ts = time_series_of(run.records, run.metrics.duration_s, bin);
  PlotSeries tput = line_series("output tok/s", "#2ca02c"), conc = line_series("requests in flight", "#9467bd");
  for (size_t b = 0; b < ts.output_tokens_per_s.size(); ++b) {
    const double t = (static_cast<double>(b) + 0.5) * ts.bin_s;
    tput.points.emplace_back(t, ts.output_tokens_per_s[b]);
    conc.points.emplace_back(t, ts.concurrency[b]);
  }
  std::string body = config_table(run) + metrics_table(run) + "<div class=\"plots\">\n";
  body += svg_plot({"ttft_cdf", "TTFT CDF", "TTFT (ms)", "fraction of requests", {line_series("TTFT", "#ff7f0e", cdf(ttft))}});
  body += svg_plot({"tpot_cdf", "TPOT CDF", "TPOT (ms)", "fraction of requests", {line_series("TPOT", "#1f77b4", cdf(tpot))}});
  body += svg_plot({"latency_over_time", "Latency over time", "request start (s)", "ms", {e2e_dots, ttft_dots}});
  body += svg_plot({"throughput_over_time", "Output throughput over time", "time (s)", "tokens/s", {tput}});
  body += svg_plot({"concurrency_over_time", "Concurrency over time", "time (s)", "requests in flight", {conc}});
  body += "</div>\n";
  return page("ember bench serve: " + run.target.model, body);
}

std::string sweep_html_report(const std::vector<BenchRun>& runs, const std::string& swept) {
  PlotSeries ttft = line_series("median TTFT", "#ff7f0e"), tpot = line_series("median TPOT", "#1f77b4"),
             e2e = line_series("median E2E", "#2ca02c");
  for (PlotSeries* s : {&ttft, &tpot, &e2e}) s->labels = true;
  std::string rows;
  for (const BenchRun& r : runs) {
    const double x = r.metrics.output_throughput;
    const std::string label = swept == "max-concurrency" ? "c=" + std::to_string(r.max_concurrency)
                              : r.request_rate > 0       ? "r=" + fmt(r.request_rate, "%g")
                                                         : "r=inf";
    ttft.points.emplace_back(x, r.metrics.ttft_ms.median);
    tpot.points.emplace_back(x, r.metrics.tpot_ms.median);
    e2e.points.emplace_back(x, r.metrics.e2el_ms.median);
    for (PlotSeries* s : {&ttft, &tpot, &e2e}) s->point_labels.push_back(label);
    rows += "<tr><td>" + html_escape(label) + "</td><td>" + std::to_string(r.metrics.completed) + "</td><td>" +
            std::to_string(r.metrics.failed) + "</td><td>" + fmt(r.metrics.request_throughput) + "</td><td>" +
            fmt(x, "%.1f") + "</td><td>" + fmt(r.metrics.ttft_ms.median) + "</td><td>" + fmt(r.metrics.tpot_ms.median) +
            "</td><td>" + fmt(r.metrics.e2el_ms.median) + "</td></tr>\n";
  }
  std::string body = runs.empty() ? "" : config_table(runs.front());
  body += "<table id=\"sweep\"><tr><th>point</th><th>ok</th><th>failed</th><th>req/s</th><th>out tok/s</th>"
          "<th>median TTFT ms</th><th>median TPOT ms</th><th>median E2E ms</th></tr>\n" + rows + "</table>\n";
  body += "<div class=\"plots\">\n";
  body += svg_plot({"sweep_ttft", "Throughput vs TTFT", "output throughput (tok/s)", "median TTFT (ms)", {ttft}});
  body += svg_plot({"sweep_tpot", "Throughput vs TPOT", "output throughput (tok/s)", "median TPOT (ms)", {tpot}});
  body += svg_plot({"sweep_e2e", "Throughput vs E2E latency", "output throughput (tok/s)", "median E2E (ms)", {e2e}});
  body += "</div>\n";
  return page("ember bench sweep over " + swept, body);
}

}  // namespace ember
