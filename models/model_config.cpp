// ModelConfig::validate() and the Hugging Face config.json reader.
// (The GGUF reader is in model_config_gguf.cpp.)

#include <cmath>
#include <exception>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "models/model_config.h"

#include "common/json_limits.h"

namespace ember {
namespace {

using Json = nlohmann::json;

// Typed field access that turns a wrong type or a missing required field into
// an Error naming the file and the field. Absent and null read as "not given".
class Fields {
 public:
  Fields(const Json& obj, std::string source) : obj_(obj), source_(std::move(source)) {}

  const Json* get(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  Error error(const char* key, const std::string& what) const {
    return Error{source_ + ": field '" + key + "' " + what};
  }

  Result<std::optional<int64_t>> opt_int(const char* key) const {
    const Json* v = get(key);
    if (v == nullptr) return std::optional<int64_t>();
    if (v->is_number_unsigned()) {
      if (v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return error(key, "is out of range");
      return std::optional<int64_t>(static_cast<int64_t>(v->get<uint64_t>()));
    }
    if (v->is_number_integer()) return std::optional<int64_t>(v->get<int64_t>());
    return error(key, "must be an integer");
  }
  Result<int64_t> req_int(const char* key) const {
    auto v = opt_int(key);
    if (!v) return v.error();
    if (!v->has_value()) return error(key, "is required");
    return **v;
  }
  Result<std::optional<double>> opt_float(const char* key) const {
    const Json* v = get(key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return error(key, "must be a number");
    return std::optional<double>(v->get<double>());
  }
  Result<double> req_float(const char* key) const {
    auto v = opt_float(key);
    if (!v) return v.error();
    if (!v->has_value()) return error(key, "is required");
    return **v;
  }
  Result<std::optional<bool>> opt_bool(const char* key) const {
    const Json* v = get(key);
    if (v == nullptr) return std::optional<bool>();
    if (!v->is_boolean()) return error(key, "must be true or false");
    return std::optional<bool>(v->get<bool>());
  }
  Result<std::optional<std::string>> opt_string(const char* key) const {
    const Json* v = get(key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return error(key, "must be a string");
    return std::optional<std::string>(v->get<std::string>());
  }
  // eos_token_id: an integer or a list of integers.
  Result<std::optional<std::vector<int64_t>>> opt_int_list(const char* key) const {
    const Json* v = get(key);
    if (v == nullptr) return std::optional<std::vector<int64_t>>();
    // Ids above INT64_MAX would wrap negative: refuse them here, not in validate().
    const auto fits = [](const Json& e) {
      return e.is_number_integer() &&
             !(e.is_number_unsigned() &&
               e.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
    };
    std::vector<int64_t> out;
    if (fits(*v)) {
      out.push_back(v->get<int64_t>());
    } else if (v->is_array()) {
      for (const Json& e : *v) {
        if (!fits(e)) return error(key, "must be an integer or a list of integers");
        out.push_back(e.get<int64_t>());
      }
    } else {
      return error(key, "must be an integer or a list of integers");
    }
    return std::optional<std::vector<int64_t>>(std::move(out));
  }

 private:
  const Json& obj_;
  std::string source_;
};

// Unwraps a Result into `dst`, or returns its Error from the enclosing function.
#define EMBER_ASSIGN(dst, expr)          \
  do {                                   \
    auto r_ = (expr);                    \
    if (!r_) return r_.error();          \
    dst = std::move(*r_);                \
  } while (0)

// HF class name -> model_type for the architectures ember runs.
std::optional<std::string> model_type_of_class(const std::string& cls) {
  if (cls == "LlamaForCausalLM") return "llama";
  if (cls == "MistralForCausalLM") return "mistral";
  if (cls == "Qwen2ForCausalLM") return "qwen2";
  return std::nullopt;
}

Result<std::string> read_architecture(const Json& cfg, const Fields& f) {
  std::optional<std::string> model_type;
  EMBER_ASSIGN(model_type, f.opt_string("model_type"));
  std::optional<std::string> from_class;
  if (const Json* arch = f.get("architectures")) {
    if (!arch->is_array() || arch->empty() || !(*arch)[0].is_string())
      return f.error("architectures", "must be a non-empty list of class names");
    const std::string& cls = (*arch)[0].get_ref<const std::string&>();
    from_class = model_type_of_class(cls);
    if (!from_class)
      return f.error("architectures", "names '" + cls +
                                          "'; supported: LlamaForCausalLM, MistralForCausalLM, "
                                          "Qwen2ForCausalLM");
  }
  (void)cfg;
  if (model_type) {
    if (*model_type != "llama" && *model_type != "mistral" && *model_type != "qwen2")
      return f.error("model_type", "is '" + *model_type + "'; supported: llama, mistral, qwen2");
    if (from_class && *from_class != *model_type)
      return f.error("architectures", "disagrees with model_type '" + *model_type + "'");
    return *model_type;
  }
  if (from_class) return *from_class;
  return f.error("model_type", "is required (or 'architectures')");
}

// `key` is "rope_scaling" or, in transformers v5 configs, "rope_parameters"
// (which also carries rope_theta and says rope_type "default" when unscaled).
Status read_rope_scaling(const Fields& f, const char* key, RopeScaling* out) {
  const Json* rs = f.get(key);
  if (rs == nullptr) return Status::success();
  if (!rs->is_object()) return f.error(key, "must be an object or null");
  // Older configs say "type", newer ones "rope_type".
  Fields s(*rs, "");
  std::optional<std::string> type;
  EMBER_ASSIGN(type, s.opt_string("rope_type"));
  if (!type) EMBER_ASSIGN(type, s.opt_string("type"));
  if (!type) return f.error(key, "has no 'rope_type'");
  const auto sub_error = [&](const Error& e) {
    return f.error(key, "is invalid:" + e.message.substr(1));  // drop the empty source's ':'
  };
  if (*type == "default") return Status::success();
  if (*type == "linear") {
    auto factor = s.req_float("factor");
    if (!factor) return sub_error(factor.error());
    out->type = RopeScalingType::kLinear;
    out->factor = *factor;
    return Status::success();
  }
  if (*type == "llama3") {
    auto factor = s.req_float("factor");
    auto low = s.req_float("low_freq_factor");
    auto high = s.req_float("high_freq_factor");
    auto orig = s.req_int("original_max_position_embeddings");
    if (!factor) return sub_error(factor.error());
    if (!low) return sub_error(low.error());
    if (!high) return sub_error(high.error());
    if (!orig) return sub_error(orig.error());
    out->type = RopeScalingType::kLlama3;
    out->factor = *factor;
    out->low_freq_factor = *low;
    out->high_freq_factor = *high;
    out->original_max_position_embeddings = *orig;
    return Status::success();
  }
  return f.error(key, "type '" + *type + "' is not supported (linear, llama3)");
}

Result<ModelConfig> parse_config(const Json& cfg, const Json* gen, const std::string& source) {
  if (!cfg.is_object()) return Error{source + ": not a JSON object"};
  Fields f(cfg, source);
  ModelConfig c;
  EMBER_ASSIGN(c.architecture, read_architecture(cfg, f));
  EMBER_ASSIGN(c.hidden_size, f.req_int("hidden_size"));
  EMBER_ASSIGN(c.intermediate_size, f.req_int("intermediate_size"));
  EMBER_ASSIGN(c.num_layers, f.req_int("num_hidden_layers"));
  EMBER_ASSIGN(c.num_heads, f.req_int("num_attention_heads"));
  EMBER_ASSIGN(c.vocab_size, f.req_int("vocab_size"));
  EMBER_ASSIGN(c.max_position_embeddings, f.req_int("max_position_embeddings"));
  EMBER_ASSIGN(c.rms_norm_eps, f.req_float("rms_norm_eps"));

  std::optional<int64_t> kv, head_dim, bos;
  EMBER_ASSIGN(kv, f.opt_int("num_key_value_heads"));
  c.num_kv_heads = kv.value_or(c.num_heads);  // absent: plain multi-head attention
  EMBER_ASSIGN(head_dim, f.opt_int("head_dim"));
  if (head_dim) {
    c.head_dim = *head_dim;
  } else {
    if (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0)
      return f.error("hidden_size", "is not a multiple of num_attention_heads and head_dim is absent");
    c.head_dim = c.hidden_size / c.num_heads;
  }

  std::optional<double> theta;
  EMBER_ASSIGN(theta, f.opt_float("rope_theta"));
  const char* rope_key = "rope_scaling";
  if (const Json* rp = f.get("rope_parameters")) {
    if (!rp->is_object()) return f.error("rope_parameters", "must be an object");
    rope_key = "rope_parameters";
    std::optional<double> inner_theta;
    EMBER_ASSIGN(inner_theta, Fields(*rp, source + ": rope_parameters").opt_float("rope_theta"));
    if (inner_theta) theta = inner_theta;
  }
  c.rope_theta = theta.value_or(10000.0);
  Status rs = read_rope_scaling(f, rope_key, &c.rope_scaling);
  if (!rs) return rs.error();

  std::optional<bool> tie, bias, mlp_bias;
  EMBER_ASSIGN(tie, f.opt_bool("tie_word_embeddings"));
  c.tie_word_embeddings = tie.value_or(false);  // transformers' default for all three
  EMBER_ASSIGN(bias, f.opt_bool("attention_bias"));
  // Qwen2's q/k/v projections always carry a bias; its config has no field for it.
  c.attention_bias = c.architecture == "qwen2" ? true : bias.value_or(false);
  EMBER_ASSIGN(mlp_bias, f.opt_bool("mlp_bias"));
  if (mlp_bias.value_or(false)) return f.error("mlp_bias", "true is not supported");

  std::optional<std::string> act, dtype;
  EMBER_ASSIGN(act, f.opt_string("hidden_act"));
  if (act && *act != "silu") return f.error("hidden_act", "is '" + *act + "'; only silu is supported");
  EMBER_ASSIGN(dtype, f.opt_string("torch_dtype"));
  if (!dtype) EMBER_ASSIGN(dtype, f.opt_string("dtype"));  // newer transformers' name
  c.torch_dtype = dtype.value_or("");
  // Quantized checkpoints: the FP8 formats vLLM reads are ember's too (the
  // tensors say per-tensor or per-channel); others are refused by name here
  // rather than as a missing tensor later.
  if (const Json* q = f.get("quantization_config"); q != nullptr && !q->is_null()) {
    if (!q->is_object()) return f.error("quantization_config", "must be an object");
    Fields qf(*q, "");
    std::optional<std::string> method;
    EMBER_ASSIGN(method, qf.opt_string("quant_method"));
    c.quant_method = method.value_or("");
    if (c.quant_method != "fp8" && c.quant_method != "compressed-tensors")
      return f.error("quantization_config", "quant_method '" + c.quant_method +
                                                "' is not supported (ember reads FP8 checkpoints: 'fp8' and "
                                                "'compressed-tensors' float8 weights)");
    if (q->contains("weight_block_size") && !(*q)["weight_block_size"].is_null())
      return f.error("quantization_config", "weight_block_size: block-wise FP8 is not supported (per-tensor and "
                                            "per-channel scales are)");
  }

  std::optional<std::vector<int64_t>> eos;
  EMBER_ASSIGN(bos, f.opt_int("bos_token_id"));
  EMBER_ASSIGN(eos, f.opt_int_list("eos_token_id"));
  // transformers generates with generation_config.json's special tokens when
  // it gives them (Llama 3 Instruct lists several eos ids only there).
  if (gen != nullptr) {
    Fields g(*gen, source.substr(0, source.rfind('/') + 1) + "generation_config.json");
    std::optional<int64_t> gen_bos;
    std::optional<std::vector<int64_t>> gen_eos;
    EMBER_ASSIGN(gen_bos, g.opt_int("bos_token_id"));
    EMBER_ASSIGN(gen_eos, g.opt_int_list("eos_token_id"));
    if (gen_bos) bos = gen_bos;
    if (gen_eos) eos = gen_eos;
  }
  c.bos_token_id = bos.value_or(-1);
  c.eos_token_ids = eos.value_or(std::vector<int64_t>{});
  if (const Json* d = f.get("ember_dummy")) {
    if (!d->is_object()) return f.error("ember_dummy", "must be an object");
    Fields df(*d, source + ": ember_dummy");
    std::optional<int64_t> exit_layer;
    std::optional<double> scale;
    EMBER_ASSIGN(exit_layer, df.opt_int("exit_layer"));
    EMBER_ASSIGN(scale, df.opt_float("late_layer_scale"));
    for (const auto& item : d->items())
      if (item.key() != "exit_layer" && item.key() != "late_layer_scale")
        return f.error("ember_dummy", "has an unknown key \"" + item.key() + "\" (known: exit_layer, late_layer_scale)");
    c.dummy_exit_layer = exit_layer.value_or(0);
    c.dummy_late_layer_scale = scale.value_or(1.0);
    if (c.dummy_exit_layer < 0 || c.dummy_exit_layer > c.num_layers)
      return f.error("ember_dummy", "exit_layer must be in [0, num_hidden_layers]");
    if (!(c.dummy_late_layer_scale >= 0) || c.dummy_late_layer_scale > 1)
      return f.error("ember_dummy", "late_layer_scale must be in [0, 1]");
  }
  return c;
}

}  // namespace

Result<ModelConfig> model_config_from_hf_json(const std::string& config_json,
                                              const std::string& generation_config_json,
                                              const std::string& source) {
  if (Status s = check_json_shape(config_json, 16, 100000, source); !s) return s.error();
  if (Status s = check_json_shape(generation_config_json, 16, 100000, source + " (generation_config.json)"); !s) {
    return s.error();
  }
  try {
    Json cfg = Json::parse(config_json, nullptr, /*allow_exceptions=*/false);
    if (cfg.is_discarded()) return Error{source + ": not valid JSON"};
    Json gen;
    if (!generation_config_json.empty()) {
      gen = Json::parse(generation_config_json, nullptr, /*allow_exceptions=*/false);
      if (gen.is_discarded() || !gen.is_object())
        return Error{source + ": the generation_config.json beside it is not a JSON object"};
    }
    return parse_config(cfg, generation_config_json.empty() ? nullptr : &gen, source);
  } catch (const std::exception& e) {  // checked accesses make this unreachable
    return Error{source + ": " + e.what()};
  }
}

Status ModelConfig::validate() const {
  const auto positive_max = [](const char* name, int64_t v, int64_t max) -> Status {
    if (v <= 0 || v > max)
      return Error{std::string(name) + " = " + std::to_string(v) + " is outside [1, " +
                   std::to_string(max) + "]"};
    return Status::success();
  };
  const auto finite_positive = [](const char* name, double v) -> Status {
    if (!(v > 0) || !std::isfinite(v))
      return Error{std::string(name) + " = " + std::to_string(v) + " must be finite and > 0"};
    return Status::success();
  };
  if (architecture.empty()) return Error{"architecture is empty"};
  for (Status s : {positive_max("hidden_size", hidden_size, 65536),
                   positive_max("intermediate_size", intermediate_size, 1 << 20),
                   positive_max("num_layers", num_layers, 1024),
                   positive_max("num_heads", num_heads, 1024),
                   positive_max("num_kv_heads", num_kv_heads, 1024),
                   positive_max("head_dim", head_dim, 256),
                   positive_max("vocab_size", vocab_size, 1 << 24),
                   positive_max("max_position_embeddings", max_position_embeddings, 1 << 24),
                   finite_positive("rms_norm_eps", rms_norm_eps),
                   finite_positive("rope_theta", rope_theta)}) {
    if (!s) return s;
  }
  if (num_heads % num_kv_heads != 0)
    return Error{"num_heads = " + std::to_string(num_heads) + " is not a multiple of num_kv_heads = " +
                 std::to_string(num_kv_heads)};
  if (head_dim % 2 != 0) return Error{"head_dim = " + std::to_string(head_dim) + " must be even (RoPE pairs)"};
  if (rms_norm_eps >= 1) return Error{"rms_norm_eps = " + std::to_string(rms_norm_eps) + " must be < 1"};
  if (rope_scaling.type != RopeScalingType::kNone) {
    Status s = finite_positive("rope_scaling.factor", rope_scaling.factor);
    if (!s) return s;
  }
  if (rope_scaling.type == RopeScalingType::kLlama3) {
    for (Status s : {finite_positive("rope_scaling.low_freq_factor", rope_scaling.low_freq_factor),
                     finite_positive("rope_scaling.high_freq_factor", rope_scaling.high_freq_factor),
                     positive_max("rope_scaling.original_max_position_embeddings",
                                  rope_scaling.original_max_position_embeddings, 1 << 24)}) {
      if (!s) return s;
    }
    // The llama3 blend divides by (high - low).
    if (rope_scaling.high_freq_factor <= rope_scaling.low_freq_factor)
      return Error{"rope_scaling.high_freq_factor must exceed low_freq_factor"};
  }
  if (bos_token_id < -1 || bos_token_id >= vocab_size)
    return Error{"bos_token_id = " + std::to_string(bos_token_id) + " is outside the vocabulary"};
  for (int64_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size)
      return Error{"eos_token_id " + std::to_string(id) + " is outside the vocabulary of " +
                   std::to_string(vocab_size)};
  }
  return Status::success();
}

}  // namespace ember
