// check_request_limits: the one length check every front end runs before
// Engine::add (which asserts it again). The max_tokens cases moved here from
// the server's protocol tests with the function (their assertions unchanged).
#include <gtest/gtest.h>

#include <climits>
#include <vector>

#include "engine/request_limits.h"

namespace ember {
namespace {

RequestLimits limits(int64_t max_model_len, int32_t vocab = 1000) {
  RequestLimits l;
  l.vocab_size = vocab;
  l.max_model_len = max_model_len;
  l.block_size = 16;
  l.num_blocks = (max_model_len + 15) / 16;
  l.max_num_batched_tokens = 512;
  return l;
}

std::optional<LimitViolation> check(int32_t prompt_len, std::optional<int32_t> max_tokens, const RequestLimits& l,
                                    int32_t& out) {
  return check_request_limits(std::vector<int32_t>(static_cast<size_t>(prompt_len), 1), max_tokens, l, out);
}

TEST(RequestLimits, ResolveMaxTokens) {
  int32_t out = 0;
  EXPECT_FALSE(check(10, 16, limits(32), out));
  EXPECT_EQ(out, 16);
  auto over = check(20, 16, limits(32), out);
  ASSERT_TRUE(over);
  EXPECT_EQ(over->param, "max_tokens");
  EXPECT_NE(over->message.find("maximum context length is 32 tokens"), std::string::npos);
  EXPECT_NE(over->message.find("36 tokens (20 in the prompt, 16 in the completion)"), std::string::npos);
  // A prompt that alone fills the context is the prompt's fault; a conversation's, the messages'.
  auto long_prompt = check(40, 4, limits(32), out);
  ASSERT_TRUE(long_prompt);
  EXPECT_EQ(long_prompt->param, "prompt");
  auto long_chat = check_request_limits(std::vector<int32_t>(40, 1), std::nullopt, limits(32), out,
                                        PromptKind::kConversation);
  ASSERT_TRUE(long_chat);
  EXPECT_EQ(long_chat->param, "messages");
  EXPECT_NE(long_chat->message.find("reduce the length of the messages"), std::string::npos);
  EXPECT_TRUE(check(32, std::nullopt, limits(32), out));
  EXPECT_FALSE(check(31, std::nullopt, limits(32), out));
  EXPECT_EQ(out, 1);
  EXPECT_FALSE(check(48, std::nullopt, limits(2048), out));  // a chat request without max_tokens
  EXPECT_EQ(out, 2000);
  RequestLimits huge = limits(INT32_MAX);
  EXPECT_TRUE(check(3, INT32_MAX, huge, out));  // no int32 overflow
}

TEST(RequestLimits, PromptVocabularyPoolAndBudget) {
  int32_t out = 0;
  RequestLimits l = limits(256, 100);
  auto empty = check_request_limits({}, 4, l, out, PromptKind::kConversation);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->param, "messages");
  EXPECT_EQ(empty->message, "the rendered conversation is empty");
  EXPECT_EQ(check_request_limits({}, 4, l, out)->message, "the prompt is empty");
  EXPECT_EQ(check(3, 0, l, out)->param, "max_tokens");  // callers that skip SamplingParams::validate
  const std::vector<int32_t> bad = {5, 100};
  auto vocab = check_request_limits(bad, 4, l, out);
  ASSERT_TRUE(vocab);
  EXPECT_EQ(vocab->param, "");  // null in the HTTP error, as before
  EXPECT_NE(vocab->message.find("out of vocabulary [0, 100)"), std::string::npos);
  const std::vector<int32_t> negative = {-1};
  EXPECT_TRUE(check_request_limits(negative, 4, l, out));
  l.num_blocks = 2;  // 32 tokens
  auto pool = check(20, 13, l, out);
  ASSERT_TRUE(pool);
  EXPECT_NE(pool->message.find("needs 3 KV blocks but the cache has only 2"), std::string::npos);
  EXPECT_FALSE(check(20, 12, l, out));
  l.num_blocks = 64;
  l.enable_chunked_prefill = false;
  l.max_num_batched_tokens = 8;
  auto budget = check(9, 1, l, out);
  ASSERT_TRUE(budget);
  EXPECT_NE(budget->message.find("--max-num-batched-tokens (8)"), std::string::npos);
  l.enable_chunked_prefill = true;
  EXPECT_FALSE(check(9, 1, l, out));
}

}  // namespace
}  // namespace ember
