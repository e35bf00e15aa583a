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

// The logits of 12 positions of a fixed token sequence under dummy weights.
std::vector<float> dummy_logits(const ModelConfig& c, uint64_t seed) {
  Result<LlamaWeights> w = make_dummy_weights(c, seed);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().message);
  if (!w.ok()) return {};
  CpuBackend backend(2);
  LlamaDecoder dec(*w, backend);
  KvCache cache = KvCache::allocate(c, 1, 16);
  ForwardInputs in;
  for (int32_t i = 0; i < 12; ++i) {
    in.token_ids.push_back((i * 53 + 7) % static_cast<int32_t>(c.vocab_size));
    in.positions.push_back(i);
    in.slot_mapping.push_back(i);
    in.logits_indices.push_back(i);
  }
  in.query_start_loc = {0, 12};
  in.seq_lens = {12};
  in.block_tables = {0};
  in.max_blocks_per_seq = 1;
  std::vector<float> logits;
  dec.forward(in, cache, logits);
  return logits;
}

ModelConfig with_ember_dummy(const std::string& json_tail) {
  const std::string path = std::string(EMBER_SOURCE_DIR) + "/configs/models/tiny.json";
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string json = ss.str();
  json.insert(json.rfind('}'), json_tail);
  Result<ModelConfig> c = model_config_from_hf_json(json, "", "tiny+");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? *c : ModelConfig{};
}

TEST(DummyWeights, EarlyExitKnobMakesTheFirstLayersADraft) {
  // The tiny preset has 2 layers; the same shape with 4, whose layers 2 and 3
  // add nothing (late_layer_scale 0), computes exactly the 2-layer model: the
  // tensors a cut model keeps (the lm_head too) are the same.
  const ModelConfig two = preset("tiny");
  ModelConfig four = with_ember_dummy(R"(, "ember_dummy": {"exit_layer": 2, "late_layer_scale": 0})");
  EXPECT_EQ(four.dummy_exit_layer, 2);
  EXPECT_EQ(four.dummy_late_layer_scale, 0.0);
  four.num_layers = 4;
  const std::vector<float> cut = dummy_logits(two, 5), exact = dummy_logits(four, 5);
  ASSERT_FALSE(cut.empty());
  EXPECT_EQ(cut, exact);
  // A small scale perturbs the logits a little, a full one (plain dummy weights) a lot.
  ModelConfig small = four, full = four;
  small.dummy_late_layer_scale = 0.05;
  full.dummy_late_layer_scale = 1.0;
  const auto distance = [&](const std::vector<float>& other) {
    double d = 0;
    for (size_t i = 0; i < cut.size(); ++i) d = std::max(d, double{std::fabs(cut[i] - other[i])});
    return d;
  };
  const double d_small = distance(dummy_logits(small, 5)), d_full = distance(dummy_logits(full, 5));
  EXPECT_GT(d_small, 0.0);
  EXPECT_GT(d_full, 5 * d_small);
  // Bad values name the key.
  for (const char* bad : {R"(, "ember_dummy": {"exit_layer": 3})", R"(, "ember_dummy": {"late_layer_scale": 2})",
                          R"(, "ember_dummy": {"exit": 1})", R"(, "ember_dummy": 1)"}) {
    std::string json = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
      "rms_norm_eps": 1e-5)";
    json += bad;
    json += "}";
    Result<ModelConfig> c = model_config_from_hf_json(json, "", "cfg");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.error().message.find("ember_dummy"), std::string::npos) << c.error().message;
  }
}

}  // namespace
}  // namespace ember
