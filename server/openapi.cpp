#include "server/openapi.h"

#include "common/version.h"

namespace ember {
namespace {

using nlohmann::json;

json ref(const char* name) { return {{"$ref", std::string("#/components/schemas/") + name}}; }

json json_body(const json& schema) {
  return {{"required", true}, {"content", {{"application/json", {{"schema", schema}}}}}};
}

json responses(const json& ok_schema, bool sse = false) {
  json ok = {{"description", "OK"}, {"content", {{"application/json", {{"schema", ok_schema}}}}}};
  if (sse) ok["content"]["text/event-stream"] = {{"schema", {{"type", "string"}}}};
  const json err = {{"content", {{"application/json", {{"schema", ref("Error")}}}}}};
  json r = {{"200", ok}};
  for (const char* code : {"400", "401", "404", "413", "503"}) {
    json e = err;
    e["description"] = std::string("Error ") + code;
    r[code] = e;
  }
  return r;
}

json sampling_properties() {
  json number = {{"type", "number"}};
  json integer = {{"type", "integer"}};
  json stop = {{"oneOf", json::array({{{"type", "string"}}, {{"type", "array"}, {"items", {{"type", "string"}}}}})}};
  return {{"model", {{"type", "string"}}},
          {"max_tokens", {{"type", "integer"}, {"minimum", 1}}},
          {"temperature", {{"type", "number"}, {"minimum", 0}, {"maximum", 2}}},
          {"top_p", {{"type", "number"}, {"minimum", 0}, {"exclusiveMinimum", true}, {"maximum", 1}}},
          {"top_k", integer},
          {"min_p", {{"type", "number"}, {"minimum", 0}, {"maximum", 1}}},
          {"n", {{"type", "integer"}, {"minimum", 1}, {"maximum", 128}}},
          {"stream", {{"type", "boolean"}}},
          {"stream_options", {{"type", "object"}, {"properties", {{"include_usage", {{"type", "boolean"}}}}}}},
          {"stop", stop},
          {"stop_token_ids", {{"type", "array"}, {"items", integer}}},
          {"seed", integer},
          {"presence_penalty", {{"type", "number"}, {"minimum", -2}, {"maximum", 2}}},
          {"frequency_penalty", {{"type", "number"}, {"minimum", -2}, {"maximum", 2}}},
          {"repetition_penalty", {{"type", "number"}, {"minimum", 0}, {"exclusiveMinimum", true}}},
          {"logit_bias", {{"type", "object"}, {"additionalProperties", number}}},
          {"min_tokens", {{"type", "integer"}, {"minimum", 0}}},
          {"ignore_eos", {{"type", "boolean"}}},
          {"user", {{"type", "string"}}}};
}

}  // namespace

json openapi_document() {
  json completion_props = sampling_properties();
  completion_props["prompt"] = {
      {"oneOf", json::array({{{"type", "string"}},
                             {{"type", "array"}, {"items", {{"type", "string"}}}},
                             {{"type", "array"}, {"items", {{"type", "integer"}}}},
                             {{"type", "array"}, {"items", {{"type", "array"}, {"items", {{"type", "integer"}}}}}}})}};
  completion_props["logprobs"] = {{"type", "integer"}, {"minimum", 0}, {"maximum", 20}};
  completion_props["echo"] = {{"type", "boolean"}};
  json chat_props = sampling_properties();
  chat_props["messages"] = {{"type", "array"}, {"minItems", 1}, {"items", ref("ChatMessage")}};
  chat_props["max_completion_tokens"] = {{"type", "integer"}, {"minimum", 1}};
  chat_props["logprobs"] = {{"type", "boolean"}};
  chat_props["top_logprobs"] = {{"type", "integer"}, {"minimum", 0}, {"maximum", 20}};
  const json function_type = {{"type", "string"}, {"enum", {"function"}}};
  const json function_name = {{"type", "string"}, {"pattern", "^[a-zA-Z0-9_-]{1,64}$"}};
  chat_props["tools"] = {
      {"type", "array"},
      {"items",
       {{"type", "object"},
        {"required", {"type", "function"}},
        {"properties",
         {{"type", function_type},
          {"function",
           {{"type", "object"},
            {"required", {"name"}},
            {"properties",
             {{"name", function_name}, {"description", {{"type", "string"}}}, {"parameters", {{"type", "object"}}}}}}}}}}}};
  chat_props["tool_choice"] = {
      {"oneOf",
       json::array({{{"type", "string"}, {"enum", {"none", "auto", "required"}}},
                    {{"type", "object"},
                     {"required", {"type", "function"}},
                     {"properties",
                      {{"type", function_type},
                       {"function", {{"type", "object"}, {"required", {"name"}}, {"properties", {{"name", function_name}}}}}}}}})}};
  chat_props["parallel_tool_calls"] = {{"type", "boolean"}};

  json schemas = {
      {"Error",
       {{"type", "object"},
        {"required", {"error"}},
        {"properties",
         {{"error",
           {{"type", "object"},
            {"required", {"message", "type"}},
            {"properties",
             {{"message", {{"type", "string"}}},
              {"type", {{"type", "string"}}},
              {"param", {{"type", "string"}, {"nullable", true}}},
              {"code", {{"type", "string"}, {"nullable", true}}}}}}}}}}},
      {"CompletionRequest", {{"type", "object"}, {"required", {"prompt"}}, {"properties", completion_props}}},
      {"ChatMessage",
       {{"type", "object"},
        {"required", {"role"}},
        {"properties",
         {{"role", {{"type", "string"}, {"enum", {"system", "developer", "user", "assistant", "tool"}}}},
          {"content",
           {{"oneOf",
             json::array({{{"type", "string"}, {"nullable", true}},
                          {{"type", "array"},
                           {"items",
                            {{"type", "object"},
                             {"required", {"type", "text"}},
                             {"properties",
                              {{"type", {{"type", "string"}, {"enum", {"text"}}}}, {"text", {{"type", "string"}}}}}}}}})}}},
          {"name", {{"type", "string"}}}}}}},
      {"ChatCompletionRequest", {{"type", "object"}, {"required", {"messages"}}, {"properties", chat_props}}},
      {"TokenizeRequest",
       {{"type", "object"},
        {"properties",
         {{"model", {{"type", "string"}}},
          {"prompt", {{"type", "string"}}},
          {"messages", {{"type", "array"}, {"items", ref("ChatMessage")}}},
          {"add_special_tokens", {{"type", "boolean"}}}}}}},
      {"DetokenizeRequest",
       {{"type", "object"},
        {"required", {"tokens"}},
        {"properties", {{"model", {{"type", "string"}}}, {"tokens", {{"type", "array"}, {"items", {{"type", "integer"}}}}}}}}},
      {"ResponsesRequest",
       {{"type", "object"},
        {"required", {"input"}},
        {"properties",
         {{"model", {{"type", "string"}}},
          {"input", {{"oneOf", {{{"type", "string"}}, {{"type", "array"}, {"items", {{"type", "object"}}}}}}}},
          {"instructions", {{"type", "string"}}},
          {"max_output_tokens", {{"type", "integer"}}},
          {"temperature", {{"type", "number"}}},
          {"top_p", {{"type", "number"}}},
          {"stream", {{"type", "boolean"}}},
          {"metadata", {{"type", "object"}}}}}}},
      {"Object", {{"type", "object"}}}};

  json paths = {
      {"/v1/completions",
       {{"post", {{"operationId", "createCompletion"}, {"requestBody", json_body(ref("CompletionRequest"))},
                  {"responses", responses(ref("Object"), true)}}}}},
      {"/v1/chat/completions",
       {{"post", {{"operationId", "createChatCompletion"}, {"requestBody", json_body(ref("ChatCompletionRequest"))},
                  {"responses", responses(ref("Object"), true)}}}}},
      {"/v1/responses",
       {{"post", {{"operationId", "createResponse"}, {"requestBody", json_body(ref("ResponsesRequest"))},
                  {"responses", responses(ref("Object"), true)}}}}},
      {"/v1/models", {{"get", {{"operationId", "listModels"}, {"responses", responses(ref("Object"))}}}}},
      {"/v1/models/{model}",
       {{"get", {{"operationId", "retrieveModel"},
                 {"parameters",
                  {{{"name", "model"}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}}}},
                 {"responses", responses(ref("Object"))}}}}},
      {"/tokenize",
       {{"post", {{"operationId", "tokenize"}, {"requestBody", json_body(ref("TokenizeRequest"))},
                  {"responses", responses(ref("Object"))}}}}},
      {"/detokenize",
       {{"post", {{"operationId", "detokenize"}, {"requestBody", json_body(ref("DetokenizeRequest"))},
                  {"responses", responses(ref("Object"))}}}}},
      {"/health",
       {{"get", {{"operationId", "health"},
                 {"responses", {{"200", {{"description", "ready"}}}, {"503", {{"description", "loading"}}}}}}}}},
      {"/version", {{"get", {{"operationId", "version"}, {"responses", responses(ref("Object"))}}}}},
      {"/metrics",
       {{"get", {{"operationId", "metrics"},
                 {"responses",
                  {{"200", {{"description", "Prometheus text"},
                            {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}}}}}}}}};
  return {{"openapi", "3.0.3"},
          {"info", {{"title", "ember"}, {"version", EMBER_VERSION}, {"description", "OpenAI-compatible LLM server"}}},
          {"paths", paths},
          {"components",
           {{"schemas", schemas},
            {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}}};
}

}  // namespace ember
