// The runner's one API on the CPU (tiny_llama.gguf, random weights): a chunk
// with num_logits = k yields the logits of its last k positions, equal to
// feeding those positions one step at a time (what verifying k proposed
// tokens needs); launch() with a prev_row input reads the newest launch's
// token, as the GPU runner does on the device; rows are sampled in order.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/model_runner.h"
#include "models/formats/gguf.h"
#include "models/model_config.h"
#include "models/weights.h"
#include "tests/engine_test_util.h"

namespace ember {
namespace {

class ModelRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelConfig config;
    ASSERT_NO_FATAL_FAILURE(test_util::load_tiny_llama(config, weights_));
  }
  std::unique_ptr<CpuModelRunner> runner() { return std::make_unique<CpuModelRunner>(weights_, 2, 16, 4, std::vector<int32_t>{}); }

  LlamaWeights weights_;
  const std::vector<int32_t> tokens_ = {1, 17, 12, 5, 29, 23, 8, 30, 3, 11};  // (the vocabulary has 32 ids)
  const std::vector<int32_t> blocks_ = {0, 1, 2};
};

TEST_F(ModelRunnerTest, SeveralLogitsRowsEqualOneStepAtATime) {
  auto a = runner();
  std::vector<float> chunked;
  // Positions 0..9 in one chunk; the last 4 positions give rows.
  const StepSequence all{tokens_, 0, 10, blocks_, 4};
  a->forward_logits({&all, 1}, chunked);
  const size_t v = static_cast<size_t>(a->vocab_size());
  ASSERT_EQ(chunked.size(), 4 * v);

  auto b = runner();
  std::vector<float> row, stepped;
  const StepSequence prefix{tokens_, 0, 7, blocks_, 1};
  b->forward_logits({&prefix, 1}, row);
  stepped = row;
  for (int64_t pos = 7; pos < 10; ++pos) {
    const StepSequence one{tokens_, pos, 1, blocks_, 1};
    b->forward_logits({&one, 1}, row);
    stepped.insert(stepped.end(), row.begin(), row.end());
  }
  ASSERT_EQ(stepped.size(), chunked.size());
  float worst = 0;
  for (size_t i = 0; i < chunked.size(); ++i) worst = std::max(worst, std::fabs(chunked[i] - stepped[i]));
  EXPECT_LT(worst, 1e-4f);
}

TEST_F(ModelRunnerTest, LaunchReadsPrevRowFromTheNewestLaunch) {
  SamplingParams greedy;
  greedy.temperature = 0;
  RequestGenerator gen;
  const std::vector<int32_t> prompt(tokens_.begin(), tokens_.begin() + 6);

  // Synchronous: collect, append, then the next step.
  auto sync = runner();
  std::vector<int32_t> known = prompt;
  std::vector<SampledToken> out;
  for (int step = 0; step < 3; ++step) {
    const int64_t start = step == 0 ? 0 : static_cast<int64_t>(known.size()) - 1;
    const StepSequence s{known, start, static_cast<int32_t>(known.size() - start), blocks_, 1};
    const SamplerRow r{{}, std::span<const int32_t>(known).first(prompt.size()), {}, &greedy, &gen};
    sync->launch({&s, 1}, {&r, 1});
    sync->collect(out);
    ASSERT_EQ(out.size(), 1u);
    known.push_back(out[0].token);
  }

  // Pipelined: each step launched before the previous one is collected, its
  // input token named by prev_row.
  auto async = runner();
  std::vector<int32_t> host = prompt;
  const StepSequence first{host, 0, 6, blocks_, 1};
  const SamplerRow r0{{}, std::span<const int32_t>(host).first(6), {}, &greedy, &gen};
  async->launch({&first, 1}, {&r0, 1});
  for (int step = 1; step < 3; ++step) {
    StepSequence next{host, static_cast<int64_t>(host.size()), 1, blocks_, 1};
    next.prev_row = 0;
    const SamplerRow r{{}, std::span<const int32_t>(host).first(6), {}, &greedy, &gen};
    async->launch({&next, 1}, {&r, 1});
    async->collect(out);  // the previous step's token
    host.push_back(out[0].token);
  }
  async->collect(out);
  host.push_back(out[0].token);
  EXPECT_EQ(host, known);
}

TEST_F(ModelRunnerTest, RowsFollowSequencesInOrder) {
  auto r = runner();
  SamplingParams greedy;
  greedy.temperature = 0;
  RequestGenerator gen;
  const std::vector<int32_t> b0 = {0, 1}, b1 = {2, 3}, b2 = {4, 5};
  const std::vector<int32_t> x(tokens_.begin(), tokens_.begin() + 5), y(tokens_.begin() + 3, tokens_.end());
  const std::vector<StepSequence> seqs = {{x, 0, 5, b0, 2}, {y, 0, 7, b1, 0}, {y, 0, 7, b2, 1}};
  std::vector<float> logits;
  r->forward_logits(seqs, logits);
  const size_t v = static_cast<size_t>(r->vocab_size());
  ASSERT_EQ(logits.size(), 3 * v);
  std::vector<SamplerRow> rows(3, SamplerRow{{}, {}, {}, &greedy, &gen});
  auto fresh = runner();
  fresh->launch(seqs, rows);
  std::vector<SampledToken> out;
  fresh->collect(out);
  ASSERT_EQ(out.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const float* row = logits.data() + i * v;
    int32_t best = 0;
    for (size_t t = 1; t < v; ++t)
      if (row[t] > row[best]) best = static_cast<int32_t>(t);
    EXPECT_EQ(out[i].token, best) << "row " << i;
  }
}

}  // namespace
}  // namespace ember
