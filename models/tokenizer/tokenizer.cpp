// IncrementalDetokenizer and load_tokenizer_from_dir: the parts of the
// tokenizer room that work for every tokenizer family.

#include "models/tokenizer/tokenizer.h"

#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "common/json_limits.h"
#include "models/tokenizer/tokenizer_bpe.h"
#include "models/tokenizer/tokenizer_spm.h"
#include "models/tokenizer/unicode.h"
#include "models/tokenizer/utf8_repair.h"

namespace ember {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special, bool continues_text)
    : tokenizer_(tokenizer), skip_special_(skip_special), started_(continues_text) {}

// Emits everything but an incomplete trailing character. Because the repair
// policy is prefix-stable (utf8_repair.h), the concatenation of the outputs
// equals sanitize_utf8() of all the bytes, i.e. what decode() returns; the
// leading space a SentencePiece decode() drops is dropped from the first text
// emitted, which is the start of that output.
std::string IncrementalDetokenizer::push(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) return {};  // decode() ignores these too
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  const size_t keep = utf8_incomplete_suffix(pending_);
  std::string out = sanitize_utf8(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  if (!started_ && !out.empty()) {
    started_ = true;
    if (tokenizer_.strips_leading_space() && out[0] == ' ') out.erase(0, 1);
  }
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out = sanitize_utf8(pending_);  // a truncated character becomes U+FFFD
  pending_.clear();
  if (!started_ && !out.empty()) started_ = true;  // U+FFFD never starts with a space
  return out;
}

namespace {

// "bos_token": "<s>" or {"content": "<s>", ...}; empty if absent.
std::string token_content(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

// Applies tokenizer_config.json: add_bos_token / add_eos_token, bos/eos
// token names, and added_tokens_decoder ({"id": {"content", "special"}}).
// tokenizer_config.json, bounded in size and shape before it is parsed.
Result<nlohmann::json> read_small_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Error{path + ": cannot open"};
  const auto size = static_cast<size_t>(in.tellg());
  if (size > (size_t{64} << 20)) return Error{path + ": file too large (" + std::to_string(size) + " bytes)"};
  in.seekg(0);
  std::string text(size, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(size))) return Error{path + ": read failed"};
  if (Status s = check_json_shape(text, 16, size_t{1} << 20, path); !s) return s.error();
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Error{path + ": not a JSON object"};
  return j;
}

Status apply_tokenizer_config(const std::string& path, SpmTokenizer* tok) {
  auto parsed = read_small_json(path);
  if (!parsed) return parsed.error();
  const nlohmann::json& j = *parsed;
  bool add_bos = true, add_eos = false;
  if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) add_bos = j["add_bos_token"].get<bool>();
  if (j.contains("add_eos_token") && j["add_eos_token"].is_boolean()) add_eos = j["add_eos_token"].get<bool>();
  tok->set_add_special(add_bos, add_eos);
  if (j.contains("added_tokens_decoder")) {
    const auto& added = j["added_tokens_decoder"];
    if (!added.is_object()) return Error{path + ": added_tokens_decoder is not an object"};
    // In id order, so tokens past the vocabulary are appended one after another.
    std::map<int64_t, std::pair<std::string, bool>> by_id;
    for (const auto& [key, value] : added.items()) {
      char* end = nullptr;
      const long long id = std::strtoll(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > (1 << 24)) return Error{path + ": bad added token id \"" + key + "\""};
      const std::string content = token_content(value);
      if (content.empty()) return Error{path + ": added token " + key + " has no content"};
      const bool special = value.is_object() && value.contains("special") && value["special"].is_boolean() &&
                           value["special"].get<bool>();
      by_id[id] = {content, special};
    }
    for (const auto& [id, token] : by_id) {
      if (Status s = tok->add_added_token(static_cast<int32_t>(id), token.first, token.second); !s) {
        return Error{path + ": " + s.error().message};
      }
    }
  }
  const int32_t bos = j.contains("bos_token") ? tok->token_to_id(token_content(j["bos_token"])) : -1;
  const int32_t eos = j.contains("eos_token") ? tok->token_to_id(token_content(j["eos_token"])) : -1;
  tok->set_bos_eos(bos, eos);
  return Status::success();
}

}  // namespace

// For byte-level BPE only BOS/EOS come from tokenizer_config.json: added
// tokens and BOS insertion are already in tokenizer.json.
Status apply_bpe_tokenizer_config(const std::string& path, Tokenizer* tok) {
  auto* bpe = dynamic_cast<BpeTokenizer*>(tok);
  if (!bpe) return Status::success();
  auto parsed = read_small_json(path);
  if (!parsed) return parsed.error();
  const nlohmann::json& j = *parsed;
  int32_t bos = bpe->bos_id(), eos = bpe->eos_id();
  for (auto [key, id] : {std::pair<const char*, int32_t*>{"bos_token", &bos}, {"eos_token", &eos}}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const std::string content = token_content(j[key]);
    const int32_t found = bpe->token_to_id(content);
    if (found < 0) return Error{path + ": " + key + " \"" + content + "\" is not in the vocabulary"};
    *id = found;
  }
  bpe->set_bos_eos(bos, eos);
  return Status::success();
}

Result<std::unique_ptr<Tokenizer>> load_tokenizer_from_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  std::error_code ec;
  if (fs::is_regular_file(root / "tokenizer.json", ec)) {
    auto tok = load_tokenizer_json((root / "tokenizer.json").string());
    if (!tok) return tok.error();
    // tokenizer.json names no EOS; tokenizer_config.json does (Llama 3
    // Instruct's is <|eot_id|>, not the <|end_of_text|> a name guess finds).
    const fs::path config = root / "tokenizer_config.json";
    if (fs::is_regular_file(config, ec)) {
      if (Status s = apply_bpe_tokenizer_config(config.string(), tok->get()); !s) return s.error();
    }
    return tok;
  }
  if (!fs::is_regular_file(root / "tokenizer.model", ec)) {
    return Error{dir + ": no tokenizer.json or tokenizer.model in the directory"};
  }
  auto tok = load_spm_library_tokenizer((root / "tokenizer.model").string());
  if (!tok) return tok.error();
  const fs::path config = root / "tokenizer_config.json";
  if (fs::is_regular_file(config, ec)) {
    if (Status s = apply_tokenizer_config(config.string(), tok->get()); !s) return s.error();
  }
  return std::unique_ptr<Tokenizer>(std::move(tok).value());
}

}  // namespace ember
