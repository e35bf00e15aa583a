// Chat templates: ember's Jinja interpreter against python jinja2 goldens
// (scripts/make_chat_template_goldens.py renders them the way transformers'
// apply_chat_template does). Every real template x conversation, and every
// single-feature template, must match byte for byte; cases that fail in jinja2
// must fail here too (raise_exception with the same message).

#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "models/chat/chat_template.h"

namespace ember {
namespace {

using Json = nlohmann::ordered_json;
const std::string kDir = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/chat_templates/";

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing fixture " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Json read_json(const std::string& path) { return Json::parse(read_text(path)); }

// Expects `r` to agree with one golden entry ({"ok", "text"} or {"ok": false, "error", "error_type"}).
void expect_matches(const Result<std::string>& r, const Json& golden, const std::string& what) {
  if (golden["ok"].get<bool>()) {
    ASSERT_TRUE(r.ok()) << what << ": " << r.error().message;
    EXPECT_EQ(*r, golden["text"].get<std::string>()) << what;
  } else {
    ASSERT_FALSE(r.ok()) << what << ": expected an error like '" << golden["error"] << "', got '" << *r << "'";
    if (golden["error_type"] == "TemplateError") {  // raise_exception: the template's own message
      EXPECT_NE(r.error().message.find(golden["error"].get<std::string>()), std::string::npos)
          << what << ": " << r.error().message;
    }
  }
}

TEST(ChatTemplate, RealTemplatesMatchJinja2Goldens) {
  const Json goldens = read_json(kDir + "goldens.json");
  const Json cases = read_json(kDir + "conversations.json");
  // BOS/EOS as in scripts/chat_template_reference.py (TEMPLATE_TOKENS).
  const std::vector<std::tuple<std::string, std::string, std::string>> templates = {
      {"llama-2-7b-chat", "<s>", "</s>"},
      {"llama-3-8b-instruct", "<|begin_of_text|>", "<|eot_id|>"},
      {"llama-3.1-8b-instruct", "<|begin_of_text|>", "<|eot_id|>"},
      {"llama-3.2-3b-instruct", "<|begin_of_text|>", "<|eot_id|>"},
      {"mistral-7b-instruct-v0.1", "<s>", "</s>"},
      {"mistral-7b-instruct-v0.3", "<s>", "</s>"},
      {"qwen2-7b-instruct", "", "<|im_end|>"},
      {"qwen2.5-3b-instruct", "", "<|im_end|>"},
      {"smollm2-135m-instruct", "<|im_start|>", "<|im_end|>"},
  };
  int checked = 0;
  for (const auto& [name, bos, eos] : templates) {
    auto tpl = ChatTemplate::parse(read_text(kDir + name + ".jinja"));
    ASSERT_TRUE(tpl.ok()) << name << ": " << tpl.error().message;
    for (const Json& c : cases) {
      ChatTemplateOptions opt;
      opt.add_generation_prompt = c.value("add_generation_prompt", false);
      opt.bos_token = bos;
      opt.eos_token = eos;
      opt.now_unix_seconds = c["now"].get<int64_t>();
      if (c.contains("extra_context")) opt.extra_context = c["extra_context"];
      const std::string case_name = c["name"].get<std::string>();
      expect_matches(tpl->render(c["messages"], opt), goldens[name][case_name], name + " / " + case_name);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 9 * static_cast<int>(cases.size()));
}

TEST(ChatTemplate, LanguageFeaturesMatchJinja2) {
  const Json goldens = read_json(kDir + "goldens.json")["__features__"];
  const Json features = read_json(kDir + "features.json");
  ASSERT_GE(features.size(), 30u);
  for (const Json& f : features) {
    const std::string name = f["name"].get<std::string>();
    ChatTemplateOptions opt;
    opt.add_generation_prompt = false;
    opt.now_unix_seconds = 1726396200;
    auto tpl = ChatTemplate::parse(f["template"].get<std::string>());
    if (!tpl.ok()) {  // only a template jinja2 also rejects may fail to parse
      EXPECT_FALSE(goldens[name]["ok"].get<bool>()) << name << ": " << tpl.error().message;
      continue;
    }
    expect_matches(tpl->render(Json::array(), opt), goldens[name], name);
  }
}

TEST(ChatTemplate, SyntaxErrorsCarryLineAndColumn) {
  auto r = ChatTemplate::parse("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("line 3"), std::string::npos) << r.error().message;
  for (const char* bad : {"{% if x %}never closed", "{{ unterminated", "{# comment", "{{ 'str }}", "{% for %}{% endfor %}",
                          "{% endif %}", "{{ (1, 2 }}", "{% unknowntag %}", "{{ a[ }}", "{% raw %}no end"}) {
    auto p = ChatTemplate::parse(bad);
    EXPECT_FALSE(p.ok()) << bad;
  }
}

TEST(ChatTemplate, RejectsMalformedMessages) {
  auto tpl = ChatTemplate::parse("{% for m in messages %}{{ m.role }}{% endfor %}");
  ASSERT_TRUE(tpl.ok());
  EXPECT_FALSE(tpl->render(Json::object(), {}).ok());
  EXPECT_FALSE(tpl->render(Json::parse(R"([1, 2])"), {}).ok());
  ChatTemplateOptions opt;
  opt.extra_context = Json::array();
  EXPECT_FALSE(tpl->render(Json::array(), opt).ok());
  // A plain nlohmann::json goes through the same path.
  auto r = tpl->render(nlohmann::json::parse(R"([{"role": "user", "content": "x"}])"), {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "user");
}

TEST(ChatTemplate, HostileTemplatesAreBounded) {
  ChatTemplateOptions opt;
  const char* hostile[] = {
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",  // iterations
      "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",  // string size
      "{{ 'x' * 100000000 }}",
      "{% for i in range(2000000) %}{{ i }}{% endfor %}",  // output size (or list size)
      "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",  // recursion
      "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}",  // nesting
  };
  for (const char* t : hostile) {
    auto tpl = ChatTemplate::parse(t);
    ASSERT_TRUE(tpl.ok()) << t;
    EXPECT_FALSE(tpl->render(Json::array(), opt).ok()) << t;
  }
  std::string deep(5000, '(');
  EXPECT_FALSE(ChatTemplate::parse("{{ " + deep + " }}").ok());
  std::string nested;
  for (int i = 0; i < 500; ++i) nested += "{% if true %}";
  EXPECT_FALSE(ChatTemplate::parse(nested).ok());
}

TEST(ChatTemplate, QuadraticConcatenationIsBoundedByWork) {
  // Appending to a growing list (or string) in a loop copies it every time: a million iterations, all under the
  // iteration cap, would copy ~5 * 10^11 elements (minutes of one core). The work bound (elements and bytes copied)
  // ends it in well under a second with an error that says why.
  for (const char* t : {"{% set ns = namespace(l=[]) %}{% for i in range(1000000) %}{% set ns.l = ns.l + [i] %}"
                        "{% endfor %}{{ ns.l | length }}",
                        "{% set ns = namespace(s='') %}{% for i in range(1000000) %}{% set ns.s = ns.s ~ 'x' %}"
                        "{% endfor %}{{ ns.s | length }}"}) {
    auto tpl = ChatTemplate::parse(t);
    ASSERT_TRUE(tpl.ok()) << t;
    const auto start = std::chrono::steady_clock::now();
    auto r = tpl->render(Json::array(), {});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_FALSE(r.ok()) << t;
    EXPECT_NE(r.error().message.find("concatenation in a loop"), std::string::npos) << r.error().message;
    EXPECT_LT(s, 5.0) << t;
  }
  // Ordinary accumulation stays well inside the bound: 2,000 appends to a list, 2,000 to a string.
  auto ok = ChatTemplate::parse(
      "{% set ns = namespace(l=[], s='') %}{% for i in range(2000) %}{% set ns.l = ns.l + [i] %}"
      "{% set ns.s = ns.s ~ 'ab' %}{% endfor %}{{ ns.l | length }} {{ ns.s | length }}");
  ASSERT_TRUE(ok.ok());
  auto r = ok->render(Json::array(), {});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "2000 4000");
}

TEST(ChatTemplate, RaiseExceptionMessageIsKept) {
  auto tpl = ChatTemplate::parse("{% if messages | length == 0 %}{{ raise_exception('no messages!') }}{% endif %}");
  ASSERT_TRUE(tpl.ok());
  auto r = tpl->render(Json::array(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("no messages!"), std::string::npos);
}

}  // namespace
}  // namespace ember
