#pragma once
// A Hugging Face model directory: config.json (+ optional
// generation_config.json), the weights as model.safetensors or as shards
// listed in model.safetensors.index.json, and the tokenizer files. Every shard
// is mapped once; tensors are looked up by their HF name and stay views into
// the mappings for the lifetime of the HfModelDir.
//
// Guarantees after open(): the config parsed and validated; every tensor name
// is unique across shards; every tensor the index lists is present in the
// shard it names; shard names are plain file names inside the directory.

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "models/model_config.h"
#include "models/formats/safetensors.h"

namespace ember {

class HfModelDir {
 public:
  static Result<HfModelDir> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }

  const StTensor* find_tensor(std::string_view name) const;
  std::vector<std::string> tensor_names() const;  // sorted
  // The shard file a tensor lives in (for error messages); empty if unknown.
  std::string tensor_source(std::string_view name) const;

  // Absolute-or-as-given paths of the tokenizer files; empty when absent.
  const std::string& tokenizer_json_path() const { return tokenizer_json_; }
  const std::string& tokenizer_model_path() const { return tokenizer_model_; }
  const std::string& tokenizer_config_path() const { return tokenizer_config_; }

 private:
  struct Location {
    size_t shard;
    const StTensor* tensor;  // into shards_[shard]; unique_ptr keeps it stable
  };
  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, Location> tensors_;
  std::string tokenizer_json_;
  std::string tokenizer_model_;
  std::string tokenizer_config_;
};

}  // namespace ember
