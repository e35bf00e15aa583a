#pragma once
// Text <-> token ids. Two families, one interface:
//  - SentencePiece: tokenizer.model through the sentencepiece library, and GGUF
//    vocabularies of type "llama" (scores + byte fallback) reimplemented here.
//  - Byte-level BPE: tokenizer.json and GGUF vocabularies of type "gpt2"
//    (tokens + merges) with the model's pre-tokenizer (Llama 3, GPT-2/SmolLM2, Qwen2).
// Parity target: ids identical to Hugging Face `tokenizers` (and to the
// sentencepiece library for SPM models). Added/special tokens that appear in the
// text are matched as whole tokens, as HF tokenizers does by default.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ember {

class GgufFile;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS / append EOS as the model's files say (HF's add_special_tokens).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special) const = 0;

  // The raw bytes of one token (byte-level BPE and byte-fallback pieces are
  // mapped back to bytes, "▁" to a space). May be an incomplete UTF-8 sequence.
  virtual std::string token_bytes(int32_t id) const = 0;

  // Decodes a whole sequence. Invalid UTF-8 is replaced with U+FFFD, like HF.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  virtual bool is_special(int32_t id) const = 0;
  // Looks up the id of a token string (e.g. "<|im_end|>"); -1 if absent.
  virtual int32_t token_to_id(std::string_view token) const = 0;
  // True when decode() drops one leading space of its output (SentencePiece's
  // dummy prefix: "▁Hello" alone decodes to "Hello"), so that the streaming
  // detokenizer can do the same.
  virtual bool strips_leading_space() const { return false; }
};

// A Hugging Face model directory: tokenizer.json (BPE) or tokenizer.model (SPM),
// with tokenizer_config.json for BOS/EOS handling when present.
Result<std::unique_ptr<Tokenizer>> load_tokenizer_from_dir(const std::string& dir);
Result<std::unique_ptr<Tokenizer>> load_tokenizer_json(const std::string& path);
Result<std::unique_ptr<Tokenizer>> load_sentencepiece_model(const std::string& path);
Result<std::unique_ptr<Tokenizer>> load_tokenizer_from_gguf(const GgufFile& gguf);

// Streaming detokenization: feed ids one at a time, get back only text that is
// final (complete UTF-8 characters, never half a character). flush() returns the
// rest at the end of a sequence (invalid bytes become U+FFFD).
class IncrementalDetokenizer {
 public:
  // continues_text: the ids continue a prompt (the engine's case), so a
  // leading space is real text and is kept; otherwise the output starts a
  // text and a SentencePiece dummy-prefix space is dropped, as decode() does.
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special, bool continues_text = false);
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of an incomplete UTF-8 sequence
  bool started_ = false;  // some text was emitted (the leading space is decided)
};

}  // namespace ember
