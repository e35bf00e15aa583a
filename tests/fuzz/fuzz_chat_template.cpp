// libFuzzer target for the chat-template interpreter: any template text must parse
// to a ChatTemplate or an Error, and render against a fixed conversation (with
// tools) to a string or an Error — never a crash, a hang, unbounded memory or a leak.
// Seed corpus: tests/fuzz/corpus/chat_template/ (the committed real templates and
// the single-feature templates of tests/fixtures/chat_templates/features.json).

#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "models/chat/chat_template.h"

namespace {

const nlohmann::ordered_json& conversation() {
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi {{ there }} ünïcödé 🚀"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "abcdefghi", "type": "function",
      "function": {"name": "lookup", "arguments": {"word": "x"}}}]},
    {"role": "tool", "tool_call_id": "abcdefghi", "content": "42"},
    {"role": "user", "content": [{"type": "text", "text": "parts"}]}
  ])");
  return messages;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  auto tpl = ember::ChatTemplate::parse(std::string(reinterpret_cast<const char*>(data), size));
  if (!tpl) return 0;
  ember::ChatTemplateOptions opt;
  opt.bos_token = "<s>";
  opt.eos_token = "</s>";
  opt.now_unix_seconds = 1726396200;
  opt.max_output_bytes = 64 * 1024;  // smaller than the defaults: keeps executions fast
  opt.max_loop_iterations = 1 << 14;
  opt.extra_context = nlohmann::ordered_json::parse(R"({"tools": [{"type": "function", "function": {"name": "lookup",
      "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}}]})");
  (void)tpl->render(conversation(), opt);
  return 0;
}
