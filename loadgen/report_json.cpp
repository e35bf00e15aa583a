#include <cmath>
#include <cstdio>

#include "loadgen/report.h"

namespace ember {

using json = nlohmann::json;

std::string percentile_key(double p) {
  char buf[32];
  if (p == std::floor(p)) {
    std::snprintf(buf, sizeof buf, "p%d", static_cast<int>(p));
  } else {
    std::snprintf(buf, sizeof buf, "p%g", p);
  }
  return buf;
}

namespace {

void put_distribution(json& j, const std::string& name, const Distribution& d) {
  j["mean_" + name + "_ms"] = d.mean;
  j["median_" + name + "_ms"] = d.median;
  j["std_" + name + "_ms"] = d.stddev;
  j["min_" + name + "_ms"] = d.min;
  j["max_" + name + "_ms"] = d.max;
  for (const auto& [p, v] : d.percentiles) j[percentile_key(p) + "_" + name + "_ms"] = v;
}

}  // namespace

json result_json(const BenchRun& run) {
  const BenchMetrics& m = run.metrics;
  json j;
  j["date"] = run.date;
  j["backend"] = "openai-chat";
  if (run.target.endpoint.find("chat") == std::string::npos) j["backend"] = "openai";
  j["base_url"] = run.target.base_url;
  j["endpoint"] = run.target.endpoint;
  j["model_id"] = run.target.model;
  j["dataset"] = run.dataset;
  j["num_prompts"] = run.num_prompts;
  j["request_rate"] = run.request_rate > 0 ? json(run.request_rate) : json("inf");
  j["burstiness"] = run.burstiness;
  j["max_concurrency"] = run.max_concurrency > 0 ? json(run.max_concurrency) : json(nullptr);
  j["seed"] = run.seed;
  j["ignore_eos"] = run.target.ignore_eos;
  j["duration"] = m.duration_s;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["failure_reasons"] = m.failure_reasons;
  j["total_input_tokens"] = m.total_input_tokens;
  j["total_output_tokens"] = m.total_output_tokens;
  j["usage_from_server"] = m.usage_from_server;
  j["request_throughput"] = m.request_throughput;
  j["request_goodput"] = run.slo.any() ? json(m.request_goodput) : json(nullptr);
  j["goodput_slo_ms"] = {{"ttft", run.slo.ttft_ms > 0 ? json(run.slo.ttft_ms) : json(nullptr)},
                         {"tpot", run.slo.tpot_ms > 0 ? json(run.slo.tpot_ms) : json(nullptr)},
                         {"e2el", run.slo.e2el_ms > 0 ? json(run.slo.e2el_ms) : json(nullptr)}};
  j["good_requests"] = m.good_requests;
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  j["max_output_tokens_per_s"] = m.max_output_tokens_per_s;
  j["max_concurrent_requests"] = m.peak_concurrency;
  put_distribution(j, "ttft", m.ttft_ms);
  put_distribution(j, "tpot", m.tpot_ms);
  put_distribution(j, "itl", m.itl_ms);
  put_distribution(j, "e2el", m.e2el_ms);
  // vLLM's per-request arrays (seconds), then ember's richer records.
  json input_lens = json::array(), output_lens = json::array(), ttfts = json::array(), itls = json::array(),
       errors = json::array(), requests = json::array();
  for (const RequestRecord& r : run.records) {
    input_lens.push_back(r.prompt_tokens);
    output_lens.push_back(r.output_tokens);
    ttfts.push_back(r.ttft_s);
    itls.push_back(r.itl_s);
    errors.push_back(r.error);
    requests.push_back({{"index", r.index},
                        {"success", r.success},
                        {"error", r.error},
                        {"http_status", r.http_status},
                        {"scheduled_s", r.scheduled_s},
                        {"start_s", r.start_s},
                        {"ttft_s", r.ttft_s},
                        {"latency_s", r.latency_s},
                        {"tpot_s", tpot_of(r)},
                        {"prompt_len", r.prompt_len},
                        {"prompt_tokens", r.prompt_tokens},
                        {"max_tokens", r.max_tokens},
                        {"output_tokens", r.output_tokens},
                        {"usage_from_server", r.usage_from_server},
                        {"content_chunks", r.content_chunks},
                        {"itl_s", r.itl_s}});
  }
  j["input_lens"] = std::move(input_lens);
  j["output_lens"] = std::move(output_lens);
  j["ttfts"] = std::move(ttfts);
  j["itls"] = std::move(itls);
  j["errors"] = std::move(errors);
  j["requests"] = std::move(requests);
  if (run.spec_decode) j["spec_decode"] = run.spec_decode->to_json();
  return j;
}

}  // namespace ember
