#include "models/chat/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

namespace ember::jinja {

namespace {

// Deep enough for any real template; shallow enough for an ASan build's stack.
constexpr int kMaxDepth = 100;

class Parser {
 public:
  Parser(const std::string& src, const std::vector<Token>& toks) : src_(src), toks_(toks) {}

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, &end);
    return body;
  }

 private:
  const std::string& src_;
  const std::vector<Token>& toks_;
  size_t p_ = 0;
  int depth_ = 0;

  struct DepthGuard {
    Parser& ps;
    explicit DepthGuard(Parser& p) : ps(p) {
      if (++ps.depth_ > kMaxDepth) ps.fail("template nested too deeply");
    }
    ~DepthGuard() { --ps.depth_; }
  };

  const Token& cur() const { return toks_[p_]; }
  const Token& peek(size_t n = 1) const { return toks_[std::min(p_ + n, toks_.size() - 1)]; }
  void advance() {
    if (p_ + 1 < toks_.size()) ++p_;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw JinjaError(line_col(src_, cur().offset) + ": " + what);
  }
  bool is_op(const char* op) const { return cur().kind == Tok::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == Tok::kName && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    advance();
    return true;
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected '") + op + "'");
  }
  std::string expect_name() {
    if (cur().kind != Tok::kName) fail("expected a name");
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().kind != Tok::kBlockEnd) fail("expected end of statement block");
    advance();
  }

  ExprPtr node(ExprKind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->offset = cur().offset;
    return e;
  }

  // ---- statements ----------------------------------------------------------------

  // Parses until a block tag named in `ends` (consumed up to its name, which goes in *end).
  Body parse_body(std::initializer_list<const char*> ends, std::string* end) {
    DepthGuard g(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == Tok::kEof) {
        if (ends.size() != 0) fail(std::string("unexpected end of template, expected '") + *ends.begin() + "'");
        return body;
      }
      if (t.kind == Tok::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->offset = t.offset;
        s->text = t.text;
        body.push_back(std::move(s));
        advance();
      } else if (t.kind == Tok::kVarBegin) {
        advance();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->offset = t.offset;
        s->expr = parse_tuple(true);
        if (cur().kind != Tok::kVarEnd) fail("expected '}}'");
        advance();
        body.push_back(std::move(s));
      } else if (t.kind == Tok::kBlockBegin) {
        advance();
        if (cur().kind != Tok::kName) fail("expected a statement name");
        std::string name = cur().text;
        if (std::find_if(ends.begin(), ends.end(), [&](const char* e) { return name == e; }) != ends.end()) {
          advance();
          *end = name;
          return body;
        }
        body.push_back(parse_statement());
      } else {
        fail("unexpected token");
      }
    }
  }

  StmtPtr parse_statement() {
    auto s = std::make_unique<Stmt>();
    s->offset = cur().offset;
    std::string kw = expect_name();
    std::string end;
    if (kw == "if") {
      s->kind = StmtKind::kIf;
      ExprPtr cond = parse_tuple(true);
      while (true) {
        expect_block_end();
        Body b = parse_body({"elif", "else", "endif"}, &end);
        s->branches.emplace_back(std::move(cond), std::move(b));
        if (end == "elif") {
          cond = parse_tuple(true);
        } else if (end == "else") {
          expect_block_end();
          s->else_body = parse_body({"endif"}, &end);
          break;
        } else {
          break;
        }
      }
    } else if (kw == "for") {
      s->kind = StmtKind::kFor;
      do {
        s->targets.push_back(expect_name());
      } while (skip_op(","));
      if (!skip_name("in")) fail("expected 'in'");
      s->expr = parse_tuple(false);
      if (skip_name("if")) s->cond = parse_expression();
      if (is_name("recursive")) fail("recursive loops are not supported");
      expect_block_end();
      s->body = parse_body({"endfor", "else"}, &end);
      if (end == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"}, &end);
      }
    } else if (kw == "set") {
      s->targets.push_back(expect_name());
      if (skip_op(".")) {
        s->attr = expect_name();
      } else {
        while (skip_op(",")) s->targets.push_back(expect_name());
      }
      if (skip_op("=")) {
        s->kind = StmtKind::kSet;
        s->expr = parse_tuple(true);
      } else {
        if (s->targets.size() != 1 || !s->attr.empty()) fail("expected '='");
        s->kind = StmtKind::kSetBlock;
        expect_block_end();
        s->body = parse_body({"endset"}, &end);
      }
    } else if (kw == "macro") {
      s->kind = StmtKind::kMacro;
      s->text = expect_name();
      expect_op("(");
      while (!skip_op(")")) {
        if (!s->params.empty()) expect_op(",");
        if (skip_op(")")) break;
        std::string pname = expect_name();
        ExprPtr def = skip_op("=") ? parse_expression() : nullptr;
        s->params.emplace_back(pname, std::move(def));
      }
      expect_block_end();
      s->body = parse_body({"endmacro"}, &end);
    } else if (kw == "break" || kw == "continue") {
      s->kind = kw == "break" ? StmtKind::kBreak : StmtKind::kContinue;
    } else if (kw == "generation") {
      s->kind = StmtKind::kBlock;
      expect_block_end();
      s->body = parse_body({"endgeneration"}, &end);
    } else {
      fail("unknown or unsupported tag '" + kw + "'");
    }
    expect_block_end();
    return s;
  }

  // ---- expressions ---------------------------------------------------------------

  ExprPtr parse_tuple(bool with_condexpr) {
    ExprPtr first = with_condexpr ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto t = node(ExprKind::kTuple);
    t->children.push_back(std::move(first));
    while (skip_op(",")) {
      if (cur().kind == Tok::kBlockEnd || cur().kind == Tok::kVarEnd || is_op(")")) break;
      t->children.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    DepthGuard g(*this);
    ExprPtr e = parse_or();
    while (is_name("if")) {
      auto c = node(ExprKind::kCondExpr);
      advance();
      ExprPtr cond = parse_or();
      ExprPtr other = skip_name("else") ? parse_expression() : nullptr;
      c->children.push_back(std::move(e));
      c->children.push_back(std::move(cond));
      c->children.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(ExprKind k, std::string op, ExprPtr l, ExprPtr r) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->offset = l->offset;
    e->name = std::move(op);
    e->children.push_back(std::move(l));
    e->children.push_back(std::move(r));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (skip_name("or")) e = binary(ExprKind::kOr, "or", std::move(e), parse_and());
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (skip_name("and")) e = binary(ExprKind::kAnd, "and", std::move(e), parse_not());
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this);
      auto e = node(ExprKind::kUnary);
      advance();
      e->name = "not";
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == Tok::kOp &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op(">") || is_op("<=") || is_op(">="))) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == Tok::kName && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ExprKind::kCompare);
        cmp->offset = first->offset;
        cmp->children.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->children.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      advance();
      e = binary(ExprKind::kBinary, op, std::move(e), parse_concat());
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (skip_op("~")) e = binary(ExprKind::kBinary, "~", std::move(e), parse_math2());
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      advance();
      e = binary(ExprKind::kBinary, op, std::move(e), parse_pow());
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (skip_op("**")) e = binary(ExprKind::kBinary, "**", std::move(e), parse_unary(true));
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(ExprKind::kUnary);
      e->name = cur().text;
      advance();
      e->children.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    ExprPtr e;
    if (t.kind == Tok::kName) {
      e = node(ExprKind::kLiteral);
      if (t.text == "true" || t.text == "True") e->literal = Value::boolean(true);
      else if (t.text == "false" || t.text == "False") e->literal = Value::boolean(false);
      else if (t.text == "none" || t.text == "None") e->literal = Value::none();
      else {
        e->kind = ExprKind::kName;
        e->name = t.text;
      }
      advance();
    } else if (t.kind == Tok::kString) {
      e = node(ExprKind::kLiteral);
      std::string s;
      while (cur().kind == Tok::kString) {
        s += cur().text;
        advance();
      }
      e->literal = Value::string(std::move(s));
    } else if (t.kind == Tok::kInt || t.kind == Tok::kFloat) {
      e = node(ExprKind::kLiteral);
      e->literal = t.kind == Tok::kInt ? Value::integer(t.ival) : Value::number(t.fval);
      advance();
    } else if (is_op("(")) {
      advance();
      if (skip_op(")")) {
        e = node(ExprKind::kTuple);
      } else {
        e = parse_tuple(true);
        expect_op(")");
      }
    } else if (is_op("[")) {
      e = node(ExprKind::kList);
      advance();
      while (!skip_op("]")) {
        if (!e->children.empty()) expect_op(",");
        if (skip_op("]")) break;
        e->children.push_back(parse_expression());
      }
    } else if (is_op("{")) {
      e = node(ExprKind::kDict);
      advance();
      while (!skip_op("}")) {
        if (!e->children.empty()) expect_op(",");
        if (skip_op("}")) break;
        e->children.push_back(parse_expression());
        expect_op(":");
        e->children.push_back(parse_expression());
      }
    } else {
      fail("unexpected " + (t.kind == Tok::kEof ? std::string("end of template") : "'" + t.text + "'"));
    }
    return e;
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    size_t n = 0;  // children[0] is the callee / filtered value
    while (!skip_op(")")) {
      if (n++ > 0) expect_op(",");
      if (skip_op(")")) break;
      if (cur().kind == Tok::kName && peek().kind == Tok::kOp && peek().text == "=") {
        std::string k = cur().text;
        advance();
        advance();
        call.kwargs.emplace_back(k, parse_expression());
      } else {
        if (!call.kwargs.empty()) fail("positional argument follows keyword argument");
        call.children.push_back(parse_expression());
      }
    }
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        advance();
        if (cur().kind == Tok::kInt) {
          auto g = node(ExprKind::kGetItem);
          auto idx = node(ExprKind::kLiteral);
          idx->literal = Value::integer(cur().ival);
          advance();
          g->children.push_back(std::move(e));
          g->children.push_back(std::move(idx));
          e = std::move(g);
        } else {
          auto g = node(ExprKind::kGetAttr);
          g->name = expect_name();
          g->children.push_back(std::move(e));
          e = std::move(g);
        }
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        auto c = node(ExprKind::kCall);
        c->children.push_back(std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr subject) {
    size_t off = cur().offset;
    expect_op("[");
    ExprPtr parts[3];
    bool slice = false;
    for (int k = 0; k < 3; ++k) {
      if (!is_op(":") && !is_op("]")) parts[k] = parse_expression();
      if (k < 2 && skip_op(":")) {
        slice = true;
        continue;
      }
      break;
    }
    expect_op("]");
    auto e = std::make_unique<Expr>();
    e->offset = off;
    e->children.push_back(std::move(subject));
    if (slice) {
      e->kind = ExprKind::kSlice;
      for (auto& part : parts) e->children.push_back(std::move(part));
    } else {
      if (!parts[0]) fail("expected a subscript");
      e->kind = ExprKind::kGetItem;
      e->children.push_back(std::move(parts[0]));
    }
    return e;
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      if (skip_op("|")) {
        auto f = node(ExprKind::kFilter);
        f->name = expect_name();
        f->children.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        advance();
        auto t = node(ExprKind::kTest);
        t->negated = skip_name("not");
        t->name = expect_name();
        t->children.push_back(std::move(e));
        const Token& c = cur();
        bool arg_start = c.kind == Tok::kName || c.kind == Tok::kString || c.kind == Tok::kInt ||
                         c.kind == Tok::kFloat || is_op("[") || is_op("{");
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (arg_start && !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) fail("You cannot chain multiple tests with is");
          t->children.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
};

}  // namespace

Body parse_template(const std::string& normalized_src, const std::vector<Token>& tokens) {
  Parser p(normalized_src, tokens);
  return p.parse_all();
}

}  // namespace ember::jinja
