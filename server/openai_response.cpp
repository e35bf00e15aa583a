// Response objects of the OpenAI API, shaped as vLLM sends them (field names,
// nulls, the usage chunk), and their SSE framing.

#include <chrono>
#include <cmath>
#include <random>

#include "common/version.h"
#include "server/openai_protocol.h"

namespace ember {
namespace {

using nlohmann::json;

// JSON has no -inf/NaN; vLLM clamps logprobs to -9999.0 the same way.
double finite_logprob(float lp) { return std::isnan(lp) ? -9999.0 : std::max(static_cast<double>(lp), -9999.0); }

json stop_reason_json(const StopReason& r) {
  if (const auto* s = std::get_if<std::string>(&r)) return *s;
  if (const auto* id = std::get_if<int32_t>(&r)) return *id;
  return nullptr;
}

json byte_list(const std::string& raw) {
  json bytes = json::array();
  for (unsigned char c : raw) bytes.push_back(static_cast<int>(c));
  return bytes;
}

// Completions: {"tokens", "token_logprobs", "top_logprobs": [{token: lp}], "text_offset"}.
json completion_logprobs(const std::vector<LogprobEntry>& entries) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(sanitize_utf8(e.token));
    lps.push_back(e.logprob ? json(finite_logprob(*e.logprob)) : json(nullptr));
    if (!e.has_top) {
      tops.push_back(nullptr);
    } else {
      json top = json::object();
      // Two ids can decode to the same text: the first (the more likely) keeps the key, as a dict built in rank order
      // would not; vLLM overwrites, but a client reading "the best alternative" wants the higher one.
      for (const TokenAlternative& a : e.top) top.emplace(sanitize_utf8(a.token), finite_logprob(a.logprob));
      tops.push_back(std::move(top));
    }
    offsets.push_back(e.text_offset);
  }
  return {{"text_offset", offsets}, {"token_logprobs", lps}, {"tokens", tokens}, {"top_logprobs", tops}};
}

// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}.
json chat_logprobs(const std::vector<LogprobEntry>& entries) {
  json content = json::array();
  for (const LogprobEntry& e : entries) {
    json top = json::array();
    for (const TokenAlternative& a : e.top) {
      top.push_back({{"token", sanitize_utf8(a.token)}, {"logprob", finite_logprob(a.logprob)},
                     {"bytes", byte_list(a.token)}});
    }
    content.push_back({{"token", sanitize_utf8(e.token)},
                       {"logprob", finite_logprob(e.logprob.value_or(0.0f))},
                       {"bytes", byte_list(e.token)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

json completion_choice(const CompletionChoiceOut& c) {
  json j = {{"index", c.index},
            {"text", sanitize_utf8(c.text)},
            {"logprobs", c.logprobs ? completion_logprobs(*c.logprobs) : json(nullptr)},
            {"finish_reason", to_json(c.finish_reason)},
            {"stop_reason", stop_reason_json(c.stop_reason)}};
  if (!c.prompt_token_ids.empty()) j["prompt_token_ids"] = c.prompt_token_ids;
  return j;
}

// Tool calls in a message (whole) or in a delta (pieces: id, type and name only in a call's first).
json tool_calls_json(const std::vector<ToolCallOut>& calls, bool delta) {
  json out = json::array();
  for (const ToolCallOut& c : calls) {
    json call = json::object();
    if (delta) call["index"] = c.index;
    if (c.id) {
      call["id"] = *c.id;
      call["type"] = "function";
    }
    json fn = json::object();
    if (c.name) fn["name"] = *c.name;
    fn["arguments"] = sanitize_utf8(c.arguments);
    call["function"] = std::move(fn);
    out.push_back(std::move(call));
  }
  return out;
}

json chat_finish_reason(const ChatChoiceOut& c) {
  return c.called_tools && c.finish_reason == FinishReason::kStop ? json("tool_calls") : to_json(c.finish_reason);
}

json header(const ResponseHeader& h, const char* object) {
  json j = {{"id", h.id},
            {"object", object},
            {"created", h.created},
            {"model", h.model},
            {"system_fingerprint", "fp_ember_" EMBER_VERSION}};
  if (h.usage_on_every_chunk) j["usage"] = nullptr;  // as OpenAI: null until the usage chunk
  return j;
}

}  // namespace

json to_json(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kNone: break;
  }
  return nullptr;
}

json to_json(const Usage& usage) {
  json j = {{"prompt_tokens", usage.prompt_tokens},
            {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
            {"completion_tokens", usage.completion_tokens},
            {"prompt_tokens_details", nullptr}};
  if (usage.cached_tokens) j["prompt_tokens_details"] = {{"cached_tokens", *usage.cached_tokens}};
  return j;
}

std::string make_response_id(std::string_view prefix) {
  // 128 bits from the OS per id (like vLLM's uuid4().hex): no generator state to share between threads.
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(prefix);
  id += '-';
  for (int i = 0; i < 4; ++i) {
    uint32_t word = rd();
    for (int k = 0; k < 8; ++k, word >>= 4) id += kHex[word & 0xF];
  }
  return id;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json build_completion(const ResponseHeader& h, const std::vector<CompletionChoiceOut>& choices, const Usage& usage) {
  json j = header(h, "text_completion");
  j["choices"] = json::array();
  for (const auto& c : choices) j["choices"].push_back(completion_choice(c));
  j["usage"] = to_json(usage);
  return j;
}

json build_completion_chunk(const ResponseHeader& h, const std::vector<CompletionChoiceOut>& choices,
                            const std::optional<Usage>& usage) {
  json j = header(h, "text_completion");
  j["choices"] = json::array();
  for (const auto& c : choices) j["choices"].push_back(completion_choice(c));
  if (usage) j["usage"] = to_json(*usage);
  return j;
}

json build_chat_completion(const ResponseHeader& h, const std::vector<ChatChoiceOut>& choices, const Usage& usage) {
  json j = header(h, "chat.completion");
  j["choices"] = json::array();
  for (const auto& c : choices) {
    json message = {{"role", c.role.value_or("assistant")},
                    {"content", c.content ? json(sanitize_utf8(*c.content)) : json(nullptr)}};
    if (!c.tool_calls.empty()) message["tool_calls"] = tool_calls_json(c.tool_calls, /*delta=*/false);
    j["choices"].push_back({{"index", c.index},
                            {"message", std::move(message)},
                            {"logprobs", c.logprobs ? chat_logprobs(*c.logprobs) : json(nullptr)},
                            {"finish_reason", chat_finish_reason(c)},
                            {"stop_reason", stop_reason_json(c.stop_reason)}});
  }
  j["usage"] = to_json(usage);
  return j;
}

json build_chat_chunk(const ResponseHeader& h, const std::vector<ChatChoiceOut>& choices,
                      const std::optional<Usage>& usage) {
  json j = header(h, "chat.completion.chunk");
  j["choices"] = json::array();
  for (const auto& c : choices) {
    json delta = json::object();
    if (c.role) delta["role"] = *c.role;
    if (c.content) delta["content"] = sanitize_utf8(*c.content);
    if (!c.tool_calls.empty()) delta["tool_calls"] = tool_calls_json(c.tool_calls, /*delta=*/true);
    j["choices"].push_back({{"index", c.index},
                            {"delta", std::move(delta)},
                            {"logprobs", c.logprobs ? chat_logprobs(*c.logprobs) : json(nullptr)},
                            {"finish_reason", chat_finish_reason(c)},
                            {"stop_reason", stop_reason_json(c.stop_reason)}});
  }
  if (usage) j["usage"] = to_json(*usage);
  return j;
}

std::string dump_body(const json& payload) { return payload.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& payload) { return "data: " + dump_body(payload) + "\n\n"; }

json build_model_card(const ModelCard& m) {
  return {{"id", m.id},
          {"object", "model"},
          {"created", m.created},
          {"owned_by", "ember"},
          {"root", m.root},
          {"parent", nullptr},
          {"max_model_len", m.max_model_len},
          {"permission", json::array()}};
}

json build_model_list(const std::vector<ModelCard>& models) {
  json data = json::array();
  for (const ModelCard& m : models) data.push_back(build_model_card(m));
  return {{"object", "list"}, {"data", std::move(data)}};
}

json build_tokenize_response(const std::vector<int32_t>& tokens, int32_t max_model_len,
                             const std::optional<std::vector<std::string>>& token_strs) {
  json j = {{"count", tokens.size()}, {"max_model_len", max_model_len}, {"tokens", tokens}, {"token_strs", nullptr}};
  if (token_strs) {
    json strs = json::array();
    for (const auto& s : *token_strs) strs.push_back(sanitize_utf8(s));
    j["token_strs"] = std::move(strs);
  }
  return j;
}

json build_detokenize_response(const std::string& text) { return {{"prompt", sanitize_utf8(text)}}; }

json build_version_response() { return {{"version", EMBER_VERSION}}; }


}  // namespace ember
