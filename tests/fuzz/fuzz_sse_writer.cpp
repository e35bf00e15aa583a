// libFuzzer target for the SSE writer: streamed completion and chat chunks
// built from any bytes (a detokenizer can hand over broken UTF-8, newlines,
// NULs, "data:" lookalikes) must each be exactly one event, "data: " + one
// line of JSON + a blank line, whose text parses back to the bytes as
// sanitize_utf8 makes them. A client's SSE parser can then never see a field
// or an event the server did not mean.
// Seed corpus: tests/fuzz/corpus/sse_writer/.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "models/tokenizer/unicode.h"
#include "server/openai_protocol.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// One SSE event: "data: <line>\n\n" with no CR or LF inside; returns the JSON.
nlohmann::json parse_event(const std::string& event) {
  check(event.rfind("data: ", 0) == 0);
  check(event.size() >= 8 && event.compare(event.size() - 2, 2, "\n\n") == 0);
  const std::string line = event.substr(6, event.size() - 8);
  check(line.find('\n') == std::string::npos && line.find('\r') == std::string::npos);
  return nlohmann::json::parse(line);  // throws (and so fails) on invalid JSON
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const size_t cut = size / 3;
  const std::string text(bytes.substr(0, size - cut));
  const std::string model(bytes.substr(size - cut));
  const std::string want = ember::sanitize_utf8(text);

  ember::ResponseHeader h{"cmpl-x", 1, model};
  ember::CompletionChoiceOut c;
  c.text = text;
  const nlohmann::json completion = parse_event(ember::sse_event(ember::build_completion_chunk(h, {c})));
  check(completion["choices"][0]["text"].get<std::string>() == want);
  check(completion["model"].get<std::string>() == ember::sanitize_utf8(model));

  ember::ChatChoiceOut d;
  d.content = text;
  d.role = "assistant";
  const nlohmann::json chat = parse_event(ember::sse_event(ember::build_chat_chunk(h, {d})));
  check(chat["choices"][0]["delta"]["content"].get<std::string>() == want);
  return 0;
}
