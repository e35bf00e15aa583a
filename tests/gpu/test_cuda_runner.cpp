// The CUDA model runner end to end: dummy weights generated on the device
// equal the host generator's; the GPU runner's logits follow the CPU
// backend's (same bf16-rounded weights) through mixed prefill/decode steps,
// chunked prefill and CUDA-graph decode replays; 64 sequences batched give
// what each gives alone; and a Hugging Face model's bf16 logits (made on the
// GPU machine by scripts/gpu_hf_reference.py) are reproduced.
//
// Runs only on a GPU machine (scripts/gpu_check.sh): without one it FAILS.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/device_weights.h"
#include "engine/model_runner.h"
#include "engine/sampler.h"
#include "engine/sampling_params.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/gemm.h"
#include "kernels/quant/fp8.h"
#include "models/formats/hf_model_dir.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {
namespace {

float bf16_round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  u &= 0xFFFF0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

ModelConfig test_config(int head_dim, bool bias, bool llama3, bool tied, int vocab = 1000) {
  const int heads = 4, kv_heads = 2;
  std::string json = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": )" +
                     std::to_string(heads * head_dim) + R"(, "intermediate_size": )" +
                     std::to_string(2 * heads * head_dim) + R"(, "num_attention_heads": 4, "num_key_value_heads": 2,
      "num_hidden_layers": 2, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
      "vocab_size": )" + std::to_string(vocab) +
                     R"(, "attention_bias": )" + (bias ? "true" : "false") + R"(, "tie_word_embeddings": )" +
                     (tied ? "true" : "false") +
                     (llama3 ? R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 256})"
                             : "") +
                     "}";
  (void)kv_heads;
  auto c = model_config_from_hf_json(json, "", "test");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return *c;
}

// Host weights whose matrices are bf16-exact, so the CPU (float32) and the
// GPU (bf16) runners multiply the same numbers.
LlamaWeights bf16_exact_weights(const ModelConfig& c, uint64_t seed) {
  auto w = make_dummy_weights(c, seed);
  EXPECT_TRUE(w.ok());
  LlamaWeights out = std::move(*w);
  const auto round = [](WeightMatrix& m) {
    for (float& f : m.f32) f = bf16_round(f);
  };
  round(out.embed);
  round(out.lm_head);
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  for (LayerWeights& l : out.layers) {
    for (WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate_up, &l.w_down}) round(*m);
    // Norms and biases other than 1 and 0, so their kernels are tested.
    for (float& f : l.attn_norm) f = 1.0f + noise(rng);
    for (float& f : l.ffn_norm) f = 1.0f + noise(rng);
    for (auto* b : {&l.bq, &l.bk, &l.bv})
      for (float& f : *b) f = noise(rng);
  }
  return out;
}

struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blocks;
  int64_t done = 0;  // tokens in the cache
};

double rel_err(const float* a, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

int32_t argmax(const float* row, int32_t v, float* margin = nullptr) {
  int32_t best = 0;
  for (int32_t i = 1; i < v; ++i)
    if (row[i] > row[best]) best = i;
  if (margin) {
    float second = -INFINITY;
    for (int32_t i = 0; i < v; ++i)
      if (i != best) second = std::max(second, row[i]);
    *margin = row[best] - second;
  }
  return best;
}

// One step: each sequence computes `chunk[i]` more of its known tokens.
void step(ModelRunner& r, std::vector<Seq>& seqs, const std::vector<int32_t>& chunk, std::vector<float>& logits) {
  std::vector<StepSequence> s;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (chunk[i] == 0) continue;
    const bool last = seqs[i].done + chunk[i] == static_cast<int64_t>(seqs[i].tokens.size());
    s.push_back({seqs[i].tokens, seqs[i].done, chunk[i], seqs[i].blocks, last ? 1 : 0});
  }
  r.forward_logits(s, logits);
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].done += chunk[i];
}

CudaRunnerOptions small_options(bool eager) {
  CudaRunnerOptions o;
  o.max_num_batched_tokens = 2048;
  o.max_num_seqs = 64;
  o.max_model_len = 2048;
  o.num_gpu_blocks_override = 2048;
  o.enforce_eager = eager;
  return o;
}

TEST(CudaRunner, DeviceVisible) {
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess) << "no CUDA driver: GPU tests must run on a GPU machine";
  ASSERT_GT(n, 0);
}

TEST(CudaRunner, DummyWeightsMatchTheHostGenerator) {
  const ModelConfig c = test_config(64, false, false, false);
  auto host = make_dummy_weights(c, 7);
  ASSERT_TRUE(host.ok());
  auto dev = DeviceWeights::dummy(c, 7);
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  const auto compare = [](const WeightMatrix& h, const Tensor& d) {
    std::vector<uint16_t> bits(h.size());
    ASSERT_EQ(cudaMemcpy(bits.data(), d.data, bits.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    size_t off = 0;
    for (size_t i = 0; i < bits.size(); ++i) {
      uint32_t u = uint32_t{bits[i]} << 16;
      float g;
      std::memcpy(&g, &u, 4);
      if (g != bf16_round(h.f32[i])) {
        ++off;
        // At most one bf16 step apart (double math on two machines).
        ASSERT_LE(std::fabs(g - bf16_round(h.f32[i])), std::fabs(h.f32[i]) * 0.0079f + 1e-30f) << i;
      }
    }
    EXPECT_LE(off, bits.size() / 10000) << "values differing from the host generator";
  };
  compare(host->embed, (*dev)->views().embed);
  compare(host->layers[1].w_gate_up, (*dev)->views().layers[1].w_gate_up);
  compare(host->lm_head, (*dev)->views().head);
}

struct RunnerCase {
  int head_dim;
  bool bias, llama3, tied, eager;
};

class GpuVsCpu : public ::testing::TestWithParam<RunnerCase> {};

// Three sequences: prompts prefilled together (one in two chunks, the second
// chunk beside a decode), then 48 greedy decode steps (CUDA graphs unless
// eager), with the CPU runner teacher-forced on the GPU's tokens.
TEST_P(GpuVsCpu, LogitsFollowTheCpuBackend) {
  const RunnerCase p = GetParam();
  const ModelConfig c = test_config(p.head_dim, p.bias, p.llama3, p.tied);
  const LlamaWeights w = bf16_exact_weights(c, 11);
  auto gpu = make_cuda_model_runner(w, small_options(p.eager));
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  CpuModelRunner cpu(w, 2, 2048, 16, {});
  const int32_t v = static_cast<int32_t>(c.vocab_size);

  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> tok(0, v - 1);
  std::vector<Seq> g(3), k(3);
  const int lens[3] = {37, 100, 5};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < lens[i]; ++j) g[i].tokens.push_back(tok(rng));
    for (int b = 0; b < 12; ++b) g[i].blocks.push_back(i * 12 + (11 - b) * 1 + 100);  // shuffled, disjoint
  }
  k = g;
  std::vector<float> gl, kl;
  std::vector<std::vector<int32_t>> plan = {{37, 60, 5}, {0, 40, 0}};
  int checked = 0, agreed = 0, steps = 0;
  double worst = 0;
  for (int s = 0; s < 50; ++s) {
    std::vector<int32_t> chunk = s < 2 ? plan[s] : std::vector<int32_t>{1, 1, 1};
    if (s == 1) {
      // seq 0 and 2 decode beside seq 1's second chunk (a mixed batch).
      chunk = {1, 40, 1};
    }
    step(**gpu, g, chunk, gl);
    step(cpu, k, chunk, kl);
    ASSERT_EQ(gl.size(), kl.size());
    const size_t rows = gl.size() / v;
    std::vector<int> owners;
    for (int i = 0; i < 3; ++i)
      if (chunk[i] > 0 && g[i].done == static_cast<int64_t>(g[i].tokens.size())) owners.push_back(i);
    ASSERT_EQ(rows, owners.size());
    for (size_t r = 0; r < rows; ++r) {
      const double e = rel_err(gl.data() + r * v, kl.data() + r * v, v);
      worst = std::max(worst, e);
      ASSERT_LT(e, 3e-2) << "step " << s << " row " << r;
      float margin;
      const int32_t want = argmax(kl.data() + r * v, v, &margin);
      const int32_t got = argmax(gl.data() + r * v, v);
      if (margin > 0.02f) {
        ++checked;
        agreed += got == want;
      }
      // Both continue with the GPU's choice.
      g[owners[r]].tokens.push_back(got);
      k[owners[r]].tokens.push_back(got);
    }
    ++steps;
  }
  RecordProperty("worst_rel_err", std::to_string(worst));
  std::printf("head_dim %d bias %d llama3 %d tied %d eager %d: worst relative error %.2e, greedy %d/%d agree\n",
              p.head_dim, p.bias, p.llama3, p.tied, p.eager, worst, agreed, checked);
  EXPECT_GT(checked, 60) << "too few steps with a clear winner: the check would be vacuous";
  EXPECT_EQ(agreed, checked);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuVsCpu,
                         ::testing::Values(RunnerCase{64, false, false, false, false},
                                           RunnerCase{128, false, false, false, false},
                                           RunnerCase{128, false, false, false, true},
                                           RunnerCase{64, true, true, true, false}));

// 64 sequences decoded together (graph bucket 64, cuBLAS GEMMs) and each
// alone (bucket 1, the small-M kernel): the same logits within bf16 noise.
TEST(CudaRunner, SixtyFourBatchedSequencesMatchEachAlone) {
  const ModelConfig c = test_config(128, false, false, false);
  const LlamaWeights w = bf16_exact_weights(c, 5);
  auto gpu = make_cuda_model_runner(w, small_options(false));
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  const int32_t v = static_cast<int32_t>(c.vocab_size);
  constexpr int kSeqs = 64, kSteps = 12;
  std::mt19937 rng(9);
  std::uniform_int_distribution<int32_t> tok(0, v - 1), len(1, 30);
  std::vector<Seq> alone(kSeqs);
  for (int i = 0; i < kSeqs; ++i) {
    const int n = len(rng);
    for (int j = 0; j < n; ++j) alone[i].tokens.push_back(tok(rng));
    for (int b = 0; b < 4; ++b) alone[i].blocks.push_back(i * 4 + b);
  }
  std::vector<Seq> batch = alone;
  // Alone: greedy, recording every step's logits.
  std::vector<std::vector<float>> ref(kSeqs);
  std::vector<float> l;
  for (int i = 0; i < kSeqs; ++i) {
    std::vector<Seq> one = {alone[i]};
    for (int s = 0; s <= kSteps; ++s) {
      step(**gpu, one, {static_cast<int32_t>(one[0].tokens.size() - one[0].done)}, l);
      ASSERT_EQ(l.size(), static_cast<size_t>(v));
      ref[i].insert(ref[i].end(), l.begin(), l.end());
      one[0].tokens.push_back(argmax(l.data(), v));
    }
    alone[i] = one[0];
  }
  // Together, teacher-forced on the alone runs' tokens.
  double worst = 0;
  for (int s = 0; s <= kSteps; ++s) {
    std::vector<int32_t> chunk(kSeqs);
    for (int i = 0; i < kSeqs; ++i) chunk[i] = static_cast<int32_t>(batch[i].tokens.size() - batch[i].done);
    step(**gpu, batch, chunk, l);
    ASSERT_EQ(l.size(), static_cast<size_t>(kSeqs) * v);
    for (int i = 0; i < kSeqs; ++i) {
      const double e = rel_err(l.data() + static_cast<size_t>(i) * v, ref[i].data() + static_cast<size_t>(s) * v, v);
      worst = std::max(worst, e);
      ASSERT_LT(e, 2e-2) << "seq " << i << " step " << s;
      batch[i].tokens.push_back(alone[i].tokens[batch[i].tokens.size()]);
    }
  }
  std::printf("64 batched vs alone: worst relative error %.2e\n", worst);
}

// Speculative verification chunks: several sequences each compute 1 + k
// tokens with num_logits = 1 + k (k = 0..4), beside a prefill chunk; every
// row follows the CPU runner's logits on the same chunk.
TEST(CudaRunner, VerifyChunksGiveEveryRowTheCpuLogits) {
  const ModelConfig c = test_config(128, false, false, false);
  const LlamaWeights w = bf16_exact_weights(c, 23);
  CudaRunnerOptions o = small_options(false);
  o.max_logits_per_seq = 5;
  auto gpu = make_cuda_model_runner(w, o);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  CpuModelRunner cpu(w, 2, 2048, 16, {});
  const int32_t v = static_cast<int32_t>(c.vocab_size);
  std::mt19937 rng(8);
  std::uniform_int_distribution<int32_t> tok(0, v - 1);
  constexpr int kSeqs = 5;
  std::vector<std::vector<int32_t>> tokens(kSeqs), blocks(kSeqs);
  for (int i = 0; i < kSeqs; ++i) {
    for (int j = 0; j < 20 + 7 * i; ++j) tokens[i].push_back(tok(rng));
    for (int b = 0; b < 6; ++b) blocks[i].push_back(i * 6 + b);
  }
  // Prefill all but the last 1 + k tokens, then one step verifying them.
  std::vector<StepSequence> prefill, verify;
  for (int i = 0; i < kSeqs; ++i) {
    const int32_t k = i;  // proposals verified by sequence i
    const auto len = static_cast<int64_t>(tokens[i].size());
    prefill.push_back({tokens[i], 0, static_cast<int32_t>(len - 1 - k), blocks[i], 0});
    verify.push_back({tokens[i], len - 1 - k, 1 + k, blocks[i], 1 + k});
  }
  std::vector<float> gl, kl;
  (*gpu)->forward_logits(prefill, gl);
  cpu.forward_logits(prefill, kl);
  (*gpu)->forward_logits(verify, gl);
  cpu.forward_logits(verify, kl);
  ASSERT_EQ(gl.size(), static_cast<size_t>(v) * (1 + 2 + 3 + 4 + 5));
  ASSERT_EQ(gl.size(), kl.size());
  double worst = 0;
  for (size_t r = 0; r < gl.size() / v; ++r) {
    const double e = rel_err(gl.data() + r * v, kl.data() + r * v, v);
    worst = std::max(worst, e);
    EXPECT_LT(e, 3e-2) << "row " << r;
  }
  std::printf("verify chunks: 15 rows, worst relative error %.2e\n", worst);
  // A uniform verify step (three sequences, each its last 5 tokens: what a
  // batch speculating K = 4 sends) replays the verify graph of bucket 4.
  std::vector<StepSequence> uniform;
  for (int i = 0; i < 3; ++i) {
    const auto len = static_cast<int64_t>(tokens[i].size());
    uniform.push_back({tokens[i], len - 5, 5, blocks[i], 5});
  }
  (*gpu)->forward_logits(uniform, gl);
  cpu.forward_logits(uniform, kl);
  ASSERT_EQ(gl.size(), static_cast<size_t>(v) * 15);
  ASSERT_EQ(gl.size(), kl.size());
  worst = 0;
  for (size_t r = 0; r < gl.size() / v; ++r) {
    const double e = rel_err(gl.data() + r * v, kl.data() + r * v, v);
    worst = std::max(worst, e);
    EXPECT_LT(e, 3e-2) << "uniform verify row " << r;
  }
  std::printf("uniform verify step (graph): 15 rows, worst relative error %.2e\n", worst);
}

// Sampling on the device (launch + collect) after eager prefills and graph
// decodes: the same step replayed (its K/V writes are idempotent) gives the
// logits the host Sampler turns into the very tokens the GPU sampler chose.
TEST(CudaRunner, DeviceSamplingMatchesTheHostSamplerOnTheSameLogits) {
  const ModelConfig c = test_config(128, false, false, false);
  const LlamaWeights w = bf16_exact_weights(c, 21);
  auto gpu = make_cuda_model_runner(w, small_options(false));
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  const int32_t v = static_cast<int32_t>(c.vocab_size);
  constexpr int kSeqs = 5;
  std::vector<Seq> seqs(kSeqs);
  std::vector<SamplingParams> params(kSeqs);
  std::vector<RequestGenerator> gens(kSeqs);
  std::mt19937 rng(4);
  std::uniform_int_distribution<int32_t> tok(0, v - 1);
  for (int i = 0; i < kSeqs; ++i) {
    for (int j = 0; j < 7 + 3 * i; ++j) seqs[i].tokens.push_back(tok(rng));
    for (int b = 0; b < 4; ++b) seqs[i].blocks.push_back(i * 4 + b);
    params[i].temperature = i % 2 == 0 ? 0.0f : 0.9f;  // greedy and seeded draws
    params[i].top_p = i == 3 ? 0.8f : 1.0f;
    gens[i].seed = 1000 + i;
  }
  Sampler host;
  int compared = 0;
  for (int s = 0; s < 8; ++s) {
    std::vector<StepSequence> step_seqs;
    for (Seq& q : seqs)
      step_seqs.push_back({q.tokens, q.done, static_cast<int32_t>(q.tokens.size() - q.done), q.blocks, 1});
    std::vector<float> logits;
    (*gpu)->forward_logits(step_seqs, logits);
    ASSERT_EQ(logits.size(), static_cast<size_t>(kSeqs) * v);
    std::vector<RequestGenerator> host_gens = gens;
    std::vector<SamplerRow> rows, host_rows;
    for (int i = 0; i < kSeqs; ++i) {
      const std::span<const int32_t> all(seqs[i].tokens);
      rows.push_back({{}, all, {}, &params[i], &gens[i]});
      host_rows.push_back({std::span<const float>(logits).subspan(static_cast<size_t>(i) * v, v), all, {},
                           &params[i], &host_gens[i]});
    }
    std::vector<SampledToken> on_device;
    (*gpu)->launch(step_seqs, rows);
    (*gpu)->collect(on_device);
    const std::vector<SampledToken> on_host = host.sample(host_rows);
    ASSERT_EQ(on_device.size(), on_host.size());
    for (int i = 0; i < kSeqs; ++i) {
      EXPECT_EQ(on_device[i].token, on_host[i].token) << "step " << s << " seq " << i;
      EXPECT_EQ(gens[i].step, host_gens[i].step) << "generators advance alike";
      ++compared;
      seqs[i].done = static_cast<int64_t>(seqs[i].tokens.size());
      seqs[i].tokens.push_back(on_device[i].token);
    }
  }
  EXPECT_EQ(compared, 8 * kSeqs);
}

// Hugging Face's bf16 model, saved by scripts/gpu_hf_reference.py into
// $EMBER_HF_REF: config + safetensors, the prompt and HF's greedy tokens
// (ids.txt: prompt length, then all ids) and HF's float32 logits for every
// position (logits.f32).
struct HfReference {
  LlamaWeights weights;
  int32_t prompt_len = 0;
  std::vector<int32_t> ids;
  std::vector<float> logits;  // [ids.size(), vocab]
};

void load_hf_reference(HfReference& ref) {
  const char* dir = std::getenv("EMBER_HF_REF");
  ASSERT_NE(dir, nullptr) << "set EMBER_HF_REF to the output of scripts/gpu_hf_reference.py";
  auto hf = HfModelDir::open(dir);
  ASSERT_TRUE(hf.ok()) << hf.error().message;
  auto w = load_llama_weights(*hf);
  ASSERT_TRUE(w.ok()) << w.error().message;
  ref.weights = std::move(*w);
  std::ifstream ids_file(std::string(dir) + "/ids.txt");
  int32_t id = 0;
  ids_file >> ref.prompt_len;
  while (ids_file >> id) ref.ids.push_back(id);
  ASSERT_GT(ref.prompt_len, 0);
  ASSERT_GT(ref.ids.size(), static_cast<size_t>(ref.prompt_len) + 32);
  ref.logits.resize(ref.ids.size() * ref.weights.config.vocab_size);
  std::ifstream lf(std::string(dir) + "/logits.f32", std::ios::binary);
  lf.read(reinterpret_cast<char*>(ref.logits.data()), static_cast<std::streamsize>(ref.logits.size() * 4));
  ASSERT_TRUE(lf.good()) << "logits.f32 is short";
}

// The same model through the CPU backend (float32 math on the bf16 weights):
// HF's bf16 logits are within bf16 noise of it (1.1e-2 on the dev machine), so
// the reference itself is sound before the GPU is compared with it.
TEST(CudaRunner, HuggingFaceReferenceAgreesWithTheCpuBackend) {
  HfReference ref;
  ASSERT_NO_FATAL_FAILURE(load_hf_reference(ref));
  const int32_t v = static_cast<int32_t>(ref.weights.config.vocab_size);
  CpuModelRunner cpu(std::move(ref.weights), 4, 64, 16, {});
  std::vector<Seq> s(1);
  s[0].tokens.assign(ref.ids.begin(), ref.ids.begin() + ref.prompt_len);
  for (int b = 0; b < 32; ++b) s[0].blocks.push_back(b);
  std::vector<float> l;
  step(cpu, s, {ref.prompt_len}, l);
  ASSERT_EQ(l.size(), static_cast<size_t>(v));
  const double e = rel_err(l.data(), ref.logits.data() + static_cast<size_t>(ref.prompt_len - 1) * v, v);
  std::printf("HF bf16 reference vs ember CPU (float32): relative error %.2e\n", e);
  EXPECT_LT(e, 3e-2);
}

// The GPU runner reproduces HF's logits along HF's greedy continuation.
TEST(CudaRunner, ReproducesHuggingFaceLogits) {
  HfReference ref;
  ASSERT_NO_FATAL_FAILURE(load_hf_reference(ref));
  const LlamaWeights* w = &ref.weights;
  const std::vector<int32_t>& ids = ref.ids;
  const std::vector<float>& hf_logits = ref.logits;
  const int32_t prompt_len = ref.prompt_len;
  const int32_t v = static_cast<int32_t>(w->config.vocab_size);

  for (bool eager : {true, false}) {
    auto gpu = make_cuda_model_runner(*w, small_options(eager));
    ASSERT_TRUE(gpu.ok()) << gpu.error().message;
    std::vector<Seq> s(1);
    s[0].tokens.assign(ids.begin(), ids.begin() + prompt_len);
    for (int b = 0; b < 32; ++b) s[0].blocks.push_back(b);
    std::vector<float> l;
    double worst = 0;
    int checked = 0, agreed = 0;
    for (size_t pos = prompt_len; pos <= ids.size() - 1; ++pos) {
      step(**gpu, s, {static_cast<int32_t>(s[0].tokens.size() - s[0].done)}, l);
      const float* hf_row = hf_logits.data() + (pos - 1) * v;  // logits at pos - 1 predict token pos
      const double e = rel_err(l.data(), hf_row, v);
      worst = std::max(worst, e);
      EXPECT_LT(e, 3e-2) << "position " << pos;
      float margin;
      const int32_t want = argmax(hf_row, v, &margin);
      if (margin > 0.05f) {
        ++checked;
        agreed += argmax(l.data(), v) == want;
      }
      s[0].tokens.push_back(ids[pos]);  // teacher-forced on HF's greedy continuation
    }
    std::printf("HF bf16 reference (%s): worst relative error %.2e, greedy %d/%d agree\n", eager ? "eager" : "graphs",
                worst, agreed, checked);
    EXPECT_GT(checked, 16);
    EXPECT_GE(agreed, checked - 1) << "greedy tokens must follow HF's where HF is not near a tie";
  }
}

// --quantization fp8 along HF's greedy continuation (prefill through the FP8
// GEMM with activations quantized per token, decode through the W8A16 gemv):
// the stated bound is a relative logits error under 0.15 against HF's bf16
// model; the greedy agreement is reported.
TEST(CudaRunner, Fp8StaysWithinItsBoundOfHuggingFace) {
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8";
  HfReference ref;
  ASSERT_NO_FATAL_FAILURE(load_hf_reference(ref));
  const int32_t v = static_cast<int32_t>(ref.weights.config.vocab_size);
  CudaRunnerOptions o = small_options(false);
  o.quantize_fp8 = true;
  auto gpu = make_cuda_model_runner(ref.weights, o);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  std::vector<Seq> s(1);
  s[0].tokens.assign(ref.ids.begin(), ref.ids.begin() + ref.prompt_len);
  for (int b = 0; b < 32; ++b) s[0].blocks.push_back(b);
  std::vector<float> l;
  double worst = 0, sum = 0;
  int rows = 0, checked = 0, agreed = 0;
  for (size_t pos = ref.prompt_len; pos <= ref.ids.size() - 1; ++pos) {
    step(**gpu, s, {static_cast<int32_t>(s[0].tokens.size() - s[0].done)}, l);
    const float* hf_row = ref.logits.data() + (pos - 1) * v;
    const double e = rel_err(l.data(), hf_row, v);
    worst = std::max(worst, e);
    sum += e;
    ++rows;
    EXPECT_LT(e, 0.15) << "position " << pos;
    float margin;
    const int32_t want = argmax(hf_row, v, &margin);
    if (margin > 0.05f) {
      ++checked;
      agreed += argmax(l.data(), v) == want;
    }
    s[0].tokens.push_back(ref.ids[pos]);
  }
  std::printf("fp8 vs HF bf16: mean relative error %.3e, worst %.3e, greedy %d/%d agree\n", sum / rows, worst, agreed,
              checked);
  RecordProperty("fp8_worst_rel_err", std::to_string(worst));
  RecordProperty("fp8_greedy_agree", std::to_string(agreed) + "/" + std::to_string(checked));
}

// `seqs` one-token prompts decoded greedily for `steps` steps on `gpu` and,
// teacher-forced on the GPU's tokens, on `cpu`: every row's logits within
// bf16 noise (3e-2 relative) and the same greedy token wherever the CPU's
// winner is clear; at least `min_checked` such rows. `what` names the report.
void expect_decode_follows_cpu(ModelRunner& gpu, ModelRunner& cpu, int seqs, int steps, int min_checked,
                               const char* what) {
  const int32_t v = cpu.vocab_size();
  std::vector<Seq> g(static_cast<size_t>(seqs));
  for (int i = 0; i < seqs; ++i) {
    g[i].tokens.push_back(17 + 100 * i);
    for (int b = 0; b < 8; ++b) g[i].blocks.push_back(i * 8 + b);
  }
  std::vector<Seq> k = g;
  const std::vector<int32_t> chunk(static_cast<size_t>(seqs), 1);
  std::vector<float> gl, kl;
  double worst = 0;
  int checked = 0, agreed = 0;
  for (int s = 0; s < steps; ++s) {
    step(gpu, g, chunk, gl);
    step(cpu, k, chunk, kl);
    ASSERT_EQ(gl.size(), kl.size());
    for (int r = 0; r < seqs; ++r) {
      const double e = rel_err(gl.data() + static_cast<size_t>(r) * v, kl.data() + static_cast<size_t>(r) * v, v);
      worst = std::max(worst, e);
      ASSERT_LT(e, 3e-2) << what << ": step " << s << " row " << r;
      float margin;
      const int32_t want = argmax(kl.data() + static_cast<size_t>(r) * v, v, &margin);
      const int32_t got = argmax(gl.data() + static_cast<size_t>(r) * v, v);
      if (margin > 0.02f) {
        ++checked;
        agreed += got == want;
      }
      g[r].tokens.push_back(got);
      k[r].tokens.push_back(got);
    }
  }
  std::printf("%s: worst relative error %.2e, greedy %d/%d agree\n", what, worst, agreed, checked);
  EXPECT_GT(checked, min_checked) << what;
  EXPECT_EQ(agreed, checked) << what;
}

// Decode steps alone (one-token prompts: every matrix product has M <= 8 and
// runs through gemv_fp8, bf16 activations times the FP8 weights) equal the
// CPU backend over the same weights dequantized on the host by
// kernels/quant/fp8.h (the quantizer the GPU matches bit for bit): bf16 noise
// only, and the same greedy tokens wherever the winner is clear.
TEST(CudaRunner, Fp8DecodeFollowsTheCpuOnTheDequantizedWeights) {
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8";
  const ModelConfig c = test_config(128, false, false, false);
  const LlamaWeights w = bf16_exact_weights(c, 31);
  LlamaWeights dq = bf16_exact_weights(c, 31);
  for (LayerWeights& l : dq.layers)
    for (WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate_up, &l.w_down}) {
      std::vector<uint8_t> codes(static_cast<size_t>(m->cols));
      for (int64_t r = 0; r < m->rows; ++r) {
        float* row = m->f32.data() + r * m->cols;
        const float scale = quant::quantize_row_fp8_e4m3(row, m->cols, codes.data());
        for (int64_t i = 0; i < m->cols; ++i) row[i] = quant::fp8_e4m3_to_float(codes[static_cast<size_t>(i)]) * scale;
      }
    }
  CudaRunnerOptions o = small_options(false);
  o.quantize_fp8 = true;
  auto gpu = make_cuda_model_runner(w, o);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  CpuModelRunner cpu(dq, 2, 2048, 16, {});
  expect_decode_follows_cpu(**gpu, cpu, 3, 64, 60, "fp8 decode vs CPU on dequantized weights");
}

// Prefill (240 rows: cuBLASLt's FP8 GEMM, activations quantized per token)
// with the norm and the SiLU writing those activations quantized (the default)
// gives the logits of the same runner quantizing them in linear
// (EMBER_FP8_FUSED_QUANT=0) bit for bit: the fused kernels write the same codes
// and scales (Fp8Gpu.FusedNormAndSiluQuantizeLikeTheQuantizer checks them alone).
// Likewise the GEMMs' output scales applied by the SiLU, the norms and the rope
// (EMBER_FP8_FUSED_SCALES, EMBER_FP8_QKV_SCALES_IN_ROPE) against their passes.
TEST(CudaRunner, Fp8PrefillWithQuantizingNormAndSiluIsBitIdentical) {
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8";
  const ModelConfig c = test_config(128, false, false, false);
  const LlamaWeights w = bf16_exact_weights(c, 37);
  {  // 240 rows take cuBLASLt's path at each of the three projections, so the fused kernels run (the test can fail)
    auto gemm = gpu::Gemm::create();
    ASSERT_TRUE(gemm.ok());
    const int h = static_cast<int>(c.hidden_size), inter = static_cast<int>(c.intermediate_size);
    const int qkv = static_cast<int>((c.num_heads + 2 * c.num_kv_heads) * c.head_dim);
    EXPECT_TRUE((*gemm)->fp8_quantizes_x(240, qkv, h));
    EXPECT_TRUE((*gemm)->fp8_quantizes_x(240, 2 * inter, h));
    EXPECT_TRUE((*gemm)->fp8_quantizes_x(240, h, inter));
  }
  std::vector<float> logits[2];
  std::string profile;  // the fused runner's op profile: which forms ran
  for (int fused = 0; fused < 2; ++fused) {
    setenv("EMBER_FP8_FUSED_QUANT", fused ? "1" : "0", 1);
    setenv("EMBER_FP8_FUSED_SCALES", fused ? "1" : "0", 1);  // gate/up's scales in the SiLU, o's and down's in the norm
    setenv("EMBER_FP8_QKV_SCALES_IN_ROPE", fused ? "1" : "0", 1);  // q/k/v's in the rope
    if (fused) {
      setenv("EMBER_CUDA_PROFILE", "1", 1);
      testing::internal::CaptureStderr();
    }
    {
      CudaRunnerOptions o = small_options(false);
      o.quantize_fp8 = true;
      auto gpu = make_cuda_model_runner(w, o);
      unsetenv("EMBER_FP8_FUSED_QUANT");
      unsetenv("EMBER_FP8_FUSED_SCALES");
      unsetenv("EMBER_FP8_QKV_SCALES_IN_ROPE");
      unsetenv("EMBER_CUDA_PROFILE");
      ASSERT_TRUE(gpu.ok()) << gpu.error().message;
      std::vector<Seq> g(3);
      for (int i = 0; i < 3; ++i) {
        for (int t = 0; t < 80; ++t) g[i].tokens.push_back((17 + 100 * i + 7 * t) % static_cast<int32_t>(c.vocab_size));
        for (int b = 0; b < 8; ++b) g[i].blocks.push_back(i * 8 + b);
      }
      step(**gpu, g, {80, 80, 80}, logits[fused]);
    }  // (the profile prints as the runner goes)
    if (fused) profile = testing::internal::GetCapturedStderr();
  }
  {  // Where cuBLASLt scales in a pass of its own, the fused forms must have run (else the test proves nothing).
    auto gemm = gpu::Gemm::create();
    ASSERT_TRUE(gemm.ok());
    const int h = static_cast<int>(c.hidden_size);
    const int qkv = static_cast<int>((c.num_heads + 2 * c.num_kv_heads) * c.head_dim);
    if ((*gemm)->fp8_path(240, qkv, h).find("scale pass") != std::string::npos) {
      EXPECT_NE(profile.find("linear_silu_mul_fp8"), std::string::npos) << profile;
      EXPECT_NE(profile.find("linear_scaled_by_next_op " + std::to_string(qkv) + "x" + std::to_string(h)),
                std::string::npos)
          << profile;
    } else {
      std::printf("cuBLASLt scales this GEMM itself here (%s): the scale fusions do not apply\n",
                  (*gemm)->fp8_path(240, qkv, h).c_str());
    }
  }
  ASSERT_FALSE(logits[0].empty());
  ASSERT_EQ(logits[0].size(), logits[1].size());
  EXPECT_EQ(std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)), 0);
}

// FP8 decode at 1-3 rows (EMBER_FP8_GEMV_MAX_M=4) with the rope and cache write and the SiLU in the
// GEMV's epilogue (EMBER_FP8_NORM_SPLIT=0) gives the logits of the GEMV
// followed by those ops (EMBER_FP8_GEMV_EPILOGUES=0) bit for bit, and with the
// norms split across the GEMVs too (the default) within bf16 rounding of them
// and the same from run to run (a fixed order), in CUDA graphs and eager, with the bf16 and the FP8 KV cache
// (Fp8Gpu.GemvEpiloguesMatchTheGemvThenTheOp and
// Fp8Gpu.SplitNormMatchesTheNormKernelWithinRounding check the kernels alone).
TEST(CudaRunner, Fp8DecodeWithGemvEpiloguesIsBitIdentical) {
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8";
  const ModelConfig c = test_config(128, false, false, false);
  const LlamaWeights w = bf16_exact_weights(c, 41);
  // The dispatch gives the CUDA-core GEMV (and so the epilogues) 1-2 rows
  // (fp8.h); widened to 4, the kernels' limit, so that 3-row steps run them too.
  setenv("EMBER_FP8_GEMV_MAX_M", "4", 1);
  struct Unset {
    ~Unset() { unsetenv("EMBER_FP8_GEMV_MAX_M"); }
  } unset;
  {  // 1-3 rows take gemv_fp8 at q/k/v and gate/up, so the epilogue forms run (the test can fail)
    auto gemm = gpu::Gemm::create();
    ASSERT_TRUE(gemm.ok());
    const int h = static_cast<int>(c.hidden_size), inter = static_cast<int>(c.intermediate_size);
    const int qkv = static_cast<int>((c.num_heads + 2 * c.num_kv_heads) * c.head_dim);
    for (int m = 1; m <= 3; ++m) {
      EXPECT_TRUE((*gemm)->fp8_uses_gemv(m, qkv, h));
      EXPECT_TRUE((*gemm)->fp8_uses_gemv(m, 2 * inter, h));
    }
  }
  for (bool eager : {false, true})
    for (bool kv_fp8 : {false, true}) {
      SCOPED_TRACE(testing::Message() << (eager ? "eager" : "graphs") << (kv_fp8 ? ", fp8 cache" : ", bf16 cache"));
      // 0: no epilogues; 1: the epilogues, norms unsplit; 2 and 3: the default (both), twice.
      std::vector<float> logits[4];
      std::string profile[4];  // eager: the op profiles, which name the fused forms
      const bool profiled = eager;
      for (int mode = 0; mode < 4; ++mode) {
        setenv("EMBER_FP8_GEMV_EPILOGUES", mode > 0 ? "1" : "0", 1);
        setenv("EMBER_FP8_NORM_SPLIT", mode > 1 ? "1" : "0", 1);
        if (profiled) {
          setenv("EMBER_CUDA_PROFILE", "1", 1);
          testing::internal::CaptureStderr();
        }
        CudaRunnerOptions o = small_options(eager);
        o.quantize_fp8 = true;
        o.kv_cache_fp8 = kv_fp8;
        auto gpu = make_cuda_model_runner(w, o);
        unsetenv("EMBER_FP8_GEMV_EPILOGUES");
        unsetenv("EMBER_FP8_NORM_SPLIT");
        unsetenv("EMBER_CUDA_PROFILE");
        if (!gpu.ok() && profiled) testing::internal::GetCapturedStderr();
        ASSERT_TRUE(gpu.ok()) << gpu.error().message;
        const auto token = [&](int a, int b) { return (23 + 100 * a + 11 * b) % static_cast<int32_t>(c.vocab_size); };
        std::vector<Seq> g(3);
        for (int i = 0; i < 3; ++i) {
          for (int t = 0; t < 8; ++t) g[i].tokens.push_back(token(i, t));
          for (int b = 0; b < 8; ++b) g[i].blocks.push_back(i * 8 + b);
        }
        std::vector<float> out;
        step(**gpu, g, {8, 8, 8}, out);  // a prompt each, then decode steps of 3, 2 and 1 rows
        for (int s = 0; s < 24; ++s) {
          const int rows = s < 8 ? 3 : s < 16 ? 2 : 1;
          std::vector<int32_t> chunk(3, 0);
          for (int i = 0; i < rows; ++i) {
            g[i].tokens.push_back(token(i, 8 + s));
            chunk[i] = 1;
          }
          step(**gpu, g, chunk, out);
          ASSERT_EQ(out.size(), static_cast<size_t>(rows) * c.vocab_size);
          logits[mode].insert(logits[mode].end(), out.begin(), out.end());
        }
        gpu.value().reset();  // (the profile prints as the runner goes)
        if (profiled) profile[mode] = testing::internal::GetCapturedStderr();
      }
      if (profiled) {
        for (const char* op : {"linear_rope_and_cache_write", "linear_silu_mul m<=4"}) {
          EXPECT_EQ(profile[0].find(op), std::string::npos) << profile[0];  // (=0 honoured)
          EXPECT_NE(profile[1].find(op), std::string::npos) << profile[1];
          EXPECT_NE(profile[2].find(op), std::string::npos) << profile[2];
        }
        EXPECT_EQ(profile[1].find("linear_add_for_next_norm"), std::string::npos) << profile[1];
        EXPECT_NE(profile[2].find("linear_add_for_next_norm"), std::string::npos) << profile[2];
      }
      ASSERT_FALSE(logits[0].empty());
      ASSERT_EQ(logits[0].size(), logits[1].size());
      ASSERT_EQ(logits[0].size(), logits[2].size());
      for (float v : logits[0]) ASSERT_TRUE(std::isfinite(v));
      EXPECT_EQ(std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)), 0);
      // The split norms: each step's logits within 1/32 of their rms of the unsplit ones.
      const size_t v = static_cast<size_t>(c.vocab_size);
      double worst = 0;
      for (size_t row = 0; row < logits[1].size() / v; ++row) {
        double sq = 0, diff = 0;
        for (size_t i = row * v; i < (row + 1) * v; ++i) {
          sq += static_cast<double>(logits[1][i]) * logits[1][i];
          diff = std::max(diff, std::abs(static_cast<double>(logits[2][i]) - logits[1][i]));
        }
        worst = std::max(worst, diff / std::sqrt(sq / static_cast<double>(v)));
      }
      std::printf("split norms: largest logit difference %.3g of the row's rms\n", worst);
      EXPECT_LE(worst, 1.0 / 32);
      EXPECT_NE(std::memcmp(logits[1].data(), logits[2].data(), logits[1].size() * sizeof(float)), 0)
          << "the split norms changed nothing: did they run?";
      ASSERT_EQ(logits[3].size(), logits[2].size());
      EXPECT_EQ(std::memcmp(logits[2].data(), logits[3].data(), logits[2].size() * sizeof(float)), 0)
          << "the split norms from run to run";
    }
}

// An FP8 checkpoint's weights (codes and a scale a row, as the loader keeps
// them from F8_E4M3 tensors: tests/unit/test_fp8_checkpoint.cpp checks that
// on tests/fixtures/hf_tiny_fp8, whose head size of 16 the GPU's attention does
// not take) uploaded as they are, no bf16 round trip, and decoded on the GPU,
// equal the CPU backend on the same weights dequantized (dequantize_fp8), within
// bf16 noise (decode steps only: the gemv keeps activations bf16).
TEST(CudaRunner, Fp8CheckpointDecodeFollowsTheCpu) {
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8";
  LlamaWeights w = bf16_exact_weights(test_config(64, false, false, false), 43);
  for (LayerWeights& l : w.layers) {
    for (WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate_up, &l.w_down}) {
      m->raw.resize(static_cast<size_t>(m->rows * m->cols));
      m->row_scale.resize(static_cast<size_t>(m->rows));
      for (int64_t r = 0; r < m->rows; ++r)
        m->row_scale[r] =
            quant::quantize_row_fp8_e4m3(m->f32.data() + r * m->cols, m->cols, m->raw.data() + r * m->cols);
      m->f32.clear();
      m->dtype = DType::kF8E4M3;
    }
  }
  ASSERT_TRUE(has_fp8(w));
  auto gpu = make_cuda_model_runner(w, small_options(false));
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  dequantize_fp8(w);
  CpuModelRunner cpu(std::move(w), 2, 2048, 16, {});
  expect_decode_follows_cpu(**gpu, cpu, 2, 48, 40, "FP8 checkpoint on the GPU vs CPU");
}

// A head size the GPU's attention kernels do not take (the FP8 fixture's 16) is
// an error when the runner is made, not a crash at its first step.
TEST(CudaRunner, UnsupportedHeadSizeIsAnErrorAtStart) {
  auto hf = HfModelDir::open("tests/fixtures/hf_tiny_fp8");  // (gpu_check.sh runs from the repository root)
  ASSERT_TRUE(hf.ok()) << hf.error().message;
  auto w = load_llama_weights(*hf);
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto gpu = make_cuda_model_runner(*w, small_options(false));
  ASSERT_FALSE(gpu.ok());
  EXPECT_NE(gpu.error().message.find("head size of 64 or 128"), std::string::npos) << gpu.error().message;
}

// --kv-cache-dtype fp8: a runner whose cache holds E4M3 codes (per-layer
// k_scale / v_scale as a checkpoint's, not 1) against the bf16-cache runner on
// the same weights, teacher-forced on the bf16 runner's greedy tokens: 3
// prompts prefilled in 4 chunks each, then decode steps through the CUDA graphs.
// E4M3 keeps 3 mantissa bits (relative rounding up to 2^-4 per element), so
// the stated bound is a relative logits error under 0.1 per row; the greedy
// agreement where bf16's winner is clear (margin > 0.05) is reported, and
// where the margin exceeds twice the row's largest difference it must hold.
// calculate: the scales from the first step's K and V (--calculate-kv-scales) instead of the layers' own.
void check_fp8_kv_cache(bool calculate) {
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8";
  const ModelConfig c = test_config(128, false, true, false);
  LlamaWeights w = bf16_exact_weights(c, 41);
  // k and v here have a standard deviation near 0.5: codes up to ~200 of 448.
  const float scales[][2] = {{0.0131f, 0.0113f}, {0.0207f, 0.0171f}};
  for (size_t l = 0; l < w.layers.size(); ++l) {
    w.layers[l].k_scale = scales[l % 2][0];
    w.layers[l].v_scale = scales[l % 2][1];
  }
  auto bf16_cache = make_cuda_model_runner(w, small_options(false));
  ASSERT_TRUE(bf16_cache.ok()) << bf16_cache.error().message;
  CudaRunnerOptions o = small_options(false);
  o.kv_cache_fp8 = true;
  o.calculate_kv_scales = calculate;
  auto fp8_cache = make_cuda_model_runner(w, o);
  ASSERT_TRUE(fp8_cache.ok()) << fp8_cache.error().message;
  const int32_t v = static_cast<int32_t>(c.vocab_size);
  std::vector<Seq> ref(3);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> token(0, v - 1);
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i].tokens.resize(40 + 25 * i);
    for (int32_t& t : ref[i].tokens) t = token(rng);
    for (int b = 0; b < 16; ++b) ref[i].blocks.push_back(static_cast<int32_t>(i) * 16 + b);
  }
  std::vector<Seq> got = ref;
  std::vector<float> rl, gl;
  double worst = 0, sum = 0;
  // Greedy agreement is reported where bf16's top-2 gap exceeds 0.05, and required where it exceeds twice the
  // row's largest logit difference (there no error within the bound can flip the argmax).
  int rows = 0, checked = 0, agreed = 0, clear = 0;
  auto compare_rows = [&] {
    ASSERT_EQ(rl.size(), gl.size());
    for (size_t r = 0; r < rl.size() / v; ++r) {
      const float* want = rl.data() + r * v;
      const float* have = gl.data() + r * v;
      const double e = rel_err(have, want, v);
      worst = std::max(worst, e);
      sum += e;
      ++rows;
      EXPECT_LT(e, 0.1) << "row " << rows;
      float margin, largest_diff = 0;
      for (int32_t i = 0; i < v; ++i) largest_diff = std::max(largest_diff, std::fabs(have[i] - want[i]));
      const int32_t best = argmax(want, v, &margin);
      const bool same = argmax(have, v) == best;
      if (margin > 0.05f) {
        ++checked;
        agreed += same;
      }
      if (margin > 2 * largest_diff) {
        ++clear;
        EXPECT_TRUE(same) << "row " << rows << ": top-2 gap " << margin << ", largest logit difference "
                          << largest_diff;
      }
    }
  };
  // Prefill: a quarter of each prompt a step, so all three end (and give logits) in the fourth.
  for (int part = 0; part < 4; ++part) {
    std::vector<int32_t> chunk;
    for (const Seq& s : ref) {
      const int64_t quarter = (static_cast<int64_t>(s.tokens.size()) + 3) / 4;
      chunk.push_back(static_cast<int32_t>(std::min<int64_t>(quarter, s.tokens.size() - s.done)));
    }
    step(**bf16_cache, ref, chunk, rl);
    step(**fp8_cache, got, chunk, gl);
    compare_rows();
  }
  const std::vector<int32_t> one(ref.size(), 1);
  for (int s = 0; s < 48; ++s) {
    for (size_t i = 0; i < ref.size(); ++i) {
      const int32_t next = argmax(rl.data() + i * v, v);
      ref[i].tokens.push_back(next);
      got[i].tokens.push_back(next);
    }
    step(**bf16_cache, ref, one, rl);
    step(**fp8_cache, got, one, gl);
    compare_rows();
  }
  std::printf("fp8 KV cache (%s) vs bf16 cache: mean relative logits error %.3e, worst %.3e, greedy %d/%d agree "
              "where the top-2 gap > 0.05 (%d rows with a gap beyond the error: all must agree)\n",
              calculate ? "calculated scales" : "the layers' scales", sum / rows, worst, agreed, checked, clear);
  const std::string tag = calculate ? "kv_fp8_calculated_" : "kv_fp8_";
  testing::Test::RecordProperty(tag + "worst_rel_err", std::to_string(worst));
  testing::Test::RecordProperty(tag + "greedy_agree", std::to_string(agreed) + "/" + std::to_string(checked));
  EXPECT_GT(checked, 50);
}

TEST(CudaRunner, Fp8KvCacheStaysWithinItsBoundOfTheBf16Cache) { check_fp8_kv_cache(false); }

// The first step (the prompts' first quarters, run eager though graphs exist) sets the scales; the rest replays.
TEST(CudaRunner, Fp8KvCacheWithCalculatedScalesStaysWithinItsBound) { check_fp8_kv_cache(true); }

}  // namespace
}  // namespace ember
