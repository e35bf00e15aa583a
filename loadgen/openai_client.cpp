#include "loadgen/openai_client.h"

#include <httplib.h>

#include <algorithm>

#include "loadgen/sse_parser.h"

namespace ember {
namespace {

using json = nlohmann::json;

double seconds_between(BenchClock::time_point a, BenchClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The text a chunk carries: choices[0].text (completions) or
// choices[0].delta.content (chat). Empty when it carries none (role-only,
// usage-only or finish chunks).
std::string chunk_text(const json& chunk, bool chat) {
  auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array() || choices->empty()) return "";
  const json& c = (*choices)[0];
  if (!c.is_object()) return "";
  if (chat) {
    auto delta = c.find("delta");
    if (delta == c.end() || !delta->is_object()) return "";
    for (const char* key : {"content", "reasoning_content"}) {
      auto it = delta->find(key);
      if (it != delta->end() && it->is_string() && !it->get_ref<const std::string&>().empty()) return *it;
    }
    return "";
  }
  auto text = c.find("text");
  return text != c.end() && text->is_string() ? text->get<std::string>() : "";
}

std::string snippet(const std::string& s) { return s.size() <= 200 ? s : s.substr(0, 200) + "..."; }

}  // namespace

Result<std::unique_ptr<OpenAiClient>> OpenAiClient::create(const TargetOptions& target) {
  const std::string& url = target.base_url;
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || (url.compare(0, scheme_end, "http") != 0 && url.compare(0, scheme_end, "https") != 0)) {
    return Error{"--base-url '" + url + "': expected http://host[:port] or https://host[:port]"};
  }
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string host = url.substr(0, path_start);
  std::string prefix = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (host.size() <= scheme_end + 3) return Error{"--base-url '" + url + "': no host"};
  if (target.endpoint.empty() || target.endpoint.front() != '/') {
    return Error{"--endpoint '" + target.endpoint + "': must start with '/'"};
  }
  auto http = std::make_unique<httplib::Client>(host);
  if (!http->is_valid()) return Error{"--base-url '" + url + "': cannot make a client for it"};
  const auto timeout = std::chrono::duration<double>(target.timeout_s);
  http->set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(std::min(timeout, std::chrono::duration<double>(10))));
  http->set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  http->set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
  http->set_keep_alive(true);
  // httplib writes a request's headers and body in two writes: without
  // TCP_NODELAY the body waits for the server's delayed ACK (~40 ms on Linux),
  // and every TTFT and latency would read that much too high.
  http->set_tcp_nodelay(true);
  if (!target.api_key.empty()) http->set_bearer_token_auth(target.api_key);
  return std::unique_ptr<OpenAiClient>(new OpenAiClient(target, std::move(prefix), std::move(http)));
}

OpenAiClient::OpenAiClient(TargetOptions target, std::string prefix, std::unique_ptr<httplib::Client> http)
    : target_(std::move(target)), prefix_(std::move(prefix)), http_(std::move(http)) {
  chat_ = target_.endpoint.find("chat") != std::string::npos;
}

OpenAiClient::~OpenAiClient() = default;

json OpenAiClient::request_body(const BenchRequest& request) const {
  json body = {{"model", target_.model},
               {"max_tokens", request.max_tokens},
               {"temperature", target_.temperature},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (target_.ignore_eos) body["ignore_eos"] = true;
  if (chat_) {
    body["messages"] = json::array({{{"role", "user"}, {"content", request.prompt}}});
  } else {
    body["prompt"] = request.prompt;
  }
  return body;
}

RequestRecord OpenAiClient::send(const BenchRequest& request, BenchClock::time_point run_start) {
  RequestRecord rec;
  rec.index = request.index;
  rec.prompt_len = request.prompt_len;
  rec.prompt_tokens = request.prompt_len;
  rec.max_tokens = request.max_tokens;

  httplib::Request req;
  req.method = "POST";
  req.path = prefix_ + target_.endpoint;
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  req.body = request_body(request).dump();

  BenchClock::time_point last{};
  std::string failure, error_body;
  int status = 0;
  bool saw_usage = false;
  double last_content = 0;  // seconds from run_start
  SseParser parser([&](std::string_view payload) {
    json chunk = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (chunk.is_discarded() || !chunk.is_object()) {
      failure = "malformed stream: a data line is not a JSON object: " + snippet(std::string(payload));
      return false;
    }
    if (auto err = chunk.find("error"); err != chunk.end() && !err->is_null()) {
      failure = "error event in stream: " + snippet(err->dump());
      return false;
    }
    std::string text = chunk_text(chunk, chat_);
    if (!text.empty()) {
      const double t = seconds_between(run_start, last);
      if (rec.content_chunks == 0) {
        rec.ttft_s = t - rec.start_s;
      } else {
        rec.itl_s.push_back(t - last_content);
      }
      last_content = t;
      ++rec.content_chunks;
      rec.generated_text += text;
    }
    if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object()) {
      auto ct = usage->find("completion_tokens"), pt = usage->find("prompt_tokens");
      if (ct != usage->end() && ct->is_number_integer()) {
        rec.output_tokens = ct->get<int64_t>();
        saw_usage = true;
      }
      if (pt != usage->end() && pt->is_number_integer()) rec.prompt_tokens = pt->get<int64_t>();
    }
    return true;
  });

  const auto deadline = BenchClock::now() + std::chrono::duration_cast<BenchClock::duration>(
                                                std::chrono::duration<double>(target_.timeout_s));
  bool timed_out = false;
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    last = BenchClock::now();
    if (status != 200) {
      if (error_body.size() < 1024) error_body.append(data, std::min<size_t>(len, 1024));
      return true;
    }
    if (last > deadline) {
      timed_out = true;
      return false;
    }
    return parser.feed(std::string_view(data, len));
  };

  const auto start = BenchClock::now();
  rec.start_s = seconds_between(run_start, start);
  auto result = http_->send(req);
  // A kept-alive connection the server closed while idle fails before any
  // response byte: that is the connection's age, not the request's fate, so
  // it is sent once more on a fresh connection (what HTTP clients do).
  if (!result && status == 0 &&
      (result.error() == httplib::Error::Read || result.error() == httplib::Error::Write)) {
    result = http_->send(req);
  }
  const auto end = BenchClock::now();
  rec.latency_s = seconds_between(start, end);
  rec.http_status = status;

  if (status != 0 && status != 200) {
    rec.error = "HTTP " + std::to_string(status) + ": " + snippet(error_body);
  } else if (!failure.empty()) {
    rec.error = failure;
  } else if (!parser.error().empty()) {
    rec.error = parser.error();
  } else if (timed_out) {
    rec.error = "timed out after " + std::to_string(target_.timeout_s) + " s";
  } else if (!result) {
    rec.error = "request failed: " + httplib::to_string(result.error());
  } else if (!parser.done()) {
    rec.error = "stream ended without data: [DONE]";
  } else if (rec.content_chunks == 0 && (!saw_usage || rec.output_tokens > 0)) {
    rec.error = "stream carried no content";
  } else {
    rec.success = true;
    rec.usage_from_server = saw_usage;
    if (!saw_usage) rec.output_tokens = rec.content_chunks;
  }
  if (!rec.success) {
    // A failed request has no meaningful token timings; keep only its span for concurrency plots.
    rec.itl_s.clear();
    rec.output_tokens = 0;
  }
  return rec;
}

Result<json> OpenAiClient::post_json(const std::string& path, const json& body) {
  auto res = http_->Post((prefix_ + path).c_str(), body.dump(), "application/json");
  if (!res) return Error{"POST " + path + ": " + httplib::to_string(res.error())};
  if (res->status != 200) return Error{"POST " + path + ": HTTP " + std::to_string(res->status) + ": " + snippet(res->body)};
  json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded()) return Error{"POST " + path + ": the response is not JSON"};
  return j;
}

Result<std::string> OpenAiClient::get_text(const std::string& path) {
  auto res = http_->Get((prefix_ + path).c_str());
  if (!res) return Error{"GET " + path + ": " + httplib::to_string(res.error())};
  if (res->status != 200) return Error{"GET " + path + ": HTTP " + std::to_string(res->status)};
  return res->body;
}

Result<json> OpenAiClient::get_json(const std::string& path) {
  auto res = http_->Get((prefix_ + path).c_str());
  if (!res) return Error{"GET " + path + ": " + httplib::to_string(res.error())};
  if (res->status != 200) return Error{"GET " + path + ": HTTP " + std::to_string(res->status) + ": " + snippet(res->body)};
  json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded()) return Error{"GET " + path + ": the response is not JSON"};
  return j;
}

}  // namespace ember
