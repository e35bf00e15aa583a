#pragma once
// Syntax tree of a chat template. Expressions and statements are plain tagged
// structs (one kind field, children by index) rather than a class hierarchy: the
// evaluator is one switch per kind, which keeps jinja_eval.cpp readable top to bottom.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/chat/jinja_value.h"

namespace ember::jinja {

enum class ExprKind {
  kLiteral,   // literal
  kName,      // name
  kList,      // children = items
  kTuple,     // children = items
  kDict,      // children = key0, value0, key1, value1, ...
  kGetAttr,   // children[0].name
  kGetItem,   // children[0][children[1]]
  kSlice,     // children[0][c1:c2:c3], missing parts are nullptr
  kCall,      // children[0](children[1..], kwargs)
  kFilter,    // children[0] | name(children[1..], kwargs)
  kTest,      // children[0] is [not] name(children[1..]); negated
  kUnary,     // name in {"-", "+", "not"} applied to children[0]
  kBinary,    // children[0] name children[1]; name in + - * / // % ** ~
  kAnd,
  kOr,
  kCompare,   // children[0] ops[0] children[1] ops[1] children[2] ...
  kCondExpr,  // children[0] if children[1] else children[2] (nullptr: undefined)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  size_t offset = 0;  // into the normalised source
  Value literal;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

enum class StmtKind {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // branches (else: null condition)
  kFor,       // for targets in expr [if cond]: body [else else_body]
  kSet,       // set targets = expr, or set targets[0].attr = expr
  kSetBlock,  // {% set targets[0] %}body{% endset %}
  kMacro,     // {% macro text(params) %}body{% endmacro %}
  kBreak,
  kContinue,
  kBlock,     // body rendered in place ({% generation %}, {% filter %} without a filter)
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind;
  size_t offset = 0;
  std::string text;
  std::string attr;  // kSet on a namespace attribute
  ExprPtr expr;
  ExprPtr cond;  // kFor filter
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::pair<std::string, ExprPtr>> params;  // kMacro (default may be nullptr)
  Body body;
  Body else_body;
};

}  // namespace ember::jinja
