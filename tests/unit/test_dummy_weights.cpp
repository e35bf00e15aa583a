// Dummy weights at the presets' real shapes (configs/models/*.json): the
// presets parse, the byte arithmetic matches the published parameter counts,
// the weights are deterministic in the seed and distributed as promised, and
// the tiny preset runs a forward with finite logits.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "models/llama_decoder.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {
namespace {

ModelConfig preset(const std::string& name) {
  const std::string path = std::string(EMBER_SOURCE_DIR) + "/configs/models/" + name + ".json";
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  Result<ModelConfig> c = model_config_from_hf_json(ss.str(), "", path);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  if (!c.ok()) return {};
  EXPECT_TRUE(c->validate().ok()) << path;
  return *c;
}

// Checks every tensor's element count against the config.
void expect_shapes(const LlamaWeights& w) {
  const ModelConfig& c = w.config;
  const size_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const size_t inter = c.intermediate_size, v = c.vocab_size;
  EXPECT_EQ(w.embed.size(), v * h);
  ASSERT_EQ(w.layers.size(), static_cast<size_t>(c.num_layers));
  for (const LayerWeights& l : w.layers) {
    EXPECT_EQ(l.attn_norm.size(), h);
    EXPECT_EQ(l.wq.size(), q * h);
    EXPECT_EQ(l.wk.size(), kv * h);
    EXPECT_EQ(l.wv.size(), kv * h);
    EXPECT_EQ(l.wo.size(), h * q);
    EXPECT_EQ(l.ffn_norm.size(), h);
    EXPECT_EQ(l.w_gate_up.size(), 2 * inter * h);
    EXPECT_EQ(l.w_down.size(), h * inter);
    EXPECT_EQ(l.bq.size(), c.attention_bias ? q : 0);
  }
  EXPECT_EQ(w.final_norm.size(), h);
  EXPECT_EQ(w.lm_head.size(), c.tie_word_embeddings ? 0 : v * h);
  EXPECT_EQ(w.head().size(), v * h);
}

TEST(DummyWeights, PresetSizesMatchPublishedParameterCounts) {
  // SmolLM2-135M: 134,515,008 parameters (tied head); Llama-3-8B: 8,030,261,248.
  EXPECT_EQ(dummy_weights_bytes(preset("smollm2-135m")), 4ull * 134'515'008);
  EXPECT_EQ(dummy_weights_bytes(preset("llama-3-8b")), 4ull * 8'030'261'248);
  EXPECT_EQ(dummy_weights_bytes(preset("tiny")), 4ull * 139'584);
  // Refused before allocating anything.
  Result<LlamaWeights> w = make_dummy_weights(preset("llama-3-8b"), 1);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().message, "dummy weights need 32121044992 bytes, over the limit of 8589934592");
  ModelConfig bad = preset("tiny");
  bad.num_kv_heads = 3;
  EXPECT_FALSE(make_dummy_weights(bad, 1).ok());
}

TEST(DummyWeights, SmolLM2ShapesAndStatistics) {
  Result<LlamaWeights> w = make_dummy_weights(preset("smollm2-135m"), 7);
  ASSERT_TRUE(w.ok()) << w.error().message;
  expect_shapes(*w);
  // N(0, 0.02^2) over 28M embedding values: mean ~0, std 0.02 within 0.1%.
  double sum = 0, sq = 0;
  for (float x : w->embed.f32) {
    sum += x;
    sq += double{x} * x;
  }
  const double n = static_cast<double>(w->embed.size());
  EXPECT_NEAR(sum / n, 0.0, 2e-5);
  EXPECT_NEAR(std::sqrt(sq / n), 0.02, 2e-5);
  EXPECT_EQ(w->layers[29].ffn_norm, std::vector<float>(576, 1.0f));
}

TEST(DummyWeights, TinyIsDeterministicAndRunsAForward) {
  const ModelConfig c = preset("tiny");
  Result<LlamaWeights> a = make_dummy_weights(c, 123), b = make_dummy_weights(c, 123),
                       other = make_dummy_weights(c, 124);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  expect_shapes(*a);
  EXPECT_EQ(a->layers[1].w_down, b->layers[1].w_down);
  EXPECT_EQ(a->lm_head, b->lm_head);
  EXPECT_NE(a->layers[1].w_down, other->layers[1].w_down);
  EXPECT_NE(a->layers[0].wq, a->layers[1].wq);  // every tensor its own stream

  CpuBackend backend(2);
  LlamaDecoder dec(*a, backend);
  KvCache cache = KvCache::allocate(c, 2, 16);
  ForwardInputs in;
  for (int32_t i = 0; i < 20; ++i) {
    in.token_ids.push_back((i * 37) % static_cast<int32_t>(c.vocab_size));
    in.positions.push_back(i);
    in.slot_mapping.push_back(i);
    in.logits_indices.push_back(i);
  }
  in.query_start_loc = {0, 20};
  in.seq_lens = {20};
  in.block_tables = {0, 1};
  in.max_blocks_per_seq = 2;
  std::vector<float> logits;
  dec.forward(in, cache, logits);
  ASSERT_EQ(logits.size(), static_cast<size_t>(20 * c.vocab_size));
  float mag = 0;
  for (float x : logits) {
    ASSERT_TRUE(std::isfinite(x));
    mag = std::max(mag, std::fabs(x));
  }
  EXPECT_GT(mag, 0.0f);
}

}  // namespace
}  // namespace ember
