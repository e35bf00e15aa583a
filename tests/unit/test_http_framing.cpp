// HTTP/1.1 request framing (server/http_framing.h): the strict reading that
// every request passes before routing. Each ambiguous or oversized framing
// that a proxy and ember could read differently is refused with its status.

#include <gtest/gtest.h>

#include "server/http_framing.h"

namespace ember {
namespace {

Framed<RequestHead> parse(std::string_view s, FramingLimits limits = {}) { return parse_request_head(s, limits); }

void expect_error(std::string_view s, int status, std::string_view words) {
  const auto r = parse(s);
  ASSERT_TRUE(r.is_error()) << s;
  EXPECT_EQ(r.error.status, status) << s;
  EXPECT_NE(r.error.message.find(words), std::string::npos) << r.error.message;
}

TEST(HttpFraming, ReadsAHeadWithALength) {
  const std::string s = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type:  application/json \r\n"
                        "Content-Length: 15\r\n\r\n{\"prompt\":\"hi\"}";
  const auto r = parse(s);
  ASSERT_TRUE(r.is_complete());
  EXPECT_EQ(r.value.method, "POST");
  EXPECT_EQ(r.value.target, "/v1/completions");
  EXPECT_EQ(r.value.content_length, 15u);
  EXPECT_FALSE(r.value.chunked);
  EXPECT_TRUE(r.value.keep_alive);
  EXPECT_EQ(r.value.head_bytes, s.size() - 15);
  EXPECT_EQ(r.value.fields[1].second, "application/json");  // trimmed
}

TEST(HttpFraming, IncompleteUntilTheBlankLine) {
  EXPECT_EQ(parse("GET /health HTTP/1.1\r\nHost: x\r\n").state, Framed<RequestHead>::State::kIncomplete);
  EXPECT_EQ(parse("GET /hea").state, Framed<RequestHead>::State::kIncomplete);
  EXPECT_EQ(parse("").state, Framed<RequestHead>::State::kIncomplete);
  EXPECT_TRUE(parse("\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n").is_complete());  // a stray CRLF before is ignored
}

TEST(HttpFraming, KeepAliveFollowsVersionAndConnection) {
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").value.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n").value.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").value.keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").value.keep_alive);
}

TEST(HttpFraming, RefusesAmbiguousFraming) {
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
               "ambiguous");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
               "more than one Content-Length");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400,
               "more than one Content-Length");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400, "decimal");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "decimal");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400, "decimal");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400, "decimal");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "not supported");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
               "not supported");
  expect_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0");
  expect_error("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "header name");
  expect_error("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "folded");
  expect_error("GET / HTTP/1.1\nHost: x\n\n", 400, "bare LF");
  expect_error("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "bare CR");
  expect_error("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400, "control character");
  expect_error("GET / HTTP/1.1\r\n\r\n", 400, "Host");
  expect_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host");
}

TEST(HttpFraming, LengthsAndSizesBeyondTheLimits) {
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n", 413, "larger than the limit");
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999999999\r\n\r\n", 413,
               "larger than the limit");
  EXPECT_TRUE(parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16777216\r\n\r\n").is_complete());
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16777217\r\n\r\n", 413, "larger than the limit");
  FramingLimits small;
  small.max_request_line = 64;
  small.max_head_bytes = 256;
  small.max_header_fields = 3;
  const auto line = parse("GET /" + std::string(100, 'a'), small);  // no line end yet, already too long
  ASSERT_TRUE(line.is_error());
  EXPECT_EQ(line.error.status, 414);
  const auto head = parse("GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(300, 'a'), small);
  ASSERT_TRUE(head.is_error());
  EXPECT_EQ(head.error.status, 431);
  const auto fields = parse("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", small);
  ASSERT_TRUE(fields.is_error());
  EXPECT_EQ(fields.error.status, 431);
}

TEST(HttpFraming, RequestLines) {
  expect_error("GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505, "not supported");
  EXPECT_EQ(parse("QUERY /v1/models HTTP/1.1\r\nHost: x\r\n\r\n").value.method, "QUERY");  // routing decides
  expect_error("GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line");
  expect_error("GET health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "target");
  expect_error("GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "request line");
  expect_error("GET /health HTTQ/1.1\r\nHost: x\r\n\r\n", 400, "version");
  const auto absolute = parse("GET http://example.com/v1/models?a=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
  ASSERT_TRUE(absolute.is_complete());
  EXPECT_EQ(absolute.value.target, "/v1/models?a=1");
  EXPECT_TRUE(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").is_complete());
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417, "Expect");
  EXPECT_TRUE(parse("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                  .value.expect_continue);
}

ChunkedDecoder::Step::State feed_all(ChunkedDecoder& d, std::string_view s, size_t piece, size_t* consumed = nullptr) {
  std::string pending;
  size_t total = 0;
  for (size_t at = 0;; at += piece) {
    pending.append(s.substr(std::min(at, s.size()), piece));
    const auto step = d.feed(pending);
    pending.erase(0, step.consumed);
    total += step.consumed;
    if (step.state != ChunkedDecoder::Step::State::kIncomplete || at >= s.size()) {
      if (consumed) *consumed = total;
      return step.state;
    }
  }
}

TEST(HttpFraming, ChunkedBodiesDecodeTheSameInAnyPieces) {
  const std::string body = "5;name=value\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
  for (size_t piece : {size_t{1}, size_t{2}, size_t{7}, body.size()}) {
    ChunkedDecoder d(1 << 20);
    size_t consumed = 0;
    ASSERT_EQ(feed_all(d, body, piece, &consumed), ChunkedDecoder::Step::State::kComplete) << piece;
    EXPECT_EQ(d.body(), "hello world0123456789");
    EXPECT_EQ(consumed, body.size() - 4) << "the next request's bytes stay unread";
  }
}

TEST(HttpFraming, ChunkedErrors) {
  const auto error_of = [](std::string_view s, uint64_t max = 1 << 20) {
    ChunkedDecoder d(max);
    const auto step = d.feed(s);
    return step.state == ChunkedDecoder::Step::State::kError ? step.error.status : 0;
  };
  EXPECT_EQ(error_of("zz\r\n"), 400);
  EXPECT_EQ(error_of("5\r\nhelloXX"), 400);                       // data not followed by CRLF
  EXPECT_EQ(error_of("5\nhello\r\n"), 400);                        // bare LF
  EXPECT_EQ(error_of("fffffffffffffffff\r\n"), 413);               // size overflow
  EXPECT_EQ(error_of("11\r\n", 16), 413);                          // one chunk over the limit
  EXPECT_EQ(error_of("8\r\n12345678\r\n9\r\n", 16), 413);          // the sum over the limit
  EXPECT_EQ(error_of("5 junk\r\n"), 400);                          // not an extension
  EXPECT_EQ(error_of("0\r\nbad trailer\r\n\r\n"), 400);
  EXPECT_EQ(error_of(std::string(5000, '0')), 400);                // a size line without end
}

TEST(HttpFraming, NormalizedHeadCarriesOnePlainLength) {
  const auto r = parse("POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
                       "Accept-Encoding: gzip, deflate\r\nContent-Type: application/json\r\n\r\n");
  ASSERT_TRUE(r.is_complete());
  const std::string n = normalized_head(r.value, 12);
  EXPECT_EQ(n, "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n");
  const auto again = parse(n);
  ASSERT_TRUE(again.is_complete());
  EXPECT_EQ(again.value.content_length, 12u);
}

TEST(HttpFraming, ErrorResponsesAreWholeAndClose) {
  const std::string r = framing_error_response(413, "{\"error\":{}}");
  EXPECT_EQ(r, "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n"
               "Content-Length: 12\r\n\r\n{\"error\":{}}");
  EXPECT_NE(framing_error_response(503, "{}", "Retry-After: 1\r\n").find("Retry-After: 1\r\n"), std::string::npos);
}

}  // namespace
}  // namespace ember
