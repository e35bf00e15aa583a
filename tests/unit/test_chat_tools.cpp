// A chat request's tools: what parsing keeps of them (server/openai_tools.cpp), the grammar a forced tool_choice
// becomes, which syntax a template teaches, the system message a template without tools gets, and the parse
// options a request's output is read with (server/chat_tools.h).

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "engine/structured/grammar.h"
#include "server/chat_tools.h"

namespace ember {
namespace {

using nlohmann::json;

const std::string kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather",
   "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string",
                  "enum": ["Paris", "Rome"]}, "days": {"type": "integer", "minimum": 1, "maximum": 3}},
                  "additionalProperties": false}}},
  {"function": {"name": "ping"}}
])";

ApiResult<ChatCompletionRequest> parse(const std::string& extra) {
  return parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}], "tools": )" + kTools + extra + "}",
                            ProtocolLimits{});
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ChatTools, ToolsKeepTheClientsKeyOrder) {
  auto r = parse("");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->tools.size(), 2u);
  // Templates print these with tojson: the keys stay as sent ("required" before "properties"), and a tool sent
  // without "type" gets it, first, as vLLM's models do.
  EXPECT_EQ(r->tools[0].dump().find(R"({"type":"function","function":{"name":"get_weather","description")"), 0u);
  EXPECT_LT(r->tools[0].dump().find("\"required\""), r->tools[0].dump().find("\"properties\""));
  EXPECT_EQ(r->tools[1].dump(), R"({"type":"function","function":{"name":"ping"}})");
  EXPECT_EQ(r->tool_choice.mode, ToolChoice::Mode::kAuto);  // the default with tools
  EXPECT_TRUE(r->parallel_tool_calls);
  EXPECT_FALSE(r->structured.has_value());  // "auto" constrains nothing
}

TEST(ChatTools, ForcedToolChoiceIsAGrammar) {
  auto named = parse(R"(, "tool_choice": {"type": "function", "function": {"name": "get_weather"}})");
  ASSERT_TRUE(named) << named.error().message;
  ASSERT_TRUE(named->structured.has_value());
  EXPECT_EQ(named->structured->field, "tool_choice");
  auto g = structured::Grammar::parse(named->structured->gbnf);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_TRUE((*g)->matches(R"({"city": "Paris", "days": 2})"));
  EXPECT_TRUE((*g)->matches(R"({"city": "Rome"})"));
  EXPECT_FALSE((*g)->matches(R"({"city": "Oslo"})"));
  EXPECT_FALSE((*g)->matches(R"([{"name": "get_weather", "parameters": {"city": "Rome"}}])"));

  auto required = parse(R"(, "tool_choice": "required")");
  ASSERT_TRUE(required) << required.error().message;
  auto list = structured::Grammar::parse(required->structured->gbnf);
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_TRUE((*list)->matches(R"([{"name": "ping", "parameters": {}}])"));
  EXPECT_TRUE((*list)->matches(
      R"([{"name": "get_weather", "parameters": {"city": "Rome"}}, {"name": "ping", "parameters": {}}])"));
  EXPECT_FALSE((*list)->matches("[]"));
  EXPECT_FALSE((*list)->matches(R"([{"name": "ping", "parameters": {"x": 1}}])"));
  EXPECT_FALSE((*list)->matches(R"([{"name": "get_weather", "parameters": {}}])"));  // city is required

  auto single = parse(R"(, "tool_choice": "required", "parallel_tool_calls": false)");
  ASSERT_TRUE(single) << single.error().message;
  auto one = structured::Grammar::parse(single->structured->gbnf);
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_TRUE((*one)->matches(R"([{"name": "ping", "parameters": {}}])"));
  EXPECT_FALSE((*one)->matches(R"([{"name": "ping", "parameters": {}}, {"name": "ping", "parameters": {}}])"));

  // A forced tool_choice replaces a response_format; "auto" leaves it.
  auto both = parse(R"(, "tool_choice": "required", "response_format": {"type": "json_object"})");
  ASSERT_TRUE(both) << both.error().message;
  EXPECT_EQ(both->structured->field, "tool_choice");
}

TEST(ChatTools, ParseOptionsFollowToolChoice) {
  auto r = parse("");
  ASSERT_TRUE(r);
  auto o = tool_call_options(*r, ToolCallSyntax::kLlama3Json);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->syntax, ToolCallSyntax::kLlama3Json);
  EXPECT_EQ(o->tool_names, (std::vector<std::string>{"get_weather", "ping"}));
  EXPECT_EQ(o->max_calls, INT32_MAX);

  r = parse(R"(, "tool_choice": {"type": "function", "function": {"name": "ping"}})");
  o = tool_call_options(*r, ToolCallSyntax::kHermes);
  EXPECT_EQ(o->syntax, ToolCallSyntax::kArguments);
  EXPECT_EQ(o->forced_name, "ping");

  r = parse(R"(, "tool_choice": "required", "parallel_tool_calls": false)");
  o = tool_call_options(*r, ToolCallSyntax::kHermes);
  EXPECT_EQ(o->syntax, ToolCallSyntax::kJsonArray);
  EXPECT_EQ(o->max_calls, 1);

  r = parse(R"(, "tool_choice": "none")");
  EXPECT_FALSE(tool_call_options(*r, ToolCallSyntax::kHermes));
  auto plain = parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}]})", ProtocolLimits{});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->tool_choice.mode, ToolChoice::Mode::kNone);
  EXPECT_FALSE(tool_call_options(*plain, ToolCallSyntax::kHermes));
}

TEST(ChatTools, SyntaxFromTheTemplate) {
  const std::string dir = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/chat_templates/";
  const std::vector<std::pair<std::string, ToolCallSyntax>> want = {
      {"qwen2.5-3b-instruct", ToolCallSyntax::kHermes},       {"smollm2-135m-instruct", ToolCallSyntax::kHermes},
      {"llama-3.1-8b-instruct", ToolCallSyntax::kLlama3Json}, {"llama-3.2-3b-instruct", ToolCallSyntax::kLlama3Json},
      {"mistral-7b-instruct-v0.3", ToolCallSyntax::kMistral}, {"llama-2-7b-chat", ToolCallSyntax::kHermes}};
  for (const auto& [name, syntax] : want) {
    const std::string source = read_file(dir + name + ".jinja");
    ASSERT_FALSE(source.empty()) << name;
    EXPECT_EQ(detect_tool_call_syntax(source), syntax) << name;
  }
  EXPECT_TRUE(template_reads_tools(read_file(dir + "qwen2.5-3b-instruct.jinja")));
  EXPECT_FALSE(template_reads_tools(read_file(dir + "smollm2-135m-instruct.jinja")));
}

TEST(ChatTools, ATemplateWithoutToolsGetsThemInTheSystemMessage) {
  auto r = parse_chat_request(R"({"messages": [
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"id": "c2", "type": "function", "function": {"name": "ping", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
      {"role": "tool", "tool_call_id": "c2", "content": "pong"},
      {"role": "user", "content": "Thanks"}], "tools": )" +
                                  kTools + "}",
                              ProtocolLimits{});
  ASSERT_TRUE(r) << r.error().message;
  const std::vector<ChatMessage> out = with_tools_in_system_message(r->messages, r->tools);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0].role, "system");  // prepended: there was none
  const std::string& system = *out[0].content;
  EXPECT_NE(system.find("<tools>\n" + r->tools[0].dump() + "\n" + r->tools[1].dump() + "\n</tools>"),
            std::string::npos);
  EXPECT_NE(system.find("<tool_call>"), std::string::npos);
  // The assistant's calls as hermes blocks (name first, as the instructions show), the results as one user turn.
  EXPECT_EQ(out[2].role, "assistant");
  EXPECT_EQ(*out[2].content,
            "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>\n"
            "<tool_call>\n{\"name\":\"ping\",\"arguments\":{}}\n</tool_call>");
  EXPECT_FALSE(out[2].tool_calls.has_value());
  EXPECT_EQ(out[3].role, "user");
  EXPECT_EQ(*out[3].content, "<tool_response>\n18 C\n</tool_response>\n<tool_response>\npong\n</tool_response>");
  EXPECT_EQ(*out[4].content, "Thanks");

  // A system message of its own keeps its text, the tools after it.
  std::vector<ChatMessage> with_system = r->messages;
  with_system.insert(with_system.begin(), ChatMessage{});
  with_system[0].role = "system";
  with_system[0].content = "Be brief.";
  const std::vector<ChatMessage> out2 = with_tools_in_system_message(with_system, r->tools);
  ASSERT_EQ(out2.size(), 5u);
  EXPECT_EQ(out2[0].content->rfind("Be brief.\n\n# Tools", 0), 0u);
}

TEST(ChatTools, ResponsesCarryTheCallsAsOpenAIDoes) {
  const ResponseHeader h{"chatcmpl-x", 1, "m"};
  ChatChoiceOut o;
  o.tool_calls = {ToolCallOut{0, "chatcmpl-tool-1", "get_weather", R"({"city": "Paris"})"}};
  o.called_tools = true;
  o.finish_reason = FinishReason::kStop;
  const json whole = build_chat_completion(h, {o}, Usage{});
  EXPECT_EQ(whole["choices"][0]["message"],
            json::parse(R"({"role": "assistant", "content": null, "tool_calls": [{"id": "chatcmpl-tool-1",
                "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]})"));
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "tool_calls");
  o.finish_reason = FinishReason::kLength;  // cut by max_tokens: said so
  EXPECT_EQ(build_chat_completion(h, {o}, Usage{})["choices"][0]["finish_reason"], "length");

  // Stream pieces: the first with id, type and name, later ones the index and more arguments.
  ChatChoiceOut first, later;
  first.tool_calls = {ToolCallOut{0, "chatcmpl-tool-1", "get_weather", "{"}};
  later.tool_calls = {ToolCallOut{0, std::nullopt, std::nullopt, "}"}};
  EXPECT_EQ(build_chat_chunk(h, {first})["choices"][0]["delta"],
            json::parse(R"({"tool_calls": [{"index": 0, "id": "chatcmpl-tool-1", "type": "function",
                                             "function": {"name": "get_weather", "arguments": "{"}}]})"));
  EXPECT_EQ(build_chat_chunk(h, {later})["choices"][0]["delta"],
            json::parse(R"({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})"));
  // No calls: no tool_calls key at all.
  ChatChoiceOut plain;
  plain.content = "hi";
  EXPECT_FALSE(build_chat_completion(h, {plain}, Usage{})["choices"][0]["message"].contains("tool_calls"));
}

}  // namespace
}  // namespace ember
