// Tool calls parsed out of model output (server/tool_calls.h): each syntax over whole texts, and the same texts
// fed as deltas split at every point, which must add up to the same message.

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "server/json_scanner.h"
#include "server/tool_calls.h"

namespace ember {
namespace {

using Calls = std::vector<std::pair<std::string, std::string>>;  // (name, arguments)

struct Case {
  const char* what;
  ToolCallSyntax syntax;
  std::string text;
  std::optional<std::string> content;
  Calls calls;
  std::vector<std::string> names = {};
  int32_t max_calls = INT32_MAX;
};

ToolCallOptions syntax_only(ToolCallSyntax syntax, std::vector<std::string> names = {}) {
  ToolCallOptions o;
  o.syntax = syntax;
  o.tool_names = std::move(names);
  return o;
}

ToolCallOptions options_of(const Case& c) {
  ToolCallOptions o;
  o.syntax = c.syntax;
  o.tool_names = c.names;
  o.max_calls = c.max_calls;
  o.forced_name = "forced";
  return o;
}

Calls calls_of(const ParsedToolCalls& m) {
  Calls out;
  for (const ToolCallOut& c : m.calls) out.emplace_back(c.name.value_or("?"), c.arguments);
  return out;
}

// Feeds `text` cut at `cuts` and adds the chunks up as a client does, checking each chunk's shape on the way:
// a call's first piece has an id and a name, a later piece neither, and pieces come in call order.
ParsedToolCalls stream(const ToolCallOptions& options, std::string_view text, const std::vector<size_t>& cuts) {
  ToolCallParser parser(options);
  ParsedToolCalls m{std::string(), {}};
  size_t at = 0;
  int32_t opened = 0;
  const auto add = [&](const ToolCallChunk& chunk) {
    for (const ToolCallOut& piece : chunk.calls) {
      if (piece.id) {
        EXPECT_TRUE(piece.name.has_value());
        EXPECT_EQ(piece.index, opened++);
      } else {
        EXPECT_FALSE(piece.name.has_value());
        EXPECT_EQ(piece.index, opened - 1);
        EXPECT_FALSE(piece.arguments.empty());
      }
    }
    append_chunk(m, chunk);
  };
  for (size_t cut : cuts) {
    add(parser.feed(text.substr(at, cut - at)));
    at = cut;
  }
  add(parser.finish(text.substr(at)));  // (the last piece comes with the end, as the route passes it)
  if (!m.calls.empty() && m.content->empty()) m.content.reset();
  EXPECT_EQ(parser.num_calls(), static_cast<int32_t>(m.calls.size()));
  return m;
}

const std::string kWeather = R"({"city": "Paris", "days": [1, 2.5e3, -0.1], "ok": true, "note": "a \"b\" \u00e9 }"})";

std::vector<Case> cases() {
  using S = ToolCallSyntax;
  return {
      // hermes
      {"hermes: text, then a call",
       S::kHermes,
       "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + kWeather + "}\n</tool_call>",
       "Let me check.",
       {{"get_weather", kWeather}}},
      {"hermes: two calls, no text",
       S::kHermes,
       "<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": "
       "{\"x\": {\"y\": [null]}}}</tool_call>\n",
       std::nullopt,
       {{"a", "{}"}, {"b", "{\"x\": {\"y\": [null]}}"}}},
      {"hermes: text around calls",
       S::kHermes,
       "Sure  <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>  done.\n",
       "Sure  done.\n",
       {{"a", "{}"}}},
      {"hermes: no call, a tag cut off at the end",
       S::kHermes,
       "Hello <b>world</b>  <tool",
       "Hello <b>world</b>  <tool",
       {}},
      {"hermes: only whitespace", S::kHermes, "\n \n", "\n \n", {}},
      {"hermes: empty", S::kHermes, "", "", {}},
      {"hermes: other key order, parsed whole",
       S::kHermes,
       "<tool_call>{\"arguments\": {\"x\": 1}, \"name\": \"f\"}</tool_call>",
       std::nullopt,
       {{"f", "{\"x\":1}"}}},
      {"hermes: arguments as a JSON string",
       S::kHermes,
       "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>",
       std::nullopt,
       {{"f", "{\"x\":1}"}}},
      {"hermes: not JSON stays text",
       S::kHermes,
       "a <tool_call>get_weather(Paris)</tool_call> b",
       "a <tool_call>get_weather(Paris)</tool_call> b",
       {}},
      {"hermes: a name that is no string stays text",
       S::kHermes,
       "<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>",
       "<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>",
       {}},
      {"hermes: an unknown tool stays text",
       S::kHermes,
       "x <tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>",
       "x <tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>",
       {},
       {"get_weather"}},
      {"hermes: a known tool",
       S::kHermes,
       "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>",
       std::nullopt,
       {{"get_weather", "{}"}},
       {"get_weather"}},
      {"hermes: an opening that ends the text",
       S::kHermes,
       "Hi <tool_call>{\"name\": \"f\"",
       "Hi <tool_call>{\"name\": \"f\"",
       {}},
      {"hermes: unclosed, the arguments whole",
       S::kHermes,
       "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1}",
       std::nullopt,
       {{"f", "{\"x\": 1}"}}},
      {"hermes: cut by max_tokens inside the arguments",
       S::kHermes,
       "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": [1, 2",
       std::nullopt,
       {{"f", "{\"x\": [1, 2"}}},
      {"hermes: a sent call that breaks keeps what it had; the rest of it is dropped",
       S::kHermes,
       "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": tru}}</tool_call>ok",
       "ok",
       {{"f", "{\"x\": tru"}}},
      {"hermes: a forgotten closing tag",
       S::kHermes,
       "<tool_call>{\"name\": \"a\", \"arguments\": {}}\n<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>",
       std::nullopt,
       {{"a", "{}"}, {"b", "{}"}}},
      {"hermes: one call when parallel_tool_calls is false",
       S::kHermes,
       "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"arguments\": "
       "{}}</tool_call>",
       std::nullopt,
       {{"a", "{}"}},
       {},
       1},
      // llama3_json
      {"llama3: one call",
       S::kLlama3Json,
       "{\"name\": \"get_weather\", \"parameters\": " + kWeather + "}",
       std::nullopt,
       {{"get_weather", kWeather}}},
      {"llama3: python_tag and two calls",
       S::kLlama3Json,
       "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": [1, 2]}}",
       std::nullopt,
       {{"a", "{}"}, {"b", "{\"x\": [1, 2]}"}}},
      {"llama3: a call after text is text",
       S::kLlama3Json,
       "Sure: {\"name\": \"a\", \"parameters\": {}}",
       "Sure: {\"name\": \"a\", \"parameters\": {}}",
       {}},
      {"llama3: other keys first, parsed whole",
       S::kLlama3Json,
       "{\"type\": \"function\", \"name\": \"f\", \"parameters\": {\"x\": 1}}",
       std::nullopt,
       {{"f", "{\"x\":1}"}}},
      {"llama3: JSON that is no call", S::kLlama3Json, "{\"answer\": 42}", "{\"answer\": 42}", {}},
      {"llama3: plain text", S::kLlama3Json, "  Paris is in France.", "  Paris is in France.", {}},
      // mistral
      {"mistral: two calls",
       S::kMistral,
       "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"x\": 1}}, {\"name\": \"g\", \"arguments\": {}}]",
       std::nullopt,
       {{"f", "{\"x\": 1}"}, {"g", "{}"}}},
      {"mistral: text first",
       S::kMistral,
       "Checking.[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]",
       "Checking.",
       {{"f", "{}"}}},
      {"mistral: the tag skipped by the detokenizer",
       S::kMistral,
       "[{\"name\": \"f\", \"arguments\": {}}]",
       std::nullopt,
       {{"f", "{}"}}},
      {"mistral: a list that is no call", S::kMistral, "[1] Introduction", "[1] Introduction", {}},
      {"mistral: a tag without a list", S::kMistral, "a [TOOL_CALLS] b", "a [TOOL_CALLS] b", {}},
      // tool_choice "required" and a named function
      {"required: two calls",
       S::kJsonArray,
       "[{\"name\": \"f\", \"parameters\": {\"x\": 1}}, {\"name\": \"g\", \"parameters\": {\"y\": \"]\"}}]",
       std::nullopt,
       {{"f", "{\"x\": 1}"}, {"g", "{\"y\": \"]\"}"}}},
      {"required: parallel_tool_calls false",
       S::kJsonArray,
       "[{\"name\": \"f\", \"parameters\": {}}, {\"name\": \"g\", \"parameters\": {}}]",
       std::nullopt,
       {{"f", "{}"}},
       {},
       1},
      {"required: max_tokens cut the list between two calls: the rest is no content",
       S::kJsonArray,
       "[{\"name\": \"f\", \"parameters\": {\"x\": 1}},\n  {\n    \"name\": \"f\",",
       std::nullopt,
       {{"f", "{\"x\": 1}"}}},
      {"named: the text is the arguments", S::kArguments, "{\"x\": 1}", std::nullopt, {{"forced", "{\"x\": 1}"}}},
      {"named: no text", S::kArguments, "", std::nullopt, {{"forced", ""}}},
  };
}

TEST(ToolCalls, WholeTexts) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.what);
    const ParsedToolCalls m = parse_tool_calls(options_of(c), c.text);
    EXPECT_EQ(m.content, c.content);
    EXPECT_EQ(calls_of(m), c.calls);
  }
}

TEST(ToolCalls, EverySplitAddsUpToTheWholeText) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.what);
    const ToolCallOptions o = options_of(c);
    for (size_t cut = 0; cut <= c.text.size(); ++cut) {
      SCOPED_TRACE("split at " + std::to_string(cut));
      const ParsedToolCalls m = stream(o, c.text, {cut});
      ASSERT_EQ(m.content, c.content);
      ASSERT_EQ(calls_of(m), c.calls);
    }
    const ParsedToolCalls whole_then_end = stream(o, c.text, {c.text.size()});  // feed(text), then finish()
    EXPECT_EQ(whole_then_end.content, c.content);
    EXPECT_EQ(calls_of(whole_then_end), c.calls);
    std::vector<size_t> bytes;  // one byte per delta
    for (size_t i = 1; i < c.text.size(); ++i) bytes.push_back(i);
    const ParsedToolCalls m = stream(o, c.text, bytes);
    EXPECT_EQ(m.content, c.content);
    EXPECT_EQ(calls_of(m), c.calls);
    std::mt19937 rng(7);
    for (int trial = 0; trial < 20 && !c.text.empty(); ++trial) {
      std::set<size_t> cuts;
      for (int k = 0; k < 5; ++k) cuts.insert(1 + rng() % c.text.size());
      const ParsedToolCalls r = stream(o, c.text, std::vector<size_t>(cuts.begin(), cuts.end()));
      EXPECT_EQ(r.content, c.content);
      EXPECT_EQ(calls_of(r), c.calls);
    }
  }
}

TEST(ToolCalls, ArgumentsStreamAsTheyArrive) {
  // Fed a byte at a time: the call opens (id, name, no arguments yet) as soon as its head is read, the arguments
  // follow in pieces, and text before the call is sent before the call is known.
  ToolCallParser p(syntax_only(ToolCallSyntax::kHermes, {"get_weather"}));
  const std::string text = "Hi <tool_call>{\"name\": \"get_weather\", \"arguments\": " + kWeather + "}</tool_call>";
  std::vector<ToolCallChunk> chunks;
  for (char c : text) chunks.push_back(p.feed(std::string(1, c)));
  chunks.push_back(p.finish());
  std::string content;
  int pieces = 0;
  size_t opened_at = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    content += chunks[i].content;
    for (const ToolCallOut& piece : chunks[i].calls) {
      if (piece.id) {
        opened_at = i;
        EXPECT_EQ(content, "Hi");
        EXPECT_EQ(piece.name, "get_weather");
      }
      ++pieces;
    }
  }
  EXPECT_EQ(opened_at, text.find("{\"city\""));  // the byte the arguments start with
  EXPECT_EQ(pieces, static_cast<int>(kWeather.size()));
}

TEST(ToolCalls, PartialTagsAcrossDeltas) {
  ToolCallParser p(syntax_only(ToolCallSyntax::kHermes));
  EXPECT_EQ(p.feed("Sure <tool").content, "Sure");
  EXPECT_TRUE(p.feed("_call>").empty());
  const ToolCallChunk head = p.feed("{\"name\": \"f\", \"arguments\": {");
  ASSERT_EQ(head.calls.size(), 1u);
  EXPECT_EQ(head.calls[0].name, "f");
  EXPECT_EQ(head.calls[0].arguments, "{");
  EXPECT_EQ(p.feed("}}</tool").calls.at(0).arguments, "}");
  EXPECT_TRUE(p.feed("_call>").empty());
  EXPECT_TRUE(p.finish().empty());
  EXPECT_EQ(p.num_calls(), 1);
  // A "<" that turns out to open nothing is sent once the next byte says so.
  ToolCallParser q(syntax_only(ToolCallSyntax::kHermes));
  EXPECT_EQ(q.feed("a <").content, "a");
  EXPECT_EQ(q.feed("b").content, " <b");
}

TEST(ToolCalls, IdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    const ParsedToolCalls m = parse_tool_calls(syntax_only(ToolCallSyntax::kHermes),
                                               "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>"
                                               "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>");
    ASSERT_EQ(m.calls.size(), 2u);
    for (const ToolCallOut& c : m.calls) {
      ASSERT_TRUE(c.id);
      EXPECT_EQ(c.id->rfind("chatcmpl-tool-", 0), 0u);
      EXPECT_EQ(c.id->size(), std::string("chatcmpl-tool-").size() + 32);
      ids.insert(*c.id);
    }
  }
  EXPECT_EQ(ids.size(), 100u);
  // Mistral's templates take 9 letters and digits.
  const ParsedToolCalls m =
      parse_tool_calls(syntax_only(ToolCallSyntax::kMistral), "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}]");
  ASSERT_EQ(m.calls.size(), 1u);
  ASSERT_EQ(m.calls[0].id->size(), 9u);
  for (char c : *m.calls[0].id) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)));
}

TEST(ToolCalls, SyntaxNames) {
  for (ToolCallSyntax s : {ToolCallSyntax::kHermes, ToolCallSyntax::kLlama3Json, ToolCallSyntax::kMistral})
    EXPECT_EQ(tool_call_syntax(tool_call_syntax_name(s)), s);
  EXPECT_FALSE(tool_call_syntax("pythonic").has_value());
}

TEST(JsonScanner, AcceptsJsonAndEndsWithIt) {
  for (std::string doc :
       {std::string("{}"), std::string("[]"), kWeather, std::string(" [0, -1, 1e5, 2E-3, 0.5, \"\\/\"]"),
        std::string("{\"a\": {\"b\": [[], {}, [true, false, null]]}}")}) {
    SCOPED_TRACE(doc);
    JsonScanner s;
    for (size_t i = 0; i < doc.size(); ++i) {
      ASSERT_TRUE(s.feed(doc[i])) << "at " << i;
      EXPECT_EQ(s.done(), i + 1 == doc.size());
    }
    EXPECT_EQ(s.depth(), 0u);
    EXPECT_FALSE(s.feed(' '));  // nothing after the value
  }
}

TEST(JsonScanner, RefusesAtTheFirstBadByte) {
  const std::vector<std::pair<std::string, size_t>> bad = {
      {"x", 0},         {"\"a\"", 0},         {"{a", 1},         {"{\"a\" 1", 5},    {"{\"a\": tru}", 9}, {"[01]", 2},
      {"[1.]", 3},      {"[-]", 2},           {"[1e]", 3},       {"{\"a\": 1,}", 8}, {"[1 2]", 3},        {"{]", 1},
      {"[\"\\x\"]", 3}, {"[\"\\u12g4\"]", 6}, {"[\"a\nb\"]", 3}, {"{\"a\": 1}}", 8}};
  for (const auto& [doc, at] : bad) {
    SCOPED_TRACE(doc);
    JsonScanner s;
    size_t i = 0;
    while (i < doc.size() && s.feed(doc[i])) ++i;
    EXPECT_EQ(i, at);
    EXPECT_TRUE(i == doc.size() || s.failed());
  }
  JsonScanner deep;
  for (size_t i = 0; i < JsonScanner::kMaxDepth; ++i) ASSERT_TRUE(deep.feed('['));
  EXPECT_FALSE(deep.feed('['));
}

}  // namespace
}  // namespace ember
