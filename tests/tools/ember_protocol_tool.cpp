// Drives the OpenAI protocol layer for tests/integration/test_openai_protocol.py.
//   ember_protocol_tool MODE [VOCAB_SIZE] < input.json
// parse-completion | parse-chat | parse-tokenize | parse-detokenize:
//   input is a request body; prints {"ok": true, ...parsed fields...} or
//   {"ok": false, "status": N, "body": <error object>}.
// build-completion | build-chat: input {"id", "created", "model", "choices": [...], "usage": {...}};
//   prints the response JSON.
// stream-completion | stream-chat: input as above where each choice has "pieces"
//   ([{"text", "logprobs"?}]); prints the SSE stream a route would send.
// build-models | build-tokenize | build-detokenize | build-version: the small routes.
// Choices use the field names of server/openai_protocol.h.

#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "server/openai_protocol.h"

namespace {

using nlohmann::json;
using namespace ember;

json params_json(const SamplingParams& p) {
  json bias = json::object();
  for (const auto& [id, b] : p.logit_bias) bias[std::to_string(id)] = b;
  return {{"n", p.n}, {"max_tokens", p.max_tokens}, {"min_tokens", p.min_tokens}, {"temperature", p.temperature},
          {"top_p", p.top_p}, {"top_k", p.top_k}, {"min_p", p.min_p}, {"presence_penalty", p.presence_penalty},
          {"frequency_penalty", p.frequency_penalty}, {"repetition_penalty", p.repetition_penalty},
          {"logit_bias", bias}, {"seed", p.seed ? json(*p.seed) : json(nullptr)}, {"stop", p.stop},
          {"stop_token_ids", p.stop_token_ids}, {"ignore_eos", p.ignore_eos},
          {"logprobs", p.logprobs ? json(*p.logprobs) : json(nullptr)}, {"top_logprobs", p.top_logprobs},
          {"echo", p.echo}};
}

json stream_json(const StreamOptions& s) {
  return {{"stream", s.stream}, {"include_usage", s.include_usage}, {"continuous_usage_stats", s.continuous_usage_stats}};
}

json messages_json(const std::vector<ChatMessage>& messages) {
  json out = json::array();
  for (const auto& m : messages) out.push_back(to_template_json(m));
  return out;
}

template <class T>
json error_or(const ApiResult<T>& r, json ok) {
  if (!r) return {{"ok", false}, {"status", r.error().status}, {"body", to_json(r.error())}};
  ok["ok"] = true;
  return ok;
}

std::vector<LogprobEntry> logprobs_in(const json& list) {
  std::vector<LogprobEntry> out;
  for (const json& e : list) {
    LogprobEntry le;
    le.token = e.at("token").get<std::string>();
    if (!e.at("logprob").is_null()) le.logprob = e.at("logprob").get<float>();
    le.has_top = !e.at("top").is_null();
    if (le.has_top) {
      for (const json& t : e.at("top")) le.top.push_back({t.at(0).get<std::string>(), t.at(1).get<float>()});
    }
    le.text_offset = e.value("text_offset", 0);
    out.push_back(std::move(le));
  }
  return out;
}

FinishReason finish_in(const json& c) {
  const std::string f = c.value("finish_reason", "");
  return f == "stop" ? FinishReason::kStop : f == "length" ? FinishReason::kLength
                     : f == "abort"    ? FinishReason::kAbort : FinishReason::kNone;
}

StopReason stop_in(const json& c) {
  const json s = c.value("stop_reason", json(nullptr));
  if (s.is_string()) return s.get<std::string>();
  if (s.is_number()) return s.get<int32_t>();
  return {};
}

CompletionChoiceOut completion_choice_in(const json& c) {
  CompletionChoiceOut out;
  out.index = c.value("index", 0);
  out.text = c.value("text", "");
  if (c.contains("logprobs") && !c["logprobs"].is_null()) out.logprobs = logprobs_in(c["logprobs"]);
  out.finish_reason = finish_in(c);
  out.stop_reason = stop_in(c);
  return out;
}

ChatChoiceOut chat_choice_in(const json& c) {
  ChatChoiceOut out;
  out.index = c.value("index", 0);
  if (c.contains("content")) out.content = c["content"].get<std::string>();
  if (c.contains("logprobs") && !c["logprobs"].is_null()) out.logprobs = logprobs_in(c["logprobs"]);
  out.finish_reason = finish_in(c);
  out.stop_reason = stop_in(c);
  return out;
}

Usage usage_in(const json& u) {
  Usage usage{u.value("prompt_tokens", 0), u.value("completion_tokens", 0), std::nullopt};
  if (u.contains("cached_tokens")) usage.cached_tokens = u["cached_tokens"].get<int32_t>();
  return usage;
}

// The chunk sequence a streaming route sends: (chat) a role chunk per choice,
// one chunk per piece, a finish chunk per choice, the usage chunk, [DONE].
std::string stream(const json& in, bool chat) {
  const ResponseHeader h{in.at("id"), in.at("created"), in.at("model")};
  std::string out;
  for (const json& c : in.at("choices")) {
    const int32_t index = c.value("index", 0);
    if (chat) {
      ChatChoiceOut first;
      first.index = index;
      first.role = "assistant";
      first.content = "";
      out += sse_event(build_chat_chunk(h, {first}));
    }
    for (const json& piece : c.at("pieces")) {
      json p = piece;
      p["index"] = index;
      if (chat) {
        p["content"] = piece.at("text");
        out += sse_event(build_chat_chunk(h, {chat_choice_in(p)}));
      } else {
        out += sse_event(build_completion_chunk(h, {completion_choice_in(p)}));
      }
    }
    json fin = {{"index", index}, {"finish_reason", c.at("finish_reason")},
                {"stop_reason", c.value("stop_reason", json(nullptr))}};
    out += chat ? sse_event(build_chat_chunk(h, {chat_choice_in(fin)}))
                : sse_event(build_completion_chunk(h, {completion_choice_in(fin)}));
  }
  if (in.value("include_usage", false)) {
    const Usage u = usage_in(in.at("usage"));
    out += chat ? sse_event(build_chat_chunk(h, {}, u)) : sse_event(build_completion_chunk(h, {}, u));
  }
  out += kSseDone;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: ember_protocol_tool MODE [VOCAB_SIZE] < input.json\n";
    return 2;
  }
  const std::string mode = argv[1];
  ProtocolLimits limits;
  limits.vocab_size = argc > 2 ? std::stoi(argv[2]) : 49152;
  limits.max_model_len = 2048;
  const std::string body((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  json out;
  try {
    if (mode == "parse-completion") {
      auto r = parse_completion_request(body, limits);
      json prompts = json::array();
      if (r) {
        for (const auto& p : r->prompts) prompts.push_back(p.text ? json{{"text", *p.text}} : json{{"token_ids", p.token_ids}});
      }
      out = error_or(r, r ? json{{"model", r->model}, {"prompts", prompts}, {"params", params_json(r->params)},
                                 {"stream", stream_json(r->stream)}, {"user", r->user},
                                 {"skip_special_tokens", r->params.skip_special_tokens}}
                          : json());
    } else if (mode == "parse-chat") {
      auto r = parse_chat_request(body, limits);
      out = error_or(r, r ? json{{"model", r->model}, {"messages", messages_json(r->messages)},
                                 {"params", params_json(r->params)}, {"stream", stream_json(r->stream)},
                                 {"requested_max_tokens", r->requested_max_tokens ? json(*r->requested_max_tokens)
                                                                                  : json(nullptr)},
                                 {"add_generation_prompt", r->add_generation_prompt},
                                 {"chat_template_kwargs", r->chat_template_kwargs}, {"user", r->user}}
                          : json());
    } else if (mode == "parse-tokenize") {
      auto r = parse_tokenize_request(body, limits);
      out = error_or(r, r ? json{{"prompt", r->prompt ? json(*r->prompt) : json(nullptr)},
                                 {"messages", messages_json(r->messages)},
                                 {"add_special_tokens", r->add_special_tokens}}
                          : json());
    } else if (mode == "parse-detokenize") {
      auto r = parse_detokenize_request(body, limits);
      out = error_or(r, r ? json{{"tokens", r->tokens}} : json());
    } else if (mode == "build-completion" || mode == "build-chat") {
      const json in = json::parse(body);
      const ResponseHeader h{in.at("id"), in.at("created"), in.at("model")};
      const Usage u = usage_in(in.at("usage"));
      if (mode == "build-completion") {
        std::vector<CompletionChoiceOut> choices;
        for (const json& c : in.at("choices")) choices.push_back(completion_choice_in(c));
        out = build_completion(h, choices, u);
      } else {
        std::vector<ChatChoiceOut> choices;
        for (const json& c : in.at("choices")) choices.push_back(chat_choice_in(c));
        out = build_chat_completion(h, choices, u);
      }
    } else if (mode == "stream-completion" || mode == "stream-chat") {
      std::cout << stream(json::parse(body), mode == "stream-chat");
      return 0;
    } else if (mode == "build-models") {
      out = build_model_list({{"smol", 1700000000, "/models/smol.gguf", 2048}});
    } else if (mode == "build-tokenize") {
      out = build_tokenize_response({1, 2, 3}, 2048, std::vector<std::string>{"a", "b", "c"});
    } else if (mode == "build-detokenize") {
      out = build_detokenize_response("hello");
    } else if (mode == "build-version") {
      out = build_version_response();
    } else if (mode == "new-id") {
      out = {{"id", make_response_id("chatcmpl")}, {"created", unix_now()}};
    } else {
      std::cerr << "unknown mode " << mode << "\n";
      return 2;
    }
  } catch (const json::exception& e) {
    // Only the builder modes parse with exceptions: their input is the test's own, not a request.
    std::cerr << "bad tool input: " << e.what() << "\n";
    return 2;
  }
  std::cout << dump_body(out) << "\n";
  return 0;
}
