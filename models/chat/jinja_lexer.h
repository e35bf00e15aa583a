#pragma once
// Tokenizer for chat templates, with the whitespace rules transformers renders
// under: trim_blocks (the newline after a block or comment tag goes), lstrip_blocks
// (spaces and tabs before a block or comment tag on its own line go), explicit
// {%- -%} {{- -}} {#- -#} and {%+ %}, raw blocks, CRLF/CR normalised to LF and one
// trailing newline of the template dropped (jinja2's keep_trailing_newline=False).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ember::jinja {

enum class Tok { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  Tok kind;
  std::string text;  // text data, name, operator, or decoded string literal
  int64_t ival = 0;
  double fval = 0.0;
  size_t offset = 0;  // into the normalised source, for line:column in errors
};

// The normalised source the offsets refer to.
std::string normalize_template_source(std::string_view src);
// Throws JinjaError("line L, column C: ...") on an unterminated tag, comment or string.
std::vector<Token> lex_template(const std::string& normalized_src);
// "line L, column C" of a byte offset.
std::string line_col(const std::string& src, size_t offset);

}  // namespace ember::jinja
