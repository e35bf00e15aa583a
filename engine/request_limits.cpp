#include "engine/request_limits.h"

namespace ember {

std::optional<LimitViolation> check_request_limits(std::span<const int32_t> prompt,
                                                   std::optional<int32_t> max_tokens, const RequestLimits& limits,
                                                   int32_t& resolved_max_tokens, PromptKind kind) {
  // In 64 bits throughout: lengths are int32 and their sums may not be.
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len == 0) {
    return kind == PromptKind::kPrompt ? LimitViolation{"the prompt is empty", "prompt"}
                                       : LimitViolation{"the rendered conversation is empty", "messages"};
  }
  const std::string head = "This model's maximum context length is " + std::to_string(limits.max_model_len) + " tokens. ";
  // Blame what the client sent: the prompt, or the conversation it rendered to.
  const std::string input = kind == PromptKind::kPrompt ? "prompt" : "messages";
  if (!max_tokens) {
    if (prompt_len >= limits.max_model_len) {
      return LimitViolation{head + "However, your request has " + std::to_string(prompt_len) +
                                " input tokens. Please reduce the length of the " + input + ".",
                            input};
    }
    max_tokens = static_cast<int32_t>(limits.max_model_len - prompt_len);
  } else if (*max_tokens < 1) {
    return LimitViolation{"max_tokens must be at least 1, got " + std::to_string(*max_tokens), "max_tokens"};
  } else if (prompt_len + *max_tokens > limits.max_model_len) {
    return LimitViolation{head + "However, you requested " + std::to_string(prompt_len + *max_tokens) + " tokens (" +
                              std::to_string(prompt_len) + " in the " + input + ", " + std::to_string(*max_tokens) +
                              " in the completion). Please reduce the length of the " + input + " or completion.",
                          prompt_len >= limits.max_model_len ? input : "max_tokens"};
  }
  for (int32_t id : prompt) {
    if (id < 0 || id >= limits.vocab_size) {
      return LimitViolation{"prompt token id " + std::to_string(id) + " is out of vocabulary [0, " +
                                std::to_string(limits.vocab_size) + ")",
                            ""};
    }
  }
  const int64_t blocks_needed = (prompt_len + *max_tokens + limits.block_size - 1) / limits.block_size;
  if (blocks_needed > limits.num_blocks) {
    return LimitViolation{"the request needs " + std::to_string(blocks_needed) +
                              " KV blocks but the cache has only " + std::to_string(limits.num_blocks),
                          ""};
  }
  if (!limits.enable_chunked_prefill && prompt_len > limits.max_num_batched_tokens) {
    return LimitViolation{"the prompt has " + std::to_string(prompt_len) +
                              " tokens, more than --max-num-batched-tokens (" +
                              std::to_string(limits.max_num_batched_tokens) + ") with chunked prefill off",
                          ""};
  }
  resolved_max_tokens = *max_tokens;
  return std::nullopt;
}

}  // namespace ember
