#pragma once
// The HTTP front end of `ember serve` (cpp-httplib): the OpenAI-compatible
// routes, /health, /metrics, /tokenize, /detokenize, /version, /openapi.json.
// It listens before the model is loaded (GET /health answers 503 until
// set_ready), talks to the engine only through Engine::add/abort and the
// per-request streams, and turns every failure into OpenAI's error object.

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"
#include "models/model_source.h"

namespace ember {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;                              // 0: any free port (see port())
  std::string api_key;                          // empty: no authentication
  std::vector<std::string> served_model_names;  // first is the one /v1/models lists first
  std::vector<std::string> model_aliases;       // also accepted as "model", not listed (the model's path)
  std::string chat_template;                    // Jinja source overriding the model's; empty: the model's
  size_t max_body_bytes = size_t{16} << 20;     // larger bodies get 413
  int32_t max_n = 128;
  int32_t max_prompts_per_request = 256;
  int32_t max_sequences_per_request = 512;   // prompts x n
  std::vector<std::string> allowed_origins = {"*"};  // CORS: origins browsers may call from ("*": any, as vLLM)
  bool trust_request_chat_template = false;   // a request's chat_template: 400 unless set
  std::string tool_call_parser;               // hermes | llama3_json | mistral; empty: from the chat template
  bool enable_auto_tool_choice = true;        // false: tool_choice "auto" with tools is a 400 (vLLM without the flag)
  double health_stall_timeout_s = 120.0;     // /health 503 when the engine has work but no step this long; 0: never
  // Connections (server/http_connection.h): caps, and how long a request may take to arrive.
  int max_connections = 2048;                // open connections in total; beyond: 503
  int max_connections_per_client = 512;      // per client address; 0: no cap
  double http_read_timeout_s = 10.0;         // a request's head must arrive within this (408)
  double http_keep_alive_timeout_s = 5.0;    // idle kept-alive connections close after this
};

class HttpServer {
 public:
  explicit HttpServer(ServerConfig config);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port (fails with a clear error when it is taken) and starts the
  // listening thread.
  Status start();
  int port() const;

  // The model is loaded: requests are served from now on. Both must outlive
  // the server (or stop() must be called first).
  Status set_ready(const ModelSource& source, Engine& engine);

  // New requests get 503 from now on (used while draining on SIGTERM).
  void stop_accepting();

  // Closes the listening socket, waits for the handlers and joins.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ember
