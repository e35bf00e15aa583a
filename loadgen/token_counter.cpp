#include "loadgen/token_counter.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "loadgen/openai_client.h"
#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"

namespace ember {
namespace {

using json = nlohmann::json;

class LocalCounter final : public TokenCounter {
 public:
  explicit LocalCounter(std::unique_ptr<Tokenizer> owned) : LocalCounter(*owned) { owned_ = std::move(owned); }
  explicit LocalCounter(const Tokenizer& tok) : tok_(&tok) {
    for (int32_t id = 0; id < tok_->vocab_size(); ++id) {
      if (!tok_->is_special(id)) pool_.push_back(id);
    }
  }
  Result<std::vector<int32_t>> encode(const std::string& text) override { return tok_->encode(text, true); }
  Result<std::string> decode(const std::vector<int32_t>& ids) override { return tok_->decode(ids, true); }
  const std::vector<int32_t>& id_pool() override { return pool_; }

 private:
  const Tokenizer* tok_;
  std::unique_ptr<Tokenizer> owned_;
  std::vector<int32_t> pool_;
};

// Common English words: the server does not tell its vocabulary size, so the
// pool of random ids is what these words tokenize to (a few hundred ordinary
// tokens, none special).
constexpr const char* kWords =
    "the of and to in is was for on that with as by at from his her an were are which this be or has had not "
    "but first one their its new after who they have two been other she when all time during also into more "
    "would there world year people state city school house water music film game team season history group "
    "between under while where through before since because however within around number country company "
    "system power public early later several during second third large small local general national river "
    "island village church station market energy science nature animal language letter window garden summer "
    "winter spring autumn morning evening silver golden purple orange yellow forest mountain valley ocean "
    "bridge castle engine signal pattern theory method result problem answer question reason example simple "
    "complex ancient modern famous quiet rapid gentle bright narrow heavy";

class ServerCounter final : public TokenCounter {
 public:
  ServerCounter(OpenAiClient& client, std::string model) : client_(client), model_(std::move(model)) {}

  Result<std::vector<int32_t>> encode(const std::string& text) override {
    auto r = client_.post_json("/tokenize", {{"model", model_}, {"prompt", text}});
    if (!r) return r.error();
    auto it = r->find("tokens");
    if (it == r->end() || !it->is_array()) return Error{"POST /tokenize: the response has no 'tokens' array"};
    std::vector<int32_t> ids;
    for (const json& v : *it) {
      if (!v.is_number_integer()) return Error{"POST /tokenize: a token id is not an integer"};
      ids.push_back(v.get<int32_t>());
    }
    return ids;
  }

  Result<std::string> decode(const std::vector<int32_t>& ids) override {
    auto r = client_.post_json("/detokenize", {{"model", model_}, {"tokens", ids}});
    if (!r) return r.error();
    auto it = r->find("prompt");
    if (it == r->end() || !it->is_string()) return Error{"POST /detokenize: the response has no 'prompt' string"};
    return it->get<std::string>();
  }

  const std::vector<int32_t>& id_pool() override { return pool_; }

  Status init() {
    auto r = client_.post_json("/tokenize", {{"model", model_}, {"prompt", kWords}, {"add_special_tokens", false}});
    if (!r) return r.error();
    std::set<int32_t> ids;
    if (auto it = r->find("tokens"); it != r->end() && it->is_array()) {
      for (const json& v : *it) {
        if (v.is_number_integer()) ids.insert(v.get<int32_t>());
      }
    }
    if (ids.size() < 16) return Error{"POST /tokenize: too few distinct tokens to draw random prompts from"};
    pool_.assign(ids.begin(), ids.end());
    return Status::success();
  }

 private:
  OpenAiClient& client_;
  std::string model_;
  std::vector<int32_t> pool_;
};

}  // namespace

Result<std::unique_ptr<TokenCounter>> local_token_counter(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  Result<std::unique_ptr<Tokenizer>> tok = Error{""};
  if (fs::is_directory(path, ec)) {
    tok = load_tokenizer_from_dir(path);
  } else if (path.ends_with(".gguf")) {
    auto gguf = GgufFile::open(path);
    if (!gguf) return gguf.error();
    tok = load_tokenizer_from_gguf(*gguf);
  } else if (path.ends_with(".json")) {
    tok = load_tokenizer_json(path);
  } else if (path.ends_with(".model")) {
    tok = load_sentencepiece_model(path);
  } else {
    return Error{"--tokenizer " + path + ": expected a directory, a .gguf, tokenizer.json or tokenizer.model"};
  }
  if (!tok) return Error{"--tokenizer " + path + ": " + tok.error().message};
  return std::unique_ptr<TokenCounter>(new LocalCounter(std::move(tok).value()));
}

std::unique_ptr<TokenCounter> tokenizer_token_counter(const Tokenizer& tokenizer) {
  return std::make_unique<LocalCounter>(tokenizer);
}

Result<std::unique_ptr<TokenCounter>> server_token_counter(OpenAiClient& client, const std::string& model) {
  auto counter = std::make_unique<ServerCounter>(client, model);
  if (Status s = counter->init(); !s) return s.error();
  return std::unique_ptr<TokenCounter>(std::move(counter));
}

}  // namespace ember
