#include "loadgen/sse_parser.h"

namespace ember {

bool SseParser::feed(std::string_view chunk) {
  if (failed_) return false;
  if (done_) return true;
  size_t start = 0;
  while (start < chunk.size()) {
    const size_t nl = chunk.find('\n', start);
    if (nl == std::string_view::npos) {
      line_.append(chunk.substr(start));
      if (line_.size() > kMaxLineBytes) {
        failed_ = true;
        error_ = "SSE line longer than " + std::to_string(kMaxLineBytes) + " bytes";
        return false;
      }
      return true;
    }
    std::string_view line = chunk.substr(start, nl - start);
    start = nl + 1;
    bool ok;
    if (line_.empty()) {
      ok = handle_line(line);
    } else {
      line_.append(line);
      std::string whole = std::move(line_);
      line_.clear();
      ok = handle_line(whole);
    }
    if (!ok) {
      failed_ = true;
      return false;
    }
    if (done_) return true;
  }
  return true;
}

bool SseParser::handle_line(std::string_view line) {
  // "\r\n" line ends: the '\r' may have arrived in the previous chunk, so it
  // is stripped here, once the line is whole.
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty() || line.front() == ':') return true;  // event separator or comment
  if (line.rfind("data:", 0) != 0) return true;          // event:, id:, retry: carry nothing we use
  line.remove_prefix(5);
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (line == "[DONE]") {
    done_ = true;
    return true;
  }
  if (!on_data_(line)) {
    if (error_.empty()) error_ = "malformed SSE payload";
    return false;
  }
  return true;
}

}  // namespace ember
