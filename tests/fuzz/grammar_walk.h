#pragma once
// Shared by the structured-output fuzz targets (fuzz_gbnf, fuzz_json_schema, fuzz_regex): a grammar run through
// the token-mask machinery over a tiny synthetic vocabulary, checked against the grammar's own definition.
//   - every mask equals brute force (each token's bytes through accepts_bytes; EOS iff the output may end, or no
//     other token fits);
//   - at every step can_end() agrees with Grammar::matches on the text so far;
//   - rollback(1) then the same token again lands where it was.
// The walk returns the text it produced and whether it ended (EOS accepted), for the caller's own checks on it.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/structured/grammar.h"
#include "engine/structured/grammar_matcher.h"
#include "engine/structured/token_masks.h"

namespace ember::fuzz {

inline void check(bool ok) {
  if (!ok) std::abort();
}

// Tokens: closers first (a walk that prefers low ids closes what it opened), then every other byte, then a few
// multi-byte pieces (`extra`, e.g. slices of the input), a special token with no bytes, and EOS last.
inline std::shared_ptr<const structured::Vocabulary> walk_vocab(const std::vector<std::string>& extra) {
  const std::string closers = "\"}])0,:1 a\n";
  std::vector<std::string> toks;
  for (char c : closers) toks.emplace_back(1, c);
  for (int b = 0; b < 256; ++b)
    if (closers.find(static_cast<char>(b)) == std::string::npos) toks.emplace_back(1, static_cast<char>(b));
  for (const char* s : {"\":", "\",\"", "\"}", "{\"", "true", "null", "\xC3\xA9", "\xE6\x97\xA5", "12", "ab"})
    toks.emplace_back(s);
  for (const std::string& s : extra)
    if (!s.empty()) toks.push_back(s);
  toks.emplace_back();  // special token: never allowed
  toks.emplace_back();  // EOS
  const auto eos = static_cast<int32_t>(toks.size()) - 1;
  return std::make_shared<structured::Vocabulary>(std::move(toks), std::vector<int32_t>{eos});
}

// A tiny deterministic generator (the fuzzer's bytes seed it, so a crash reproduces).
struct WalkRng {
  uint64_t s;
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(s >> 33);
  }
};

struct WalkResult {
  std::string text;
  bool ended = false;  // EOS was taken: `text` is a whole sentence of the grammar
};

inline bool bit(const std::vector<uint32_t>& mask, int32_t t) {
  return (mask[static_cast<size_t>(t) >> 5] >> (t & 31)) & 1;
}

// Up to `steps` tokens; `seed` picks among the allowed ones (biased to low ids and to EOS once allowed).
inline WalkResult walk(const std::shared_ptr<const structured::CompiledGrammar>& compiled, uint64_t seed, int steps) {
  using namespace structured;
  const Grammar& g = compiled->grammar();
  const Vocabulary& v = compiled->vocab();
  const int32_t eos = v.eos_ids()[0];
  GrammarMatcher m(compiled);
  WalkRng rng{seed};
  WalkResult out;
  std::vector<uint32_t> mask(bitmask_words(v.size()));
  std::vector<std::string> texts;  // text after each accepted token
  for (int step = 0; step < steps; ++step) {
    const bool can_end = m.can_end();
    check(can_end == g.matches(out.text));
    m.fill_mask(mask.data());
    std::vector<int32_t> allowed;
    bool other = false;
    for (int32_t t = 0; t < v.size(); ++t) {
      if (t == eos) continue;
      const bool expect = !v.bytes(t).empty() && !m.ended() && m.accepts_bytes(v.bytes(t));
      check(bit(mask, t) == expect);
      if (expect) allowed.push_back(t), other = true;
    }
    // EOS where the text may end, and at a dead end (nothing else fits) so a sequence stops.
    check(bit(mask, eos) == (can_end || !other));
    if (!other && !can_end) {
      check(!m.accept(eos));  // a dead end is not a sentence
      return out;
    }
    if (can_end && (allowed.empty() || rng.next() % 4 == 0 || step > steps / 2)) {
      check(m.accept(eos));
      check(m.ended() && !m.can_end());
      m.fill_mask(mask.data());  // after EOS only EOS
      for (int32_t t = 0; t < v.size(); ++t) check(bit(mask, t) == (t == eos));
      out.ended = true;
      return out;
    }
    const uint32_t r = rng.next();
    const int32_t pick = (r & 1) ? allowed[0] : allowed[(r >> 1) % allowed.size()];
    check(m.accept(pick));
    out.text += v.bytes(pick);
    texts.push_back(out.text);
    check(m.num_accepted() == static_cast<int32_t>(texts.size()));
    if (texts.size() >= 2 && (r >> 8) % 8 == 0) {  // a rejected speculative token: back one and again
      m.rollback(1);
      check(m.can_end() == g.matches(texts[texts.size() - 2]));
      check(m.accept(pick));
    }
  }
  return out;
}

// Whether a fresh matcher, fed `text` one byte token at a time (walk_vocab's tokens 0..255 are single bytes),
// can end after it: the matcher's view of membership, to compare with Grammar::matches.
inline bool matcher_matches(const std::shared_ptr<const structured::CompiledGrammar>& compiled, std::string_view text) {
  const structured::Vocabulary& v = compiled->vocab();
  int32_t ids[256];
  for (int32_t t = 0; t < 256; ++t) ids[static_cast<uint8_t>(v.bytes(t)[0])] = t;
  structured::GrammarMatcher m(compiled);
  for (char c : text)
    if (!m.accept(ids[static_cast<uint8_t>(c)])) return false;
  return m.can_end();
}

}  // namespace ember::fuzz
