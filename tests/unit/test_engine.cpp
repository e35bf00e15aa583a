// The engine end to end on the CPU backend (tiny_llama.gguf, random weights):
// concurrent greedy requests give exactly the tokens each gives alone, with
// and without chunked prefill, prefix caching and forced preemption; seeded
// sampling does not depend on the batch; abort frees the KV pool; n > 1;
// stop strings and token ids through the output processor.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/output_processor.h"
#include "tests/engine_test_util.h"
#include "models/formats/gguf.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {
namespace {

using test_util::collect;
using test_util::Outcome;
using FakeTokenizer = test_util::PieceTokenizer;

// The CPU runner behind a probe: it checks the engine's side of the runner
// contract (at most two launches outstanding, prev_row naming a row of the
// newest launch, a collect for every launch) and counts the decode inputs
// read through prev_row, as a GPU runner reads them on the device.
class DeferredRunner final : public ModelRunner {
 public:
  explicit DeferredRunner(std::unique_ptr<CpuModelRunner> inner) : inner_(std::move(inner)) {}
  void forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) override {
    inner_->forward_logits(seqs, logits);
  }
  void launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) override {
    EXPECT_LT(outstanding_, 2) << "more than two launches outstanding";
    for (const StepSequence& s : seqs) {
      if (s.prev_row < 0) continue;
      EXPECT_LT(s.prev_row, newest_rows_) << "prev_row outside the previous launch";
      EXPECT_EQ(s.start + s.num_tokens, static_cast<int64_t>(s.tokens.size()) + 1);
      ++prev_rows_read_;
    }
    inner_->launch(seqs, rows);
    newest_rows_ = static_cast<int32_t>(rows.size());
    ++outstanding_;
  }
  void collect(std::vector<SampledToken>& out) override {
    EXPECT_GT(outstanding_, 0) << "collect with nothing launched";
    if (outstanding_ == 0) return out.clear();
    inner_->collect(out);
    --outstanding_;
  }
  const ModelConfig& config() const override { return inner_->config(); }
  int32_t vocab_size() const override { return inner_->vocab_size(); }
  int64_t num_blocks() const override { return inner_->num_blocks(); }
  int32_t block_size() const override { return inner_->block_size(); }
  // How many decode inputs were read through prev_row (shared: the engine owns the runner).
  std::shared_ptr<int64_t> prev_rows_read() const { return prev_rows_read_counter_; }

 private:
  std::unique_ptr<CpuModelRunner> inner_;
  int outstanding_ = 0;
  int32_t newest_rows_ = 0;
  std::shared_ptr<int64_t> prev_rows_read_counter_ = std::make_shared<int64_t>(0);
  int64_t& prev_rows_read_ = *prev_rows_read_counter_;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(test_util::load_tiny_llama(config_, weights_));
    tokenizer_ = std::make_unique<FakeTokenizer>(static_cast<int32_t>(config_.vocab_size));
  }

  // async: 0 synchronous stepping; 1 async over the CPU runner; 2 async over a
  // DeferredRunner (the GPU's path: decode inputs named by prev_row).
  std::unique_ptr<Engine> make_engine(int32_t num_blocks, int32_t budget, bool prefix, bool chunked = true,
                                      int32_t max_seqs = 64, int32_t max_model_len = 256, int async = 0) {
    EngineConfig ec;
    ec.async_scheduling = async > 0;
    ec.scheduler.block_size = 4;
    ec.scheduler.num_blocks = num_blocks;
    ec.scheduler.max_num_batched_tokens = budget;
    ec.scheduler.max_num_seqs = max_seqs;
    ec.scheduler.max_model_len = max_model_len;
    ec.scheduler.enable_prefix_caching = prefix;
    ec.scheduler.enable_chunked_prefill = chunked;
    ec.log_interval_s = 0;
    auto cpu = std::make_unique<CpuModelRunner>(weights_, 2, num_blocks, 4, std::vector<int32_t>{});
    std::unique_ptr<ModelRunner> runner = std::move(cpu);
    if (async == 2) {
      auto deferred = std::make_unique<DeferredRunner>(
          std::unique_ptr<CpuModelRunner>(static_cast<CpuModelRunner*>(runner.release())));
      prev_rows_read_ = deferred->prev_rows_read();
      runner = std::move(deferred);
    }
    return std::make_unique<Engine>(ec, std::move(runner), *tokenizer_, std::vector<int32_t>{});
  }

  std::vector<int32_t> random_prompt(std::mt19937& rng, int len, const std::vector<int32_t>& prefix = {}) {
    std::vector<int32_t> p = prefix;
    while (static_cast<int>(p.size()) < len)
      p.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(config_.vocab_size)));
    return p;
  }

  static EngineRequest greedy(std::vector<int32_t> prompt, int max_tokens) {
    EngineRequest r;
    r.prompt_ids = std::move(prompt);
    r.params.temperature = 0;
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;
    return r;
  }

  ModelConfig config_;
  LlamaWeights weights_;
  std::unique_ptr<FakeTokenizer> tokenizer_;
  std::shared_ptr<int64_t> prev_rows_read_;  // of the last DeferredRunner made
};

TEST_F(EngineTest, ConcurrentGreedyRequestsMatchRunningAlone) {
  std::mt19937 rng(11);
  const std::vector<int32_t> shared = random_prompt(rng, 13);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    // Half share a 13-token prefix (prefix-cache hits), lengths cross block edges.
    const int len = 3 + static_cast<int>(rng() % 40);
    reqs.push_back(greedy(i % 2 ? random_prompt(rng, 13 + len, shared) : random_prompt(rng, len), 5 + i * 3));
  }
  // Reference: one request at a time, big pool, no prefix cache, whole prefills.
  std::vector<Outcome> alone;
  {
    auto engine = make_engine(256, 4096, /*prefix=*/false);
    for (const EngineRequest& r : reqs) {
      AddResult a = engine->add(r);
      ASSERT_EQ(a.code, AddResult::Code::kOk) << a.error;
      alone.push_back(collect(*a.stream, 1));
    }
  }
  struct Variant {
    const char* name;
    int32_t blocks, budget;
    bool prefix;
    int async = 0;  // make_engine's
  };
  for (const Variant& v :
       {Variant{"batched", 256, 4096, false}, Variant{"chunked prefill", 256, 7, false},
        Variant{"prefix caching", 256, 16, true}, Variant{"forced preemption", 24, 32, true},
        Variant{"async batched", 256, 4096, false, 2}, Variant{"async chunked prefill", 256, 7, false, 2},
        Variant{"async prefix caching", 256, 16, true, 1}, Variant{"async forced preemption", 24, 32, true, 2},
        Variant{"async forced preemption, CPU runner", 24, 32, true, 1}}) {
    auto engine = make_engine(v.blocks, v.budget, v.prefix, true, 64, 256, v.async);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const EngineRequest& r : reqs) {
      AddResult a = engine->add(r);
      ASSERT_EQ(a.code, AddResult::Code::kOk) << v.name << ": " << a.error;
      streams.push_back(a.stream);
    }
    for (size_t i = 0; i < reqs.size(); ++i) {
      const Outcome o = collect(*streams[i], 1);
      EXPECT_EQ(o.tokens[0], alone[i].tokens[0]) << v.name << " request " << i;
      EXPECT_EQ(o.finish[0], FinishReason::kLength) << v.name;
      EXPECT_EQ(o.tokens[0].size(), static_cast<size_t>(reqs[i].params.max_tokens)) << v.name;
    }
    const EngineMetrics m = engine->metrics();
    EXPECT_EQ(m.kv_cache_usage, 0.0) << v.name << ": KV blocks leaked";
    EXPECT_EQ(m.request_success_total.at("length"), reqs.size()) << v.name;
    if (std::string(v.name).find("forced preemption") != std::string::npos) {
      EXPECT_GT(m.num_preemptions_total, 0u);
    }
    if (v.prefix) {
      EXPECT_GT(m.prefix_cache_hits_total, 0u) << v.name;
    }
  }
}

TEST_F(EngineTest, SeededSamplingIsIndependentOfTheBatchAndNGivesDistinctSequences) {
  std::mt19937 rng(5);
  EngineRequest r = greedy(random_prompt(rng, 9), 12);
  r.params.temperature = 1.5f;
  r.params.seed = 1234;
  r.params.n = 3;
  auto engine = make_engine(256, 64, true);
  AddResult a = engine->add(r);
  ASSERT_EQ(a.code, AddResult::Code::kOk);
  const Outcome first = collect(*a.stream, 3);
  // Again, now sharing every step with other sampled requests.
  std::vector<std::shared_ptr<RequestStream>> others;
  for (int i = 0; i < 4; ++i) {
    EngineRequest o = greedy(random_prompt(rng, 5 + i), 20);
    o.params.temperature = 1.0f;
    others.push_back(engine->add(o).stream);
  }
  AddResult b = engine->add(r);
  const Outcome second = collect(*b.stream, 3);
  for (auto& s : others) collect(*s, 1);
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_NE(first.tokens[0], first.tokens[1]) << "n sequences must use different random streams";
  for (const auto& t : first.tokens) EXPECT_EQ(t.size(), 12u);
}

TEST_F(EngineTest, AbortFreesBlocksAndRejectsWhatCannotFit) {
  std::mt19937 rng(3);
  {
    // Aborted while running (after its first token) and before it ever ran.
    auto engine = make_engine(1100, 32, true, true, 64, 4096);
    AddResult running = engine->add(greedy(random_prompt(rng, 20), 4000));
    ASSERT_EQ(running.code, AddResult::Code::kOk);
    std::vector<SequenceDelta> first;
    while (first.empty()) first = running.stream->pop(std::chrono::milliseconds(100));
    engine->abort(running.id);
    const Outcome o = collect(*running.stream, 1);
    EXPECT_EQ(o.finish[0], FinishReason::kAbort);
    EXPECT_LT(o.tokens[0].size() + first.size(), 4000u);
    AddResult waiting = engine->add(greedy(random_prompt(rng, 20), 4000));
    engine->abort(waiting.id);
    EXPECT_EQ(collect(*waiting.stream, 1).finish[0], FinishReason::kAbort);
    const EngineMetrics m = engine->metrics();
    EXPECT_EQ(m.kv_cache_usage, 0.0);
    EXPECT_EQ(m.request_success_total.at("abort"), 2u);
  }
  auto engine = make_engine(64, 32, true);

  EXPECT_EQ(engine->add(greedy({}, 4)).code, AddResult::Code::kInvalid);
  EXPECT_EQ(engine->add(greedy({static_cast<int32_t>(config_.vocab_size)}, 4)).code, AddResult::Code::kInvalid);
  EXPECT_EQ(engine->add(greedy(random_prompt(rng, 250), 10)).code, AddResult::Code::kInvalid);  // > max_model_len
  EXPECT_EQ(engine->add(greedy(random_prompt(rng, 10), 250)).code, AddResult::Code::kInvalid);  // > 64 blocks of 4
  engine->shutdown(std::chrono::milliseconds(0));
  EXPECT_EQ(engine->add(greedy(random_prompt(rng, 10), 2)).code, AddResult::Code::kShuttingDown);
}

// Async scheduling (step N+1 scheduled before step N's tokens are applied)
// must give exactly what synchronous stepping gives, for every sampling
// feature: seeded draws, n > 1, min_tokens against the token in flight,
// stops that land while the next step is already scheduled (token ids,
// strings), penalties (which make the engine apply a step before scheduling
// the next), logprobs; with room to spare and with a pool so small that
// requests are preempted while their token is in flight; over the CPU runner
// (in-flight tokens kept on the host) and over a DeferredRunner (the GPU's
// path: the runner holds them and decodes name them by prev_row).
TEST_F(EngineTest, AsyncSchedulingGivesTheSameOutputsAsSynchronousStepping) {
  std::mt19937 rng(21);
  // Probe runs pick stop tokens and strings that the outputs really contain.
  const std::vector<int32_t> stop_prompt = random_prompt(rng, 11);
  const std::vector<int32_t> string_prompt = random_prompt(rng, 6);
  Outcome probe_tokens, probe_text;
  {
    auto engine = make_engine(256, 4096, false);
    probe_tokens = collect(*engine->add(greedy(stop_prompt, 24)).stream, 1);
    probe_text = collect(*engine->add(greedy(string_prompt, 24)).stream, 1);
  }
  ASSERT_EQ(probe_tokens.tokens[0].size(), 24u);

  std::vector<EngineRequest> reqs;
  reqs.push_back(greedy(random_prompt(rng, 17), 20));
  {
    EngineRequest r = greedy(stop_prompt, 24);  // stops on its 5th token, unless that token came earlier
    r.params.stop_token_ids = {probe_tokens.tokens[0][4]};
    reqs.push_back(r);
  }
  {
    EngineRequest r = greedy(string_prompt, 24);  // stops on a string that spans tokens
    r.params.stop = {probe_text.text[0].substr(4, 3)};
    reqs.push_back(r);
  }
  {
    EngineRequest r = greedy(random_prompt(rng, 9), 15);
    r.params.temperature = 1.0f;
    r.params.top_k = 20;
    r.params.top_p = 0.9f;
    r.params.n = 2;
    r.params.seed = 77;
    reqs.push_back(r);
  }
  {
    EngineRequest r = greedy(stop_prompt, 14);  // min_tokens masks the stop ids while the count is short
    r.params.temperature = 0.8f;
    r.params.min_p = 0.05f;
    r.params.min_tokens = 6;
    r.params.stop_token_ids = {probe_tokens.tokens[0][1], probe_tokens.tokens[0][2], probe_tokens.tokens[0][3]};
    r.params.seed = 5;
    reqs.push_back(r);
  }
  {
    EngineRequest r = greedy(random_prompt(rng, 12), 16);
    r.params.temperature = 1.2f;
    r.params.frequency_penalty = 0.5f;
    r.params.presence_penalty = 0.3f;
    r.params.seed = 9;
    reqs.push_back(r);
  }
  {
    EngineRequest r = greedy(random_prompt(rng, 7), 12);
    r.params.repetition_penalty = 1.3f;
    reqs.push_back(r);
  }
  {
    EngineRequest r = greedy(random_prompt(rng, 30), 10);
    r.params.temperature = 0.7f;
    r.params.logprobs = 3;
    r.params.seed = 3;
    reqs.push_back(r);
  }

  // min_tokens must count the token in flight: a greedy request whose stop id
  // is first produced at output j, with min_tokens j - 1, stops at exactly j
  // (a count one short would mask it there too).
  size_t stop_at = 0;
  {
    const std::vector<int32_t>& o = probe_tokens.tokens[0];
    for (size_t j = 1; j < o.size() && stop_at == 0; ++j)
      if (std::find(o.begin(), o.begin() + static_cast<ptrdiff_t>(j), o[j]) == o.begin() + static_cast<ptrdiff_t>(j))
        stop_at = j + 1;
    ASSERT_GT(stop_at, 0u);
    EngineRequest r = greedy(stop_prompt, 24);
    r.params.min_tokens = static_cast<int32_t>(stop_at) - 1;
    r.params.stop_token_ids = {o[stop_at - 1]};
    reqs.push_back(r);
  }

  struct Config {
    const char* name;
    int32_t blocks, budget;
  };
  // While a request with penalties runs, every step is applied before the next
  // is scheduled: the requests without penalties run first on their own, so
  // the pipelined path is what they see; then everything runs together.
  const auto penalized = [&](size_t i) { return reqs[i].params.penalizes_outputs(); };
  for (const Config& c : {Config{"roomy", 256, 4096}, Config{"tight, chunked, preempting", 20, 16}}) {
    std::vector<Outcome> got[3];
    int64_t preemptions[3] = {0, 0, 0};
    for (int async = 0; async < 3; ++async) {
      auto engine = make_engine(c.blocks, c.budget, true, true, 64, 256, async);
      got[async].resize(reqs.size());
      for (int phase = 0; phase < 2; ++phase) {
        std::vector<std::pair<size_t, std::shared_ptr<RequestStream>>> streams;
        for (size_t i = 0; i < reqs.size(); ++i) {
          if (phase == 0 && penalized(i)) continue;
          AddResult a = engine->add(reqs[i]);
          ASSERT_EQ(a.code, AddResult::Code::kOk) << c.name << ": " << a.error;
          streams.emplace_back(i, a.stream);
        }
        for (auto& [i, stream] : streams) {
          Outcome o = collect(*stream, reqs[i].params.n);
          if (phase == 0) {
            got[async][i] = std::move(o);
          } else if (!penalized(i)) {
            EXPECT_EQ(o.tokens, got[async][i].tokens) << c.name << " request " << i << " beside penalized ones";
          } else {
            got[async][i] = std::move(o);
          }
        }
      }
      const EngineMetrics m = engine->metrics();
      EXPECT_EQ(m.kv_cache_usage, 0.0) << c.name << " mode " << async << ": KV blocks leaked";
      preemptions[async] = static_cast<int64_t>(m.num_preemptions_total);
      if (async == 2) {
        EXPECT_GT(*prev_rows_read_, 0) << c.name << ": no decode read its input through prev_row";
      }
    }
    for (int async = 1; async < 3; ++async) {
      for (size_t i = 0; i < reqs.size(); ++i) {
        EXPECT_EQ(got[async][i].tokens, got[0][i].tokens) << c.name << " mode " << async << " request " << i;
        EXPECT_EQ(got[async][i].text, got[0][i].text) << c.name << " mode " << async << " request " << i;
        EXPECT_EQ(got[async][i].finish, got[0][i].finish) << c.name << " mode " << async << " request " << i;
      }
      if (c.blocks < 64) {
        EXPECT_GT(preemptions[async], 0) << c.name << " mode " << async;
      }
    }
    // The stops really cut the requests short.
    EXPECT_EQ(got[0][1].finish[0], FinishReason::kStop) << c.name;
    EXPECT_LE(got[0][1].tokens[0].size(), 5u) << c.name;
    EXPECT_EQ(got[0][2].finish[0], FinishReason::kStop) << c.name;
    EXPECT_LT(got[0][2].tokens[0].size(), 24u) << c.name;
    EXPECT_GE(got[0][4].tokens[0].size(), 6u) << c.name << ": min_tokens";
    EXPECT_EQ(got[0][8].finish[0], FinishReason::kStop) << c.name;
    EXPECT_EQ(got[0][8].tokens[0].size(), stop_at) << c.name << ": min_tokens";
  }
}

TEST(OutputProcessor, StopStringAcrossTokensIsCutAndNeverStreamed) {
  FakeTokenizer tok(64);
  SamplingParams p;
  p.stop = {"StOP"};
  SequenceOutputProcessor proc(tok, p, {});
  std::string streamed;
  // "a" "St" "OP" "b": the stop string spans two tokens.
  const int32_t ids[] = {0, 4, 5, 1};
  FinishReason finish = FinishReason::kNone;
  int n = 0;
  for (int32_t id : ids) {
    SequenceDelta d;
    finish = proc.on_token(SampledToken{id, 0.0f, {}}, ++n, d);
    streamed += d.text;
    if (n == 2) {
      EXPECT_EQ(d.text, "") << "'St' may start the stop string: held back";
    }
    if (finish != FinishReason::kNone) {
      EXPECT_EQ(d.stop_reason, "StOP");
      break;
    }
  }
  EXPECT_EQ(finish, FinishReason::kStop);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(streamed, "a");
}

TEST(OutputProcessor, HeldTextIsReleasedWhenTheMatchFailsOrTheSequenceEnds) {
  FakeTokenizer tok(64);
  SamplingParams p;
  p.stop = {"Stx"};
  SequenceOutputProcessor proc(tok, p, {});
  std::string streamed;
  for (int32_t id : {4, 0, 4}) {  // "St" held, then "a" releases it, "St" held again
    SequenceDelta d;
    EXPECT_EQ(proc.on_token(SampledToken{id, 0.0f, {}}, 1, d), FinishReason::kNone);
    streamed += d.text;
  }
  EXPECT_EQ(streamed, "Sta");
  SequenceDelta last;
  proc.finish(last);
  EXPECT_EQ(streamed + last.text, "StaSt");
  EXPECT_EQ(proc.text(), "StaSt");
}

TEST(OutputProcessor, StopTokenIdsEosMinTokensAndIgnoreEos) {
  FakeTokenizer tok(64);
  SamplingParams p;
  p.stop_token_ids = {2};
  p.stop = {"b"};
  p.min_tokens = 2;
  SequenceOutputProcessor proc(tok, p, {7});
  SequenceDelta d;
  // Stop strings are not matched before min_tokens outputs.
  EXPECT_EQ(proc.on_token(SampledToken{1, 0.0f, {}}, 1, d), FinishReason::kNone);
  EXPECT_EQ(proc.on_token(SampledToken{2, 0.0f, {}}, 2, d), FinishReason::kStop);
  EXPECT_EQ(d.stop_reason, "2");
  EXPECT_TRUE(d.stop_reason_is_token);
  EXPECT_EQ(d.text, "b") << "a stop token's own text is not output";

  SamplingParams q;
  q.ignore_eos = true;
  SequenceOutputProcessor ignoring(tok, q, {7});
  SequenceDelta e;
  EXPECT_EQ(ignoring.on_token(SampledToken{7, 0.0f, {}}, 1, e), FinishReason::kNone);
  const SamplingParams defaults;  // the processor keeps a reference: no temporary
  SequenceOutputProcessor eos(tok, defaults, {7});
  EXPECT_EQ(eos.on_token(SampledToken{7, 0.0f, {}}, 1, e), FinishReason::kStop);
}

}  // namespace
}  // namespace ember
