#pragma once
// The one check of a request's lengths against what the engine can serve,
// shared by every front end (the HTTP server, `ember generate`, `ember bench
// throughput`) and asserted again by Engine::add, in this order: a non-empty
// prompt, max_tokens >= 1 and prompt + max_tokens within max_model_len (an
// unset max_tokens becomes what the context leaves, as vLLM does), token ids
// inside the vocabulary, the whole request within the KV pool and, with
// chunked prefill off, the prompt within one step's token budget. The
// context-length messages are vLLM's.

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
  std::string param;  // the request field at fault, "" when no one field is (an HTTP error's param: null)
};

// What the prompt is, for the messages: a completion's prompt, or a chat
// request's conversation rendered by its template.
enum class PromptKind { kPrompt, kConversation };

// max_tokens: an unset one resolves to max_model_len - prompt length.
// On success returns nullopt and sets `resolved_max_tokens`.
std::optional<LimitViolation> check_request_limits(std::span<const int32_t> prompt,
                                                   std::optional<int32_t> max_tokens, const RequestLimits& limits,
                                                   int32_t& resolved_max_tokens,
                                                   PromptKind kind = PromptKind::kPrompt);

}  // namespace ember
