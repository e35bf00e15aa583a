// POST /v1/completions and /v1/chat/completions: parse, tokenize, submit one
// engine request per prompt (the engine fans out n), then either wait and
// answer with one JSON object or stream SSE chunks as the deltas arrive (a chat
// answer with tools through a ToolCallParser per choice: tool_calls.h).
// A client that goes away aborts its requests at once, so their KV blocks
// return to the pool: mid-stream, the failed write says so; without
// streaming, a request still running after a second is answered chunked,
// with a space (JSON's leading whitespace) written every second until the
// object is ready, and a failed write says so.

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>

#include <spdlog/spdlog.h>

#include "server/server_impl.h"

namespace ember {
namespace {

constexpr auto kPoll = std::chrono::milliseconds(50);
// A non-streaming request running longer than this is answered chunked, a space every kProbe (see the top).
constexpr auto kProbe = std::chrono::seconds(1);

}  // namespace

// (Outside the anonymous namespace: HttpServer::Impl::start_chat names it.)
// One choice as it accumulates (non-streaming) or between chunks (streaming).
struct ChoiceState {
  std::string text;
  std::vector<LogprobEntry> logprobs;
  int32_t text_offset = 0;  // bytes of token text so far, for completions' text_offset
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
  FinishReason finish = FinishReason::kNone;
  StopReason stop_reason;
};

// The engine requests behind one HTTP request: one per prompt.
struct Generation {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  int32_t n = 1;
  bool want_logprobs = false;
  std::vector<int32_t> stop_token_ids;
  std::vector<uint64_t> ids;
  std::vector<std::shared_ptr<RequestStream>> streams;
  std::vector<int32_t> prompt_tokens;
  std::vector<ChoiceState> choices;  // prompt p, sample i at p * n + i
  bool aborted = false;

  void abort_all() {
    if (aborted) return;
    aborted = true;
    for (uint64_t id : ids) engine->abort(id);
  }
  bool done() const {
    for (const auto& s : streams)
      if (!s->done()) return false;
    return true;
  }
  // Applies the deltas that arrived for prompt p; returns the choices that changed.
  std::vector<int32_t> absorb(size_t p, const std::vector<SequenceDelta>& deltas,
                              std::vector<std::pair<int32_t, SequenceDelta>>* raw = nullptr) {
    std::vector<int32_t> touched;
    for (const SequenceDelta& d : deltas) {
      const int32_t index = static_cast<int32_t>(p) * n + d.index;
      ChoiceState& c = choices[static_cast<size_t>(index)];
      c.text += d.text;
      c.completion_tokens = std::max(c.completion_tokens, d.num_output_tokens);
      c.cached_tokens = std::max(c.cached_tokens, d.num_cached_tokens);
      if (want_logprobs) {
        for (const SampledToken& t : d.logprobs) {
          LogprobEntry e;
          e.token = tokenizer->token_bytes(t.token);
          e.logprob = t.logprob;
          for (const TokenLogprob& alt : t.top) e.top.push_back({tokenizer->token_bytes(alt.token), alt.logprob});
          e.text_offset = c.text_offset;
          c.text_offset += static_cast<int32_t>(e.token.size());
          c.logprobs.push_back(std::move(e));
        }
      }
      if (d.finish != FinishReason::kNone) {
        c.finish = d.finish;
        if (d.finish == FinishReason::kStop && !d.stop_reason.empty()) {
          if (!d.stop_reason_is_token) {
            c.stop_reason = d.stop_reason;
          } else {
            const int32_t token = std::stoi(d.stop_reason);
            // EOS is not a requested stop: vLLM reports stop_reason null for it.
            if (std::find(stop_token_ids.begin(), stop_token_ids.end(), token) != stop_token_ids.end())
              c.stop_reason = token;
          }
        }
      }
      touched.push_back(index);
      if (raw) raw->emplace_back(index, d);
    }
    return touched;
  }
  Usage usage() const {
    Usage u;
    for (int32_t t : prompt_tokens) u.prompt_tokens += t;
    int32_t cached = 0;
    for (const ChoiceState& c : choices) {
      u.completion_tokens += c.completion_tokens;
      cached = std::max(cached, c.cached_tokens);
    }
    u.cached_tokens = cached;
    return u;
  }
};

namespace {

ApiError limit_error(const LimitViolation& v) {
  return invalid_request(v.message, v.param.empty() ? std::nullopt : std::optional<std::string>(v.param));
}

// Submits one engine request per prompt; on any failure, aborts what was
// submitted and returns the error (400 invalid, 503 overloaded or draining).
ApiResult<std::shared_ptr<Generation>> submit(Engine& engine, const Tokenizer& tokenizer,
                                              const std::vector<std::vector<int32_t>>& prompts,
                                              const SamplingParams& params, const std::optional<std::string>& salt,
                                              int32_t priority, const std::string& id) {
  auto g = std::make_shared<Generation>();
  g->engine = &engine;
  g->tokenizer = &tokenizer;
  g->n = params.n;
  g->want_logprobs = params.logprobs.has_value();
  g->stop_token_ids = params.stop_token_ids;
  g->choices.resize(prompts.size() * static_cast<size_t>(params.n));
  for (size_t p = 0; p < prompts.size(); ++p) {
    EngineRequest r;
    r.external_id = prompts.size() == 1 ? id : id + "-" + std::to_string(p);
    r.prompt_ids = prompts[p];
    r.params = params;
    r.cache_salt = salt.value_or("");
    r.priority = priority;
    AddResult a = engine.add(std::move(r));
    if (a.code != AddResult::Code::kOk) {
      g->abort_all();
      if (a.code == AddResult::Code::kInvalid) return invalid_request(a.error);
      return overloaded(503, a.error);
    }
    g->ids.push_back(a.id);
    g->streams.push_back(a.stream);
    g->prompt_tokens.push_back(static_cast<int32_t>(prompts[p].size()));
  }
  return g;
}

void send_api_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503 || e.status == 429) res.set_header("Retry-After", "1");
  res.set_content(dump_body(to_json(e)), "application/json");
}

// Absorbs deltas until every sequence is done or `until` passes; true when done.
bool wait_until(Generation& g, std::chrono::steady_clock::time_point until) {
  while (!g.done() && std::chrono::steady_clock::now() < until) {
    for (size_t p = 0; p < g.streams.size(); ++p) g.absorb(p, g.streams[p]->pop(kPoll));
  }
  if (!g.done()) return false;
  for (size_t p = 0; p < g.streams.size(); ++p) g.absorb(p, g.streams[p]->pop(std::chrono::milliseconds(0)));
  return true;
}

bool dropped(const Generation& g) {
  for (const auto& s : g.streams)
    if (s->error()) return true;
  return false;
}

// The non-streaming answer: `body` builds the JSON object once every sequence
// is done. Within the first second it goes out whole (with its status); after
// that the response is chunked, and a space every second probes the client.
void respond_when_done(httplib::Response& res, std::shared_ptr<Generation> g, std::function<std::string()> body) {
  if (wait_until(*g, std::chrono::steady_clock::now() + kProbe)) {
    if (dropped(*g)) return send_api_error(res, internal_error("the engine dropped the request"));
    res.set_content(body(), "application/json");
    return;
  }
  res.set_chunked_content_provider(
      "application/json",
      [g, body](size_t, httplib::DataSink& sink) {
        if (!wait_until(*g, std::chrono::steady_clock::now() + kProbe)) {
          if (sink.write(" ", 1)) return true;
          g->abort_all();  // the client is gone
          return false;
        }
        // (the status is sent: a dropped request can only say so in the body)
        const std::string out =
            dropped(*g) ? dump_body(to_json(internal_error("the engine dropped the request"))) : body();
        if (!sink.write(out.data(), out.size())) {
          g->abort_all();
          return false;
        }
        sink.done();
        return true;
      },
      [g](bool success) {
        if (!success) g->abort_all();
      });
}

// Runs the SSE loop: `emit` turns one round of deltas into chunks. Returns
// false (and aborts) when the client is gone.
template <class Emit>
void stream_response(httplib::Response& res, std::shared_ptr<Generation> g, Emit emit,
                     std::function<std::string()> finale) {
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [g, emit, finale](size_t, httplib::DataSink& sink) {
        std::string out;
        for (size_t p = 0; p < g->streams.size(); ++p) {
          std::vector<std::pair<int32_t, SequenceDelta>> raw;
          g->absorb(p, g->streams[p]->pop(g->streams.size() == 1 ? kPoll : std::chrono::milliseconds(5)), &raw);
          for (auto& [index, delta] : raw) out += emit(index, delta);
        }
        const bool finished = g->done();
        if (finished) out += finale();
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          g->abort_all();
          return false;
        }
        if (finished) sink.done();
        return true;
      },
      [g](bool success) {
        if (!success) g->abort_all();  // the client went away: free its KV blocks now
      });
}

}  // namespace

ApiResult<std::string> HttpServer::Impl::render_chat(const std::vector<ChatMessage>& messages,
                                                     bool add_generation_prompt, bool continue_final_message,
                                                     const nlohmann::json& kwargs,
                                                     const std::optional<std::string>& request_template,
                                                     const ChatTools& tools) const {
  std::optional<ChatTemplate> own;
  const ChatTemplate* tmpl = chat_template ? &*chat_template : nullptr;
  if (request_template) {
    // As vLLM: a template from the request runs on the server only when the operator trusts its clients.
    if (!config.trust_request_chat_template)
      return invalid_request("chat_template in a request needs the server to run with --trust-request-chat-template",
                             "chat_template");
    auto parsed = ChatTemplate::parse(*request_template);
    if (!parsed) return invalid_request("chat_template: " + parsed.error().message, "chat_template");
    own = std::move(parsed).value();
    tmpl = &*own;
  }
  if (!tmpl)
    return invalid_request("this model has no chat template; start the server with --chat-template FILE", "messages");
  if (continue_final_message && (messages.empty() || messages.back().role != "assistant"))
    return invalid_request("continue_final_message needs a final assistant message", "continue_final_message");
  ChatTemplateOptions opt;
  opt.add_generation_prompt = add_generation_prompt && !continue_final_message;
  const Tokenizer& tok = *source->tokenizer;
  if (tok.bos_id() >= 0) opt.bos_token = tok.token_bytes(tok.bos_id());
  if (tok.eos_id() >= 0) opt.eos_token = tok.token_bytes(tok.eos_id());
  if (kwargs.is_object()) opt.extra_context = nlohmann::ordered_json::parse(kwargs.dump());
  // Tools reach the template's own `tools`, or, for a template that has none, the system message (chat_tools.h).
  std::vector<ChatMessage> instructed;
  const bool reads_tools = template_reads_tools(tmpl->source());
  if (!tools.definitions.empty() && reads_tools) opt.extra_context["tools"] = tools.definitions;
  if (!tools.definitions.empty() && !reads_tools && tools.instruct)
    instructed = with_tools_in_system_message(messages, tools.definitions);
  const std::vector<ChatMessage>& turns = instructed.empty() ? messages : instructed;
  nlohmann::json list = nlohmann::json::array();
  for (const ChatMessage& m : turns) list.push_back(to_template_json(m));
  auto rendered = tmpl->render(list, opt);
  if (!rendered) return invalid_request("chat template: " + rendered.error().message, "messages");
  std::string text = std::move(rendered).value();
  if (continue_final_message) {
    // As vLLM: cut what the template put after the final message's content,
    // so the model continues it.
    const std::string& last = turns.back().content.value_or("");
    const size_t at = last.empty() ? std::string::npos : text.rfind(last);
    if (at != std::string::npos) text.resize(at + last.size());
  }
  return text;
}

void HttpServer::Impl::handle_completions(const httplib::Request& req, httplib::Response& res) {
  if (!check_serving(res)) return;
  auto parsed = parse_completion_request(req.body, limits);
  if (!parsed) return send_error(res, parsed.error());
  CompletionRequest& r = *parsed;
  if (!check_model(r.model, res)) return;
  if (r.params.echo && r.params.logprobs)
    return send_error(res, invalid_request("echo with logprobs (prompt logprobs) is not supported", "echo"));
  if (!attach_grammar(r.structured, r.params, res)) return;
  const Tokenizer& tok = *source->tokenizer;
  std::vector<std::vector<int32_t>> prompts;
  for (const PromptInput& p : r.prompts) {
    std::vector<int32_t> ids = p.text ? tok.encode(*p.text, r.add_special_tokens) : p.token_ids;
    int32_t max_tokens = 0;
    if (auto bad = check_request_limits(ids, r.params.max_tokens, engine->request_limits(), max_tokens))
      return send_error(res, limit_error(*bad));
    prompts.push_back(std::move(ids));
  }
  ResponseHeader header{make_response_id("cmpl"), unix_now(), r.model.empty() ? model_name() : r.model};
  auto submitted = submit(*engine, tok, prompts, r.params, r.cache_salt, r.priority, header.id);
  if (!submitted) return send_api_error(res, submitted.error());
  std::shared_ptr<Generation> g = std::move(submitted).value();

  // echo: the prompt's text comes first in each choice's text.
  std::vector<std::string> echoed(prompts.size());
  if (r.params.echo)
    for (size_t p = 0; p < prompts.size(); ++p)
      echoed[p] = r.prompts[p].text ? *r.prompts[p].text : tok.decode(prompts[p], /*skip_special=*/false);

  if (!r.stream.stream) {
    return respond_when_done(res, g, [g, header, echoed]() {
      std::vector<CompletionChoiceOut> out;
      for (size_t i = 0; i < g->choices.size(); ++i) {
        ChoiceState& c = g->choices[i];
        CompletionChoiceOut o;
        o.index = static_cast<int32_t>(i);
        o.text = echoed[i / static_cast<size_t>(g->n)] + c.text;
        if (g->want_logprobs) o.logprobs = c.logprobs;
        o.finish_reason = c.finish;
        o.stop_reason = c.stop_reason;
        out.push_back(std::move(o));
      }
      return dump_body(build_completion(header, out, g->usage()));
    });
  }
  const bool include_usage = r.stream.include_usage, continuous = r.stream.continuous_usage_stats;
  header.usage_on_every_chunk = include_usage;
  auto first_sent = std::make_shared<std::vector<bool>>(g->choices.size(), false);
  auto emit = [g, header, echoed, first_sent, continuous](int32_t index, const SequenceDelta& d) {
    CompletionChoiceOut o;
    o.index = index;
    o.text = d.text;
    if (!(*first_sent)[static_cast<size_t>(index)]) {
      (*first_sent)[static_cast<size_t>(index)] = true;
      o.text = echoed[static_cast<size_t>(index / g->n)] + o.text;
    }
    if (g->want_logprobs) {
      const auto& all = g->choices[static_cast<size_t>(index)].logprobs;
      o.logprobs = std::vector<LogprobEntry>(all.end() - static_cast<ptrdiff_t>(d.logprobs.size()), all.end());
    }
    o.finish_reason = d.finish;
    if (d.finish != FinishReason::kNone) o.stop_reason = g->choices[static_cast<size_t>(index)].stop_reason;
    if (o.text.empty() && d.finish == FinishReason::kNone && d.logprobs.empty()) return std::string();
    return sse_event(build_completion_chunk(header, {o}, continuous ? std::optional<Usage>(g->usage()) : std::nullopt));
  };
  auto finale = [g, header, include_usage]() {
    std::string out;
    if (include_usage) out += sse_event(build_completion_chunk(header, {}, g->usage()));
    out += kSseDone;
    return out;
  };
  stream_response(res, g, emit, finale);
}

bool HttpServer::Impl::attach_grammar(const std::optional<StructuredOutput>& structured, SamplingParams& params,
                                      httplib::Response& res) const {
  if (!structured) return true;
  auto compiled = grammars->get(structured->gbnf);
  if (!compiled.ok()) {
    send_error(res, invalid_request("Cannot use " + structured->field + ": " + compiled.error().message, structured->field));
    return false;
  }
  params.grammar = *compiled;
  return true;
}

std::shared_ptr<Generation> HttpServer::Impl::start_chat(ChatCompletionRequest& r, const ResponseHeader& header,
                                                         httplib::Response& res) {
  Impl& s = *this;
  if (!s.check_model(r.model, res)) return nullptr;
  auto text = s.render_chat(r.messages, r.add_generation_prompt, r.continue_final_message, r.chat_template_kwargs,
                            r.chat_template, ChatTools{r.tools, r.tool_choice.mode != ToolChoice::Mode::kNone});
  if (!text) {
    s.send_error(res, text.error());
    return nullptr;
  }
  if (!s.attach_grammar(r.structured, r.params, res)) return nullptr;
  const Tokenizer& tok = *s.source->tokenizer;
  std::vector<int32_t> ids = tok.encode(*text, r.add_special_tokens);
  if (auto bad = check_request_limits(ids, r.requested_max_tokens, s.engine->request_limits(), r.params.max_tokens,
                                      PromptKind::kConversation)) {
    s.send_error(res, limit_error(*bad));
    return nullptr;
  }
  auto submitted = submit(*s.engine, tok, {ids}, r.params, r.cache_salt, r.priority, header.id);
  if (!submitted) {
    send_api_error(res, submitted.error());
    return nullptr;
  }
  return std::move(submitted).value();
}

void HttpServer::Impl::handle_chat(const httplib::Request& req, httplib::Response& res) {
  if (!check_serving(res)) return;
  auto parsed = parse_chat_request(req.body, limits);
  if (!parsed) return send_error(res, parsed.error());
  ChatCompletionRequest& r = *parsed;
  if (r.tool_choice.mode == ToolChoice::Mode::kAuto && !r.tools.empty() && !config.enable_auto_tool_choice) {
    return send_error(res, invalid_request("tool_choice \"auto\" needs the server to run with "
                                           "--enable-auto-tool-choice", "tool_choice"));
  }
  // The model's calls are read as --tool-call-parser says, else as its (or the request's) template teaches them.
  const ToolCallSyntax syntax =
      config.tool_call_parser.empty() && r.chat_template ? detect_tool_call_syntax(*r.chat_template) : tool_syntax;
  const std::optional<ToolCallOptions> tools = tool_call_options(r, syntax);
  // A model whose <tool_call> tag is a special token must keep its text for the parser (as vLLM's hermes parser).
  if (tools && syntax == ToolCallSyntax::kHermes) r.params.skip_special_tokens = false;
  ResponseHeader header{make_response_id("chatcmpl"), unix_now(), r.model.empty() ? model_name() : r.model};
  std::shared_ptr<Generation> g = start_chat(r, header, res);
  if (!g) return;

  if (!r.stream.stream) {
    return respond_when_done(res, g, [g, header, tools]() {
      std::vector<ChatChoiceOut> out;
      for (size_t i = 0; i < g->choices.size(); ++i) {
        ChoiceState& c = g->choices[i];
        ChatChoiceOut o;
        o.index = static_cast<int32_t>(i);
        o.role = "assistant";
        if (tools) {
          ParsedToolCalls message = parse_tool_calls(*tools, c.text);
          o.content = std::move(message.content);
          o.tool_calls = std::move(message.calls);
          o.called_tools = !o.tool_calls.empty();
        } else {
          o.content = c.text;
        }
        if (g->want_logprobs) o.logprobs = c.logprobs;
        o.finish_reason = c.finish;
        o.stop_reason = c.stop_reason;
        out.push_back(std::move(o));
      }
      return dump_body(build_chat_completion(header, out, g->usage()));
    });
  }
  const bool include_usage = r.stream.include_usage, continuous = r.stream.continuous_usage_stats;
  header.usage_on_every_chunk = include_usage;
  // Every choice opens with a role chunk, sent before any generated text.
  std::string opening;
  for (size_t i = 0; i < g->choices.size(); ++i) {
    ChatChoiceOut o;
    o.index = static_cast<int32_t>(i);
    o.role = "assistant";
    o.content = "";
    opening += sse_event(build_chat_chunk(header, {o}));
  }
  auto opened = std::make_shared<bool>(false);
  // With tools, each choice's text goes through its own parser: content and tool-call pieces come out.
  auto parsers = std::make_shared<std::vector<ToolCallParser>>();
  if (tools) parsers->assign(g->choices.size(), ToolCallParser(*tools));
  auto emit = [g, header, continuous, opening, opened, parsers](int32_t index, const SequenceDelta& d) {
    std::string out;
    if (!*opened) {
      *opened = true;
      out = opening;
    }
    ChatChoiceOut o;
    o.index = index;
    if (parsers->empty()) {
      if (!d.text.empty() || d.finish == FinishReason::kNone) o.content = d.text;
    } else {
      ToolCallParser& parser = (*parsers)[static_cast<size_t>(index)];
      ToolCallChunk piece = d.finish == FinishReason::kNone ? parser.feed(d.text) : parser.finish(d.text);
      if (!piece.content.empty()) o.content = std::move(piece.content);
      o.tool_calls = std::move(piece.calls);
      o.called_tools = parser.num_calls() > 0;
    }
    if (g->want_logprobs && !d.logprobs.empty()) {
      const auto& all = g->choices[static_cast<size_t>(index)].logprobs;
      o.logprobs = std::vector<LogprobEntry>(all.end() - static_cast<ptrdiff_t>(d.logprobs.size()), all.end());
    }
    o.finish_reason = d.finish;
    if (d.finish != FinishReason::kNone) o.stop_reason = g->choices[static_cast<size_t>(index)].stop_reason;
    if (o.content.value_or("").empty() && o.tool_calls.empty() && d.finish == FinishReason::kNone && d.logprobs.empty())
      return out;
    return out + sse_event(build_chat_chunk(header, {o}, continuous ? std::optional<Usage>(g->usage()) : std::nullopt));
  };
  auto finale = [g, header, include_usage, opening, opened]() {
    std::string out = *opened ? std::string() : opening;
    *opened = true;
    if (include_usage) out += sse_event(build_chat_chunk(header, {}, g->usage()));
    out += kSseDone;
    return out;
  };
  stream_response(res, g, emit, finale);
}

void HttpServer::Impl::handle_responses(const httplib::Request& req, httplib::Response& res) {
  if (!check_serving(res)) return;
  auto parsed = parse_responses_request(req.body, limits);
  if (!parsed) return send_error(res, parsed.error());
  ChatCompletionRequest& r = parsed->chat;
  ResponseHeader header{make_response_id("resp"), unix_now(), r.model.empty() ? model_name() : r.model};
  std::shared_ptr<Generation> g = start_chat(r, header, res);
  if (!g) return;
  ResponseObject base;
  base.id = header.id;
  base.message_id = make_response_id("msg");
  base.created_at = header.created;
  base.model = header.model;
  base.instructions = parsed->instructions;
  base.max_output_tokens = r.requested_max_tokens;
  base.temperature = r.params.temperature;
  base.top_p = r.params.top_p;
  base.metadata = parsed->metadata;
  // The finished response: "incomplete" when max_output_tokens cut it, as OpenAI says it.
  const auto finished = [g, base]() {
    ResponseObject o = base;
    const ChoiceState& c = g->choices.front();
    o.status = c.finish == FinishReason::kLength ? "incomplete" : "completed";
    if (c.finish == FinishReason::kLength) o.incomplete_reason = "max_output_tokens";
    o.text = c.text;
    o.usage = g->usage();
    return o;
  };
  if (!r.stream.stream) return respond_when_done(res, g, [finished]() { return dump_body(build_response(finished())); });

  // Events as OpenAI sends them: created, in_progress, the message item and its text part opened, text deltas,
  // then each closed, and completed (or incomplete) with the whole response.
  auto sequence = std::make_shared<int64_t>(0);
  auto opened = std::make_shared<bool>(false);
  const nlohmann::json item_open = {{"type", "message"}, {"id", base.message_id}, {"status", "in_progress"},
                                    {"role", "assistant"}, {"content", nlohmann::json::array()}};
  const nlohmann::json part_open = {{"type", "output_text"}, {"text", ""}, {"annotations", nlohmann::json::array()}};
  const auto open = [base, sequence, opened, item_open, part_open]() {
    if (*opened) return std::string();
    *opened = true;
    const nlohmann::json created = build_response(base);
    // (one statement each: the numbering must follow the order)
    std::string out = response_event("response.created", {{"response", created}}, *sequence);
    out += response_event("response.in_progress", {{"response", created}}, *sequence);
    out += response_event("response.output_item.added", {{"output_index", 0}, {"item", item_open}}, *sequence);
    out += response_event("response.content_part.added",
                          {{"item_id", base.message_id}, {"output_index", 0}, {"content_index", 0}, {"part", part_open}},
                          *sequence);
    return out;
  };
  auto emit = [base, sequence, open](int32_t, const SequenceDelta& d) {
    std::string out = open();
    if (!d.text.empty())
      out += response_event("response.output_text.delta",
                            {{"item_id", base.message_id}, {"output_index", 0}, {"content_index", 0},
                             {"delta", sanitize_utf8(d.text)}, {"logprobs", nlohmann::json::array()}},
                            *sequence);
    return out;
  };
  auto finale = [base, sequence, open, finished]() {
    const ResponseObject done = finished();
    const nlohmann::json whole = build_response(done);
    const nlohmann::json& item = whole["output"][0];
    const nlohmann::json& part = item["content"][0];
    const nlohmann::json where = {{"item_id", base.message_id}, {"output_index", 0}, {"content_index", 0}};
    nlohmann::json text_done = where, part_done = where;
    text_done["text"] = part["text"];
    text_done["logprobs"] = nlohmann::json::array();
    part_done["part"] = part;
    std::string out = open();
    out += response_event("response.output_text.done", text_done, *sequence);
    out += response_event("response.content_part.done", part_done, *sequence);
    out += response_event("response.output_item.done", {{"output_index", 0}, {"item", item}}, *sequence);
    out += response_event(done.status == "completed" ? "response.completed" : "response.incomplete",
                          {{"response", whole}}, *sequence);
    return out;
  };
  stream_response(res, g, emit, finale);
}

}  // namespace ember
