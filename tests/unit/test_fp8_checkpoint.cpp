// FP8 checkpoints (tests/fixtures/hf_tiny_fp8, written by
// scripts/gen_fp8_fixtures.py from the hf_tiny/gqa model): the loader keeps
// the E4M3 codes and their scales (per channel in layer 0, per tensor in layer
// 1), dequantizes them to exactly the float32 values the script decoded from
// the format's definition, and refuses what it cannot read with the file and
// tensor named. The CPU runner serves such a checkpoint within FP8's error of
// the bf16 model it came from.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/model_runner.h"
#include "models/formats/hf_model_dir.h"
#include "models/formats/safetensors.h"
#include "models/weights.h"

namespace ember {
namespace {

namespace fs = std::filesystem;
const std::string kFp8 = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/hf_tiny_fp8";
const std::string kBf16 = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/hf_tiny/gqa";

Result<LlamaWeights> load(const std::string& dir) {
  auto hf = HfModelDir::open(dir);
  if (!hf) return hf.error();
  return load_llama_weights(*hf);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(Fp8Checkpoint, KeepsCodesAndScales) {
  auto w = load(kFp8);
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ(w->config.quant_method, "fp8");
  ASSERT_EQ(w->layers.size(), 2u);
  for (const LayerWeights& l : w->layers)
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate_up, &l.w_down}) {
      EXPECT_EQ(m->dtype, DType::kF8E4M3);
      EXPECT_EQ(m->raw.size(), m->size());
      EXPECT_EQ(m->row_scale.size(), static_cast<size_t>(m->rows));
    }
  // Layer 1 is per tensor: one scale repeated (gate_up: gate's, then up's).
  const auto& s = w->layers[1].wq.row_scale;
  EXPECT_TRUE(std::all_of(s.begin(), s.end(), [&](float v) { return v == s.front(); }));
  const auto& c = w->layers[0].wq.row_scale;
  EXPECT_FALSE(std::all_of(c.begin(), c.end(), [&](float v) { return v == c.front(); }));
  EXPECT_EQ(w->embed.dtype, DType::kF32);
  EXPECT_TRUE(has_fp8(*w));
  // The KV-cache scales, in vLLM's spelling (layer 0) and compressed-tensors' (layer 1).
  EXPECT_EQ(w->layers[0].k_scale, 0.02f);
  EXPECT_EQ(w->layers[0].v_scale, 0.03f);
  EXPECT_EQ(w->layers[1].k_scale, 0.04f);
  EXPECT_EQ(w->layers[1].v_scale, 0.05f);
  auto plain = load(kBf16);  // a checkpoint without them: 1, vLLM's default
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->layers[0].k_scale, 1.0f);
  EXPECT_EQ(plain->layers[1].v_scale, 1.0f);
}

TEST(Fp8Checkpoint, DequantizesToTheScriptsValues) {
  auto w = load(kFp8);
  ASSERT_TRUE(w.ok()) << w.error().message;
  dequantize_fp8(*w);
  EXPECT_FALSE(has_fp8(*w));
  auto ref = SafetensorsFile::open(kFp8 + "/dequantized.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  const auto expect_rows = [&](const WeightMatrix& m, int64_t row0, const std::string& name) {
    const StTensor* t = ref->find(name);
    ASSERT_NE(t, nullptr) << name;
    auto want = st_to_f32(*t, name);
    ASSERT_TRUE(want.ok());
    ASSERT_LE(static_cast<size_t>((row0 + t->shape[0]) * m.cols), m.f32.size()) << name;
    for (size_t i = 0; i < want->size(); ++i)
      ASSERT_EQ(bits(m.f32[static_cast<size_t>(row0 * m.cols) + i]), bits((*want)[i])) << name << " element " << i;
  };
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const LayerWeights& lw = w->layers[static_cast<size_t>(l)];
    expect_rows(lw.wq, 0, p + "self_attn.q_proj.weight");
    expect_rows(lw.wk, 0, p + "self_attn.k_proj.weight");
    expect_rows(lw.wv, 0, p + "self_attn.v_proj.weight");
    expect_rows(lw.wo, 0, p + "self_attn.o_proj.weight");
    expect_rows(lw.w_gate_up, 0, p + "mlp.gate_proj.weight");
    expect_rows(lw.w_gate_up, w->config.intermediate_size, p + "mlp.up_proj.weight");
    expect_rows(lw.w_down, 0, p + "mlp.down_proj.weight");
  }
}

// The CPU runner on the FP8 checkpoint (dequantized at load) against the bf16
// model it was made from: within FP8's error, stated as a relative logits
// error under 0.15 on 40 tokens (9.2e-2 measured: a 64-wide model, per-tensor scales in layer 1).
TEST(Fp8Checkpoint, CpuLogitsStayNearTheBf16Model) {
  auto fp8 = load(kFp8);
  auto bf16 = load(kBf16);
  ASSERT_TRUE(fp8.ok() && bf16.ok());
  dequantize_fp8(*fp8);
  const int64_t v = fp8->config.vocab_size;
  CpuModelRunner a(std::move(*fp8), 1, 64, 16, {}), b(std::move(*bf16), 1, 64, 16, {});
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 37 + 11) % static_cast<int32_t>(v));
  std::vector<int32_t> blocks = {0, 1, 2};
  std::vector<StepSequence> step = {{tokens, 0, static_cast<int32_t>(tokens.size()), blocks, 1}};
  std::vector<float> la, lb;
  a.forward_logits(step, la);
  b.forward_logits(step, lb);
  ASSERT_EQ(la.size(), static_cast<size_t>(v));
  double num = 0, den = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    num += (double(la[i]) - lb[i]) * (double(la[i]) - lb[i]);
    den += double(lb[i]) * lb[i];
  }
  const double rel = std::sqrt(num / den);
  std::printf("FP8 checkpoint vs its bf16 model (CPU): relative logits error %.3e\n", rel);
  EXPECT_GT(rel, 0.0);  // (it is quantized)
  EXPECT_LT(rel, 0.15);
}

// A copy of the fixture in a temporary directory, edited by `edit(header,
// data, config)` before it is written.
std::string edited_copy(const std::string& tag,
                        const std::function<void(nlohmann::json&, std::string&, nlohmann::json&)>& edit) {
  std::ifstream in(kFp8 + "/model.safetensors", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string blob = ss.str();
  uint64_t n;
  std::memcpy(&n, blob.data(), 8);
  nlohmann::json header = nlohmann::json::parse(blob.substr(8, n));
  std::string data = blob.substr(8 + n);
  std::ifstream cf(kFp8 + "/config.json");
  nlohmann::json config = nlohmann::json::parse(cf);
  edit(header, data, config);
  const fs::path dir = fs::temp_directory_path() / ("ember_fp8_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string h = header.dump();
  while (h.size() % 8 != 0) h += ' ';
  const uint64_t len = h.size();
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << h << data;
  std::ofstream(dir / "config.json") << config.dump();
  return dir.string();
}

void expect_error(const std::string& dir, const std::string& needle) {
  auto w = load(dir);
  ASSERT_FALSE(w.ok()) << dir;
  EXPECT_NE(w.error().message.find(needle), std::string::npos) << w.error().message;
  fs::remove_all(dir);
}

TEST(Fp8Checkpoint, RefusesWhatItCannotRead) {
  const std::string q0 = "model.layers.0.self_attn.q_proj.";
  expect_error(edited_copy("nomethod",
                           [](nlohmann::json&, std::string&, nlohmann::json& c) {
                             c["quantization_config"]["quant_method"] = "awq";
                           }),
               "quant_method 'awq' is not supported");
  expect_error(edited_copy("blocks",
                           [](nlohmann::json&, std::string&, nlohmann::json& c) {
                             c["quantization_config"]["weight_block_size"] = {128, 128};
                           }),
               "block-wise FP8");
  expect_error(edited_copy("noscale",
                           [&](nlohmann::json& h, std::string&, nlohmann::json&) {
                             h[q0 + "weight_scalX"] = h[q0 + "weight_scale"];
                             h.erase(q0 + "weight_scale");
                           }),
               "has no '" + q0.substr(0, q0.size() - 1) + ".weight_scale'");
  expect_error(edited_copy("nan",
                           [&](nlohmann::json& h, std::string& data, nlohmann::json&) {
                             const size_t at = h[q0 + "weight"]["data_offsets"][0].get<size_t>() + 5;
                             data[at] = static_cast<char>(0x7F);
                           }),
               "holds NaN at element 5");
  expect_error(edited_copy("e5m2",
                           [&](nlohmann::json& h, std::string&, nlohmann::json&) {
                             h[q0 + "weight"]["dtype"] = "F8_E5M2";
                           }),
               "F8_E5M2");
  const std::string k0 = "model.layers.0.self_attn.k_scale";
  expect_error(edited_copy("kv_scale_shape",
                           [&](nlohmann::json& h, std::string&, nlohmann::json&) {
                             h[k0]["shape"] = {1, 1, 1};  // one value, but not a scalar's shape
                           }),
               "'" + k0 + "' has shape [1, 1, 1]: a KV-cache scale is one value");
  expect_error(edited_copy("kv_scale_negative",
                           [&](nlohmann::json& h, std::string& data, nlohmann::json&) {
                             const float minus = -0.5f;
                             std::memcpy(&data[h[k0]["data_offsets"][0].get<size_t>()], &minus, 4);
                           }),
               "'" + k0 + "' holds a KV-cache scale that is not positive and finite");
}

}  // namespace
}  // namespace ember
