#pragma once
// Incremental parser of a Server-Sent Events stream as OpenAI-compatible
// servers send it: events of "data: <payload>" lines separated by blank lines,
// ended by "data: [DONE]". Network chunks split lines anywhere (even inside a
// "\r\n"), so the parser keeps the unfinished tail between feed() calls.

#include <functional>
#include <string>
#include <string_view>

namespace ember {

class SseParser {
 public:
  // Called once per complete "data:" line with its payload (leading space
  // stripped). Return false to stop parsing (the stream is malformed).
  using OnData = std::function<bool(std::string_view payload)>;

  explicit SseParser(OnData on_data) : on_data_(std::move(on_data)) {}

  // Feeds the next chunk of bytes. Returns false once on_data has refused a
  // payload or the pending line grew past kMaxLineBytes (a server that never
  // ends a line must not make the client grow without bound).
  bool feed(std::string_view chunk);

  // True once "data: [DONE]" was seen; later bytes are ignored.
  bool done() const { return done_; }
  // Bytes of an unfinished line still held (a stream that ends with some is truncated).
  size_t pending_bytes() const { return line_.size(); }
  const std::string& error() const { return error_; }

  static constexpr size_t kMaxLineBytes = 16 << 20;

 private:
  bool handle_line(std::string_view line);

  OnData on_data_;
  std::string line_;  // the unfinished line carried over from the previous chunk
  bool done_ = false;
  bool failed_ = false;
  std::string error_;
};

}  // namespace ember
