// A chat request's tools, tool_choice and parallel_tool_calls, checked as OpenAI checks them; tool_choice
// "required" or a named function becomes the grammar that forces it (as vLLM forces them).

#include <algorithm>

#include "engine/structured/json_schema.h"
#include "server/request_fields.h"

namespace ember {
namespace {

using nlohmann::json;

ApiError missing(const std::string& param) {
  return invalid_request("Missing required parameter: '" + param + "'.", param);
}

bool valid_name(const std::string& name) {
  const auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  };
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), allowed);
}

// One {"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}; its name joins `names`.
void read_tool(FieldReader& f, const json& tool, const std::string& param, std::vector<std::string>& names) {
  if (!tool.is_object()) return f.fail_type(param, "an object", tool);
  FieldReader tf(tool, param);
  std::string type = "function";  // (vLLM's default when it is left out)
  tf.read("type", type);
  if (!tf.failed() && type != "function")
    tf.fail(invalid_request("Invalid value: '" + type + "'. Supported values are: 'function'.", param + ".type"));
  const json* fn = tf.failed() ? nullptr : tf.find("function");
  if (!tf.failed() && !fn) tf.fail(missing(param + ".function"));
  if (tf.failed()) return f.fail(tf.error());
  const std::string fn_param = param + ".function";
  if (!fn->is_object()) return f.fail_type(fn_param, "an object", *fn);
  FieldReader ff(*fn, fn_param);
  std::string name;
  std::optional<std::string> description;
  bool strict = false;
  if (!ff.find("name")) return f.fail(missing(fn_param + ".name"));
  ff.read("name", name);
  ff.read("description", description);
  ff.read("strict", strict);
  if (ff.failed()) return f.fail(ff.error());
  if (!valid_name(name)) {
    return f.fail(invalid_request("Invalid '" + fn_param +
                                      ".name': string does not match pattern. Expected a string "
                                      "that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
                                  fn_param + ".name"));
  }
  if (std::find(names.begin(), names.end(), name) != names.end())
    return f.fail(invalid_request("Duplicate function name '" + name + "' in 'tools'.", fn_param + ".name"));
  if (const json* p = ff.find("parameters")) {
    if (!p->is_object()) return f.fail_type(fn_param + ".parameters", "an object", *p);
    if (const auto t = p->find("type"); t != p->end() && *t != "object") {
      return f.fail(invalid_request("Invalid schema for function '" + name + "': schema must be a JSON Schema of " +
                                        "'type: \"object\"', got 'type: " + t->dump() + "'.",
                                    fn_param + ".parameters"));
    }
  }
  names.push_back(name);
}

void read_tool_choice(FieldReader& f, const std::vector<std::string>& names, ToolChoice& out) {
  using Mode = ToolChoice::Mode;
  out.mode = names.empty() ? Mode::kNone : Mode::kAuto;
  const json* v = f.find("tool_choice");
  if (!v || f.failed()) return;
  if (v->is_string()) {
    const std::string s = v->get<std::string>();
    if (s == "none") {
      out.mode = Mode::kNone;
    } else if (s == "auto") {
      out.mode = Mode::kAuto;
    } else if (s == "required") {
      out.mode = Mode::kRequired;
    } else {
      return f.fail(invalid_request("Invalid value: '" + s + "'. Supported values are: 'none', 'auto' and 'required'.",
                                    "tool_choice"));
    }
  } else if (v->is_object()) {
    FieldReader cf(*v, "tool_choice");
    std::string type;
    if (!cf.find("type")) return f.fail(missing("tool_choice.type"));
    cf.read("type", type);
    if (!cf.failed() && type != "function")
      cf.fail(invalid_request("Invalid value: '" + type + "'. Supported values are: 'function'.", "tool_choice.type"));
    const json* fn = cf.failed() ? nullptr : cf.find("function");
    if (!cf.failed() && !fn) cf.fail(missing("tool_choice.function"));
    if (cf.failed()) return f.fail(cf.error());
    if (!fn->is_object()) return f.fail_type("tool_choice.function", "an object", *fn);
    FieldReader ff(*fn, "tool_choice.function");
    if (!ff.find("name")) return f.fail(missing("tool_choice.function.name"));
    ff.read("name", out.name);
    if (ff.failed()) return f.fail(ff.error());
    out.mode = Mode::kNamed;
  } else {
    return f.fail_type("tool_choice", "a string or an object", *v);
  }
  if ((out.mode == Mode::kRequired || out.mode == Mode::kNamed) && names.empty()) {
    return f.fail(
        invalid_request("tool_choice " + v->dump() + " needs 'tools': there is no function to call.", "tool_choice"));
  }
  if (out.mode == Mode::kNamed && std::find(names.begin(), names.end(), out.name) == names.end())
    return f.fail(invalid_request("Tool '" + out.name + "' has not been passed in 'tools'.", "tool_choice"));
}

// A function's parameters schema; none means no parameters at all ("{}").
json parameters_schema(const json& tool) {
  const json& fn = tool["function"];
  if (const auto p = fn.find("parameters"); p != fn.end() && !p->is_null()) return *p;
  return {{"type", "object"}, {"properties", json::object()}, {"additionalProperties", false}};
}

// The grammar of what tool_choice forces: the named function's arguments, or (required) a list of calls
// [{"name", "parameters"}] of at least one (exactly one without parallel tool calls). Each function's schema is
// compiled alone first, so that an unsupported one is blamed on that function.
std::optional<ApiError> force_tool_choice(const json& tools, const std::vector<std::string>& names,
                                          ChatCompletionRequest& r) {
  json any_of = json::array();
  for (size_t i = 0; i < names.size(); ++i) {
    if (r.tool_choice.mode == ToolChoice::Mode::kNamed && names[i] != r.tool_choice.name) continue;
    const json schema = parameters_schema(tools[i]);
    auto grammar = structured::json_schema_grammar(schema);
    if (!grammar) {
      return invalid_request("Invalid schema for function '" + names[i] + "': " + grammar.error().message,
                             nested_param("tools", i) + ".function.parameters");
    }
    if (r.tool_choice.mode == ToolChoice::Mode::kNamed) {
      r.structured = StructuredOutput{std::move(grammar).value(), "tool_choice"};
      return std::nullopt;
    }
    any_of.push_back({{"type", "object"},
                      {"properties", {{"name", {{"type", "string"}, {"enum", {names[i]}}}}, {"parameters", schema}}},
                      {"required", {"name", "parameters"}},
                      {"additionalProperties", false}});
  }
  json list = {{"type", "array"}, {"minItems", 1}, {"items", {{"anyOf", std::move(any_of)}}}};
  if (!r.parallel_tool_calls) list["maxItems"] = 1;
  auto grammar = structured::json_schema_grammar(list);
  if (!grammar) return invalid_request("tool_choice \"required\": " + grammar.error().message, "tool_choice");
  r.structured = StructuredOutput{std::move(grammar).value(), "tool_choice"};
  return std::nullopt;
}

}  // namespace

nlohmann::ordered_json read_tool_definitions(FieldReader& f, std::string_view body, std::vector<std::string>& names) {
  auto list = nlohmann::ordered_json::array();
  const json* tools = f.find("tools");
  if (tools && !f.failed()) {
    if (!tools->is_array()) {
      f.fail_type("tools", "an array", *tools);
      return list;
    }
    for (size_t i = 0; i < tools->size() && !f.failed(); ++i)
      read_tool(f, (*tools)[i], nested_param("tools", i), names);
  }
  if (f.failed() || names.empty()) return list;
  // The template sees the definitions with their keys in the client's order (the body parsed once more, keeping
  // it; its shape was checked when it was first parsed), each as {"type": "function", "function": {...}}.
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(body, nullptr, false);
  for (size_t i = 0; i < names.size(); ++i) {
    const nlohmann::ordered_json fn = ordered.is_discarded()
                                          ? nlohmann::ordered_json::parse((*tools)[i]["function"].dump())
                                          : ordered.at("tools").at(i).at("function");
    list.push_back({{"type", "function"}, {"function", fn}});
  }
  return list;
}

void read_tools(FieldReader& f, std::string_view body, ChatCompletionRequest& r) {
  std::vector<std::string> names;
  nlohmann::ordered_json definitions = read_tool_definitions(f, body, names);
  read_tool_choice(f, names, r.tool_choice);
  f.read("parallel_tool_calls", r.parallel_tool_calls);
  if (f.failed() || names.empty()) return;
  r.tools = std::move(definitions);
  // A forced tool_choice replaces any response_format: the output must be the call.
  if (r.tool_choice.mode == ToolChoice::Mode::kRequired || r.tool_choice.mode == ToolChoice::Mode::kNamed)
    if (auto e = force_tool_choice(*f.find("tools"), names, r)) f.fail(std::move(*e));
}

}  // namespace ember
