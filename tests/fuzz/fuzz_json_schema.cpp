// libFuzzer target for JSON Schema to GBNF (engine/structured/json_schema.h), as `response_format.json_schema`
// and `structured_outputs.json` hand schemas in: any JSON must compile or be an Error with a message (never a
// crash, a hang or an unbounded allocation), in both whitespace modes; compiled text must be a grammar
// Grammar::parse accepts (only its size limits may refuse it). A small grammar is then walked with the token
// masks (tests/fuzz/grammar_walk.h): a finished walk is JSON, and of the schema's top-level type, enum and const
// (numbers past double's range, such as 2e996, and lone surrogate escapes are valid JSON that nlohmann refuses:
// those go unchecked).
// The json_object grammar is walked too: its outputs are JSON objects.
// Input: the schema as JSON text (at most 8 KB). Seed corpus: tests/fuzz/corpus/json_schema/.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/structured/json_schema.h"
#include "grammar_walk.h"

namespace {

using ember::fuzz::check;
using nlohmann::json;
using nlohmann::ordered_json;

bool limit_error(const std::string& message) {
  return message.find("too large") != std::string::npos || message.find("longer than") != std::string::npos ||
         message.find("too expensive") != std::string::npos;
}

bool has_type(const json& v, const std::string& type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "integer") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  return true;
}

// The JSON value of a finished walk's text (which must be RFC 8259 JSON), or null when it holds a number past
// double's range or a lone surrogate escape (RFC 8259 allows both, its sections 6 and 8.2; nlohmann refuses
// them, as strict parsers do). The walk found the surrogate case on 2026-12-06 (corpus/lone-surrogate-walk.json).
std::optional<json> parse_output(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::out_of_range& e) {
    check(e.id == 406);  // number overflow
    return std::nullopt;
  } catch (const json::parse_error& e) {
    check(std::string_view(e.what()).find("surrogate") != std::string_view::npos);
    return std::nullopt;
  } catch (const json::exception&) {
    check(false);
  }
  return std::nullopt;
}

// The checks a finished walk's text must pass against the schema's top level.
void check_instance(const ordered_json& schema, const std::string& text) {
  const std::optional<json> parsed = parse_output(text);
  if (!parsed || !schema.is_object()) return;
  const json& v = *parsed;
  if (auto t = schema.find("type"); t != schema.end()) {
    if (t->is_string()) check(has_type(v, t->get<std::string>()));
    if (t->is_array()) {
      bool any = false;
      for (const auto& one : *t) any = any || (one.is_string() && has_type(v, one.get<std::string>()));
      check(any);
    }
  }
  if (auto c = schema.find("const"); c != schema.end()) check(v == json::parse(c->dump()));
  if (auto e = schema.find("enum"); e != schema.end() && e->is_array()) {
    bool in = false;
    for (const auto& one : *e) in = in || v == json::parse(one.dump());
    check(in);
  }
}

void run(const ordered_json& schema, bool compact, uint64_t seed) {
  using namespace ember::structured;
  JsonSchemaOptions options;
  options.compact = compact;
  auto text = json_schema_grammar(schema, options);
  if (!text.ok()) {
    check(!text.error().message.empty());
    return;
  }
  auto g = Grammar::parse(*text);
  if (!g.ok()) {
    check(limit_error(g.error().message));
    return;
  }
  if ((*g)->states().size() > 2000) return;
  auto compiled = CompiledGrammar::compile(*g, ember::fuzz::walk_vocab({}));
  if (!compiled.ok()) return;
  const auto w = ember::fuzz::walk(*compiled, seed, 64);
  if (w.ended) check_instance(schema, w.text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ember::structured;
  if (size > 8192) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  uint64_t seed = 1469598103934665603ull;
  for (uint8_t b : input) seed = (seed ^ b) * 1099511628211ull;

  static const auto object_grammar = [] {
    auto g = Grammar::parse(json_object_grammar());
    check(g.ok());
    auto c = CompiledGrammar::compile(*g, ember::fuzz::walk_vocab({}));
    check(c.ok());
    return *c;
  }();
  if (seed % 8 == 0) {
    const auto w = ember::fuzz::walk(object_grammar, seed, 64);
    if (w.ended) {
      const std::optional<json> v = parse_output(w.text);
      check(!v || v->is_object());
    }
  }

  const ordered_json schema = ordered_json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) return 0;
  run(schema, (seed >> 7) & 1, seed);
  return 0;
}
