#include "models/chat/jinja_eval.h"

#include "models/chat/jinja_lexer.h"

namespace ember::jinja {

Interpreter::~Interpreter() {
  for (auto& ns : namespaces_) ns->items.clear();
}

void Interpreter::check_string(size_t bytes) const {
  if (bytes > limits_.max_output) throw JinjaError("string exceeds " + std::to_string(limits_.max_output) + " bytes");
}
void Interpreter::check_list(size_t elements) const {
  if (elements > limits_.max_list) throw JinjaError("list exceeds " + std::to_string(limits_.max_list) + " elements");
}
void Interpreter::count_work(int64_t n) {
  work_ += n;
  if (work_ > limits_.max_work)
    throw JinjaError("template copies more than " + std::to_string(limits_.max_work) +
                     " bytes and list elements (concatenation in a loop?)");
}
void Interpreter::count_iterations(int64_t n) {
  iterations_ += n;
  if (iterations_ > limits_.max_iterations)
    throw JinjaError("template exceeds " + std::to_string(limits_.max_iterations) + " loop iterations");
}
Value Interpreter::make_namespace(ValueDict attrs) {
  Value v = Value::make_namespace(std::move(attrs));
  namespaces_.push_back(v.dict);
  return v;
}

void Interpreter::fail_at(size_t offset, const std::string& what) const {
  throw JinjaError(line_col(src_, offset) + ": " + what);
}

void Interpreter::emit(const std::string& s) {
  if (out_.size() + s.size() > limits_.max_output)
    throw JinjaError("rendering exceeds " + std::to_string(limits_.max_output) + " bytes");
  out_ += s;
}

std::string Interpreter::render(const Body& body, std::unordered_map<std::string, Value> globals) {
  frames_.clear();
  frames_.push_back(std::move(globals));
  frames_.emplace_back();  // template scope
  out_.clear();
  exec_body(body);
  return std::move(out_);
}

Value Interpreter::lookup(const std::string& name) const {
  size_t floor = barriers_.empty() ? 0 : barriers_.back();
  for (size_t k = frames_.size(); k-- > floor;) {
    auto it = frames_[k].find(name);
    if (it != frames_[k].end()) return it->second;
  }
  for (size_t k = std::min<size_t>(2, floor); k-- > 0;) {  // a macro sees the template and globals
    auto it = frames_[k].find(name);
    if (it != frames_[k].end()) return it->second;
  }
  return Value::undefined("'" + name + "' is undefined");
}

Interpreter::Flow Interpreter::exec_body(const Body& body) {
  for (const StmtPtr& s : body) {
    Flow f = exec(*s);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

void Interpreter::assign(const std::vector<std::string>& targets, const Value& v, size_t offset) {
  if (targets.size() == 1) {
    frames_.back()[targets[0]] = v;
    return;
  }
  ValueList items = iterate(v);
  if (items.size() != targets.size())
    fail_at(offset, "cannot unpack " + std::to_string(items.size()) + " values into " +
                        std::to_string(targets.size()) + " names");
  for (size_t k = 0; k < targets.size(); ++k) frames_.back()[targets[k]] = items[k];
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  switch (s.kind) {
    case StmtKind::kText: emit(s.text); break;
    case StmtKind::kOutput: emit(to_str(eval(*s.expr))); break;
    case StmtKind::kIf: {
      for (const auto& [cond, body] : s.branches)
        if (truthy(eval(*cond))) return exec_body(body);
      return exec_body(s.else_body);
    }
    case StmtKind::kFor: exec_for(s); break;
    case StmtKind::kSet: {
      Value v = eval(*s.expr);
      if (s.attr.empty()) {
        assign(s.targets, v, s.offset);
      } else {
        Value ns = lookup(s.targets[0]);
        if (ns.kind != Kind::kNamespace) fail_at(s.offset, "cannot assign attribute on non-namespace object");
        if (!s.attr.empty() && s.attr[0] == '_')
          fail_at(s.offset, "cannot store underscore-prefixed attributes on a namespace");
        ns.dict->set(s.attr, std::move(v));
      }
      break;
    }
    case StmtKind::kSetBlock: {
      std::string saved = std::move(out_);
      out_.clear();
      exec_body(s.body);
      std::string captured = std::move(out_);
      out_ = std::move(saved);
      frames_.back()[s.targets[0]] = Value::string(std::move(captured));
      break;
    }
    case StmtKind::kMacro: {
      const Stmt* macro = &s;
      frames_.back()[s.text] = Value::function([this, macro](CallArgs& a) { return call_macro(*macro, a); });
      break;
    }
    case StmtKind::kBreak: return Flow::kBreak;
    case StmtKind::kContinue: return Flow::kContinue;
    case StmtKind::kBlock: return exec_body(s.body);
  }
  return Flow::kNormal;
}

void Interpreter::exec_for(const Stmt& s) {
  Value seq = eval(*s.expr);
  if (seq.kind == Kind::kNone || seq.is_number() || seq.kind == Kind::kFunction || seq.kind == Kind::kNamespace)
    fail_at(s.offset, "'" + type_name(seq) + "' object is not iterable");
  ValueList items = iterate(seq);
  frames_.emplace_back();
  if (s.cond) {  // `for x in xs if cond`: filtered before the loop, so loop.length counts kept items
    ValueList kept;
    for (const Value& item : items) {
      count_iterations(1);
      assign(s.targets, item, s.offset);
      if (truthy(eval(*s.cond))) kept.push_back(item);
    }
    items = std::move(kept);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t k = 0; k < n; ++k) {
    count_iterations(1);
    frames_.back().clear();
    assign(s.targets, items[static_cast<size_t>(k)], s.offset);
    ValueDict loop;
    loop.set("index", Value::integer(k + 1));
    loop.set("index0", Value::integer(k));
    loop.set("revindex", Value::integer(n - k));
    loop.set("revindex0", Value::integer(n - k - 1));
    loop.set("first", Value::boolean(k == 0));
    loop.set("last", Value::boolean(k == n - 1));
    loop.set("length", Value::integer(n));
    loop.set("previtem", k > 0 ? items[static_cast<size_t>(k - 1)] : Value::undefined("there is no previous item"));
    loop.set("nextitem", k + 1 < n ? items[static_cast<size_t>(k + 1)] : Value::undefined("there is no next item"));
    loop.set("cycle", Value::function([k](CallArgs& a) {
      if (a.args.empty()) throw JinjaError("no items for cycling given");
      return a.args[static_cast<size_t>(k) % a.args.size()];
    }));
    frames_.back()["loop"] = Value::make_dict(std::move(loop));
    if (exec_body(s.body) == Flow::kBreak) break;
  }
  frames_.pop_back();
  if (n == 0) exec_body(s.else_body);
}

Value Interpreter::call_macro(const Stmt& macro, CallArgs& args) {
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    fail_at(macro.offset, "macro calls nested too deeply");
  }
  if (args.args.size() > macro.params.size()) fail_at(macro.offset, "macro '" + macro.text + "' takes fewer arguments");
  barriers_.push_back(frames_.size());
  frames_.emplace_back();
  std::string saved = std::move(out_);
  out_.clear();
  struct Restore {  // leave the scopes as they were even when the body throws
    Interpreter& in;
    std::string& saved;
    ~Restore() {
      in.frames_.pop_back();
      in.barriers_.pop_back();
      in.out_ = std::move(saved);
      --in.call_depth_;
    }
  } restore{*this, saved};
  for (size_t k = 0; k < macro.params.size(); ++k) {
    const auto& [pname, def] = macro.params[k];
    const Value* v = args.get(k, pname);
    frames_.back()[pname] = v ? *v : def ? eval(*def) : Value::undefined("'" + pname + "' is undefined");
  }
  exec_body(macro.body);
  return Value::string(out_);
}

CallArgs Interpreter::eval_args(const Expr& e, size_t first) {
  CallArgs a;
  for (size_t k = first; k < e.children.size(); ++k) a.args.push_back(eval(*e.children[k]));
  for (const auto& [name, ex] : e.kwargs) a.kwargs.emplace_back(name, eval(*ex));
  return a;
}

Value Interpreter::eval_call(const Expr& e) {
  Value callee = eval(*e.children[0]);
  if (callee.is_undefined()) fail_undefined(callee);
  if (callee.kind != Kind::kFunction) fail_at(e.offset, "'" + type_name(callee) + "' object is not callable");
  CallArgs a = eval_args(e, 1);
  return (*callee.fn)(a);
}

Value Interpreter::eval_compare(const Expr& e) {
  Value left = eval(*e.children[0]);
  for (size_t k = 0; k < e.ops.size(); ++k) {
    Value right = eval(*e.children[k + 1]);
    if (!compare_op(e.ops[k], left, right)) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::eval(const Expr& e) {
  try {
    switch (e.kind) {
      case ExprKind::kLiteral: return e.literal;
      case ExprKind::kName: return lookup(e.name);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        ValueList items;
        for (const auto& c : e.children) items.push_back(eval(*c));
        return Value::make_list(std::move(items), e.kind == ExprKind::kTuple);
      }
      case ExprKind::kDict: {
        ValueDict d;
        for (size_t k = 0; k + 1 < e.children.size(); k += 2) {
          Value key = eval(*e.children[k]);
          if (!key.is_string()) fail_at(e.offset, "dict keys must be strings here");
          d.set(key.s, eval(*e.children[k + 1]));
        }
        return Value::make_dict(std::move(d));
      }
      case ExprKind::kGetAttr: return get_attr(*this, eval(*e.children[0]), e.name);
      case ExprKind::kGetItem: {
        Value obj = eval(*e.children[0]);
        return get_item(*this, obj, eval(*e.children[1]));
      }
      case ExprKind::kSlice: {
        Value obj = eval(*e.children[0]);
        CallArgs a;
        for (size_t k = 1; k < 4; ++k)
          a.args.push_back(e.children[k] ? eval(*e.children[k]) : Value::none());
        return apply_filter(*this, "__slice__", obj, a);
      }
      case ExprKind::kCall: return eval_call(e);
      case ExprKind::kFilter: {
        Value v = eval(*e.children[0]);
        CallArgs a = eval_args(e, 1);
        return apply_filter(*this, e.name, v, a);
      }
      case ExprKind::kTest: {
        Value v = eval(*e.children[0]);
        CallArgs a = eval_args(e, 1);
        return Value::boolean(apply_test(*this, e.name, v, a) != e.negated);
      }
      case ExprKind::kUnary: {
        Value v = eval(*e.children[0]);
        if (e.name == "not") return Value::boolean(!truthy(v));
        if (v.kind == Kind::kFloat) return Value::number(e.name == "-" ? -v.f : v.f);
        return binary_op(*this, e.name == "-" ? "-" : "+", Value::integer(0), v);
      }
      case ExprKind::kBinary: {
        Value l = eval(*e.children[0]);
        return binary_op(*this, e.name, l, eval(*e.children[1]));
      }
      case ExprKind::kAnd: {
        Value l = eval(*e.children[0]);
        return truthy(l) ? eval(*e.children[1]) : l;
      }
      case ExprKind::kOr: {
        Value l = eval(*e.children[0]);
        return truthy(l) ? l : eval(*e.children[1]);
      }
      case ExprKind::kCompare: return eval_compare(e);
      case ExprKind::kCondExpr:
        if (truthy(eval(*e.children[1]))) return eval(*e.children[0]);
        return e.children[2] ? eval(*e.children[2]) : Value::undefined("the inline if-expression had no else");
    }
  } catch (const RaisedError&) {
    throw;
  } catch (const JinjaError& err) {
    // Attach the innermost position once: messages that already carry one pass through.
    std::string what = err.what();
    if (what.rfind("line ", 0) == 0) throw;
    fail_at(e.offset, what);
  }
  return Value::undefined();
}

}  // namespace ember::jinja
