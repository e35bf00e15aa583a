// load_tokenizer_from_gguf: the vocabulary embedded in a GGUF file.
// tokenizer.ggml.model selects the family: "gpt2" is byte-level BPE (here),
// "llama" is SentencePiece (tokenizer_spm_gguf.cpp). For "gpt2",
// tokenizer.ggml.pre names the pre-tokenizer; each is built to match the
// model's published tokenizer.json, e.g. SmolLM2's is
//   Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false, use_regex=true)]
// with a null normalizer and a ByteLevel decoder.

#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/tokenizer_bpe.h"
#include "models/tokenizer/tokenizer_spm_gguf.h"

namespace ember {

namespace {

// GGUF token types (llama.cpp's llama_token_type).
constexpr int64_t kTypeControl = 3;
constexpr int64_t kTypeUserDefined = 4;

struct PreConfig {
  PreTokenizer pre;
  bool nfc = false;
  bool ignore_merges = false;
  bool default_add_bos = false;
};

Result<PreConfig> pre_config(const std::string& name) {
  PreConfig c;
  Status s;
  if (name == "gpt-2" || name == "default") {
    s = c.pre.add_byte_level(false, true);
  } else if (name == "smollm") {
    c.pre.add_digits(true);
    s = c.pre.add_byte_level(false, true);
  } else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") {
    // Llama 3's tokenizer.json: Split(Isolated) + ByteLevel(use_regex=false),
    // ignore_merges=true, TemplateProcessing with <|begin_of_text|>.
    s = c.pre.add_regex_split(kLlama3Pattern, SplitBehavior::kIsolated, false);
    if (s) s = c.pre.add_byte_level(false, false);
    c.ignore_merges = true;
    c.default_add_bos = true;
  } else if (name == "qwen2") {
    c.nfc = true;
    s = c.pre.add_regex_split(kQwen2Pattern, SplitBehavior::kIsolated, false);
    if (s) s = c.pre.add_byte_level(false, false);
  } else {
    return Error{"tokenizer.ggml.pre \"" + name + "\" is not supported (known: gpt-2, default, smollm, llama-bpe, qwen2)"};
  }
  if (!s) return s.error();
  return c;
}

Result<std::unique_ptr<Tokenizer>> load_gpt2(const GgufFile& gguf) {
  const std::string& src = gguf.name();
  const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->type != GgufValueType::kArray || tokens->array_type != GgufValueType::kString) {
    return Error{src + ": tokenizer.ggml.tokens missing or not a string array"};
  }
  const size_t n = tokens->strings.size();
  if (n == 0 || n > (size_t{1} << 24)) return Error{src + ": tokenizer.ggml.tokens has " + std::to_string(n) + " entries"};
  const GgufValue* types = gguf.find("tokenizer.ggml.token_type");
  if (types != nullptr && types->ints.size() != n) {
    return Error{src + ": tokenizer.ggml.token_type has " + std::to_string(types->ints.size()) + " entries for " +
                 std::to_string(n) + " tokens"};
  }
  const GgufValue* merges = gguf.find("tokenizer.ggml.merges");
  if (merges == nullptr || merges->type != GgufValueType::kArray || merges->array_type != GgufValueType::kString) {
    return Error{src + ": tokenizer.ggml.merges missing or not a string array"};
  }
  auto pre = pre_config(gguf.get_string("tokenizer.ggml.pre").value_or("default"));
  if (!pre) return Error{src + ": " + pre.error().message};

  BpeSpec spec;
  spec.source = src;
  spec.pre_tokenizer = std::move(pre->pre);
  spec.nfc = pre->nfc;
  spec.ignore_merges = pre->ignore_merges;
  spec.vocab.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    spec.vocab.emplace_back(tokens->strings[i], id);
    const int64_t type = types != nullptr ? types->ints[i] : 1;
    // Control and user-defined tokens are stored as plain text (convert_hf_to_gguf
    // pre-normalizes them) and are matched in the input like HF's added tokens.
    if (type == kTypeControl || type == kTypeUserDefined) {
      if (tokens->strings[i].empty()) continue;
      AddedToken a;
      a.id = id;
      a.content = tokens->strings[i];
      a.special = type == kTypeControl;
      spec.added_tokens.push_back(std::move(a));
    }
  }
  spec.merges.reserve(merges->strings.size());
  for (size_t i = 0; i < merges->strings.size(); ++i) {
    const std::string& m = merges->strings[i];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) return Error{src + ": tokenizer.ggml.merges[" + std::to_string(i) + "] is not \"a b\""};
    spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  auto special_id = [&](const char* key) -> Result<int32_t> {
    const std::optional<int64_t> v = gguf.get_int(key);
    if (!v) return -1;
    if (*v < 0 || static_cast<uint64_t>(*v) >= n) return Error{src + ": " + key + " = " + std::to_string(*v) + " out of range"};
    return static_cast<int32_t>(*v);
  };
  auto bos = special_id("tokenizer.ggml.bos_token_id");
  if (!bos) return bos.error();
  auto eos = special_id("tokenizer.ggml.eos_token_id");
  if (!eos) return eos.error();
  spec.bos_id = *bos;
  spec.eos_id = *eos;
  if (gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(pre->default_add_bos) && *bos >= 0) spec.prefix_ids = {*bos};
  if (gguf.get_bool("tokenizer.ggml.add_eos_token").value_or(false) && *eos >= 0) spec.suffix_ids = {*eos};
  auto t = BpeTokenizer::create(std::move(spec));
  if (!t) return t.error();
  return std::unique_ptr<Tokenizer>(std::move(t).value());
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> load_tokenizer_from_gguf(const GgufFile& gguf) {
  const std::optional<std::string> model = gguf.get_string("tokenizer.ggml.model");
  if (!model) return Error{gguf.name() + ": tokenizer.ggml.model missing"};
  if (*model == "gpt2") return load_gpt2(gguf);
  if (*model == "llama") return load_spm_tokenizer_from_gguf(gguf);
  return Error{gguf.name() + ": tokenizer.ggml.model \"" + *model + "\" is not supported (gpt2, llama)"};
}

}  // namespace ember
