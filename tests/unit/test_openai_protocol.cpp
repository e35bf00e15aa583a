// OpenAI protocol layer: a table of bad request bodies (status, type, param
// each), good bodies with the SamplingParams they must produce, and the
// response builders' JSON. Shapes are also checked against the official
// openai Python types in tests/integration/test_openai_protocol.py.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/openai_protocol.h"

namespace ember {
namespace {

using nlohmann::json;

ProtocolLimits test_limits() {
  ProtocolLimits l;
  l.vocab_size = 1000;
  l.max_model_len = 2048;
  l.max_n = 8;
  l.max_stop = 4;
  l.max_json_depth = 16;
  return l;
}

enum class Endpoint { kCompletion, kChat, kTokenize, kDetokenize };

struct BadCase {
  Endpoint endpoint;
  std::string body;
  std::string param;  // "" means null
};

std::optional<ApiError> parse_error(Endpoint e, const std::string& body) {
  const ProtocolLimits l = test_limits();
  switch (e) {
    case Endpoint::kCompletion: {
      auto r = parse_completion_request(body, l);
      return r ? std::nullopt : std::optional(r.error());
    }
    case Endpoint::kChat: {
      auto r = parse_chat_request(body, l);
      return r ? std::nullopt : std::optional(r.error());
    }
    case Endpoint::kTokenize: {
      auto r = parse_tokenize_request(body, l);
      return r ? std::nullopt : std::optional(r.error());
    }
    case Endpoint::kDetokenize: {
      auto r = parse_detokenize_request(body, l);
      return r ? std::nullopt : std::optional(r.error());
    }
  }
  return std::nullopt;
}

constexpr Endpoint C = Endpoint::kCompletion;
constexpr Endpoint K = Endpoint::kChat;
constexpr Endpoint T = Endpoint::kTokenize;
constexpr Endpoint D = Endpoint::kDetokenize;
const std::string M = R"("messages": [{"role": "user", "content": "hi"}])";

const std::vector<BadCase> kBad = {
    // Not JSON, or not an object.
    {C, "", ""},
    {C, "{", ""},
    {C, "{\"prompt\": \"a\",}", ""},
    {C, "[1, 2]", ""},
    {C, "\"prompt\"", ""},
    {C, std::string(40, '[') + std::string(40, ']'), ""},  // nested deeper than the limit
    // prompt
    {C, "{}", "prompt"},
    {C, R"({"prompt": null})", "prompt"},
    {C, R"({"prompt": ""})", "prompt"},
    {C, R"({"prompt": []})", "prompt"},
    {C, R"({"prompt": [[]]})", "prompt"},
    {C, R"({"prompt": ["a", ""]})", "prompt"},
    {C, R"({"prompt": 5})", "prompt"},
    {C, R"({"prompt": {"text": "a"}})", "prompt"},
    {C, R"({"prompt": ["a", 5]})", "prompt.[1]"},
    {C, R"({"prompt": [1, "a"]})", "prompt.[1]"},
    {C, R"({"prompt": [1, 2.5]})", "prompt.[1]"},
    {C, R"({"prompt": [[1], [2, "x"]]})", "prompt.[1].[1]"},
    {C, R"({"prompt": [1, 1000]})", "prompt"},
    {C, R"({"prompt": [-1]})", "prompt"},
    {C, R"({"prompt": [true]})", "prompt.[0]"},
    // types of scalar fields
    {C, R"({"prompt": "a", "model": 3})", "model"},
    {C, R"({"prompt": "a", "max_tokens": "16"})", "max_tokens"},
    {C, R"({"prompt": "a", "max_tokens": 2.5})", "max_tokens"},
    {C, R"({"prompt": "a", "max_tokens": 1e12})", "max_tokens"},
    {C, R"({"prompt": "a", "temperature": "hot"})", "temperature"},
    {C, R"({"prompt": "a", "top_p": [1]})", "top_p"},
    {C, R"({"prompt": "a", "n": true})", "n"},
    {C, R"({"prompt": "a", "stream": "yes"})", "stream"},
    {C, R"({"prompt": "a", "echo": 1})", "echo"},
    {C, R"({"prompt": "a", "logprobs": true})", "logprobs"},
    {C, R"({"prompt": "a", "seed": "42"})", "seed"},
    {C, R"({"prompt": "a", "seed": 1.5})", "seed"},
    {C, R"({"prompt": "a", "seed": -9223372036854775809})", "seed"},  // beyond int64 (parses as -2^63 in a double)
    {C, R"({"prompt": "a", "temperature": 1e26})", "temperature"},
    {C, R"({"prompt": "a", "repetition_penalty": 1e26})", "repetition_penalty"},
    {C, R"({"prompt": "a", "stop": 5})", "stop"},
    {C, R"({"prompt": "a", "stop": ["x", 5]})", "stop.[1]"},
    {C, R"({"prompt": "a", "stop_token_ids": 5})", "stop_token_ids"},
    {C, R"({"prompt": "a", "stop_token_ids": [1, "2"]})", "stop_token_ids.[1]"},
    {C, R"({"prompt": "a", "logit_bias": [1]})", "logit_bias"},
    {C, R"({"prompt": "a", "logit_bias": {"abc": 1}})", "logit_bias"},
    {C, R"({"prompt": "a", "logit_bias": {"5": "up"}})", "logit_bias.5"},
    {C, R"({"prompt": "a", "stream": true, "stream_options": 1})", "stream_options"},
    {C, R"({"prompt": "a", "stream": true, "stream_options": {"include_usage": "y"}})", "stream_options.include_usage"},
    // values out of range (SamplingParams::validate names the first bad field)
    {C, R"({"prompt": "a", "max_tokens": 0})", "max_tokens"},
    {C, R"({"prompt": "a", "max_tokens": -5})", "max_tokens"},
    {C, R"({"prompt": "a", "temperature": -0.1})", "temperature"},
    {C, R"({"prompt": "a", "temperature": 1e300})", "temperature"},
    {C, R"({"prompt": "a", "top_p": 0})", "top_p"},
    {C, R"({"prompt": "a", "top_p": 1.01})", "top_p"},
    {C, R"({"prompt": "a", "top_k": -2})", "top_k"},
    {C, R"({"prompt": "a", "min_p": 1.5})", "min_p"},
    {C, R"({"prompt": "a", "presence_penalty": 2.5})", "presence_penalty"},
    {C, R"({"prompt": "a", "frequency_penalty": -3})", "frequency_penalty"},
    {C, R"({"prompt": "a", "repetition_penalty": 0})", "repetition_penalty"},
    {C, R"({"prompt": "a", "n": 0})", "n"},
    {C, R"({"prompt": "a", "n": 9})", "n"},
    {C, R"({"prompt": "a", "min_tokens": -1})", "min_tokens"},
    {C, R"({"prompt": "a", "min_tokens": 20, "max_tokens": 10})", "min_tokens"},
    {C, R"({"prompt": "a", "logprobs": 21})", "logprobs"},
    {C, R"({"prompt": "a", "logprobs": -1})", "logprobs"},
    {C, R"({"prompt": "a", "stop": ["x", ""]})", "stop"},
    {C, R"({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]})", "stop"},
    {C, R"({"prompt": "a", "stop_token_ids": [1000]})", "stop_token_ids"},
    {C, R"({"prompt": "a", "logit_bias": {"5": 101}})", "logit_bias"},
    {C, R"({"prompt": "a", "logit_bias": {"1000": 1}})", "logit_bias"},
    {C, R"({"prompt": "a", "logit_bias": {"-1": 1}})", "logit_bias"},
    {C, R"({"prompt": "a", "temperature": -1, "top_p": 5})", "temperature"},  // first bad field
    // unsupported or inconsistent
    {C, R"({"prompt": "a", "suffix": "b"})", "suffix"},
    {C, R"({"prompt": "a", "best_of": 3})", "best_of"},
    {C, R"({"prompt": "a", "stream_options": {"include_usage": true}})", "stream_options"},
    {C, R"({"prompt": "a", "stream": false, "stream_options": {"include_usage": true}})", "stream_options"},
    {C, R"({"prompt": "a", "cache_salt": ""})", "cache_salt"},
    // chat: messages
    {K, "{}", "messages"},
    {K, R"({"messages": []})", "messages"},
    {K, R"({"messages": "hi"})", "messages"},
    {K, R"({"messages": ["hi"]})", "messages.[0]"},
    {K, R"({"messages": [{"content": "hi"}]})", "messages.[0].role"},
    {K, R"({"messages": [{"role": "robot", "content": "hi"}]})", "messages.[0].role"},
    {K, R"({"messages": [{"role": 1, "content": "hi"}]})", "messages.[0].role"},
    {K, R"({"messages": [{"role": "user"}]})", "messages.[0].content"},
    {K, R"({"messages": [{"role": "user", "content": null}]})", "messages.[0].content"},
    {K, R"({"messages": [{"role": "user", "content": 5}]})", "messages.[0].content"},
    {K, R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "image_url",
        "image_url": {"url": "x"}}]}]})", "messages.[1].content.[0].type"},
    {K, R"({"messages": [{"role": "user", "content": [{"text": "a"}]}]})", "messages.[0].content.[0].type"},
    {K, R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})", "messages.[0].content.[0].text"},
    {K, R"({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]})",
     "messages.[0].content.[0].text"},
    {K, R"({"messages": [{"role": "user", "content": ["a"]}]})", "messages.[0].content.[0]"},
    {K, R"({"messages": [{"role": "user", "content": "a", "name": 5}]})", "messages.[0].name"},
    {K, R"({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "x"}]}]})",
     "messages.[0].tool_calls.[0].function"},
    {K, R"({"messages": [{"role": "assistant", "tool_calls": {}}]})", "messages.[0].tool_calls"},
    {K, R"({"messages": [{"role": "user", "content": "a", "tool_calls": [{"function": {"name": "f"}}]}]})",
     "messages.[0].tool_calls"},
    {K, R"({"messages": [{"role": "assistant", "tool_calls": [{"type": "code", "function": {"name": "f"}}]}]})",
     "messages.[0].tool_calls.[0].type"},
    {K, R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]})",
     "messages.[0].tool_calls.[0].function.name"},
    {K, R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 5}}]}]})",
     "messages.[0].tool_calls.[0].function.arguments"},
    // chat: fields
    {K, "{" + M + R"(, "logprobs": 1})", "logprobs"},
    {K, "{" + M + R"(, "top_logprobs": 3})", "top_logprobs"},
    {K, "{" + M + R"(, "logprobs": true, "top_logprobs": 21})", "top_logprobs"},
    {K, "{" + M + R"(, "max_tokens": 0})", "max_tokens"},
    {K, "{" + M + R"(, "max_tokens": 10, "max_completion_tokens": 0})", "max_completion_tokens"},
    {K, "{" + M + R"(, "temperature": -1})", "temperature"},
    {K, "{" + M + R"(, "response_format": {"type": "json_yaml"}})", "response_format.type"},
    {K, "{" + M + R"(, "response_format": "text"})", "response_format"},
    {K, "{" + M + R"(, "tools": [{"type": "function", "function": {"name": "f g"}}]})", "tools.[0].function.name"},
    {K, "{" + M + R"(, "tools": [{"type": "function", "function": {"name": "f", "parameters": 1}}]})",
     "tools.[0].function.parameters"},
    {K, "{" + M + R"(, "tools": [{"type": "retrieval", "function": {"name": "f"}}]})", "tools.[0].type"},
    {K, "{" + M + R"(, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function",
        "function": {"name": "g"}}})", "tool_choice"},
    {K, "{" + M + R"(, "tools": {}})", "tools"},
    {K, "{" + M + R"(, "tool_choice": "required"})", "tool_choice"},
    {K, "{" + M + R"(, "parallel_tool_calls": 1})", "parallel_tool_calls"},
    {K, "{" + M + R"(, "chat_template_kwargs": [1]})", "chat_template_kwargs"},
    {K, "{" + M + R"(, "add_generation_prompt": "no"})", "add_generation_prompt"},
    {K, "{" + M + R"(, "continue_final_message": true})", "continue_final_message"},
    {K, R"({"messages": [{"role": "user", "content": "a"}], "continue_final_message": true,
        "add_generation_prompt": false})", "continue_final_message"},
    {K, "{" + M + R"(, "stream_options": {"include_usage": true}})", "stream_options"},
    {K, "{" + M + R"(, "n": 100})", "n"},
    // tokenize / detokenize
    {T, "{}", "prompt"},
    {T, R"({"prompt": 5})", "prompt"},
    {T, R"({"messages": []})", "messages"},
    {T, R"({"prompt": "a", "add_special_tokens": "no"})", "add_special_tokens"},
    {D, "{}", "tokens"},
    {D, R"({"tokens": "1 2"})", "tokens"},
    {D, R"({"tokens": [1, 1000]})", "tokens"},
    {D, R"({"tokens": [1, 2.5]})", "tokens.[1]"},
};

TEST(OpenAIProtocol, BadInputTable) {
  ASSERT_GE(kBad.size(), 50u);
  for (const BadCase& c : kBad) {
    SCOPED_TRACE(c.body.substr(0, 200));
    auto err = parse_error(c.endpoint, c.body);
    ASSERT_TRUE(err.has_value()) << "accepted";
    EXPECT_EQ(err->status, 400);
    EXPECT_EQ(err->type, "invalid_request_error");
    EXPECT_FALSE(err->message.empty());
    if (c.param.empty()) {
      EXPECT_FALSE(err->param.has_value()) << *err->param;
    } else {
      EXPECT_EQ(err->param.value_or("<null>"), c.param) << err->message;
    }
    // The error object is what OpenAI sends: all four keys, null where unset.
    const json j = to_json(*err);
    ASSERT_TRUE(j.contains("error"));
    for (const char* key : {"message", "type", "param", "code"}) EXPECT_TRUE(j["error"].contains(key)) << key;
  }
}

TEST(OpenAIProtocol, InvalidJsonMessageSaysSo) {
  auto err = parse_error(C, "{\"prompt\": ");
  ASSERT_TRUE(err);
  EXPECT_NE(err->message.find("could not parse the JSON body"), std::string::npos);
}

TEST(OpenAIProtocol, ValidateMessagesListEveryBadField) {
  auto err = parse_error(C, R"({"prompt": "a", "temperature": -1, "top_p": 5})");
  ASSERT_TRUE(err);
  EXPECT_NE(err->message.find("temperature"), std::string::npos);
  EXPECT_NE(err->message.find("top_p"), std::string::npos);
}


// ---- good inputs -----------------------------------------------------------------------

TEST(OpenAIProtocol, CompletionDefaults) {
  auto r = parse_completion_request(R"({"model": "m", "prompt": "Hello"})", test_limits());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->model, "m");
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_EQ(r->prompts[0].text.value_or(""), "Hello");
  const SamplingParams& p = r->params;
  const SamplingParams d;
  EXPECT_EQ(p.max_tokens, 16);
  EXPECT_EQ(p.n, 1);
  EXPECT_EQ(p.temperature, d.temperature);
  EXPECT_EQ(p.top_p, 1.0f);
  EXPECT_EQ(p.top_k, -1);
  EXPECT_FALSE(p.logprobs.has_value());
  EXPECT_FALSE(p.seed.has_value());
  // seed -1 means no seed (llama-server's convention).
  auto unseeded = parse_completion_request(R"({"prompt": "Hello", "seed": -1})", test_limits());
  ASSERT_TRUE(unseeded) << unseeded.error().message;
  EXPECT_FALSE(unseeded->params.seed.has_value());
  EXPECT_FALSE(p.echo);
  EXPECT_FALSE(r->stream.stream);
  EXPECT_TRUE(r->add_special_tokens);
  EXPECT_TRUE(r->params.skip_special_tokens);
}

TEST(OpenAIProtocol, CompletionEveryField) {
  auto r = parse_completion_request(R"({
      "model": "m", "prompt": [[1, 2, 3], [4]], "max_tokens": 32, "temperature": 0.5, "top_p": 0.9, "n": 2,
      "best_of": 2, "stream": true, "stream_options": {"include_usage": true, "continuous_usage_stats": true},
      "logprobs": 5, "echo": true, "stop": "\n\n", "presence_penalty": 0.5, "frequency_penalty": -0.5,
      "repetition_penalty": 1.1, "logit_bias": {"7": -100, "9": 2.5}, "user": "u", "seed": -2, "top_k": 40,
      "min_p": 0.05, "min_tokens": 4, "ignore_eos": true, "stop_token_ids": [2, 3], "skip_special_tokens": false,
      "cache_salt": "s", "priority": -3, "suffix": null, "unknown_field": {"x": [1]}, "top_logprobs": null
    })", test_limits());
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->prompts.size(), 2u);
  EXPECT_FALSE(r->prompts[0].text.has_value());
  EXPECT_EQ(r->prompts[0].token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(r->prompts[1].token_ids, (std::vector<int32_t>{4}));
  const SamplingParams& p = r->params;
  EXPECT_EQ(p.max_tokens, 32);
  EXPECT_FLOAT_EQ(p.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(p.n, 2);
  EXPECT_TRUE(r->stream.stream);
  EXPECT_TRUE(r->stream.include_usage);
  EXPECT_TRUE(r->stream.continuous_usage_stats);
  EXPECT_EQ(p.logprobs, 5);
  EXPECT_TRUE(p.echo);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"\n\n"}));
  EXPECT_FLOAT_EQ(p.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(p.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(p.repetition_penalty, 1.1f);
  EXPECT_EQ(p.logit_bias.size(), 2u);
  EXPECT_FLOAT_EQ(p.logit_bias.at(7), -100.0f);
  EXPECT_FLOAT_EQ(p.logit_bias.at(9), 2.5f);
  EXPECT_EQ(r->user, "u");
  EXPECT_EQ(p.seed, UINT64_MAX - 1);  // -2 keeps its bit pattern (-1 means no seed)
  EXPECT_EQ(p.top_k, 40);
  EXPECT_FLOAT_EQ(p.min_p, 0.05f);
  EXPECT_EQ(p.min_tokens, 4);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_FALSE(r->params.skip_special_tokens);
  EXPECT_EQ(r->cache_salt.value_or(""), "s");
  EXPECT_EQ(r->priority, -3);
}

TEST(OpenAIProtocol, CompletionPromptShapesAndLaxNumbers) {
  auto r = parse_completion_request(R"({"prompt": ["a", "b"], "max_tokens": 8.0, "n": 3, "temperature": 0,
                                        "stop": ["x", "y"], "seed": 42})",
                                    test_limits());
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->prompts.size(), 2u);
  EXPECT_EQ(r->prompts[1].text.value_or(""), "b");
  EXPECT_EQ(r->params.max_tokens, 8);
  EXPECT_EQ(r->params.n, 3);
  EXPECT_TRUE(r->params.greedy());
  EXPECT_EQ(r->params.stop.size(), 2u);
  EXPECT_EQ(r->params.seed, 42u);
  auto ids = parse_completion_request(R"({"prompt": [0, 999], "logprobs": 0})", test_limits());
  ASSERT_TRUE(ids) << ids.error().message;
  EXPECT_EQ(ids->prompts[0].token_ids, (std::vector<int32_t>{0, 999}));
  EXPECT_EQ(ids->params.logprobs, 0);
}

TEST(OpenAIProtocol, ChatEveryField) {
  auto r = parse_chat_request(R"({
      "model": "m",
      "messages": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
                    "name": "bob"},
                   {"role": "assistant", "content": null},
                   {"role": "tool", "content": "42", "tool_call_id": "c1"},
                   {"role": "developer", "content": "d"}],
      "max_tokens": 50, "max_completion_tokens": 20, "logprobs": true, "top_logprobs": 3, "n": 2,
      "stream": true, "stream_options": {"include_usage": true}, "stop": ["END"], "seed": 7, "temperature": 0.7,
      "top_p": 0.8, "top_k": 5, "min_p": 0.1, "presence_penalty": 1, "frequency_penalty": 1, "repetition_penalty": 1.2,
      "logit_bias": {"1": 1}, "stop_token_ids": [5], "min_tokens": 2, "ignore_eos": false,
      "add_generation_prompt": true, "chat_template_kwargs": {"enable_thinking": false},
      "response_format": {"type": "text"}, "tools": [], "tool_choice": "none", "user": "u",
      "parallel_tool_calls": false, "reasoning_effort": "low"
    })", test_limits());
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->messages.size(), 5u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content.value_or(""), "Hi\nthere");
  EXPECT_EQ(r->messages[1].name.value_or(""), "bob");
  EXPECT_FALSE(r->messages[2].content.has_value());
  EXPECT_EQ(r->messages[3].tool_call_id.value_or(""), "c1");
  EXPECT_EQ(to_template_json(r->messages[2]), json({{"role", "assistant"}, {"content", ""}}));  // as vLLM: ""
  const SamplingParams& p = r->params;
  EXPECT_EQ(r->requested_max_tokens, 20);  // max_completion_tokens wins
  EXPECT_EQ(p.max_tokens, 20);
  EXPECT_EQ(p.logprobs, 3);
  EXPECT_EQ(p.top_logprobs, 3);
  EXPECT_EQ(p.n, 2);
  EXPECT_TRUE(r->stream.include_usage);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"END"}));
  EXPECT_EQ(p.seed, 7u);
  EXPECT_FLOAT_EQ(p.temperature, 0.7f);
  EXPECT_FLOAT_EQ(p.top_p, 0.8f);
  EXPECT_EQ(p.top_k, 5);
  EXPECT_FLOAT_EQ(p.min_p, 0.1f);
  EXPECT_FLOAT_EQ(p.repetition_penalty, 1.2f);
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{5}));
  EXPECT_EQ(p.min_tokens, 2);
  EXPECT_EQ(r->chat_template_kwargs, json({{"enable_thinking", false}}));
  EXPECT_TRUE(r->add_generation_prompt);
  EXPECT_FALSE(r->add_special_tokens);
}

TEST(OpenAIProtocol, ChatDefaultsAndMaxTokens) {
  auto r = parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": true})",
                              test_limits());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->requested_max_tokens.has_value());
  EXPECT_EQ(r->params.logprobs, 0);  // logprobs of the sampled token only
  EXPECT_TRUE(r->add_generation_prompt);
  EXPECT_FALSE(r->continue_final_message);
  // (check_request_limits resolves the unset max_tokens: tests/unit/test_request_limits.cpp)
  auto cont = parse_chat_request(R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
      "content": "Once"}], "continue_final_message": true, "add_generation_prompt": false, "max_tokens": 5})",
                                 test_limits());
  ASSERT_TRUE(cont) << cont.error().message;
  EXPECT_EQ(cont->params.max_tokens, 5);
  EXPECT_FALSE(cont->params.logprobs.has_value());
}

TEST(OpenAIProtocol, TokenizeAndDetokenize) {
  auto t = parse_tokenize_request(R"({"model": "m", "prompt": "hi", "return_token_strs": true})", test_limits());
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->prompt.value_or(""), "hi");
  EXPECT_TRUE(t->add_special_tokens);
  EXPECT_TRUE(t->return_token_strs);
  auto tc = parse_tokenize_request(R"({"messages": [{"role": "user", "content": "hi"}]})", test_limits());
  ASSERT_TRUE(tc) << tc.error().message;
  EXPECT_FALSE(tc->prompt.has_value());
  EXPECT_EQ(tc->messages.size(), 1u);
  EXPECT_FALSE(tc->add_special_tokens);  // the chat template adds BOS itself
  auto d = parse_detokenize_request(R"({"tokens": [1, 2, 999]})", test_limits());
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->tokens, (std::vector<int32_t>{1, 2, 999}));
}

TEST(OpenAIProtocol, ErrorObjects) {
  EXPECT_EQ(to_json(model_not_found("x")),
            json::parse(R"({"error": {"message": "The model `x` does not exist.", "type": "invalid_request_error",
                            "param": "model", "code": "model_not_found"}})"));
  EXPECT_EQ(model_not_found("x").status, 404);
  EXPECT_EQ(unauthorized(true).status, 401);
  EXPECT_EQ(unauthorized(true).code.value_or(""), "invalid_api_key");
  EXPECT_NE(unauthorized(false).message.find("didn't provide an API key"), std::string::npos);
  EXPECT_EQ(body_too_large(10).status, 413);
  EXPECT_EQ(overloaded(429, "busy").status, 429);
  EXPECT_EQ(route_not_found("GET", "/v2").status, 404);
  EXPECT_EQ(internal_error("x").status, 500);
  const json j = to_json(invalid_request("bad", std::nullopt));
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_TRUE(j["error"]["code"].is_null());
}

}  // namespace
}  // namespace ember
