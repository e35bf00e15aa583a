// JSON Schema to GBNF (json_schema.h). Every choice below keeps the grammar
// sound: each text it accepts validates against the schema (the reverse does
// not hold: key order, whitespace and number lengths are narrower).
//
// - additionalProperties absent: no members beyond `properties` when the schema
//   lists any (xgrammar's default, OpenAI's strict mode); an object schema with
//   no `properties` takes any members ({"type": "object"} is any object). Extra
//   members (true or a schema) come after the listed ones; their names are any
//   but the listed ones, written without escapes.
// - items absent beside prefixItems: nothing after the prefix (the same
//   default); items absent alone: any items.
// - A schema without `type` has the types its keywords constrain (properties:
//   object, minLength: string, ...), as xgrammar and llama.cpp read it; with
//   none of those, any JSON value.
// - enum/const: each value's canonical JSON text (members in the value's
//   order), with whitespace between the tokens of arrays and objects as
//   anywhere else; `type` beside them filters the values, any other
//   constraint is an Error.
// - oneOf is read as anyOf; allOf takes one schema.
// - pattern matches the whole decoded string (anchored, as xgrammar and
//   llguidance do); characters that need escapes appear in their shortest one.
// - format: date (YYYY-MM-DD, a real date: month lengths and leap years, years
//   0001-9999); time (hh:mm:ss, optional .f{1,9}, then Z or +hh:mm / -hh:mm;
//   seconds 00-59, upper-case Z); date-time (date "T" time); uuid (8-4-4-4-12
//   hex digits, either case); email (dot-separated atoms of RFC 5322 atext
//   characters, "@", two or more dot-separated labels of letters, digits and
//   inner hyphens; no quoted local parts, lengths not bounded: counted
//   lengths cost automaton states); ipv4 (dotted quad of 0-255, no leading
//   zeros).
// - Whitespace (unless compact): one space, or a newline and up to 32 spaces
//   or tabs, wherever RFC 8259 allows it inside the value; none before or
//   after the top-level value, so the grammar ends with it.
// - Numbers end: integers and the integer part of numbers carry 1-18 digits,
//   fractions 1-18, exponents up to 307 after a one-digit integer part and
//   290 after more (so every number is a finite double; integer bounds past
//   18 digits are clamped).
// - Bounds, each an Error past it: minItems, maxItems, minLength, maxLength
//   up to kMaxRepetition (1000); 4096 enum values; 64 optional prefixItems;
//   property names of 1000 characters beside extra members; options.max_depth
//   nested schemas ($ref hops and enum values included); options.max_rules
//   grammar rules.

#include "engine/structured/json_schema.h"

#include "engine/structured/json_schema_compiler.h"

namespace ember::structured {

Result<std::string> json_schema_grammar(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options) {
  try {
    return SchemaCompiler(schema, options).compile();
  } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not UTF-8, met while dumping it
    return Error{std::string("invalid JSON Schema: ") + e.what()};
  }
}

Result<std::string> json_schema_grammar(const nlohmann::json& schema, const JsonSchemaOptions& options) {
  return json_schema_grammar(nlohmann::ordered_json(schema), options);
}

std::string json_object_grammar(const JsonSchemaOptions& options) {
  JsonBaseRules base(options.compact);
  const std::string root = "root ::= " + base.use("object") + "\n";
  return root + base.text();
}

}  // namespace ember::structured
