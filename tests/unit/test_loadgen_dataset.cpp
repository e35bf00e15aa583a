// Datasets of `ember bench`: exact prompt lengths through a tokenizer that
// merges tokens (so decode-then-encode does not round-trip), the range ratio,
// shared prefixes, ShareGPT filtering and JSONL errors.

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>

#include "loadgen/dataset.h"

namespace ember {
namespace {

// Tokens: 0 = "a", 1 = "b", 2 = "ab". Encoding is greedy, so "a" followed by
// "b" merges into one token: random ids shrink when re-encoded.
class MergingCounter final : public TokenCounter {
 public:
  Result<std::vector<int32_t>> encode(const std::string& text) override {
    ++calls;
    std::vector<int32_t> ids;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == 'a' && i + 1 < text.size() && text[i + 1] == 'b') {
        ids.push_back(2);
        ++i;
      } else {
        ids.push_back(text[i] == 'a' ? 0 : 1);
      }
    }
    return ids;
  }
  Result<std::string> decode(const std::vector<int32_t>& ids) override {
    std::string s;
    for (int32_t id : ids) s += id == 0 ? "a" : id == 1 ? "b" : "ab";
    return s;
  }
  const std::vector<int32_t>& id_pool() override { return pool_; }
  int calls = 0;

 private:
  std::vector<int32_t> pool_ = {0, 1};
};

TEST(LoadgenDataset, RandomPromptsHaveExactTokenCounts) {
  MergingCounter c;
  DatasetOptions o;
  o.num_prompts = 20;
  o.input_len = 50;
  o.output_len = 7;
  auto d = build_dataset(o, c);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->size(), 20u);
  std::set<std::string> distinct;
  for (const BenchRequest& r : *d) {
    EXPECT_EQ(r.prompt_len, 50);
    EXPECT_EQ(static_cast<int64_t>(c.encode(r.prompt)->size()), 50) << r.prompt;
    EXPECT_EQ(r.max_tokens, 7);
    distinct.insert(r.prompt);
  }
  EXPECT_EQ(distinct.size(), 20u);
}

TEST(LoadgenDataset, RangeRatioSpreadsLengthsWithinBounds) {
  MergingCounter c;
  DatasetOptions o;
  o.num_prompts = 200;
  o.input_len = 40;
  o.output_len = 100;
  o.range_ratio = 0.5;
  auto d = build_dataset(o, c);
  ASSERT_TRUE(d.ok()) << d.error().message;
  std::set<int64_t> in_lens, out_lens;
  for (const BenchRequest& r : *d) {
    EXPECT_GE(r.prompt_len, 20);
    EXPECT_LE(r.prompt_len, 60);
    EXPECT_EQ(static_cast<int64_t>(c.encode(r.prompt)->size()), r.prompt_len);
    EXPECT_GE(r.max_tokens, 50);
    EXPECT_LE(r.max_tokens, 150);
    in_lens.insert(r.prompt_len);
    out_lens.insert(r.max_tokens);
  }
  EXPECT_GT(in_lens.size(), 20u);
  EXPECT_GT(out_lens.size(), 50u);
  o.range_ratio = 1.0;
  EXPECT_FALSE(build_dataset(o, c).ok());
}

TEST(LoadgenDataset, TheSeedFixesThePrompts) {
  MergingCounter c;
  DatasetOptions o;
  o.num_prompts = 5;
  o.input_len = 30;
  auto a = build_dataset(o, c), b = build_dataset(o, c);
  o.seed = 1;
  auto other = build_dataset(o, c);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  EXPECT_EQ((*a)[3].prompt, (*b)[3].prompt);
  EXPECT_NE((*a)[3].prompt, (*other)[3].prompt);
}

TEST(LoadgenDataset, PrefixGroupsSharePrefixes) {
  MergingCounter c;
  DatasetOptions o;
  o.name = "prefix";
  o.num_prompts = 12;
  o.prefix_len = 64;
  o.input_len = 16;
  o.num_prefix_groups = 3;
  auto d = build_dataset(o, c);
  ASSERT_TRUE(d.ok()) << d.error().message;
  std::set<std::string> prefixes;
  for (const BenchRequest& r : *d) {
    EXPECT_EQ(r.prompt_len, 64 + 16);
    EXPECT_EQ(static_cast<int64_t>(c.encode(r.prompt)->size()), r.prompt_len);
    prefixes.insert(r.prompt.substr(0, 50));
  }
  EXPECT_EQ(prefixes.size(), 3u);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(LoadgenDataset, ShareGptTakesFirstTurnsAndSkipsShortOnes) {
  MergingCounter c;
  const std::string path = write_temp("sharegpt.json", R"([
    {"conversations": [{"from": "human", "value": "aaaaaa"}, {"from": "gpt", "value": "bbbbbbbb"}]},
    {"conversations": [{"from": "human", "value": "ab"}, {"from": "gpt", "value": "bbbbbbbb"}]},
    {"conversations": [{"from": "human", "value": "only one turn"}]},
    {"conversations": [{"from": "human", "value": "bbbbb"}, {"from": "gpt", "value": "abababab"}]},
    "not an object"
  ])");
  DatasetOptions o;
  o.name = "sharegpt";
  o.path = path;
  o.num_prompts = 2;
  o.output_len = 0;
  auto d = build_dataset(o, c);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->size(), 2u);
  for (const BenchRequest& r : *d) {
    if (r.prompt == "aaaaaa") {
      EXPECT_EQ(r.prompt_len, 6);
      EXPECT_EQ(r.max_tokens, 8);
    } else {
      EXPECT_EQ(r.prompt, "bbbbb");
      EXPECT_EQ(r.max_tokens, 4);  // "abababab" is 4 merged tokens
    }
  }
  o.num_prompts = 3;  // only two pairs survive the length filter
  auto too_many = build_dataset(o, c);
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.error().message.find("only 2 usable"), std::string::npos);
  o.path = write_temp("bad.json", "{\"not\": \"an array\"}");
  EXPECT_FALSE(build_dataset(o, c).ok());
}

TEST(LoadgenDataset, JsonlPromptsCycleAndErrorsNameTheLine) {
  MergingCounter c;
  DatasetOptions o;
  o.name = "jsonl";
  o.path = write_temp("p.jsonl", "{\"prompt\": \"abab\", \"max_tokens\": 3}\n\n{\"prompt\": \"aaa\"}\n");
  o.num_prompts = 5;
  o.output_len = 9;
  auto d = build_dataset(o, c);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->size(), 5u);
  EXPECT_EQ((*d)[0].prompt_len, 2);
  EXPECT_EQ((*d)[0].max_tokens, 3);
  EXPECT_EQ((*d)[1].max_tokens, 9);
  EXPECT_EQ((*d)[4].prompt, "abab");
  EXPECT_EQ((*d)[4].index, 4);
  o.path = write_temp("bad.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": 5}\n");
  auto bad = build_dataset(o, c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("bad.jsonl:2"), std::string::npos) << bad.error().message;
  o.path = write_temp("neg.jsonl", "{\"prompt\": \"a\", \"max_tokens\": -1}\n");
  EXPECT_FALSE(build_dataset(o, c).ok());
  o.path = "/nonexistent/file.jsonl";
  EXPECT_FALSE(build_dataset(o, c).ok());
  o.name = "nope";
  EXPECT_FALSE(build_dataset(o, c).ok());
}

}  // namespace
}  // namespace ember
