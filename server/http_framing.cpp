#include "server/http_framing.h"

#include <algorithm>
#include <cctype>

namespace ember {
namespace {

using Head = Framed<RequestHead>;

// tchar of RFC 9110 section 5.6.2: the characters of methods and field names.
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

// A field value's bytes: visible ASCII, obs-text, space and tab.
bool is_field_value(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c != 0x7f);
  });
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The comma-separated tokens of a list field (Connection), lowercased.
std::vector<std::string> list_tokens(std::string_view value) {
  std::vector<std::string> out;
  while (!value.empty()) {
    const size_t comma = value.find(',');
    const std::string_view item = trim(value.substr(0, comma));
    if (!item.empty()) out.push_back(lower(item));
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

// Parses "METHOD SP target SP HTTP/1.x".
Head parse_request_line(std::string_view line, RequestHead& head) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return Head::failed(400, "malformed request line (want METHOD SP target SP HTTP/1.1)");
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return Head::failed(400, "malformed request method");
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
      }))
    return Head::failed(400, "malformed request target");
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9')
    return Head::failed(400, "malformed HTTP version");
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
    return Head::failed(505, "HTTP version " + std::string(version.substr(5)) + " is not supported (1.0 and 1.1 are)");
  // absolute-form (sent to proxies; servers must accept it): keep the path.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() > scheme.size() && lower(target.substr(0, scheme.size())) == scheme) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  if (target.front() != '/' && !(target == "*" && method == "OPTIONS"))
    return Head::failed(400, "malformed request target (want a path starting with /)");
  head.method = method;
  head.target = target;
  head.minor_version = version[7] - '0';
  return Head::complete({});
}

// Applies the framing fields once all are read: body length, keep-alive,
// Expect. Everything two readers could disagree on is refused here.
Head apply_framing(RequestHead& head, const FramingLimits& limits) {
  std::optional<std::string_view> content_length;
  std::string transfer_encoding;
  int transfer_encoding_fields = 0, host_fields = 0;
  std::vector<std::string> connection;
  for (const auto& [name, value] : head.fields) {
    const std::string key = lower(name);
    if (key == "content-length") {
      if (content_length) return Head::failed(400, "more than one Content-Length field");
      content_length = value;
    } else if (key == "transfer-encoding") {
      transfer_encoding += (transfer_encoding_fields++ ? "," : "") + value;
    } else if (key == "host") {
      ++host_fields;
    } else if (key == "connection") {
      for (std::string& t : list_tokens(value)) connection.push_back(std::move(t));
    } else if (key == "expect") {
      if (lower(value) != "100-continue") return Head::failed(417, "Expect: " + value + " is not supported");
      head.expect_continue = true;
    }
  }
  if (host_fields > 1) return Head::failed(400, "more than one Host field");
  if (host_fields == 0 && head.minor_version == 1) return Head::failed(400, "an HTTP/1.1 request needs a Host field");
  if (transfer_encoding_fields > 0) {
    if (content_length) return Head::failed(400, "Content-Length together with Transfer-Encoding (ambiguous framing)");
    if (head.minor_version == 0) return Head::failed(400, "Transfer-Encoding in an HTTP/1.0 request");
    const std::vector<std::string> codings = list_tokens(transfer_encoding);
    if (codings.size() != 1 || codings[0] != "chunked")
      return Head::failed(501, "Transfer-Encoding " + transfer_encoding + " is not supported (only chunked is)");
    head.chunked = true;
  } else if (content_length) {
    const std::string_view v = *content_length;
    if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return Head::failed(400, "Content-Length must be a decimal number of bytes, got \"" + std::string(v) + "\"");
    uint64_t n = 0;
    for (char c : v) {
      if (n > limits.max_body_bytes) break;  // already too large; stop before overflow
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n > limits.max_body_bytes)
      return Head::failed(413, "the request body of " + std::string(v) + " bytes is larger than the limit of " +
                                   std::to_string(limits.max_body_bytes) + " bytes");
    head.content_length = n;
  }
  const auto has = [&](const char* t) { return std::find(connection.begin(), connection.end(), t) != connection.end(); };
  head.keep_alive = head.minor_version == 1 ? !has("close") : has("keep-alive") && !has("close");
  return Head::complete({});
}

}  // namespace

Framed<RequestHead> parse_request_head(std::string_view bytes, const FramingLimits& limits) {
  RequestHead head;
  size_t pos = 0;
  // A server should ignore empty lines before a request line (RFC 9112 2.2).
  while (pos < bytes.size() && pos < 8 && (bytes[pos] == '\r' || bytes[pos] == '\n')) {
    if (bytes[pos] == '\n' && (pos == 0 || bytes[pos - 1] != '\r')) return Head::failed(400, "bare LF in the head");
    ++pos;
  }
  const size_t start = pos;
  bool request_line = true;
  while (true) {
    const size_t lf = bytes.find('\n', pos);
    const size_t limit = request_line ? limits.max_request_line : limits.max_head_bytes;
    if (lf == std::string_view::npos) {
      if (bytes.size() - start > limits.max_head_bytes) return Head::failed(431, "the request head is too large");
      if (request_line && bytes.size() - pos > limit) return Head::failed(414, "the request line is too long");
      return Head::incomplete();
    }
    if (lf == pos || bytes[lf - 1] != '\r') return Head::failed(400, "bare LF in the head (lines end with CRLF)");
    if (lf + 1 - start > limits.max_head_bytes) return Head::failed(431, "the request head is too large");
    const std::string_view line = bytes.substr(pos, lf - 1 - pos);
    if (line.find('\r') != std::string_view::npos) return Head::failed(400, "bare CR in the head");
    pos = lf + 1;
    if (request_line) {
      if (line.size() > limits.max_request_line) return Head::failed(414, "the request line is too long");
      Head r = parse_request_line(line, head);
      if (r.is_error()) return r;
      request_line = false;
      continue;
    }
    if (line.empty()) break;  // the blank line ends the head
    if (line.front() == ' ' || line.front() == '\t')
      return Head::failed(400, "folded header line (obsolete line folding is not accepted)");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Head::failed(400, "header line without a colon");
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return Head::failed(400, "malformed header name (no whitespace before the colon)");
    const std::string_view value = trim(line.substr(colon + 1));
    if (!is_field_value(value)) return Head::failed(400, "control character in the value of " + std::string(name));
    if (head.fields.size() == limits.max_header_fields) return Head::failed(431, "too many header fields");
    head.fields.emplace_back(std::string(name), std::string(value));
  }
  head.head_bytes = pos;
  Head framing = apply_framing(head, limits);
  if (framing.is_error()) return framing;
  return Head::complete(std::move(head));
}

ChunkedDecoder::Step ChunkedDecoder::feed(std::string_view bytes) {
  using State = Step::State;
  constexpr size_t kMaxLine = 4096;   // a chunk-size line with its extensions, or one trailer
  constexpr size_t kMaxTrailers = 16384;
  Step step;
  const auto fail = [&](int status, std::string message) {
    step.state = State::kError;
    step.error = {status, std::move(message)};
    return step;
  };
  size_t& pos = step.consumed;
  while (part_ != Part::kDone) {
    if (part_ == Part::kData) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - pos));
      body_.append(bytes.substr(pos, n));
      pos += n;
      remaining_ -= n;
      if (remaining_ > 0) return step;
      part_ = Part::kDataEnd;
      continue;
    }
    if (part_ == Part::kDataEnd) {
      if (bytes.size() - pos < 2) {
        if (bytes.size() > pos && bytes[pos] != '\r') return fail(400, "chunk data not followed by CRLF");
        return step;
      }
      if (bytes.substr(pos, 2) != "\r\n") return fail(400, "chunk data not followed by CRLF");
      pos += 2;
      part_ = Part::kSize;
      continue;
    }
    // kSize and kTrailer read one line.
    const size_t lf = bytes.find('\n', pos);
    if (lf == std::string_view::npos) {
      if (bytes.size() - pos > kMaxLine) return fail(400, "chunk-size line or trailer too long");
      return step;
    }
    if (lf == pos || bytes[lf - 1] != '\r') return fail(400, "bare LF in the chunked body");
    const std::string_view line = bytes.substr(pos, lf - 1 - pos);
    if (line.size() > kMaxLine) return fail(400, "chunk-size line or trailer too long");
    if (line.find('\r') != std::string_view::npos) return fail(400, "bare CR in the chunked body");
    pos = lf + 1;
    if (part_ == Part::kTrailer) {
      if (line.empty()) {
        part_ = Part::kDone;
        break;
      }
      trailer_bytes_ += line.size() + 2;
      if (trailer_bytes_ > kMaxTrailers) return fail(431, "the trailer fields are too large");
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos || !is_token(line.substr(0, colon)) ||
          !is_field_value(trim(line.substr(colon + 1))))
        return fail(400, "malformed trailer field");
      continue;  // trailers are read and dropped
    }
    // chunk-size [ chunk-ext ]: hex digits, then nothing or ';' extensions (ignored).
    size_t digits = 0;
    uint64_t size = 0;
    while (digits < line.size() && std::isxdigit(static_cast<unsigned char>(line[digits]))) {
      if (digits == 15) return fail(413, "chunk size too large");
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(line[digits])));
      size = size * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
      ++digits;
    }
    if (digits == 0) return fail(400, "malformed chunk size");
    const std::string_view ext = trim(line.substr(digits));
    if (!ext.empty() && (ext.front() != ';' || !is_field_value(ext))) return fail(400, "malformed chunk extension");
    if (size > max_body_ - std::min<uint64_t>(max_body_, body_.size()))
      return fail(413, "the chunked request body is larger than the limit of " + std::to_string(max_body_) + " bytes");
    if (size == 0) {
      part_ = Part::kTrailer;
    } else {
      remaining_ = size;
      part_ = Part::kData;
    }
  }
  step.state = State::kComplete;
  return step;
}

std::string normalized_head(const RequestHead& head, size_t body_bytes) {
  std::string out = head.method + " " + head.target + " HTTP/1." + std::to_string(head.minor_version) + "\r\n";
  for (const auto& [name, value] : head.fields) {
    const std::string key = lower(name);
    if (key == "content-length" || key == "transfer-encoding" || key == "expect" || key == "accept-encoding") continue;
    out += name + ": " + value + "\r\n";
  }
  out += "Content-Length: " + std::to_string(body_bytes) + "\r\n\r\n";
  return out;
}

std::string framing_error_response(int status, const std::string& json_body, const std::string& extra_fields) {
  const char* reason = "Bad Request";
  switch (status) {
    case 404: reason = "Not Found"; break;
    case 405: reason = "Method Not Allowed"; break;
    case 408: reason = "Request Timeout"; break;
    case 413: reason = "Payload Too Large"; break;
    case 414: reason = "URI Too Long"; break;
    case 417: reason = "Expectation Failed"; break;
    case 431: reason = "Request Header Fields Too Large"; break;
    case 501: reason = "Not Implemented"; break;
    case 503: reason = "Service Unavailable"; break;
    case 505: reason = "HTTP Version Not Supported"; break;
    default: break;
  }
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
  out += "Content-Type: application/json\r\nConnection: close\r\n";
  out += extra_fields;
  out += "Content-Length: " + std::to_string(json_body.size()) + "\r\n\r\n" + json_body;
  return out;
}

}  // namespace ember
