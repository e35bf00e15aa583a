#pragma once
// One streaming request to an OpenAI-compatible server (ember, vLLM,
// llama.cpp's server), timed on the client's steady clock. Every way a request
// can go wrong (refused connection, HTTP error, timeout, malformed or truncated
// stream) ends as a failed RequestRecord with a reason; nothing throws.
// A client is used by one thread at a time; it keeps its connection alive.

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "loadgen/metrics.h"

namespace httplib {
class Client;
}

namespace ember {

struct TargetOptions {
  std::string base_url = "http://127.0.0.1:8000";  // scheme://host[:port][/prefix]
  std::string endpoint = "/v1/completions";          // or /v1/chat/completions
  std::string model;
  std::string api_key;
  double timeout_s = 600;  // a whole request, and the longest silence between two chunks
  bool ignore_eos = true;  // outputs as long as asked
  double temperature = 0;
};

struct BenchRequest {
  int64_t index = 0;
  std::string prompt;
  int64_t prompt_len = 0;  // tokens, as the dataset counted them
  int64_t max_tokens = 0;
};

using BenchClock = std::chrono::steady_clock;

class OpenAiClient {
 public:
  static Result<std::unique_ptr<OpenAiClient>> create(const TargetOptions& target);
  ~OpenAiClient();

  // Sends `request` streaming and records its timings relative to `run_start`.
  RequestRecord send(const BenchRequest& request, BenchClock::time_point run_start);

  // A plain JSON POST (for /tokenize and /detokenize), relative to the base URL.
  Result<nlohmann::json> post_json(const std::string& path, const nlohmann::json& body);
  Result<nlohmann::json> get_json(const std::string& path);
  // A GET's body as text (e.g. /metrics).
  Result<std::string> get_text(const std::string& path);

  // The request body send() posts (public for tests and --dry-run).
  nlohmann::json request_body(const BenchRequest& request) const;

 private:
  OpenAiClient(TargetOptions target, std::string prefix, std::unique_ptr<httplib::Client> http);

  TargetOptions target_;
  bool chat_ = false;
  std::string prefix_;  // the base URL's path, prepended to every path
  std::unique_ptr<httplib::Client> http_;
};

}  // namespace ember
