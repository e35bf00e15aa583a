// The schema walk: dispatch on keywords, $ref, anyOf/oneOf/allOf, enum/const
// and the scalar types. Objects and arrays: json_schema_containers.cpp.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <string>

#include "engine/structured/grammar.h"
#include "engine/structured/json_schema_compiler.h"
#include "engine/structured/regex.h"

namespace ember::structured {
namespace {

constexpr size_t kMaxEnumValues = 4096;
constexpr size_t kMaxNameBytes = 48;                 // of a rule name built from property names
constexpr int64_t kEdge = kMaxIntegerMagnitude + 1;  // integer bounds clamp to +-kEdge

// Keywords that constrain nothing; $defs and definitions are read only through $ref.
const std::set<std::string, std::less<>> kAnnotations = {
    "title",  "description", "default",   "examples",   "$schema", "$id",        "$comment",
    "strict", "readOnly",    "writeOnly", "deprecated", "$defs",   "definitions"};
// The keywords read; any other is an Error.
const std::set<std::string, std::less<>> kConstraints = {
    // any type
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    // objects and arrays
    "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    // strings and integers
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
const char* const kTypes[] = {"object", "array", "string", "integer", "number", "boolean", "null"};
// Without `type`, a keyword implies the type it constrains.
const std::pair<const char*, const char*> kImpliedTypes[] = {
    {"properties", "object"}, {"required", "object"},         {"additionalProperties", "object"},
    {"items", "array"},       {"prefixItems", "array"},       {"minItems", "array"},
    {"maxItems", "array"},    {"minLength", "string"},        {"maxLength", "string"},
    {"pattern", "string"},    {"format", "string"},           {"minimum", "number"},
    {"maximum", "number"},    {"exclusiveMinimum", "number"}, {"exclusiveMaximum", "number"}};
const char* const kBounds[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};

std::string pointer_text(const std::string& ptr) { return ptr.empty() ? "the root" : ptr; }

std::string percent_decoded(const std::string& s, bool& ok) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      ok = false;
      return out;
    }
    out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
    i += 2;
  }
  return out;
}

// The JSON type names a value has (an integral number is both "integer" and "number").
bool has_type(const nlohmann::ordered_json& v, const std::string& type) {
  if (type == "integer")
    return v.is_number_integer() || (v.is_number_float() && std::trunc(v.get<double>()) == v.get<double>());
  if (type == "number") return v.is_number();
  if (type == "string") return v.is_string();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  if (type == "object") return v.is_object();
  return v.is_array();
}

}  // namespace

SchemaCompiler::SchemaCompiler(const Json& root, const JsonSchemaOptions& options)
    : root_(root), options_(options), base_(options.compact) {
  for (const char* shared :
       {"ws", "value", "object", "array", "string", "char", "number", "integer", "boolean", "null"})
    names_[shared] = 1;  // JsonBaseRules' names
}

Result<std::string> SchemaCompiler::compile() {
  rules_.push_back({"root", ""});
  names_["root"] = 1;
  num_rules_ = 1;
  refs_[""] = "root";
  left_refs_.push_back("");
  open_slots_["root"] = 0;
  const std::string expr = schema(root_, "", "root", 0);
  if (!ok()) return Error{error_};
  if (open_slots_.erase("root")) rules_[0].second = expr;
  std::string text;
  for (const auto& [name, body] : rules_) text += name + " ::= " + body + "\n";
  return text + extra_rules_ + base_.text();
}

std::string SchemaCompiler::schema(const Json& s, const std::string& ptr, const std::string& name, int depth) {
  if (!ok()) return "";
  if (depth > options_.max_depth)
    return fail("the schema nests deeper than max_depth (" + std::to_string(options_.max_depth) + ")", ptr);
  if (s.is_boolean()) return s.get<bool>() ? base_.use("value") : fail("schema false (no value is valid)", ptr);
  if (!s.is_object()) return fail("a schema must be an object or a boolean", ptr);
  for (const auto& [key, value] : s.items())
    if (!kAnnotations.count(key) && !kConstraints.count(key))
      return fail("unsupported JSON Schema keyword '" + key + "'", ptr);
  if (s.contains("$ref")) return only_beside(s, {"$ref"}, ptr) ? ref(s["$ref"], ptr, depth) : "";
  for (const char* keyword : {"anyOf", "oneOf", "allOf"})
    if (s.contains(keyword)) return only_beside(s, {keyword}, ptr) ? combination(s, keyword, ptr, name, depth) : "";
  if (s.contains("enum") || s.contains("const"))
    return only_beside(s, {s.contains("enum") ? "enum" : "const", "type"}, ptr) ? enumeration(s, ptr, name) : "";

  std::vector<std::string> types;
  if (s.contains("type")) {
    const Json& t = s["type"];
    for (const Json& one : t.is_array() ? t : Json::array({t})) {
      const bool known = one.is_string() &&
                         std::find(std::begin(kTypes), std::end(kTypes), one.get<std::string>()) != std::end(kTypes);
      if (!known) return fail("'type' must be one of the seven JSON Schema type names, or a list of them", ptr);
      if (std::find(types.begin(), types.end(), one.get<std::string>()) == types.end())
        types.push_back(one.get<std::string>());
    }
    if (types.empty()) return fail("'type' is an empty list", ptr);
  } else {
    for (const auto& [keyword, type] : kImpliedTypes)
      if (s.contains(keyword) && std::find(types.begin(), types.end(), type) == types.end()) types.push_back(type);
    if (types.empty()) return base_.use("value");
  }
  // A number grammar already takes every integer.
  if (std::find(types.begin(), types.end(), "number") != types.end())
    types.erase(std::remove(types.begin(), types.end(), "integer"), types.end());
  std::vector<std::string> alts;
  for (const std::string& type : types)
    alts.push_back(typed(type, s, ptr, types.size() == 1 ? name : name + "-" + type, depth));
  if (!ok()) return "";
  if (alts.size() == 1) return alts[0];
  std::string body;
  for (const std::string& a : alts) body += (body.empty() ? "" : " | ") + a;
  return define(name, body);
}

std::string SchemaCompiler::typed(const std::string& type, const Json& s, const std::string& ptr,
                                  const std::string& name, int depth) {
  if (type == "object") return object(s, ptr, name, depth);
  if (type == "array") return array(s, ptr, name, depth);
  if (type == "string") return string(s, ptr, name);
  if (type == "integer") return integer(s, ptr, name);
  if (type == "number") return number(s, ptr);
  return base_.use(type);  // boolean, null
}

std::string SchemaCompiler::ref(const Json& r, const std::string& ptr, int depth) {
  if (!r.is_string()) return fail("'$ref' must be a string", ptr);
  const std::string text = r.get<std::string>();
  if (text.empty() || text[0] != '#')
    return fail("$ref '" + text + "': only local references ('#/...') are supported", ptr);
  bool decoded = true;
  const std::string target = percent_decoded(text.substr(1), decoded);
  if (!decoded || (!target.empty() && target[0] != '/'))
    return fail("$ref '" + text + "': only JSON pointers ('#/$defs/...') are supported", ptr);
  if (std::find(left_refs_.begin(), left_refs_.end(), target) != left_refs_.end())
    return fail("$ref '" + text + "' comes back to itself before any JSON text (left recursion)", ptr);
  if (auto it = refs_.find(target); it != refs_.end()) return it->second;
  const Json* resolved = nullptr;
  try {
    const Json::json_pointer pointer(target);
    if (root_.contains(pointer)) resolved = &root_.at(pointer);
  } catch (const nlohmann::json::exception&) {
  }
  if (!resolved) return fail("$ref '" + text + "' points to nothing in the schema", ptr);
  if (!count_rule()) return "";
  // Named before the walk, so a reference to it from inside closes the recursion.
  const std::string name = unique_name("def-" + target.substr(target.rfind('/') + 1));
  const size_t slot = rules_.size();
  rules_.push_back({name, ""});
  refs_[target] = name;
  open_slots_[name] = slot;
  left_refs_.push_back(target);
  std::string expr = schema(*resolved, target, name, depth + 1);
  left_refs_.pop_back();
  if (open_slots_.erase(name)) rules_[slot].second = std::move(expr);
  return name;
}

std::string SchemaCompiler::combination(const Json& s, const std::string& keyword, const std::string& ptr,
                                        const std::string& name, int depth) {
  const Json& list = s[keyword];
  if (!list.is_array() || list.empty()) return fail("'" + keyword + "' must be a non-empty list of schemas", ptr);
  if (keyword == "allOf") {
    if (list.size() > 1) return fail("'allOf' of more than one schema is not supported", ptr);
    return schema(list[0], ptr + "/allOf/0", name, depth + 1);
  }
  std::vector<std::string> alts;
  for (size_t i = 0; i < list.size() && ok(); ++i) {
    if (list[i].is_boolean() && !list[i].get<bool>()) continue;  // false: an alternative nothing takes
    const std::string alt =
        schema(list[i], ptr + "/" + keyword + "/" + std::to_string(i), name + "-" + std::to_string(i), depth + 1);
    if (std::find(alts.begin(), alts.end(), alt) == alts.end()) alts.push_back(alt);
  }
  if (!ok()) return "";
  if (alts.empty()) return fail("every schema of '" + keyword + "' is false", ptr);
  if (alts.size() == 1) return alts[0];
  std::string body;
  for (const std::string& a : alts) body += (body.empty() ? "" : " | ") + a;
  return define(name, body);
}

std::string SchemaCompiler::enumeration(const Json& s, const std::string& ptr, const std::string& name) {
  const Json values = s.contains("const") ? Json::array({s["const"]}) : s["enum"];
  if (!values.is_array() || values.empty()) return fail("'enum' must be a non-empty list", ptr);
  if (values.size() > kMaxEnumValues)
    return fail("'enum' has more than " + std::to_string(kMaxEnumValues) + " values", ptr);
  std::vector<std::string> types;
  if (s.contains("type")) {
    for (const Json& t : s["type"].is_array() ? s["type"] : Json::array({s["type"]})) {
      if (!t.is_string()) return fail("'type' must be one of the seven JSON Schema type names, or a list of them", ptr);
      types.push_back(t.get<std::string>());
    }
  }
  std::vector<std::string> literals;
  for (const Json& v : values) {
    const bool typed =
        types.empty() || std::any_of(types.begin(), types.end(), [&](const std::string& t) { return has_type(v, t); });
    if (!typed) continue;
    std::string text = value_literal(v, ptr, 0);
    if (std::find(literals.begin(), literals.end(), text) == literals.end()) literals.push_back(std::move(text));
  }
  if (!ok()) return "";
  if (literals.empty()) return fail("no value of 'enum'/'const' has the schema's 'type'", ptr);
  if (literals.size() == 1) return literals[0];
  std::string body;
  for (const std::string& l : literals) body += (body.empty() ? "" : " | ") + l;
  return define(name, body);
}

// A value's JSON text: its canonical form, with the whitespace ws() allows between the tokens of arrays
// and objects (members in the value's order).
std::string SchemaCompiler::value_literal(const Json& v, const std::string& ptr, int depth) {
  if (depth > options_.max_depth)
    return fail("an 'enum'/'const' value nests deeper than max_depth (" + std::to_string(options_.max_depth) + ")",
                ptr);
  if (!v.is_structured()) return gbnf_literal(v.dump());
  const bool object = v.is_object();
  std::string out = gbnf_literal(object ? "{" : "[");
  bool first = true;
  for (const auto& [key, item] : v.items()) {
    out += " " + (first ? ws() : sep(","));
    if (object) out += " " + gbnf_literal(Json(key).dump()) + " " + sep(":");
    out += " " + value_literal(item, ptr, depth + 1);
    first = false;
  }
  return out + " " + ws() + " " + gbnf_literal(object ? "}" : "]");
}

std::string SchemaCompiler::string(const Json& s, const std::string& ptr, const std::string& name) {
  const int64_t min = count(s, "minLength", ptr), max = count(s, "maxLength", ptr);
  if (!ok()) return "";
  const bool lengths = min >= 0 || max >= 0;
  const std::string quote = gbnf_literal("\"");
  if (s.contains("format")) {
    if (s.contains("pattern") || lengths)
      return fail("'format' beside 'pattern', 'minLength' or 'maxLength' is not supported", ptr);
    if (!s["format"].is_string()) return fail("'format' must be a string", ptr);
    const std::string format = s["format"].get<std::string>();
    const std::string body = string_format_gbnf(format);
    if (body.empty()) return fail("unsupported string format '" + format + "'", ptr);
    return define(format, body);
  }
  if (s.contains("pattern")) {
    if (lengths) return fail("'pattern' beside 'minLength' or 'maxLength' is not supported", ptr);
    if (!s["pattern"].is_string()) return fail("'pattern' must be a string", ptr);
    const std::string re = pattern(s["pattern"].get<std::string>(), ptr, name);
    return ok() ? define(name, quote + " " + re + " " + quote) : "";
  }
  if (!lengths) return base_.use("string");
  const int64_t lo = std::max<int64_t>(min, 0);
  if (lo > kMaxRepetition || max > kMaxRepetition)
    return fail("'minLength'/'maxLength' past " + std::to_string(kMaxRepetition) + " is not supported", ptr);
  if (max >= 0 && max < lo) return fail("no string satisfies 'minLength' > 'maxLength'", ptr);
  const std::string reps =
      max < 0 ? "{" + std::to_string(lo) + ",}" : "{" + std::to_string(lo) + "," + std::to_string(max) + "}";
  return define(name, quote + " " + base_.use("char") + reps + " " + quote);
}

// The regex's rule. It names its helpers prefix-1, prefix-2, ...: a prefix whose helper names are all
// free is taken, and they are claimed with it.
std::string SchemaCompiler::pattern(const std::string& regex, const std::string& ptr, const std::string& name) {
  for (;;) {
    const std::string prefix = unique_name(name + "-pattern");
    std::string rules;
    auto re = regex_to_gbnf(regex, prefix, rules, RegexEmbedding::kJsonString);
    if (!re.ok()) return fail(re.error().message + ", in the 'pattern'", ptr);
    int helpers = -1;
    for (size_t at = rules.find("::="); at != std::string::npos; at = rules.find("::=", at + 3)) ++helpers;
    bool free = true;
    for (int i = 1; i <= helpers; ++i) free = free && !names_.count(prefix + "-" + std::to_string(i));
    if (!free) continue;
    for (int i = 0; i <= helpers; ++i)
      if (!count_rule()) return "";
    for (int i = 1; i <= helpers; ++i) names_[prefix + "-" + std::to_string(i)] = 1;
    extra_rules_ += rules;
    return *re;
  }
}

std::string SchemaCompiler::integer(const Json& s, const std::string& ptr, const std::string& name) {
  // A bound as an integer, clamped one past the 18-digit range (so a bound beyond it stays beyond it).
  auto as_integer = [](const Json& v, bool round_up) -> int64_t {
    if (v.is_number_unsigned()) return static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), kEdge));
    if (v.is_number_integer()) return std::clamp<int64_t>(v.get<int64_t>(), -kEdge, kEdge);
    const double d = round_up ? std::ceil(v.get<double>()) : std::floor(v.get<double>());
    return static_cast<int64_t>(std::clamp(d, -static_cast<double>(kEdge), static_cast<double>(kEdge)));
  };
  int64_t lo = -kMaxIntegerMagnitude, hi = kMaxIntegerMagnitude;
  bool bounded = false;
  for (const char* keyword : kBounds) {
    if (!s.contains(keyword)) continue;
    const Json& v = s[keyword];
    if (!v.is_number()) return fail("'" + std::string(keyword) + "' must be a number", ptr);
    const std::string_view k = keyword;
    if (k == "minimum") lo = std::max(lo, as_integer(v, true));
    if (k == "exclusiveMinimum") lo = std::max(lo, as_integer(v, false) + 1);
    if (k == "maximum") hi = std::min(hi, as_integer(v, false));
    if (k == "exclusiveMaximum") hi = std::min(hi, as_integer(v, true) - 1);
    bounded = true;
  }
  if (!bounded) return base_.use("integer");
  if (lo > kMaxIntegerMagnitude || hi < -kMaxIntegerMagnitude)
    return fail("integer bounds past the 18-digit integers the grammar writes", ptr);
  if (lo > hi) return fail("no integer lies between the minimum and the maximum", ptr);
  return define(name, integer_range_gbnf(lo, hi));
}

std::string SchemaCompiler::number(const Json& s, const std::string& ptr) {
  for (const char* keyword : kBounds)
    if (s.contains(keyword))
      return fail("'" + std::string(keyword) + "' on a number is not supported (only on an integer)", ptr);
  return base_.use("number");
}

std::string SchemaCompiler::define(const std::string& name, const std::string& body) {
  if (!ok()) return "";
  if (auto it = by_body_.find(body); it != by_body_.end()) return it->second;
  if (auto slot = open_slots_.find(name); slot != open_slots_.end()) {  // the rule of a $ref (or root) itself
    rules_[slot->second].second = body;
    open_slots_.erase(slot);
    by_body_[body] = name;
    return name;
  }
  if (!count_rule()) return "";
  const std::string unique = unique_name(name);
  rules_.push_back({unique, body});
  by_body_[body] = unique;
  return unique;
}

bool SchemaCompiler::count_rule() {
  if (++num_rules_ <= options_.max_rules) return true;
  if (ok()) error_ = "the schema needs more than max_rules (" + std::to_string(options_.max_rules) + ") grammar rules";
  return false;
}

// Rule names from a hint (a property name, a $defs key): [A-Za-z0-9_-] kept, the rest '-'; clashes numbered.
std::string SchemaCompiler::unique_name(const std::string& hint) {
  std::string name;
  for (char c : hint.substr(0, kMaxNameBytes)) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    if (keep || (!name.empty() && name.back() != '-')) name += keep ? c : '-';
  }
  if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0]))) name = "r-" + name;
  int& uses = names_[name];
  if (uses++ == 0) return name;
  for (;;) {  // "name-2" may itself be some other hint's name
    const std::string numbered = name + "-" + std::to_string(uses);
    if (names_[numbered]++ == 0) return numbered;
    ++uses;
  }
}

int64_t SchemaCompiler::count(const Json& s, const char* keyword, const std::string& ptr) {
  if (!s.contains(keyword)) return -1;
  const Json& v = s[keyword];
  const bool integral =
      v.is_number_integer() || (v.is_number_float() && std::trunc(v.get<double>()) == v.get<double>());
  if (!integral || v.get<double>() < 0) {
    fail("'" + std::string(keyword) + "' must be a non-negative integer", ptr);
    return -1;
  }
  return v.get<double>() > 1e15 ? static_cast<int64_t>(1e15) : v.get<int64_t>();  // past any bound either way
}

bool SchemaCompiler::only_beside(const Json& s, std::initializer_list<const char*> allowed, const std::string& ptr) {
  for (const auto& [key, value] : s.items()) {
    if (kAnnotations.count(key) || std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    fail("'" + key + "' beside '" + *allowed.begin() + "' is not supported", ptr);
    return false;
  }
  return true;
}

std::string SchemaCompiler::ws() { return options_.compact ? "" : base_.use("ws"); }

std::string SchemaCompiler::sep(const char* token) {
  const std::string lit = gbnf_literal(token);
  return options_.compact ? lit : ws() + " " + lit + " " + ws();
}

std::string SchemaCompiler::fail(const std::string& what, const std::string& ptr) {
  if (ok()) error_ = what + " at " + pointer_text(ptr);
  return "";
}

}  // namespace ember::structured
