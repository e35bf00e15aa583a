#pragma once
// Engine metrics, mirrored on vLLM's names with an `ember:` prefix. The engine
// thread updates them once per step and per finished request; the HTTP server
// renders a snapshot as Prometheus text for GET /metrics.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ember {

// Cumulative histogram with fixed upper bounds (Prometheus `le` buckets).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of metric `name` (with `labels`,
  // e.g. `model_name="x"`) to `out`.
  void render(const std::string& name, const std::string& labels, std::string& out) const;
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = +Inf
  uint64_t count_ = 0;
  double sum_ = 0.0;
};

struct EngineMetrics {
  EngineMetrics();

  // Gauges (current step).
  int64_t num_requests_running = 0;
  int64_t num_requests_waiting = 0;
  double kv_cache_usage = 0.0;  // 0..1
  // Counters.
  uint64_t prompt_tokens_total = 0;
  uint64_t generation_tokens_total = 0;
  uint64_t num_preemptions_total = 0;
  uint64_t prefix_cache_queries_total = 0;  // tokens looked up
  uint64_t prefix_cache_hits_total = 0;     // tokens found
  std::map<std::string, uint64_t> request_success_total;  // by finished_reason
  // Speculative decoding (vLLM's spec_decode counters): verification runs with at least
  // one proposed token, proposed tokens verified, those accepted, and accepted ones by
  // position in their run (index 0 = the first proposed token).
  uint64_t spec_decode_num_drafts_total = 0;
  uint64_t spec_decode_num_draft_tokens_total = 0;
  uint64_t spec_decode_num_accepted_tokens_total = 0;
  std::vector<uint64_t> spec_decode_num_accepted_tokens_per_pos;
  bool spec_decode_enabled = false;  // the counters are rendered only then
  // Histograms.
  Histogram time_to_first_token;
  Histogram inter_token_latency;
  Histogram e2e_request_latency;
  Histogram request_prompt_tokens;
  Histogram request_generation_tokens;

  std::string prometheus(const std::string& model_name) const;
};

}  // namespace ember
