#include "engine/spec_decode/ngram_proposer.h"

#include <algorithm>

#include "engine/spec_decode/proposer.h"

namespace ember {

std::vector<int32_t> propose_ngram(std::span<const int32_t> tokens, int32_t k, int32_t min_n, int32_t max_n) {
  const auto len = static_cast<int64_t>(tokens.size());
  for (int64_t n = std::min<int64_t>(max_n, len - 1); n >= min_n; --n) {
    const std::span<const int32_t> suffix = tokens.subspan(static_cast<size_t>(len - n));
    // The latest earlier match wins: recent context predicts best. A match
    // must be followed by at least one token.
    for (int64_t start = len - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + start)) continue;
      const int64_t from = start + n;
      const int64_t take = std::min<int64_t>(k, len - from);
      return {tokens.begin() + from, tokens.begin() + from + take};
    }
  }
  return {};
}

void NgramProposer::propose(std::span<const ProposalRequest> reqs, std::vector<std::vector<int32_t>>& out) {
  out.resize(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i)
    out[i] = propose_ngram(reqs[i].tokens, std::min(config_.num_speculative_tokens, reqs[i].max_tokens),
                           config_.prompt_lookup_min, config_.prompt_lookup_max);
}

}  // namespace ember
