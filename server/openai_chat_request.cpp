// Parsing and validation of /v1/chat/completions bodies and their messages.

#include <algorithm>
#include <array>

#include "server/openai_protocol.h"
#include "server/request_fields.h"

namespace ember {
namespace {

constexpr std::array<std::string_view, 5> kRoles = {"system", "developer", "user", "assistant", "tool"};

// content: a string, or a list of {"type": "text", "text": ...} parts joined
// with "\n". Any other part type (image_url, input_audio, file, ...) is refused
// by name: ember serves text-only models.
void read_content(FieldReader& f, const std::string& msg_param, const std::string& role,
                  std::optional<std::string>& out) {
  const nlohmann::json* v = f.find("content");
  if (f.failed()) return;
  const std::string param = msg_param + ".content";
  if (!v) {
    // An assistant turn may have no content (it would carry tool calls).
    if (role != "assistant") f.fail(invalid_request("Missing required parameter: '" + param + "'.", param));
    return;
  }
  if (v->is_string()) {
    out = v->get<std::string>();
    return;
  }
  if (!v->is_array()) return f.fail_type(param, "a string or an array of content parts", *v);
  std::string joined;
  for (size_t i = 0; i < v->size(); ++i) {
    const nlohmann::json& part = (*v)[i];
    const std::string part_param = nested_param(param, i);
    if (!part.is_object()) return f.fail_type(part_param, "an object", part);
    FieldReader pf(part, part_param);
    std::string type;
    if (!pf.find("type")) {
      return f.fail(invalid_request("Missing required parameter: '" + part_param + ".type'.", part_param + ".type"));
    }
    pf.read("type", type);
    if (pf.failed()) return f.fail(pf.error());
    if (type != "text") {
      return f.fail(invalid_request("Content part type '" + type + "' is not supported: ember serves text-only " +
                                        "models; use {\"type\": \"text\", \"text\": ...}.",
                                    part_param + ".type"));
    }
    if (!pf.find("text")) {
      return f.fail(invalid_request("Missing required parameter: '" + part_param + ".text'.", part_param + ".text"));
    }
    std::string text;
    pf.read("text", text);
    if (pf.failed()) return f.fail(pf.error());
    if (i > 0) joined += '\n';
    joined += text;
  }
  out = std::move(joined);
}

// An assistant message's tool_calls, checked field by field; arguments that
// hold a JSON object are handed to the template as that object.
void read_tool_calls(FieldReader& f, const nlohmann::json& calls, const std::string& param, ChatMessage& msg) {
  if (!calls.is_array()) return f.fail_type(param, "an array", calls);
  if (msg.role != "assistant" && !calls.empty())
    return f.fail(invalid_request("Only assistant messages carry tool_calls.", param));
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    const nlohmann::json& call = calls[i];
    const std::string call_param = nested_param(param, i);
    if (!call.is_object()) return f.fail_type(call_param, "an object", call);
    FieldReader cf(call, call_param);
    std::optional<std::string> id, type;
    cf.read("id", id);
    cf.read("type", type);
    if (!cf.failed() && type && *type != "function")
      cf.fail(invalid_request("Invalid value: '" + *type + "'. Supported values are: 'function'.", call_param + ".type"));
    const nlohmann::json* fn = cf.failed() ? nullptr : cf.find("function");
    if (!cf.failed() && !fn)
      cf.fail(invalid_request("Missing required parameter: '" + call_param + ".function'.", call_param + ".function"));
    if (cf.failed()) return f.fail(cf.error());
    if (!fn->is_object()) return f.fail_type(call_param + ".function", "an object", *fn);
    FieldReader ff(*fn, call_param + ".function");
    std::string name;
    if (!ff.find("name"))
      return f.fail(invalid_request("Missing required parameter: '" + call_param + ".function.name'.",
                                    call_param + ".function.name"));
    ff.read("name", name);
    if (ff.failed()) return f.fail(ff.error());
    nlohmann::json arguments = nlohmann::json::object();
    if (const nlohmann::json* a = ff.find("arguments")) {
      if (a->is_string()) {
        nlohmann::json parsed = nlohmann::json::parse(a->get<std::string>(), nullptr, false);
        arguments = parsed.is_object() ? std::move(parsed) : *a;
      } else if (a->is_object()) {
        arguments = *a;
      } else {
        return f.fail_type(call_param + ".function.arguments", "a string", *a);
      }
    }
    nlohmann::json entry = {{"type", "function"}, {"function", {{"name", name}, {"arguments", arguments}}}};
    if (id) entry["id"] = *id;
    out.push_back(std::move(entry));
  }
  msg.tool_calls = std::move(out);
}

}  // namespace

void read_messages(FieldReader& f, std::vector<ChatMessage>& out) {
  const nlohmann::json* v = f.find("messages");
  if (f.failed()) return;
  if (!v) return f.fail(invalid_request("Missing required parameter: 'messages'.", "messages"));
  if (!v->is_array()) return f.fail_type("messages", "an array", *v);
  if (v->empty()) return f.fail(invalid_request("'messages' must contain at least one message.", "messages"));
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const nlohmann::json& m = (*v)[i];
    const std::string param = nested_param("messages", i);
    if (!m.is_object()) return f.fail_type(param, "an object", m);
    FieldReader mf(m, param);
    ChatMessage msg;
    if (!mf.find("role")) {
      return f.fail(invalid_request("Missing required parameter: '" + param + ".role'.", param + ".role"));
    }
    mf.read("role", msg.role);
    if (mf.failed()) return f.fail(mf.error());
    if (std::find(kRoles.begin(), kRoles.end(), msg.role) == kRoles.end()) {
      return f.fail(invalid_request("Invalid value: '" + msg.role + "'. Supported values are: 'system', " +
                                        "'developer', 'user', 'assistant' and 'tool'.",
                                    param + ".role"));
    }
    read_content(mf, param, msg.role, msg.content);
    mf.read("name", msg.name);
    mf.read("tool_call_id", msg.tool_call_id);
    if (const nlohmann::json* calls = mf.find("tool_calls"); calls && !mf.failed())
      read_tool_calls(mf, *calls, param + ".tool_calls", msg);
    if (mf.failed()) return f.fail(mf.error());
    out.push_back(std::move(msg));
  }
}

nlohmann::json to_template_json(const ChatMessage& message) {
  // An absent content (an assistant turn that only calls tools) is "" as vLLM hands it over: templates
  // concatenate message['content'].
  nlohmann::json j = {{"role", message.role}, {"content", message.content.value_or("")}};
  if (message.name) j["name"] = *message.name;
  if (message.tool_call_id) j["tool_call_id"] = *message.tool_call_id;
  if (message.tool_calls && !message.tool_calls->empty()) j["tool_calls"] = *message.tool_calls;
  return j;
}

ApiResult<ChatCompletionRequest> parse_chat_request(std::string_view body, const ProtocolLimits& limits) {
  auto parsed = parse_request_object(body, limits.max_json_depth, limits.max_json_containers);
  if (!parsed) return parsed.error();
  FieldReader f(*parsed);
  ChatCompletionRequest r;
  f.read("model", r.model);
  read_messages(f, r.messages);

  // max_completion_tokens replaced max_tokens in the OpenAI API; when both are sent the new one wins.
  std::optional<int32_t> max_tokens, max_completion_tokens;
  f.read("max_tokens", max_tokens);
  f.read("max_completion_tokens", max_completion_tokens);
  const std::string max_param = max_completion_tokens ? "max_completion_tokens" : "max_tokens";
  r.requested_max_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  // Until the prompt is tokenized an unset max_tokens stands for the whole context.
  r.params.max_tokens = r.requested_max_tokens.value_or(limits.max_model_len);

  read_sampling_fields(f, r.params, limits);
  bool logprobs = false;
  f.read("logprobs", logprobs);
  f.read("top_logprobs", r.params.top_logprobs);
  read_stream_fields(f, r.stream);
  f.read("add_generation_prompt", r.add_generation_prompt);
  f.read("continue_final_message", r.continue_final_message);
  f.read("add_special_tokens", r.add_special_tokens);
  f.read("skip_special_tokens", r.params.skip_special_tokens);
  f.read_object("chat_template_kwargs", r.chat_template_kwargs);
  f.read("chat_template", r.chat_template);
  f.read("user", r.user);
  f.read("cache_salt", r.cache_salt);
  f.read("priority", r.priority);

  read_structured_output(f, body, r.structured);
  read_tools(f, body, r);  // (after response_format: a forced tool_choice replaces it)
  if (f.failed()) return f.error();

  // Chat's logprobs is a bool and top_logprobs the count; the engine wants the
  // count in params.logprobs. An out-of-range top_logprobs is reported once,
  // under its own name, by leaving params.logprobs in range.
  if (logprobs) {
    const int32_t k = r.params.top_logprobs;
    r.params.logprobs = (k >= 0 && k <= SamplingParams::kMaxLogprobs) ? k : 0;
  }
  if (auto e = check_sampling(r.params, limits, max_param, "top_logprobs")) return *e;
  if (r.add_generation_prompt && r.continue_final_message) {
    return invalid_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                           "continue_final_message");
  }
  if (r.continue_final_message && r.messages.back().role != "assistant") {
    return invalid_request("continue_final_message requires the last message to be from the assistant.",
                           "continue_final_message");
  }
  if (r.cache_salt && r.cache_salt->empty()) {
    return invalid_request("cache_salt must be a non-empty string when given", "cache_salt");
  }
  return r;
}

}  // namespace ember
