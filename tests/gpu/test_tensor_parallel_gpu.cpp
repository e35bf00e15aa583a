// Tensor parallelism on the GPU with the devices lent (one): the whole TP path
// (TensorParallelRunner, its rank thread, NCCL all-reduces and the
// vocab-parallel LM head's all-gather inside the CUDA graphs) at N = 1 against
// the plain runner. NCCL of one rank changes no bit, so logits and tokens must
// be identical; the Llama-3-8B shape's batch-1 decode through both paths is
// timed (the overhead of the TP path, goal <= 2%). The collective watchdog on a
// real NCCL communicator: a step that never completes is aborted and reported.
// The multi-process path (make_cuda_process_group_runner) in a TCP group of
// one process: the NCCL unique id through the group, ncclCommInitRank of one
// rank, rank 0's step broadcasts; logits and engine tokens against the plain runner's.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/cuda_parallel_runners.h"
#include "engine/cuda/device_weights.h"
#include "engine/engine.h"
#include "engine/parallel/collective_watchdog.h"
#include "engine/parallel/shard.h"
#include "engine/parallel/tcp_group.h"
#include "kernels/cuda/nccl_communicator.h"
#include "models/model_config.h"
#include "models/weights.h"
#include "tests/engine_test_util.h"

namespace ember {
namespace {

ModelConfig small_config() {
  auto c = model_config_from_hf_json(
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
          "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
          "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "vocab_size": 1000})",
      "", "small");
  EXPECT_TRUE(c.ok());
  return *c;
}

CudaRunnerOptions options() {
  CudaRunnerOptions o;
  o.max_num_batched_tokens = 1024;
  o.max_num_seqs = 16;
  o.max_model_len = 1024;
  o.num_gpu_blocks_override = 512;
  return o;
}

TEST(TensorParallelGpu, NcclIsBuilt) {
  // The multi-GPU run needs it; a build without NCCL must not pass as one with it.
  EXPECT_TRUE(nccl_available());
}

// 64 decode steps after a prefill of three sequences, through both runners: the logits must be equal bit for bit.
void expect_same_logits(ModelRunner& plain, ModelRunner& tp, const ModelConfig& c, const std::string& what) {
  std::mt19937 rng(4);
  std::vector<std::vector<int32_t>> tokens(3), blocks(3);
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 7 + 4 * s; ++i) tokens[s].push_back(static_cast<int32_t>(rng() % c.vocab_size));
    for (int b = 0; b < 8; ++b) blocks[s].push_back(s * 8 + b);
  }
  const int32_t v = static_cast<int32_t>(c.vocab_size);
  for (int step = 0; step <= 64; ++step) {
    std::vector<StepSequence> seqs;
    for (int s = 0; s < 3; ++s) {
      const auto len = static_cast<int32_t>(tokens[s].size());
      seqs.push_back(step == 0 ? StepSequence{tokens[s], 0, len, blocks[s], 1}
                               : StepSequence{tokens[s], len - 1, 1, blocks[s], 1});
    }
    std::vector<float> a, b;
    plain.forward_logits(seqs, a);
    tp.forward_logits(seqs, b);
    ASSERT_EQ(a.size(), b.size()) << what;
    ASSERT_EQ(a, b) << what << ", step " << step;
    for (int s = 0; s < 3; ++s) {
      const float* row = a.data() + static_cast<size_t>(s) * v;
      tokens[s].push_back(static_cast<int32_t>(std::max_element(row, row + v) - row));
    }
  }
}

TEST(TensorParallelGpu, OneRankThroughTheWholePathMatchesThePlainRunner) {
  // Prefill eager, decodes as graph replays with the NCCL calls inside; the LM head replicated and vocab-parallel
  // (its all-gather and column copies in the graph too), tied and untied.
  for (const bool tied : {false, true}) {
    ModelConfig c = small_config();
    c.tie_word_embeddings = tied;
    auto w = make_dummy_weights(c, 12);
    ASSERT_TRUE(w.ok());
    auto plain = make_cuda_model_runner(*w, options());
    ASSERT_TRUE(plain.ok()) << plain.error().message;
    for (const LmHead head : {LmHead::kReplicated, LmHead::kVocabParallel}) {
      CudaRunnerOptions o = options();
      o.lm_head = head;
      auto tp = make_cuda_tensor_parallel_runner(&*w, c, o, 1);
      ASSERT_TRUE(tp.ok()) << tp.error().message;
      expect_same_logits(**plain, **tp, c,
                         std::string(tied ? "tied" : "untied") +
                             (head == LmHead::kVocabParallel ? ", vocab-parallel" : ", replicated"));
    }
  }
}

TEST(TensorParallelGpu, OneRankVocabParallelHeadOfDummyWeightsMatchesThePlainRunner) {
  // Weights generated on the device: the rank's rows of the LM head (its slice of the untied head's stream, or a
  // view of the embedding's rows) give the plain runner's logits.
  for (const bool tied : {false, true}) {
    ModelConfig c = small_config();
    c.tie_word_embeddings = tied;
    CudaRunnerOptions o = options();
    o.dummy_seed = 5;
    o.lm_head = LmHead::kVocabParallel;
    auto plain = make_cuda_model_runner_dummy(c, o);
    ASSERT_TRUE(plain.ok()) << plain.error().message;
    auto tp = make_cuda_tensor_parallel_runner(nullptr, c, o, 1);
    ASSERT_TRUE(tp.ok()) << tp.error().message;
    expect_same_logits(**plain, **tp, c, tied ? "dummy, tied" : "dummy, untied");
  }
}

TEST(TensorParallelGpu, NcclAllGatherOfOneRankCopiesItsPart) {
  auto comms = NcclCommunicator::create_all({0});
  ASSERT_TRUE(comms.ok()) << comms.error().message;
  std::vector<float> host(1001);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f - 3.0f;
  float *in = nullptr, *out = nullptr;
  ASSERT_EQ(cudaMalloc(&in, host.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&out, host.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(in, host.data(), host.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  const Tensor x = Tensor::f32(in, {1001});
  Tensor y = Tensor::f32(out, {1001});
  (*comms)[0]->all_gather(x, y, stream);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  std::vector<float> got(host.size());
  ASSERT_EQ(cudaMemcpy(got.data(), out, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(got, host);
  EXPECT_EQ((*comms)[0]->async_error(), "");
  cudaStreamDestroy(stream);
  cudaFree(in);
  cudaFree(out);
}

TEST(TensorParallelGpu, WatchdogAbortsARealNcclCommunicatorWhoseStepNeverCompletes) {
  // One rank on GPU 0: healthy collectives and an idle spell raise nothing; a step marked begun and never
  // finished is reported past the timeout, naming rank 0, and ncclCommAbort has been called on the communicator
  // (whose destructor then leaves it alone).
  auto comms = NcclCommunicator::create_all({0});
  ASSERT_TRUE(comms.ok()) << comms.error().message;
  NcclCommunicator& comm = *(*comms)[0];
  float* buf = nullptr;
  ASSERT_EQ(cudaMalloc(&buf, 256 * 4), cudaSuccess);
  ASSERT_EQ(cudaMemset(buf, 0, 256 * 4), cudaSuccess);
  std::mutex mu;
  std::vector<std::string> failures;
  {
    CollectiveWatchdog dog(
        {&comm}, 0.3,
        [&](const std::string& m) {
          std::lock_guard<std::mutex> lock(mu);
          failures.push_back(m);
        },
        0.01);
    for (int i = 0; i < 10; ++i) {
      dog.begin(0);
      comm.all_reduce_sum(buf, 256);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      dog.end(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    {
      std::lock_guard<std::mutex> lock(mu);
      ASSERT_TRUE(failures.empty()) << failures.front();
    }
    dog.begin(0);  // never ends
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!failures.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("rank(s) 0"), std::string::npos) << failures[0];
  EXPECT_EQ(comm.async_error(), "");  // aborted: nothing more to report
  cudaFree(buf);
}

// A process group of one: TCP with --nnodes 1 (it meets no one). Rank 0's
// NCCL id goes through broadcast_bytes, ncclCommInitRank(nranks 1) joins it.
std::unique_ptr<TcpGroup> group_of_one() {
  auto g = TcpGroup::join(Rendezvous{1, 0, "127.0.0.1", 29500, 10, 60});
  EXPECT_TRUE(g.ok()) << g.error().message;
  return g.ok() ? std::move(*g) : nullptr;
}

TEST(TensorParallelGpu, OneProcessRankThroughTheMultiProcessPathMatchesThePlainRunner) {
  // Host weights (a shard of one: the whole model) and dummy weights generated on the device, the LM head
  // vocab-parallel (its all-gather through the rank's NCCL communicator) and replicated: prefill eager, decodes as
  // graph replays, logits equal bit for bit.
  const ModelConfig c = small_config();
  auto w = make_dummy_weights(c, 12);
  ASSERT_TRUE(w.ok());
  for (const bool dummy : {false, true}) {
    for (const LmHead head : {LmHead::kVocabParallel, LmHead::kReplicated}) {
      CudaRunnerOptions o = options();
      o.dummy_seed = 12;
      o.lm_head = head;
      auto plain = dummy ? make_cuda_model_runner_dummy(c, o) : make_cuda_model_runner(*w, o);
      ASSERT_TRUE(plain.ok()) << plain.error().message;
      auto group = group_of_one();
      ASSERT_NE(group, nullptr);
      auto rank = make_cuda_process_group_runner(dummy ? nullptr : &*w, c, o, *group);
      ASSERT_TRUE(rank.ok()) << rank.error().message;
      EXPECT_EQ((*rank)->num_blocks(), (*plain)->num_blocks());
      expect_same_logits(**plain, **rank, c,
                         std::string(dummy ? "dummy" : "host weights") +
                             (head == LmHead::kVocabParallel ? ", vocab-parallel" : ", replicated"));
    }
  }
}

// Greedy tokens of three requests through the engine (launch, the GPU sampler on rank 0, collect), as rank 0's
// engine runs them: without async scheduling.
std::vector<std::vector<int32_t>> engine_tokens(std::unique_ptr<ModelRunner> runner, const ModelConfig& c) {
  test_util::PieceTokenizer tok(static_cast<int32_t>(c.vocab_size));
  EngineConfig ec;
  ec.scheduler.block_size = 16;
  ec.scheduler.num_blocks = static_cast<int32_t>(runner->num_blocks());
  ec.scheduler.max_num_batched_tokens = 1024;
  ec.scheduler.max_num_seqs = 16;
  ec.scheduler.max_model_len = 1024;
  ec.log_interval_s = 0;
  ec.async_scheduling = false;
  Engine engine(ec, std::move(runner), tok, {});
  std::vector<AddResult> added;
  for (int i = 0; i < 3; ++i) {
    EngineRequest r;
    for (int t = 0; t < 5 + 3 * i; ++t) r.prompt_ids.push_back((17 * t + 31 * i + 1) % static_cast<int32_t>(c.vocab_size));
    r.params.temperature = 0;
    r.params.max_tokens = 40;
    r.params.ignore_eos = true;
    added.push_back(engine.add(r));
    EXPECT_EQ(added.back().code, AddResult::Code::kOk) << added.back().error;
  }
  std::vector<std::vector<int32_t>> out(added.size());
  for (size_t i = 0; i < added.size(); ++i) {
    if (added[i].code != AddResult::Code::kOk) continue;
    while (!added[i].stream->done())
      for (const SequenceDelta& d : added[i].stream->pop(std::chrono::milliseconds(200)))
        out[i].insert(out[i].end(), d.token_ids.begin(), d.token_ids.end());
  }
  return out;
}

TEST(TensorParallelGpu, OneProcessRankThroughTheEngineGivesThePlainRunnersTokens) {
  const ModelConfig c = small_config();
  CudaRunnerOptions o = options();
  o.dummy_seed = 3;
  auto plain = make_cuda_model_runner_dummy(c, o);
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  const auto want = engine_tokens(std::move(*plain), c);
  auto group = group_of_one();
  ASSERT_NE(group, nullptr);
  auto rank = make_cuda_process_group_runner(nullptr, c, o, *group);
  ASSERT_TRUE(rank.ok()) << rank.error().message;
  const auto got = engine_tokens(std::move(*rank), c);
  ASSERT_EQ(want.size(), 3u);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(want[i].size(), 40u) << "request " << i;
    EXPECT_EQ(got[i], want[i]) << "request " << i;
  }
}

// Dummy weights split over ranks: each rank generates, on the device, exactly
// the slices the host's shard_weights cuts from make_dummy_weights (to bf16).
TEST(TensorParallelGpu, DummyShardsAreTheSlicesOfTheWholeModel) {
  const ModelConfig c = small_config();  // 4 heads, 2 KV heads, MLP 512
  auto host = make_dummy_weights(c, 9);
  ASSERT_TRUE(host.ok());
  const auto bits_of = [](const Tensor& t) {
    std::vector<uint16_t> b(static_cast<size_t>(t.rows() * t.cols()));
    EXPECT_EQ(cudaMemcpy(b.data(), t.data, b.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    return b;
  };
  const auto bf16_bits = [](const WeightMatrix& m) {
    std::vector<uint16_t> b;
    for (float f : m.f32) {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      u += 0x7FFFu + ((u >> 16) & 1u);
      b.push_back(static_cast<uint16_t>(u >> 16));
    }
    return b;
  };
  for (int n : {2, 4}) {
    for (int rank = 0; rank < n; ++rank) {
      auto dev = DeviceWeights::dummy(c, 9, rank, n);
      ASSERT_TRUE(dev.ok()) << dev.error().message;
      auto want = shard_weights(*host, rank, n);
      ASSERT_TRUE(want.ok());
      const LayerWeightViews& got = (*dev)->views().layers[1];
      const LayerWeights& w = want->layers[1];
      // Within one bf16 step where the device's double math rounds the other way (DummyWeightsMatchTheHostGenerator).
      for (const auto& [name, d, h] :
           {std::tuple{"q", got.wq, &w.wq}, std::tuple{"k", got.wk, &w.wk}, std::tuple{"o", got.wo, &w.wo},
            std::tuple{"gate_up", got.w_gate_up, &w.w_gate_up}, std::tuple{"down", got.w_down, &w.w_down}}) {
        const std::vector<uint16_t> a = bits_of(d), b = bf16_bits(*h);
        ASSERT_EQ(a.size(), b.size()) << name;
        size_t off = 0;
        for (size_t i = 0; i < a.size(); ++i) off += a[i] != b[i] && (a[i] + 1 != b[i] && a[i] != b[i] + 1);
        EXPECT_EQ(off, 0u) << name << " rank " << rank << " of " << n;
        size_t near = 0;
        for (size_t i = 0; i < a.size(); ++i) near += a[i] != b[i];
        EXPECT_LE(near, a.size() / 1000 + 1) << name << " rank " << rank << " of " << n;
      }
    }
  }
}

// Batch-1 greedy decode of the Llama-3-8B shape (dummy weights) through the
// engine with async scheduling, plain and through the TP path at N = 1: the
// same 256 tokens, and the decode rate of each.
TEST(TensorParallelGpu, Llama8bBatch1DecodeThroughTheTensorParallelPath) {
  // (from the repository root, where gpu_check.sh runs the tests; else the source tree of the build)
  std::string path = "configs/models/llama-3-8b.json";
  if (!std::ifstream(path)) path = std::string(EMBER_SOURCE_DIR) + "/" + path;
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  auto c = model_config_from_hf_json(ss.str(), "", path);
  ASSERT_TRUE(c.ok());
  test_util::PieceTokenizer tok(static_cast<int32_t>(c->vocab_size));
  CudaRunnerOptions o;
  o.max_num_seqs = 8;
  o.max_model_len = 1024;
  o.gpu_memory_utilization = 0.45;  // each runner alone: the plain one is gone before the TP one starts
  double rate[2] = {0, 0};
  std::vector<int32_t> out[2];
  for (int path_kind = 0; path_kind < 2; ++path_kind) {
    auto runner =
        path_kind == 0 ? make_cuda_model_runner_dummy(*c, o) : make_cuda_tensor_parallel_runner(nullptr, *c, o, 1);
    ASSERT_TRUE(runner.ok()) << runner.error().message;
    EngineConfig ec;
    ec.scheduler.block_size = 16;
    ec.scheduler.num_blocks = static_cast<int32_t>((*runner)->num_blocks());
    ec.scheduler.max_num_batched_tokens = 1024;
    ec.scheduler.max_num_seqs = 8;
    ec.scheduler.max_model_len = 1024;
    ec.log_interval_s = 0;
    ec.async_scheduling = true;
    Engine engine(ec, std::move(*runner), tok, {});
    EngineRequest r;
    r.prompt_ids = {128000, 791, 3925, 315, 279};
    r.params.temperature = 0;
    r.params.max_tokens = 256;
    r.params.ignore_eos = true;
    // A warm-up request, then the timed one (first token to last: decode only).
    for (int rep = 0; rep < 2; ++rep) {
      AddResult a = engine.add(r);
      ASSERT_EQ(a.code, AddResult::Code::kOk) << a.error;
      using Clock = std::chrono::steady_clock;
      Clock::time_point first{};
      int64_t n = 0;
      std::vector<int32_t> tokens;
      while (!a.stream->done()) {
        for (const SequenceDelta& d : a.stream->pop(std::chrono::milliseconds(200))) {
          if (first == Clock::time_point{} && !d.token_ids.empty()) first = Clock::now();
          tokens.insert(tokens.end(), d.token_ids.begin(), d.token_ids.end());
          n = d.num_output_tokens;
        }
      }
      const double s = std::chrono::duration<double>(Clock::now() - first).count();
      rate[path_kind] = static_cast<double>(n - 1) / s;
      out[path_kind] = tokens;
    }
  }
  EXPECT_EQ(out[1], out[0]);
  EXPECT_EQ(out[0].size(), 256u);
  std::printf("llama-3-8b batch-1 decode: plain %.1f tok/s, tensor-parallel path at N = 1 %.1f tok/s (ratio %.3f)\n",
              rate[0], rate[1], rate[1] / rate[0]);
}

}  // namespace
}  // namespace ember
