#include "models/model_source.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/json_limits.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

bool read_file(const fs::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

Result<std::unique_ptr<Tokenizer>> open_tokenizer(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_tokenizer_from_dir(path);
  if (path.ends_with(".json")) return load_tokenizer_json(path);
  if (path.ends_with(".model")) return load_sentencepiece_model(path);
  if (path.ends_with(".gguf")) {
    auto gguf = GgufFile::open(path);
    if (!gguf) return gguf.error();
    return load_tokenizer_from_gguf(*gguf);
  }
  return Error{path + ": not a tokenizer (expected a directory, tokenizer.json, tokenizer.model or .gguf)"};
}

}  // namespace

Result<ModelSource> open_model_source(const std::string& path, const std::string& tokenizer_path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Error{path + ": no such file or directory"};
  ModelSource src;
  src.path = path;

  if (fs::is_directory(path, ec)) {
    src.format = ModelFormat::kHfDirectory;
    const fs::path dir(path);
    std::string config_json, generation_json, tokenizer_config;
    if (!read_file(dir / "config.json", &config_json)) return Error{path + ": no config.json"};
    read_file(dir / "generation_config.json", &generation_json);
    auto config = model_config_from_hf_json(config_json, generation_json, (dir / "config.json").string());
    if (!config) return config.error();
    src.config = std::move(config).value();
    if (read_file(dir / "tokenizer_config.json", &tokenizer_config)) {
      auto j = check_json_shape(tokenizer_config, 16, size_t{1} << 20, "tokenizer_config.json").ok()
                   ? nlohmann::json::parse(tokenizer_config, nullptr, false)
                   : nlohmann::json();
      if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string()) {
        src.chat_template = j["chat_template"].get<std::string>();
      }
    }
    if (src.chat_template.empty()) read_file(dir / "chat_template.jinja", &src.chat_template);
  } else if (path.ends_with(".json")) {
    src.format = ModelFormat::kConfigOnly;
    std::string config_json;
    if (!read_file(path, &config_json)) return Error{path + ": cannot read"};
    auto config = model_config_from_hf_json(config_json, "", path);
    if (!config) return config.error();
    src.config = std::move(config).value();
    if (tokenizer_path.empty())
      return Error{path + ": a model config without weights needs --tokenizer (and --load-format dummy)"};
  } else {
    src.format = ModelFormat::kGguf;
    auto gguf = GgufFile::open(path);
    if (!gguf) return gguf.error();
    src.gguf = std::make_unique<GgufFile>(std::move(gguf).value());
    auto config = model_config_from_gguf(*src.gguf);
    if (!config) return config.error();
    src.config = std::move(config).value();
    src.chat_template = src.gguf->get_string("tokenizer.chat_template").value_or("");
  }

  if (!tokenizer_path.empty()) {
    auto tok = open_tokenizer(tokenizer_path);
    if (!tok) return tok.error();
    src.tokenizer = std::move(tok).value();
  } else if (src.format == ModelFormat::kGguf) {
    auto tok = load_tokenizer_from_gguf(*src.gguf);
    if (!tok) return tok.error();
    src.tokenizer = std::move(tok).value();
  } else {
    auto tok = load_tokenizer_from_dir(path);
    if (!tok) return tok.error();
    src.tokenizer = std::move(tok).value();
  }
  if (src.tokenizer->vocab_size() > src.config.vocab_size) {
    return Error{path + ": tokenizer has " + std::to_string(src.tokenizer->vocab_size()) +
                 " tokens but the model's vocab_size is " + std::to_string(src.config.vocab_size)};
  }
  return src;
}

}  // namespace ember
