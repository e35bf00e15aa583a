// The text of JSON's own pieces (json_schema_terminals.h): shared rules, integer ranges, string formats.

#include "engine/structured/json_schema_terminals.h"

#include <algorithm>

namespace ember::structured {
namespace {

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const std::string& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}
std::string alternatives(const std::vector<std::string>& alts) {
  return alts.size() == 1 ? alts[0] : "(" + join(alts, " | ") + ")";
}
std::string quoted(std::string_view digits) { return "\"" + std::string(digits) + "\""; }
// a then b; two digit literals in a row become one.
std::string then(const std::string& a, const std::string& b) {
  auto literal = [](const std::string& s) {
    return s.size() >= 2 && s.front() == '"' && s.find_first_not_of("0123456789", 1) == s.size() - 1;
  };
  if (literal(a) && literal(b)) return a.substr(0, a.size() - 1) + b.substr(1);
  return join({a, b}, " ");
}
std::string any_digits(size_t n) { return n == 0 ? "" : n == 1 ? "[0-9]" : "[0-9]{" + std::to_string(n) + "}"; }
std::string digit_class(char lo, char hi) {
  return lo == hi ? quoted(std::string(1, lo)) : std::string("[") + lo + "-" + hi + "]";
}

// The decimal strings from lo to hi, both of one length: the shared prefix, then at the first digit that
// differs, lo's digit (then anything up to 9...9), the digits strictly between (then anything), hi's digit
// (then anything down to 0...0). A side whose tail is already 0...0 or 9...9 joins the middle.
std::string same_length(const std::string& lo, const std::string& hi) {
  size_t p = 0;
  while (p < lo.size() && lo[p] == hi[p]) ++p;
  const std::string prefix = p ? quoted(lo.substr(0, p)) : "";
  if (p == lo.size()) return prefix;
  const size_t rest = lo.size() - p - 1;
  const std::string lo_tail = lo.substr(p + 1), hi_tail = hi.substr(p + 1);
  const bool lo_zeros = lo_tail == std::string(rest, '0'), hi_nines = hi_tail == std::string(rest, '9');
  const char mid_lo = static_cast<char>(lo[p] + (lo_zeros ? 0 : 1)),
             mid_hi = static_cast<char>(hi[p] - (hi_nines ? 0 : 1));
  std::vector<std::string> alts;
  if (!lo_zeros) alts.push_back(then(quoted(lo.substr(p, 1)), same_length(lo_tail, std::string(rest, '9'))));
  if (mid_lo <= mid_hi) alts.push_back(join({digit_class(mid_lo, mid_hi), any_digits(rest)}, " "));
  if (!hi_nines) alts.push_back(then(quoted(hi.substr(p, 1)), same_length(std::string(rest, '0'), hi_tail)));
  return then(prefix, alternatives(alts));
}

// 0 <= a <= b: one piece per digit count, where a run of counts that take every number of their length
// (10...0 to 9...9) is one piece.
std::string non_negative(int64_t a, int64_t b) {
  const std::string sa = std::to_string(a), sb = std::to_string(b);
  auto lowest = [&](size_t len) { return len == sa.size() ? sa : "1" + std::string(len - 1, '0'); };
  auto highest = [&](size_t len) { return len == sb.size() ? sb : std::string(len, '9'); };
  auto whole = [&](size_t len) {
    return len >= 2 && lowest(len) == "1" + std::string(len - 1, '0') && highest(len) == std::string(len, '9');
  };
  std::vector<std::string> alts;
  for (size_t len = sa.size(); len <= sb.size();) {
    if (!whole(len)) {
      alts.push_back(same_length(lowest(len), highest(len)));
      ++len;
      continue;
    }
    size_t end = len;
    while (end + 1 <= sb.size() && whole(end + 1)) ++end;
    const std::string tail =
        end == len ? any_digits(len - 1) : "[0-9]{" + std::to_string(len - 1) + "," + std::to_string(end - 1) + "}";
    alts.push_back("[1-9] " + tail);
    len = end + 1;
  }
  return alternatives(alts);
}

// Shared pieces of the formats.
constexpr const char* kYear = R"(([1-9] [0-9]{3} | "0" [1-9] [0-9]{2} | "00" [1-9] [0-9] | "000" [1-9]))";
// Divisible by 4, and by 400 when by 100 (0000 is not a year here).
constexpr const char* kLeapYear =
    R"(([0-9]{2} ("0" [48] | [2468] [048] | [13579] [26]) | ("0" [48] | [2468] [048] | [13579] [26]) "00"))";
// Month and day: the 31-day months, the 30-day months, February to the 28th (the 29th needs kLeapYear).
constexpr const char* kMonthDay = R"((("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]))"
                                  R"( | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30"))"
                                  R"( | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8])))";
constexpr const char* kTime = R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,9})?)"
                              R"( ("Z" | [+\-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))";
constexpr const char* kOctet = R"(("25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9]))";
constexpr const char* kAtext = R"([A-Za-z0-9!#$%&'*+/=?\^_`{|}~\-])";
constexpr const char* kLabel = R"(([A-Za-z0-9] ([A-Za-z0-9\-]* [A-Za-z0-9])?))";

}  // namespace

std::string JsonBaseRules::use(std::string_view name) {
  if (std::find(used_.begin(), used_.end(), name) != used_.end()) return std::string(name);
  used_.emplace_back(name);
  if (name == "value") {
    for (const char* dep : {"object", "array", "string", "number", "boolean", "null"}) use(dep);
  } else if (name == "object") {
    if (!compact_) use("ws");
    use("string"), use("value");
  } else if (name == "array") {
    if (!compact_) use("ws");
    use("value");
  } else if (name == "string") {
    use("char");
  }
  return std::string(name);
}

std::string JsonBaseRules::text() const {
  const std::string w = compact_ ? " " : " ws ";
  std::string out;
  for (const std::string& name : used_) {
    std::string body;
    if (name == "ws") body = R"(( " " | "\n" [ \t]{0,32} )?)";
    if (name == "value") body = "object | array | string | number | boolean | null";
    if (name == "object")
      body = "\"{\"" + w + "( string" + w + "\":\"" + w + "value (" + w + "\",\"" + w + "string" + w + "\":\"" + w +
             "value )*" + w + ")? \"}\"";
    if (name == "array") body = "\"[\"" + w + "( value (" + w + "\",\"" + w + "value )*" + w + ")? \"]\"";
    if (name == "string") body = R"("\"" char* "\"")";
    if (name == "char") body = R"([^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ))";
    // Exponents bounded so that every number is a finite double, which every JSON parser reads (nlohmann refuses
    // 2e996): up to 307 after a one-digit integer part (d.ddde+307, what serializers print), up to 290 after 2-18
    // digits; leading zeros allowed.
    if (name == "number") {
      const std::string frac = R"(( "." [0-9]{1,18} )?)";
      const std::string e307 = R"(( [eE] [+\-]? "0"* ( [0-9]{1,2} | [12] [0-9]{2} | "30" [0-7] ) )?)";
      const std::string e290 = R"(( [eE] [+\-]? "0"* ( [0-9]{1,2} | [01] [0-9]{2} | "2" [0-8] [0-9] | "290" ) )?)";
      body = "\"-\"? ( ( \"0\" | [1-9] ) " + frac + " " + e307 + " | [1-9] [0-9]{1,17} " + frac + " " + e290 + " )";
    }
    if (name == "integer") body = R"("-"? ( "0" | [1-9] [0-9]{0,17} ))";
    if (name == "boolean") body = R"("true" | "false")";
    if (name == "null") body = R"("null")";
    out += name + " ::= " + body + "\n";
  }
  return out;
}

std::string integer_range_gbnf(int64_t lo, int64_t hi) {
  std::vector<std::string> alts;
  if (lo < 0) alts.push_back("\"-\" " + non_negative(hi < 0 ? -hi : 1, -lo));
  if (hi >= 0) alts.push_back(non_negative(std::max<int64_t>(lo, 0), hi));
  return join(alts, " | ");
}

std::string string_format_gbnf(std::string_view format) {
  const std::string date = std::string("(") + kYear + " \"-\" " + kMonthDay + " | " + kLeapYear + " \"-02-29\")";
  std::string body;
  if (format == "date") body = date;
  if (format == "time") body = kTime;
  if (format == "date-time") body = date + " \"T\" " + kTime;
  if (format == "uuid")
    body = R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})";
  if (format == "email")
    body = std::string(kAtext) + "+ (\".\" " + kAtext + "+)* \"@\" " + kLabel + " (\".\" " + kLabel + ")+";
  if (format == "ipv4") body = std::string(kOctet) + " \".\" " + kOctet + " \".\" " + kOctet + " \".\" " + kOctet;
  if (body.empty()) return "";
  return "\"\\\"\" " + body + " \"\\\"\"";
}

}  // namespace ember::structured
