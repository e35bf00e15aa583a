#include "models/tokenizer/tokenizer_spm.h"

#include <algorithm>

#include "models/tokenizer/unicode.h"
#include "models/tokenizer/utf8_repair.h"

namespace ember {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // "▁" U+2581

std::string replace_space_symbol(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  size_t i = 0;
  while (i < piece.size()) {
    if (piece.compare(i, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      out.push_back(' ');
      i += kSpaceSymbol.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex_digit(piece[3]);
  const int lo = hex_digit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

SpmTokenizer::SpmTokenizer(SpmVocab vocab) : vocab_(std::move(vocab)) {
  const size_t n = vocab_.pieces.size();
  special_.assign(n, 0);
  matchable_.assign(n, 0);
  byte_ids_.fill(-1);
  piece_ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    piece_ids_.emplace(vocab_.pieces[i], id);  // keeps the first of duplicates
    const SpmPieceType t = vocab_.types[i];
    if (t == SpmPieceType::kControl || t == SpmPieceType::kUnknown) special_[i] = 1;
    if (t == SpmPieceType::kControl || t == SpmPieceType::kUnknown || t == SpmPieceType::kUserDefined) {
      index_matchable(id);
    }
    if (t == SpmPieceType::kByte) {
      const int b = byte_piece_value(vocab_.pieces[i]);
      if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = id;
      has_byte_fallback_ = true;
    }
  }
  sort_matchable();
}

void SpmTokenizer::index_matchable(int32_t id) {
  const std::string& piece = vocab_.pieces[id];
  if (piece.empty() || matchable_[id]) return;
  matchable_[id] = 1;
  auto& bucket = matchable_by_byte_[static_cast<uint8_t>(piece[0])];
  // Longest first, ties in id order. The constructor indexes every piece and
  // sorts once (sort_matchable); later single additions insert in place, so a
  // vocabulary of many special pieces loads in O(N log N), not O(N^2 log N).
  if (!defer_sort_) {
    auto at = std::upper_bound(bucket.begin(), bucket.end(), id, [this](int32_t a, int32_t b) {
      return vocab_.pieces[a].size() > vocab_.pieces[b].size();
    });
    bucket.insert(at, id);
  } else {
    bucket.push_back(id);
  }
}

void SpmTokenizer::sort_matchable() {
  for (auto& bucket : matchable_by_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [this](int32_t a, int32_t b) {
      return vocab_.pieces[a].size() > vocab_.pieces[b].size();
    });
  }
  defer_sort_ = false;
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view raw, bool add_special) const {
  const std::string text = sanitize_utf8(raw);
  std::vector<int32_t> ids;
  if (add_special && vocab_.add_bos && vocab_.bos_id >= 0) ids.push_back(vocab_.bos_id);
  size_t segment_begin = 0;
  size_t i = 0;
  while (i < text.size()) {
    int32_t match = -1;
    for (int32_t id : matchable_by_byte_[static_cast<uint8_t>(text[i])]) {
      if (text.compare(i, vocab_.pieces[id].size(), vocab_.pieces[id]) == 0) {
        match = id;  // buckets are sorted longest first
        break;
      }
    }
    if (match < 0) {
      ++i;
      continue;
    }
    if (i > segment_begin) {
      encode_segment(std::string_view(text).substr(segment_begin, i - segment_begin), segment_begin == 0, &ids);
    }
    ids.push_back(match);
    i += vocab_.pieces[match].size();
    segment_begin = i;
  }
  if (segment_begin < text.size()) {
    encode_segment(std::string_view(text).substr(segment_begin), segment_begin == 0, &ids);
  }
  if (add_special && vocab_.add_eos && vocab_.eos_id >= 0) ids.push_back(vocab_.eos_id);
  return ids;
}

std::string SpmTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  const std::string& piece = vocab_.pieces[id];
  if (vocab_.types[id] == SpmPieceType::kByte) {
    const int b = byte_piece_value(piece);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  return replace_space_symbol(piece);
}

std::string SpmTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;  // out of range: ignored, as by the detokenizer
    if (skip_special && special_[id]) continue;
    bytes += token_bytes(id);
  }
  std::string text = sanitize_utf8(bytes);
  if (vocab_.add_dummy_prefix && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return text;
}

bool SpmTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

int32_t SpmTokenizer::find_piece(std::string_view piece) const {
  const auto it = piece_ids_.find(std::string(piece));
  return it == piece_ids_.end() ? -1 : it->second;
}

int32_t SpmTokenizer::token_to_id(std::string_view token) const { return find_piece(token); }

void SpmTokenizer::set_add_special(bool add_bos, bool add_eos) {
  vocab_.add_bos = add_bos;
  vocab_.add_eos = add_eos;
}

void SpmTokenizer::set_bos_eos(int32_t bos_id, int32_t eos_id) {
  if (bos_id >= 0 && bos_id < vocab_size()) vocab_.bos_id = bos_id;
  if (eos_id >= 0 && eos_id < vocab_size()) vocab_.eos_id = eos_id;
}

Status SpmTokenizer::add_added_token(int32_t id, const std::string& content, bool special) {
  if (content.empty()) return Error{"added token " + std::to_string(id) + " has empty content"};
  if (id == vocab_size()) {
    vocab_.pieces.push_back(content);
    vocab_.scores.push_back(0.0f);
    vocab_.types.push_back(special ? SpmPieceType::kControl : SpmPieceType::kUserDefined);
    special_.push_back(0);
    matchable_.push_back(0);
    piece_ids_.emplace(content, id);
  } else if (id < 0 || id > vocab_size()) {
    return Error{"added token " + std::to_string(id) + " (" + content + ") is outside the vocabulary of " +
                 std::to_string(vocab_size()) + " pieces and not the next id"};
  } else if (vocab_.pieces[id] != content) {
    return Error{"added token " + std::to_string(id) + " is \"" + content + "\" but the vocabulary has \"" +
                 vocab_.pieces[id] + "\""};
  }
  if (special) special_[id] = 1;
  index_matchable(id);
  return Status::success();
}

}  // namespace ember
