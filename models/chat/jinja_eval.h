#pragma once
// Tree-walking evaluator for chat templates, with jinja2's runtime semantics:
// default Undefined (printing an undefined value gives "", using it in arithmetic,
// attribute access or a call is an error), for-loop scoping (a `set` inside a loop
// does not leak out; namespace() attributes do), loop.* variables, macros, and
// break/continue (the loopcontrols extension). Hostile templates are bounded: total
// loop iterations, string and list sizes, output size and macro call depth.

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/chat/jinja_ast.h"
#include "models/chat/jinja_value.h"

namespace ember::jinja {

struct Limits {
  size_t max_output = size_t{1} << 20;      // bytes of the rendering, and of any one string
  size_t max_list = size_t{1} << 20;        // elements of any one list
  int64_t max_iterations = int64_t{1} << 20;  // loop iterations (and filter steps) in total
  // Bytes and elements copied by concatenation and repetition, in total: a
  // loop that appends to a growing list or string does quadratic work under
  // the iteration cap, which this bounds.
  int64_t max_work = int64_t{1} << 26;
  int max_call_depth = 50;                  // nested macro calls
};

class Interpreter {
 public:
  Interpreter(const std::string& src, const Limits& limits) : src_(src), limits_(limits) {}
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `globals` as the outermost scope. Throws JinjaError.
  std::string render(const Body& body, std::unordered_map<std::string, Value> globals);

  // Used by the builtins (jinja_builtins.cpp).
  const Limits& limits() const { return limits_; }
  void check_string(size_t bytes) const;
  void check_list(size_t elements) const;
  void count_iterations(int64_t n);
  // Charges n bytes or elements copied against max_work.
  void count_work(int64_t n);
  Value make_namespace(ValueDict attrs);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Frame = std::unordered_map<std::string, Value>;

  Flow exec_body(const Body& body);
  Flow exec(const Stmt& s);
  void exec_for(const Stmt& s);
  void assign(const std::vector<std::string>& targets, const Value& v, size_t offset);
  Value call_macro(const Stmt& macro, CallArgs& args);
  Value eval(const Expr& e);
  Value eval_call(const Expr& e);
  Value eval_compare(const Expr& e);
  CallArgs eval_args(const Expr& e, size_t first);
  Value lookup(const std::string& name) const;
  void emit(const std::string& s);
  [[noreturn]] void fail_at(size_t offset, const std::string& what) const;

  const std::string& src_;
  Limits limits_;
  std::vector<Frame> frames_;
  std::vector<size_t> barriers_;  // frames below a macro call's frame that it cannot see
  std::string out_;
  int64_t iterations_ = 0;
  int64_t work_ = 0;
  int call_depth_ = 0;
  std::vector<std::shared_ptr<ValueDict>> namespaces_;  // cleared at the end: breaks cycles
};

// Builtins (jinja_builtins.cpp). Each throws JinjaError on misuse.
Value apply_filter(Interpreter& in, const std::string& name, const Value& v, CallArgs& a);
bool apply_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& a);
Value get_attr(Interpreter& in, const Value& obj, const std::string& name);
Value get_item(Interpreter& in, const Value& obj, const Value& key);
Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b);
bool compare_op(const std::string& op, const Value& a, const Value& b);
// Iteration as Python does it: list items, dict keys, string characters; Undefined is empty.
ValueList iterate(const Value& v);
// Raises the error an Undefined value carries.
[[noreturn]] void fail_undefined(const Value& v);

}  // namespace ember::jinja
