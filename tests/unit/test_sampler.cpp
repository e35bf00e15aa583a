// Sampler: each parameter changes the outcome on logits built for it; the
// generator is reproducible and batch-independent; temperature sampling
// matches softmax(logits / T) by a chi-square test.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "engine/sampler.h"

namespace ember {
namespace {

constexpr int32_t kEos = 3;

struct Fixture {
  explicit Fixture(std::vector<float> l) : logits(std::move(l)) {}

  std::vector<float> logits;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  SamplingParams params;
  RequestGenerator gen{.seed = 1234, .stream = 0, .step = 0};

  SamplerRow row() { return {logits, prompt, output, &params, &gen}; }
};

int32_t greedy_token(Fixture& f) {
  f.params.temperature = 0.0f;
  Sampler s({kEos});
  return s.sample(f.row()).token;
}

std::vector<int32_t> histogram(Fixture& f, int draws) {
  Sampler s({kEos});
  std::vector<int32_t> h(f.logits.size(), 0);
  for (int i = 0; i < draws; ++i) ++h[s.sample(f.row()).token];
  return h;
}

std::set<int32_t> drawn(Fixture& f, int draws) {
  std::set<int32_t> out;
  std::vector<int32_t> h = histogram(f, draws);
  for (size_t i = 0; i < h.size(); ++i)
    if (h[i] > 0) out.insert(static_cast<int32_t>(i));
  return out;
}

// Logits whose softmax is exactly `probs`.
std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

TEST(Philox, KnownAnswers) {
  // Random123's published known-answer vectors for philox4x32-10.
  EXPECT_EQ(Philox4x32::apply({0, 0, 0, 0}, {0, 0}),
            (Philox4x32::Counter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(Philox4x32::apply({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}),
            (Philox4x32::Counter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
}

TEST(RequestGenerator, DependsOnlyOnSeedStreamAndStep) {
  RequestGenerator a{.seed = 7, .stream = 0, .step = 0};
  std::vector<double> first;
  for (int i = 0; i < 10; ++i) first.push_back(a.next_uniform());
  RequestGenerator b{.seed = 7, .stream = 0, .step = 5};  // jump straight to step 5
  EXPECT_EQ(b.next_uniform(), first[5]);
  RequestGenerator c{.seed = 8, .stream = 0, .step = 0};
  RequestGenerator d{.seed = 7, .stream = 1, .step = 0};
  EXPECT_NE(c.next_uniform(), first[0]);
  EXPECT_NE(d.next_uniform(), first[0]);
  double sum = 0.0;
  for (int i = 0; i < 10000; ++i) {
    const double u = a.next_uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
}

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  Fixture f({0.5f, 2.0f, -1.0f, 2.0f, 2.0f});
  EXPECT_EQ(greedy_token(f), 1);
  f.logits = {-3.0f, -1.0f, -2.0f};
  EXPECT_EQ(greedy_token(f), 1);
}

TEST(Sampler, GreedyDoesNotConsumeRandomness) {
  Fixture f({0.0f, 1.0f});
  greedy_token(f);
  EXPECT_EQ(f.gen.step, 0u);
}

TEST(Sampler, LogitBias) {
  Fixture f({3.0f, 2.0f, 1.0f});
  EXPECT_EQ(greedy_token(f), 0);
  f.params.logit_bias = {{2, 2.5f}};
  EXPECT_EQ(greedy_token(f), 2);
  f.params.logit_bias = {{0, -100.0f}};
  EXPECT_EQ(greedy_token(f), 1);
}

TEST(Sampler, MinTokensMasksEosAndStopIdsUntilReached) {
  Fixture f({0.0f, 1.0f, 2.0f, 5.0f, 0.5f});  // EOS (3) is best, then stop id 2
  f.params.stop_token_ids = {2};
  f.params.min_tokens = 2;
  f.output = {4};
  EXPECT_EQ(greedy_token(f), 1);
  f.output = {4, 4};  // reached: nothing masked
  EXPECT_EQ(greedy_token(f), kEos);
  f.params.min_tokens = 0;
  f.output = {};
  EXPECT_EQ(greedy_token(f), kEos);
}

TEST(Sampler, IgnoreEosLeavesEosUnmaskedUnderMinTokens) {
  // With ignore_eos, EOS does not end the sequence, so min_tokens has no reason to mask it.
  Fixture f({0.0f, 1.0f, 2.0f, 5.0f});
  f.params.min_tokens = 3;
  EXPECT_EQ(greedy_token(f), 2);
  f.params.ignore_eos = true;
  EXPECT_EQ(greedy_token(f), kEos);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  Fixture f({2.0f, 1.5f, -3.0f});
  f.prompt = {0, 0, 0};  // seen in the prompt: 2.0 / 2 = 1.0 < 1.5 (once, not three times)
  f.params.repetition_penalty = 2.0f;
  EXPECT_EQ(greedy_token(f), 1);
  f.params.repetition_penalty = 1.2f;  // 2.0 / 1.2 = 1.67 > 1.5: applied once per id
  EXPECT_EQ(greedy_token(f), 0);

  Fixture g({-1.0f, -1.5f});
  g.output = {0};  // seen in the output: -1 * 2 = -2 < -1.5
  g.params.repetition_penalty = 2.0f;
  EXPECT_EQ(greedy_token(g), 1);
}

TEST(Sampler, PresencePenaltyOnOutputOnly) {
  Fixture f({1.0f, 0.5f});
  f.prompt = {0};
  f.params.presence_penalty = 0.6f;
  EXPECT_EQ(greedy_token(f), 0);  // the prompt does not count
  f.output = {0, 0, 0};
  EXPECT_EQ(greedy_token(f), 1);  // 1.0 - 0.6 = 0.4, independent of the count
  f.params.presence_penalty = 0.4f;
  EXPECT_EQ(greedy_token(f), 0);  // 0.6 > 0.5: not multiplied by the count
}

TEST(Sampler, FrequencyPenaltyScalesWithCount) {
  Fixture f({1.0f, 0.5f});
  f.params.frequency_penalty = 0.3f;
  f.output = {0};
  EXPECT_EQ(greedy_token(f), 0);  // 0.7
  f.output = {0, 0};
  EXPECT_EQ(greedy_token(f), 1);  // 0.4
  f.params.frequency_penalty = -0.5f;  // negative encourages repetition
  f.logits = {0.0f, 0.5f};
  EXPECT_EQ(greedy_token(f), 0);
}

// Chi-square critical value for 7 degrees of freedom at p = 0.001.
constexpr double kChi2Crit7 = 24.322;

double chi_square(const std::vector<int32_t>& h, const std::vector<double>& expected_p, int draws) {
  double chi2 = 0.0;
  for (size_t i = 0; i < h.size(); ++i) {
    const double e = expected_p[i] * draws;
    chi2 += (h[i] - e) * (h[i] - e) / e;
  }
  return chi2;
}

std::vector<double> softmax(const std::vector<float>& l, double t) {
  std::vector<double> p;
  double sum = 0.0;
  for (float x : l) sum += std::exp(x / t);
  for (float x : l) p.push_back(std::exp(x / t) / sum);
  return p;
}

TEST(Sampler, TemperatureFrequenciesMatchSoftmax) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 1.5f, 0.0f, -1.0f, 0.8f, 0.3f};
  for (double t : {0.7, 1.0, 1.8}) {
    Fixture f(logits);
    f.params.temperature = static_cast<float>(t);
    f.gen.seed = 20240601;
    const int draws = 20000;
    std::vector<int32_t> h = histogram(f, draws);
    EXPECT_LT(chi_square(h, softmax(logits, t), draws), kChi2Crit7) << "T=" << t;
    // The test has power: the same draws are far from softmax at another temperature.
    EXPECT_GT(chi_square(h, softmax(logits, t * 1.5), draws), 10 * kChi2Crit7) << "T=" << t;
  }
}

TEST(Sampler, TopKOnlyProducesTheKBest) {
  Fixture f({0.1f, 1.0f, 0.3f, 0.9f, 0.0f});
  f.params.top_k = 2;
  EXPECT_EQ(drawn(f, 2000), (std::set<int32_t>{1, 3}));
  f.params.top_k = 0;  // off
  EXPECT_EQ(drawn(f, 2000).size(), 5u);
}

TEST(Sampler, TopPOnlyProducesTheNucleus) {
  Fixture f(logits_for({0.05, 0.5, 0.15, 0.3}));
  f.params.top_p = 0.75f;  // 0.5 + 0.3 reaches it
  EXPECT_EQ(drawn(f, 2000), (std::set<int32_t>{1, 3}));
  f.params.top_p = 0.4f;  // the best token alone
  EXPECT_EQ(drawn(f, 500), (std::set<int32_t>{1}));
  f.params.top_p = 0.9f;
  EXPECT_EQ(drawn(f, 2000), (std::set<int32_t>{1, 2, 3}));
}

TEST(Sampler, MinPOnlyProducesTokensAboveTheFloor) {
  Fixture f(logits_for({0.05, 0.5, 0.15, 0.3}));
  f.params.min_p = 0.2f;  // floor 0.1
  EXPECT_EQ(drawn(f, 2000), (std::set<int32_t>{1, 2, 3}));
  f.params.min_p = 0.5f;  // floor 0.25
  EXPECT_EQ(drawn(f, 2000), (std::set<int32_t>{1, 3}));
}

TEST(Sampler, FiltersCombineAndKeptMassIsRenormalised) {
  Fixture f(logits_for({0.1, 0.4, 0.2, 0.3}));
  f.params.top_k = 3;    // drops 0
  f.params.top_p = 0.6f; // of the renormalised {0.44, 0.22, 0.33}: 1 and 3
  const int draws = 20000;
  std::vector<int32_t> h = histogram(f, draws);
  EXPECT_EQ(h[0] + h[2], 0);
  EXPECT_NEAR(static_cast<double>(h[1]) / draws, 0.4 / 0.7, 0.015);
}

TEST(Sampler, SeededSamplingIsReproducibleAndBatchIndependent) {
  const std::vector<float> logits = {0.3f, 0.1f, 0.2f, 0.0f, 0.25f, 0.15f};
  auto run_alone = [&](uint64_t seed) {
    Fixture f(logits);
    f.gen.seed = seed;
    Sampler s({kEos});
    std::vector<int32_t> toks;
    for (int i = 0; i < 64; ++i) toks.push_back(s.sample(f.row()).token);
    return toks;
  };
  const std::vector<int32_t> alone = run_alone(42);
  EXPECT_EQ(run_alone(42), alone);
  EXPECT_NE(run_alone(43), alone);

  // The same request inside batches of changing size and position.
  SamplingParams p;
  RequestGenerator mine{.seed = 42, .stream = 0, .step = 0};
  std::vector<RequestGenerator> others(5);
  for (size_t i = 0; i < others.size(); ++i) others[i].seed = 1000 + i;
  Sampler s({kEos});
  std::vector<int32_t> batched;
  for (int step = 0; step < 64; ++step) {
    std::vector<SamplerRow> rows;
    const int before = step % 3, after = step % 4;
    for (int i = 0; i < before; ++i) rows.push_back({logits, {}, {}, &p, &others[i]});
    rows.push_back({logits, {}, {}, &p, &mine});
    for (int i = 0; i < after; ++i) rows.push_back({logits, {}, {}, &p, &others[before + i]});
    batched.push_back(s.sample(rows)[before].token);
  }
  EXPECT_EQ(batched, alone);
}

TEST(Sampler, StreamsOfOneRequestDiffer) {
  // n > 1: each sequence of a request draws from its own stream of the seed.
  const std::vector<float> logits(16, 0.0f);
  SamplingParams p;
  RequestGenerator a{.seed = 9, .stream = 0, .step = 0}, b{.seed = 9, .stream = 1, .step = 0};
  Sampler s;
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 32; ++i) {
    ta.push_back(s.sample({logits, {}, {}, &p, &a}).token);
    tb.push_back(s.sample({logits, {}, {}, &p, &b}).token);
  }
  EXPECT_NE(ta, tb);
}

TEST(Sampler, LogprobsAreRawLogSoftmaxWithTopList) {
  Fixture f({1.0f, 3.0f, 2.0f, 3.0f, -1.0f});
  f.params.temperature = 0.0f;
  f.params.logit_bias = {{0, 10.0f}};  // changes the choice, not the reported logprobs
  f.params.logprobs = 3;
  Sampler s({kEos});
  SampledToken t = s.sample(f.row());
  double sum = 0.0;
  for (float x : f.logits) sum += std::exp(x);
  auto lp = [&](int id) { return static_cast<float>(f.logits[id] - std::log(sum)); };
  EXPECT_EQ(t.token, 0);
  EXPECT_NEAR(t.logprob, lp(0), 1e-5);
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].token, 1);  // tie with 3: lower id first
  EXPECT_EQ(t.top[1].token, 3);
  EXPECT_EQ(t.top[2].token, 2);
  EXPECT_NEAR(t.top[0].logprob, lp(1), 1e-5);
  EXPECT_NEAR(t.top[2].logprob, lp(2), 1e-5);

  f.params.logprobs = 0;  // the sampled token's logprob only
  t = s.sample(f.row());
  EXPECT_TRUE(t.top.empty());
  EXPECT_NEAR(t.logprob, lp(0), 1e-5);
}

}  // namespace
}  // namespace ember
