#pragma once
// JSON Schema to GBNF: the grammar of the JSON texts that validate against the
// schema. Supported keywords (anything else is an Error naming the keyword and
// its JSON pointer, never silently ignored): type (one or a list), properties,
// required, additionalProperties (bool or schema), enum, const, items,
// prefixItems, minItems, maxItems, minLength, maxLength, pattern (regex.h),
// format (date, time, date-time, uuid, email, ipv4: documented in the .cpp),
// anyOf, oneOf (as anyOf), allOf of one schema, $ref to #/$defs/... and
// #/definitions/... (recursion allowed), minimum/maximum/exclusive* on integers,
// and the annotations that do not constrain (title, description, default,
// examples, $schema, $id, $comment, strict, readOnly, writeOnly, deprecated).
// Properties come out in the order the schema lists them; required ones always
// appear, optional ones may be left out. Whitespace between tokens is bounded.
// json_schema.cpp lists the defaults chosen where JSON Schema leaves room, the
// formats, and the bounds (each an Error past it, as are unsatisfiable schemas).

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace ember::structured {

struct JsonSchemaOptions {
  // Whitespace allowed between tokens: none (compact, as `json.dumps(separators=(",", ":"))`) or a bounded
  // run of spaces and newlines (the default; small models like to emit it).
  bool compact = false;
  int32_t max_depth = 64;       // schema nesting ($ref chains included)
  int64_t max_rules = 10'000;
};

// The grammar of JSON texts valid under `schema`. Properties keep the order of an ordered_json; a
// nlohmann::json has already sorted them by name.
Result<std::string> json_schema_grammar(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options = {});
Result<std::string> json_schema_grammar(const nlohmann::json& schema, const JsonSchemaOptions& options = {});

// The grammar of any JSON object ({"type": "json_object"}).
std::string json_object_grammar(const JsonSchemaOptions& options = {});

}  // namespace ember::structured
