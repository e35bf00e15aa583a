// Response builders of the OpenAI protocol layer: exact JSON for completions,
// chat, their stream chunks, SSE framing, logprobs and the small routes.

#include <gtest/gtest.h>

#include "common/version.h"

#include <cmath>
#include <limits>
#include <set>

#include "server/openai_protocol.h"

namespace ember {
namespace {

using nlohmann::json;

const ResponseHeader kHeader{"cmpl-0123", 1700000000, "smol"};

TEST(OpenAIResponse, CompletionExactJson) {
  CompletionChoiceOut c;
  c.index = 1;
  c.text = " world";
  c.finish_reason = FinishReason::kStop;
  c.stop_reason = std::string("\n");
  c.logprobs = std::vector<LogprobEntry>{
      {"Hello", std::nullopt, {}, /*has_top=*/false, 0},
      {" world", -0.5f, {{" world", -0.5f}, {" there", -1.25f}}, true, 5},
  };
  const json got = build_completion(kHeader, {c}, Usage{3, 2, std::nullopt});
  json want = json::parse(R"({
    "id": "cmpl-0123", "object": "text_completion", "created": 1700000000, "model": "smol",
    "choices": [{"index": 1, "text": " world", "finish_reason": "stop", "stop_reason": "\n",
                 "logprobs": {"tokens": ["Hello", " world"], "token_logprobs": [null, -0.5],
                              "top_logprobs": [null, {" world": -0.5, " there": -1.25}], "text_offset": [0, 5]}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "prompt_tokens_details": null}})");
  want["system_fingerprint"] = "fp_ember_" EMBER_VERSION;
  EXPECT_EQ(got, want) << got.dump(2);
}

TEST(OpenAIResponse, CompletionChunksAndUsageChunk) {
  CompletionChoiceOut c;
  c.text = "Hi";
  json chunk = build_completion_chunk(kHeader, {c});
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_FALSE(chunk.contains("usage"));
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(chunk["choices"][0]["logprobs"].is_null());
  EXPECT_TRUE(chunk["choices"][0]["stop_reason"].is_null());
  c.finish_reason = FinishReason::kLength;
  c.text = "";
  chunk = build_completion_chunk(kHeader, {c});
  EXPECT_EQ(chunk["choices"][0]["finish_reason"], "length");
  const json usage = build_completion_chunk(kHeader, {}, Usage{4, 6, 2});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 10);
  EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

TEST(OpenAIResponse, ChatCompletionExactJson) {
  ChatChoiceOut c;
  c.content = "Paris.";
  c.finish_reason = FinishReason::kStop;
  c.stop_reason = int32_t{2};
  c.logprobs = std::vector<LogprobEntry>{{"Paris", -0.25f, {{"Paris", -0.25f}, {"Lyon", -3.0f}}, true, 0}};
  const json got = build_chat_completion({"chatcmpl-9", 5, "m"}, {c}, Usage{10, 1, std::nullopt});
  json want = json::parse(R"({
    "id": "chatcmpl-9", "object": "chat.completion", "created": 5, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                 "logprobs": {"content": [{"token": "Paris", "logprob": -0.25, "bytes": [80, 97, 114, 105, 115],
                              "top_logprobs": [{"token": "Paris", "logprob": -0.25, "bytes": [80, 97, 114, 105, 115]},
                                               {"token": "Lyon", "logprob": -3.0, "bytes": [76, 121, 111, 110]}]}]},
                 "finish_reason": "stop", "stop_reason": 2}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11, "prompt_tokens_details": null}})");
  want["system_fingerprint"] = "fp_ember_" EMBER_VERSION;
  EXPECT_EQ(got, want) << got.dump(2);
}

TEST(OpenAIResponse, ChatChunkDeltas) {
  ChatChoiceOut first;
  first.role = "assistant";
  first.content = "";
  json j = build_chat_chunk(kHeader, {first});
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  ChatChoiceOut last;
  last.finish_reason = FinishReason::kLength;
  j = build_chat_chunk(kHeader, {last});
  EXPECT_EQ(j["choices"][0]["delta"], json::object());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  j = build_chat_chunk(kHeader, {}, Usage{1, 2, std::nullopt});
  EXPECT_TRUE(j["choices"].empty());
  EXPECT_EQ(j["usage"]["completion_tokens"], 2);
}

TEST(OpenAIResponse, NonFiniteLogprobsAndBadUtf8) {
  CompletionChoiceOut c;
  c.text = "a\xff";
  c.logprobs = std::vector<LogprobEntry>{
      {"\xe6\x97", -std::numeric_limits<float>::infinity(), {{"x", std::nanf("")}}, true, 0}};
  const json j = build_completion(kHeader, {c}, Usage{});
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["token_logprobs"][0], -9999.0);
  EXPECT_EQ(lp["top_logprobs"][0]["x"], -9999.0);
  EXPECT_EQ(lp["tokens"][0], "\xef\xbf\xbd");  // a cut UTF-8 character: one U+FFFD
  EXPECT_EQ(j["choices"][0]["text"], "a\xef\xbf\xbd");
  ChatChoiceOut cc;
  cc.content = "";
  cc.logprobs = std::vector<LogprobEntry>{{"\xe6\x97", -1.0f, {}, true, 0}};
  const json chat = build_chat_completion(kHeader, {cc}, Usage{});
  EXPECT_EQ(chat["choices"][0]["logprobs"]["content"][0]["bytes"], json({0xe6, 0x97}));  // raw bytes kept
}

TEST(OpenAIResponse, SanitizeUtf8MatchesPythonReplace) {
  // Expected values are Python's bytes.decode("utf-8", "replace").
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(sanitize_utf8("plain"), "plain");
  EXPECT_EQ(sanitize_utf8("\xe6\x97\xa5\xe6\x9c\xac"), "\xe6\x97\xa5\xe6\x9c\xac");
  EXPECT_EQ(sanitize_utf8("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(sanitize_utf8("\xc0\xaf"), r + r);           // overlong: two bad bytes
  EXPECT_EQ(sanitize_utf8("\xed\xa0\x80"), r + r + r);   // surrogate
  EXPECT_EQ(sanitize_utf8("\xf0\x9f\x98"), r);           // truncated 4-byte: one maximal subpart
  EXPECT_EQ(sanitize_utf8("\xe6\x97x"), r + "x");
  EXPECT_EQ(sanitize_utf8("\xf5\x80"), r + r);
  EXPECT_EQ(sanitize_utf8("\x80"), r);
}

TEST(OpenAIResponse, SseFraming) {
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(std::string(kSseDone), "data: [DONE]\n\n");
  EXPECT_EQ(dump_body(json{{"t", std::string("\xff")}}), "{\"t\":\"\xef\xbf\xbd\"}");  // no throw on bad UTF-8
}

TEST(OpenAIResponse, IdsAreUniqueHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    const std::string id = make_response_id("chatcmpl");
    ASSERT_EQ(id.size(), std::string("chatcmpl-").size() + 32);
    EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 9), std::string::npos);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 100u);
  EXPECT_GT(unix_now(), 1700000000);
}

TEST(OpenAIResponse, SmallRoutes) {
  const json models = build_model_list({{"smol", 7, "/models/smol.gguf", 2048}});
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "smol");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(models["data"][0]["owned_by"], "ember");
  EXPECT_EQ(models["data"][0]["max_model_len"], 2048);
  EXPECT_EQ(build_tokenize_response({1, 2}, 2048, std::nullopt),
            json::parse(R"({"count": 2, "max_model_len": 2048, "tokens": [1, 2], "token_strs": null})"));
  EXPECT_EQ(build_tokenize_response({1}, 8, std::vector<std::string>{"a"})["token_strs"], json({"a"}));
  EXPECT_EQ(build_detokenize_response("hi"), json({{"prompt", "hi"}}));
  EXPECT_TRUE(build_version_response()["version"].is_string());
  EXPECT_EQ(to_json(FinishReason::kAbort), "abort");
  EXPECT_TRUE(to_json(FinishReason::kNone).is_null());
}

}  // namespace
}  // namespace ember
