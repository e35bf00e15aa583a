// libFuzzer target for the tool-call parser (server/tool_calls.h): any model output, in any syntax, fed in pieces
// cut anywhere, must add up to what the whole text parses to: the same content and the same calls (names and
// arguments), each stream piece well formed (a call's first piece has its id and name, later ones only arguments).
// Seed corpus: tests/fuzz/corpus/tool_calls/ (first byte: syntax, max_calls and cut spacing; then the text).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/tool_calls.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ember;
  if (size == 0) return 0;
  ToolCallOptions options;
  options.syntax = static_cast<ToolCallSyntax>(data[0] % 5);
  options.max_calls = (data[0] & 0x8) ? 1 : INT32_MAX;
  if (data[0] & 0x10) options.tool_names = {"get_weather", "f"};
  options.forced_name = "f";
  const size_t step = 1 + (data[0] >> 5);  // pieces of 1 to 8 bytes
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

  const ParsedToolCalls whole = parse_tool_calls(options, text);
  ToolCallParser parser(options);
  ParsedToolCalls streamed{std::string(), {}};
  int32_t opened = 0;
  const auto add = [&](const ToolCallChunk& chunk) {
    for (const ToolCallOut& piece : chunk.calls) {
      check(piece.id.has_value() == piece.name.has_value());
      check(piece.index == (piece.id ? opened++ : opened - 1));
    }
    append_chunk(streamed, chunk);
  };
  size_t at = 0;
  for (; at + step < text.size(); at += step) add(parser.feed(text.substr(at, step)));
  add(parser.finish(text.substr(at)));
  if (!streamed.calls.empty() && streamed.content->empty()) streamed.content.reset();

  check(streamed.content == whole.content);
  check(streamed.calls.size() == whole.calls.size());
  check(parser.num_calls() == static_cast<int32_t>(whole.calls.size()));
  for (size_t i = 0; i < whole.calls.size(); ++i) {
    check(streamed.calls[i].name == whole.calls[i].name);
    check(streamed.calls[i].arguments == whole.calls[i].arguments);
    check(static_cast<int32_t>(i) < options.max_calls);
  }
  // Without calls, the content is the text itself, byte for byte; a forced tool_choice's text is calls only, and
  // what is not a call (list syntax cut by max_tokens) is no content.
  const bool forced = options.syntax == ToolCallSyntax::kJsonArray || options.syntax == ToolCallSyntax::kArguments;
  if (forced) check(!whole.content || whole.content->empty());
  if (whole.calls.empty() && !forced) check(whole.content == std::string(text));
  return 0;
}
