// A mock OpenAI-compatible server for testing and benchmarking `ember bench`
// without a model: POST /v1/completions streams max_tokens chunks of one token
// each at a fixed rate (sleep_until on a schedule, so gaps do not drift), then
// a usage chunk and [DONE]. /tokenize and /detokenize treat every byte as a
// token. Prompts starting with a magic word misbehave, to test error paths:
//   HTTP500 -> 500 with an error body    MALFORMED -> a data line that is not JSON
//   TRUNCATE -> the stream stops before [DONE]   NOUSAGE -> no usage chunk
// GET /stats returns the mean and max of the gaps it actually slept, in ms.
// --ttft-ms D sends the first token D ms after the request arrived (the
// load tester's clock is checked against it); otherwise after one gap.
// Usage: mock_sse_server --port P [--tokens-per-s R] [--ttft-ms D] [--threads N]

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::mutex stats_mu;
double gap_sum_ms = 0, gap_max_ms = 0;
int64_t gap_count = 0;

std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }

}  // namespace

int main(int argc, char** argv) {
  int port = 0, threads = 256;
  double rate = 1000, ttft_ms = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--tokens-per-s")) rate = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--ttft-ms")) ttft_ms = std::atof(argv[i + 1]);
  }
  if (port <= 0 || rate <= 0 || threads <= 0) {
    std::fprintf(stderr, "usage: mock_sse_server --port P [--tokens-per-s R] [--ttft-ms D] [--threads N]\n");
    return 2;
  }
  httplib::Server server;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"object", "list"}, {"data", {{{"id", "mock"}, {"object", "model"}}}}}.dump(), "application/json");
  });
  server.Get("/stats", [](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(stats_mu);
    res.set_content(json{{"gaps", gap_count}, {"mean_gap_ms", gap_count ? gap_sum_ms / gap_count : 0.0}, {"max_gap_ms", gap_max_ms}}.dump(),
                    "application/json");
  });
  server.Post("/tokenize", [](const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    std::string prompt = body.is_object() && body.contains("prompt") && body["prompt"].is_string() ? body["prompt"].get<std::string>() : "";
    json tokens = json::array();
    for (unsigned char c : prompt) tokens.push_back(static_cast<int>(c));
    res.set_content(json{{"count", tokens.size()}, {"tokens", tokens}, {"max_model_len", 1 << 20}}.dump(), "application/json");
  });
  server.Post("/detokenize", [](const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    std::string text;
    if (body.is_object() && body.contains("tokens") && body["tokens"].is_array()) {
      for (const json& t : body["tokens"]) {
        if (t.is_number_integer() && t.get<int>() > 0 && t.get<int>() < 128) text += static_cast<char>(t.get<int>());
      }
    }
    res.set_content(json{{"prompt", text}}.dump(), "application/json");
  });
  server.set_tcp_nodelay(true);  // each chunk leaves when written
  server.Post("/v1/completions", [rate, ttft_ms](const httplib::Request& req, httplib::Response& res) {
    const auto arrived = Clock::now();
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("prompt") || !body["prompt"].is_string()) {
      res.status = 400;
      res.set_content(R"({"error":{"message":"bad request"}})", "application/json");
      return;
    }
    const std::string prompt = body["prompt"];
    const int64_t n = body.value("max_tokens", 16);
    const bool usage = body.contains("stream_options") && body["stream_options"].value("include_usage", false) &&
                       prompt.rfind("NOUSAGE", 0) != 0;
    if (prompt.rfind("HTTP500", 0) == 0) {
      res.status = 500;
      res.set_content(R"({"error":{"message":"mock failure"}})", "application/json");
      return;
    }
    const bool malformed = prompt.rfind("MALFORMED", 0) == 0, truncate = prompt.rfind("TRUNCATE", 0) == 0;
    const auto prompt_tokens = static_cast<int64_t>(prompt.size());
    res.set_chunked_content_provider("text/event-stream", [=](size_t, httplib::DataSink& sink) {
      const auto gap = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
      auto next = ttft_ms >= 0 ? arrived + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double, std::milli>(ttft_ms))
                                : Clock::now() + gap;
      Clock::time_point prev{};
      for (int64_t i = 0; i < n; ++i) {
        std::this_thread::sleep_until(next);
        next += gap;
        const auto now = Clock::now();
        if (prev != Clock::time_point{}) {
          const double ms = std::chrono::duration<double, std::milli>(now - prev).count();
          std::lock_guard lock(stats_mu);
          gap_sum_ms += ms, gap_max_ms = std::max(gap_max_ms, ms), ++gap_count;
        }
        prev = now;
        std::string chunk = malformed && i == 1 ? std::string("data: {not json\n\n")
                                                : sse({{"id", "cmpl-mock"}, {"object", "text_completion"},
                                                       {"choices", {{{"index", 0}, {"text", " t"}, {"finish_reason", nullptr}}}}});
        if (!sink.write(chunk.data(), chunk.size())) return false;
        if (truncate && i == n / 2) {
          sink.done();
          return true;
        }
      }
      std::string tail;
      if (usage) {
        tail += sse({{"id", "cmpl-mock"}, {"choices", json::array()},
                     {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", n}, {"total_tokens", prompt_tokens + n}}}});
      }
      tail += "data: [DONE]\n\n";
      sink.write(tail.data(), tail.size());
      sink.done();
      return true;
    });
  });
  std::fprintf(stderr, "mock_sse_server on 127.0.0.1:%d, %.0f tokens/s per stream\n", port, rate);
  return server.listen("127.0.0.1", port) ? 0 : 1;
}
