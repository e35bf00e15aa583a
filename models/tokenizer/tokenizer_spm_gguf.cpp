// GGUF "llama" vocabularies: SentencePiece BPE reimplemented over the pieces,
// scores and types that the GGUF carries. The algorithm is sentencepiece's
// bpe_model.cc: start from characters (user-defined pieces kept whole),
// repeatedly merge the adjacent pair whose concatenation is a normal,
// user-defined or unused piece with the highest score (ties: leftmost), split
// unused pieces back into the pair they came from, and spell pieces absent
// from the vocabulary as <0xNN> byte pieces (or <unk> without byte fallback).

#include "models/tokenizer/tokenizer_spm_gguf.h"

#include <cmath>

#include <array>
#include <queue>

#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer_spm.h"
#include "models/tokenizer/unicode.h"
#include "models/tokenizer/utf8_repair.h"

namespace ember {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";
constexpr size_t kMaxTokens = 4u << 20;

class SpmGgufTokenizer final : public SpmTokenizer {
 public:
  explicit SpmGgufTokenizer(SpmVocab v) : SpmTokenizer(std::move(v)) {
    const SpmVocab& voc = vocab();
    for (size_t i = 0; i < voc.pieces.size(); ++i) {
      const SpmPieceType t = voc.types[i];
      if (t == SpmPieceType::kNormal || t == SpmPieceType::kUserDefined || t == SpmPieceType::kUnused) {
        merge_ids_.emplace(voc.pieces[i], static_cast<int32_t>(i));
      }
      if (t == SpmPieceType::kUserDefined && !voc.pieces[i].empty()) {
        user_defined_[static_cast<uint8_t>(voc.pieces[i][0])].push_back(static_cast<int32_t>(i));
      }
    }
  }

 protected:
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>* ids) const override;

 private:
  struct Symbol {
    size_t begin = 0;
    size_t len = 0;  // 0 once merged into its left neighbour
    int prev = -1;
    int next = -1;
    bool frozen = false;  // a user-defined piece: never merged
  };
  struct Pair {
    float score;
    int32_t id;
    int left;
    int right;
    size_t size;
    bool operator<(const Pair& o) const {  // max-heap: higher score, then leftmost, first
      return score < o.score || (score == o.score && left > o.left);
    }
  };

  int32_t merge_id(std::string_view piece) const {
    const auto it = merge_ids_.find(std::string(piece));
    return it == merge_ids_.end() ? -1 : it->second;
  }
  size_t user_defined_prefix(std::string_view s) const;
  void emit(std::string_view piece, const std::unordered_map<std::string, std::pair<std::string, std::string>>& split,
            std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t> merge_ids_;
  // User-defined pieces by first byte, for sentencepiece's prefix matcher.
  std::array<std::vector<int32_t>, 256> user_defined_;
};

size_t SpmGgufTokenizer::user_defined_prefix(std::string_view s) const {
  size_t best = 0;
  for (int32_t id : user_defined_[static_cast<uint8_t>(s[0])]) {
    const std::string& p = vocab().pieces[id];
    if (p.size() > best && s.substr(0, p.size()) == p) best = p.size();
  }
  return best;
}

void SpmGgufTokenizer::encode_segment(std::string_view text, bool at_start, std::vector<int32_t>* ids) const {
  // Identity normalization: the dummy prefix, then every space as "▁".
  std::string norm;
  if (at_start && vocab().add_dummy_prefix) norm.append(kSpaceSymbol);
  for (char c : text) {
    if (c == ' ') norm.append(kSpaceSymbol);
    else norm.push_back(c);
  }

  std::vector<Symbol> sym;
  for (size_t pos = 0; pos < norm.size();) {
    Symbol s;
    s.begin = pos;
    s.len = user_defined_prefix(std::string_view(norm).substr(pos));
    s.frozen = s.len > 0;
    if (!s.frozen) {
      const int n = utf8_char_length(std::string_view(norm).substr(pos));
      s.len = n > 0 ? static_cast<size_t>(n) : 1;  // the text was repaired; 1 is only a guard
    }
    s.prev = static_cast<int>(sym.size()) - 1;
    pos += s.len;
    s.next = pos < norm.size() ? static_cast<int>(sym.size()) + 1 : -1;
    sym.push_back(s);
  }

  std::priority_queue<Pair> agenda;
  auto add_pair = [&](int l, int r) {
    if (l < 0 || r < 0 || sym[l].frozen || sym[r].frozen) return;
    const size_t size = sym[l].len + sym[r].len;
    const int32_t id = merge_id(std::string_view(norm).substr(sym[l].begin, size));
    if (id >= 0) agenda.push(Pair{vocab().scores[id], id, l, r, size});
  };
  for (size_t i = 1; i < sym.size(); ++i) add_pair(static_cast<int>(i) - 1, static_cast<int>(i));

  // Unused pieces produced by a merge, with the two halves they came from.
  std::unordered_map<std::string, std::pair<std::string, std::string>> split;
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Symbol& l = sym[top.left];
    Symbol& r = sym[top.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != top.size) continue;  // stale entry
    const std::string merged = norm.substr(l.begin, top.size);
    if (vocab().types[top.id] == SpmPieceType::kUnused) {
      split.emplace(merged, std::make_pair(norm.substr(l.begin, l.len), norm.substr(r.begin, r.len)));
    }
    l.len = top.size;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = top.left;
    r.len = 0;
    add_pair(l.prev, top.left);
    add_pair(top.left, l.next);
  }
  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
    emit(std::string_view(norm).substr(sym[i].begin, sym[i].len), split, ids);
  }
}

void SpmGgufTokenizer::emit(std::string_view piece,
                            const std::unordered_map<std::string, std::pair<std::string, std::string>>& split,
                            std::vector<int32_t>* ids) const {
  const int32_t id = find_piece(piece);
  if (id >= 0 && vocab().types[id] == SpmPieceType::kUnused) {
    const auto it = split.find(std::string(piece));
    if (it != split.end()) {
      emit(it->second.first, split, ids);
      emit(it->second.second, split, ids);
      return;
    }
  }
  if (id >= 0) {
    ids->push_back(id);
    return;
  }
  if (!has_byte_fallback()) {
    if (vocab().unk_id >= 0) ids->push_back(vocab().unk_id);
    return;
  }
  for (char c : piece) {
    const int32_t b = byte_piece_id(static_cast<uint8_t>(c));
    if (b >= 0) ids->push_back(b);
    else if (vocab().unk_id >= 0) ids->push_back(vocab().unk_id);
  }
}

bool is_integer_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kUint16: case GgufValueType::kInt16:
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kUint64: case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

Error vocab_error(const GgufFile& gguf, const std::string& what) {
  return Error{gguf.name() + ": bad llama tokenizer vocabulary: " + what};
}

// An optional token id key: absent -> `fallback` if in range (else -1); present -> must be in range.
Status read_token_id(const GgufFile& gguf, const char* key, int32_t fallback, size_t n, int32_t* out) {
  const GgufValue* v = gguf.find(key);
  if (!v) {
    *out = fallback >= 0 && static_cast<size_t>(fallback) < n ? fallback : -1;
    return Status::success();
  }
  const std::optional<int64_t> id = gguf.get_int(key);
  if (!id) return vocab_error(gguf, std::string(key) + " is not an integer");
  if (*id == -1) {
    *out = -1;
    return Status::success();
  }
  if (*id < 0 || static_cast<uint64_t>(*id) >= n) {
    return vocab_error(gguf, std::string(key) + " = " + std::to_string(*id) + " is outside [0, " + std::to_string(n) + ")");
  }
  *out = static_cast<int32_t>(*id);
  return Status::success();
}

Status read_flag(const GgufFile& gguf, const char* key, bool* out) {
  if (!gguf.find(key)) return Status::success();
  const std::optional<bool> b = gguf.get_bool(key);
  if (!b) return vocab_error(gguf, std::string(key) + " is not a bool");
  *out = *b;
  return Status::success();
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> load_spm_tokenizer_from_gguf(const GgufFile& gguf) {
  const std::optional<std::string> model = gguf.get_string("tokenizer.ggml.model");
  if (model != "llama") return vocab_error(gguf, "tokenizer.ggml.model is not \"llama\"");
  const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
  if (!tokens || tokens->type != GgufValueType::kArray || tokens->array_type != GgufValueType::kString) {
    return vocab_error(gguf, "tokenizer.ggml.tokens is missing or not an array of strings");
  }
  const size_t n = tokens->strings.size();
  if (n == 0 || n > kMaxTokens) return vocab_error(gguf, "token count " + std::to_string(n) + " is not in [1, 4M]");
  const GgufValue* scores = gguf.find("tokenizer.ggml.scores");
  if (!scores || scores->type != GgufValueType::kArray ||
      (scores->array_type != GgufValueType::kFloat32 && scores->array_type != GgufValueType::kFloat64)) {
    return vocab_error(gguf, "tokenizer.ggml.scores is missing or not an array of floats");
  }
  if (scores->floats.size() != n) {
    return vocab_error(gguf, "tokenizer.ggml.scores has " + std::to_string(scores->floats.size()) + " entries for " +
                                 std::to_string(n) + " tokens");
  }
  const GgufValue* types = gguf.find("tokenizer.ggml.token_type");
  if (!types || types->type != GgufValueType::kArray || !is_integer_type(types->array_type)) {
    return vocab_error(gguf, "tokenizer.ggml.token_type is missing or not an array of integers");
  }
  if (types->ints.size() != n) {
    return vocab_error(gguf, "tokenizer.ggml.token_type has " + std::to_string(types->ints.size()) + " entries for " +
                                 std::to_string(n) + " tokens");
  }

  SpmVocab vocab;
  vocab.pieces = tokens->strings;
  vocab.scores.reserve(n);
  vocab.types.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // Scores order a priority queue: NaN would break its strict weak ordering.
    if (!std::isfinite(static_cast<float>(scores->floats[i]))) {
      return vocab_error(gguf, "token " + std::to_string(i) + " has a non-finite score");
    }
    vocab.scores.push_back(static_cast<float>(scores->floats[i]));
    const int64_t t = types->ints[i];
    if (t < 1 || t > 6) return vocab_error(gguf, "token " + std::to_string(i) + " has unknown type " + std::to_string(t));
    vocab.types.push_back(static_cast<SpmPieceType>(t));
    if (vocab.types.back() == SpmPieceType::kByte && byte_piece_value(vocab.pieces[i]) < 0) {
      return vocab_error(gguf, "token " + std::to_string(i) + " has type byte but is not <0xNN>");
    }
  }
  // llama.cpp's defaults for SentencePiece vocabularies.
  if (Status s = read_token_id(gguf, "tokenizer.ggml.bos_token_id", 1, n, &vocab.bos_id); !s) return s.error();
  if (Status s = read_token_id(gguf, "tokenizer.ggml.eos_token_id", 2, n, &vocab.eos_id); !s) return s.error();
  if (Status s = read_token_id(gguf, "tokenizer.ggml.unknown_token_id", 0, n, &vocab.unk_id); !s) return s.error();
  if (Status s = read_flag(gguf, "tokenizer.ggml.add_bos_token", &vocab.add_bos); !s) return s.error();
  if (Status s = read_flag(gguf, "tokenizer.ggml.add_eos_token", &vocab.add_eos); !s) return s.error();
  if (Status s = read_flag(gguf, "tokenizer.ggml.add_space_prefix", &vocab.add_dummy_prefix); !s) return s.error();
  return std::unique_ptr<Tokenizer>(std::make_unique<SpmGgufTokenizer>(std::move(vocab)));
}

}  // namespace ember
