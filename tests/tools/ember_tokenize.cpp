// Drives a tokenizer over a JSONL corpus for the Python parity tests.
//   ember_tokenize TOKENIZER INPUT.jsonl [--no-special]
// TOKENIZER: a model directory, tokenizer.json, tokenizer.model or a .gguf file.
// Each input line is {"text": "..."} or {"hex": "..."} (raw bytes, possibly
// invalid UTF-8). Each output line is {"ids": [...], "decoded": "...",
// "streamed": "..."} where "streamed" is the concatenation of the
// IncrementalDetokenizer's outputs, which must equal "decoded".

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER INPUT.jsonl [--no-special]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const bool add_special = !(argc > 3 && std::string(argv[3]) == "--no-special");

  ember::Result<std::unique_ptr<ember::Tokenizer>> tok = ember::Error{"unset"};
  std::unique_ptr<ember::GgufFile> gguf;
  if (ends_with(path, ".gguf")) {
    auto file = ember::GgufFile::open(path);
    if (!file) {
      std::fprintf(stderr, "%s\n", file.error().message.c_str());
      return 1;
    }
    gguf = std::make_unique<ember::GgufFile>(std::move(file).value());
    tok = ember::load_tokenizer_from_gguf(*gguf);
  } else if (ends_with(path, ".json")) {
    tok = ember::load_tokenizer_json(path);
  } else if (ends_with(path, ".model")) {
    tok = ember::load_sentencepiece_model(path);
  } else {
    tok = ember::load_tokenizer_from_dir(path);
  }
  if (!tok) {
    std::fprintf(stderr, "%s\n", tok.error().message.c_str());
    return 1;
  }
  const ember::Tokenizer& t = **tok;

  std::ifstream in(argv[2]);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    std::string text = j.contains("hex") ? from_hex(j["hex"].get<std::string>()) : j["text"].get<std::string>();
    std::vector<int32_t> ids = t.encode(text, add_special);
    ember::IncrementalDetokenizer detok(t, /*skip_special=*/false);
    std::string streamed;
    for (int32_t id : ids) streamed += detok.push(id);
    streamed += detok.flush();
    nlohmann::json out;
    out["ids"] = ids;
    out["decoded"] = t.decode(ids, /*skip_special=*/false);
    out["streamed"] = streamed;
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return 0;
}
