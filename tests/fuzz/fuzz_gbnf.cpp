// libFuzzer target for GBNF grammars (engine/structured/grammar.h), as `structured_outputs.grammar` hands them in:
// any text must parse or be an Error with a message, within the server's limits (never a crash, a hang or an
// unbounded allocation). A grammar that parses and is small is then checked against itself: its token masks over
// a tiny vocabulary equal brute force, the matcher's can_end agrees with Grammar::matches along a random walk
// (tests/fuzz/grammar_walk.h), and so does a fresh matcher fed the walk's text byte by byte.
// Input: first byte seeds the walk and picks checks; the rest is the grammar text (at most 4 KB: cost per input
// stays small for the 30 s CI runs). Seed corpus: tests/fuzz/corpus/gbnf/.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "grammar_walk.h"

namespace {

using ember::fuzz::check;

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? b : b & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = cp << 6 | (c & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp < 0xE000))
      return false;
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ember::structured;
  if (size == 0 || size > 4097) return 0;
  const uint8_t control = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

  // gbnf_literal embeds any (UTF-8) text: the literal's grammar is exactly that text.
  if ((control & 0x80) && valid_utf8(text)) {
    auto lit = Grammar::parse("root ::= " + gbnf_literal(text));
    check(lit.ok());
    check((*lit)->matches(text));
    check(!(*lit)->matches(std::string(text) + "x"));
    if (!text.empty()) check(!(*lit)->matches(text.substr(0, text.size() - 1)));
  }

  auto parsed = Grammar::parse(text);  // the server's limits
  if (!parsed.ok()) {
    check(!parsed.error().message.empty());
    return 0;
  }
  const std::shared_ptr<const Grammar>& g = *parsed;
  check(g->num_rules() >= 1 && g->root_rule() < g->num_rules());
  for (const Grammar::State& s : g->states()) {
    check(s.rule < g->num_rules());
    for (size_t i = 0; i < s.bytes.size(); ++i) {
      check(s.bytes[i].lo <= s.bytes[i].hi && s.bytes[i].to < g->states().size());
      if (i > 0) check(s.bytes[i - 1].hi < s.bytes[i].lo);  // disjoint and sorted
    }
    for (const Grammar::CallEdge& c : s.calls) {
      check(c.rule < g->num_rules() && c.ret < g->states().size());
      check(g->states()[c.ret].rule == s.rule);  // a call returns into the calling rule
    }
  }
  if (g->states().size() > 2000) return 0;

  // Pieces of the text as extra tokens: they often hold the grammar's literals.
  std::vector<std::string> extra;
  for (size_t at = 0; at + 3 <= text.size() && extra.size() < 24; at += 5) extra.emplace_back(text.substr(at, 3));
  auto compiled = CompiledGrammar::compile(g, ember::fuzz::walk_vocab(extra));
  if (!compiled.ok()) return 0;
  const auto w = ember::fuzz::walk(*compiled, control * 0x9E3779B97F4A7C15ull + size, 48);
  check(!w.ended || g->matches(w.text));
  check(ember::fuzz::matcher_matches(*compiled, w.text) == g->matches(w.text));
  const std::string longer = w.text + static_cast<char>(control);
  check(ember::fuzz::matcher_matches(*compiled, longer) == g->matches(longer));
  check(ember::fuzz::matcher_matches(*compiled, "") == g->matches(""));
  return 0;
}
