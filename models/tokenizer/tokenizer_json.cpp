// load_tokenizer_json: HF tokenizers' tokenizer.json for byte-level BPE models.
// Every component ember does not implement exactly is rejected with an Error
// naming it, so a loaded tokenizer never silently differs from HF.
// "truncation" and "padding" are ignored, as transformers overrides them per call.

#include <cstdint>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/json_limits.h"

#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/tokenizer_bpe.h"

namespace ember {

namespace {

using nlohmann::json;

constexpr size_t kMaxFileBytes = size_t{128} << 20;  // real ones are < 35 MB

bool is_null(const json& j, const char* key) { return !j.contains(key) || j[key].is_null(); }

// Ids are read wide and range-checked so a huge value cannot wrap into a valid one.
int32_t get_id(const json& v) {
  if (!v.is_number_integer()) throw json::other_error::create(501, "token id is not an integer", &v);
  const auto id = v.get<int64_t>();
  if (id < 0 || id > INT32_MAX) throw json::other_error::create(501, "token id " + std::to_string(id) + " out of range", &v);
  return static_cast<int32_t>(id);
}

template <class T>
T get_or(const json& j, const char* key, T fallback) {
  return is_null(j, key) ? fallback : j[key].get<T>();
}

Status parse_normalizer(const json& n, bool* nfc) {
  if (n.is_null()) return Status::success();
  const std::string type = n.at("type").get<std::string>();
  if (type == "NFC") {
    *nfc = true;
    return Status::success();
  }
  if (type == "Sequence") {
    for (const json& sub : n.at("normalizers")) {
      Status s = parse_normalizer(sub, nfc);
      if (!s) return s;
    }
    return Status::success();
  }
  return Error{"normalizer \"" + type + "\" is not supported (only null and NFC)"};
}

Result<SplitBehavior> parse_behavior(const std::string& b) {
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return Error{"Split behavior \"" + b + "\" is unknown"};
}

Status parse_pre_tokenizer(const json& p, PreTokenizer* pre) {
  if (p.is_null()) return Error{"pre_tokenizer is null: byte-level BPE needs a ByteLevel pre-tokenizer"};
  const std::string type = p.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const json& sub : p.at("pretokenizers")) {
      Status s = parse_pre_tokenizer(sub, pre);
      if (!s) return s;
    }
    return Status::success();
  }
  if (type == "ByteLevel") {
    return pre->add_byte_level(get_or(p, "add_prefix_space", true), get_or(p, "use_regex", true));
  }
  if (type == "Digits") {
    pre->add_digits(get_or(p, "individual_digits", false));
    return Status::success();
  }
  if (type == "Split") {
    auto behavior = parse_behavior(p.at("behavior").get<std::string>());
    if (!behavior) return behavior.error();
    const bool invert = get_or(p, "invert", false);
    const json& pattern = p.at("pattern");
    if (pattern.contains("Regex")) return pre->add_regex_split(pattern["Regex"].get<std::string>(), *behavior, invert);
    if (pattern.contains("String")) {
      pre->add_literal_split(pattern["String"].get<std::string>(), *behavior, invert);
      return Status::success();
    }
    return Error{"Split pattern must be {\"Regex\": ...} or {\"String\": ...}"};
  }
  return Error{"pre_tokenizer \"" + type + "\" is not supported"};
}

Status parse_post_processor(const json& p, std::vector<int32_t>* prefix, std::vector<int32_t>* suffix) {
  if (p.is_null()) return Status::success();
  const std::string type = p.at("type").get<std::string>();
  if (type == "ByteLevel") return Status::success();  // only adjusts offsets
  if (type == "Sequence") {
    for (const json& sub : p.at("processors")) {
      Status s = parse_post_processor(sub, prefix, suffix);
      if (!s) return s;
    }
    return Status::success();
  }
  if (type != "TemplateProcessing") return Error{"post_processor \"" + type + "\" is not supported"};
  if (!prefix->empty() || !suffix->empty()) return Error{"more than one TemplateProcessing post_processor"};
  const json& specials = p.at("special_tokens");
  bool seen_sequence = false;
  for (const json& item : p.at("single")) {
    if (item.contains("Sequence")) {
      if (item["Sequence"].at("id").get<std::string>() != "A") return Error{"TemplateProcessing single uses $B"};
      if (seen_sequence) return Error{"TemplateProcessing single repeats $A"};
      seen_sequence = true;
    } else if (item.contains("SpecialToken")) {
      const std::string name = item["SpecialToken"].at("id").get<std::string>();
      if (!specials.contains(name)) return Error{"TemplateProcessing special token \"" + name + "\" has no ids"};
      for (const json& id : specials[name].at("ids")) (seen_sequence ? suffix : prefix)->push_back(get_id(id));
    } else {
      return Error{"TemplateProcessing item is neither Sequence nor SpecialToken"};
    }
  }
  if (!seen_sequence) return Error{"TemplateProcessing single has no $A"};
  return Status::success();
}

Status parse_model(const json& m, BpeSpec* spec) {
  if (get_or<std::string>(m, "type", "BPE") != "BPE") return Error{"model type \"" + m["type"].get<std::string>() + "\" is not BPE"};
  if (get_or(m, "byte_fallback", false)) return Error{"BPE byte_fallback=true is not supported"};
  if (!is_null(m, "dropout") && m["dropout"].get<double>() != 0.0) return Error{"BPE dropout is not supported"};
  if (!get_or<std::string>(m, "continuing_subword_prefix", "").empty() || !get_or<std::string>(m, "end_of_word_suffix", "").empty()) {
    return Error{"BPE continuing_subword_prefix / end_of_word_suffix are not supported"};
  }
  spec->ignore_merges = get_or(m, "ignore_merges", false);
  if (!is_null(m, "unk_token")) spec->unk_token = m["unk_token"].get<std::string>();
  const json& vocab = m.at("vocab");
  if (!vocab.is_object()) return Error{"model.vocab is not an object"};
  spec->vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) spec->vocab.emplace_back(it.key(), get_id(it.value()));
  const json& merges = m.at("merges");
  spec->merges.reserve(merges.size());
  for (const json& mg : merges) {
    if (mg.is_string()) {
      // "a b": tokens never contain a space in byte-level BPE (space is "Ġ").
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) return Error{"merge \"" + s + "\" is not \"a b\""};
      spec->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (mg.is_array() && mg.size() == 2) {
      spec->merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
    } else {
      return Error{"merge entry is neither \"a b\" nor [a, b]"};
    }
  }
  return Status::success();
}

Result<std::unique_ptr<BpeTokenizer>> parse_tokenizer_json(const json& j, const std::string& path) {
  BpeSpec spec;
  spec.source = path;
  auto fail = [&](const Error& e) { return Error{path + ": " + e.message}; };
  if (!j.is_object() || !j.contains("model")) return Error{path + ": no \"model\" object"};
  if (Status s = parse_model(j["model"], &spec); !s) return fail(s.error());
  if (Status s = parse_normalizer(j.value("normalizer", json()), &spec.nfc); !s) return fail(s.error());
  if (Status s = parse_pre_tokenizer(j.value("pre_tokenizer", json()), &spec.pre_tokenizer); !s) return fail(s.error());
  const json decoder = j.value("decoder", json());
  if (decoder.is_null() || decoder.at("type").get<std::string>() != "ByteLevel") {
    return Error{path + ": decoder must be ByteLevel (got " + decoder.dump() + ")"};
  }
  for (const json& a : j.value("added_tokens", json::array())) {
    AddedToken t;
    t.id = get_id(a.at("id"));
    t.content = a.at("content").get<std::string>();
    t.special = get_or(a, "special", false);
    t.lstrip = get_or(a, "lstrip", false);
    t.rstrip = get_or(a, "rstrip", false);
    t.single_word = get_or(a, "single_word", false);
    t.normalized = get_or(a, "normalized", !t.special);
    spec.added_tokens.push_back(std::move(t));
  }
  if (Status s = parse_post_processor(j.value("post_processor", json()), &spec.prefix_ids, &spec.suffix_ids); !s) {
    return fail(s.error());
  }
  // tokenizer.json has no BOS/EOS fields: BOS is what the template prepends;
  // EOS is guessed from well-known names. load_tokenizer_from_dir overrides
  // both from tokenizer_config.json when present.
  if (!spec.prefix_ids.empty()) spec.bos_id = spec.prefix_ids.front();
  if (!spec.suffix_ids.empty()) spec.eos_id = spec.suffix_ids.back();
  for (const char* name : {"<|end_of_text|>", "<|endoftext|>", "</s>"}) {
    if (spec.eos_id >= 0) break;
    for (const AddedToken& a : spec.added_tokens) {
      if (a.content == name) spec.eos_id = a.id;
    }
  }
  return BpeTokenizer::create(std::move(spec));
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> load_tokenizer_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Error{path + ": cannot open"};
  const auto size = static_cast<size_t>(in.tellg());
  if (size > kMaxFileBytes) return Error{path + ": file too large (" + std::to_string(size) + " bytes)"};
  in.seekg(0);
  std::string text(size, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(size))) return Error{path + ": read failed"};
  // Merges are [a, b] pairs: one container each, so allow a few million.
  if (Status s = check_json_shape(text, 32, size_t{1} << 22, path); !s) return s.error();
  try {
    const json j = json::parse(text);
    auto t = parse_tokenizer_json(j, path);
    if (!t) return t.error();
    return std::unique_ptr<Tokenizer>(std::move(t).value());
  } catch (const json::exception& e) {
    return Error{path + ": invalid tokenizer.json: " + e.what()};
  }
}

}  // namespace ember
