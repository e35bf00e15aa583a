#pragma once
// Byte-level BPE (GPT-2 family: Llama 3, SmolLM2, Qwen2) with HF tokenizers
// semantics. Encoding, in HF's order:
//   1. invalid UTF-8 -> U+FFFD (maximal subparts, as Python's errors="replace"),
//   2. added tokens with normalized=false are cut out of the raw text,
//   3. the rest is normalized (NFC or nothing),
//   3b. added tokens with normalized=true are cut out of the normalized text,
//   4. each remaining segment is pre-tokenized (pretokenizer.h) and every piece
//      is BPE-merged over its bytes (lowest merge rank first, leftmost on ties);
//      with ignore_merges a piece that is itself a vocab token is emitted whole,
//   5. with add_special, the post-processor's prefix/suffix ids are added.
// Added tokens match leftmost-longest, like HF's Aho-Corasick matcher.
// Decoding maps each token back through the byte table (a token with a code
// point outside the table keeps its UTF-8, as HF's ByteLevel decoder does).

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "models/tokenizer/pretokenizer.h"
#include "models/tokenizer/tokenizer.h"

namespace ember {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Everything a loader extracted from a file; `source` names it in errors.
struct BpeSpec {
  std::string source;
  std::vector<std::pair<std::string, int32_t>> vocab;  // token (byte-level form) -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added_tokens;
  PreTokenizer pre_tokenizer;  // must contain a ByteLevel step
  bool nfc = false;
  bool ignore_merges = false;
  std::optional<std::string> unk_token;
  std::vector<int32_t> prefix_ids;  // added by encode(..., add_special=true)
  std::vector<int32_t> suffix_ids;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
};

class BpeTokenizer final : public Tokenizer {
 public:
  static Result<std::unique_ptr<BpeTokenizer>> create(BpeSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_special) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  bool is_special(int32_t id) const override;
  int32_t token_to_id(std::string_view token) const override;

  // For loaders that learn BOS/EOS elsewhere (tokenizer_config.json).
  void set_bos_eos(int32_t bos, int32_t eos) {
    bos_id_ = bos;
    eos_id_ = eos;
  }
  // BPE of one pre-token's bytes (exposed for tests). Appends ids to *out.
  void bpe_piece(std::string_view bytes, std::vector<int32_t>* out) const;

 private:
  struct MergeTarget {
    int32_t rank;
    int32_t id;
  };
  // (left id, right id) -> merge, open addressing: the merge lookup is the
  // hottest operation of encode and std::unordered_map's modulo dominated it.
  class MergeTable {
   public:
    void reserve(size_t n);
    void insert(uint64_t key, MergeTarget value);  // keeps the first value of a key
    const MergeTarget* find(uint64_t key) const;

   private:
    size_t slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
    struct Entry {
      uint64_t key = ~0ull;  // ~0 is never a key: ids are < 2^24
      MergeTarget value{};
    };
    std::vector<Entry> entries_;
    int shift_ = 64;
  };
  // Added tokens grouped by first byte, longest first, for leftmost-longest search.
  struct AddedMatcher {
    std::array<std::vector<int32_t>, 256> by_first_byte;  // indices into added_
    bool empty = true;
  };
  BpeTokenizer() = default;
  void build_matcher(bool normalized, AddedMatcher* m) const;
  // Cuts `text` at the added tokens of `m`; calls on_text / on_added per segment.
  template <class OnText>
  void split_added(std::string_view text, const AddedMatcher& m, std::vector<int32_t>* ids, OnText on_text) const;
  void encode_segment(std::string_view text, std::vector<int32_t>* ids) const;

  std::vector<std::string> id_to_token_;  // as in the file ("" for unused ids)
  std::vector<std::string> id_to_bytes_;  // decoded bytes of each token
  std::vector<uint8_t> special_;          // per id
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // raw bytes of byte-level vocab tokens
  MergeTable merges_;
  std::array<int32_t, 256> byte_id_{};                    // single-byte tokens, -1 if absent
  std::vector<AddedToken> added_;
  AddedMatcher raw_matcher_, normalized_matcher_;
  PreTokenizer pre_;
  bool nfc_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  int32_t bos_id_ = -1, eos_id_ = -1;
};

}  // namespace ember
