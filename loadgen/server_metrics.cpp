#include "loadgen/server_metrics.h"

#include <cstdlib>
#include <string>

namespace ember {

SpecDecodeCounters SpecDecodeCounters::minus(const SpecDecodeCounters& b) const {
  SpecDecodeCounters d;
  d.num_drafts = num_drafts - b.num_drafts;
  d.num_draft_tokens = num_draft_tokens - b.num_draft_tokens;
  d.num_accepted_tokens = num_accepted_tokens - b.num_accepted_tokens;
  d.accepted_per_pos = accepted_per_pos;
  for (size_t i = 0; i < d.accepted_per_pos.size() && i < b.accepted_per_pos.size(); ++i)
    d.accepted_per_pos[i] -= b.accepted_per_pos[i];
  return d;
}

nlohmann::json SpecDecodeCounters::to_json() const {
  nlohmann::json per_pos = nlohmann::json::array();
  for (double a : accepted_per_pos) per_pos.push_back(num_drafts > 0 ? a / num_drafts : 0.0);
  return {{"num_drafts", num_drafts},
          {"num_draft_tokens", num_draft_tokens},
          {"num_accepted_tokens", num_accepted_tokens},
          {"acceptance_rate", acceptance_rate()},
          {"mean_acceptance_length", mean_acceptance_length()},
          {"acceptance_rate_per_position", per_pos}};
}

std::optional<SpecDecodeCounters> parse_spec_decode_counters(std::string_view text) {
  SpecDecodeCounters c;
  bool found = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    // name{labels} value
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos) continue;
    std::string_view name = line.substr(0, name_end);
    for (std::string_view prefix : {"vllm:", "ember:"})
      if (name.substr(0, prefix.size()) == prefix) name.remove_prefix(prefix.size());
    if (name.substr(0, 12) != "spec_decode_") continue;
    const size_t value_at = line.find_last_of(' ');
    if (value_at == std::string_view::npos) continue;
    const std::string value_text(line.substr(value_at + 1));
    char* parsed_end = nullptr;
    const double v = std::strtod(value_text.c_str(), &parsed_end);
    if (parsed_end == value_text.c_str()) continue;
    const std::string_view labels = name_end < line.size() && line[name_end] == '{'
                                        ? line.substr(name_end, line.find('}', name_end) - name_end)
                                        : std::string_view();
    if (name == "spec_decode_num_drafts_total") {
      c.num_drafts += v;
    } else if (name == "spec_decode_num_draft_tokens_total") {
      c.num_draft_tokens += v;
    } else if (name == "spec_decode_num_accepted_tokens_total") {
      c.num_accepted_tokens += v;
    } else if (name == "spec_decode_num_accepted_tokens_per_pos_total" ||
               name == "spec_decode_num_accepted_tokens_per_pos") {
      const size_t at = labels.find("position=\"");
      if (at == std::string_view::npos) continue;
      const int p = std::atoi(std::string(labels.substr(at + 10)).c_str());
      if (p < 0 || p > 1024) continue;
      if (c.accepted_per_pos.size() <= static_cast<size_t>(p)) c.accepted_per_pos.resize(static_cast<size_t>(p) + 1);
      c.accepted_per_pos[static_cast<size_t>(p)] += v;
    } else {
      continue;
    }
    found = true;
  }
  if (!found) return std::nullopt;
  return c;
}

}  // namespace ember
