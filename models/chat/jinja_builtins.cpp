// Operators, attribute/item access and Python methods of chat-template values.
// Filters and tests are in jinja_filters.cpp.
#include <cmath>

#include "models/chat/jinja_eval.h"

namespace ember::jinja {

void fail_undefined(const Value& v) { throw JinjaError(v.s.empty() ? "value is undefined" : v.s); }

ValueList iterate(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined: return {};
    case Kind::kList: return *v.list;
    case Kind::kDict: {
      ValueList keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Kind::kString: {
      ValueList chars;
      for (char32_t c : utf8_decode(v.s)) chars.push_back(Value::string(utf8_encode(std::u32string(1, c))));
      return chars;
    }
    default: throw JinjaError("'" + type_name(v) + "' object is not iterable");
  }
}

namespace {

std::string object_repr(const Value& v) {
  if (v.is_none()) return "'None'";
  std::string out = "'";  // appended, not `"'" + ...`: GCC 12 -Wrestrict false positive
  out += type_name(v);
  out += " object'";
  return out;
}

int64_t to_int(const Value& v) { return v.kind == Kind::kBool ? v.b : v.i; }

template <class Op>
Value checked(Op op, int64_t p, int64_t q) {
  int64_t r = 0;
  if (op(p, q, &r)) throw JinjaError("integer overflow");
  return Value::integer(r);
}

// Python's str methods; nullptr when `name` is not one.
Value string_method(Interpreter& in, const std::string& s, const std::string& name, CallArgs& a) {
  auto str_arg = [&](size_t k, const char* n) -> const std::string* {
    const Value* v = a.get(k, n);
    if (!v || v->is_none()) return nullptr;
    if (!v->is_string()) throw JinjaError(name + "() argument must be str");
    return &v->s;
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return Value::string(py_strip(s, str_arg(0, "chars"), name != "rstrip", name != "lstrip"));
  if (name == "upper") return Value::string(py_upper(s));
  if (name == "lower") return Value::string(py_lower(s));
  if (name == "startswith" || name == "endswith") {
    const Value* p = a.get(0, "prefix");
    if (!p) throw JinjaError(name + "() takes at least 1 argument");
    ValueList options = p->is_list() ? *p->list : ValueList{*p};
    for (const Value& o : options) {
      if (!o.is_string()) throw JinjaError(name + " first arg must be str or a tuple of str");
      bool hit = name == "startswith" ? s.compare(0, o.s.size(), o.s) == 0
                                      : s.size() >= o.s.size() && s.compare(s.size() - o.s.size(), o.s.size(), o.s) == 0;
      if (hit) return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (name == "split" || name == "rsplit") {
    const std::string* sep = str_arg(0, "sep");
    const Value* m = a.get(1, "maxsplit");
    int64_t maxsplit = m && m->kind == Kind::kInt ? m->i : -1;
    ValueList parts;
    if (sep) {
      if (sep->empty()) throw JinjaError("empty separator");
      size_t start = 0, hit;
      while ((maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) &&
             (hit = s.find(*sep, start)) != std::string::npos) {
        parts.push_back(Value::string(s.substr(start, hit - start)));
        start = hit + sep->size();
      }
      parts.push_back(Value::string(s.substr(start)));
    } else {
      std::u32string u = utf8_decode(s);
      size_t k = 0;
      while (true) {
        while (k < u.size() && py_isspace(u[k])) ++k;
        if (k >= u.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
          size_t e = u.size();
          while (e > k && py_isspace(u[e - 1])) --e;
          parts.push_back(Value::string(utf8_encode(u.substr(k, e - k))));
          break;
        }
        size_t b = k;
        while (k < u.size() && !py_isspace(u[k])) ++k;
        parts.push_back(Value::string(utf8_encode(u.substr(b, k - b))));
      }
    }
    in.count_iterations(static_cast<int64_t>(parts.size()));
    return Value::make_list(std::move(parts));
  }
  if (name == "replace" || name == "title" || name == "capitalize") {
    CallArgs fa = a;
    return apply_filter(in, name, Value::string(s), fa);
  }
  if (name == "find") {
    const std::string* sub = str_arg(0, "sub");
    if (!sub) throw JinjaError("find() takes at least 1 argument");
    size_t hit = s.find(*sub);
    return Value::integer(hit == std::string::npos ? -1 : static_cast<int64_t>(utf8_length(s.substr(0, hit))));
  }
  if (name == "count") {
    const std::string* sub = str_arg(0, "sub");
    if (!sub) throw JinjaError("count() takes at least 1 argument");
    if (sub->empty()) return Value::integer(static_cast<int64_t>(utf8_length(s) + 1));
    int64_t n = 0;
    for (size_t p = s.find(*sub); p != std::string::npos; p = s.find(*sub, p + sub->size())) ++n;
    return Value::integer(n);
  }
  if (name == "join") {
    const Value* items = a.get(0, "iterable");
    if (!items) throw JinjaError("join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const Value& v : iterate(*items)) {
      if (!v.is_string()) throw JinjaError("sequence item: expected str instance, " + type_name(v) + " found");
      if (!first) out += s;
      first = false;
      out += v.s;
      in.check_string(out.size());
    }
    return Value::string(out);
  }
  throw JinjaError("'str object' has no attribute '" + name + "'");
}

Value dict_method(const Value& d, const std::string& name, CallArgs& a) {
  if (name == "items") {
    ValueList out;
    for (const auto& [k, v] : d.dict->items) out.push_back(Value::make_list({Value::string(k), v}, true));
    return Value::make_list(std::move(out));
  }
  if (name == "keys") return Value::make_list(iterate(d));
  if (name == "values") {
    ValueList out;
    for (const auto& kv : d.dict->items) out.push_back(kv.second);
    return Value::make_list(std::move(out));
  }
  if (name == "get") {
    const Value* key = a.get(0, "key");
    if (!key) throw JinjaError("get expected at least 1 argument");
    const Value* def = a.get(1, "default");
    const Value* hit = key->is_string() ? d.dict->find(key->s) : nullptr;
    return hit ? *hit : def ? *def : Value::none();
  }
  throw JinjaError("'dict object' has no attribute '" + name + "'");
}

bool is_dict_method(const std::string& n) { return n == "items" || n == "keys" || n == "values" || n == "get"; }

bool is_string_method(const std::string& n) {
  static const char* names[] = {"strip", "lstrip",  "rstrip", "upper", "lower",      "startswith", "endswith",
                                "split", "rsplit",  "replace", "title", "capitalize", "find",       "count", "join"};
  for (const char* m : names)
    if (n == m) return true;
  return false;
}

// Python-style index into a sequence of `n` items; -1 when out of range.
int64_t py_index(int64_t i, size_t n) {
  if (i < 0) i += static_cast<int64_t>(n);
  return i < 0 || i >= static_cast<int64_t>(n) ? -1 : i;
}

}  // namespace

Value get_attr(Interpreter& in, const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_dict() && is_dict_method(name)) {
    Value self = obj;
    return Value::function([self, name](CallArgs& a) { return dict_method(self, name, a); });
  }
  if (obj.is_string() && is_string_method(name)) {
    Interpreter* ip = &in;
    std::string s = obj.s;
    return Value::function([ip, s, name](CallArgs& a) { return string_method(*ip, s, name, a); });
  }
  if (obj.is_dict() || obj.kind == Kind::kNamespace) {
    if (const Value* v = obj.dict->find(name)) return *v;
  }
  if (obj.is_list() && (name == "append" || name == "pop" || name == "extend" || name == "insert" ||
                        name == "remove" || name == "clear" || name == "sort" || name == "reverse"))
    return Value::undefined("access to attribute '" + name + "' of 'list' object is unsafe.");
  return Value::undefined(object_repr(obj) + " has no attribute '" + name + "'");
}

Value get_item(Interpreter& in, const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (key.kind == Kind::kInt || key.kind == Kind::kBool) {
    if (obj.is_list()) {
      int64_t k = py_index(to_int(key), obj.list->size());
      if (k >= 0) return (*obj.list)[static_cast<size_t>(k)];
    } else if (obj.is_string()) {
      std::u32string u = utf8_decode(obj.s);
      int64_t k = py_index(to_int(key), u.size());
      if (k >= 0) return Value::string(utf8_encode(u.substr(static_cast<size_t>(k), 1)));
    }
    return Value::undefined(object_repr(obj) + " has no element " + std::to_string(to_int(key)));
  }
  if (key.is_string()) {
    if (obj.is_dict())
      if (const Value* v = obj.dict->find(key.s)) return *v;
    return get_attr(in, obj, key.s);
  }
  return Value::undefined(object_repr(obj) + " has no element " + repr(key));
}

bool compare_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  if (op == "in" || op == "not in") {
    bool hit = false;
    if (b.is_string()) {
      if (!a.is_string()) throw JinjaError("'in <string>' requires string as left operand, not " + type_name(a));
      hit = b.s.find(a.s) != std::string::npos;
    } else if (b.is_list()) {
      for (const Value& v : *b.list)
        if (equals(a, v)) hit = true;
    } else if (b.is_dict()) {
      hit = a.is_string() && b.dict->find(a.s) != nullptr;
    } else if (!b.is_undefined()) {
      throw JinjaError("argument of type '" + type_name(b) + "' is not iterable");
    }
    return op == "in" ? hit : !hit;
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  int c;
  if (a.is_number() && b.is_number()) {
    double x = a.as_double(), y = b.as_double();
    if (a.kind != Kind::kFloat && b.kind != Kind::kFloat) {
      int64_t p = to_int(a), q = to_int(b);
      c = p < q ? -1 : p > q ? 1 : 0;
    } else {
      if (std::isnan(x) || std::isnan(y)) return false;
      c = x < y ? -1 : x > y ? 1 : 0;
    }
  } else if (a.is_string() && b.is_string()) {
    c = a.s.compare(b.s);  // UTF-8 byte order is code-point order
  } else {
    throw JinjaError("'" + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
  }
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = to_str(a);
    std::string t = to_str(b);
    in.check_string(s.size() + t.size());
    in.count_work(static_cast<int64_t>(s.size() + t.size()));
    return Value::string(s + t);
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  auto type_error = [&]() -> Value {
    throw JinjaError("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
  };
  if (a.is_number() && b.is_number()) {
    bool ints = a.kind != Kind::kFloat && b.kind != Kind::kFloat;
    int64_t p = to_int(a), q = to_int(b);
    double x = a.as_double(), y = b.as_double();
    if (op == "+") return ints ? checked([](int64_t x, int64_t y, int64_t* r) { return __builtin_add_overflow(x, y, r); }, p, q) : Value::number(x + y);
    if (op == "-") return ints ? checked([](int64_t x, int64_t y, int64_t* r) { return __builtin_sub_overflow(x, y, r); }, p, q) : Value::number(x - y);
    if (op == "*") return ints ? checked([](int64_t x, int64_t y, int64_t* r) { return __builtin_mul_overflow(x, y, r); }, p, q) : Value::number(x * y);
    if (op == "/") {
      if (y == 0) throw JinjaError("division by zero");
      return Value::number(x / y);
    }
    if (op == "//" || op == "%") {
      if (y == 0) throw JinjaError(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
      if (ints) {
        if (p == INT64_MIN && q == -1) throw JinjaError("integer overflow");
        int64_t d = p / q, m = p % q;
        if (m != 0 && ((m < 0) != (q < 0))) {
          --d;
          m += q;
        }
        return Value::integer(op == "//" ? d : m);
      }
      double d = std::floor(x / y);
      return Value::number(op == "//" ? d : x - d * y);
    }
    if (op == "**") {
      if (ints && q >= 0) {
        int64_t acc = 1;
        for (int64_t k = 0; k < q; ++k) {
          if (__builtin_mul_overflow(acc, p, &acc)) throw JinjaError("integer overflow");
          if (acc == 0 || acc == 1) break;
          if (acc == -1) {
            acc = ((q - k - 1) % 2 == 0) ? -1 : 1;
            break;
          }
        }
        return Value::integer(acc);
      }
      return Value::number(std::pow(x, y));
    }
    return type_error();
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      in.check_string(a.s.size() + b.s.size());
      in.count_work(static_cast<int64_t>(a.s.size() + b.s.size()));
      return Value::string(a.s + b.s);
    }
    if (a.is_list() && b.is_list() && a.tuple == b.tuple) {
      in.check_list(a.list->size() + b.list->size());
      in.count_work(static_cast<int64_t>(a.list->size() + b.list->size()));
      ValueList out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(out), a.tuple);
    }
    if (a.is_string() || b.is_string())
      throw JinjaError("can only concatenate str (not \"" + type_name(a.is_string() ? b : a) + "\") to str");
    return type_error();
  }
  if (op == "*" && (a.is_string() || a.is_list() || b.is_string() || b.is_list())) {
    const Value& seq = a.is_number() ? b : a;
    const Value& times = a.is_number() ? a : b;
    if (times.kind != Kind::kInt && times.kind != Kind::kBool) return type_error();
    int64_t n = std::max<int64_t>(0, to_int(times));
    if (seq.is_string()) {
      in.check_string(seq.s.empty() ? 0 : static_cast<size_t>(std::min<int64_t>(n, INT32_MAX)) * seq.s.size());
      in.count_work(seq.s.empty() ? 0 : std::min<int64_t>(n, INT32_MAX) * static_cast<int64_t>(seq.s.size()));
      std::string out;
      for (int64_t k = 0; k < n && !seq.s.empty(); ++k) out += seq.s;
      return Value::string(out);
    }
    in.check_list(seq.list->empty() ? 0 : static_cast<size_t>(std::min<int64_t>(n, INT32_MAX)) * seq.list->size());
    in.count_work(seq.list->empty() ? 0 : std::min<int64_t>(n, INT32_MAX) * static_cast<int64_t>(seq.list->size()));
    ValueList out;
    for (int64_t k = 0; k < n && !seq.list->empty(); ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
    return Value::make_list(std::move(out), seq.tuple);
  }
  return type_error();
}

}  // namespace ember::jinja
