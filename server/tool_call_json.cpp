// Reading the JSON of tool calls (tool_call_json.h).

#include "server/tool_call_json.h"

#include <algorithm>
#include <functional>

#include <nlohmann/json.hpp>

#include "common/json_limits.h"
#include "server/json_scanner.h"

namespace ember {
namespace {

using nlohmann::json;

constexpr size_t kMaxHead = 1024;

// Model output is untrusted: its nesting is bounded before nlohmann::json builds (and recurses over) a tree.
json parse_bounded(std::string_view text) {
  if (!check_json_shape(text, 128, size_t{1} << 16, "tool call")) return json::value_t::discarded;
  return json::parse(text, nullptr, false);
}

}  // namespace

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

HeadMatch read_call_head(std::string_view text) {
  const std::string_view s = text.substr(0, kMaxHead);
  size_t i = 0;
  const auto skip_ws = [&] {
    while (i < s.size() && is_json_space(s[i])) ++i;
  };
  const auto literal = [&](std::string_view lit) {
    skip_ws();
    for (char c : lit) {
      if (i == s.size()) return Head::kMore;
      if (s[i++] != c) return Head::kNo;
    }
    return Head::kYes;
  };
  const auto string = [&](std::string& out) {
    skip_ws();
    if (i == s.size()) return Head::kMore;
    if (s[i] != '"') return Head::kNo;
    const size_t start = i++;
    for (;; ++i) {
      if (i >= s.size()) return Head::kMore;
      if (static_cast<unsigned char>(s[i]) < 0x20) return Head::kNo;
      if (s[i] == '\\')
        ++i;
      else if (s[i] == '"')
        break;
    }
    const json v = json::parse(s.substr(start, ++i - start), nullptr, false);
    if (v.is_discarded()) return Head::kNo;
    out = v.get<std::string>();
    return Head::kYes;
  };
  HeadMatch m;
  std::string key;
  const std::function<Head()> parts[] = {
      [&] {
        skip_ws();
        return i == s.size() ? Head::kMore : s[i++] == '{' ? Head::kYes : Head::kNotObject;
      },
      [&] { return literal("\"name\""); },
      [&] { return literal(":"); },
      [&] { return string(m.name); },
      [&] { return literal(","); },
      [&] { return string(key); },
      [&] { return key == "arguments" || key == "parameters" ? literal(":") : Head::kNo; },
      [&] {
        skip_ws();
        return i == s.size() ? Head::kMore : s[i] == '{' ? Head::kYes : Head::kNo;
      },
  };
  for (const auto& part : parts)
    if ((m.result = part()) != Head::kYes) break;
  m.length = i;
  // Cut off by kMaxHead rather than by the text: as undecided as it will ever be.
  if (m.result == Head::kMore && text.size() > s.size()) m.result = Head::kNo;
  return m;
}

bool is_known_tool(const std::vector<std::string>& names, const std::string& name) {
  return names.empty() || std::find(names.begin(), names.end(), name) != names.end();
}

std::optional<ToolCallText> read_call(std::string_view text, const std::vector<std::string>& names) {
  const json j = parse_bounded(text);
  if (!j.is_object()) return std::nullopt;
  const auto name = j.find("name");
  if (name == j.end() || !name->is_string() || !is_known_tool(names, name->get<std::string>())) return std::nullopt;
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  ToolCallText call{name->get<std::string>(), "{}"};
  if (args != j.end()) {
    const json value = args->is_string() ? parse_bounded(args->get<std::string>()) : *args;
    if (!value.is_object()) return std::nullopt;
    call.arguments = value.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return call;
}

std::optional<std::vector<ToolCallText>> read_call_list(std::string_view text, char sep, char close,
                                                        const std::vector<std::string>& names) {
  std::vector<ToolCallText> calls;
  size_t i = 0;
  const auto skip_ws = [&] {
    while (i < text.size() && is_json_space(text[i])) ++i;
  };
  for (;;) {
    skip_ws();
    if (i == text.size()) break;
    JsonScanner scanner;
    size_t end = i;
    while (end < text.size() && scanner.feed(text[end]) && !scanner.done()) ++end;
    if (!scanner.done()) return std::nullopt;
    auto call = read_call(text.substr(i, end + 1 - i), names);
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
    i = end + 1;
    skip_ws();
    if (i < text.size() && text[i] == sep) {
      ++i;
    } else if (i < text.size() && close && text[i] == close) {
      ++i;
      skip_ws();
      break;
    } else {
      break;
    }
  }
  if (i != text.size() || calls.empty()) return std::nullopt;
  return calls;
}

}  // namespace ember
