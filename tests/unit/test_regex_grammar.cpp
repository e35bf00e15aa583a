// Regex to GBNF (engine/structured/regex.h), checked through the grammar
// engine: a corpus of regexes with texts that must and must not match
// (tests/fixtures/structured/regex_corpus.json, kept consistent with Python's
// re.fullmatch), the JSON-string embedding that JSON Schema's `pattern` uses,
// the ECMAScript-only forms, and the Errors that name a construct and offset.

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/structured/grammar.h"
#include "engine/structured/regex.h"

namespace ember::structured {
namespace {

std::shared_ptr<const Grammar> compile(std::string_view regex) {
  auto text = regex_grammar(regex);
  EXPECT_TRUE(text.ok()) << regex << ": " << text.error().message;
  if (!text.ok()) return nullptr;
  auto grammar = Grammar::parse(*text);
  EXPECT_TRUE(grammar.ok()) << (grammar.ok() ? "" : grammar.error().message) << "\n" << *text;
  return grammar.ok() ? *grammar : nullptr;
}

std::string error_of(std::string_view regex) {
  auto text = regex_grammar(regex);
  return text.ok() ? "(compiled)" : text.error().message;
}

TEST(RegexGrammar, Corpus) {
  std::ifstream in(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/structured/regex_corpus.json");
  ASSERT_TRUE(in) << "regex_corpus.json";
  const nlohmann::json corpus = nlohmann::json::parse(in);
  ASSERT_GE(corpus.size(), 40u);
  for (const nlohmann::json& entry : corpus) {
    const std::string regex = entry["regex"];
    SCOPED_TRACE(regex);
    auto g = compile(regex);
    ASSERT_TRUE(g);
    for (const std::string text : entry["match"]) EXPECT_TRUE(g->matches(text)) << text;
    for (const std::string text : entry["nomatch"]) EXPECT_FALSE(g->matches(text)) << text;
  }
}

// What ECMAScript reads and Python does not (so the corpus leaves them out).
TEST(RegexGrammar, EcmaScriptForms) {
  auto named = compile("(?<word>[a-z]+)!");
  ASSERT_TRUE(named);
  EXPECT_TRUE(named->matches("hi!"));
  EXPECT_FALSE(named->matches("HI!"));
  auto braces = compile("\\u{1F600}\\u{e9}");
  ASSERT_TRUE(braces);
  EXPECT_TRUE(braces->matches("\xF0\x9F\x98\x80\xC3\xA9"));
  auto pair = compile("\\uD83D\\uDE00");  // a surrogate pair is one code point
  ASSERT_TRUE(pair);
  EXPECT_TRUE(pair->matches("\xF0\x9F\x98\x80"));
  auto dot = compile(".");
  ASSERT_TRUE(dot);
  for (const char* line_end : {"\r", "\xE2\x80\xA8", "\xE2\x80\xA9"}) EXPECT_FALSE(dot->matches(line_end));
  auto space = compile("\\s");
  ASSERT_TRUE(space);
  for (const char* s : {" ", "\xC2\xA0", "\xE3\x80\x80", "\xEF\xBB\xBF"}) EXPECT_TRUE(space->matches(s)) << s;
  EXPECT_FALSE(space->matches("\x1C"));
  auto backspace = compile("[\\b]");
  ASSERT_TRUE(backspace);
  EXPECT_TRUE(backspace->matches("\b"));
}

// Inside a JSON string the regex matches the decoded text; what needs an escape is written escaped.
TEST(RegexGrammar, JsonStringEmbedding) {
  auto grammar_of = [](std::string_view regex) -> std::shared_ptr<const Grammar> {
    std::string rules;
    auto expr = regex_to_gbnf(regex, "re", rules, RegexEmbedding::kJsonString);
    EXPECT_TRUE(expr.ok());
    if (!expr.ok()) return nullptr;
    auto g = Grammar::parse("root ::= \"\\\"\" " + *expr + " \"\\\"\"\n" + rules);
    EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message) << "\n" << rules;
    return g.ok() ? *g : nullptr;
  };
  auto g = grammar_of("a\"b\\\\c\\n.");  // a"b\c, a newline, then any character
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->matches(R"("a\"b\\c\nx")"));
  EXPECT_TRUE(g->matches(R"("a\"b\\c\n\t")"));
  EXPECT_TRUE(g->matches(R"("a\"b\\c\n\u0001")"));
  EXPECT_TRUE(g->matches(R"("a\"b\\c\n\"")"));
  EXPECT_FALSE(g->matches("\"a\"b\\c\nx\""));        // raw quote and newline: not JSON
  EXPECT_FALSE(g->matches(R"("a\"b\\c\n\u0009")"));  // only the shortest escape of a tab
  EXPECT_FALSE(g->matches(R"("a\"b\\c\n\n")"));      // `.` takes no newline
  auto any = grammar_of("[^a]*");
  ASSERT_TRUE(any);
  // Every code point below 0x80 but 'a', as json.dumps writes it.
  std::string all = "\"";
  for (int c = 0; c < 0x80; ++c) {
    if (c == 'a') continue;
    all += nlohmann::json(std::string(1, static_cast<char>(c))).dump().substr(1);
    all.pop_back();
  }
  EXPECT_TRUE(any->matches(all + "\"")) << all;
  EXPECT_FALSE(any->matches(R"("xax")"));
  // A single escaped character in a class.
  auto quote = grammar_of("[\"]");
  ASSERT_TRUE(quote);
  EXPECT_TRUE(quote->matches(R"("\"")"));
  EXPECT_FALSE(quote->matches(R"(""")"));
}

// Nested counts add up rather than multiply: each counted group is a rule of its own.
TEST(RegexGrammar, NestedCountsStaySmall) {
  auto text = regex_grammar("(((ab){1000}){1000}){1000}");
  ASSERT_TRUE(text.ok());
  EXPECT_LT(text->size(), 1000u);
  auto g = Grammar::parse(*text);
  ASSERT_TRUE(g.ok()) << g.error().message;
  auto small = compile("((ab){3}c){2}");
  ASSERT_TRUE(small);
  EXPECT_TRUE(small->matches("abababcabababc"));
  EXPECT_FALSE(small->matches("abababc"));
}

TEST(RegexGrammar, ErrorsNameTheConstructAndOffset) {
  const std::vector<std::pair<const char*, std::vector<const char*>>> cases = {
      {"(a)\\1", {"backreference '\\1'", "offset 3"}},
      {"(?P<n>a)(?P=n)", {"backreference '(?P='", "offset 8"}},
      {"\\k<n>", {"backreference '\\k'", "offset 0"}},
      {"a(?=b)", {"lookahead '(?='", "offset 1"}},
      {"a(?!b)", {"negative lookahead", "offset 1"}},
      {"(?<=a)b", {"lookbehind '(?<='", "offset 0"}},
      {"(?<!a)b", {"negative lookbehind", "offset 0"}},
      {"(?i)abc", {"inline flags", "offset 0"}},
      {"(?>a)", {"atomic group", "offset 0"}},
      {"(?#note)a", {"comment group", "offset 0"}},
      {"a^b", {"anchor '^'", "offset 1"}},
      {"a$b", {"anchor '$'", "offset 1"}},
      {"(^a)", {"anchor '^' inside a group", "offset 1"}},
      {"(a$)", {"anchor '$'", "offset 2"}},
      {"\\bword", {"word boundary '\\b'", "offset 0"}},
      {"x\\B", {"word boundary '\\B'", "offset 1"}},
      {"\\Aa", {"anchor '\\A'", "offset 0"}},
      {"\\p{L}", {"Unicode property escape", "offset 0"}},
      {"\\cJ", {"control escape", "offset 0"}},
      {"\\q", {"unknown escape '\\q'", "offset 0"}},
      {"\\a", {"unknown escape '\\a'", "offset 0"}},
      {"\\012", {"octal escape", "offset 0"}},
      {"*a", {"nothing to repeat", "offset 0"}},
      {"a|+", {"nothing to repeat", "offset 2"}},
      {"(*)", {"nothing to repeat", "offset 1"}},
      {"a**", {"a quantifier after a quantifier", "offset 2"}},
      {"a*+", {"a quantifier after a quantifier", "offset 2"}},
      {"a{2}{3}", {"a quantifier after a quantifier", "offset 4"}},
      {"a{,3}", {"'{,n}'", "offset 1"}},
      {"a{3,2}", {"n < m", "offset 1"}},
      {"a{1001}", {"over 1000", "offset 1"}},
      {"a{2,100000}", {"over 1000", "offset 1"}},
      {"(ab", {"unterminated group", "offset 0"}},
      {"ab)", {"unbalanced ')'", "offset 2"}},
      {"[ab", {"unterminated class", "offset 0"}},
      {"[]a]", {"empty class", "offset 0"}},
      {"[^]", {"empty class", "offset 0"}},
      {"[z-a]", {"out of order", "offset 1"}},
      {"[\\d-z]", {"class escape at an end", "offset 1"}},
      {"\\x4", {"hex digits", "offset 0"}},
      {"\\uD800", {"lone surrogate", "offset 0"}},
      {"\\u{110000}", {"past U+10FFFF", "offset 0"}},
      {"a\\", {"'\\' at the end", "offset 1"}},
      {"\xFF", {"invalid UTF-8", "offset 0"}},
      {"ok\xC3(", {"invalid UTF-8", "offset 2"}},
  };
  for (const auto& [regex, parts] : cases) {
    const std::string message = error_of(regex);
    for (const char* part : parts) EXPECT_NE(message.find(part), std::string::npos) << regex << "\n  -> " << message;
  }
  std::string deep(200, '(');
  deep += std::string(200, ')');
  EXPECT_NE(error_of(deep).find("nested deeper than 100"), std::string::npos);
}

}  // namespace
}  // namespace ember::structured
