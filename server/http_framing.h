#pragma once
// HTTP/1.1 request framing as ember reads it (RFC 9112), before any route
// sees a request: where a request's head ends, how long its body is, and
// whether the connection stays open. Strict on purpose: whatever a proxy in
// front of ember could read differently (two Content-Lengths, Content-Length
// beside chunked, whitespace before a colon, folded lines, bare LF) is a 400,
// so no request can be smuggled past it. Pure functions over bytes, fuzzed by
// tests/fuzz/fuzz_http_framing.cpp.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember {

struct FramingLimits {
  size_t max_request_line = 8192;  // beyond: 414
  size_t max_head_bytes = 65536;   // request line and header fields; beyond: 431
  size_t max_header_fields = 100;  // beyond: 431
  uint64_t max_body_bytes = 16u << 20;  // beyond: 413
};

struct RequestHead {
  std::string method;
  std::string target;
  int minor_version = 1;  // HTTP/1.0 or HTTP/1.1
  std::vector<std::pair<std::string, std::string>> fields;  // names as sent, values trimmed
  size_t head_bytes = 0;        // through the blank line
  uint64_t content_length = 0;  // 0 when chunked
  bool chunked = false;
  bool keep_alive = true;
  bool expect_continue = false;
};

// A request that cannot be served: the status to answer and why (for the
// OpenAI-style error body). The connection is closed after it.
struct FramingError {
  int status = 400;
  std::string message;
};

// The outcome of reading bytes that may hold only part of a message.
template <class T>
struct Framed {
  enum class State { kIncomplete, kComplete, kError } state = State::kIncomplete;
  T value{};
  FramingError error;

  static Framed incomplete() { return {}; }
  static Framed complete(T v) { return {State::kComplete, std::move(v), {}}; }
  static Framed failed(int status, std::string message) { return {State::kError, T{}, {status, std::move(message)}}; }
  bool is_complete() const { return state == State::kComplete; }
  bool is_error() const { return state == State::kError; }
};

// Parses the head at the start of `bytes` (the request line, the header
// fields, the blank line). Incomplete while the blank line has not arrived
// and no limit is passed yet.
Framed<RequestHead> parse_request_head(std::string_view bytes, const FramingLimits& limits);

// A chunked body (RFC 9112 section 7.1), decoded as its bytes arrive: feed()
// consumes what it can (the caller drops that many bytes and feeds the rest
// with more later) and says when the last chunk and the trailers are in.
class ChunkedDecoder {
 public:
  explicit ChunkedDecoder(uint64_t max_body_bytes) : max_body_(max_body_bytes) {}

  struct Step {
    enum class State { kIncomplete, kComplete, kError } state = State::kIncomplete;
    size_t consumed = 0;
    FramingError error;
  };
  Step feed(std::string_view bytes);
  std::string& body() { return body_; }

 private:
  enum class Part { kSize, kData, kDataEnd, kTrailer, kDone };
  Part part_ = Part::kSize;
  uint64_t remaining_ = 0;  // data bytes left in the current chunk
  size_t trailer_bytes_ = 0;
  uint64_t max_body_;
  std::string body_;
};

// The head as ember hands it on, with the body already whole: the same
// request line and fields, less the framing ones (Content-Length,
// Transfer-Encoding, Expect), plus one Content-Length for `body_bytes`.
// Accept-Encoding goes too: ember answers uncompressed, since a compressor
// holds back what must go out at once (streamed events, and the space a
// long non-streaming answer writes each second to learn that its client left).
std::string normalized_head(const RequestHead& head, size_t body_bytes);

// A complete response that ember writes itself (refusals before routing):
// status line, JSON body, Connection: close, and `extra_fields` (each line
// ending in CRLF) such as "Retry-After: 1\r\n".
std::string framing_error_response(int status, const std::string& json_body, const std::string& extra_fields = "");

}  // namespace ember
