// Speculative decoding (engine/spec_decode) on the CPU: the config parser, the
// n-gram proposer, the sampler's verification rule (its output follows the
// target distribution exactly: chi-square against p, and a rule that accepts
// every draft fails the same test), and the engine end to end on
// tiny_llama.gguf: greedy outputs identical with and without speculation under
// batching, chunked prefill, prefix caching, preemption, stops and n > 1;
// sampled outputs with the same distribution.
#include <gtest/gtest.h>

#include "engine/structured/grammar_matcher.h"

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/spec_decode/ngram_proposer.h"
#include "engine/spec_decode/spec_config.h"
#include "models/formats/gguf.h"
#include "models/model_config.h"
#include "models/weights.h"
#include "tests/engine_test_util.h"

namespace ember {
namespace {

using test_util::collect;
using test_util::Outcome;

TEST(SpecConfig, ParsesVllmsJsonAndTheShorthands) {
  auto ngram = parse_speculative_config(
      R"({"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2, "prompt_lookup_max": 5})", "", 0);
  ASSERT_TRUE(ngram.ok()) << ngram.error().message;
  EXPECT_EQ(ngram->method, SpeculativeConfig::Method::kNgram);
  EXPECT_EQ(ngram->num_speculative_tokens, 4);
  EXPECT_EQ(ngram->prompt_lookup_min, 2);
  EXPECT_EQ(ngram->prompt_lookup_max, 5);
  auto draft = parse_speculative_config("", "draft.gguf", 3);
  ASSERT_TRUE(draft.ok());
  EXPECT_EQ(draft->method, SpeculativeConfig::Method::kDraftModel);
  EXPECT_EQ(draft->model, "draft.gguf");
  EXPECT_EQ(draft->num_speculative_tokens, 3);
  auto limited = parse_speculative_config(R"({"method": "ngram", "num_speculative_tokens": 2, "disable_by_batch_size": 4})",
                                         "", 0);
  ASSERT_TRUE(limited.ok()) << limited.error().message;
  EXPECT_EQ(limited->disable_by_batch_size, 4);
  auto off = parse_speculative_config("", "", 0);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->enabled());
}

TEST(SpecConfig, BadConfigsAreClearErrors) {
  const std::pair<const char*, const char*> bad[] = {
      {R"({"method": "ngram", "num_speculative_tokens": 0})", "num_speculative_tokens"},
      {R"({"method": "ngram", "num_speculative_tokens": 17})", "num_speculative_tokens"},
      {R"({"method": "ngram", "model": "x.gguf", "num_speculative_tokens": 2})", "takes no model"},
      {R"({"method": "medusa", "num_speculative_tokens": 2})", "unknown method"},
      {R"({"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 3, "prompt_lookup_max": 2})",
       "prompt_lookup_min"},
      {R"({"method": "ngram", "num_speculative_tokens": "2"})", "integer"},
      {R"({"method": "ngram", "k": 2})", "unknown key"},
      {R"({"method": "draft_model", "num_speculative_tokens": 2})", "needs a model"},
      {R"({"method": "ngram", "num_speculative_tokens": 2, "disable_by_batch_size": 1})", "disable_by_batch_size"},
      {"[1, 2]", "JSON object"},
      {"{not json", "JSON object"},
  };
  for (const auto& [json, what] : bad) {
    auto c = parse_speculative_config(json, "", 0);
    ASSERT_FALSE(c.ok()) << json;
    EXPECT_NE(c.error().message.find(what), std::string::npos) << json << " -> " << c.error().message;
  }
  EXPECT_FALSE(parse_speculative_config("", "", 4).ok());  // K without a method
}

TEST(NgramProposer, ProposesWhatFollowedTheLatestMatch) {
  using V = std::vector<int32_t>;
  // Suffix [7, 8] occurred twice; the latest occurrence (at 4) is followed by 5, 6.
  EXPECT_EQ(propose_ngram(V{7, 8, 1, 2, 7, 8, 5, 6, 9, 7, 8}, 3, 2, 4), (V{5, 6, 9}));
  // Longest n first: [3, 7, 8] matches at 0 where [7, 8] alone would match later.
  EXPECT_EQ(propose_ngram(V{3, 7, 8, 1, 7, 8, 2, 3, 7, 8}, 2, 2, 3), (V{1, 7}));
  // k is capped by what follows the match.
  EXPECT_EQ(propose_ngram(V{1, 2, 3, 1, 2}, 5, 2, 2), (V{3, 1, 2}));
  EXPECT_TRUE(propose_ngram(V{1, 2, 3, 4}, 3, 2, 4).empty());  // no repeat
  EXPECT_TRUE(propose_ngram(V{5}, 3, 1, 4).empty());
  EXPECT_TRUE(propose_ngram(V{}, 3, 1, 4).empty());
  EXPECT_EQ(propose_ngram(V{4, 4, 4}, 2, 1, 1), (V{4}));  // the match at 1 is followed by one token
}

// Chi-square statistic of observed counts against expected probabilities.
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& p, int64_t n) {
  double x2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0) continue;
    const double e = p[i] * static_cast<double>(n);
    x2 += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
  }
  return x2;
}

// The target distribution of a logits row under `params` (temperature and top-k here).
std::vector<double> target_distribution(const std::vector<float>& logits, float temperature, int top_k) {
  std::vector<double> p(logits.size(), 0.0);
  std::vector<float> sorted = logits;
  std::sort(sorted.rbegin(), sorted.rend());
  const float kth = top_k > 0 ? sorted[static_cast<size_t>(top_k - 1)] : -INFINITY;
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] >= kth) sum += p[i] = std::exp(static_cast<double>(logits[i]) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

TEST(SpecSampler, VerifiedTokensFollowTheTargetDistribution) {
  const std::vector<float> logits = {1.0f, 2.5f, 0.2f, 2.0f, -1.0f, 1.7f, 0.9f, 3.0f};
  SamplingParams params;
  params.temperature = 0.8f;
  params.top_k = 6;
  const std::vector<double> p = target_distribution(logits, params.temperature, params.top_k);
  constexpr int64_t kDraws = 40000;
  // 7 degrees of freedom at most: chi-square 0.999 quantile 24.3.
  constexpr double kCritical = 24.3;
  Sampler sampler;
  for (int32_t draft : {7, 0, 4 /* filtered out by top-k: always rejected */}) {
    std::vector<int64_t> counts(logits.size(), 0), naive(logits.size(), 0);
    int64_t accepted = 0;
    for (int64_t s = 0; s < kDraws; ++s) {
      RequestGenerator gen{static_cast<uint64_t>(s), 0, 0};
      SamplerRow row{logits, {}, {}, &params, &gen};
      row.draft_token = draft;
      const SampledToken t = sampler.sample(row);
      ++counts[static_cast<size_t>(t.token)];
      accepted += t.accepted;
      EXPECT_EQ(t.accepted, t.token == draft);
      EXPECT_EQ(gen.step, 2u) << "a verify row takes two draws whatever happens";
      // What a sampler that accepts every draft would emit: the draft, always.
      ++naive[static_cast<size_t>(draft)];
    }
    const double x2 = chi_square(counts, p, kDraws);
    EXPECT_LT(x2, kCritical) << "draft " << draft;
    EXPECT_GT(chi_square(naive, p, kDraws), kCritical) << "the test must be able to fail";
    // Acceptance happens at rate p(draft).
    EXPECT_NEAR(static_cast<double>(accepted) / kDraws, p[static_cast<size_t>(draft)], 0.01) << "draft " << draft;
  }
}

TEST(SpecSampler, GreedyRowsAcceptExactlyTheArgmax) {
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f};
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler sampler;
  for (int32_t draft : {0, 1, 2}) {
    RequestGenerator gen;
    SamplerRow row{logits, {}, {}, &greedy, &gen};
    row.draft_token = draft;
    const SampledToken t = sampler.sample(row);
    EXPECT_EQ(t.token, 1);
    EXPECT_EQ(t.accepted, draft == 1);
  }
}

class SpecEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(test_util::load_tiny_llama(config_, weights_));
    tokenizer_ = std::make_unique<test_util::PieceTokenizer>(static_cast<int32_t>(config_.vocab_size));
    spdlog::set_level(spdlog::level::warn);  // thousands of per-request lines otherwise
  }
  void TearDown() override { spdlog::set_level(spdlog::level::info); }

  std::unique_ptr<Engine> make_engine(int32_t num_blocks, int32_t budget, bool prefix, int32_t k,
                                      std::shared_ptr<Proposer> proposer = nullptr, int32_t disable_by_batch = 0) {
    EngineConfig ec;
    ec.scheduler.block_size = 4;
    ec.scheduler.num_blocks = num_blocks;
    ec.scheduler.max_num_batched_tokens = budget;
    ec.scheduler.max_num_seqs = 64;
    ec.scheduler.max_model_len = 256;
    ec.scheduler.enable_prefix_caching = prefix;
    ec.log_interval_s = 0;
    ec.max_queue_len = 4096;
    if (k > 0) {
      ec.speculative.method = SpeculativeConfig::Method::kNgram;
      ec.speculative.num_speculative_tokens = k;
      ec.speculative.prompt_lookup_min = 1;
      ec.speculative.prompt_lookup_max = 3;
      ec.speculative.disable_by_batch_size = disable_by_batch;
    }
    if (proposer) {
      ec.speculative.method = SpeculativeConfig::Method::kDraftModel;
      ec.proposer = std::move(proposer);
    }
    auto runner = std::make_unique<CpuModelRunner>(weights_, 2, num_blocks, 4, std::vector<int32_t>{});
    return std::make_unique<Engine>(ec, std::move(runner), *tokenizer_, std::vector<int32_t>{});
  }

  // Prompts with repeats, so that n-grams match from the first step.
  std::vector<int32_t> prompt(std::mt19937& rng, int len) {
    std::vector<int32_t> pattern;
    for (int i = 0; i < 3 + static_cast<int>(rng() % 4); ++i) pattern.push_back(static_cast<int32_t>(rng() % 32));
    std::vector<int32_t> p;
    while (static_cast<int>(p.size()) < len)
      p.push_back(rng() % 5 == 0 ? static_cast<int32_t>(rng() % 32) : pattern[p.size() % pattern.size()]);
    return p;
  }

  std::vector<Outcome> run(Engine& engine, const std::vector<EngineRequest>& reqs) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const EngineRequest& r : reqs) {
      AddResult a = engine.add(r);
      EXPECT_EQ(a.code, AddResult::Code::kOk) << a.error;
      streams.push_back(a.stream);
    }
    std::vector<Outcome> out;
    for (size_t i = 0; i < reqs.size(); ++i) out.push_back(collect(*streams[i], reqs[i].params.n));
    return out;
  }

  ModelConfig config_;
  LlamaWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

// Structured outputs under speculation: proposals stop at the first token the grammar rejects, the verify rows
// carry the grammar's masks, and greedy output stays identical to plain decoding and inside the grammar.
TEST_F(SpecEngineTest, GrammarOutputIsIdenticalWithAndWithoutSpeculation) {
  std::vector<std::string> pieces;
  for (int32_t id = 0; id < static_cast<int32_t>(config_.vocab_size); ++id) pieces.push_back(tokenizer_->token_bytes(id));
  auto vocab = std::make_shared<structured::Vocabulary>(pieces, std::vector<int32_t>{});
  auto grammar = structured::Grammar::parse("root ::= (\"a\" | \"b\" | \"St\" | \" \" \"é\"?)*");
  ASSERT_TRUE(grammar.ok()) << grammar.error().message;
  auto compiled = structured::CompiledGrammar::compile(*grammar, vocab);
  ASSERT_TRUE(compiled.ok());
  std::mt19937 rng(5);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    EngineRequest r;
    r.prompt_ids = prompt(rng, 8 + static_cast<int>(rng() % 20));
    r.params.temperature = i % 3 == 2 ? 0.8f : 0.0f;
    r.params.seed = 100 + i;
    r.params.max_tokens = 10 + static_cast<int32_t>(rng() % 30);
    r.params.ignore_eos = true;
    r.params.grammar = *compiled;
    if (i % 4 == 1) r.params.n = 2;
    reqs.push_back(r);
  }
  auto reference = make_engine(256, 4096, false, 0);
  const std::vector<Outcome> want = run(*reference, reqs);
  auto engine = make_engine(256, 4096, false, 4);
  const std::vector<Outcome> got = run(*engine, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (reqs[i].params.temperature == 0.0f) {
      EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
    }
    for (const Outcome* o : {&got[i], &want[i]})
      for (const std::string& text : o->text)
        EXPECT_TRUE((*grammar)->matches(text)) << "request " << i << ": '" << text << "'";
    EXPECT_EQ(got[i].finish, want[i].finish) << "request " << i;
  }
  const EngineMetrics m = engine->metrics();
  EXPECT_EQ(m.kv_cache_usage, 0.0);
  EXPECT_GT(m.spec_decode_num_accepted_tokens_total, 0u) << "nothing accepted, nothing tested";
}

TEST_F(SpecEngineTest, GreedyOutputIsIdenticalWithAndWithoutSpeculation) {
  std::mt19937 rng(11);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 14; ++i) {
    EngineRequest r;
    r.prompt_ids = prompt(rng, 6 + static_cast<int>(rng() % 30));
    r.params.temperature = 0;
    r.params.max_tokens = 4 + static_cast<int32_t>(rng() % 40);
    r.params.ignore_eos = true;
    if (i % 5 == 1) r.params.stop_token_ids = {static_cast<int32_t>(rng() % 32)};
    if (i % 5 == 2) r.params.stop = {"cSt"};
    if (i % 5 == 3) r.params.n = 2;
    if (i % 7 == 4) r.params.repetition_penalty = 1.3f;
    if (i % 4 == 0) r.params.logprobs = 2;
    reqs.push_back(r);
  }
  auto reference = make_engine(256, 4096, false, 0);
  const std::vector<Outcome> want = run(*reference, reqs);
  struct Variant {
    const char* name;
    int32_t blocks, budget;
    bool prefix;
    int32_t k;
  };
  for (const Variant& v :
       {Variant{"k=1", 256, 4096, false, 1}, Variant{"k=4", 256, 4096, false, 4},
        Variant{"k=4 chunked prefill", 256, 9, false, 4}, Variant{"k=3 prefix caching", 256, 64, true, 3},
        Variant{"k=5 forced preemption", 40, 64, true, 5}}) {
    auto engine = make_engine(v.blocks, v.budget, v.prefix, v.k);
    const std::vector<Outcome> got = run(*engine, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(got[i].tokens, want[i].tokens) << v.name << " request " << i;
      EXPECT_EQ(got[i].text, want[i].text) << v.name << " request " << i;
      EXPECT_EQ(got[i].finish, want[i].finish) << v.name << " request " << i;
    }
    const EngineMetrics m = engine->metrics();
    EXPECT_EQ(m.kv_cache_usage, 0.0) << v.name << ": KV blocks leaked";
    EXPECT_GT(m.spec_decode_num_drafts_total, 0u) << v.name;
    EXPECT_GT(m.spec_decode_num_accepted_tokens_total, 0u) << v.name << ": nothing accepted, nothing tested";
    EXPECT_LT(m.spec_decode_num_accepted_tokens_total, m.spec_decode_num_draft_tokens_total)
        << v.name << ": nothing rejected, rollback untested";
    if (std::string(v.name).find("preemption") != std::string::npos) {
      EXPECT_GT(m.num_preemptions_total, 0u) << v.name;
    }
    const std::string text = m.prometheus("m");
    EXPECT_NE(text.find("ember:spec_decode_num_accepted_tokens_total{model_name=\"m\"} " +
                        std::to_string(m.spec_decode_num_accepted_tokens_total)),
              std::string::npos);
  }
}

TEST_F(SpecEngineTest, DisableByBatchSizeStopsSpeculatingInLargeBatches) {
  // Eight sequences that run side by side from their first step to their last
  // (one request with n = 8, so that they are admitted together however the
  // engine's thread is timed): with disable_by_batch_size 8 no step speculates.
  // Eight separate requests under a limit of 9 all speculate. The text is the
  // same either way. Then a ninth, longer request: once the eight are done it
  // runs alone, and speculates.
  std::mt19937 rng(23);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    EngineRequest r;
    r.prompt_ids = prompt(rng, 12);
    r.params.temperature = 0;
    r.params.max_tokens = 24;
    r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  EngineRequest fanned = reqs[0];
  fanned.params.n = 8;
  auto reference = make_engine(256, 4096, false, 0);
  const std::vector<Outcome> want = run(*reference, reqs);
  const std::vector<Outcome> want_fanned = run(*reference, {fanned});
  {
    auto engine = make_engine(256, 4096, false, 3, nullptr, 8);
    const std::vector<Outcome> got = run(*engine, {fanned});
    EXPECT_EQ(got[0].tokens, want_fanned[0].tokens);
    EXPECT_EQ(engine->metrics().spec_decode_num_drafts_total, 0u);
  }
  {
    auto engine = make_engine(256, 4096, false, 3, nullptr, 9);
    const std::vector<Outcome> got = run(*engine, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
    EXPECT_GT(engine->metrics().spec_decode_num_drafts_total, 8u);
  }
  std::vector<EngineRequest> with_long = reqs;
  with_long.push_back(reqs[0]);
  with_long.back().params.max_tokens = 64;
  auto engine = make_engine(256, 4096, false, 3, nullptr, 8);
  const std::vector<Outcome> got = run(*engine, with_long);
  EXPECT_EQ(got[8].tokens[0].size(), 64u);
  EXPECT_GT(engine->metrics().spec_decode_num_drafts_total, 0u);
}

TEST_F(SpecEngineTest, SampledOutputsKeepTheirDistribution) {
  // The first six generated tokens of one prompt over many seeds, with and
  // without speculation: two-sample chi-square per position. (The tiny model's
  // logits are within ~0.01 of each other: a low temperature makes its
  // distributions peaked enough that drafts are both accepted and rejected.)
  std::mt19937 rng(3);
  const std::vector<int32_t> p = {5, 9, 2, 5, 9, 2, 5, 9, 2, 5, 9};
  std::vector<EngineRequest> reqs;
  for (int s = 0; s < 1500; ++s) {
    EngineRequest r;
    r.prompt_ids = p;
    r.params.temperature = 0.0005f;
    r.params.max_tokens = 6;
    r.params.ignore_eos = true;
    r.params.seed = static_cast<uint64_t>(s);
    reqs.push_back(r);
  }
  auto plain = make_engine(512, 4096, true, 0);
  const std::vector<Outcome> a = run(*plain, reqs);
  for (const bool draft_model : {false, true}) {
    // The n-gram method, then the model itself as a draft (greedy proposals from the same logits).
    auto spec =
        draft_model
            ? make_engine(512, 4096, true, 3,
                          std::make_shared<DraftModelProposer>(
                              std::make_unique<CpuModelRunner>(weights_, 2, 512, 4, std::vector<int32_t>{}), 4096))
            : make_engine(512, 4096, true, 3);
    const std::vector<Outcome> b = run(*spec, reqs);
    const EngineMetrics m = spec->metrics();
    EXPECT_GT(m.spec_decode_num_draft_tokens_total, 1200u) << draft_model;
    EXPECT_GT(m.spec_decode_num_accepted_tokens_total, 400u) << draft_model;
    EXPECT_GT(m.spec_decode_num_draft_tokens_total - m.spec_decode_num_accepted_tokens_total, 400u) << draft_model;
    for (size_t pos = 0; pos < 6; ++pos) {
      std::map<int32_t, std::pair<double, double>> counts;
      for (size_t i = 0; i < reqs.size(); ++i) {
        ++counts[a[i].tokens[0][pos]].first;
        ++counts[b[i].tokens[0][pos]].second;
      }
      // Two samples of equal size: sum (a - b)^2 / (a + b), df = categories - 1.
      double x2 = 0;
      int df = -1;
      for (const auto& [token, ab] : counts) {
        x2 += (ab.first - ab.second) * (ab.first - ab.second) / (ab.first + ab.second);
        ++df;
      }
      // 0.999 quantile of chi-square with df degrees of freedom (Wilson-Hilferty).
      const double z = 3.09, k = std::max(df, 1);
      const double critical = k * std::pow(1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k)), 3);
      EXPECT_LT(x2, critical) << "position " << pos << " df " << df << (draft_model ? " (draft model)" : " (ngram)");
    }
  }
}

TEST_F(SpecEngineTest, DraftModelProposalsKeepGreedyOutput) {
  std::mt19937 rng(17);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 10; ++i) {
    EngineRequest r;
    r.prompt_ids = prompt(rng, 5 + static_cast<int>(rng() % 30));
    r.params.temperature = 0;
    r.params.max_tokens = 3 + static_cast<int32_t>(rng() % 40);
    r.params.ignore_eos = true;
    if (i % 4 == 1) r.params.stop_token_ids = {static_cast<int32_t>(rng() % 32)};
    if (i % 4 == 2) r.params.n = 2;
    reqs.push_back(r);
  }
  auto reference = make_engine(256, 4096, false, 0);
  const std::vector<Outcome> want = run(*reference, reqs);
  // The target itself as the draft (everything accepted) and an unrelated model
  // with the same vocabulary (random weights: almost everything rejected).
  for (const bool same : {true, false}) {
    LlamaWeights draft_weights = same ? weights_ : std::move(make_dummy_weights(config_, 99)).value();
    auto draft = std::make_shared<DraftModelProposer>(
        std::make_unique<CpuModelRunner>(std::move(draft_weights), 2, 128, 4, std::vector<int32_t>{}), 16);
    auto engine = make_engine(48, 64, true, 4, draft);
    const std::vector<Outcome> got = run(*engine, reqs);
    const char* name = same ? "draft = target" : "unrelated draft";
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(got[i].tokens, want[i].tokens) << name << " request " << i;
      EXPECT_EQ(got[i].finish, want[i].finish) << name << " request " << i;
    }
    const EngineMetrics m = engine->metrics();
    const double rate = static_cast<double>(m.spec_decode_num_accepted_tokens_total) /
                        static_cast<double>(m.spec_decode_num_draft_tokens_total);
    EXPECT_GT(m.spec_decode_num_draft_tokens_total, 100u) << name;
    if (same) {
      EXPECT_GT(rate, 0.95) << name;
    } else {
      EXPECT_LT(rate, 0.5) << name;
    }
    EXPECT_EQ(m.kv_cache_usage, 0.0) << name << ": target KV blocks leaked";
    engine->shutdown(std::chrono::milliseconds(0));
    EXPECT_EQ(draft->kv_usage(), 0.0) << name << ": draft KV blocks leaked";
  }
}

}  // namespace
}  // namespace ember
