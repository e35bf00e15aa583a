#pragma once
// N-gram drafting (prompt lookup decoding, as vLLM's "ngram" method): find the
// most recent earlier occurrence of the sequence's last n tokens (n from
// prompt_lookup_max down to prompt_lookup_min) in its own prompt and output,
// and propose the k tokens that followed it. No model, no state: a pure
// function of the tokens. Pays off where the output repeats the input
// (editing code, extracting fields, summaries that quote).

#include <cstdint>
#include <span>
#include <vector>

namespace ember {

// At most k tokens (none when nothing matches). Scans O(len * n) per call.
std::vector<int32_t> propose_ngram(std::span<const int32_t> tokens, int32_t k, int32_t min_n, int32_t max_n);

}  // namespace ember
