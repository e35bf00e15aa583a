// The grammar engine (engine/structured): GBNF parsing and its errors, the
// language each construct accepts, and token masks checked against brute force
// (every token's bytes run through the grammar) along random walks.

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "engine/structured/grammar.h"
#include "engine/structured/grammar_matcher.h"

namespace ember::structured {
namespace {

std::shared_ptr<const Grammar> must_parse(const std::string& text) {
  auto g = Grammar::parse(text);
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message) << "\n" << text;
  return g.ok() ? *g : nullptr;
}

std::string parse_error(const std::string& text, const GrammarLimits& limits = {}) {
  auto g = Grammar::parse(text, limits);
  return g.ok() ? "(parsed)" : g.error().message;
}

TEST(Grammar, LanguagesOfEachConstruct) {
  struct Case {
    std::string grammar;
    std::vector<std::string> yes, no;
  };
  const std::vector<Case> cases = {
      {R"(root ::= "ab" | "c")", {"ab", "c"}, {"", "a", "abc", "b"}},
      {R"(root ::= [a-c]+ "!")", {"a!", "cab!"}, {"!", "ad!", "a"}},
      {R"(root ::= [^a-c]*)", {"", "xyz", "é", "日本"}, {"a", "xa"}},
      {R"(root ::= "x"{2,3})", {"xx", "xxx"}, {"x", "xxxx"}},
      {R"(root ::= "x"{2,})", {"xx", "xxxxx"}, {"x", ""}},
      {R"(root ::= "x"{2})", {"xx"}, {"x", "xxx"}},
      {R"(root ::= "x"? "y")", {"y", "xy"}, {"xxy"}},
      {R"(root ::= . .)", {"ab", "éé", "a日"}, {"a", "abc"}},
      {"root ::= \"\\u00e9\" [\\x41-\\x42] \"\\n\"", {"éA\n", "éB\n"}, {"éC\n", "e A\n"}},
      {"root ::= [\\U0001F600-\\U0001F64F]", {"😀", "🙏"}, {"😃x", "a"}},
      // Recursion through rules (balanced parentheses), an empty alternative, comments, multi-line rules.
      {"# comment\nroot ::= p\np ::= \"(\" p \")\" p\n   | \"\"  # the end\n", {"", "()", "(())()"}, {"(", "())"}},
      // Two alternatives calling different rules over the same bytes: both run until they part.
      {"root ::= a | b\na ::= \"xy\" \"1\"\nb ::= \"xy\" \"2\"", {"xy1", "xy2"}, {"xy", "xy3"}},
      // A loop over a rule that may match nothing terminates.
      {"root ::= (e | \"a\")* \"b\"\ne ::= \"\"", {"b", "aab"}, {"a"}},
  };
  for (const Case& c : cases) {
    auto g = must_parse(c.grammar);
    ASSERT_TRUE(g);
    for (const auto& s : c.yes) EXPECT_TRUE(g->matches(s)) << c.grammar << " should accept '" << s << "'";
    for (const auto& s : c.no) EXPECT_FALSE(g->matches(s)) << c.grammar << " should reject '" << s << "'";
  }
}

TEST(Grammar, ErrorsNameTheProblem) {
  EXPECT_NE(parse_error("root ::= foo").find("rule 'foo' is not defined"), std::string::npos);
  EXPECT_NE(parse_error("a ::= \"x\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"x\"\nroot ::= \"y\"").find("defined twice"), std::string::npos);
  EXPECT_NE(parse_error("root ::= root \"x\" | \"y\"").find("left recursion in the grammar: root -> root"),
            std::string::npos);
  EXPECT_NE(parse_error("root ::= a\na ::= b? \"x\"\nb ::= \"\" | a").find("left recursion"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"abc").find("line 1, column"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\"\n  | ( \"b\"").find("line 2, column"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"x\"{3,2}").find("m <= n"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [z-a]").find("backwards"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"\\uD800\"").find("no Unicode scalar"), std::string::npos);
  EXPECT_NE(parse_error("root ::= " + std::string(300, '(') + "\"x\"" + std::string(300, ')')).find("nest too deeply"),
            std::string::npos);
  GrammarLimits small;
  small.max_nfa_nodes = 1000;
  EXPECT_NE(parse_error("root ::= (\"ab\" [0-9]){1000}", small).find("too large"), std::string::npos);
  small = {};
  small.max_states = 50;
  EXPECT_NE(parse_error("root ::= [a-z]{100}", small).find("automaton states"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"x\"{1000000000}").find("too large"), std::string::npos);
}

TEST(Grammar, LiteralsRoundTrip) {
  const std::string text = std::string("a\"b\\c\n\t\r") + '\x01' + "é日";
  auto g = must_parse("root ::= " + gbnf_literal(text));
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->matches(text));
  EXPECT_FALSE(g->matches(text + "x"));
}

// A vocabulary of every 1- and 2-byte string over a small alphabet, some longer
// pieces, the UTF-8 bytes of "é" split across tokens, and a special token.
std::shared_ptr<const Vocabulary> small_vocab() {
  const std::string alphabet = "ab{}\":, 0129-.\\\n";
  std::vector<std::string> toks;
  for (char x : alphabet) toks.push_back(std::string(1, x));
  for (char x : alphabet)
    for (char y : alphabet) toks.push_back(std::string{x, y});
  for (const char* s : {"{\"", "\":", "\",\"", "\"}", "true", "false", "null", "ab\"", "123", "\xC3", "\xA9",
                        "\xC3\xA9", "a\xC3", "\xA9\"", "\"a\"", "ab"})
    toks.push_back(s);
  toks.push_back("");  // a special token: no bytes
  toks.push_back("");  // EOS
  const auto eos = static_cast<int32_t>(toks.size()) - 1;
  return std::make_shared<Vocabulary>(std::move(toks), std::vector<int32_t>{eos});
}

const char* kJsonish = R"(
root   ::= object
value  ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( "," ws member )* )? "}"
member ::= string ws ":" ws value ws
array  ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" ( [^"\\] | "\\" ["\\n] )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]{0,5} ) ( "." [0-9]{1,4} )?
ws     ::= " "?
)";

// Random walks: at each step the mask must equal brute force (each token run
// through accepts_bytes; EOS iff can_end), and a random allowed token is taken.
void check_masks_by_brute_force(const std::string& grammar_text, int walks, int steps, uint32_t seed) {
  auto g = must_parse(grammar_text);
  ASSERT_TRUE(g);
  auto vocab = small_vocab();
  auto compiled = CompiledGrammar::compile(g, vocab);
  ASSERT_TRUE(compiled.ok());
  std::mt19937 rng(seed);
  const int32_t eos = vocab->eos_ids()[0];
  for (int w = 0; w < walks; ++w) {
    GrammarMatcher m(*compiled);
    for (int s = 0; s < steps; ++s) {
      std::vector<uint32_t> mask(bitmask_words(vocab->size()));
      m.fill_mask(mask.data());
      std::vector<int32_t> allowed;
      const bool can_end = m.can_end();
      for (int32_t t = 0; t < vocab->size(); ++t) {
        const bool bit = (mask[static_cast<size_t>(t) >> 5] >> (t & 31)) & 1;
        bool expect = false;
        if (t == eos) {
          expect = can_end || m.ended();
        } else if (!vocab->bytes(t).empty()) {
          expect = m.accepts_bytes(vocab->bytes(t)) && !m.ended();
        }
        ASSERT_EQ(bit, expect) << "walk " << w << " step " << s << " token " << t << " '" << vocab->bytes(t) << "'";
        if (bit) allowed.push_back(t);
      }
      ASSERT_FALSE(allowed.empty());
      const int32_t pick = allowed[rng() % allowed.size()];
      ASSERT_TRUE(m.accept(pick));
      if (pick == eos) break;
    }
  }
}

TEST(GrammarMatcher, MasksEqualBruteForceOnJsonLikeGrammar) { check_masks_by_brute_force(kJsonish, 30, 40, 1); }

TEST(GrammarMatcher, MasksEqualBruteForceWithUtf8AndAlternatives) {
  check_masks_by_brute_force("root ::= (a | b)+\na ::= \"a\" \"é\"* \"\\\"\"\nb ::= \"a\" [0-9] | \"{\" root \"}\"",
                             30, 25, 2);
}

// The matcher keeps the masks of positions it meets again (grammar_matcher.h): along random walks that step back
// and forth (rollbacks revisit positions; strings and loops meet the same stacks), every mask equals the one a
// fresh matcher computes after the same tokens, its first and so never from a cache.
void check_cached_masks_equal_fresh(const std::string& grammar_text, int steps, uint32_t seed) {
  auto g = must_parse(grammar_text);
  ASSERT_TRUE(g);
  auto vocab = small_vocab();
  auto compiled = CompiledGrammar::compile(g, vocab);
  ASSERT_TRUE(compiled.ok());
  std::mt19937 rng(seed);
  const int32_t eos = vocab->eos_ids()[0];
  GrammarMatcher m(*compiled);
  std::vector<int32_t> taken;
  std::vector<uint32_t> mask(bitmask_words(vocab->size())), fresh(mask.size());
  for (int s = 0; s < steps; ++s) {
    m.fill_mask(mask.data());
    GrammarMatcher f(*compiled);
    for (int32_t t : taken) ASSERT_TRUE(f.accept(t));
    f.fill_mask(fresh.data());
    ASSERT_EQ(mask, fresh) << "step " << s << " after " << taken.size() << " tokens";
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < vocab->size(); ++t)
      if (t != eos && ((mask[static_cast<size_t>(t) >> 5] >> (t & 31)) & 1)) allowed.push_back(t);
    const bool back = !taken.empty() && (allowed.empty() || rng() % 3 == 0);
    if (back) {
      const auto n = static_cast<int32_t>(std::min<size_t>(taken.size(), 1 + rng() % 3));
      m.rollback(n);
      taken.resize(taken.size() - static_cast<size_t>(n));
    } else if (!allowed.empty()) {
      taken.push_back(allowed[rng() % allowed.size()]);
      ASSERT_TRUE(m.accept(taken.back()));
    } else {
      break;
    }
  }
}

TEST(GrammarMatcher, CachedMasksEqualFreshOnes) {
  check_cached_masks_equal_fresh(kJsonish, 400, 11);
  check_cached_masks_equal_fresh("root ::= (a | b)+\na ::= \"a\" \"é\"* \"\\\"\"\nb ::= \"a\" [0-9] | \"{\" root \"}\"", 300,
                                 12);
  check_cached_masks_equal_fresh("root ::= [a-b0-9 ,.-]+", 300, 13);
  check_cached_masks_equal_fresh("root ::= \"\\\"\" [a-b9]{0,30} \"\\\"\" | \"{\" [0-2]{2,25} \"}\"", 300, 14);
}

// `x+++...` nests repeats: each one doubles the expanded automaton and the
// compile weights multiply. Ten keep the language x+; 130 are refused as too
// large, cleanly (the weights saturate: they overflowed int64 before, found by
// fuzz_gbnf, which the sanitizer stage would report here).
TEST(Grammar, DeeplyNestedRepeatsKeepTheirLanguageOrAreRefused) {
  auto g = must_parse("root ::= \"a\"" + std::string(10, '+') + " \"b\"");
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->matches("ab"));
  EXPECT_TRUE(g->matches("aaab"));
  EXPECT_FALSE(g->matches("b"));
  auto compiled = CompiledGrammar::compile(g, small_vocab());
  EXPECT_TRUE(compiled.ok()) << (compiled.ok() ? "" : compiled.error().message);
  EXPECT_NE(parse_error("root ::= \"a\"" + std::string(130, '+') + " \"b\"").find("too large"), std::string::npos);
}

TEST(GrammarMatcher, CountedRepetitionsShareTablesAndStayExact) {
  // States of a counted run further than the longest token from its ends share one table.
  const std::string text = "root ::= \"\\\"\" [a-b9]{0,30} \"\\\"\" | \"{\" [0-2]{2,25} \"}\"";
  auto g = must_parse(text);
  ASSERT_TRUE(g);
  auto compiled = CompiledGrammar::compile(g, small_vocab());
  ASSERT_TRUE(compiled.ok());
  EXPECT_LT((*compiled)->num_tables(), g->states().size() / 2);
  check_masks_by_brute_force(text, 40, 34, 3);
}

TEST(GrammarMatcher, CompileWorkIsBounded) {
  GrammarLimits limits;
  limits.max_precompute_steps = 1000;
  auto g = Grammar::parse("root ::= (\"a\" | [0-9] \"b\"){0,200} x\nx ::= \"{\" x? \"}\"");
  ASSERT_TRUE(g.ok());
  auto compiled = CompiledGrammar::compile(*g, small_vocab(), limits);
  ASSERT_FALSE(compiled.ok());
  EXPECT_NE(compiled.error().message.find("too expensive"), std::string::npos);
}

TEST(GrammarCache, KeepsRecentGrammarsWithinItsBounds) {
  auto vocab = small_vocab();
  GrammarCache by_count(vocab, 2);
  auto a = by_count.get("root ::= \"a\"");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(by_count.get("root ::= \"a\"").value(), *a);  // cached: the same object
  ASSERT_TRUE(by_count.get("root ::= \"b\"").ok());
  ASSERT_TRUE(by_count.get("root ::= \"c\"").ok());   // evicts "a", the least recent
  EXPECT_NE(by_count.get("root ::= \"a\"").value(), *a);
  EXPECT_FALSE(by_count.get("root ::= nope").ok());
  GrammarCache by_bytes(vocab, 64, {}, (*a)->memory_bytes() + 1);  // room for one at a time
  auto x = by_bytes.get("root ::= \"x\"");
  ASSERT_TRUE(x.ok());
  ASSERT_TRUE(by_bytes.get("root ::= \"y\"").ok());
  EXPECT_NE(by_bytes.get("root ::= \"x\"").value(), *x);  // "y" pushed it out
}

// A batch of requests with one new grammar: the threads asking while it compiles wait for that one compile (an
// error too), and all get the same object.
TEST(GrammarCache, ConcurrentAsksForANewTextCompileOnce) {
  GrammarCache cache(small_vocab());
  const std::string slow = "root ::= (\"a\" | [0-9] \"b\"){0,3000} x\nx ::= \"{\" x? \"}\"";
  for (const std::string& text : {slow, std::string("root ::= nope")}) {
    const int64_t before = cache.num_compiles();
    constexpr int kThreads = 8;
    std::vector<GrammarCache::Compiled> got(kThreads, Error{"not run"});
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        got[static_cast<size_t>(i)] = cache.get(text);
      });
    for (std::thread& t : threads) t.join();
    for (const GrammarCache::Compiled& c : got) {
      ASSERT_EQ(c.ok(), got[0].ok()) << text;
      if (c.ok()) {
        EXPECT_EQ(c->get(), got[0]->get());
      } else {
        EXPECT_EQ(c.error().message, got[0].error().message);
      }
    }
    if (got[0].ok()) {
      EXPECT_EQ(cache.num_compiles() - before, 1) << text;
    } else {
      EXPECT_GE(cache.num_compiles() - before, 1);
      EXPECT_NE(got[0].error().message, "not run");
    }
  }
  const int64_t before = cache.num_compiles();
  EXPECT_FALSE(cache.get("root ::= nope").ok());
  EXPECT_EQ(cache.num_compiles() - before, 1);  // an error is not kept: asked again, compiled again
}

TEST(GrammarMatcher, RollbackRestoresThePosition) {
  auto g = must_parse(kJsonish);
  auto vocab = small_vocab();
  auto compiled = CompiledGrammar::compile(g, vocab);
  ASSERT_TRUE(compiled.ok());
  GrammarMatcher m(*compiled);
  auto id = [&](const std::string& s) {
    for (int32_t t = 0; t < vocab->size(); ++t)
      if (vocab->bytes(t) == s) return t;
    return -1;
  };
  std::vector<uint32_t> before(bitmask_words(vocab->size())), after(before.size());
  ASSERT_TRUE(m.accept(id("{\"")));
  m.fill_mask(before.data());
  ASSERT_TRUE(m.accept(id("ab")));
  ASSERT_TRUE(m.accept(id("\":")));
  EXPECT_FALSE(m.accept(id("}")));  // a value must come first
  EXPECT_EQ(m.num_accepted(), 3);
  m.rollback(2);
  EXPECT_EQ(m.num_accepted(), 1);
  m.fill_mask(after.data());
  EXPECT_EQ(before, after);
  ASSERT_TRUE(m.accept(id("\":")));
  EXPECT_FALSE(m.can_end());
  ASSERT_TRUE(m.accept(id("1")));
  ASSERT_TRUE(m.accept(id("}")));
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.ended());  // nothing may follow the object
  EXPECT_TRUE(m.accept(vocab->eos_ids()[0]));
  EXPECT_FALSE(m.accept(id("a")));
}

}  // namespace
}  // namespace ember::structured
