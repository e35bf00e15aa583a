#include "models/chat/jinja_lexer.h"

#include <cstring>

#include "models/chat/jinja_value.h"

namespace ember::jinja {

namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python's str.rstrip()/lstrip() with Unicode whitespace, as jinja2 uses for '-'.
std::string rstrip_ws(const std::string& s) { return py_strip(s, nullptr, false, true); }

// Number of leading bytes of s[pos..] that are (Unicode) whitespace.
size_t leading_ws(const std::string& s, size_t pos) {
  std::string rest = s.substr(pos);
  return rest.size() - py_strip(rest, nullptr, true, false).size();
}

[[noreturn]] void fail(const std::string& src, size_t off, const std::string& what) {
  throw JinjaError(line_col(src, off) + ": " + what);
}

void append_utf8(std::string& out, uint32_t cp) { out += utf8_encode(std::u32string(1, static_cast<char32_t>(cp))); }

// Python string-literal escapes (jinja2 decodes literals with "unicode-escape").
std::string decode_escapes(const std::string& src, size_t off, std::string_view body) {
  std::string out;
  for (size_t k = 0; k < body.size(); ++k) {
    char c = body[k];
    if (c != '\\' || k + 1 >= body.size()) {
      out += c;
      continue;
    }
    char e = body[++k];
    auto hex = [&](size_t n) {
      if (k + n >= body.size()) fail(src, off, "truncated escape in string literal");
      uint32_t v = 0;
      for (size_t j = 1; j <= n; ++j) {
        char h = body[k + j];
        int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0) fail(src, off, "invalid \\x/\\u escape in string literal");
        v = v * 16 + static_cast<uint32_t>(d);
      }
      k += n;
      if (v > 0x10FFFF) fail(src, off, "escape out of Unicode range");
      append_utf8(out, v);
    };
    switch (e) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\n': break;  // line continuation
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = static_cast<uint32_t>(e - '0');
          for (int j = 0; j < 2 && k + 1 < body.size() && body[k + 1] >= '0' && body[k + 1] <= '7'; ++j)
            v = v * 8 + static_cast<uint32_t>(body[++k] - '0');
          append_utf8(out, v);
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

struct Lexer {
  const std::string& src;
  std::vector<Token> out;
  size_t pos = 0;
  bool line_start = true;  // the next text starts a line (jinja2's line_starting)

  void emit(Tok kind, std::string text, size_t off) { out.push_back(Token{kind, std::move(text), 0, 0.0, off}); }

  // Applies the left whitespace control of the tag at `tag` (kind '{', '%' or '#') to text.
  std::string control_left(std::string text, size_t tag, char kind) {
    char mod = tag + 2 < src.size() ? src[tag + 2] : '\0';
    if (mod == '-') return rstrip_ws(text);
    if (mod == '+' || kind == '{') return text;
    size_t l = text.rfind('\n');
    l = l == std::string::npos ? 0 : l + 1;
    if (l == 0 && !line_start) return text;
    // jinja2 strips only when the rest of the line is whitespace (\s+, so not empty).
    std::string rest = text.substr(l);
    if (rest.empty() || !py_strip(rest, nullptr, true, true).empty()) return text;
    return text.substr(0, l);
  }

  // After a closing tag ending at `end` (one past it); `dash` when it was -%} / -}} / -#}.
  void control_right(size_t end, bool dash, bool trim_newline) {
    pos = end;
    if (dash) pos += leading_ws(src, pos);
    else if (trim_newline && pos < src.size() && src[pos] == '\n') ++pos;
    line_start = pos > end && src[pos - 1] == '\n';  // jinja2: the end tag's match ended a line
  }

  void run() {
    while (pos < src.size()) {
      size_t tag = pos;
      while (true) {
        tag = src.find('{', tag);
        if (tag == std::string::npos || tag + 1 >= src.size()) {
          tag = std::string::npos;
          break;
        }
        char k = src[tag + 1];
        if (k == '{' || k == '%' || k == '#') break;
        ++tag;
      }
      if (tag == std::string::npos) {
        emit(Tok::kText, src.substr(pos), pos);
        break;
      }
      char kind = src[tag + 1];
      std::string text = control_left(src.substr(pos, tag - pos), tag, kind);
      if (!text.empty()) emit(Tok::kText, std::move(text), pos);
      size_t body = tag + 2 + ((tag + 2 < src.size() && (src[tag + 2] == '-' || src[tag + 2] == '+')) ? 1 : 0);
      if (kind == '#') {
        size_t end = src.find("#}", body);
        if (end == std::string::npos) fail(src, tag, "unterminated comment");
        control_right(end + 2, end > body && src[end - 1] == '-', true);
      } else if (kind == '%' && raw_block(tag, body)) {
        continue;
      } else {
        emit(kind == '%' ? Tok::kBlockBegin : Tok::kVarBegin, "", tag);
        lex_expression(body, kind == '%');
      }
    }
    emit(Tok::kEof, "", src.size());
  }

  // Matches `{% raw %}` at body; emits its content up to `{% endraw %}` as text.
  bool raw_block(size_t tag, size_t body) {
    size_t p = body;
    while (p < src.size() && is_ascii_space(src[p])) ++p;
    if (src.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src.size() && is_ascii_space(src[p])) ++p;
    bool dash = p < src.size() && src[p] == '-';
    if (dash) ++p;
    if (src.compare(p, 2, "%}") != 0) return false;
    size_t content = p + 2 + (dash ? leading_ws(src, p + 2) : 0);
    for (size_t s = src.find("{%", content); s != std::string::npos; s = src.find("{%", s + 2)) {
      size_t q = s + 2 + ((s + 2 < src.size() && (src[s + 2] == '-' || src[s + 2] == '+')) ? 1 : 0);
      while (q < src.size() && is_ascii_space(src[q])) ++q;
      if (src.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      while (q < src.size() && is_ascii_space(src[q])) ++q;
      bool edash = q < src.size() && src[q] == '-';
      if (edash || (q < src.size() && src[q] == '+')) ++q;
      if (src.compare(q, 2, "%}") != 0) fail(src, s, "malformed endraw tag");
      line_start = false;
      std::string text = control_left(src.substr(content, s - content), s, '%');
      if (!text.empty()) emit(Tok::kText, std::move(text), content);
      control_right(q + 2, edash, true);
      return true;
    }
    fail(src, tag, "missing end of raw directive");
  }

  void lex_expression(size_t p, bool block) {
    int depth = 0;
    size_t start = p;
    while (true) {
      while (p < src.size() && is_ascii_space(src[p])) ++p;
      if (p >= src.size()) fail(src, start, block ? "unexpected end of template: missing '%}'" : "missing '}}'");
      const char* close = block ? "%}" : "}}";
      if (depth == 0) {
        bool dash = src[p] == '-' && src.compare(p + 1, 2, close) == 0;
        if (dash || src.compare(p, 2, close) == 0) {
          emit(block ? Tok::kBlockEnd : Tok::kVarEnd, "", p);
          size_t end = p + (dash ? 3 : 2);
          control_right(end, dash, block);
          return;
        }
      }
      char c = src[p];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = p;
        while (p < src.size() && (std::isalnum(static_cast<unsigned char>(src[p])) || src[p] == '_')) ++p;
        emit(Tok::kName, src.substr(b, p - b), b);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        p = lex_number(p);
      } else if (c == '\'' || c == '"') {
        size_t b = p++;
        while (p < src.size() && src[p] != c) p += src[p] == '\\' ? 2 : 1;
        if (p >= src.size()) fail(src, b, "unterminated string literal");
        emit(Tok::kString, decode_escapes(src, b, std::string_view(src).substr(b + 1, p - b - 1)), b);
        ++p;
      } else {
        static const char* two[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* t : two)
          if (src.compare(p, 2, t) == 0) op = t;
        if (op.empty()) {
          if (!std::strchr("+-/*%~[](){}<>=.,:|", c)) fail(src, p, std::string("unexpected char '") + c + "'");
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") ++depth;
        if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
        emit(Tok::kOp, op, p);
        p += op.size();
      }
    }
  }

  size_t lex_number(size_t p) {
    size_t b = p;
    auto digits = [&] {
      while (p < src.size() && (std::isdigit(static_cast<unsigned char>(src[p])) || src[p] == '_')) ++p;
    };
    digits();
    bool is_float = false;
    if (p + 1 < src.size() && src[p] == '.' && std::isdigit(static_cast<unsigned char>(src[p + 1]))) {
      ++p;
      digits();
      is_float = true;
    }
    if (p < src.size() && (src[p] == 'e' || src[p] == 'E')) {
      size_t q = p + 1;
      if (q < src.size() && (src[q] == '+' || src[q] == '-')) ++q;
      if (q < src.size() && std::isdigit(static_cast<unsigned char>(src[q]))) {
        p = q;
        digits();
        is_float = true;
      }
    }
    std::string text;
    for (size_t k = b; k < p; ++k)
      if (src[k] != '_') text += src[k];
    Token t{is_float ? Tok::kFloat : Tok::kInt, text, 0, 0.0, b};
    try {
      if (is_float) t.fval = std::stod(text);
      else t.ival = std::stoll(text);
    } catch (const std::exception&) {
      fail(src, b, "number literal out of range");
    }
    out.push_back(std::move(t));
    return p;
  }
};

}  // namespace

std::string normalize_template_source(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t k = 0; k < src.size(); ++k) {
    if (src[k] == '\r') {
      out += '\n';
      if (k + 1 < src.size() && src[k + 1] == '\n') ++k;
    } else {
      out += src[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::vector<Token> lex_template(const std::string& normalized_src) {
  Lexer lx{normalized_src, {}};
  lx.run();
  return std::move(lx.out);
}

std::string line_col(const std::string& src, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t k = 0; k < offset && k < src.size(); ++k) {
    if (src[k] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

}  // namespace ember::jinja
