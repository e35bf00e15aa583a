// A parsed regex (regex_ast.h) written out as GBNF. Runs of single code points
// become one literal; a repeated operand that is more than a short literal or
// class becomes a rule of its own, so nested counts add up instead of
// multiplying: `((ab){1000}){1000}` is a thousand copies of "ab" in one rule
// and a thousand calls of it in another, not a million copies.

#include "engine/structured/regex.h"

#include <utility>

#include "engine/structured/grammar.h"
#include "engine/structured/regex_ast.h"

namespace ember::structured {
namespace {

constexpr size_t kInlineOperandBytes = 64;  // past this a repeated operand is a rule of its own

// The shortest JSON text for one code point inside a string (what json.dumps and nlohmann write).
void append_json_char(uint32_t cp, std::string& out) {
  static constexpr std::pair<char, const char*> kShort[] = {{'"', "\\\""}, {'\\', "\\\\"}, {'\b', "\\b"}, {'\f', "\\f"},
                                                            {'\n', "\\n"}, {'\r', "\\r"},  {'\t', "\\t"}};
  for (const auto& [c, escape] : kShort) {
    if (cp == static_cast<uint32_t>(c)) {
      out += escape;
      return;
    }
  }
  if (cp >= 0x20) return append_utf8(cp, out);
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\u00";
  out += kHex[cp >> 4];
  out += kHex[cp & 15];
}

bool is_single(const RegexNode& n) {
  return n.kind == RegexNode::Kind::kSet && n.set.size() == 1 && n.set[0].first == n.set[0].second;
}
bool has_repeat(const RegexNode& n) {
  if (n.kind == RegexNode::Kind::kRepeat) return true;
  for (const RegexNode& item : n.items)
    if (has_repeat(item)) return true;
  return false;
}

class Emitter {
 public:
  Emitter(const std::string& prefix, RegexEmbedding embedding)
      : prefix_(prefix), json_(embedding == RegexEmbedding::kJsonString) {}

  // An expression that can stand in a sequence (alternatives come parenthesized).
  std::string expr(const RegexNode& n) {
    switch (n.kind) {
      case RegexNode::Kind::kSet:
        return set(n.set);
      case RegexNode::Kind::kSequence:
        return sequence(n);
      case RegexNode::Kind::kRepeat:
        return repeat(n);
      case RegexNode::Kind::kAlternatives: {
        std::string s = "(";
        for (size_t i = 0; i < n.items.size(); ++i) s += (i ? " | " : "") + expr(n.items[i]);
        return s + ")";
      }
    }
    return {};
  }
  const std::string& rules() const { return rules_; }

 private:
  std::string literal(const std::vector<uint32_t>& cps) const {
    std::string text;
    for (uint32_t cp : cps) json_ ? append_json_char(cp, text) : append_utf8(cp, text);
    return gbnf_literal(text);
  }

  // One code point of `s`, as a literal, a class, or (in a JSON string) a class of the characters written
  // as themselves beside the escapes of the others, in parentheses.
  std::string set(const CodePointSet& s) const {
    if (s.size() == 1 && s[0].first == s[0].second) return literal({s[0].first});
    if (!json_) return gbnf_class(s);
    std::vector<std::string> alts;
    const CodePointSet raw = intersect(s, json_string_raw_set());
    if (!raw.empty())
      alts.push_back(raw.size() == 1 && raw[0].first == raw[0].second ? literal({raw[0].first}) : gbnf_class(raw));
    std::string low_nibbles[2];  // \u000X and \u001X escapes, grouped by their last digit
    for (uint32_t cp : {uint32_t{'"'}, uint32_t{'\\'}})
      if (contains(s, cp)) alts.push_back(literal({cp}));
    for (uint32_t cp = 0; cp < 0x20; ++cp) {
      if (!contains(s, cp)) continue;
      std::string text;
      append_json_char(cp, text);
      if (text.size() == 2)
        alts.push_back(gbnf_literal(text));
      else
        low_nibbles[cp >> 4] += text.back();
    }
    for (int hi = 0; hi < 2; ++hi) {
      const std::string& d = low_nibbles[hi];
      if (d.empty()) continue;
      alts.push_back("(" + gbnf_literal(hi ? "\\u001" : "\\u000") + " " +
                     (d.size() == 1 ? gbnf_literal(d) : "[" + d + "]") + ")");
    }
    if (alts.empty()) return "[]";
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
    return out + ")";
  }

  std::string sequence(const RegexNode& n) {
    std::string out;
    std::vector<uint32_t> run;
    auto add = [&out](const std::string& e) { out += (out.empty() ? "" : " ") + e; };
    for (const RegexNode& item : n.items) {
      if (is_single(item)) {
        run.push_back(item.set[0].first);
        continue;
      }
      if (!run.empty()) add(literal(run)), run.clear();
      add(expr(item));
    }
    if (!run.empty()) add(literal(run));
    return out.empty() ? "\"\"" : out;
  }

  std::string repeat(const RegexNode& n) {
    if (n.max == 0) return "\"\"";
    const std::string operand = atom(n.items[0]);
    if (n.min == 1 && n.max == 1) return operand;
    if (n.max < 0) return operand + (n.min == 0 ? "*" : n.min == 1 ? "+" : "{" + std::to_string(n.min) + ",}");
    if (n.min == 0 && n.max == 1) return operand + "?";
    if (n.min == n.max) return operand + "{" + std::to_string(n.min) + "}";
    return operand + "{" + std::to_string(n.min) + "," + std::to_string(n.max) + "}";
  }
  // The operand of a repetition: inline when small and free of counts, else a rule.
  std::string atom(const RegexNode& n) {
    if (n.kind == RegexNode::Kind::kSet) return set(n.set);
    const std::string e = expr(n);
    if (!has_repeat(n) && e.size() <= kInlineOperandBytes)
      return n.kind == RegexNode::Kind::kAlternatives ? e : "(" + e + ")";
    const std::string name = prefix_ + "-" + std::to_string(++num_rules_);
    rules_ += name + " ::= " + e + "\n";
    return name;
  }

  std::string prefix_;
  bool json_;
  std::string rules_;
  int num_rules_ = 0;
};

}  // namespace

Result<std::string> regex_to_gbnf(std::string_view regex, const std::string& prefix, std::string& out,
                                  RegexEmbedding embedding) {
  auto parsed = parse_regex(regex);
  if (!parsed.ok()) return parsed.error();
  Emitter emitter(prefix, embedding);
  const std::string body = emitter.expr(*parsed);
  out += prefix + " ::= " + body + "\n" + emitter.rules();
  return prefix;
}

Result<std::string> regex_grammar(std::string_view regex) {
  std::string out;
  auto root = regex_to_gbnf(regex, "root", out);
  if (!root.ok()) return root.error();
  return out;
}

}  // namespace ember::structured
