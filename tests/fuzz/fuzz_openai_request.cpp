// libFuzzer target for the OpenAI protocol layer: any bytes, as a completion,
// chat, tokenize or detokenize body, must parse to a request or an ApiError
// (never a crash, a stack overflow or an unbounded allocation), and a request
// that parses must have SamplingParams that pass validate(). Errors and
// responses built from parsed text must serialize (invalid UTF-8 included).
// Seed corpus: tests/fuzz/corpus/openai_request/.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "engine/request_limits.h"
#include "server/openai_protocol.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

template <class T>
void check_error(const ember::ApiResult<T>& r) {
  if (r) return;
  check(r.error().status == 400);
  (void)ember::dump_body(ember::to_json(r.error()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ember::ProtocolLimits limits;
  limits.vocab_size = 49152;
  limits.max_model_len = 2048;

  auto completion = ember::parse_completion_request(body, limits);
  check_error(completion);
  if (completion) {
    check(completion->params.validate(limits.vocab_size).ok());
    check(!completion->prompts.empty());
    // Echo the first prompt back through a builder, as a route would.
    ember::CompletionChoiceOut choice;
    choice.text = completion->prompts[0].text.value_or("");
    choice.stop_reason = completion->params.stop.empty() ? ember::StopReason{} : completion->params.stop[0];
    (void)ember::sse_event(ember::build_completion_chunk({"cmpl-x", 0, completion->model}, {choice}));
  }

  auto chat = ember::parse_chat_request(body, limits);
  check_error(chat);
  if (chat) {
    check(chat->params.validate(limits.vocab_size).ok());
    check(!chat->messages.empty());
    for (const auto& m : chat->messages) (void)ember::dump_body(ember::to_template_json(m));
    ember::RequestLimits rl;
    rl.vocab_size = limits.vocab_size;
    rl.max_model_len = limits.max_model_len;
    rl.num_blocks = (limits.max_model_len + rl.block_size - 1) / rl.block_size;
    const std::vector<int32_t> prompt(10, 0);
    int32_t max_tokens = 0;
    if (!ember::check_request_limits(prompt, chat->requested_max_tokens, rl, max_tokens, ember::PromptKind::kConversation))
      check(max_tokens >= 1 && max_tokens <= limits.max_model_len);
  }

  check_error(ember::parse_tokenize_request(body, limits));
  auto detok = ember::parse_detokenize_request(body, limits);
  check_error(detok);
  if (detok) {
    for (int32_t id : detok->tokens) check(id >= 0 && id < limits.vocab_size);
  }
  (void)ember::sanitize_utf8(body);
  return 0;
}
