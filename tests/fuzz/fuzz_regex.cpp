// libFuzzer target for regular expressions to GBNF (engine/structured/regex.h), as `structured_outputs.regex` and
// JSON Schema's `pattern` hand them in: any text must compile or be an Error with a message (never a crash, a
// hang or an unbounded allocation); compiled text must be a grammar Grammar::parse accepts (only its size limits
// may refuse it). A small grammar is then walked with the token masks (tests/fuzz/grammar_walk.h), and the walk's
// text checked against two other compilations of the same language:
//   - `(?:R)` matches exactly what R matches;
//   - R embedded in a JSON string (RegexEmbedding::kJsonString, as `pattern` is): a finished walk there is a JSON
//     string whose decoded text R matches, and R's own texts, JSON-encoded, are in the embedding's language.
// Input: first byte seeds the walk; the rest is the regex (at most 512 bytes). Corpus: tests/fuzz/corpus/regex/.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/structured/regex.h"
#include "grammar_walk.h"

namespace {

using namespace ember::structured;
using ember::fuzz::check;

bool limit_error(const std::string& message) {
  return message.find("too large") != std::string::npos || message.find("longer than") != std::string::npos ||
         message.find("too expensive") != std::string::npos;
}

// Grammar text to a small grammar compiled over the walk vocabulary, or null (too large: not checked further).
std::shared_ptr<const CompiledGrammar> small(const std::string& text) {
  auto g = Grammar::parse(text);
  if (!g.ok()) {
    check(limit_error(g.error().message));  // generated text never has a syntax error
    return nullptr;
  }
  if ((*g)->states().size() > 2000) return nullptr;
  auto c = CompiledGrammar::compile(*g, ember::fuzz::walk_vocab({}));
  return c.ok() ? *c : nullptr;
}

bool has_control(std::string_view s) {
  for (char c : s)
    if (static_cast<uint8_t>(c) < 0x20) return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 513) return 0;
  const uint64_t seed = data[0] * 0x9E3779B97F4A7C15ull + size;
  const std::string_view regex(reinterpret_cast<const char*>(data) + 1, size - 1);

  auto raw_text = regex_grammar(regex);
  if (!raw_text.ok()) {
    check(!raw_text.error().message.empty());
    return 0;
  }
  const auto raw = small(*raw_text);
  if (!raw) return 0;
  const Grammar& g = raw->grammar();
  const auto w = ember::fuzz::walk(raw, seed, 40);
  check(!w.ended || g.matches(w.text));

  if (auto grouped_text = regex_grammar("(?:" + std::string(regex) + ")"); grouped_text.ok()) {
    if (auto grouped = Grammar::parse(*grouped_text); grouped.ok()) {
      check((*grouped)->matches(w.text) == g.matches(w.text));
      const std::string cut = w.text.substr(0, w.text.size() / 2);
      check((*grouped)->matches(cut) == g.matches(cut));
    }
  }

  std::string embedded_text;
  auto name = regex_to_gbnf(regex, "re", embedded_text, RegexEmbedding::kJsonString);
  check(name.ok());  // the same regex compiled raw
  embedded_text += "root ::= \"\\\"\" " + *name + " \"\\\"\"\n";
  const auto embedded = small(embedded_text);
  if (!embedded) return 0;
  if (w.ended && !has_control(w.text)) check(embedded->grammar().matches(nlohmann::json(w.text).dump()));
  const auto e = ember::fuzz::walk(embedded, seed ^ 0x5555, 40);
  if (e.ended) {
    const nlohmann::json decoded = nlohmann::json::parse(e.text, nullptr, /*allow_exceptions=*/false);
    check(decoded.is_string());
    check(g.matches(decoded.get<std::string>()));
  }
  return 0;
}
