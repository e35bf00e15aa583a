// libFuzzer target: an FP8 checkpoint's weights through the Hugging Face
// loader (models/weights_safetensors.cpp): the input is a model.safetensors
// for a fixed tiny FP8 config (quant_method "fp8"), so the fuzzer explores
// tensor dtypes, shapes, weight_scale shapes and values, NaN codes and
// missing or extra tensors. Any input must load or give an Error; a loaded
// model's matrices have their shapes and one scale a row, and dequantize.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "models/formats/hf_model_dir.h"
#include "models/weights.h"

namespace {

const std::string& dir() {
  static const std::string d = [] {
    const std::filesystem::path p =
        std::filesystem::temp_directory_path() / ("ember_fuzz_fp8_" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    std::ofstream(p / "config.json") << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
      "num_key_value_heads": 1, "vocab_size": 32, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
      "tie_word_embeddings": true, "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"}})";
    return p.string();
  }();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::ofstream out(dir() + "/model.safetensors", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto hf = ember::HfModelDir::open(dir());
  if (!hf) return 0;
  auto w = ember::load_llama_weights(*hf);
  if (!w) return 0;
  for (ember::LayerWeights& l : w->layers)
    for (ember::WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate_up, &l.w_down}) {
      if (m->dtype == ember::DType::kF8E4M3 &&
          (m->raw.size() != m->size() || m->row_scale.size() != static_cast<size_t>(m->rows)))
        __builtin_trap();
      ember::dequantize_fp8(*m);
      if (m->f32.size() != m->size()) __builtin_trap();
    }
  return 0;
}
