// Objects and arrays of the schema walk (json_schema_compiler.h).
//
// Members: the listed properties in order, each required one present, each
// optional one present or not, then extra members repeated. With a comma only
// between members present, the grammar is one alternative per possible first
// member, each followed by the "tail" of the members after it; a tail shared
// by two alternatives becomes a rule, so the text stays linear in the members.

#include <algorithm>
#include <map>
#include <utility>

#include "engine/structured/code_points.h"
#include "engine/structured/grammar.h"
#include "engine/structured/json_schema_compiler.h"
#include "engine/structured/regex.h"

namespace ember::structured {
namespace {

constexpr int64_t kMaxOptionalPrefix = 64;  // each optional prefix item nests one group in the next
constexpr size_t kMaxKeyLength = 1000;      // code points of a property name beside extra members
constexpr int kTrieDepthPerRule = 32;       // a name trie nests this deep in one rule, then calls the next

std::string cat(std::initializer_list<std::string> parts) {
  std::string out;
  for (const std::string& p : parts)
    if (!p.empty()) out += (out.empty() ? "" : " ") + p;
  return out;
}
std::string alternatives(const std::vector<std::string>& alts) {
  std::string out;
  for (const std::string& a : alts) out += (out.empty() ? "" : " | ") + a;
  return alts.size() == 1 ? out : "(" + out + ")";
}
std::string pointer_token(const std::string& key) {
  std::string out;
  for (char c : key) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}
bool listed(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::string SchemaCompiler::object(const Json& s, const std::string& ptr, const std::string& name, int depth) {
  const bool has_properties = s.contains("properties");
  if (has_properties && !s["properties"].is_object()) return fail("'properties' must be an object", ptr);
  std::vector<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) return fail("'required' must be a list of names", ptr);
    for (const Json& r : s["required"]) {
      if (!r.is_string()) return fail("'required' must be a list of names", ptr);
      if (!listed(required, r.get<std::string>())) required.push_back(r.get<std::string>());
    }
  }
  const Json* additional = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
  if (additional && !additional->is_boolean() && !additional->is_object())
    return fail("'additionalProperties' must be a boolean or a schema", ptr);
  const bool forbidden = additional && *additional == false;
  const bool extras = additional ? !forbidden : !has_properties;  // absent: none beside `properties`
  if (!has_properties && required.empty() && extras && (!additional || *additional == true)) return base_.use("object");

  // Past the opening brace, a $ref met again is recursion, not left recursion.
  const std::vector<std::string> outer_refs = std::exchange(left_refs_, {});
  std::vector<Member> members;
  std::vector<std::string> keys;
  auto pair = [&](const std::string& key, const std::string& value) { return cat({key, sep(":"), value}); };
  auto key_literal = [](const std::string& key) { return gbnf_literal(Json(key).dump()); };
  if (has_properties) {
    for (const auto& [key, sub] : s["properties"].items()) {
      if (!ok()) break;
      keys.push_back(key);
      const bool needed = listed(required, key);
      if (sub.is_boolean() && !sub.get<bool>()) {
        if (needed) fail("required property '" + key + "' has the schema false", ptr);
        continue;
      }
      const std::string value = schema(sub, ptr + "/properties/" + pointer_token(key), name + "-" + key, depth + 1);
      members.push_back({pair(key_literal(key), value), needed});
    }
  }
  std::string extra_value;  // the schema of members not listed, walked when first needed
  auto extra_value_expr = [&]() -> const std::string& {
    if (extra_value.empty() && ok())
      extra_value = additional && additional->is_object()
                        ? schema(*additional, ptr + "/additionalProperties", name + "-extra", depth + 1)
                        : base_.use("value");
    return extra_value;
  };
  for (const std::string& key : required) {  // required but not listed: a member with any value allowed
    if (!ok() || listed(keys, key)) continue;
    if (forbidden)
      fail("required property '" + key + "' is not in 'properties' and 'additionalProperties' is false", ptr);
    keys.push_back(key);
    members.push_back({pair(key_literal(key), extra_value_expr()), true});
  }
  const std::string extra =
      ok() && extras ? define(name + "-extra", pair(key_not_in(keys, ptr, name), extra_value_expr())) : "";
  left_refs_ = outer_refs;
  if (!ok()) return "";

  bool nullable = false;
  const std::string body = members_body(members, extra, name, nullable);
  const std::string open = cat({gbnf_literal("{"), ws()}), close = gbnf_literal("}");
  if (body.empty()) return define(name, cat({open, close}));
  if (nullable) return define(name, cat({open, "(" + cat({body, ws()}) + ")?", close}));
  return define(name, cat({open, body, ws(), close}));
}

std::string SchemaCompiler::members_body(const std::vector<Member>& members, const std::string& extra,
                                         const std::string& name, bool& nullable) {
  const size_t n = members.size();
  size_t first_required = 0;
  while (first_required < n && !members[first_required].required) ++first_required;
  const std::string comma = sep(",");
  // tails[j]: what may follow once a member before j is written (each later member with its comma).
  std::vector<std::string> tails(n + 1);
  tails[n] = extra.empty() ? "" : "(" + cat({comma, extra}) + ")*";
  for (size_t j = n; j-- > 1;) {
    const std::string item = cat({comma, members[j].pair});
    tails[j] = cat({members[j].required ? item : "(" + item + ")?", tails[j + 1]});
    // Alternative j-1 and tails[j-1] both end in tails[j]: one rule for both.
    if (j >= 2 && j <= first_required + 1 && j < n) tails[j] = define(name + "-tail" + std::to_string(j), tails[j]);
  }
  std::vector<std::string> alts;
  for (size_t i = 0; i < n && i <= first_required; ++i) alts.push_back(cat({members[i].pair, tails[i + 1]}));
  nullable = first_required == n;
  if (nullable && !extra.empty()) alts.push_back(cat({extra, tails[n]}));
  return alts.empty() ? "" : alternatives(alts);
}

// A JSON string whose text is none of `keys`: a trie of the keys, where at each node the string may end
// (unless a key ends there), go on with a key's next character, or leave every key with any other
// character and then be any string. Escapes only after leaving, so no escape can spell a key.
std::string SchemaCompiler::key_not_in(const std::vector<std::string>& keys, const std::string& ptr,
                                       const std::string& name) {
  if (keys.empty()) return base_.use("string");
  struct Node {
    bool key_ends = false;
    std::map<uint32_t, size_t> next;
  };
  std::vector<Node> trie(1);
  for (const std::string& key : keys) {
    size_t at = 0, pos = 0, length = 0;
    bool spelled = true;  // a key with a character that needs an escape cannot be written here at all
    while (spelled && pos < key.size()) {
      const int32_t cp = decode_utf8(key, pos);
      spelled = cp >= 0 && contains(json_string_raw_set(), static_cast<uint32_t>(cp));
      if (!spelled) break;
      if (++length > kMaxKeyLength)
        return fail("a property name longer than " + std::to_string(kMaxKeyLength) + " characters beside extra members",
                    ptr);
      const auto [it, added] = trie[at].next.emplace(static_cast<uint32_t>(cp), trie.size());
      const size_t child = it->second;
      if (added) trie.emplace_back();
      at = child;
    }
    if (spelled) trie[at].key_ends = true;
  }
  const std::string quote = gbnf_literal("\"");
  const std::string any_rest = cat({base_.use("char") + "*", quote});
  auto expr = [&](auto&& self, size_t node, int depth) -> std::string {
    if (!ok()) return "";
    if (depth == kTrieDepthPerRule) return define(name + "-key", self(self, node, 0));
    std::vector<std::string> alts;
    if (!trie[node].key_ends) alts.push_back(quote);
    CodePointSet taken;
    for (const auto& [cp, child] : trie[node].next) {
      std::string text;
      append_utf8(cp, text);
      alts.push_back(cat({gbnf_literal(text), self(self, child, depth + 1)}));
      taken.emplace_back(cp, cp);
    }
    const CodePointSet other = intersect(json_string_raw_set(), complement(normalized(taken)));
    if (!other.empty()) alts.push_back(cat({gbnf_class(other), any_rest}));
    return alternatives(alts);
  };
  return cat({quote, expr(expr, 0, 0)});
}

std::string SchemaCompiler::array(const Json& s, const std::string& ptr, const std::string& name, int depth) {
  int64_t min = count(s, "minItems", ptr), max = count(s, "maxItems", ptr);
  if (!ok()) return "";
  min = std::max<int64_t>(min, 0);
  if (min > kMaxRepetition || max > kMaxRepetition)
    return fail("'minItems'/'maxItems' past " + std::to_string(kMaxRepetition) + " is not supported", ptr);
  const bool has_prefix = s.contains("prefixItems");
  if (has_prefix && !s["prefixItems"].is_array()) return fail("'prefixItems' must be a list of schemas", ptr);
  if (s.contains("items") && s["items"].is_array())
    return fail("'items' as a list (draft 7 tuples) is not supported: use 'prefixItems'", ptr);

  const std::vector<std::string> outer_refs = std::exchange(left_refs_, {});  // past '[': see object()
  std::vector<std::string> prefix;
  if (has_prefix) {
    const Json& list = s["prefixItems"];
    for (size_t i = 0; i < list.size() && ok(); ++i) {
      const auto at = static_cast<int64_t>(i);
      if (list[i].is_boolean() && !list[i].get<bool>()) {  // false: the array ends before it
        max = max < 0 ? at : std::min(max, at);
        break;
      }
      prefix.push_back(
          schema(list[i], ptr + "/prefixItems/" + std::to_string(i), name + "-" + std::to_string(i), depth + 1));
    }
  }
  std::string rest;  // the items after the prefix; "" when there may be none
  if (ok() && s.contains("items")) {
    if (!(s["items"].is_boolean() && !s["items"].get<bool>()))
      rest = schema(s["items"], ptr + "/items", name + "-item", depth + 1);
  } else if (!has_prefix) {
    rest = base_.use("value");
  }
  left_refs_ = outer_refs;
  if (!ok()) return "";

  const auto k = static_cast<int64_t>(prefix.size());
  if (rest.empty()) max = max < 0 ? k : std::min(max, k);
  if (max >= 0 && min > max) return fail("no array satisfies 'minItems', 'maxItems' and the items allowed", ptr);
  if ((max < 0 ? k : std::min(k, max)) - min > kMaxOptionalPrefix)
    return fail("more than " + std::to_string(kMaxOptionalPrefix) + " optional 'prefixItems' (past 'minItems')", ptr);
  const std::string comma = sep(",");
  auto item = [&](int64_t i) { return i < k ? prefix[static_cast<size_t>(i)] : rest; };
  // Items from position `from` on, each optional: a prefix item only after the ones before it, then the rest.
  auto optional_from = [&](int64_t from) {
    std::string tail;
    const int64_t start = std::max(from, k);
    if (!rest.empty() && (max < 0 || max > start)) {
      const std::string one = "(" + cat({comma, rest}) + ")";
      tail = max < 0 ? one + "*" : max - start == 1 ? one + "?" : one + "{0," + std::to_string(max - start) + "}";
    }
    for (int64_t i = (max < 0 ? k : std::min(k, max)) - 1; i >= from; --i)
      tail = "(" + cat({comma, item(i), tail}) + ")?";
    return tail;
  };
  const std::string open = cat({gbnf_literal("["), ws()}), close = gbnf_literal("]");
  if (max == 0) return define(name, cat({open, close}));
  if (min == 0) return define(name, cat({open, "(" + cat({item(0), optional_from(1), ws()}) + ")?", close}));
  std::string required = item(0);
  int64_t i = 1;
  for (; i < min && i < k; ++i) required = cat({required, comma, item(i)});
  if (i < min)
    required =
        cat({required, "(" + cat({comma, rest}) + ")" + (min - i == 1 ? "" : "{" + std::to_string(min - i) + "}")});
  return define(name, cat({open, required, optional_from(min), ws(), close}));
}

}  // namespace ember::structured
