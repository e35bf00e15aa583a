// jinja2's builtin filters and tests that chat templates use, with transformers'
// tojson (json.dumps with ensure_ascii=False, no HTML escaping).
#include <algorithm>
#include <cmath>

#include "models/chat/jinja_eval.h"

namespace ember::jinja {

namespace {

const Value* arg(CallArgs& a, size_t k, const char* name) { return a.get(k, name); }

std::string str_arg(CallArgs& a, size_t k, const char* name, std::string def) {
  const Value* v = arg(a, k, name);
  return v ? to_str(*v) : def;
}

Value slice(Interpreter& in, const Value& v, CallArgs& a) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_list() && !v.is_string()) return Value::undefined("'" + type_name(v) + "' object is not subscriptable");
  std::u32string u;
  size_t n = v.is_list() ? v.list->size() : (u = utf8_decode(v.s)).size();
  auto get = [&](size_t k, int64_t def) {
    const Value& x = a.args[k];
    if (x.is_none()) return def;
    if (x.kind != Kind::kInt && x.kind != Kind::kBool) throw JinjaError("slice indices must be integers or None");
    return x.kind == Kind::kBool ? int64_t{x.b} : x.i;
  };
  int64_t step = get(2, 1);
  if (step == 0) throw JinjaError("slice step cannot be zero");
  const int64_t len = static_cast<int64_t>(n);
  auto clamp = [&](int64_t i, int64_t lo, int64_t hi) {
    if (i < 0) i += len;
    return std::clamp(i, lo, hi);
  };
  int64_t start = step > 0 ? clamp(get(0, 0), 0, len) : clamp(get(0, len - 1), -1, len - 1);
  int64_t stop = step > 0 ? clamp(get(1, len), 0, len) : clamp(get(1, -len - 1), -1, len - 1);
  ValueList items;
  std::u32string chars;
  for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
    if (v.is_list()) items.push_back((*v.list)[static_cast<size_t>(k)]);
    else chars += u[static_cast<size_t>(k)];
  }
  in.count_iterations(static_cast<int64_t>(items.size() + chars.size()) / 64);
  return v.is_list() ? Value::make_list(std::move(items), v.tuple) : Value::string(utf8_encode(chars));
}

Value tojson(const Value& v, CallArgs& a) {
  // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  if (const Value* ea = arg(a, 0, "ensure_ascii"); ea && truthy(*ea))
    throw JinjaError("tojson: ensure_ascii=True is not supported");
  const Value* ind = arg(a, 1, "indent");
  int indent = -1;
  if (ind && !ind->is_none()) {
    if (ind->kind != Kind::kInt || ind->i < 0 || ind->i > 64) throw JinjaError("tojson: indent must be 0..64");
    indent = static_cast<int>(ind->i);
  }
  std::string item_sep = indent >= 0 ? "," : ", ", key_sep = ": ";
  if (const Value* sep = a.get(2, "separators"); sep && !sep->is_none()) {
    if (!sep->is_list() || sep->list->size() != 2 || !(*sep->list)[0].is_string() || !(*sep->list)[1].is_string())
      throw JinjaError("tojson: separators must be a pair of strings");
    item_sep = (*sep->list)[0].s;
    key_sep = (*sep->list)[1].s;
  }
  const Value* sk = a.get(3, "sort_keys");
  return Value::string(to_json(v, indent, sk && truthy(*sk), item_sep, key_sep));
}

std::string replace_all(Interpreter& in, const std::string& s, const std::string& old, const std::string& rep,
                        int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    std::u32string u = utf8_decode(s);
    for (size_t k = 0; k <= u.size(); ++k) {
      if (count < 0 || done < count) {
        out += rep;
        ++done;
      }
      if (k < u.size()) out += utf8_encode(u.substr(k, 1));
      in.check_string(out.size());
    }
    return out;
  }
  size_t pos = 0, hit;
  while ((count < 0 || done < count) && (hit = s.find(old, pos)) != std::string::npos) {
    out += s.substr(pos, hit - pos) + rep;
    in.check_string(out.size());
    pos = hit + old.size();
    ++done;
  }
  return out + s.substr(pos);
}

std::string capitalize(const std::string& s) {
  std::u32string u = utf8_decode(s);
  if (u.empty()) return s;
  return py_upper(utf8_encode(u.substr(0, 1))) + py_lower(utf8_encode(u.substr(1)));
}

// jinja2's title filter: words start after whitespace or one of -({[<.
std::string title(const std::string& s) {
  std::u32string u = utf8_decode(s);
  std::string out;
  bool start = true;
  for (char32_t c : u) {
    std::string ch = utf8_encode(std::u32string(1, c));
    bool boundary = py_isspace(c) || c == U'-' || c == U'(' || c == U'{' || c == U'[' || c == U'<';
    out += boundary ? ch : start ? py_upper(ch) : py_lower(ch);
    start = boundary;
  }
  return out;
}

// select/reject/selectattr/rejectattr: args after the attribute are a test name and its arguments.
Value select(Interpreter& in, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  size_t k = 0;
  std::string attr;
  if (by_attr) {
    if (a.args.empty() || !a.args[0].is_string()) throw JinjaError("selectattr: missing attribute name");
    attr = a.args[k++].s;
  }
  std::string test = k < a.args.size() ? to_str(a.args[k++]) : "";
  CallArgs targs;
  targs.args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(std::min(k, a.args.size())), a.args.end());
  ValueList out;
  for (const Value& item : iterate(v)) {
    in.count_iterations(1);
    Value subject = by_attr ? get_item(in, item, Value::string(attr)) : item;
    CallArgs ta = targs;
    bool ok = test.empty() ? truthy(subject) : apply_test(in, test, subject, ta);
    if (ok == keep) out.push_back(item);
  }
  return Value::make_list(std::move(out));
}

Value map(Interpreter& in, const Value& v, CallArgs& a) {
  ValueList out;
  const Value* attr = a.get(99, "attribute");
  for (const Value& item : iterate(v)) {
    in.count_iterations(1);
    if (attr) {
      Value x = get_item(in, item, *attr);
      const Value* def = a.get(99, "default");
      out.push_back(x.is_undefined() && def ? *def : x);
    } else {
      if (a.args.empty()) throw JinjaError("map: missing filter name");
      CallArgs fa;
      fa.args.assign(a.args.begin() + 1, a.args.end());
      fa.kwargs = a.kwargs;
      out.push_back(apply_filter(in, to_str(a.args[0]), item, fa));
    }
  }
  return Value::make_list(std::move(out));
}

int64_t length(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined: return 0;
    case Kind::kString: return static_cast<int64_t>(utf8_length(v.s));
    case Kind::kList: return static_cast<int64_t>(v.list->size());
    case Kind::kDict: return static_cast<int64_t>(v.dict->items.size());
    default: throw JinjaError("object of type '" + type_name(v) + "' has no len()");
  }
}

}  // namespace

Value apply_filter(Interpreter& in, const std::string& name, const Value& v, CallArgs& a) {
  if (name == "__slice__") return slice(in, v, a);
  if (name == "trim") {
    const Value* chars = arg(a, 0, "chars");
    std::string cs = chars && !chars->is_none() ? to_str(*chars) : "";
    return Value::string(py_strip(to_str(v), chars && !chars->is_none() ? &cs : nullptr, true, true));
  }
  if (name == "length" || name == "count") return Value::integer(length(v));
  if (name == "upper") return Value::string(py_upper(to_str(v)));
  if (name == "lower") return Value::string(py_lower(to_str(v)));
  if (name == "capitalize") return Value::string(capitalize(to_str(v)));
  if (name == "title") return Value::string(title(to_str(v)));
  if (name == "string" || name == "safe") return v.is_string() ? v : Value::string(to_str(v));
  if (name == "tojson") {
    std::string s = tojson(v, a).s;
    in.check_string(s.size());
    return Value::string(std::move(s));
  }
  if (name == "default" || name == "d") {
    const Value* b = arg(a, 1, "boolean");
    bool use_default = v.is_undefined() || (b && truthy(*b) && !truthy(v));
    if (!use_default) return v;
    const Value* def = arg(a, 0, "default_value");
    return def ? *def : Value::string("");
  }
  if (name == "first" || name == "last") {
    ValueList items = iterate(v);
    if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    std::string sep = str_arg(a, 0, "d", "");
    const Value* attr = arg(a, 1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v)) {
      in.count_iterations(1);
      if (!first) out += sep;
      first = false;
      out += to_str(attr ? get_item(in, item, *attr) : item);
      in.check_string(out.size());
    }
    return Value::string(out);
  }
  if (name == "replace") {
    const Value* c = arg(a, 2, "count");
    if (a.args.size() < 2) throw JinjaError("replace() needs old and new");
    return Value::string(replace_all(in, to_str(v), to_str(a.args[0]), to_str(a.args[1]),
                                     c && c->kind == Kind::kInt ? c->i : -1));
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::make_list({});
    if (!v.is_dict()) throw JinjaError("Can only get item pairs from a mapping.");
    ValueList out;
    for (const auto& [k, x] : v.dict->items) out.push_back(Value::make_list({Value::string(k), x}, true));
    return Value::make_list(std::move(out));
  }
  if (name == "list") return Value::make_list(iterate(v));
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = utf8_decode(v.s);
      std::reverse(u.begin(), u.end());
      return Value::string(utf8_encode(u));
    }
    ValueList items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::make_list(std::move(items));
  }
  if (name == "select" || name == "reject") return select(in, v, a, false, name == "select");
  if (name == "selectattr" || name == "rejectattr") return select(in, v, a, true, name == "selectattr");
  if (name == "map") return map(in, v, a);
  if (name == "unique") {
    ValueList out;
    for (const Value& item : iterate(v)) {
      in.count_iterations(static_cast<int64_t>(out.size()) / 64 + 1);
      if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return equals(o, item); })) out.push_back(item);
    }
    return Value::make_list(std::move(out));
  }
  if (name == "int" || name == "float") {
    const Value* def = arg(a, 0, "default");
    Value fallback = def ? *def : name == "int" ? Value::integer(0) : Value::number(0.0);
    double d;
    if (v.is_number()) d = v.as_double();
    else if (v.is_string()) {
      try {
        size_t used = 0;
        std::string t = py_strip(v.s, nullptr, true, true);
        d = std::stod(t, &used);
        if (used != t.size()) return fallback;
      } catch (const std::exception&) {
        return fallback;
      }
    } else {
      return fallback;
    }
    if (name == "float") return Value::number(d);
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return fallback;
    return v.kind == Kind::kInt ? v : Value::integer(static_cast<int64_t>(d));
  }
  if (name == "abs") {
    if (v.kind == Kind::kFloat) return Value::number(std::fabs(v.f));
    if (v.kind == Kind::kInt && v.i != INT64_MIN) return Value::integer(v.i < 0 ? -v.i : v.i);
    if (v.kind == Kind::kBool) return Value::integer(v.b);
    throw JinjaError("bad operand type for abs(): '" + type_name(v) + "'");
  }
  if (name == "e" || name == "escape") {
    std::string out;
    for (char c : to_str(v)) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    in.check_string(out.size());
    return Value::string(out);
  }
  throw JinjaError("No filter named '" + name + "'.");
}

bool apply_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& a) {
  (void)in;
  auto other = [&]() -> const Value& {
    if (a.args.empty()) throw JinjaError("test '" + name + "' needs an argument");
    return a.args[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind == Kind::kBool;
  if (name == "true") return v.kind == Kind::kBool && v.b;
  if (name == "false") return v.kind == Kind::kBool && !v.b;
  if (name == "integer") return v.kind == Kind::kInt;
  if (name == "float") return v.kind == Kind::kFloat;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (name == "sequence") return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (name == "callable") return v.kind == Kind::kFunction;
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return equals(v, other());
  if (name == "ne" || name == "!=") return !equals(v, other());
  if (name == "lt" || name == "lessthan" || name == "<") return compare_op("<", v, other());
  if (name == "le" || name == "<=") return compare_op("<=", v, other());
  if (name == "gt" || name == "greaterthan" || name == ">") return compare_op(">", v, other());
  if (name == "ge" || name == ">=") return compare_op(">=", v, other());
  if (name == "in") return compare_op("in", v, other());
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (v.kind != Kind::kInt) throw JinjaError("test '" + name + "' needs an integer");
    if (name == "divisibleby") {
      const Value& d = other();
      if (d.kind != Kind::kInt || d.i == 0) throw JinjaError("divisibleby needs a non-zero integer");
      return d.i == -1 || v.i % d.i == 0;
    }
    return (v.i % 2 != 0) == (name == "odd");
  }
  if (name == "lower") return v.is_string() && py_lower(v.s) == v.s;
  if (name == "upper") return v.is_string() && py_upper(v.s) == v.s;
  throw JinjaError("No test named '" + name + "'.");
}

}  // namespace ember::jinja
