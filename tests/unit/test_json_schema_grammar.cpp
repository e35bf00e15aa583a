// JSON Schema to GBNF (engine/structured/json_schema.h), checked through the
// grammar engine: a corpus of schemas with instances that must be accepted and
// instances that must be rejected (tests/fixtures/structured/schema_corpus.json,
// kept consistent with Python's jsonschema), in both whitespace modes; then the
// grammar's own edges (whitespace, digit bounds, RFC 8259 strings, integer
// ranges against brute force, dates against a calendar) and the Errors for
// unsupported, unsatisfiable and hostile schemas.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engine/structured/grammar.h"
#include "engine/structured/json_schema.h"

namespace ember::structured {
namespace {

using nlohmann::ordered_json;

std::shared_ptr<const Grammar> compile(const ordered_json& schema, JsonSchemaOptions options = {}) {
  auto text = json_schema_grammar(schema, options);
  EXPECT_TRUE(text.ok()) << schema.dump() << ": " << text.error().message;
  if (!text.ok()) return nullptr;
  auto grammar = Grammar::parse(*text);
  EXPECT_TRUE(grammar.ok()) << (grammar.ok() ? "" : grammar.error().message) << "\n" << *text;
  return grammar.ok() ? *grammar : nullptr;
}

std::string error_of(const ordered_json& schema, JsonSchemaOptions options = {}) {
  auto text = json_schema_grammar(schema, options);
  return text.ok() ? "(compiled)" : text.error().message;
}

TEST(JsonSchemaGrammar, Corpus) {
  std::ifstream in(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/structured/schema_corpus.json");
  ASSERT_TRUE(in) << "schema_corpus.json";
  const ordered_json corpus = ordered_json::parse(in);
  ASSERT_GE(corpus.size(), 40u);
  size_t instances = 0;
  for (const ordered_json& entry : corpus) {
    SCOPED_TRACE(entry["description"].get<std::string>());
    auto spaced = compile(entry["schema"]);
    auto compact = compile(entry["schema"], {.compact = true});
    ASSERT_TRUE(spaced && compact);
    for (const ordered_json& v : entry["valid"]) {
      EXPECT_TRUE(spaced->matches(v.dump())) << v.dump();
      EXPECT_TRUE(spaced->matches(v.dump(2))) << v.dump(2);
      EXPECT_TRUE(compact->matches(v.dump())) << v.dump();
      if (v.dump(2) != v.dump()) {
        EXPECT_FALSE(compact->matches(v.dump(2))) << v.dump(2);
      }
      ++instances;
    }
    // Invalid instances, and valid ones the grammar leaves out by design (key order, strict defaults).
    for (const char* list : {"invalid", "valid_outside_grammar"}) {
      for (const ordered_json& v : entry.value(list, ordered_json::array())) {
        EXPECT_FALSE(spaced->matches(v.dump())) << list << ": " << v.dump();
        EXPECT_FALSE(spaced->matches(v.dump(2))) << list << ": " << v.dump(2);
        EXPECT_FALSE(compact->matches(v.dump())) << list << ": " << v.dump();
        ++instances;
      }
    }
  }
  EXPECT_GE(instances, 300u);
}

TEST(JsonSchemaGrammar, WhitespaceIsBoundedAndNeverTrails) {
  auto g = compile(ordered_json::parse(R"({"type": "object", "properties": {"a": {"type": "array"}}})"));
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->matches(R"({"a": [1, 2]})"));       // json.dumps' default separators
  EXPECT_TRUE(g->matches("{ \"a\" : [ 1 , 2 ] }"));  // one space wherever RFC 8259 allows one
  EXPECT_TRUE(g->matches("{\n\t\"a\":\n" + std::string(32, ' ') + "[]\n}"));
  EXPECT_FALSE(g->matches("{\"a\":\n" + std::string(33, ' ') + "[]}"));  // past the bound
  EXPECT_FALSE(g->matches("{\"a\":  []}"));                              // two spaces without a newline
  EXPECT_FALSE(g->matches("{\"a\":\n\n[]}"));
  EXPECT_FALSE(g->matches("{\"a\":\r\n[]}"));
  EXPECT_FALSE(g->matches("{} "));  // the grammar ends with the value
  EXPECT_FALSE(g->matches(" {}"));
  EXPECT_FALSE(g->matches("{}\n"));
}

TEST(JsonSchemaGrammar, NumbersHaveBoundedDigits) {
  auto integer = compile(ordered_json{{"type", "integer"}});
  auto number = compile(ordered_json{{"type", "number"}});
  ASSERT_TRUE(integer && number);
  EXPECT_TRUE(integer->matches(std::string(18, '9')));
  EXPECT_FALSE(integer->matches(std::string(19, '9')));
  EXPECT_FALSE(integer->matches("007"));
  EXPECT_FALSE(integer->matches("1.0"));
  EXPECT_FALSE(integer->matches("+1"));
  for (const char* ok : {"0", "-0", "0.5", "-1.25e-7", "1E+307", "9.999999999999999999e307", "1.5e+300", "1e-307",
                         "1e0", "1e007", "12e290", "-99e-290", "123456789012345678.123456789012345678",
                         "999999999999999999.999999999999999999e290"})
    EXPECT_TRUE(number->matches(ok)) << ok;
  // Exponents that could leave a double's range (nlohmann refuses 2e996) are refused.
  for (const char* bad : {"01", ".5", "1.", "1e", "--1", "+1", "NaN", "Infinity", "0x10", "1.1234567890123456789",
                          "1E+308", "1e999", "1e1000", "2e996", "12e291", "123e300"})
    EXPECT_FALSE(number->matches(bad)) << bad;
  // The largest numbers the grammar takes are finite doubles.
  for (const char* edge : {"9.999999999999999999e307", "999999999999999999.999999999999999999e290"})
    EXPECT_TRUE(std::isfinite(std::strtod(edge, nullptr))) << edge;
}

TEST(JsonSchemaGrammar, StringsFollowRfc8259) {
  auto g = compile(ordered_json{{"type", "string"}});
  ASSERT_TRUE(g);
  // A lone surrogate escape is RFC 8259 JSON (its section 8.2), as in llama.cpp's JSON grammar; strict parsers
  // (nlohmann, serde_json) refuse it, lenient ones (Python's json, JavaScript) read it.
  for (const char* ok : {R"("")", R"("\"\\\/\b\f\n\r\t")", R"("\u00e9\uD83D\uDE00\uABCD")", R"("\uD800 \udfff")",
                         "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"", "\"\x7F\""})
    EXPECT_TRUE(g->matches(ok)) << ok;
  for (const char* bad : {"\"\x01\"", "\"\n\"", "\"\t\"", R"("\x41")", R"("\u12")", R"("\U00000041")", R"("\'")",
                          R"("abc)", "'abc'", "\"\xC3\""})
    EXPECT_FALSE(g->matches(bad)) << bad;
}

// A string's characters never leave its rule: `char` is copied into `string` (grammar.cpp inlines light rules).
// Were `char` a call, every token with two characters of a string would return from it and be context-dependent
// in the mask tables: masks 0.3 -> 212 us a token on SmolLM2's vocabulary (structured_mask_bench,
// json_schema(person), 2026-12-06, with a heavier `char` that excluded lone surrogates); a rule it called for its
// \u escapes kept the masks but made `maxLength: 1000` too expensive to compile.
TEST(JsonSchemaGrammar, StringCharactersStayInTheirRule) {
  auto g = compile(ordered_json{{"type", "object"}, {"properties", {{"a", {{"type", "string"}}}}}});
  ASSERT_TRUE(g);
  int string_states = 0;
  for (const Grammar::State& st : g->states()) {
    if (g->rule_name(st.rule) != "string") continue;
    ++string_states;
    EXPECT_TRUE(st.calls.empty()) << "a state of `string` calls " << g->rule_name(st.calls.front().rule);
  }
  EXPECT_GT(string_states, 0);
}

// Every integer in a window against the bounds, for ranges that start and end at every kind of digit.
TEST(JsonSchemaGrammar, IntegerRangesMatchBruteForce) {
  const std::vector<std::pair<int64_t, int64_t>> ranges = {
      {0, 0},     {0, 9},     {1, 9},    {0, 10},    {7, 7},     {5, 123},      {10, 99},    {19, 91},
      {100, 999}, {101, 998}, {-1, 1},   {-9, -1},   {-10, -10}, {-100, 0},     {-123, 456}, {-999, -100},
      {-54, -45}, {99, 1000}, {1, 1099}, {250, 255}, {0, 255},   {-1000, 1000}, {38, 1012},  {-1099, -1}};
  for (const auto& [lo, hi] : ranges) {
    SCOPED_TRACE(std::to_string(lo) + ".." + std::to_string(hi));
    auto g = compile(ordered_json{{"type", "integer"}, {"minimum", lo}, {"maximum", hi}});
    ASSERT_TRUE(g);
    for (int64_t v = -1200; v <= 1200; ++v) ASSERT_EQ(g->matches(std::to_string(v)), v >= lo && v <= hi) << v;
    EXPECT_FALSE(g->matches("-0"));
    EXPECT_FALSE(g->matches("0" + std::to_string(hi)));
  }
  // Far from zero: the bounds and their neighbours.
  const int64_t big = 999'999'999'999'999'999;
  for (const auto& [lo, hi] :
       std::vector<std::pair<int64_t, int64_t>>{{123456789012, 987654321098765}, {-big, big}, {-big, -big + 5}}) {
    auto g = compile(ordered_json{{"type", "integer"}, {"minimum", lo}, {"maximum", hi}});
    ASSERT_TRUE(g);
    for (int64_t v : {lo, lo + 1, hi - 1, hi}) EXPECT_TRUE(g->matches(std::to_string(v))) << v;
    for (int64_t v : {lo - 1, hi + 1}) EXPECT_FALSE(g->matches(std::to_string(v))) << v;
  }
}

TEST(JsonSchemaGrammar, DatesAreCalendarDates) {
  auto g = compile(ordered_json{{"type", "string"}, {"format", "date"}});
  ASSERT_TRUE(g);
  auto days_in = [](int y, int m) {
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? (leap ? 29 : 28) : (m == 4 || m == 6 || m == 9 || m == 11) ? 30 : 31;
  };
  for (int y : {0, 1, 4, 100, 400, 1900, 1996, 2000, 2023, 2024, 2100, 9996, 9999}) {
    for (int m = 0; m <= 13; ++m) {
      for (int d = 0; d <= 32; ++d) {
        char text[32];
        std::snprintf(text, sizeof text, "\"%04d-%02d-%02d\"", y, m, d);
        const bool real = y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= days_in(y, m);
        ASSERT_EQ(g->matches(text), real) << text;
      }
    }
  }
}

TEST(JsonSchemaGrammar, PropertiesKeepTheSchemaOrder) {
  const std::string text =
      R"({"type": "object", "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "integer"}},
                               "required": ["zeta", "alpha"]})";
  auto ordered = compile(ordered_json::parse(text));
  ASSERT_TRUE(ordered);
  EXPECT_TRUE(ordered->matches(R"({"zeta":1,"alpha":2})"));
  EXPECT_FALSE(ordered->matches(R"({"alpha":2,"zeta":1})"));
  // A nlohmann::json has sorted its keys before the grammar sees them.
  auto sorted_text = json_schema_grammar(nlohmann::json::parse(text));
  ASSERT_TRUE(sorted_text.ok());
  auto sorted = Grammar::parse(*sorted_text);
  ASSERT_TRUE(sorted.ok());
  EXPECT_TRUE((*sorted)->matches(R"({"alpha":2,"zeta":1})"));
}

TEST(JsonSchemaGrammar, AnyJsonObject) {
  for (bool compact : {false, true}) {
    auto g = Grammar::parse(json_object_grammar({.compact = compact}));
    ASSERT_TRUE(g.ok()) << g.error().message;
    EXPECT_TRUE((*g)->matches("{}"));
    EXPECT_TRUE((*g)->matches(R"({"a":[1,{"b":null}],"c":"d","e":-1.5e3,"f":true})"));
    EXPECT_EQ((*g)->matches("{\"a\": [1, 2]}"), !compact);
    for (const char* bad : {"[]", "\"s\"", "1", "null", "{\"a\"}", "{\"a\":1,}", "{a:1}", "{}{}"})
      EXPECT_FALSE((*g)->matches(bad)) << bad;
  }
}

struct ErrorCase {
  const char* schema;
  std::vector<const char*> message;  // each must appear in the Error
};

TEST(JsonSchemaGrammar, ErrorsNameTheKeywordAndWhere) {
  const std::vector<ErrorCase> cases = {
      {R"({"type": "object", "properties": {"x": {"type": "object", "patternProperties": {"^a": {}}}}})",
       {"unsupported JSON Schema keyword 'patternProperties' at /properties/x"}},
      {R"({"properties": {"x~/y": {"uniqueItems": true}}})", {"'uniqueItems'", "at /properties/x~0~1y"}},
      {R"({"type": "array", "items": {"multipleOf": 3}})", {"'multipleOf' at /items"}},
      {R"({"type": "number", "minimum": 0})", {"'minimum' on a number is not supported", "the root"}},
      {R"({"type": "number", "exclusiveMaximum": 1.5})", {"'exclusiveMaximum' on a number"}},
      {R"({"minimum": 0})", {"'minimum' on a number"}},
      {R"({"type": "integer", "exclusiveMinimum": true})", {"'exclusiveMinimum' must be a number"}},
      {R"({"type": "string", "format": "hostname"})", {"unsupported string format 'hostname'"}},
      {R"({"properties": {"p": {"type": "string", "pattern": "(?=x)y"}}})",
       {"lookahead", "offset 0", "at /properties/p"}},
      {R"({"type": "string", "pattern": "(a)\\1"})", {"backreference", "offset 3", "'pattern'"}},
      {R"({"type": "string", "minLength": 1, "pattern": "a"})", {"'pattern' beside 'minLength'"}},
      {R"({"type": "string", "format": "date", "maxLength": 3})", {"'format' beside"}},
      {R"({"allOf": [{"type": "string"}, {"maxLength": 3}]})", {"'allOf' of more than one schema"}},
      {R"({"anyOf": [{"type": "string"}], "type": "string"})", {"'type' beside 'anyOf'"}},
      {R"({"$ref": "#/$defs/a", "type": "object", "$defs": {"a": {}}})", {"'type' beside '$ref'"}},
      {R"({"enum": ["a"], "minLength": 1})", {"'minLength' beside 'enum'"}},
      {R"({"enum": ["a"], "const": "a"})", {"'const' beside 'enum'"}},
      {R"({"type": "string", "enum": [1, 2]})", {"no value of 'enum'"}},
      {R"({"enum": []})", {"'enum' must be a non-empty list"}},
      {R"({"type": "array", "items": [{"type": "string"}]})", {"draft 7"}},
      {R"({"type": "array", "minItems": 3, "maxItems": 2})", {"no array satisfies"}},
      {R"({"type": "array", "prefixItems": [{}], "minItems": 2})", {"no array satisfies"}},
      {R"({"type": "array", "maxItems": 1000000000})", {"'maxItems' past 1000"}},
      {R"({"type": "string", "maxLength": 5000})", {"'maxLength' past 1000"}},
      {R"({"type": "string", "minLength": -1})", {"'minLength' must be a non-negative integer"}},
      {R"({"type": "string", "minLength": 5, "maxLength": 4})", {"no string satisfies"}},
      {R"({"type": "integer", "minimum": 5, "maximum": 4})", {"no integer lies"}},
      {R"({"type": "integer", "minimum": 1e20})", {"18-digit"}},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"], "additionalProperties": false})",
       {"required property 'b'"}},
      {R"({"type": "object", "properties": {"a": false}, "required": ["a"]})",
       {"required property 'a' has the schema false"}},
      {R"({"type": "foo"})", {"'type' must be one of"}},
      {R"({"type": []})", {"'type' is an empty list"}},
      {R"(false)", {"schema false"}},
      {R"({"anyOf": [false, false]})", {"every schema of 'anyOf' is false"}},
      {R"({"type": "object", "properties": {"a": 3}})", {"must be an object or a boolean", "/properties/a"}},
      {R"({"$ref": "#/$defs/missing"})", {"points to nothing"}},
      {R"({"$ref": "https://example.com/schema"})", {"only local references"}},
      {R"({"$ref": "#anchor"})", {"only JSON pointers"}},
      {R"({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})",
       {"left recursion"}},
      {R"({"$defs": {"a": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"})",
       {"left recursion"}},
      {R"({"anyOf": [{"$ref": "#"}, {"type": "null"}]})", {"left recursion", "/anyOf/0"}},
  };
  for (const ErrorCase& c : cases) {
    const std::string message = error_of(ordered_json::parse(c.schema));
    for (const char* part : c.message)
      EXPECT_NE(message.find(part), std::string::npos) << c.schema << "\n  -> " << message;
  }
}

TEST(JsonSchemaGrammar, HostileSchemasFailCleanly) {
  // Nesting past max_depth: an Error, not a deep recursion.
  auto arrays = [](int depth) {
    ordered_json root;
    ordered_json* at = &root;
    for (int i = 0; i < depth; ++i) (*at)["type"] = "array", at = &(*at)["items"];
    (*at)["type"] = "integer";
    return root;
  };
  EXPECT_NE(error_of(arrays(10'000)).find("max_depth (64)"), std::string::npos);
  const ordered_json nested = arrays(20);
  EXPECT_NE(error_of(nested, {.max_depth = 10}).find("max_depth (10)"), std::string::npos);
  EXPECT_TRUE(compile(nested));

  // A $ref chain counts toward the depth too.
  ordered_json chain = {{"$defs", ordered_json::object()}, {"$ref", "#/$defs/d0"}};
  for (int i = 0; i < 100; ++i)
    chain["$defs"]["d" + std::to_string(i)] = {{"type", "array"},
                                               {"items", {{"$ref", "#/$defs/d" + std::to_string(i + 1)}}}};
  chain["$defs"]["d100"] = {{"type", "null"}};
  EXPECT_NE(error_of(chain).find("max_depth"), std::string::npos);

  // Rules past max_rules.
  ordered_json many = {{"type", "object"}, {"properties", ordered_json::object()}};
  for (int i = 0; i < 50; ++i) many["properties"]["p" + std::to_string(i)] = {{"type", "integer"}, {"minimum", i}};
  EXPECT_NE(error_of(many, {.max_rules = 20}).find("max_rules (20)"), std::string::npos);
  EXPECT_TRUE(compile(many));

  // Enums past the bound; a large one under it compiles.
  ordered_json big_enum = {{"enum", ordered_json::array()}};
  for (int i = 0; i < 5000; ++i) big_enum["enum"].push_back("v" + std::to_string(i));
  EXPECT_NE(error_of(big_enum).find("more than 4096"), std::string::npos);
  big_enum["enum"] = ordered_json(big_enum["enum"].begin(), big_enum["enum"].begin() + 4000);
  auto g = compile(big_enum);
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->matches("\"v3999\""));
  EXPECT_FALSE(g->matches("\"v4000\""));

  // Many optional properties: linear, not quadratic, in grammar text.
  ordered_json wide = {{"type", "object"}, {"properties", ordered_json::object()}};
  for (int i = 0; i < 300; ++i) wide["properties"]["field" + std::to_string(i)] = {{"type", "boolean"}};
  auto text = json_schema_grammar(wide);
  ASSERT_TRUE(text.ok());
  EXPECT_LT(text->size(), 100'000u);
  auto w = compile(wide);
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->matches(R"({"field7":true,"field299":false})"));
  EXPECT_FALSE(w->matches(R"({"field299":false,"field7":true})"));

  // Counts at the bound compile; nested optional prefixItems are bounded.
  EXPECT_TRUE(compile(ordered_json{{"type", "array"}, {"maxItems", 1000}}));
  EXPECT_TRUE(compile(ordered_json{{"type", "string"}, {"minLength", 1000}}));
  ordered_json tuple = {{"type", "array"}, {"prefixItems", ordered_json::array()}};
  for (int i = 0; i < 100; ++i) tuple["prefixItems"].push_back({{"type", "integer"}});
  EXPECT_NE(error_of(tuple).find("optional 'prefixItems'"), std::string::npos);
  tuple["minItems"] = 100;
  EXPECT_TRUE(compile(tuple));

  // A property name far longer than the bound beside extra members.
  ordered_json long_name = {{"type", "object"},
                            {"properties", {{std::string(5000, 'k'), {{"type", "null"}}}}},
                            {"additionalProperties", true}};
  EXPECT_NE(error_of(long_name).find("longer than 1000"), std::string::npos);
}

TEST(JsonSchemaGrammar, ExtraMemberNamesAvoidTheListedOnes) {
  // Long and shared-prefix names, past the 32-deep split of the name trie.
  const std::string long_key(40, 'q');
  ordered_json schema = {
      {"type", "object"},
      {"properties",
       {{long_key, {{"type", "integer"}}}, {"ab", {{"type", "integer"}}}, {"abc", {{"type", "integer"}}}}},
      {"additionalProperties", {{"type", "string"}}}};
  auto g = compile(schema);
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->matches("{\"" + long_key + "\":1}"));
  EXPECT_FALSE(g->matches("{\"" + long_key + "\":\"s\"}"));
  EXPECT_TRUE(g->matches("{\"" + long_key + "q\":\"s\"}"));
  EXPECT_TRUE(g->matches("{\"" + long_key.substr(1) + "\":\"s\"}"));
  EXPECT_TRUE(g->matches(R"({"ab":1,"a":"s","abcd":"s","abd":"s","b":"s","":"s"})"));
  EXPECT_FALSE(g->matches(R"({"ab":1,"abc":"s"})"));
  EXPECT_FALSE(g->matches(R"({"ab":1,"a\u0062":"s"})"));  // no escape may spell a listed name
  EXPECT_TRUE(g->matches(R"({"ab":1,"x\u0062":"s"})"));   // escapes once clear of them
}

// Property names that read alike as rule names, with patterns whose regexes add rules of their own.
TEST(JsonSchemaGrammar, RuleNamesNeverCollide) {
  auto g = compile(ordered_json::parse(R"({"properties": {
      "a b": {"pattern": "((ab){2}c)+"}, "a-b": {"pattern": "((xy){2}z){2}"}, "a-b-pattern": {"pattern": "((q){2}z)+"},
      "ws": {"format": "date"}, "string": {"type": "string", "maxLength": 2}}})"));
  ASSERT_TRUE(g);
  EXPECT_TRUE(
      g->matches(R"({"a b":"ababcababc","a-b":"xyxyzxyxyz","a-b-pattern":"qqz","ws":"2024-01-01","string":"ab"})"));
  EXPECT_FALSE(g->matches(R"({"a b":"ababc","a-b":"xyxyz"})"));
}

}  // namespace
}  // namespace ember::structured
