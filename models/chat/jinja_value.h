#pragma once
// Values of the chat-template interpreter (models/chat/chat_template.h), with Python's
// semantics where a template can observe them: str() / repr() of lists, dicts,
// floats and booleans, json.dumps for tojson, == between int/float/bool, truthiness,
// and code-point (not byte) lengths and indices of strings.
// Internal to the interpreter: errors inside it are thrown as JinjaError and turned
// into an Error at ChatTemplate's API.

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::jinja {

// Any template error (syntax, undefined misuse, type error, limit, raise_exception).
class JinjaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// raise_exception() from the template: its message is passed on verbatim.
class RaisedError : public JinjaError {
 public:
  using JinjaError::JinjaError;
};

struct Value;
struct CallArgs;
using ValueList = std::vector<Value>;
using Function = std::function<Value(CallArgs&)>;

// Insertion-ordered string-keyed map: Python dicts keep order, and tojson/items show it.
struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

// Deepest list/dict nesting a value may have (make_list/make_dict throw past it).
constexpr int kMaxValueDepth = 100;

enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kFunction };

struct Value {
  Kind kind = Kind::kUndefined;
  bool b = false;
  bool tuple = false;  // a list that Python would hold as a tuple: str() uses ( )
  int depth = 0;       // nesting of lists/dicts, bounded so recursion over values is bounded
  int64_t i = 0;
  double f = 0.0;
  std::string s;  // string payload; for kUndefined the hint used in error messages
  std::shared_ptr<ValueList> list;
  std::shared_ptr<ValueDict> dict;  // also a namespace's attributes (shared, mutable)
  std::shared_ptr<Function> fn;

  static Value undefined(std::string hint = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value string(std::string v);
  static Value make_list(ValueList v, bool is_tuple = false);
  static Value make_dict(ValueDict v);
  static Value make_namespace(ValueDict v);
  static Value function(Function f);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_list() const { return kind == Kind::kList; }
  bool is_dict() const { return kind == Kind::kDict; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool; }
  double as_double() const { return kind == Kind::kFloat ? f : static_cast<double>(kind == Kind::kBool ? b : i); }
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  // Positional argument `pos`, else keyword `name`, else nullptr.
  const Value* get(size_t pos, std::string_view name) const;
};

// Python's type name ("str", "dict", "NoneType"...), used in error messages.
std::string type_name(const Value& v);
bool truthy(const Value& v);
bool equals(const Value& a, const Value& b);
// str(v) as Python prints it (Undefined prints as "").
std::string to_str(const Value& v);
std::string repr(const Value& v);
std::string float_repr(double d);
// json.dumps(v, ensure_ascii=False, indent=indent (<0: none), sort_keys=...).
std::string to_json(const Value& v, int indent, bool sort_keys, const std::string& item_sep,
                    const std::string& key_sep);

// UTF-8 <-> code points (invalid bytes become U+FFFD, like a lenient decode).
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
size_t utf8_length(std::string_view s);
// Python's str.isspace() for one code point.
bool py_isspace(char32_t c);
// Python str.strip/lstrip/rstrip; chars==nullptr strips whitespace.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);
std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);

}  // namespace ember::jinja
