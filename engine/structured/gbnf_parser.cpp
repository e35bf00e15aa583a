// GBNF text to rules (the dialect: README.md). A recursive-descent parser over
// bytes; character classes and literals decode UTF-8 so classes hold code points.

#include <algorithm>

#include "engine/structured/code_points.h"
#include "engine/structured/gbnf_ast.h"

namespace ember::structured {
namespace {

constexpr int kMaxNesting = 200;  // parentheses, so a hostile text cannot overflow the stack

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Result<std::vector<GbnfRule>> parse() {
    std::vector<GbnfRule> rules;
    skip_space();
    while (pos_ < s_.size() && ok()) {
      GbnfRule rule;
      rule.line = line_;
      rule.name = name();
      if (rule.name.empty()) fail("expected a rule name");
      skip_space();
      if (ok() && s_.substr(pos_, 3) != "::=") fail("expected '::=' after the rule name '" + rule.name + "'");
      pos_ += 3;
      if (ok()) rule.body = alternatives(0);
      if (ok() && pos_ < s_.size() && !at_rule_start()) fail(std::string("unexpected '") + s_[pos_] + "'");
      rules.push_back(std::move(rule));
    }
    if (!ok()) return Error{error_};
    if (rules.empty()) return Error{"the grammar has no rules"};
    return rules;
  }

 private:
  bool ok() const { return error_.empty(); }
  void fail(const std::string& what) {
    if (ok()) error_ = "line " + std::to_string(line_) + ", column " + std::to_string(pos_ - line_start_ + 1) + ": " + what;
    pos_ = s_.size();
  }
  void skip_space() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else if (c == '\n') {
        ++pos_, ++line_, line_start_ = pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }
  static bool name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && ((c >= '0' && c <= '9') || c == '-'));
  }
  std::string name() {
    const size_t start = pos_;
    while (pos_ < s_.size() && name_char(s_[pos_], pos_ == start)) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }
  // At "name ::=": the next rule begins (rules end there; newlines are only whitespace).
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < s_.size() && name_char(s_[p], p == pos_)) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t' || s_[p] == '\r' || s_[p] == '\n')) ++p;
    return s_.substr(p, 3) == "::=";
  }
  GbnfExpr make(GbnfExpr::Kind kind) const {
    GbnfExpr e;
    e.kind = kind;
    e.line = line_;
    e.column = static_cast<int>(pos_ - line_start_ + 1);
    return e;
  }

  GbnfExpr alternatives(int depth) {
    GbnfExpr alt = make(GbnfExpr::Kind::kAlternatives);
    alt.items.push_back(sequence(depth));
    while (ok() && pos_ < s_.size() && s_[pos_] == '|') {
      ++pos_;
      alt.items.push_back(sequence(depth));
    }
    if (alt.items.size() == 1) return std::move(alt.items[0]);
    return alt;
  }
  GbnfExpr sequence(int depth) {
    GbnfExpr seq = make(GbnfExpr::Kind::kSequence);
    skip_space();
    while (ok() && pos_ < s_.size() && s_[pos_] != '|' && s_[pos_] != ')' && !at_rule_start()) {
      GbnfExpr item = primary(depth);
      skip_space();
      item = postfix(std::move(item));
      seq.items.push_back(std::move(item));
      skip_space();
    }
    if (seq.items.size() == 1) return std::move(seq.items[0]);
    return seq;  // empty: matches the empty string
  }
  GbnfExpr postfix(GbnfExpr item) {
    while (ok() && pos_ < s_.size()) {
      const char c = s_[pos_];
      int64_t lo = 0, hi = -1;
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        ++pos_, lo = 1;
      } else if (c == '?') {
        ++pos_, hi = 1;
      } else if (c == '{') {
        ++pos_;
        skip_space();
        lo = number();
        skip_space();
        hi = lo;
        if (ok() && pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          skip_space();
          hi = pos_ < s_.size() && s_[pos_] == '}' ? -1 : number();
          skip_space();
        }
        if (ok() && (pos_ >= s_.size() || s_[pos_] != '}')) fail("expected '}' to close a repetition");
        ++pos_;
        if (ok() && hi >= 0 && hi < lo) fail("a repetition {m,n} needs m <= n");
      } else {
        break;
      }
      GbnfExpr rep = make(GbnfExpr::Kind::kRepeat);
      rep.min = lo, rep.max = hi;
      rep.items.push_back(std::move(item));
      item = std::move(rep);
      skip_space();
    }
    return item;
  }
  int64_t number() {
    const size_t start = pos_;
    int64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9' && v < 1'000'000'000) v = v * 10 + (s_[pos_++] - '0');
    if (pos_ == start) fail("expected a number in a repetition");
    if (v >= 1'000'000'000) fail("a repetition count is too large");
    return v;
  }
  GbnfExpr primary(int depth) {
    if (depth > kMaxNesting) {
      fail("parentheses nest too deeply");
      return {};
    }
    if (pos_ >= s_.size()) {
      fail("expected an expression");
      return {};
    }
    const char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      GbnfExpr e = alternatives(depth + 1);
      if (ok() && (pos_ >= s_.size() || s_[pos_] != ')')) fail("expected ')'");
      ++pos_;
      return e;
    }
    if (c == '"') return literal();
    if (c == '[') return char_class();
    if (c == '.') {
      GbnfExpr e = make(GbnfExpr::Kind::kClass);
      ++pos_;
      e.ranges = {{0, 0xD7FF}, {0xE000, kMaxCodePoint}};
      return e;
    }
    if (name_char(c, true)) {
      GbnfExpr e = make(GbnfExpr::Kind::kRule);
      e.rule = name();
      return e;
    }
    fail(std::string("unexpected '") + c + "'");
    return {};
  }
  // One code point of a literal or class, escapes decoded.
  uint32_t code_point() {
    if (pos_ >= s_.size()) {
      fail("unterminated literal or class");
      return 0;
    }
    const auto b = static_cast<unsigned char>(s_[pos_]);
    if (b == '\\') {
      ++pos_;
      if (pos_ >= s_.size()) {
        fail("an escape at the end of the text");
        return 0;
      }
      const char e = s_[pos_++];
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': return static_cast<uint32_t>(e);
        case 'x': return hex(2);
        case 'u': return hex(4);
        case 'U': return hex(8);
        default:
          fail(std::string("unknown escape '\\") + e + "'");
          return 0;
      }
    }
    if (b == '\n') {
      fail("a newline inside a literal or class (write \\n)");
      return 0;
    }
    // UTF-8
    const int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || pos_ + static_cast<size_t>(len) > s_.size()) {
      fail("invalid UTF-8");
      return 0;
    }
    uint32_t cp = len == 1 ? b : b & (0x7F >> len);
    for (int i = 1; i < len; ++i) {
      const auto cont = static_cast<unsigned char>(s_[pos_ + static_cast<size_t>(i)]);
      if ((cont & 0xC0) != 0x80) {
        fail("invalid UTF-8");
        return 0;
      }
      cp = (cp << 6) | (cont & 0x3F);
    }
    pos_ += static_cast<size_t>(len);
    return cp;
  }
  uint32_t hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = pos_ < s_.size() ? s_[pos_] : '\0';
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) {
        fail("expected " + std::to_string(digits) + " hex digits");
        return 0;
      }
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF)) fail("an escape names no Unicode scalar value");
    return v;
  }
  GbnfExpr literal() {
    GbnfExpr e = make(GbnfExpr::Kind::kLiteral);
    ++pos_;  // "
    while (ok() && (pos_ >= s_.size() || s_[pos_] != '"')) append_utf8(code_point(), e.literal);
    ++pos_;
    return e;
  }
  GbnfExpr char_class() {
    GbnfExpr e = make(GbnfExpr::Kind::kClass);
    ++pos_;  // [
    const bool negated = pos_ < s_.size() && s_[pos_] == '^';
    if (negated) ++pos_;
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    while (ok() && (pos_ >= s_.size() || s_[pos_] != ']')) {
      const uint32_t lo = code_point();
      uint32_t hi = lo;
      if (ok() && pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
        ++pos_;
        hi = code_point();
        if (ok() && hi < lo) fail("a class range runs backwards");
      }
      ranges.emplace_back(lo, hi);
    }
    ++pos_;
    // Unicode scalar values only (surrogates are never text), the complement over them when negated.
    e.ranges = negated ? complement(normalized(std::move(ranges))) : normalized(std::move(ranges));
    return e;
  }

  std::string_view s_;
  size_t pos_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
  std::string error_;
};

}  // namespace

Result<std::vector<GbnfRule>> parse_gbnf_rules(std::string_view text) { return Parser(text).parse(); }

}  // namespace ember::structured
