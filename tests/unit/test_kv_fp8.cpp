// The FP8 KV cache on the CPU backend (--kv-cache-dtype fp8, kernels/backend.h): the cache write stores exactly
// kernels/quant/fp8.h's codes of what a float32 cache would hold, attention over the codes equals attention over
// their values (code * scale) in a float32 cache, and the whole model with an FP8 cache stays close to the float32
// one. These are also the reference the GPU's FP8 cache is checked against (tests/gpu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/model_runner.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/quant/fp8.h"
#include "models/formats/gguf.h"
#include "models/llama_decoder.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

Tensor cache_tensor(void* data, DType dtype, const float* scale, int64_t blocks, int64_t block_size, int64_t hkv,
                    int64_t d) {
  Tensor t = Tensor::of(data, dtype, {blocks, block_size, hkv, d});
  t.scale = scale;
  return t;
}

TEST(KvCacheFp8, CacheWriteStoresTheCodesOfWhatAFloatCacheHolds) {
  CpuBackend be(2);
  const int64_t t_count = 5, hq = 4, hkv = 2, d = 16, block_size = 4, num_blocks = 3;
  const int64_t n = num_blocks * block_size * hkv * d;
  RopeConfig rope;
  ForwardInputs in;
  in.positions = {0, 1, 7, 300, 4095};
  in.token_ids.assign(t_count, 0);
  in.slot_mapping = {5, 0, -1, 11, 6};  // -1: padding, not cached
  // Values beyond the codes' range at this scale saturate (|v| / scale up to 1000 > 448).
  const auto q0 = random_vec(t_count * hq * d, 1, -2, 2), k0 = random_vec(t_count * hkv * d, 2, -2, 2),
             v = random_vec(t_count * hkv * d, 3, -10, 10);
  const float k_scale = 0.0123f, v_scale = 0.01f;

  std::vector<float> q = q0, k = k0, kf(n, 0.0f), vf(n, 0.0f);
  Tensor qt = Tensor::f32(q.data(), {t_count, hq * d}), kt = Tensor::f32(k.data(), {t_count, hkv * d});
  Tensor kft = cache_tensor(kf.data(), DType::kF32, nullptr, num_blocks, block_size, hkv, d);
  Tensor vft = cache_tensor(vf.data(), DType::kF32, nullptr, num_blocks, block_size, hkv, d);
  be.rope_and_cache_write(qt, kt, Tensor::f32(v.data(), {t_count, hkv * d}), in, rope, d, kft, vft);

  std::vector<uint8_t> kc(n, 0xAA), vc(n, 0xAA);
  std::vector<float> q8 = q0, k8 = k0;
  Tensor q8t = Tensor::f32(q8.data(), {t_count, hq * d}), k8t = Tensor::f32(k8.data(), {t_count, hkv * d});
  Tensor kct = cache_tensor(kc.data(), DType::kF8E4M3, &k_scale, num_blocks, block_size, hkv, d);
  Tensor vct = cache_tensor(vc.data(), DType::kF8E4M3, &v_scale, num_blocks, block_size, hkv, d);
  be.rope_and_cache_write(q8t, k8t, Tensor::f32(v.data(), {t_count, hkv * d}), in, rope, d, kct, vct);

  EXPECT_EQ(q8, q);  // q and k are rotated as before
  EXPECT_EQ(k8, k);
  int saturated = 0;
  for (int64_t s = 0; s < num_blocks * block_size; ++s) {
    const bool written = std::find(in.slot_mapping.begin(), in.slot_mapping.end(), s) != in.slot_mapping.end();
    for (int64_t i = s * hkv * d; i < (s + 1) * hkv * d; ++i) {
      if (!written) {
        ASSERT_EQ(kc[i], 0xAA) << "slot " << s << " written";
        ASSERT_EQ(vc[i], 0xAA);
        continue;
      }
      ASSERT_EQ(kc[i], quant::fp8_e4m3_from_float(kf[i] / k_scale)) << "element " << i;
      ASSERT_EQ(vc[i], quant::fp8_e4m3_from_float(vf[i] / v_scale)) << "element " << i;
      saturated += (vc[i] & 0x7F) == 126;
    }
  }
  EXPECT_GT(saturated, 0);  // the test reaches the saturating range
}

// Three sequences (a fresh prefill, a decode, a later chunk) over a shuffled pool, GQA: attention over FP8 codes
// against attention over a float32 cache holding their values. Exact precision: the same loop over the same
// floats, so the same bits. Fast precision (the AVX2 kernel): the scales are applied once per score and once to
// the output instead of to every element, which is exact for powers of two and within rounding otherwise.
void check_attention_over_codes(CpuPrecision precision, float k_scale, float v_scale, bool bitwise) {
  CpuBackend be(3, precision);
  const int64_t hq = 6, hkv = 2, d = 32, block_size = 4, num_blocks = 24, max_blocks = 8;
  const std::vector<int32_t> cached = {0, 21, 13}, chunk = {7, 1, 9};
  ForwardInputs in;
  in.max_blocks_per_seq = max_blocks;
  in.query_start_loc = {0};
  std::vector<int32_t> pool(num_blocks);
  for (int i = 0; i < num_blocks; ++i) pool[i] = i;
  std::shuffle(pool.begin(), pool.end(), std::mt19937(7));
  in.block_tables.assign(3 * max_blocks, -1);
  int next = 0;
  for (int64_t b = 0; b < 3; ++b) {
    in.seq_lens.push_back(cached[b] + chunk[b]);
    in.query_start_loc.push_back(in.query_start_loc.back() + chunk[b]);
    for (int64_t j = 0; j < (in.seq_lens[b] + block_size - 1) / block_size; ++j)
      in.block_tables[b * max_blocks + j] = pool[next++];
  }
  const int64_t t_count = in.query_start_loc.back(), n = num_blocks * block_size * hkv * d;
  in.token_ids.assign(t_count, 0);
  std::mt19937 rng(11);
  std::vector<uint8_t> kc(n), vc(n);
  for (size_t i = 0; i < kc.size(); ++i) {  // every finite code (0x7F and 0xFF are NaN)
    do kc[i] = static_cast<uint8_t>(rng());
    while ((kc[i] & 0x7F) == 0x7F);
    do vc[i] = static_cast<uint8_t>(rng());
    while ((vc[i] & 0x7F) == 0x7F);
  }
  std::vector<float> kf(n), vf(n);
  for (size_t i = 0; i < kc.size(); ++i) {
    kf[i] = quant::fp8_e4m3_to_float(kc[i]) * k_scale;
    vf[i] = quant::fp8_e4m3_to_float(vc[i]) * v_scale;
  }
  // Codes reach +-448: queries small enough that the scores stay in a useful softmax range.
  auto q = random_vec(t_count * hq * d, 12, -0.02f / k_scale, 0.02f / k_scale);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> want(t_count * hq * d), got(want.size());
  Tensor wt = Tensor::f32(want.data(), {t_count, hq * d}), gt = Tensor::f32(got.data(), {t_count, hq * d});
  const Tensor qt = Tensor::f32(q.data(), {t_count, hq * d});
  be.paged_attention(qt, cache_tensor(kf.data(), DType::kF32, nullptr, num_blocks, block_size, hkv, d),
                     cache_tensor(vf.data(), DType::kF32, nullptr, num_blocks, block_size, hkv, d), in, hq, scale, wt);
  be.paged_attention(qt, cache_tensor(kc.data(), DType::kF8E4M3, &k_scale, num_blocks, block_size, hkv, d),
                     cache_tensor(vc.data(), DType::kF8E4M3, &v_scale, num_blocks, block_size, hkv, d), in, hq, scale,
                     gt);
  float largest = 0;
  for (float w : want) largest = std::max(largest, std::abs(w));
  ASSERT_GT(largest, 0.0f);
  for (size_t i = 0; i < want.size(); ++i) {
    if (bitwise) {
      ASSERT_EQ(got[i], want[i]) << "at " << i;
    } else {
      ASSERT_NEAR(got[i], want[i], 1e-5f * largest) << "at " << i;
    }
  }
}

TEST(KvCacheFp8, ExactAttentionOverCodesIsAttentionOverTheirValues) {
  check_attention_over_codes(CpuPrecision::kExact, 0.0123f, 0.37f, true);
}

TEST(KvCacheFp8, FastAttentionOverCodesIsAttentionOverTheirValues) {
  check_attention_over_codes(CpuPrecision::kFast, 0.25f, 2.0f, true);
  check_attention_over_codes(CpuPrecision::kFast, 0.0123f, 0.37f, false);
}

// --calculate-kv-scales' op (Backend::set_kv_scale) against the largest element, or rotation pair's norm, found
// here in double; columns outside [col, col + width) are ignored even where larger.
TEST(KvCacheFp8, SetKvScaleTakesTheLargestElementOrRotationPair) {
  CpuBackend be(1);
  const int64_t rows = 7, d = 16, col = 32, width = 3 * d, cols = col + 2 * width;
  auto x = random_vec(rows * cols, 21, -3, 3);
  for (int64_t t = 0; t < rows; ++t) x[t * cols + 5] = 50.0f, x[t * cols + col + width + 2] = -60.0f;  // outside
  double elem = 0, pair = 0;
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t j = 0; j < width; ++j) {
      const double a = x[t * cols + col + j];
      elem = std::max(elem, std::abs(a));
      if (j % d < d / 2) pair = std::max(pair, std::hypot(a, static_cast<double>(x[t * cols + col + j + d / 2])));
    }
  ASSERT_GT(pair, elem);  // the two definitions differ here
  uint8_t codes[1];
  float k_scale = 1.0f, v_scale = 1.0f;
  Tensor kc = cache_tensor(codes, DType::kF8E4M3, &k_scale, 1, 1, 1, 1);
  Tensor vc = cache_tensor(codes, DType::kF8E4M3, &v_scale, 1, 1, 1, 1);
  const Tensor xt = Tensor::f32(x.data(), {rows, cols});
  be.set_kv_scale(xt, col, width, d, 200.0f, kc);
  be.set_kv_scale(xt, col, width, 0, 100.0f, vc);
  EXPECT_NEAR(k_scale, pair / 200, 1e-6 * pair / 200);
  EXPECT_NEAR(v_scale, elem / 100, 1e-6 * elem / 100);
  // Nothing but zeros there: the scale stays.
  std::vector<float> zeros(rows * cols, 0.0f);
  be.set_kv_scale(Tensor::f32(zeros.data(), {rows, cols}), col, width, d, 200.0f, kc);
  EXPECT_NEAR(k_scale, pair / 200, 1e-6 * pair / 200);
}

// The decoder with --calculate-kv-scales on a small random model (GQA, the fused and the separate q/k/v
// projections): the first forward sets every layer's scales before writing, so the largest stored K element lands
// between 200 / sqrt(2) and 200 (a rotation pair's norm bounds its elements, and one of the two keeps at least
// norm / sqrt(2)) and the largest V element on 100, in E4M3 codes; the next forward keeps the scales.
void check_calculated_scales(bool fuse_qkv) {
  ModelConfig c;
  c.architecture = "llama";
  c.hidden_size = 64;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 96;
  c.num_layers = 3;
  c.vocab_size = 64;
  c.max_position_embeddings = 256;
  Result<LlamaWeights> w = make_dummy_weights(c, 5);
  ASSERT_TRUE(w.ok()) << w.error().message;
  DecoderWeights views = host_weight_views(*w);
  std::vector<WeightMatrix> stacked;  // the fused projection, as the CUDA runner uploads it
  stacked.reserve(w->layers.size());
  for (size_t l = 0; fuse_qkv && l < w->layers.size(); ++l) {
    WeightMatrix& m = stacked.emplace_back(w->layers[l].wq);
    m.append_rows(w->layers[l].wk);
    m.append_rows(w->layers[l].wv);
    views.layers[l].wqkv = m.view();
  }
  CpuBackend be(2);
  LlamaDecoder decoder(std::move(views), be);
  KvCache cache = KvCache::allocate(c, 8, 16, DType::kF8E4M3);
  decoder.calculate_kv_scales_next_forward();
  ASSERT_TRUE(decoder.kv_scales_pending());
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 37) % 64);
  const std::vector<int32_t> blocks = {3, 0, 6, 1};
  ForwardInputs in;
  std::vector<float> logits;
  const StepSequence prefill{std::span<const int32_t>(tokens).first(39), 0, 39, blocks, 1};
  build_forward_inputs(std::span<const StepSequence>(&prefill, 1), 16, in);
  decoder.forward(in, cache, logits);
  EXPECT_FALSE(decoder.kv_scales_pending());
  const std::vector<float> k_scales = cache.k_scale, v_scales = cache.v_scale;
  const int64_t row = c.num_kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    EXPECT_NE(k_scales[l], 1.0f);
    float k_max = 0, v_max = 0;
    for (int64_t p = 0; p < 39; ++p) {
      const int64_t slot = blocks[p / 16] * 16 + p % 16;
      for (int64_t i = 0; i < row; ++i) {
        k_max = std::max(k_max, std::abs(quant::fp8_e4m3_to_float(cache.k_fp8[l][slot * row + i])));
        v_max = std::max(v_max, std::abs(quant::fp8_e4m3_to_float(cache.v_fp8[l][slot * row + i])));
      }
    }
    EXPECT_GE(k_max, 144.0f) << "layer " << l;  // E4M3 rounds 200 / sqrt(2) = 141.4 to 144
    EXPECT_LE(k_max, 208.0f) << "layer " << l;  // and 200 to 192 or 208
    EXPECT_TRUE(v_max == 96.0f || v_max == 104.0f) << "layer " << l << ": " << v_max;
  }
  const StepSequence decode{tokens, 39, 1, blocks, 1};
  build_forward_inputs(std::span<const StepSequence>(&decode, 1), 16, in);
  decoder.forward(in, cache, logits);
  EXPECT_EQ(cache.k_scale, k_scales);
  EXPECT_EQ(cache.v_scale, v_scales);
}

TEST(KvCacheFp8, CalculatedScalesComeFromTheFirstStepAndStay) {
  check_calculated_scales(true);
  check_calculated_scales(false);
}

// The default model (SmolLM2-135M Q4_1, 30 layers, 3 KV heads of 64), as `ember serve` runs it, with an FP8 cache at
// scale 1 (vLLM's default without calibrated scales) and with scales calculated from the prompt
// (--calculate-kv-scales), each against its float32 cache: a 40-token prompt's last logits, and 32 greedy tokens.
TEST(KvCacheFp8, SmolLM2WithAnFp8CacheStaysCloseToFloat32) {
  const char* env = std::getenv("EMBER_DEFAULT_MODEL");
  const char* home = std::getenv("HOME");
  const std::string path = env != nullptr && *env != 0
                               ? env
                               : std::string(home ? home : "") + "/.cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  Result<GgufFile> file = GgufFile::open(path);
  ASSERT_TRUE(file.ok()) << "default model: " << file.error().message << " (scripts/setup.sh fetches it)";
  Result<ModelConfig> config = model_config_from_gguf(*file);
  ASSERT_TRUE(config.ok()) << config.error().message;
  Result<LlamaWeights> weights = load_llama_weights(*file, *config);
  ASSERT_TRUE(weights.ok()) << weights.error().message;

  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(1000 + (i * 7919) % 20000);
  // Variants: float32, FP8 at scale 1, FP8 with calculated scales.
  std::vector<std::vector<int32_t>> tokens(3, prompt);
  std::vector<std::vector<float>> first(3);
  for (int fp8 = 0; fp8 < 3; ++fp8) {
    auto runner = CpuModelRunner::create(*weights, 1, 2, 16, 16, {});
    ASSERT_TRUE(runner.ok()) << runner.error().message;
    (*runner)->set_precision(CpuPrecision::kFast);  // what `ember serve` runs (--dtype auto)
    if (fp8 > 0) (*runner)->use_fp8_kv_cache();
    if (fp8 == 2) (*runner)->calculate_kv_scales();
    std::vector<int32_t> blocks(16);
    for (int i = 0; i < 16; ++i) blocks[i] = i;
    std::vector<int32_t>& seq = tokens[fp8];
    int64_t done = 0;
    std::vector<float> logits;
    while (seq.size() < prompt.size() + 32) {
      const int32_t n = static_cast<int32_t>(seq.size() - done);
      const StepSequence step{seq, done, n, blocks, 1};
      (*runner)->forward_logits(std::span<const StepSequence>(&step, 1), logits);
      if (first[fp8].empty()) first[fp8] = logits;
      done = static_cast<int64_t>(seq.size());
      seq.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    }
  }
  for (int fp8 = 1; fp8 < 3; ++fp8) {
    float worst = 0, largest = 0;
    for (size_t i = 0; i < first[0].size(); ++i) {
      worst = std::max(worst, std::abs(first[fp8][i] - first[0][i]));
      largest = std::max(largest, std::abs(first[0][i]));
    }
    size_t same = 0;
    while (prompt.size() + same < tokens[0].size() &&
           tokens[0][prompt.size() + same] == tokens[fp8][prompt.size() + same])
      ++same;
    std::printf(
        "FP8 KV cache (%s) vs float32: largest logit difference %.4f (logits up to %.2f); greedy tokens identical "
        "for %zu of 32\n",
        fp8 == 1 ? "scale 1" : "calculated scales", worst, largest, same);
    EXPECT_LT(worst, 0.05f * largest);
    EXPECT_EQ(std::max_element(first[fp8].begin(), first[fp8].end()) - first[fp8].begin(),
              std::max_element(first[0].begin(), first[0].end()) - first[0].begin());
    EXPECT_GE(same, 8u);
  }
}

}  // namespace
}  // namespace ember
