// ModelConfig from Hugging Face config.json: the public configs of six real
// models (tests/fixtures/configs/, copied from their hub repositories) parse
// to the values their model cards state, and malformed configs are refused
// with an error that names the file and the field.

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "models/model_config.h"

namespace ember {
namespace {

std::string read_fixture(const std::string& rel) {
  std::ifstream in(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/configs/" + rel);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ModelConfig load(const std::string& model) {
  const std::string config = read_fixture(model + "/config.json");
  EXPECT_FALSE(config.empty()) << model;
  auto c = model_config_from_hf_json(config, read_fixture(model + "/generation_config.json"),
                                     model + "/config.json");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  if (!c.ok()) return {};
  Status v = c->validate();
  EXPECT_TRUE(v.ok()) << (v.ok() ? "" : v.error().message);
  return *c;
}

using Eos = std::vector<int64_t>;

TEST(ModelConfigHf, Llama2_7b) {
  ModelConfig c = load("llama-2-7b");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);  // absent: the default
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, Eos({2}));
  EXPECT_EQ(c.torch_dtype, "float16");
}

TEST(ModelConfigHf, Llama3_8b) {
  ModelConfig c = load("llama-3-8b");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, Eos({128001}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfigHf, Llama31_8b_Llama3RopeScaling) {
  ModelConfig c = load("llama-3.1-8b");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, Eos({128001}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfigHf, Mistral7b) {
  ModelConfig c = load("mistral-7b-v0.1");
  EXPECT_EQ(c.architecture, "mistral");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, Eos({2}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfigHf, Qwen2_05b_ImplicitAttentionBias) {
  ModelConfig c = load("qwen2-0.5b");
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.intermediate_size, 4864);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.num_heads, 14);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1000000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);  // no field in the config: Qwen2 always has q/k/v bias
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_ids, Eos({151643}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfigHf, SmolLM2_135m_TiedEmbeddings) {
  ModelConfig c = load("smollm2-135m-instruct");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);  // an integer in the file
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, Eos({2}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

// A minimal valid config; tests patch one field at a time.
std::string base_config(const std::string& extra = "") {
  return R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
             "max_position_embeddings": 256, "rms_norm_eps": 1e-6)" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

Result<ModelConfig> parse(const std::string& extra, const std::string& gen = "") {
  return model_config_from_hf_json(base_config(extra), gen, "dir/config.json");
}

// Parsing fails and the message names the file and `needle` (the field).
void expect_error(const Result<ModelConfig>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error about " << needle;
  EXPECT_NE(r.error().message.find("dir/"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

TEST(ModelConfigHf, DefaultsAndDerivedValues) {
  auto c = parse("");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_TRUE(c->validate().ok());
  // Explicit head_dim wins over hidden/heads; null means "derive".
  EXPECT_EQ(parse(R"("head_dim": 32)")->head_dim, 32);
  EXPECT_EQ(parse(R"("head_dim": null, "num_key_value_heads": null)")->head_dim, 16);
  // Only architectures given.
  auto a = model_config_from_hf_json(
      R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
          "max_position_embeddings": 256, "rms_norm_eps": 1e-6})", "", "dir/config.json");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->architecture, "mistral");
  EXPECT_TRUE(parse(R"("attention_bias": true)")->attention_bias);
  EXPECT_EQ(parse(R"("dtype": "float16")")->torch_dtype, "float16");
}

TEST(ModelConfigHf, GenerationConfigOverridesEos) {
  auto c = parse(R"("bos_token_id": 1, "eos_token_id": 2)", R"({"eos_token_id": [2, 7, 9]})");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, Eos({2, 7, 9}));
  auto d = parse(R"("eos_token_id": [3, 4])", R"({"do_sample": true})");  // no eos: keep config's
  EXPECT_EQ(d->eos_token_ids, Eos({3, 4}));
  auto e = parse(R"("eos_token_id": 3)", R"({"bos_token_id": 5, "eos_token_id": null})");
  EXPECT_EQ(e->bos_token_id, 5);
  EXPECT_EQ(e->eos_token_ids, Eos({3}));
  expect_error(parse("", R"({"eos_token_id": "x"})"), "generation_config.json: field 'eos_token_id'");
  expect_error(parse("", "[1, 2]"), "generation_config.json");
}

TEST(ModelConfigHf, RopeScalingVariants) {
  auto lin = parse(R"("rope_scaling": {"type": "linear", "factor": 2.0})");
  ASSERT_TRUE(lin.ok()) << lin.error().message;
  EXPECT_EQ(lin->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(lin->rope_scaling.factor, 2.0);
  EXPECT_EQ(parse(R"("rope_scaling": {"rope_type": "linear", "factor": 4})")->rope_scaling.factor, 4.0);
  EXPECT_EQ(parse(R"("rope_scaling": {"rope_type": "default"})")->rope_scaling.type, RopeScalingType::kNone);
  // transformers v5 spelling: theta and type under rope_parameters.
  auto v5 = parse(R"("rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 5e5})");
  ASSERT_TRUE(v5.ok()) << v5.error().message;
  EXPECT_EQ(v5->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(v5->rope_theta, 5e5);
  expect_error(parse(R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0})"), "'yarn' is not supported");
  expect_error(parse(R"("rope_scaling": {"type": "dynamic", "factor": 2.0})"), "rope_scaling");
  expect_error(parse(R"("rope_scaling": {"rope_type": "linear"})"), "factor");
  expect_error(parse(R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0})"), "low_freq_factor");
  expect_error(parse(R"("rope_scaling": {"factor": 8.0})"), "rope_type");
  expect_error(parse(R"("rope_scaling": [1])"), "rope_scaling");
  expect_error(parse(R"("rope_scaling": {"rope_type": "linear", "factor": "2"})"), "factor");
}

TEST(ModelConfigHf, BadConfigsNameTheField) {
  expect_error(model_config_from_hf_json("{not json", "", "dir/config.json"), "not valid JSON");
  expect_error(model_config_from_hf_json("[]", "", "dir/config.json"), "not a JSON object");
  expect_error(model_config_from_hf_json(R"({"model_type": "llama"})", "", "dir/config.json"),
               "'hidden_size' is required");
  expect_error(parse(R"("hidden_size": "64")"), "'hidden_size' must be an integer");
  expect_error(parse(R"("hidden_size": 64.5)"), "'hidden_size' must be an integer");
  expect_error(parse(R"("vocab_size": 18446744073709551615)"), "'vocab_size' is out of range");
  expect_error(parse(R"("rms_norm_eps": "1e-6")"), "'rms_norm_eps' must be a number");
  expect_error(parse(R"("tie_word_embeddings": 1)"), "'tie_word_embeddings' must be true or false");
  expect_error(parse(R"("eos_token_id": [1, "2"])"), "'eos_token_id'");
  expect_error(parse(R"("eos_token_id": 18446744073709551615)"), "'eos_token_id'");
  expect_error(parse(R"("torch_dtype": 16)"), "'torch_dtype'");
  expect_error(parse(R"("model_type": "gpt2")"), "'model_type' is 'gpt2'");
  expect_error(parse(R"("architectures": ["LlamaForSequenceClassification"])"), "'architectures'");
  expect_error(parse(R"("architectures": ["Qwen2ForCausalLM"])"), "disagrees with model_type");
  expect_error(parse(R"("architectures": "LlamaForCausalLM")"), "'architectures'");
  expect_error(parse(R"("hidden_act": "gelu")"), "'hidden_act'");
  expect_error(parse(R"("mlp_bias": true)"), "'mlp_bias'");
  expect_error(parse(R"("num_attention_heads": 5)"), "not a multiple");  // 64 / 5, no head_dim
}

// validate() catches what parses but cannot run.
TEST(ModelConfigValidate, RejectsInsaneValues) {
  const auto invalid = [](const std::string& extra, const std::string& needle) {
    auto c = parse(extra);
    ASSERT_TRUE(c.ok()) << c.error().message;
    Status s = c->validate();
    ASSERT_FALSE(s.ok()) << extra;
    EXPECT_NE(s.error().message.find(needle), std::string::npos) << s.error().message;
  };
  invalid(R"("num_key_value_heads": 3)", "num_kv_heads");
  invalid(R"("num_key_value_heads": 0)", "num_kv_heads");
  invalid(R"("head_dim": 15)", "head_dim");
  invalid(R"("head_dim": 512)", "head_dim");
  invalid(R"("num_hidden_layers": 0)", "num_layers");
  invalid(R"("num_hidden_layers": 5000)", "num_layers");
  invalid(R"("vocab_size": 16777217)", "vocab_size");
  invalid(R"("hidden_size": 131072, "head_dim": 64)", "hidden_size");
  invalid(R"("hidden_size": -64, "head_dim": 64)", "hidden_size");
  invalid(R"("intermediate_size": 0)", "intermediate_size");
  invalid(R"("max_position_embeddings": 0)", "max_position_embeddings");
  invalid(R"("rms_norm_eps": 0)", "rms_norm_eps");
  invalid(R"("rms_norm_eps": -1e-6)", "rms_norm_eps");
  invalid(R"("rope_theta": 0)", "rope_theta");
  invalid(R"("rope_scaling": {"rope_type": "linear", "factor": 0})", "factor");
  invalid(R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4,
              "high_freq_factor": 1, "original_max_position_embeddings": 8192})", "high_freq_factor");
  invalid(R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
              "high_freq_factor": 4, "original_max_position_embeddings": 0})", "original_max");
  invalid(R"("eos_token_id": 100)", "eos_token_id");
  invalid(R"("bos_token_id": 1000)", "bos_token_id");
  ModelConfig empty;
  EXPECT_FALSE(empty.validate().ok());
}

}  // namespace
}  // namespace ember
