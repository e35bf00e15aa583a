#pragma once
// The one check of a request's lengths against what the engine can serve,
// shared by every front end (the HTTP server, `ember generate`) and asserted
// again by Engine::add: token ids inside the vocabulary, a non-empty prompt,
// prompt + max_tokens within max_model_len (an unset max_tokens becomes what
// the context leaves, as vLLM does), the whole request within the KV pool
// and, with chunked prefill off, the prompt within one step's token budget.
// Messages follow vLLM's wording; each names the request field at fault.

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace ember {

struct RequestLimits {
  int32_t vocab_size = 0;
  int64_t max_model_len = 0;
  int32_t block_size = 16;
  int64_t num_blocks = 0;
  int64_t max_num_batched_tokens = 0;
  bool enable_chunked_prefill = true;
};

struct LimitViolation {
  std::string message;
  std::string param;  // the request field at fault ("" when none is: e.g. a defaulted max_tokens)
};

// max_tokens: an unset one resolves to max_model_len - prompt length.
// prompt_param: how the front end calls the prompt ("prompt", "messages").
// On success returns nullopt and sets `resolved_max_tokens`.
std::optional<LimitViolation> check_request_limits(std::span<const int32_t> prompt,
                                                   std::optional<int32_t> max_tokens, const RequestLimits& limits,
                                                   int32_t& resolved_max_tokens,
                                                   const std::string& prompt_param = "prompt");

}  // namespace ember
