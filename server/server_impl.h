#pragma once
// Internal to server/: the state the route handlers share. http_server.cpp
// sets up httplib, authentication and the small routes; generation_routes.cpp
// serves /v1/completions and /v1/chat/completions.

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <httplib.h>

#include "engine/engine.h"
#include "engine/structured/token_masks.h"
#include "models/chat/chat_template.h"
#include "models/model_source.h"
#include "server/chat_tools.h"
#include "server/http_connection.h"
#include "server/http_server.h"
#include "server/openai_protocol.h"

namespace ember {

struct Generation;  // generation_routes.cpp: the engine requests behind one HTTP request

struct HttpServer::Impl {
  ServerConfig config;
  std::unique_ptr<GuardedServer> http;  // made once the config is known
  std::thread listener;
  int bound_port = 0;

  // Set once by set_ready(), read by handlers after `ready` is seen true.
  const ModelSource* source = nullptr;
  Engine* engine = nullptr;
  std::optional<ChatTemplate> chat_template;
  ToolCallSyntax tool_syntax = ToolCallSyntax::kHermes;  // --tool-call-parser, else what the template teaches
  // Structured outputs: grammars compiled against the model's vocabulary, by their text.
  std::unique_ptr<structured::GrammarCache> grammars;
  ProtocolLimits limits;
  std::atomic<bool> ready{false};
  std::atomic<bool> accepting{true};
  int64_t created = 0;

  void install_routes();
  // Writes `error` as the response (status, OpenAI error JSON).
  static void send_error(httplib::Response& res, const ApiError& error);
  // 503 while loading or draining; 404 for a model name we do not serve.
  bool check_serving(httplib::Response& res) const;
  bool check_model(const std::string& model, httplib::Response& res) const;
  // A name this server answers to: a served name or an alias.
  bool serves(const std::string& model) const {
    const auto in = [&](const std::vector<std::string>& v) { return std::find(v.begin(), v.end(), model) != v.end(); };
    return in(config.served_model_names) || in(config.model_aliases);
  }
  std::string model_name() const { return config.served_model_names.front(); }

  // Tokenizes a rendered chat conversation; the ApiError says what was wrong.
  ApiResult<std::string> render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                     bool continue_final_message, const nlohmann::json& kwargs,
                                     const std::optional<std::string>& request_template,
                                     const ChatTools& tools = {}) const;

  // Compiles a request's structured output into params.grammar; false once a 400 is sent.
  bool attach_grammar(const std::optional<StructuredOutput>& structured, SamplingParams& params,
                      httplib::Response& res) const;

  void handle_completions(const httplib::Request& req, httplib::Response& res);
  void handle_chat(const httplib::Request& req, httplib::Response& res);
  void handle_responses(const httplib::Request& req, httplib::Response& res);
  // A chat request rendered, checked and submitted (chat completions and the Responses API); nullptr once an
  // error is sent.
  std::shared_ptr<Generation> start_chat(ChatCompletionRequest& r, const ResponseHeader& header,
                                         httplib::Response& res);
};

}  // namespace ember
