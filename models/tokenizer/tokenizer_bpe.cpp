#include "models/tokenizer/tokenizer_bpe.h"

#include <algorithm>
#include <cstring>
#include <queue>

#include <unicode/normalizer2.h>
#include <unicode/bytestream.h>

#include "models/tokenizer/unicode.h"

namespace ember {

namespace {

constexpr int32_t kMaxVocab = 1 << 24;  // far above any real vocabulary; bounds the id tables

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::string nfc(std::string_view s) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return std::string(s);
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  n->normalizeUTF8(0, icu::StringPiece(s.data(), static_cast<int32_t>(s.size())), sink, nullptr, status);
  return U_SUCCESS(status) ? out : std::string(s);
}

// Rust's definition used by HF for single_word: alphanumeric or '_'.
bool is_word_char(char32_t c) { return c == '_' || is_alphanumeric_cp(c); }

char32_t last_cp(std::string_view s) {
  size_t pos = s.size();
  while (pos > 0 && (static_cast<uint8_t>(s[pos - 1]) & 0xC0) == 0x80) --pos;
  if (pos > 0) --pos;
  return utf8_next(s, &pos);
}

}  // namespace

void BpeTokenizer::MergeTable::reserve(size_t n) {
  size_t cap = 16;
  shift_ = 60;
  while (cap < 2 * n) {
    cap *= 2;
    --shift_;
  }
  entries_.assign(cap, Entry{});
}

void BpeTokenizer::MergeTable::insert(uint64_t key, MergeTarget value) {
  const size_t mask = entries_.size() - 1;
  for (size_t i = slot(key);; i = (i + 1) & mask) {
    if (entries_[i].key == key) return;
    if (entries_[i].key == ~0ull) {
      entries_[i] = {key, value};
      return;
    }
  }
}

const BpeTokenizer::MergeTarget* BpeTokenizer::MergeTable::find(uint64_t key) const {
  const size_t mask = entries_.size() - 1;
  for (size_t i = slot(key);; i = (i + 1) & mask) {
    if (entries_[i].key == key) return &entries_[i].value;
    if (entries_[i].key == ~0ull) return nullptr;
  }
}

Result<std::unique_ptr<BpeTokenizer>> BpeTokenizer::create(BpeSpec spec) {
  const std::string& src = spec.source;
  if (!spec.pre_tokenizer.has_byte_level()) {
    return Error{src + ": only byte-level BPE is supported (the pre-tokenizer has no ByteLevel step)"};
  }
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  int32_t max_id = -1;
  for (const auto& [tok, id] : spec.vocab) {
    if (id < 0 || id >= kMaxVocab) return Error{src + ": vocab id " + std::to_string(id) + " out of range"};
    max_id = std::max(max_id, id);
  }
  for (const AddedToken& a : spec.added_tokens) {
    if (a.id < 0 || a.id >= kMaxVocab) return Error{src + ": added token id " + std::to_string(a.id) + " out of range"};
    if (a.content.empty()) return Error{src + ": added token " + std::to_string(a.id) + " has empty content"};
    if (!is_valid_utf8(a.content)) return Error{src + ": added token " + std::to_string(a.id) + " is not UTF-8"};
    max_id = std::max(max_id, a.id);
  }
  // Ids index dense tables: a vocabulary with a few holes is fine (some
  // models reserve ids), one id far past the entries is a hostile file.
  const size_t entries = spec.vocab.size() + spec.added_tokens.size();
  if (static_cast<size_t>(max_id) >= entries + entries / 4 + 1024) {
    return Error{src + ": token id " + std::to_string(max_id) + " is far past the " + std::to_string(entries) +
                 " tokens defined"};
  }
  const auto n = static_cast<size_t>(max_id + 1);
  t->id_to_token_.resize(n);
  t->id_to_bytes_.resize(n);
  t->special_.assign(n, 0);
  t->byte_id_.fill(-1);
  t->token_to_id_.reserve(spec.vocab.size() * 2);
  for (auto& [tok, id] : spec.vocab) {
    // A repeated token string (seen in some GGUF lists) resolves to its first id.
    t->token_to_id_.emplace(tok, id);
    std::string bytes;
    if (byte_level_decode(tok, &bytes)) {
      t->bytes_to_id_.emplace(bytes, id);  // first id wins, like token_to_id_
      if (bytes.size() == 1) t->byte_id_[static_cast<uint8_t>(bytes[0])] = id;
    } else {
      bytes = tok;
    }
    t->id_to_bytes_[id] = std::move(bytes);
    t->id_to_token_[id] = std::move(tok);
  }
  t->merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    auto ia = t->token_to_id_.find(a), ib = t->token_to_id_.find(b), im = t->token_to_id_.find(a + b);
    if (ia == t->token_to_id_.end() || ib == t->token_to_id_.end() || im == t->token_to_id_.end()) {
      return Error{src + ": merge " + std::to_string(rank) + " (\"" + a + "\", \"" + b + "\") uses a token not in the vocab"};
    }
    // A repeated pair keeps its first (lowest) rank, as HF does.
    t->merges_.insert(pair_key(ia->second, ib->second), MergeTarget{static_cast<int32_t>(rank), im->second});
  }
  for (AddedToken& a : spec.added_tokens) {
    if (a.normalized && spec.nfc) a.content = nfc(a.content);
    t->id_to_token_[a.id] = a.content;
    std::string bytes;
    t->id_to_bytes_[a.id] = byte_level_decode(a.content, &bytes) ? bytes : a.content;
    t->special_[a.id] = a.special;
    t->token_to_id_[a.content] = a.id;
  }
  if (spec.unk_token) {
    auto it = t->token_to_id_.find(*spec.unk_token);
    if (it == t->token_to_id_.end()) return Error{src + ": unk_token \"" + *spec.unk_token + "\" is not in the vocab"};
    t->unk_id_ = it->second;
  }
  for (int32_t id : spec.prefix_ids) {
    if (id < 0 || static_cast<size_t>(id) >= n) return Error{src + ": post-processor id " + std::to_string(id) + " out of range"};
  }
  for (int32_t id : spec.suffix_ids) {
    if (id < 0 || static_cast<size_t>(id) >= n) return Error{src + ": post-processor id " + std::to_string(id) + " out of range"};
  }
  t->added_ = std::move(spec.added_tokens);
  t->build_matcher(false, &t->raw_matcher_);
  t->build_matcher(true, &t->normalized_matcher_);
  t->pre_ = std::move(spec.pre_tokenizer);
  t->nfc_ = spec.nfc;
  t->ignore_merges_ = spec.ignore_merges;
  t->prefix_ids_ = std::move(spec.prefix_ids);
  t->suffix_ids_ = std::move(spec.suffix_ids);
  t->bos_id_ = spec.bos_id;
  t->eos_id_ = spec.eos_id;
  return t;
}

void BpeTokenizer::build_matcher(bool normalized, AddedMatcher* m) const {
  for (size_t i = 0; i < added_.size(); ++i) {
    if (added_[i].normalized != normalized) continue;
    m->by_first_byte[static_cast<uint8_t>(added_[i].content[0])].push_back(static_cast<int32_t>(i));
    m->empty = false;
  }
  for (auto& v : m->by_first_byte) {
    std::stable_sort(v.begin(), v.end(),
                     [&](int32_t a, int32_t b) { return added_[a].content.size() > added_[b].content.size(); });
  }
}

template <class OnText>
void BpeTokenizer::split_added(std::string_view text, const AddedMatcher& m, std::vector<int32_t>* ids,
                               OnText on_text) const {
  size_t start_offset = 0;  // end of the last emitted added token
  size_t pos = 0;           // where the search resumes
  while (!m.empty && pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (int32_t i : m.by_first_byte[static_cast<uint8_t>(text[pos])]) {
      const std::string& c = added_[i].content;
      if (c.size() <= text.size() - pos && std::memcmp(text.data() + pos, c.data(), c.size()) == 0) {
        hit = &added_[i];
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->content.size();
    pos = stop;
    if (hit->single_word) {
      const bool left_ok = start == 0 || !is_word_char(last_cp(text.substr(0, start)));
      size_t p = stop;
      const bool right_ok = stop == text.size() || !is_word_char(utf8_next(text, &p));
      if (!left_ok || !right_ok) continue;
    }
    if (hit->lstrip) {
      while (start > start_offset) {
        size_t b = start - 1;
        while (b > start_offset && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
        size_t p = b;
        if (!is_whitespace_cp(utf8_next(text, &p))) break;
        start = b;
      }
    }
    if (hit->rstrip) {
      while (stop < text.size()) {
        size_t p = stop;
        if (!is_whitespace_cp(utf8_next(text, &p))) break;
        stop = p;
      }
      pos = stop;
    }
    if (start_offset < start) on_text(text.substr(start_offset, start - start_offset));
    ids->push_back(hit->id);
    start_offset = stop;
  }
  if (start_offset < text.size()) on_text(text.substr(start_offset));
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view input, bool add_special) const {
  std::string sanitized;
  std::string_view text = input;
  if (!is_valid_utf8(input)) {
    sanitized = sanitize_utf8(input);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + prefix_ids_.size() + suffix_ids_.size() + 1);
  if (add_special) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  split_added(text, raw_matcher_, &ids, [&](std::string_view segment) {
    std::string normalized;
    if (nfc_) {
      normalized = nfc(segment);
      segment = normalized;
    }
    split_added(segment, normalized_matcher_, &ids, [&](std::string_view s) { encode_segment(s, &ids); });
  });
  if (add_special) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void BpeTokenizer::encode_segment(std::string_view segment, std::vector<int32_t>* ids) const {
  std::string prefixed;
  if (pre_.add_prefix_space() && segment[0] != ' ') {
    prefixed.reserve(segment.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(segment);
    segment = prefixed;
  }
  std::vector<Span> spans;
  pre_.split(segment, &spans);
  for (const Span& s : spans) bpe_piece(segment.substr(s.begin, s.end - s.begin), ids);
}

void BpeTokenizer::bpe_piece(std::string_view bytes, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(std::string(bytes));
    if (it != bytes_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(bytes.size());
  for (char c : bytes) {
    int32_t id = byte_id_[static_cast<uint8_t>(c)];
    if (id < 0) id = unk_id_;
    if (id < 0) continue;  // no byte token and no unk: HF drops the byte
    const auto i = static_cast<int32_t>(sym.size());
    sym.push_back({id, i - 1, i + 1, true});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  // Candidate merges ordered by (rank, position): HF's priority queue. A
  // popped entry is stale when its left symbol died or its pair changed.
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push = [&](int32_t left) {
    if (left < 0 || sym[left].next < 0) return;
    const MergeTarget* m = merges_.find(pair_key(sym[left].id, sym[sym[left].next].id));
    if (m != nullptr) queue.push({m->rank, left, m->id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push(i);
  while (!queue.empty()) {
    const Cand c = queue.top();
    queue.pop();
    Symbol& left = sym[c.pos];
    if (!left.alive || left.next < 0) continue;
    const MergeTarget* m = merges_.find(pair_key(left.id, sym[left.next].id));
    if (m == nullptr || m->id != c.id) continue;
    Symbol& right = sym[left.next];
    left.id = c.id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = c.pos;
    push(left.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_bytes_.size()) return {};
  return id_to_bytes_[id];
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= id_to_bytes_.size()) continue;  // HF skips unknown ids
    if (skip_special && special_[id]) continue;
    bytes += id_to_bytes_[id];
  }
  return is_valid_utf8(bytes) ? bytes : sanitize_utf8(bytes);
}

bool BpeTokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id] != 0;
}

int32_t BpeTokenizer::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(std::string(token));
  return it == token_to_id_.end() ? -1 : it->second;
}

}  // namespace ember
