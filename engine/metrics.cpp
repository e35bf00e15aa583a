#include "engine/metrics.h"

#include <algorithm>
#include <cstdio>

namespace ember {
namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// 1, 2, 5, 10, 20, 50, ... up to 1e6 tokens (vLLM's build_1_2_5_buckets).
std::vector<double> one_two_five(double max) {
  std::vector<double> out;
  for (double base = 1; base <= max; base *= 10)
    for (double m : {1.0, 2.0, 5.0})
      if (base * m <= max) out.push_back(base * m);
  return out;
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Histogram::observe(double v) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  ++count_;
  sum_ += v;
}

void Histogram::render(const std::string& name, const std::string& labels, std::string& out) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{" + labels + ",le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum{" + labels + "} " + num(sum_) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count_) + "\n";
}

EngineMetrics::EngineMetrics()
    : time_to_first_token({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                           20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}),
      inter_token_latency({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                           20.0, 40.0, 80.0}),
      e2e_request_latency({0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0}),
      request_prompt_tokens(one_two_five(1e6)),
      request_generation_tokens(one_two_five(1e6)) {}

std::string EngineMetrics::prometheus(const std::string& model_name) const {
  const std::string labels = "model_name=\"" + model_name + "\"";
  std::string out;
  auto gauge = [&](const char* name, const char* help, double v) {
    header(out, name, "gauge", help);
    out += std::string(name) + "{" + labels + "} " + num(v) + "\n";
  };
  auto counter = [&](const char* name, const char* help, double v) {
    header(out, name, "counter", help);
    out += std::string(name) + "{" + labels + "} " + num(v) + "\n";
  };
  gauge("ember:num_requests_running", "Number of requests in model execution batches.",
        static_cast<double>(num_requests_running));
  gauge("ember:num_requests_waiting", "Number of requests waiting to be processed.",
        static_cast<double>(num_requests_waiting));
  gauge("ember:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv_cache_usage);
  counter("ember:prompt_tokens_total", "Number of prefill tokens processed.", static_cast<double>(prompt_tokens_total));
  counter("ember:generation_tokens_total", "Number of generation tokens processed.",
          static_cast<double>(generation_tokens_total));
  counter("ember:num_preemptions_total", "Cumulative number of preemptions from the engine.",
          static_cast<double>(num_preemptions_total));
  counter("ember:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
          static_cast<double>(prefix_cache_queries_total));
  counter("ember:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.",
          static_cast<double>(prefix_cache_hits_total));
  header(out, "ember:request_success_total", "counter", "Count of successfully processed requests.");
  for (const char* reason : {"stop", "length", "abort"}) {
    const auto it = request_success_total.find(reason);
    out += "ember:request_success_total{" + labels + ",finished_reason=\"" + reason + "\"} " +
           std::to_string(it == request_success_total.end() ? 0 : it->second) + "\n";
  }
  if (spec_decode_enabled) {
    counter("ember:spec_decode_num_drafts_total", "Number of spec decoding drafts.",
            static_cast<double>(spec_decode_num_drafts_total));
    counter("ember:spec_decode_num_draft_tokens_total", "Number of draft tokens.",
            static_cast<double>(spec_decode_num_draft_tokens_total));
    counter("ember:spec_decode_num_accepted_tokens_total", "Number of accepted tokens.",
            static_cast<double>(spec_decode_num_accepted_tokens_total));
    header(out, "ember:spec_decode_num_accepted_tokens_per_pos", "counter",
           "Accepted tokens per draft position.");
    for (size_t i = 0; i < spec_decode_num_accepted_tokens_per_pos.size(); ++i)
      out += "ember:spec_decode_num_accepted_tokens_per_pos{" + labels + ",position=\"" + std::to_string(i) +
             "\"} " + std::to_string(spec_decode_num_accepted_tokens_per_pos[i]) + "\n";
  }
  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    header(out, name, "histogram", help);
    h.render(name, labels, out);
  };
  histogram("ember:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            time_to_first_token);
  histogram("ember:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            inter_token_latency);
  histogram("ember:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
            e2e_request_latency);
  histogram("ember:request_prompt_tokens", "Number of prefill tokens processed.", request_prompt_tokens);
  histogram("ember:request_generation_tokens", "Number of generation tokens processed.", request_generation_tokens);
  return out;
}

}  // namespace ember
