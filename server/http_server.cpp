#include "server/http_server.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <thread>

#include <sys/resource.h>

#include <spdlog/spdlog.h>

#include "server/openapi.h"
#include "server/server_impl.h"

namespace ember {
namespace {

// Compares without an early exit, so the time taken does not tell an
// attacker how much of the key was right.
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& longer = a.size() >= b.size() ? a : b;
  for (size_t i = 0; i < longer.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// Routes that need the API key: the OpenAI API and the tokenizer routes.
// /health, /metrics, /version and /openapi.json stay open, as in vLLM.
bool needs_auth(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize";
}

// The methods each route answers; another method on a known route is a 405.
std::string allowed_methods(const std::string& path) {
  static const std::map<std::string, std::string> kRoutes = {
      {"/health", "GET, HEAD"},     {"/version", "GET, HEAD"},  {"/openapi.json", "GET, HEAD"},
      {"/metrics", "GET, HEAD"},    {"/v1/models", "GET, HEAD"}, {"/tokenize", "POST"},
      {"/detokenize", "POST"},      {"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
      {"/v1/responses", "POST"}};
  const auto it = kRoutes.find(path);
  if (it == kRoutes.end()) return path.rfind("/v1/models/", 0) == 0 ? "GET, HEAD" : std::string();
  return it->second;
}

// Each connection holds a descriptor: lift the soft limit towards what the
// connection cap needs (the hard limit bounds it).
void raise_open_file_limit(rlim_t wanted) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= wanted) return;
  lim.rlim_cur = std::min(wanted, lim.rlim_max);
  setrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < wanted)
    spdlog::warn("open files are limited to {} (ulimit -n): fewer connections than --max-connections can be open",
                 lim.rlim_cur);
}

void send_json(httplib::Response& res, const nlohmann::json& body, int status = 200) {
  res.status = status;
  res.set_content(dump_body(body), "application/json");
}

}  // namespace

void HttpServer::Impl::send_error(httplib::Response& res, const ApiError& error) {
  send_json(res, to_json(error), error.status);
}

bool HttpServer::Impl::check_serving(httplib::Response& res) const {
  if (!ready.load()) {
    send_error(res, overloaded(503, "the model is still loading"));
    res.set_header("Retry-After", "5");
    return false;
  }
  if (!accepting.load()) {
    send_error(res, overloaded(503, "the server is shutting down"));
    return false;
  }
  return true;
}

bool HttpServer::Impl::check_model(const std::string& model, httplib::Response& res) const {
  // An absent model means the default one (vLLM accepts that too).
  if (model.empty()) return true;
  if (serves(model)) return true;
  send_error(res, model_not_found(model));
  return false;
}

void HttpServer::Impl::install_routes() {
  http->set_payload_max_length(config.max_body_bytes);

  http->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const std::string allowed = allowed_methods(req.path);
    // CORS, as vLLM's (Starlette's) middleware: preflights answered here, before auth (browsers send no key on
    // them); other responses to an allowed Origin carry Access-Control-Allow-Origin.
    const std::string origin = req.get_header_value("Origin");
    const bool any_origin = std::find(config.allowed_origins.begin(), config.allowed_origins.end(), "*") !=
                            config.allowed_origins.end();
    const bool origin_ok = !origin.empty() && (any_origin || std::find(config.allowed_origins.begin(),
                                                                       config.allowed_origins.end(),
                                                                       origin) != config.allowed_origins.end());
    if (origin_ok) {
      res.set_header("Access-Control-Allow-Origin", any_origin ? "*" : origin);
      if (!any_origin) res.set_header("Vary", "Origin");
    }
    if (req.method == "OPTIONS" && !origin.empty() && req.has_header("Access-Control-Request-Method")) {
      if (!origin_ok) {
        res.status = 400;
        res.set_content("Disallowed CORS origin", "text/plain");
        return httplib::Server::HandlerResponse::Handled;
      }
      res.status = 200;
      res.set_header("Access-Control-Allow-Methods", allowed.empty() ? "GET, HEAD, POST" : allowed);
      const std::string asked = req.get_header_value("Access-Control-Request-Headers");
      if (!asked.empty()) res.set_header("Access-Control-Allow-Headers", asked);
      res.set_header("Access-Control-Max-Age", "600");
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string method = req.method == "HEAD" ? "GET" : req.method;
    if (!allowed.empty() && allowed.find(method) == std::string::npos) {
      send_error(res, ApiError{405, "method " + req.method + " is not allowed on " + req.path + " (allowed: " +
                                        allowed + ")",
                               "invalid_request_error", std::nullopt, std::nullopt});
      res.set_header("Allow", allowed);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!config.api_key.empty() && needs_auth(req.path)) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      const std::string given = auth.rfind(prefix, 0) == 0 ? auth.substr(prefix.size()) : std::string();
      if (!constant_time_equal(given, config.api_key)) {
        send_error(res, unauthorized(!auth.empty()));
        res.set_header("WWW-Authenticate", "Bearer");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    // JSON bodies only as JSON: a browser's "simple" POST (text/plain, form
    // encodings) would otherwise reach the model without a CORS preflight.
    if (req.method == "POST" && needs_auth(req.path)) {
      std::string type = req.get_header_value("Content-Type");
      type = type.substr(0, type.find(';'));
      while (!type.empty() && type.back() == ' ') type.pop_back();
      std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
      if (type != "application/json") {
        send_error(res, ApiError{415,
                                 "Content-Type must be application/json" +
                                     (type.empty() ? std::string(" (none was given)") : ", got " + type),
                                 "invalid_request_error", std::nullopt, std::nullopt});
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // httplib calls this for statuses >= 400 that have no body yet: unknown
  // routes (404), bodies over the limit (413), malformed requests (400).
  http->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      send_error(res, route_not_found(req.method, req.path));
    } else if (res.status == 413) {
      send_error(res, body_too_large(config.max_body_bytes));
    } else if (res.status == 405) {
      send_error(res, ApiError{405, "method " + req.method + " is not allowed on " + req.path,
                               "invalid_request_error", std::nullopt, std::nullopt});
    } else {
      send_error(res, ApiError{res.status, "bad request", "invalid_request_error", std::nullopt, std::nullopt});
    }
  });
  http->set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("{} {}: internal error: {}", req.method, req.path, what);
    send_error(res, internal_error("internal error"));
  });

  http->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = ready.load() ? 200 : 503;
    if (res.status != 200 || config.health_stall_timeout_s <= 0) return;
    // A stuck engine must not look healthy: requests waiting, no step completed for the bound.
    const double stalled = std::chrono::duration<double>(engine->stalled_for()).count();
    if (stalled > config.health_stall_timeout_s) {
      res.status = 503;
      const std::string why = "the engine has had requests for " + std::to_string(static_cast<int64_t>(stalled)) +
                              " s without completing a step (--health-stall-timeout " +
                              std::to_string(config.health_stall_timeout_s) + ")";
      spdlog::warn("/health: {}", why);
      res.set_content(why + "\n", "text/plain");
    }
  });
  http->Get("/version", [](const httplib::Request&, httplib::Response& res) { send_json(res, build_version_response()); });
  http->Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) { send_json(res, openapi_document()); });
  http->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string text;
    if (ready.load()) text = engine->metrics().prometheus(model_name());
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  http->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    if (!check_serving(res)) return;
    std::vector<ModelCard> cards;
    for (const std::string& name : config.served_model_names)
      cards.push_back(ModelCard{name, created, source->path, limits.max_model_len});
    send_json(res, build_model_list(cards));
  });
  // The openai client's models.retrieve(id); ids may hold slashes ("org/name").
  http->Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
    if (!check_serving(res)) return;
    const std::string id = req.matches[1];
    if (!serves(id)) return send_error(res, model_not_found(id));
    send_json(res, build_model_card(ModelCard{id, created, source->path, limits.max_model_len}));
  });
  http->Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    if (!check_serving(res)) return;
    auto parsed = parse_tokenize_request(req.body, limits);
    if (!parsed) return send_error(res, parsed.error());
    if (!check_model(parsed->model, res)) return;
    std::string text;
    if (parsed->prompt) {
      text = *parsed->prompt;
    } else {
      auto rendered = render_chat(parsed->messages, parsed->add_generation_prompt, parsed->continue_final_message,
                                  parsed->chat_template_kwargs, std::nullopt, ChatTools{parsed->tools});
      if (!rendered) return send_error(res, rendered.error());
      text = *rendered;
    }
    const std::vector<int32_t> ids = source->tokenizer->encode(text, parsed->add_special_tokens);
    std::optional<std::vector<std::string>> strs;
    if (parsed->return_token_strs) {
      strs.emplace();
      for (int32_t id : ids) strs->push_back(source->tokenizer->token_bytes(id));
    }
    send_json(res, build_tokenize_response(ids, limits.max_model_len, strs));
  });
  http->Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    if (!check_serving(res)) return;
    auto parsed = parse_detokenize_request(req.body, limits);
    if (!parsed) return send_error(res, parsed.error());
    if (!check_model(parsed->model, res)) return;
    send_json(res, build_detokenize_response(source->tokenizer->decode(parsed->tokens, /*skip_special=*/true)));
  });
  http->Post("/v1/completions",
            [this](const httplib::Request& req, httplib::Response& res) { handle_completions(req, res); });
  http->Post("/v1/chat/completions",
            [this](const httplib::Request& req, httplib::Response& res) { handle_chat(req, res); });
  http->Post("/v1/responses",
             [this](const httplib::Request& req, httplib::Response& res) { handle_responses(req, res); });
}

HttpServer::HttpServer(ServerConfig config) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  ConnectionPolicy policy;
  policy.framing.max_body_bytes = impl_->config.max_body_bytes;
  policy.max_connections = impl_->config.max_connections;
  policy.max_connections_per_client = impl_->config.max_connections_per_client;
  policy.read_timeout_s = impl_->config.http_read_timeout_s;
  policy.keep_alive_timeout_s = impl_->config.http_keep_alive_timeout_s;
  policy.allowed_methods = allowed_methods;
  impl_->http = std::make_unique<GuardedServer>(policy);
  // httplib's default adds SO_REUSEPORT, which lets a second `ember serve` on the same port start and take a
  // share of the connections; SO_REUSEADDR alone lets a restart bind past TIME_WAIT and a second server fail.
  impl_->http->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (impl_->config.served_model_names.empty()) impl_->config.served_model_names.push_back("ember");
  impl_->created = unix_now();
  impl_->limits.max_n = impl_->config.max_n;
  impl_->limits.max_prompts = impl_->config.max_prompts_per_request;
  impl_->limits.max_sequences = impl_->config.max_sequences_per_request;
  impl_->install_routes();
}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start() {
  Impl& s = *impl_;
  raise_open_file_limit(static_cast<rlim_t>(s.config.max_connections) + 256);
  if (s.config.port == 0) {
    s.bound_port = s.http->bind_to_any_port(s.config.host);
    if (s.bound_port <= 0) return Error{"cannot bind " + s.config.host};
  } else {
    if (!s.http->bind_to_port(s.config.host, s.config.port))
      return Error{"cannot listen on " + s.config.host + ":" + std::to_string(s.config.port) +
                   " (address in use or not available)"};
    s.bound_port = s.config.port;
  }
  s.http->widen_backlog();
  s.listener = std::thread([&s] { s.http->listen_after_bind(); });
  // httplib's stop() does nothing until the listening loop has started, so a
  // stop() right after start() (a model that fails to load) would hang the
  // join: return only once it runs.
  for (int i = 0; i < 5000 && !s.http->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return Status::success();
}

int HttpServer::port() const { return impl_->bound_port; }

Status HttpServer::set_ready(const ModelSource& source, Engine& engine) {
  Impl& s = *impl_;
  const std::string& text = s.config.chat_template.empty() ? source.chat_template : s.config.chat_template;
  if (!text.empty()) {
    auto parsed = ChatTemplate::parse(text);
    if (!parsed) return Error{"chat template: " + parsed.error().message};
    s.chat_template = std::move(parsed).value();
  }
  if (auto named = tool_call_syntax(s.config.tool_call_parser)) {
    s.tool_syntax = *named;
  } else if (!s.config.tool_call_parser.empty()) {
    return Error{"--tool-call-parser " + s.config.tool_call_parser + ": expected hermes, llama3_json or mistral"};
  } else {
    s.tool_syntax = detect_tool_call_syntax(s.chat_template ? s.chat_template->source() : "");
    const bool instructed = s.chat_template && !template_reads_tools(s.chat_template->source());
    spdlog::info("tool calls: {} syntax (from the chat template{}; --tool-call-parser overrides)",
                 tool_call_syntax_name(s.tool_syntax), instructed ? ", which has no tools: ember instructs it" : "");
  }
  s.source = &source;
  s.engine = &engine;
  // The vocabulary as grammar text sees it: special tokens have no bytes (never allowed), EOS ends a grammar.
  std::vector<std::string> token_bytes(static_cast<size_t>(engine.vocab_size()));
  const Tokenizer& tok = *source.tokenizer;
  for (int32_t id = 0; id < std::min(engine.vocab_size(), tok.vocab_size()); ++id)
    if (!tok.is_special(id)) token_bytes[static_cast<size_t>(id)] = tok.token_bytes(id);
  s.grammars = std::make_unique<structured::GrammarCache>(
      std::make_shared<structured::Vocabulary>(std::move(token_bytes), engine.eos_ids()));
  s.limits.vocab_size = engine.vocab_size();
  s.limits.max_model_len = engine.scheduler_config().max_model_len;
  s.ready.store(true);
  return Status::success();
}

void HttpServer::stop_accepting() { impl_->accepting.store(false); }

void HttpServer::stop() {
  if (!impl_) return;
  impl_->http->stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

}  // namespace ember
