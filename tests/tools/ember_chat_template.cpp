// Renders a chat template for the parity tests (tests/integration/test_chat_template_parity.py).
//   ember_chat_template TEMPLATE.jinja CASES.json
// CASES.json is a JSON array of {"messages": [...], "add_generation_prompt": bool,
// "bos_token": str, "eos_token": str, "extra_context": {...}, "now": unix seconds}.
// Prints one JSON object per case and line: {"ok": true, "text": ...} or
// {"ok": false, "error": ...}. A template syntax error prints one {"ok": false} line
// per case as well, so the caller always gets one line per case.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "models/chat/chat_template.h"

namespace {

bool read_file(const char* path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s TEMPLATE.jinja CASES.json\n", argv[0]);
    return 2;
  }
  std::string source, cases_text;
  if (!read_file(argv[1], &source) || !read_file(argv[2], &cases_text)) {
    std::fprintf(stderr, "cannot read input files\n");
    return 2;
  }
  nlohmann::ordered_json cases = nlohmann::ordered_json::parse(cases_text, nullptr, false);
  if (cases.is_discarded() || !cases.is_array()) {
    std::fprintf(stderr, "%s: not a JSON array\n", argv[2]);
    return 2;
  }
  auto tpl = ember::ChatTemplate::parse(source);
  for (const auto& c : cases) {
    nlohmann::ordered_json line;
    if (!tpl) {
      line = {{"ok", false}, {"error", tpl.error().message}};
    } else {
      ember::ChatTemplateOptions opt;
      opt.add_generation_prompt = c.value("add_generation_prompt", false);
      opt.bos_token = c.value("bos_token", "");
      opt.eos_token = c.value("eos_token", "");
      if (c.contains("extra_context")) opt.extra_context = c["extra_context"];
      if (c.contains("now")) opt.now_unix_seconds = c["now"].get<int64_t>();
      auto r = tpl->render(c.contains("messages") ? c["messages"] : nlohmann::ordered_json::array(), opt);
      if (r) line = {{"ok", true}, {"text", *r}};
      else line = {{"ok", false}, {"error", r.error().message}};
    }
    std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return 0;
}
