#pragma once
// What --speculative-config (vLLM's flag, a JSON object) or its shorthands
// --speculative-model PATH / --num-speculative-tokens K ask for:
//   {"method": "ngram", "num_speculative_tokens": K, "prompt_lookup_min": 2, "prompt_lookup_max": 4}
//   {"method": "draft_model", "model": PATH, "num_speculative_tokens": K}
// and for either, "disable_by_batch_size": B (vLLM's key): no request
// speculates in a step that B or more running requests share.
// (a "model" without "method" means draft_model, as in vLLM). Parsed and
// checked once, at start: a bad config is an error naming the field.

#include <cstdint>
#include <string>

#include "common/status.h"

namespace ember {

struct SpeculativeConfig {
  enum class Method { kNone, kNgram, kDraftModel };
  Method method = Method::kNone;
  int32_t num_speculative_tokens = 0;  // K: tokens proposed (and verified) per step, 1..kMaxTokens
  std::string model;                   // draft_model: any model ember loads, with the target's vocabulary
  int32_t prompt_lookup_min = 1;       // ngram: the shortest suffix matched
  int32_t prompt_lookup_max = 4;       // ngram: the longest suffix tried first
  int32_t disable_by_batch_size = 0;   // 0: speculate at any batch size; else >= 2

  bool enabled() const { return method != Method::kNone; }
  static constexpr int32_t kMaxTokens = 16;
};

const char* method_name(SpeculativeConfig::Method method);

// `json`: the --speculative-config value (may be empty). `model` and `k`: the
// shorthands (empty / 0 when not given); they fill what the JSON leaves out.
Result<SpeculativeConfig> parse_speculative_config(const std::string& json, const std::string& model, int32_t k);

}  // namespace ember
