#pragma once
// Recursive-descent parser for the Jinja subset chat templates use, following
// jinja2's grammar and operator precedence (parser.py): conditional expression <
// or < and < not < comparison < + - < ~ < * / // % < ** < unary, then postfix
// (. [] ()) and filters/tests (| is). Nesting is bounded so that hostile input
// cannot exhaust the stack.

#include <string>
#include <vector>

#include "models/chat/jinja_ast.h"
#include "models/chat/jinja_lexer.h"

namespace ember::jinja {

// Throws JinjaError("line L, column C: ...") on a syntax error.
Body parse_template(const std::string& normalized_src, const std::vector<Token>& tokens);

}  // namespace ember::jinja
