// Async scheduling on the GPU: a step launched before the previous one's
// tokens reached the host reads those tokens on the device (prev_row), and
// gives the tokens synchronous stepping gives, with and without CUDA graphs;
// the engine with async scheduling gives the same outputs as without it for
// greedy, seeded, n > 1, stop, min_tokens, penalty and logprob requests.
//
// Runs only on a GPU machine (scripts/gpu_check.sh): without one it FAILS.

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/cuda_model_runner.h"
#include "engine/engine.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "engine/sampling_params.h"
#include "models/model_config.h"
#include "models/weights.h"
#include "tests/engine_test_util.h"

namespace ember {
namespace {

ModelConfig small_config() {
  const std::string json = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
      "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
      "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": 512})";
  auto c = model_config_from_hf_json(json, "", "test");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return *c;
}

CudaRunnerOptions options(bool eager) {
  CudaRunnerOptions o;
  o.max_num_batched_tokens = 1024;
  o.max_num_seqs = 32;
  o.max_model_len = 1024;
  o.num_gpu_blocks_override = 1024;
  o.enforce_eager = eager;
  return o;
}

struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blocks;
  int64_t done = 0;
  SamplingParams params;
  RequestGenerator gen;
};

std::vector<Seq> make_seqs(int32_t vocab, int n) {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1), len(1, 40);
  std::vector<Seq> seqs(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int l = len(rng);
    for (int j = 0; j < l; ++j) seqs[i].tokens.push_back(tok(rng));
    for (int b = 0; b < 8; ++b) seqs[i].blocks.push_back(i * 8 + b);
    seqs[i].params.temperature = i % 3 == 0 ? 0.0f : 0.9f;  // greedy and seeded draws
    seqs[i].params.top_k = i % 3 == 2 ? 40 : -1;
    seqs[i].gen.seed = 500 + static_cast<uint64_t>(i);
  }
  return seqs;
}

// Synchronous: each step's tokens are on the host before the next is built.
std::vector<std::vector<int32_t>> run_sync(ModelRunner& r, std::vector<Seq> seqs, int steps) {
  for (int s = 0; s < steps; ++s) {
    std::vector<StepSequence> step;
    std::vector<SamplerRow> rows;
    for (Seq& q : seqs) {
      step.push_back({q.tokens, q.done, static_cast<int32_t>(q.tokens.size() - q.done), q.blocks, 1});
      rows.push_back({{}, q.tokens, {}, &q.params, &q.gen});
    }
    std::vector<SampledToken> out;
    r.launch(step, rows);
    r.collect(out);
    for (size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].done = static_cast<int64_t>(seqs[i].tokens.size());
      seqs[i].tokens.push_back(out[i].token);
    }
  }
  std::vector<std::vector<int32_t>> t;
  for (const Seq& q : seqs) t.push_back(q.tokens);
  return t;
}

// Pipelined: step s+1 is launched before step s is collected; its decode
// tokens come from step s's samples on the device.
std::vector<std::vector<int32_t>> run_async(ModelRunner& r, std::vector<Seq> seqs, int steps) {
  for (int s = 0; s < steps; ++s) {
    std::vector<StepSequence> step;
    std::vector<SamplerRow> rows;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq& q = seqs[i];
      StepSequence ss{q.tokens, q.done, static_cast<int32_t>(q.tokens.size() - q.done), q.blocks, 1};
      if (s > 0) {  // the token of step s - 1 is not on the host yet
        ss.num_tokens = 1;
        ss.prev_row = static_cast<int32_t>(i);
      }
      step.push_back(ss);
      rows.push_back({{}, q.tokens, {}, &q.params, &q.gen});
    }
    r.launch(step, rows);
    for (Seq& q : seqs) q.done = static_cast<int64_t>(q.tokens.size()) + (s > 0 ? 1 : 0);
    if (s > 0) {
      std::vector<SampledToken> out;
      r.collect(out);
      for (size_t i = 0; i < seqs.size(); ++i) seqs[i].tokens.push_back(out[i].token);
    }
  }
  std::vector<SampledToken> out;
  r.collect(out);
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].tokens.push_back(out[i].token);
  std::vector<std::vector<int32_t>> t;
  for (const Seq& q : seqs) t.push_back(q.tokens);
  return t;
}

class AsyncRunner : public ::testing::TestWithParam<bool> {};

TEST_P(AsyncRunner, LaunchedStepsReadThePreviousTokensOnTheDevice) {
  const ModelConfig c = small_config();
  auto w = make_dummy_weights(c, 3);
  ASSERT_TRUE(w.ok());
  auto gpu = make_cuda_model_runner(*w, options(GetParam()));
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  const int32_t v = static_cast<int32_t>(c.vocab_size);
  for (int n : {1, 5, 32}) {
    const std::vector<Seq> seqs = make_seqs(v, n);
    const auto want = run_sync(**gpu, seqs, 20);
    const auto got = run_async(**gpu, seqs, 20);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << n << " sequences, sequence " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(EagerAndGraphs, AsyncRunner, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "eager" : "graphs"; });

using test_util::collect;
using test_util::Outcome;

TEST(AsyncEngine, SameOutputsAsSynchronousStepping) {
  const ModelConfig c = small_config();
  auto w = make_dummy_weights(c, 8);
  ASSERT_TRUE(w.ok());
  const int32_t v = static_cast<int32_t>(c.vocab_size);
  test_util::PieceTokenizer tok(v);
  std::mt19937 rng(2);
  std::uniform_int_distribution<int32_t> id(0, v - 1);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 24; ++i) {
    EngineRequest r;
    for (int j = 0; j < 5 + i * 7; ++j) r.prompt_ids.push_back(id(rng));
    r.params.max_tokens = 12 + i % 9;
    r.params.ignore_eos = true;
    r.params.temperature = i % 4 == 0 ? 0.0f : 1.0f;
    r.params.seed = 100 + i;
    if (i % 5 == 1) r.params.n = 2;
    if (i % 6 == 2) r.params.stop = {"OP", "b"};  // stops early, while the next step is in flight
    if (i % 7 == 3) {
      r.params.stop_token_ids = {id(rng), id(rng), id(rng)};
      r.params.min_tokens = 4;
    }
    if (i % 8 == 5) r.params.logprobs = 2;
    if (i == 23) r.params.frequency_penalty = 0.7f;  // the engine applies its steps before scheduling the next
    reqs.push_back(r);
  }
  Outcome got[2][24];
  for (int async = 0; async < 2; ++async) {
    auto runner = make_cuda_model_runner(*w, options(false));
    ASSERT_TRUE(runner.ok()) << runner.error().message;
    EngineConfig ec;
    ec.scheduler.block_size = 16;
    ec.scheduler.num_blocks = static_cast<int32_t>((*runner)->num_blocks());
    ec.scheduler.max_num_batched_tokens = 256;  // chunked prefills beside decodes
    ec.scheduler.max_num_seqs = 32;
    ec.scheduler.max_model_len = 1024;
    ec.log_interval_s = 0;
    ec.async_scheduling = async == 1;
    Engine engine(ec, std::move(*runner), tok, {});
    // The penalized request after the rest: while it runs, each step is applied
    // before the next is scheduled, which would hide the pipelined path.
    for (int phase = 0; phase < 2; ++phase) {
      std::vector<std::pair<size_t, std::shared_ptr<RequestStream>>> streams;
      for (size_t i = 0; i < reqs.size(); ++i) {
        if (reqs[i].params.penalizes_outputs() != (phase == 1)) continue;
        AddResult a = engine.add(reqs[i]);
        ASSERT_EQ(a.code, AddResult::Code::kOk) << a.error;
        streams.emplace_back(i, a.stream);
      }
      for (auto& [i, stream] : streams) got[async][i] = collect(*stream, reqs[i].params.n);
    }
    EXPECT_EQ(engine.metrics().kv_cache_usage, 0.0) << "KV blocks leaked";
  }
  int stops = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[1][i].tokens, got[0][i].tokens) << "request " << i;
    EXPECT_EQ(got[1][i].text, got[0][i].text) << "request " << i;
    EXPECT_EQ(got[1][i].finish, got[0][i].finish) << "request " << i;
    for (FinishReason f : got[1][i].finish) stops += f == FinishReason::kStop;
  }
  EXPECT_GT(stops, 0) << "no request stopped early: the delayed-stop path went untested";
}

}  // namespace
}  // namespace ember
