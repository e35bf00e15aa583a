// The SSE parser of `ember bench` on streams split at every possible place.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loadgen/sse_parser.h"

namespace ember {
namespace {

const std::string kStream =
    "data: {\"a\":1}\n\n"
    ": keep-alive comment\n\n"
    "event: message\r\ndata:{\"b\":2}\r\n\r\n"
    "data: {\"c\":\"x\\ny\"}\n\n"
    "data: [DONE]\n\n"
    "data: {\"after\":true}\n\n";

std::vector<std::string> parse_in_pieces(const std::string& stream, const std::vector<size_t>& cuts, bool* done) {
  std::vector<std::string> got;
  SseParser p([&](std::string_view d) {
    got.emplace_back(d);
    return true;
  });
  size_t prev = 0;
  for (size_t c : cuts) {
    EXPECT_TRUE(p.feed(std::string_view(stream).substr(prev, c - prev)));
    prev = c;
  }
  EXPECT_TRUE(p.feed(std::string_view(stream).substr(prev)));
  *done = p.done();
  return got;
}

TEST(LoadgenSse, WholeStream) {
  bool done = false;
  const auto got = parse_in_pieces(kStream, {}, &done);
  EXPECT_TRUE(done);
  EXPECT_EQ(got, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "{\"c\":\"x\\ny\"}"}));
}

TEST(LoadgenSse, EverySingleAndDoubleSplitGivesTheSameEvents) {
  bool done = false;
  const auto want = parse_in_pieces(kStream, {}, &done);
  for (size_t i = 0; i <= kStream.size(); ++i) {
    EXPECT_EQ(parse_in_pieces(kStream, {i}, &done), want) << "split at " << i;
    EXPECT_TRUE(done);
    for (size_t j = i; j <= kStream.size(); j += 7) EXPECT_EQ(parse_in_pieces(kStream, {i, j}, &done), want);
  }
}

TEST(LoadgenSse, ByteByByte) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < kStream.size(); ++i) cuts.push_back(i);
  bool done = false;
  EXPECT_EQ(parse_in_pieces(kStream, cuts, &done).size(), 3u);
  EXPECT_TRUE(done);
}

TEST(LoadgenSse, TruncatedStreamIsNotDone) {
  bool done = true;
  const auto got = parse_in_pieces("data: {\"a\":1}\n\ndata: {\"b\"", {}, &done);
  EXPECT_FALSE(done);
  EXPECT_EQ(got.size(), 1u);
}

TEST(LoadgenSse, RefusedPayloadStopsTheParser) {
  int calls = 0;
  SseParser p([&](std::string_view) { return ++calls < 2; });
  EXPECT_FALSE(p.feed("data: 1\n\ndata: 2\n\ndata: 3\n\n"));
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(p.error().empty());
  EXPECT_FALSE(p.feed("data: 4\n\n"));
  EXPECT_EQ(calls, 2);
}

TEST(LoadgenSse, EndlessLineIsRefused) {
  SseParser p([](std::string_view) { return true; });
  const std::string chunk(1 << 20, 'x');
  bool ok = true;
  for (int i = 0; i < 17 && ok; ++i) ok = p.feed(chunk);
  EXPECT_FALSE(ok);
  EXPECT_NE(p.error().find("longer than"), std::string::npos);
}

}  // namespace
}  // namespace ember
