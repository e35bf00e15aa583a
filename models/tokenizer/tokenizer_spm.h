#pragma once
// SentencePiece tokenizers: the shared vocabulary logic (special tokens,
// token bytes, decode) and two encoders of the text between special tokens:
//  - the sentencepiece library, for tokenizer.model files (BPE or unigram);
//  - ember's own SentencePiece-BPE (tokenizer_spm_gguf.cpp), for GGUF "llama"
//    vocabularies, which carry pieces, scores and types but no model proto.
//
// Behaviour (the parity tests hold it to these references):
//  - Text without special-token strings encodes exactly as the sentencepiece
//    library does (dummy "▁" prefix, byte fallback), BOS/EOS per the flags.
//  - Control, unknown and user-defined pieces (and added tokens from
//    tokenizer_config.json) that appear in the text are matched as whole
//    tokens, leftmost-longest, as Hugging Face's LlamaTokenizer (legacy=false)
//    does: only a text segment that starts the input gets the dummy prefix; a
//    segment after a special token does not. (llama.cpp instead prefixes every
//    segment after a special token with a space; sentencepiece never matches
//    control pieces in text.)
//  - decode() follows HF: special tokens render as their text unless
//    skip_special, "▁" becomes " ", byte pieces become bytes, one leading
//    space of the whole output is dropped. Invalid UTF-8 from byte pieces
//    becomes U+FFFD per maximal subpart (see utf8_repair.h); HF's ByteFallback
//    and sentencepiece replace per byte instead — ids produced by encode()
//    never decode to invalid UTF-8, so the references only differ on
//    hand-made id sequences.
//  - Input text that is not valid UTF-8 is repaired first (utf8_repair.h).

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "models/tokenizer/tokenizer.h"

namespace ember {

// Piece types, numbered as in sentencepiece's model proto and GGUF's token_type.
enum class SpmPieceType : uint8_t {
  kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

struct SpmVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<SpmPieceType> types;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = true;   // Llama's default (HF LlamaTokenizer, llama.cpp)
  bool add_eos = false;
  bool add_dummy_prefix = true;
};

// Parses "<0xNN>" (the byte-fallback piece spelling); -1 otherwise.
int byte_piece_value(std::string_view piece);

class SpmTokenizer : public Tokenizer {
 public:
  explicit SpmTokenizer(SpmVocab vocab);

  std::vector<int32_t> encode(std::string_view text, bool add_special) const final;
  std::string token_bytes(int32_t id) const final;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const final;
  int32_t vocab_size() const final { return static_cast<int32_t>(vocab_.pieces.size()); }
  int32_t bos_id() const final { return vocab_.bos_id; }
  int32_t eos_id() const final { return vocab_.eos_id; }
  bool is_special(int32_t id) const final;
  int32_t token_to_id(std::string_view token) const final;
  bool strips_leading_space() const final { return vocab_.add_dummy_prefix; }

  // Settings from a Hugging Face tokenizer_config.json (load_tokenizer_from_dir).
  void set_add_special(bool add_bos, bool add_eos);
  void set_bos_eos(int32_t bos_id, int32_t eos_id);
  // An added token: an existing piece (re)marked, or a new one appended at
  // id == vocab_size(). Any other id is an error.
  Status add_added_token(int32_t id, const std::string& content, bool special);

 protected:
  // Encodes text that holds no special token. `at_start`: the segment begins
  // the input, so it gets the dummy prefix (when the model uses one).
  virtual void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>* ids) const = 0;
  const SpmVocab& vocab() const { return vocab_; }
  // Any piece by its text (first id wins for duplicates); -1 if absent.
  int32_t find_piece(std::string_view piece) const;
  int32_t byte_piece_id(uint8_t byte) const { return byte_ids_[byte]; }
  bool has_byte_fallback() const { return has_byte_fallback_; }

 private:
  void index_matchable(int32_t id);
  void sort_matchable();

  SpmVocab vocab_;
  std::vector<uint8_t> special_;       // per id: skipped by decode(skip_special)
  std::vector<uint8_t> matchable_;     // per id: matched whole in input text
  std::unordered_map<std::string, int32_t> piece_ids_;
  std::array<int32_t, 256> byte_ids_;  // "<0xNN>" piece per byte, -1 if absent
  bool has_byte_fallback_ = false;
  // Matchable tokens by first byte, longest first (leftmost-longest search).
  std::array<std::vector<int32_t>, 256> matchable_by_byte_;
  bool defer_sort_ = true;  // true only while the constructor indexes
};

// The library-backed tokenizer behind load_sentencepiece_model, typed so that
// load_tokenizer_from_dir can apply tokenizer_config.json.
Result<std::unique_ptr<SpmTokenizer>> load_spm_library_tokenizer(const std::string& path);

}  // namespace ember
