// ModelConfig from GGUF metadata. llama.cpp's converter writes the shape under
// "<arch>.*" keys (llama, mistral and qwen2 use the same names) and the special
// token ids under "tokenizer.ggml.*". Two facts are not metadata at all and are
// read from the tensor list instead: tied embeddings (no output.weight) and
// q/k/v biases (blk.0.attn_q.bias exists).

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "models/formats/gguf.h"
#include "models/model_config.h"

namespace ember {
namespace {

class MetadataReader {
 public:
  MetadataReader(const GgufFile& gguf, std::string prefix) : gguf_(gguf), prefix_(std::move(prefix)) {}

  Error error(const std::string& key, const std::string& problem) const {
    return Error{gguf_.name() + ": metadata '" + key + "': " + problem};
  }
  std::string key(const char* suffix) const { return prefix_ + "." + suffix; }

  // Absent -> nullopt; present with the wrong type or a negative value -> Error.
  Result<std::optional<int64_t>> optional_int(const std::string& key) const {
    if (gguf_.find(key) == nullptr) return std::optional<int64_t>{};
    std::optional<int64_t> v = gguf_.get_int(key);
    if (!v) return error(key, "expected an integer");
    if (*v < 0) return error(key, "negative value " + std::to_string(*v));
    return v;
  }
  Result<int64_t> required_int(const std::string& key) const {
    Result<std::optional<int64_t>> v = optional_int(key);
    if (!v) return v.error();
    if (!v->has_value()) return error(key, "missing (required)");
    return **v;
  }
  Result<double> float_or(const std::string& key, double fallback) const {
    if (gguf_.find(key) == nullptr) return fallback;
    std::optional<double> v = gguf_.get_float(key);
    if (!v) return error(key, "expected a number");
    return *v;
  }

 private:
  const GgufFile& gguf_;
  std::string prefix_;
};

Status read_rope_scaling(const GgufFile& gguf, const MetadataReader& md, ModelConfig* c) {
  const std::string type_key = md.key("rope.scaling.type");
  std::string type = "none";
  if (gguf.find(type_key) != nullptr) {
    std::optional<std::string> t = gguf.get_string(type_key);
    if (!t) return md.error(type_key, "expected a string");
    type = *t;
  }
  Result<double> factor = md.float_or(md.key("rope.scaling.factor"), 1.0);
  if (!factor) return factor.error();
  // Older converters wrote only a linear factor.
  Result<double> legacy = md.float_or(md.key("rope.scale_linear"), 0.0);
  if (!legacy) return legacy.error();
  if (type == "none" && *legacy != 0.0 && *legacy != 1.0) {
    type = "linear";
    *factor = *legacy;
  }
  if (type == "none") {
    c->rope_scaling = RopeScaling{};
  } else if (type == "linear") {
    c->rope_scaling.type = RopeScalingType::kLinear;
    c->rope_scaling.factor = *factor;
  } else {
    // llama3-style scaling is not a GGUF scaling type (llama.cpp bakes it into rope_freqs.weight).
    return md.error(type_key, "rope scaling '" + type + "' is not supported");
  }
  Result<std::optional<int64_t>> orig = md.optional_int(md.key("rope.scaling.original_context_length"));
  if (!orig) return orig.error();
  if (orig->has_value()) c->rope_scaling.original_max_position_embeddings = **orig;
  return {};
}

}  // namespace

Result<ModelConfig> model_config_from_gguf(const GgufFile& gguf) {
  ModelConfig c;
  std::optional<std::string> arch = gguf.get_string("general.architecture");
  if (!arch) return Error{gguf.name() + ": metadata 'general.architecture': missing or not a string"};
  if (*arch != "llama" && *arch != "mistral" && *arch != "qwen2") {
    return Error{gguf.name() + ": architecture '" + *arch + "' is not supported (llama, mistral, qwen2)"};
  }
  c.architecture = *arch;
  const MetadataReader md(gguf, *arch);

  struct Required {
    const char* suffix;
    int64_t* field;
  };
  for (const Required& r : {Required{"block_count", &c.num_layers}, Required{"context_length", &c.max_position_embeddings},
                            Required{"embedding_length", &c.hidden_size},
                            Required{"feed_forward_length", &c.intermediate_size},
                            Required{"attention.head_count", &c.num_heads}}) {
    Result<int64_t> v = md.required_int(md.key(r.suffix));
    if (!v) return v.error();
    *r.field = *v;
  }

  Result<std::optional<int64_t>> kv_heads = md.optional_int(md.key("attention.head_count_kv"));
  if (!kv_heads) return kv_heads.error();
  c.num_kv_heads = kv_heads->value_or(c.num_heads);

  // key_length is the explicit head size; rope.dimension_count equals it for the
  // Llama family (full rotary); otherwise hidden / heads as in HF configs.
  Result<std::optional<int64_t>> key_length = md.optional_int(md.key("attention.key_length"));
  if (!key_length) return key_length.error();
  Result<std::optional<int64_t>> rope_dims = md.optional_int(md.key("rope.dimension_count"));
  if (!rope_dims) return rope_dims.error();
  if (key_length->has_value()) {
    c.head_dim = **key_length;
  } else if (rope_dims->has_value()) {
    c.head_dim = **rope_dims;
  } else if (c.num_heads > 0) {
    c.head_dim = c.hidden_size / c.num_heads;
  }

  Result<double> theta = md.float_or(md.key("rope.freq_base"), 10000.0);
  if (!theta) return theta.error();
  c.rope_theta = *theta;
  Result<double> eps = md.float_or(md.key("attention.layer_norm_rms_epsilon"), 1e-5);
  if (!eps) return eps.error();
  c.rms_norm_eps = *eps;
  if (Status s = read_rope_scaling(gguf, md, &c); !s) return s.error();

  Result<std::optional<int64_t>> vocab = md.optional_int(md.key("vocab_size"));
  if (!vocab) return vocab.error();
  if (vocab->has_value()) {
    c.vocab_size = **vocab;
  } else if (const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(tokens->strings.size());
  } else if (const GgufTensor* embd = gguf.find_tensor("token_embd.weight"); embd && embd->shape.size() == 2) {
    c.vocab_size = embd->shape[1];
  }

  const MetadataReader tok(gguf, "tokenizer.ggml");
  Result<std::optional<int64_t>> bos = tok.optional_int(tok.key("bos_token_id"));
  if (!bos) return bos.error();
  c.bos_token_id = bos->value_or(-1);
  // eot (end of turn) ends a chat reply just as eos does.
  for (const char* k : {"eos_token_id", "eot_token_id"}) {
    Result<std::optional<int64_t>> id = tok.optional_int(tok.key(k));
    if (!id) return id.error();
    if (id->has_value() && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), **id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(**id);
    }
  }

  c.tie_word_embeddings = gguf.find_tensor("output.weight") == nullptr;
  c.attention_bias = gguf.find_tensor("blk.0.attn_q.bias") != nullptr;

  if (Status s = c.validate(); !s) return Error{gguf.name() + ": " + s.error().message};
  return c;
}

}  // namespace ember
