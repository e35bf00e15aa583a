#pragma once
// What a server's Prometheus /metrics says about speculative decoding, read
// before and after a run so `ember bench` can report the run's acceptance:
// vLLM's spec_decode counters under the `vllm:` or `ember:` prefix (summed over
// their labels; per position by the `position` label).

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ember {

struct SpecDecodeCounters {
  double num_drafts = 0, num_draft_tokens = 0, num_accepted_tokens = 0;
  std::vector<double> accepted_per_pos;

  // This run's share: after - before.
  SpecDecodeCounters minus(const SpecDecodeCounters& before) const;
  double acceptance_rate() const { return num_draft_tokens > 0 ? num_accepted_tokens / num_draft_tokens : 0.0; }
  double mean_acceptance_length() const { return num_drafts > 0 ? 1.0 + num_accepted_tokens / num_drafts : 0.0; }
  nlohmann::json to_json() const;
};

// nullopt when the text has no spec_decode counters (speculation off, or not a vLLM-style server).
std::optional<SpecDecodeCounters> parse_spec_decode_counters(std::string_view prometheus_text);

}  // namespace ember
