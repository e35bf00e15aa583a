// POST /v1/responses (OpenAI's Responses API), text only: the request becomes
// a chat completion request (instructions as the system message, input items
// as messages) so that it is validated, rendered and generated exactly as chat
// is; the response objects and stream events are the Responses API's.

#include <nlohmann/json.hpp>

#include "common/version.h"
#include "models/tokenizer/unicode.h"
#include "server/json_fields.h"
#include "server/openai_protocol.h"

namespace ember {
namespace {

using json = nlohmann::json;

ApiError unsupported_here(const std::string& what, const std::string& param) {
  return invalid_request(what + " is not supported by ember's Responses API (text in, text out, no stored state).",
                         param);
}

// One input item as a chat message: {"role", "content"} with content a string
// or a list of input_text / output_text parts ("type": "message" optional).
ApiResult<json> input_item(const json& item, const std::string& param) {
  if (!item.is_object()) return invalid_request("Invalid type for '" + param + "': expected an object.", param);
  if (auto t = item.find("type"); t != item.end() && !(t->is_string() && *t == "message"))
    return unsupported_here("Input items of type " + t->dump(), param + ".type");
  const auto role = item.find("role");
  if (role == item.end()) return invalid_request("Missing required parameter: '" + param + ".role'.", param + ".role");
  const auto content = item.find("content");
  if (content == item.end())
    return invalid_request("Missing required parameter: '" + param + ".content'.", param + ".content");
  json message = {{"role", *role}};
  if (content->is_array()) {
    json parts = json::array();
    for (size_t i = 0; i < content->size(); ++i) {
      const json& part = (*content)[i];
      const std::string part_param = param + ".content[" + std::to_string(i) + "]";
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
        return invalid_request("Invalid value for '" + part_param + "': expected a content part with a type.",
                               part_param);
      const std::string type = part["type"];
      if (type != "input_text" && type != "output_text" && type != "text")
        return unsupported_here("Content parts of type '" + type + "'", part_param + ".type");
      parts.push_back({{"type", "text"}, {"text", part.value("text", json())}});
    }
    message["content"] = std::move(parts);
  } else {
    message["content"] = *content;
  }
  return message;
}

// Chat's params named as the Responses API names them.
ApiError renamed(ApiError e) {
  if (!e.param) return e;
  std::string& p = *e.param;
  if (p.rfind("messages", 0) == 0) p.replace(0, 8, "input");
  if (p == "max_completion_tokens" || p == "max_tokens") p = "max_output_tokens";
  return e;
}

}  // namespace

ApiResult<ResponsesRequest> parse_responses_request(std::string_view body, const ProtocolLimits& limits) {
  auto parsed = parse_request_object(body, limits.max_json_depth, limits.max_json_containers);
  if (!parsed) return parsed.error();
  const json& b = *parsed;
  ResponsesRequest out;
  for (const char* key : {"previous_response_id", "conversation", "prompt"}) {
    if (auto it = b.find(key); it != b.end() && !it->is_null())
      return unsupported_here(std::string("'") + key + "'", key);
  }
  if (auto it = b.find("background"); it != b.end() && *it == true) return unsupported_here("'background'", "background");
  if (auto it = b.find("tools"); it != b.end() && !(it->is_array() && it->empty()) && !it->is_null())
    return unsupported_here("Tools", "tools");
  if (auto it = b.find("text"); it != b.end() && it->is_object() && it->contains("format")) {
    const json& f = (*it)["format"];
    if (!f.is_object() || f.value("type", "") != "text") return unsupported_here("A text format other than text", "text.format");
  }
  // The chat request it becomes.
  json chat = json::object();
  json messages = json::array();
  if (auto it = b.find("instructions"); it != b.end() && !it->is_null()) {
    if (!it->is_string()) return invalid_request("Invalid type for 'instructions': expected a string.", "instructions");
    out.instructions = it->get<std::string>();
    messages.push_back({{"role", "system"}, {"content", *out.instructions}});
  }
  const auto input = b.find("input");
  if (input == b.end() || input->is_null()) return invalid_request("Missing required parameter: 'input'.", "input");
  if (input->is_string()) {
    messages.push_back({{"role", "user"}, {"content", *input}});
  } else if (input->is_array()) {
    if (input->empty()) return invalid_request("'input' must contain at least one item.", "input");
    for (size_t i = 0; i < input->size(); ++i) {
      auto m = input_item((*input)[i], "input[" + std::to_string(i) + "]");
      if (!m) return m.error();
      messages.push_back(std::move(*m));
    }
  } else {
    return invalid_request("Invalid type for 'input': expected a string or an array of input items.", "input");
  }
  chat["messages"] = std::move(messages);
  for (const char* key : {"model", "temperature", "top_p", "seed", "stream", "user", "top_k", "min_p",
                          "repetition_penalty", "presence_penalty", "frequency_penalty", "stop", "ignore_eos"}) {
    if (auto it = b.find(key); it != b.end()) chat[key] = *it;
  }
  if (auto it = b.find("max_output_tokens"); it != b.end()) chat["max_completion_tokens"] = *it;
  if (auto it = b.find("metadata"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) return invalid_request("Invalid type for 'metadata': expected an object.", "metadata");
    out.metadata = *it;
  }
  auto r = parse_chat_request(chat.dump(), limits);
  if (!r) return renamed(r.error());
  out.chat = std::move(r).value();
  if (out.chat.params.n != 1) return invalid_request("'n' is not part of the Responses API.", "n");
  return out;
}

json build_response(const ResponseObject& r) {
  json output = json::array();
  if (r.status != "in_progress") {
    output.push_back({{"type", "message"},
                      {"id", r.message_id},
                      {"status", r.status == "completed" ? "completed" : "incomplete"},
                      {"role", "assistant"},
                      {"content", json::array({{{"type", "output_text"},
                                                {"text", sanitize_utf8(r.text)},
                                                {"annotations", json::array()},
                                                {"logprobs", json::array()}}})}});
  }
  json j = {{"id", r.id},
            {"object", "response"},
            {"created_at", r.created_at},
            {"status", r.status},
            {"model", r.model},
            {"output", std::move(output)},
            {"instructions", r.instructions ? json(*r.instructions) : json(nullptr)},
            {"max_output_tokens", r.max_output_tokens ? json(*r.max_output_tokens) : json(nullptr)},
            {"temperature", r.temperature},
            {"top_p", r.top_p},
            {"metadata", r.metadata},
            {"parallel_tool_calls", false},
            {"tool_choice", "none"},
            {"tools", json::array()},
            {"text", {{"format", {{"type", "text"}}}}},
            {"truncation", "disabled"},
            {"store", false},
            {"previous_response_id", nullptr},
            {"error", nullptr},
            {"incomplete_details", r.incomplete_reason ? json{{"reason", *r.incomplete_reason}} : json(nullptr)},
            {"usage", nullptr}};
  if (r.usage) {
    j["usage"] = {{"input_tokens", r.usage->prompt_tokens},
                  {"input_tokens_details", {{"cached_tokens", r.usage->cached_tokens.value_or(0)}}},
                  {"output_tokens", r.usage->completion_tokens},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", r.usage->prompt_tokens + r.usage->completion_tokens}};
  }
  return j;
}

std::string response_event(const std::string& type, json payload, int64_t& sequence) {
  payload["type"] = type;
  payload["sequence_number"] = sequence++;
  return "event: " + type + "\ndata: " + dump_body(payload) + "\n\n";
}

}  // namespace ember
