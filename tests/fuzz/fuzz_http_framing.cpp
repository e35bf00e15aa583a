// libFuzzer target for HTTP/1.1 request framing (server/http_framing.h), as
// ember reads every request before routing: any bytes must give a head, an
// incomplete answer or a 4xx/5xx error, never a crash or a read past the
// input. A parsed head must be consistent (head_bytes within the input, one
// framing, a length within the limit) and its normalized form must parse back
// to the same request. The chunked decoder must give the same result whether
// the bytes arrive at once or split at points taken from the input.
// Seed corpus: tests/fuzz/corpus/http_framing/.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/http_framing.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_status(int status) { check(status == 400 || status == 408 || (status >= 413 && status <= 431) || status == 501 || status == 505); }

struct Decoded {
  int state = 0;  // 0 incomplete, 1 complete, 2 error
  std::string body;
  size_t consumed = 0;
};

// Feeds `bytes` to a decoder in pieces of the given sizes (cycled), as a socket would deliver them.
Decoded decode(std::string_view bytes, uint64_t max_body, std::string_view piece_sizes) {
  ember::ChunkedDecoder decoder(max_body);
  std::string pending;
  Decoded out;
  size_t fed = 0, k = 0;
  while (true) {
    const size_t piece = piece_sizes.empty() ? bytes.size() : 1 + static_cast<unsigned char>(piece_sizes[k++ % piece_sizes.size()]) % 64;
    const size_t n = std::min(piece, bytes.size() - fed);
    pending.append(bytes.substr(fed, n));
    fed += n;
    const auto step = decoder.feed(pending);
    check(step.consumed <= pending.size());
    out.consumed += step.consumed;
    pending.erase(0, step.consumed);
    if (step.state == ember::ChunkedDecoder::Step::State::kError) {
      check_status(step.error.status);
      out.state = 2;
      return out;
    }
    if (step.state == ember::ChunkedDecoder::Step::State::kComplete) {
      out.state = 1;
      out.body = decoder.body();
      check(out.body.size() <= max_body);
      return out;
    }
    if (fed == bytes.size()) return out;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  ember::FramingLimits limits;
  limits.max_head_bytes = 4096;
  limits.max_request_line = 1024;
  limits.max_body_bytes = 1 << 16;

  const auto head = ember::parse_request_head(bytes, limits);
  if (head.is_error()) check_status(head.error.status);
  if (head.is_complete()) {
    const ember::RequestHead& h = head.value;
    check(h.head_bytes <= size && h.head_bytes >= 4);
    check(bytes.substr(h.head_bytes - 4, 4) == "\r\n\r\n");
    check(!(h.chunked && h.content_length > 0));
    check(h.content_length <= limits.max_body_bytes);
    check(h.minor_version == 0 || h.minor_version == 1);
    check(!h.method.empty() && !h.target.empty());
    // What ember hands httplib parses back to the same request with a plain length.
    const std::string again = ember::normalized_head(h, 7);
    ember::FramingLimits relaxed;  // the normalized head has one field more than a chunked one's limit allowed
    relaxed.max_header_fields = 1000;
    relaxed.max_head_bytes = relaxed.max_request_line = 1 << 20;
    const auto re = ember::parse_request_head(again, relaxed);
    check(re.is_complete());
    check(re.value.method == h.method && re.value.target == h.target && re.value.content_length == 7);
    check(!re.value.chunked && re.value.keep_alive == h.keep_alive);
    check(re.value.head_bytes == again.size());
    if (h.chunked) {
      const std::string_view body = bytes.substr(h.head_bytes);
      const Decoded whole = decode(body, limits.max_body_bytes, {});
      const Decoded split = decode(body, limits.max_body_bytes, bytes.substr(0, 16));
      check(whole.state == split.state);
      if (whole.state == 1) check(whole.body == split.body && whole.consumed == split.consumed);
    }
  }
  // The decoder on raw bytes too (the head parser rejects most inputs before it).
  const Decoded whole = decode(bytes, limits.max_body_bytes, {});
  const Decoded split = decode(bytes, limits.max_body_bytes, bytes.substr(size / 2));
  check(whole.state == split.state);
  if (whole.state == 1) check(whole.body == split.body && whole.consumed == split.consumed);
  return 0;
}
