// Byte-level BPE core pieces: byte table, UTF-8 repair, regex pre-tokenization,
// merges, added-token matching, and tokenizer.json error handling. Parity on
// whole corpora is tests/integration/test_bpe_parity.py.

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "models/tokenizer/pretokenizer.h"
#include "models/tokenizer/tokenizer_bpe.h"
#include "models/tokenizer/unicode.h"

namespace ember {
namespace {

std::vector<std::string> pieces(const PreTokenizer& pre, const std::string& text) {
  std::vector<Span> spans;
  pre.split(text, &spans);
  std::vector<std::string> out;
  for (const Span& s : spans) out.push_back(text.substr(s.begin, s.end - s.begin));
  return out;
}

TEST(ByteLevel, TableMatchesGpt2) {
  EXPECT_EQ(byte_to_unicode(' '), U'\u0120');   // "Ġ"
  EXPECT_EQ(byte_to_unicode('\n'), U'\u010A');  // "Ċ"
  EXPECT_EQ(byte_to_unicode('A'), U'A');
  EXPECT_EQ(byte_to_unicode(0xAD), U'\u0143');  // soft hyphen is remapped
  EXPECT_EQ(byte_to_unicode(0xFF), U'\u00FF');
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode_to_byte(byte_to_unicode(static_cast<uint8_t>(b))), b);
  EXPECT_EQ(unicode_to_byte(U' '), -1);
  EXPECT_EQ(unicode_to_byte(U'\u3042'), -1);
  std::string raw;
  for (int b = 0; b < 256; ++b) raw.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(byte_level_decode(byte_level_encode(raw), &back));
  EXPECT_EQ(back, raw);
  EXPECT_EQ(byte_level_encode(" hi\n"), "\xC4\xA0hi\xC4\x8A");
  EXPECT_FALSE(byte_level_decode("a b", &back));  // a raw space is not in the table
}

TEST(Utf8, ReplacesMaximalSubparts) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitize_utf8("\xFF"), r);
  EXPECT_EQ(sanitize_utf8("\xC3("), r + "(");
  EXPECT_EQ(sanitize_utf8("\xE2\x82("), r + "(");        // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(sanitize_utf8("\xF0\x90\x8C"), r);           // truncated 4-byte sequence at the end
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), r + r + r);   // surrogate: each byte invalid
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), r + r);           // overlong
  EXPECT_EQ(sanitize_utf8("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));       // above U+10FFFF
}

TEST(PreTokenizer, Gpt2RegexSplitsLikeHf) {
  PreTokenizer pre;
  ASSERT_TRUE(pre.add_byte_level(false, true));
  // Expected pieces from Python's `regex` module with the same pattern.
  EXPECT_EQ(pieces(pre, "Hello world's  test\n"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " test", "\n"}));
  EXPECT_EQ(pieces(pre, "I'M 12345 ok!!"), (std::vector<std::string>{"I", "'", "M", " 12345", " ok", "!!"}));
  EXPECT_EQ(pieces(pre, "  x\t\ty"), (std::vector<std::string>{" ", " x", "\t", "\t", "y"}));
}

TEST(PreTokenizer, Llama3RegexAndDigits) {
  PreTokenizer llama;
  ASSERT_TRUE(llama.add_regex_split(kLlama3Pattern, SplitBehavior::kIsolated, false));
  ASSERT_TRUE(llama.add_byte_level(false, false));
  EXPECT_EQ(pieces(llama, "I'M 12345 ok!!"), (std::vector<std::string>{"I", "'M", " ", "123", "45", " ok", "!!"}));
  EXPECT_EQ(pieces(llama, "  x\t\ty"), (std::vector<std::string>{" ", " x", "\t", "\ty"}));

  PreTokenizer smol;
  smol.add_digits(true);
  ASSERT_TRUE(smol.add_byte_level(false, true));
  EXPECT_EQ(pieces(smol, "a12 b"), (std::vector<std::string>{"a", "1", "2", " b"}));

  PreTokenizer runs;
  runs.add_digits(false);
  EXPECT_EQ(pieces(runs, "a12 b3"), (std::vector<std::string>{"a", "12", " b", "3"}));
}

TEST(PreTokenizer, SplitBehaviors) {
  auto split = [](SplitBehavior b, bool invert) {
    PreTokenizer p;
    p.add_literal_split("-", b, invert);
    return pieces(p, "a-b--c");
  };
  using V = std::vector<std::string>;
  // Expected values from tokenizers.pre_tokenizers.Split("-", behavior, invert).pre_tokenize_str("a-b--c").
  EXPECT_EQ(split(SplitBehavior::kIsolated, false), (V{"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(split(SplitBehavior::kIsolated, true), (V{"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(split(SplitBehavior::kRemoved, false), (V{"a", "b", "c"}));
  EXPECT_EQ(split(SplitBehavior::kRemoved, true), (V{"-", "-", "-"}));
  EXPECT_EQ(split(SplitBehavior::kContiguous, false), (V{"a", "-", "b", "--", "c"}));
  EXPECT_EQ(split(SplitBehavior::kContiguous, true), (V{"a", "-", "b", "--", "c"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithPrevious, false), (V{"a-", "b-", "-", "c"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithPrevious, true), (V{"a", "-b", "-", "-c"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithNext, false), (V{"a", "-b", "-", "-c"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithNext, true), (V{"a-", "b-", "-", "c"}));
}

TEST(PreTokenizer, RejectsBadRegexAndLatePrefixSpace) {
  PreTokenizer p;
  EXPECT_FALSE(p.add_regex_split("(unclosed", SplitBehavior::kIsolated, false));
  p.add_digits(true);
  EXPECT_FALSE(p.add_byte_level(true, true));
}

// A tiny byte-level vocabulary: the bytes a, b, c, x plus merged tokens.
BpeSpec small_spec(std::vector<std::pair<std::string, std::string>> merges) {
  BpeSpec s;
  s.source = "test";
  s.vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"x", 3}, {"ab", 4}, {"bc", 5}, {"abc", 6}, {"aa", 7}, {"xx", 8}};
  s.merges = std::move(merges);
  EXPECT_TRUE(s.pre_tokenizer.add_byte_level(false, false));
  return s;
}

std::vector<int32_t> bpe(const BpeTokenizer& t, const std::string& bytes) {
  std::vector<int32_t> ids;
  t.bpe_piece(bytes, &ids);
  return ids;
}

TEST(Bpe, MergesByRankThenLeftmost) {
  auto t1 = BpeTokenizer::create(small_spec({{"a", "b"}, {"ab", "c"}, {"b", "c"}}));
  ASSERT_TRUE(t1) << t1.error().message;
  EXPECT_EQ(bpe(**t1, "abc"), (std::vector<int32_t>{6}));
  auto t2 = BpeTokenizer::create(small_spec({{"b", "c"}, {"a", "b"}, {"ab", "c"}}));
  ASSERT_TRUE(t2);
  EXPECT_EQ(bpe(**t2, "abc"), (std::vector<int32_t>{0, 5}));  // "bc" outranks "ab"
  auto t3 = BpeTokenizer::create(small_spec({{"a", "a"}}));
  ASSERT_TRUE(t3);
  EXPECT_EQ(bpe(**t3, "aaa"), (std::vector<int32_t>{7, 0}));  // leftmost pair first
  EXPECT_EQ(bpe(**t3, "aaaa"), (std::vector<int32_t>{7, 7}));
  EXPECT_EQ(bpe(**t3, "ay"), (std::vector<int32_t>{0}));  // no token for "y", no unk: dropped like HF
}

TEST(Bpe, IgnoreMergesEmitsWholeVocabPieces) {
  BpeSpec s = small_spec({{"a", "b"}});
  EXPECT_EQ(bpe(**BpeTokenizer::create(small_spec({{"a", "b"}})), "abc"), (std::vector<int32_t>{4, 2}));
  s.ignore_merges = true;
  auto t = BpeTokenizer::create(std::move(s));
  ASSERT_TRUE(t);
  EXPECT_EQ(bpe(**t, "abc"), (std::vector<int32_t>{6}));
}

TEST(Bpe, RejectsMergeOutsideVocab) {
  auto t = BpeTokenizer::create(small_spec({{"c", "x"}}));
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("merge 0"), std::string::npos);
}

TEST(AddedTokens, LongestMatchFirstAndStrip) {
  BpeSpec s = small_spec({{"x", "x"}});
  AddedToken a;
  a.id = 10;
  a.content = "<x>";
  a.special = true;
  AddedToken b = a;
  b.id = 11;
  b.content = "<x><x>";
  AddedToken m = a;
  m.id = 12;
  m.content = "<m>";
  m.lstrip = true;
  s.added_tokens = {a, b, m};
  s.vocab.emplace_back("<", 13);
  s.vocab.emplace_back(">", 14);
  s.vocab.emplace_back("Ġ", 15);  // the byte-level form of a space
  s.prefix_ids = {10};
  auto t = BpeTokenizer::create(std::move(s));
  ASSERT_TRUE(t) << t.error().message;
  const BpeTokenizer& tok = **t;
  EXPECT_EQ(tok.encode("<x><x><x>", false), (std::vector<int32_t>{11, 10}));
  EXPECT_EQ(tok.encode("xx<x>xx", false), (std::vector<int32_t>{8, 10, 8}));
  EXPECT_EQ(tok.encode("x  <m>", false), (std::vector<int32_t>{3, 12}));  // lstrip eats the spaces
  EXPECT_EQ(tok.encode("x<x", true), (std::vector<int32_t>{10, 3, 13, 3}));
  EXPECT_EQ(tok.decode({10, 3, 15, 12}, false), "<x>x <m>");
  EXPECT_EQ(tok.decode({10, 3, 15, 12}, true), "x ");
  EXPECT_TRUE(tok.is_special(11));
  EXPECT_FALSE(tok.is_special(3));
  EXPECT_EQ(tok.token_to_id("<x><x>"), 11);
  EXPECT_EQ(tok.token_to_id("nope"), -1);
}

TEST(TokenizerJson, LoadsLlama3Fixture) {
  auto t = load_tokenizer_json(EMBER_SOURCE_DIR "/tests/fixtures/tokenizer/bpe/llama3.json");
  ASSERT_TRUE(t) << t.error().message;
  const Tokenizer& tok = **t;
  const int32_t bos = tok.token_to_id("<|begin_of_text|>");
  EXPECT_EQ(tok.bos_id(), bos);
  EXPECT_EQ(tok.eos_id(), tok.token_to_id("<|end_of_text|>"));
  const std::vector<int32_t> ids = tok.encode("Hello world, 2024!", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], bos);
  EXPECT_EQ(tok.decode(ids, true), "Hello world, 2024!");
  EXPECT_EQ(tok.decode(ids, false), "<|begin_of_text|>Hello world, 2024!");
  EXPECT_EQ(tok.encode("<|eot_id|>", false), (std::vector<int32_t>{tok.token_to_id("<|eot_id|>")}));
  EXPECT_EQ(tok.decode(tok.encode("\xFF", false), false), "\xEF\xBF\xBD");
}

class BadTokenizerJson : public ::testing::Test {
 protected:
  // Writes `body` to a temp file, loads it, and returns the error message ("" if it loaded).
  std::string load_error(const std::string& body) {
    const std::string path = ::testing::TempDir() + "bad_tokenizer.json";
    std::ofstream(path) << body;
    auto t = load_tokenizer_json(path);
    std::remove(path.c_str());
    return t ? "" : t.error().message;
  }
  static std::string with(const std::string& model, const std::string& pre, const std::string& decoder = R"({"type":"ByteLevel"})") {
    return R"({"added_tokens":[],"normalizer":null,"pre_tokenizer":)" + pre + R"(,"post_processor":null,"decoder":)" +
           decoder + R"(,"model":)" + model + "}";
  }
  const std::string good_model = R"({"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]})";
  const std::string good_pre = R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true})";
};

TEST_F(BadTokenizerJson, ReportsWhatIsWrong) {
  EXPECT_EQ(load_error(with(good_model, good_pre)), "");
  EXPECT_NE(load_error("{not json").find("invalid tokenizer.json"), std::string::npos);
  EXPECT_NE(load_error(with(R"({"type":"WordPiece","vocab":{}})", good_pre)).find("not BPE"), std::string::npos);
  EXPECT_NE(load_error(with(R"({"type":"BPE","byte_fallback":true,"vocab":{},"merges":[]})", good_pre)).find("byte_fallback"),
            std::string::npos);
  EXPECT_NE(load_error(with(good_model, R"({"type":"Whitespace"})")).find("\"Whitespace\" is not supported"), std::string::npos);
  EXPECT_NE(load_error(with(good_model, "null")).find("pre_tokenizer is null"), std::string::npos);
  EXPECT_NE(load_error(with(good_model, good_pre, "null")).find("decoder must be ByteLevel"), std::string::npos);
  EXPECT_NE(load_error(with(R"({"type":"BPE","vocab":{"a":0},"merges":["a c"]})", good_pre)).find("not in the vocab"),
            std::string::npos);
  EXPECT_NE(load_error(with(R"({"type":"BPE","vocab":{"a":-4},"merges":[]})", good_pre)).find("out of range"), std::string::npos);
  EXPECT_NE(load_error(with(R"({"type":"BPE","vocab":{"a":0},"merges":["abc"]})", good_pre)).find("is not \"a b\""),
            std::string::npos);
  EXPECT_NE(load_error(with(good_model, R"({"type":"Split","pattern":{"Regex":"("},"behavior":"Isolated"})")).find("regex"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"model":{"type":"BPE","vocab":{},"merges":[]},"pre_tokenizer":)" + good_pre +
                       R"(,"decoder":{"type":"ByteLevel"},"normalizer":{"type":"Lowercase"}})")
                .find("normalizer \"Lowercase\""),
            std::string::npos);
  EXPECT_NE(load_error("").find("invalid"), std::string::npos);
  EXPECT_NE(load_error("[1,2]").find("no \"model\""), std::string::npos);
}

}  // namespace
}  // namespace ember
