#pragma once
// The walk over a JSON Schema that json_schema_grammar() runs (json_schema.cpp
// documents what it accepts and how). Internal to engine/structured.
//
// Each schema becomes a GBNF expression: a rule name, a primitive of
// JsonBaseRules, or a literal; rules with equal bodies are one rule. A $ref's
// rule is named before its target is walked, so recursion closes on itself.
// The first Error stops the walk: later calls return "" at once.

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "engine/structured/json_schema.h"
#include "engine/structured/json_schema_terminals.h"

namespace ember::structured {

class SchemaCompiler {
 public:
  using Json = nlohmann::ordered_json;
  SchemaCompiler(const Json& root, const JsonSchemaOptions& options);

  Result<std::string> compile();

 private:
  struct Member {
    std::string pair;  // key ":" value
    bool required;
  };

  // One schema at JSON pointer `ptr`; `name` names the rule it needs, if any.
  std::string schema(const Json& s, const std::string& ptr, const std::string& name, int depth);
  std::string ref(const Json& s, const std::string& ptr, int depth);
  std::string combination(const Json& s, const std::string& keyword, const std::string& ptr, const std::string& name,
                          int depth);
  std::string enumeration(const Json& s, const std::string& ptr, const std::string& name);
  std::string value_literal(const Json& v, const std::string& ptr, int depth);
  std::string typed(const std::string& type, const Json& s, const std::string& ptr, const std::string& name, int depth);
  std::string object(const Json& s, const std::string& ptr, const std::string& name, int depth);
  std::string members_body(const std::vector<Member>& members, const std::string& extra, const std::string& name,
                           bool& nullable);
  std::string key_not_in(const std::vector<std::string>& keys, const std::string& ptr, const std::string& name);
  std::string array(const Json& s, const std::string& ptr, const std::string& name, int depth);
  std::string string(const Json& s, const std::string& ptr, const std::string& name);
  std::string pattern(const std::string& regex, const std::string& ptr, const std::string& name);
  std::string integer(const Json& s, const std::string& ptr, const std::string& name);
  std::string number(const Json& s, const std::string& ptr);

  // A rule with this body (an existing one if its body is the same); returns its name. The schema whose
  // rule is an open slot (`name` is the slot's) fills the slot instead.
  std::string define(const std::string& name, const std::string& body);
  std::string unique_name(const std::string& hint);
  bool count_rule();  // false (and the Error) past options.max_rules
  // A non-negative count keyword (minItems...), -1 when absent.
  int64_t count(const Json& s, const char* keyword, const std::string& ptr);
  // Fails unless every constraint in `s` is one of `allowed` (annotations and $defs always are).
  bool only_beside(const Json& s, std::initializer_list<const char*> allowed, const std::string& ptr);
  std::string ws();
  std::string sep(const char* token);  // a token between values, whitespace around it
  std::string fail(const std::string& what, const std::string& ptr);
  bool ok() const { return error_.empty(); }

  const Json& root_;
  JsonSchemaOptions options_;
  JsonBaseRules base_;
  std::vector<std::pair<std::string, std::string>> rules_;  // name, body; root first
  std::unordered_map<std::string, std::string> by_body_;
  std::unordered_map<std::string, int> names_;  // name -> how many hints asked for it
  std::map<std::string, std::string> refs_;     // JSON pointer -> its rule
  // Rules named before their body is known ($ref targets, root): the schema's own define() fills one.
  std::unordered_map<std::string, size_t> open_slots_;
  std::vector<std::string> left_refs_;  // $refs entered since the last byte the grammar must consume
  std::string extra_rules_;             // the regex rules of patterns
  int64_t num_rules_ = 0;
  std::string error_;
};

}  // namespace ember::structured
