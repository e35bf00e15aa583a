// The structured-output fields of a request, to grammar text (engine/structured):
//   response_format: {"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}
//   structured_outputs (vLLM): {"json": schema, "regex": str, "choice": [str], "grammar": GBNF, "json_object": true}
//   guided_json / guided_regex / guided_choice / guided_grammar (vLLM's older spelling of the same)
// At most one kind per request. Errors name the field (and, for schemas, the keyword and where it is).

#include <string>

#include "engine/structured/grammar.h"
#include "engine/structured/json_schema.h"
#include "engine/structured/regex.h"
#include "server/request_fields.h"

namespace ember {
namespace {

constexpr size_t kMaxChoices = 1024;

// The request body again, with objects in the order the client wrote them: a schema's properties come out in
// that order (as OpenAI's and vLLM's do), and nlohmann::json sorts keys. Parsed only for requests with a schema.
class OrderedBody {
 public:
  explicit OrderedBody(std::string_view body) : body_(body) {}
  // The value at `path` (object keys), or null.
  nlohmann::ordered_json at(std::initializer_list<const char*> path) {
    if (!parsed_) {
      // The first parse already checked depth and size limits.
      doc_ = nlohmann::ordered_json::parse(body_, nullptr, /*allow_exceptions=*/false);
      parsed_ = true;
    }
    const nlohmann::ordered_json* v = &doc_;
    for (const char* key : path) {
      if (!v->is_object() || !v->contains(key)) return nullptr;
      v = &(*v)[key];
    }
    return *v;
  }

 private:
  std::string_view body_;
  nlohmann::ordered_json doc_;
  bool parsed_ = false;
};

// Grammar text for one kind of constraint given as `value` under `param`; a
// JSON schema comes from `ordered` (the same value, its keys in request order).
ApiResult<std::string> grammar_for(const std::string& kind, const nlohmann::json& value, const std::string& param,
                                   const nlohmann::ordered_json& ordered = nullptr) {
  if (kind == "json") {
    nlohmann::ordered_json schema = ordered;
    if (ordered.is_string()) {  // vLLM takes the schema as a JSON string too
      schema = nlohmann::ordered_json::parse(ordered.get<std::string>(), nullptr, /*allow_exceptions=*/false);
      if (schema.is_discarded()) return invalid_request(param + " is a string that is not JSON", param);
    }
    if (!schema.is_object() && !schema.is_boolean())
      return invalid_request(param + " must be a JSON Schema (an object)", param);
    auto g = structured::json_schema_grammar(schema);
    if (!g.ok()) return invalid_request("Invalid JSON Schema in " + param + ": " + g.error().message, param);
    return *g;
  }
  if (kind == "json_object") {
    if (!value.is_boolean()) return invalid_request(param + " must be a boolean", param);
    return structured::json_object_grammar();
  }
  if (kind == "regex") {
    if (!value.is_string()) return invalid_request(param + " must be a string", param);
    auto g = structured::regex_grammar(value.get<std::string>());
    if (!g.ok()) return invalid_request("Invalid regex in " + param + ": " + g.error().message, param);
    return *g;
  }
  if (kind == "choice") {
    if (!value.is_array() || value.empty() || value.size() > kMaxChoices)
      return invalid_request(param + " must be a list of 1 to " + std::to_string(kMaxChoices) + " strings", param);
    std::string g = "root ::=";
    for (size_t i = 0; i < value.size(); ++i) {
      if (!value[i].is_string()) return invalid_request(param + " must be a list of strings", nested_param(param, i));
      g += (i ? " | " : " ") + structured::gbnf_literal(value[i].get<std::string>());
    }
    return g + "\n";
  }
  if (kind == "grammar") {
    if (!value.is_string()) return invalid_request(param + " must be a string (a GBNF grammar)", param);
    return value.get<std::string>();  // compiled (and its errors reported) with the others
  }
  return invalid_request(kind + " structured outputs are not supported by ember (json, regex, choice, grammar and "
                         "json_object are)", param);
}

void set_once(FieldReader& f, std::optional<StructuredOutput>& out, ApiResult<std::string> gbnf, const std::string& param) {
  if (f.failed()) return;
  if (!gbnf) return f.fail(gbnf.error());
  if (out) {
    return f.fail(invalid_request("Only one kind of structured output per request: both " + out->field + " and " +
                                  param + " are given", param));
  }
  out = StructuredOutput{std::move(gbnf).value(), param};
}

}  // namespace

void read_structured_output(FieldReader& f, std::string_view body, std::optional<StructuredOutput>& out) {
  OrderedBody ordered(body);
  if (const nlohmann::json* rf = f.find("response_format"); rf && !f.failed()) {
    if (!rf->is_object()) return f.fail_type("response_format", "an object", *rf);
    FieldReader rff(*rf, "response_format");
    std::string type;
    rff.read("type", type);
    if (rff.failed()) return f.fail(rff.error());
    if (type == "json_object") {
      set_once(f, out, structured::json_object_grammar(), "response_format");
    } else if (type == "json_schema") {
      const nlohmann::json* js = rff.find("json_schema");
      if (js == nullptr || !js->is_object())
        return f.fail(invalid_request("response_format.json_schema must be an object with the schema under 'schema'",
                                      "response_format.json_schema"));
      // OpenAI sends the schema under "schema"; absent, any JSON object will do.
      const auto schema = js->find("schema");
      if (schema == js->end() || schema->is_null())
        set_once(f, out, structured::json_object_grammar(), "response_format.json_schema");
      else
        set_once(f, out,
                 grammar_for("json", *schema, "response_format.json_schema.schema",
                             ordered.at({"response_format", "json_schema", "schema"})),
                 "response_format.json_schema.schema");
    } else if (type != "text") {
      return f.fail(invalid_request("response_format.type must be 'text', 'json_object' or 'json_schema', not '" +
                                    type + "'", "response_format.type"));
    }
  }
  if (const nlohmann::json* so = f.find("structured_outputs"); so && !f.failed()) {
    if (!so->is_object()) return f.fail_type("structured_outputs", "an object", *so);
    for (const auto& [key, value] : so->items()) {
      if (value.is_null() || key == "disable_fallback" || key == "disable_any_whitespace" ||
          key == "disable_additional_properties" || key == "whitespace_pattern")
        continue;  // options of vLLM's backends, not constraints
      if (key == "json_object" && value == false) continue;
      set_once(f, out,
               grammar_for(key, value, "structured_outputs." + key,
                           key == "json" ? ordered.at({"structured_outputs", "json"}) : nullptr),
               "structured_outputs." + key);
    }
  }
  for (const char* kind : {"json", "regex", "choice", "grammar"}) {
    const std::string key = std::string("guided_") + kind;
    if (const nlohmann::json* v = f.find(key.c_str()); v && !f.failed())
      set_once(f, out, grammar_for(kind, *v, key, key == "guided_json" ? ordered.at({"guided_json"}) : nullptr), key);
  }
}

}  // namespace ember
