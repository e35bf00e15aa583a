#pragma once
// SamplingParams: everything a request says about how its tokens are chosen
// and when it stops. Validated once, here, at the edge (HTTP, CLI); the engine
// and the sampler trust a params object that passed validate().

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace ember {
namespace structured {
class CompiledGrammar;  // engine/structured/token_masks.h
}

struct SamplingParams {
  int32_t n = 1;                 // completions per prompt
  int32_t max_tokens = 16;       // generated tokens at most (OpenAI's default for completions)
  bool skip_special_tokens = true;  // special tokens' text left out of the output (vLLM's)
  int32_t min_tokens = 0;        // EOS and stop_token_ids are masked until this many were generated
  float temperature = 1.0f;      // 0 (below 1e-5, as vLLM) means greedy
  float top_p = 1.0f;            // nucleus mass kept, (0, 1]
  int32_t top_k = -1;            // -1 or 0: off
  float min_p = 0.0f;            // keep tokens with p >= min_p * p_max
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;  // HF/CTRL style, over prompt and output tokens
  std::map<int32_t, float> logit_bias;
  std::optional<uint64_t> seed;  // set: output independent of the batch and reproducible
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // How many alternatives to report next to each sampled token's logprob
  // (completions' `logprobs`). Unset: no logprobs at all.
  std::optional<int32_t> logprobs;
  // Chat's `top_logprobs`; the server folds it into `logprobs` (validated here
  // so both APIs give the same message).
  int32_t top_logprobs = 0;
  bool echo = false;
  // Structured outputs: every token keeps the output in this grammar's
  // language, and EOS comes only where it may end (engine/structured). Set by
  // the server from response_format / structured_outputs / tool_choice.
  std::shared_ptr<const structured::CompiledGrammar> grammar;

  // All checks at once: the error lists one message per bad field, each naming
  // the field as the OpenAI API spells it, joined by "; ".
  Status validate(int32_t vocab_size) const;

  bool greedy() const { return temperature < kGreedyEpsilon; }
  int32_t top_k_or_off() const { return top_k <= 0 ? -1 : top_k; }
  // The penalties read the generated token ids (min_tokens reads only their count).
  bool penalizes_outputs() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }

  static constexpr float kGreedyEpsilon = 1e-5f;
  static constexpr int32_t kMaxLogprobs = 20;
};

}  // namespace ember
