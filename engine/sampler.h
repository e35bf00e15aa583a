#pragma once
// The sampler: one logits row per sequence in, one token (and its logprobs)
// out. This is the single implementation of the sampling logic; a GPU path
// must match it (tests compare against it).
//
// Processing order (as vLLM):
//   0. the grammar's token mask          (structured outputs: disallowed tokens -> -inf)
//   1. logit_bias                       (added to the raw logits)
//   2. min_tokens                       (EOS and stop_token_ids -> -inf while fewer outputs)
//   3. penalties                        repetition (HF: positive / r, negative * r, over
//                                       prompt + output), then frequency * count and
//                                       presence * [count > 0] over output tokens (OpenAI)
//   4. temperature < 1e-5 -> greedy     (argmax, lowest id on ties)
//      else logits / T, top-k, top-p, min-p, then one draw by inverse CDF over the
//      surviving ids in ascending id order.
// Logprobs are vLLM's default ("raw_logprobs"): the log-softmax of the model's raw
// logits, before bias, penalties, temperature or filtering. They describe the
// model, not the sampling recipe; the sampled token's logprob can be -inf only
// if the model itself gave it -inf.

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampling_params.h"

namespace ember {

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11): a counter-based generator, so a draw is a pure function of
// (key, counter). Written here from the paper's definition.
struct Philox4x32 {
  using Counter = std::array<uint32_t, 4>;
  using Key = std::array<uint32_t, 2>;
  static Counter apply(Counter ctr, Key key);
};

// Per-sequence random stream. Draw number `step` of stream `stream` under
// `seed` is Philox(key = seed, counter = {step, stream}): it depends on nothing
// else, so a seeded request samples the same tokens whatever shares its batch,
// and a preempted request that recomputes resumes the same stream.
struct RequestGenerator {
  uint64_t seed = 0;
  uint32_t stream = 0;  // the sequence's index among a request's n
  uint64_t step = 0;    // draws taken so far

  // Uniform in [0, 1) with 53 random bits; advances step.
  double next_uniform();
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;             // filled when params.logprobs is set
  std::vector<TokenLogprob> top;    // params.logprobs entries, best first, ties lowest id first
  bool accepted = false;            // a row with a draft_token: it was accepted (token == draft_token)
};

// One sequence's input. The spans must stay valid for the call.
struct SamplerRow {
  std::span<const float> logits;         // [vocab]
  std::span<const int32_t> prompt_ids;
  std::span<const int32_t> output_ids;   // generated so far
  const SamplingParams* params = nullptr;
  RequestGenerator* generator = nullptr; // advanced by one draw unless greedy (two for a draft_token row)
  // Outputs generated but not in output_ids yet: under async scheduling the
  // previous step's token is still on the device. min_tokens counts them; a
  // row whose params penalize outputs must have none (their ids are needed).
  int32_t pending_outputs = 0;
  // Speculative decoding: >= 0 when this row verifies a proposed token (the
  // draft's point-mass proposal q). Modified rejection sampling (Leviathan et
  // al. 2023) with q one-hot: greedy rows accept it iff it is the argmax;
  // others accept it with probability p(draft) (u1 < p) and otherwise draw
  // from p with the draft removed, renormalised (u2). Either way the token
  // follows p exactly. Verify rows take exactly two draws whatever happens.
  int32_t draft_token = -1;
  // Structured outputs: bit t of this bitmask (ceil(vocab / 32) words) is set
  // iff token t keeps the output in the request's grammar; null: no grammar.
  // min_tokens does not mask EOS where the grammar allows nothing else.
  const uint32_t* allowed = nullptr;
};

// Whether a grammar mask allows some token besides `eos` and the row's
// stop_token_ids: where it does not, min_tokens leaves EOS unmasked (the CPU
// and GPU samplers share this rule).
bool mask_allows_more_than_stops(const SamplerRow& row, int32_t vocab, std::span<const int32_t> eos);

class Sampler {
 public:
  // eos_token_ids: the model's end-of-sequence ids (masked by min_tokens
  // unless ignore_eos).
  explicit Sampler(std::vector<int32_t> eos_token_ids = {});

  SampledToken sample(const SamplerRow& row);
  std::vector<SampledToken> sample(std::span<const SamplerRow> rows);

 private:
  void apply_logit_processors(const SamplerRow& row);
  int32_t draw(const SamplerRow& row);

  std::vector<int32_t> eos_;
  // Scratch reused between calls (one sampler per engine thread).
  std::vector<float> logits_;
  std::vector<int32_t> counts_;
  std::vector<uint8_t> seen_;
  std::vector<int32_t> candidates_;
};

}  // namespace ember
