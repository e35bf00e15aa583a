#pragma once
// Opening a model from what the user names: a GGUF file or a Hugging Face
// directory (config.json + safetensors + tokenizer files). Yields the config,
// the tokenizer and the chat template; weights stay in the mapped files until
// a backend loads them.

#include <memory>
#include <string>

#include "common/status.h"
#include "models/formats/gguf.h"
#include "models/model_config.h"
#include "models/tokenizer/tokenizer.h"

namespace ember {

// kConfigOnly: a config.json-style file (e.g. configs/models/*.json) with no
// weights, for --load-format dummy; the tokenizer must come from --tokenizer.
enum class ModelFormat { kGguf, kHfDirectory, kConfigOnly };

struct ModelSource {
  std::string path;
  ModelFormat format = ModelFormat::kGguf;
  ModelConfig config;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string chat_template;        // Jinja source; empty if the model has none
  std::unique_ptr<GgufFile> gguf;   // set for kGguf
};

// `tokenizer_path` (file or directory) overrides the model's own tokenizer.
Result<ModelSource> open_model_source(const std::string& path, const std::string& tokenizer_path = "");

}  // namespace ember
