#include "models/formats/hf_model_dir.h"

#include "common/json_limits.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <map>
#include <system_error>

#include <nlohmann/json.hpp>

namespace ember {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Configs and indexes are a few KB to a few MB; anything far larger is not one.
constexpr size_t kMaxTextFile = 64u << 20;

bool is_regular_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

Result<std::string> read_text_file(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return mapped.error();
  if (mapped->size() > kMaxTextFile)
    return Error{path + ": " + std::to_string(mapped->size()) + " bytes is too large for a JSON file"};
  return std::string(reinterpret_cast<const char*>(mapped->data()), mapped->size());
}

// A shard named by the index must be a plain file name: no directory part, so
// the index cannot point the loader outside the model directory.
bool is_plain_file_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  return name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

// Parses model.safetensors.index.json into shard file -> tensor names it should hold.
Result<std::map<std::string, std::vector<std::string>>> read_index(const std::string& path) {
  auto text = read_text_file(path);
  if (!text) return text.error();
  if (Status s = check_json_shape(*text, 8, size_t{1} << 20, path); !s) return s.error();
  Json index = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) return Error{path + ": not a JSON object"};
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) return Error{path + ": missing or non-object 'weight_map'"};
  std::map<std::string, std::vector<std::string>> shards;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string())
      return Error{path + ": weight_map entry for '" + tensor + "' is not a string"};
    const std::string& file = shard.get_ref<const std::string&>();
    if (!is_plain_file_name(file))
      return Error{path + ": weight_map entry for '" + tensor + "' names '" + file +
                   "', which is not a plain file name inside the model directory"};
    shards[file].push_back(tensor);
  }
  if (shards.empty()) return Error{path + ": 'weight_map' is empty"};
  return shards;
}

}  // namespace

Result<HfModelDir> HfModelDir::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Error{dir + ": not a directory"};
  HfModelDir out;
  out.dir_ = dir;
  const auto path_of = [&](const std::string& file) { return (fs::path(dir) / file).string(); };

  // Config: required; generation config: optional (it overrides eos).
  const std::string config_path = path_of("config.json");
  if (!is_regular_file(config_path)) return Error{config_path + ": missing (required)"};
  auto config_text = read_text_file(config_path);
  if (!config_text) return config_text.error();
  std::string generation_text;
  const std::string generation_path = path_of("generation_config.json");
  if (is_regular_file(generation_path)) {
    auto g = read_text_file(generation_path);
    if (!g) return g.error();
    generation_text = std::move(*g);
  }
  auto config = model_config_from_hf_json(*config_text, generation_text, config_path);
  if (!config) return config.error();
  Status valid = config->validate();
  if (!valid) return Error{config_path + ": " + valid.error().message};
  out.config_ = std::move(*config);

  // Weights: a single file wins over an index, as in transformers.
  std::map<std::string, std::vector<std::string>> listed;  // shard -> tensors the index puts there
  const std::string single = path_of("model.safetensors");
  const std::string index_path = path_of("model.safetensors.index.json");
  if (is_regular_file(single)) {
    listed["model.safetensors"] = {};
  } else if (is_regular_file(index_path)) {
    auto shards = read_index(index_path);
    if (!shards) return shards.error();
    listed = std::move(*shards);
  } else {
    return Error{dir + ": no model.safetensors or model.safetensors.index.json"};
  }

  try {
    for (const auto& [shard_name, expected] : listed) {
      auto file = SafetensorsFile::open(path_of(shard_name));
      if (!file) return file.error();
      const size_t shard_index = out.shards_.size();
      out.shards_.push_back(std::make_unique<SafetensorsFile>(std::move(*file)));
      const SafetensorsFile& shard = *out.shards_.back();
      for (const std::string& name : expected) {
        if (shard.find(name) == nullptr)
          return Error{index_path + ": tensor '" + name + "' is listed in shard '" + shard_name +
                       "' but missing from it"};
      }
      for (const StTensor& t : shard.tensors()) {
        auto [it, inserted] = out.tensors_.emplace(t.name, Location{shard_index, &t});
        if (!inserted)
          return Error{dir + ": tensor '" + t.name + "' is present in both '" +
                       out.shards_[it->second.shard]->name() + "' and '" + shard.name() + "'"};
      }
    }
  } catch (const std::exception& e) {  // allocation failure only
    return Error{dir + ": " + e.what()};
  }

  if (const auto p = path_of("tokenizer.json"); is_regular_file(p)) out.tokenizer_json_ = p;
  if (const auto p = path_of("tokenizer.model"); is_regular_file(p)) out.tokenizer_model_ = p;
  if (const auto p = path_of("tokenizer_config.json"); is_regular_file(p)) out.tokenizer_config_ = p;
  return out;
}

const StTensor* HfModelDir::find_tensor(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : it->second.tensor;
}

std::vector<std::string> HfModelDir::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, loc] : tensors_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::string HfModelDir::tensor_source(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? std::string() : shards_[it->second.shard]->name();
}

}  // namespace ember
