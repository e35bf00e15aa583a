// A regex (regex.h's subset) to a RegexNode, by recursive descent over its
// UTF-8 bytes. Whatever the subset leaves out fails here, naming the construct
// and its byte offset: nothing unsupported is read as a literal, and where
// ECMAScript and Python read a construct differently ("[]", "{,n}", "\a") it is
// an Error rather than one reading picked silently.

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include "engine/structured/regex.h"
#include "engine/structured/regex_ast.h"

namespace ember::structured {
namespace {

constexpr int kMaxNesting = 100;  // groups, so a hostile regex cannot overflow the stack

CodePointSet one(uint32_t cp) { return {{cp, cp}}; }
const CodePointSet& digit_set() {
  static const CodePointSet s = {{'0', '9'}};
  return s;
}
const CodePointSet& word_set() {
  static const CodePointSet s = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  return s;
}
const CodePointSet& space_set() {  // ECMAScript's WhiteSpace and LineTerminator
  static const CodePointSet s = normalized({{0x09, 0x0D},
                                            {0x20, 0x20},
                                            {0xA0, 0xA0},
                                            {0x1680, 0x1680},
                                            {0x2000, 0x200A},
                                            {0x2028, 0x2029},
                                            {0x202F, 0x202F},
                                            {0x205F, 0x205F},
                                            {0x3000, 0x3000},
                                            {0xFEFF, 0xFEFF}});
  return s;
}
const CodePointSet& dot_set() {  // everything but ECMAScript's line terminators
  static const CodePointSet s = complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}});
  return s;
}

RegexNode set_node(CodePointSet set) {
  RegexNode n;
  n.kind = RegexNode::Kind::kSet;
  n.set = std::move(set);
  return n;
}

class Parser {
 public:
  explicit Parser(std::string_view regex) : s_(regex) {}

  Result<RegexNode> parse() {
    RegexNode root = alternatives(0);
    if (ok() && pos_ < s_.size()) fail("an unbalanced ')'", pos_);
    if (!ok()) return Error{error_};
    return root;
  }

 private:
  bool ok() const { return error_.empty(); }
  bool at(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  bool at(size_t p, char c) const { return p < s_.size() && s_[p] == c; }
  void fail(const std::string& what, size_t offset) {
    if (ok()) error_ = "regex: " + what + " at offset " + std::to_string(offset);
    pos_ = s_.size();
  }

  RegexNode alternatives(int depth) {
    RegexNode alt;
    alt.kind = RegexNode::Kind::kAlternatives;
    alt.items.push_back(sequence(depth));
    while (ok() && at('|')) {
      ++pos_;
      alt.items.push_back(sequence(depth));
    }
    if (alt.items.size() == 1) return std::move(alt.items[0]);
    return alt;
  }

  // Anchors may open and close a top-level alternative: matching is of the whole text anyway.
  RegexNode sequence(int depth) {
    RegexNode seq;
    if (at('^')) {
      if (depth > 0)
        fail("anchor '^' inside a group", pos_);
      else
        ++pos_;
    }
    while (ok() && pos_ < s_.size() && !at('|') && !at(')')) {
      if (at('$')) {
        if (depth == 0 && (pos_ + 1 == s_.size() || at(pos_ + 1, '|'))) {
          ++pos_;
          break;
        }
        fail("anchor '$' away from the end", pos_);
        break;
      }
      if (at('^')) {
        fail("anchor '^' away from the start", pos_);
        break;
      }
      RegexNode item = atom(depth);
      if (ok()) seq.items.push_back(quantified(std::move(item)));
    }
    if (seq.items.size() == 1) return std::move(seq.items[0]);
    return seq;
  }

  // A quantifier at `p`: '*', '+', '?' or {m}, {m,}, {m,n}; false for anything else (a '{' that opens
  // none of those is a literal, as both dialects read it). Fails on '{,n}', which they read apart.
  bool quantifier(size_t p, int64_t& lo, int64_t& hi, size_t& end) {
    if (p >= s_.size()) return false;
    end = p + 1;
    switch (s_[p]) {
      case '*':
        lo = 0, hi = -1;
        return true;
      case '+':
        lo = 1, hi = -1;
        return true;
      case '?':
        lo = 0, hi = 1;
        return true;
      case '{':
        break;
      default:
        return false;
    }
    if (at(p + 1, ',')) {
      size_t q = p + 2;
      while (q < s_.size() && s_[q] >= '0' && s_[q] <= '9') ++q;
      if (q > p + 2 && at(q, '}')) fail("'{,n}' (ECMAScript reads it as text, Python as {0,n})", p);
      return false;
    }
    size_t q = p + 1;
    if (!number(q, lo)) return false;
    hi = lo;
    if (at(q, ',')) {
      ++q;
      hi = -1;
      if (!at(q, '}') && !number(q, hi)) return false;
    }
    if (!at(q, '}')) return false;
    end = q + 1;
    if (hi >= 0 && hi < lo) fail("a repetition {m,n} with n < m", p);
    return true;
  }
  bool number(size_t& p, int64_t& value) const {
    const size_t start = p;
    value = 0;
    for (; p < s_.size() && s_[p] >= '0' && s_[p] <= '9'; ++p)
      value = std::min<int64_t>(value * 10 + (s_[p] - '0'), 1'000'000'000);
    return p > start;
  }

  RegexNode quantified(RegexNode item) {
    int64_t lo = 0, hi = 0;
    size_t end = 0;
    const size_t at_quantifier = pos_;
    if (!quantifier(pos_, lo, hi, end)) return item;
    pos_ = end;
    if (at('?')) ++pos_;  // lazy: the same language
    int64_t lo2 = 0, hi2 = 0;
    if (ok() && quantifier(pos_, lo2, hi2, end)) fail("a quantifier after a quantifier", pos_);
    if (ok() && (lo > kMaxRepetition || hi > kMaxRepetition))
      fail("a repetition count over " + std::to_string(kMaxRepetition), at_quantifier);
    RegexNode rep;
    rep.kind = RegexNode::Kind::kRepeat;
    rep.min = lo, rep.max = hi;
    rep.items.push_back(std::move(item));
    return rep;
  }

  RegexNode atom(int depth) {
    const size_t start = pos_;
    const char c = s_[pos_];
    int64_t lo = 0, hi = 0;
    size_t end = 0;
    if (c == '(') return group(depth);
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return set_node(dot_set());
    }
    if (c == '\\') {
      bool single = false;
      return set_node(escape(false, single));
    }
    if (quantifier(pos_, lo, hi, end)) {
      fail(std::string("nothing to repeat before '") + c + "'", start);
      return {};
    }
    if (!ok()) return {};
    const int32_t cp = decode_utf8(s_, pos_);
    if (cp < 0) fail("invalid UTF-8", start);
    return set_node(one(static_cast<uint32_t>(cp)));
  }

  RegexNode group(int depth) {
    const size_t start = pos_;
    if (depth >= kMaxNesting) {
      fail("groups nested deeper than " + std::to_string(kMaxNesting), start);
      return {};
    }
    ++pos_;  // (
    if (at('?')) {
      ++pos_;
      if (at(':')) {
        ++pos_;
      } else if ((at('P') && at(pos_ + 1, '<')) || (at('<') && !at(pos_ + 1, '=') && !at(pos_ + 1, '!'))) {
        pos_ += at('P') ? 2 : 1;  // a named group: a group like any other
        const size_t name = pos_;
        while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
        if (pos_ == name || !at('>')) fail("a malformed group name", start);
        ++pos_;
      } else {
        const std::string_view ext = s_.substr(pos_, 2);
        const char* what = ext.starts_with("=")   ? "lookahead '(?='"
                           : ext.starts_with("!") ? "negative lookahead '(?!'"
                           : ext == "<="          ? "lookbehind '(?<='"
                           : ext == "<!"          ? "negative lookbehind '(?<!'"
                           : ext == "P="          ? "backreference '(?P='"
                           : ext.starts_with("#") ? "comment group '(?#'"
                           : ext.starts_with(">") ? "atomic group '(?>'"
                                                  : "inline flags or a group extension '(?'";
        fail(std::string(what) + " is not supported", start);
        return {};
      }
    }
    RegexNode inner = alternatives(depth + 1);
    if (ok() && !at(')')) fail("an unterminated group '('", start);
    ++pos_;
    return inner;
  }

  // After a backslash at pos_: the set it names (`single`: one code point, so a class range may end in it).
  CodePointSet escape(bool in_class, bool& single) {
    const size_t start = pos_;
    single = true;
    if (++pos_ >= s_.size()) {
      fail("'\\' at the end", start);
      return {};
    }
    const char c = s_[pos_++];
    if (std::string_view("dDwWsS").find(c) != std::string_view::npos) {
      single = false;
      const CodePointSet& set = c == 'd' || c == 'D' ? digit_set() : c == 'w' || c == 'W' ? word_set() : space_set();
      return std::isupper(static_cast<unsigned char>(c)) ? complement(set) : set;
    }
    static constexpr std::pair<char, char> kControls[] = {
        {'n', '\n'}, {'r', '\r'}, {'t', '\t'}, {'f', '\f'}, {'v', '\v'}};
    for (const auto& [letter, control] : kControls)
      if (c == letter) return one(static_cast<uint32_t>(control));
    const bool digit_next = pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9';
    if (c == '0' && !digit_next) return one(0);
    if (c == 'x') return one(hex(2, start));
    if (c == 'U') return one(hex(8, start));
    if (c == 'u') return one(unicode_escape(start));
    if (c == 'b' && in_class) return one('\b');
    if (!std::isalnum(static_cast<unsigned char>(c))) {  // punctuation or a non-ASCII character: itself
      --pos_;
      const int32_t cp = decode_utf8(s_, pos_);
      if (cp < 0) fail("invalid UTF-8", pos_);
      return one(static_cast<uint32_t>(std::max(cp, 0)));
    }
    // Any other letter or digit is a construct outside the subset (or a typo): say which.
    const std::string text = std::string("'\\") + c + "'";
    const char* what = c == 'b' || c == 'B'                                         ? "word boundary"
                       : std::string_view("AZzG").find(c) != std::string_view::npos ? "anchor"
                       : c == 'k' || (c >= '1' && c <= '9')                         ? "backreference"
                       : c == 'p' || c == 'P'                                       ? "Unicode property escape"
                       : c == 'c'                                                   ? "control escape"
                       : c == '0'                                                   ? "octal escape"
                                                                                    : nullptr;
    fail(what ? std::string(what) + " " + text + " is not supported" : "unknown escape " + text, start);
    return {};
  }
  uint32_t hex(int digits, size_t start) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i, ++pos_) {
      const char c = pos_ < s_.size() ? s_[pos_] : '\0';
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) {
        fail("an escape without its " + std::to_string(digits) + " hex digits", start);
        return 0;
      }
      v = v * 16 + static_cast<uint32_t>(d);
    }
    if (v > kMaxCodePoint) fail("an escape past U+10FFFF", start);
    return v;
  }
  // \uHHHH (a surrogate pair of them is one code point) or \u{H...}.
  uint32_t unicode_escape(size_t start) {
    if (at('{')) {
      const size_t close = s_.find('}', pos_);
      if (close == std::string_view::npos || close == pos_ + 1 || close > pos_ + 7) {
        fail("a malformed escape '\\u{...}'", start);
        return 0;
      }
      ++pos_;
      const uint32_t v = hex(static_cast<int>(close - pos_), start);
      ++pos_;  // }
      if (v >= 0xD800 && v <= 0xDFFF) fail("a lone surrogate escape", start);
      return v;
    }
    const uint32_t v = hex(4, start);
    if (v >= 0xDC00 && v <= 0xDFFF) fail("a lone surrogate escape", start);
    if (v < 0xD800 || v > 0xDBFF) return v;
    if (!(at('\\') && at(pos_ + 1, 'u'))) {
      fail("a lone surrogate escape", start);
      return 0;
    }
    pos_ += 2;
    const uint32_t low = hex(4, start);
    if (low < 0xDC00 || low > 0xDFFF) fail("a lone surrogate escape", start);
    return 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00);
  }

  RegexNode char_class() {
    const size_t start = pos_;
    ++pos_;  // [
    const bool negated = at('^');
    if (negated) ++pos_;
    if (at(']')) {
      fail("an empty class '[]' or '[^]' (ECMAScript and Python read it differently)", start);
      return {};
    }
    CodePointSet ranges;
    while (ok() && !at(']')) {
      if (pos_ >= s_.size()) {
        fail("an unterminated class '['", start);
        return {};
      }
      const size_t item = pos_;
      bool single = true, single_hi = true;
      CodePointSet lo = class_atom(single);
      if (ok() && at('-') && pos_ + 1 < s_.size() && !at(pos_ + 1, ']')) {
        ++pos_;
        CodePointSet hi = class_atom(single_hi);
        if (!ok()) break;
        if (!single || !single_hi)
          fail("a class range with a class escape at an end", item);
        else if (hi[0].first < lo[0].first)
          fail("a class range out of order", item);
        else
          ranges.emplace_back(lo[0].first, hi[0].first);
      } else {
        ranges.insert(ranges.end(), lo.begin(), lo.end());
      }
    }
    if (!ok()) return {};
    ++pos_;  // ]
    CodePointSet set = normalized(std::move(ranges));
    return set_node(negated ? complement(set) : std::move(set));
  }
  CodePointSet class_atom(bool& single) {
    if (at('\\')) return escape(true, single);
    single = true;
    const size_t start = pos_;
    const int32_t cp = decode_utf8(s_, pos_);
    if (cp < 0) {
      fail("invalid UTF-8", start);
      return {};
    }
    return one(static_cast<uint32_t>(cp));
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

Result<RegexNode> parse_regex(std::string_view regex) { return Parser(regex).parse(); }

}  // namespace ember::structured
