// IncrementalDetokenizer: never emits half a UTF-8 character, and the
// concatenation of push() outputs + flush() equals Tokenizer::decode().
// Checked on the SentencePiece fixture (byte-fallback pieces split emoji and
// CJK characters) and on a byte-per-token tokenizer defined here, which
// stands in for byte-level BPE and can produce any byte sequence.

#include <gtest/gtest.h>

#include <random>

#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/unicode.h"

namespace ember {
namespace {

const std::string kSpmDir = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/tokenizer/spm";

// Token i < 256 is the single byte i; 256 is a special "<|eot|>"; 257 is "▁"
// style text " x" (to test the leading-space rule). decode() is written the
// obvious way, independently of the detokenizer.
class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(bool strip_space) : strip_space_(strip_space) {}
  std::vector<int32_t> encode(std::string_view text, bool) const override {
    std::vector<int32_t> ids;
    for (char c : text) ids.push_back(static_cast<uint8_t>(c));
    return ids;
  }
  std::string token_bytes(int32_t id) const override {
    if (id < 256) return std::string(1, static_cast<char>(id));
    return id == 256 ? "<|eot|>" : " x";
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override {
    std::string bytes;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size() || (skip_special && is_special(id))) continue;
      bytes += token_bytes(id);
    }
    std::string text = sanitize_utf8(bytes);
    if (strip_space_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
    return text;
  }
  int32_t vocab_size() const override { return 258; }
  int32_t bos_id() const override { return -1; }
  int32_t eos_id() const override { return 256; }
  bool is_special(int32_t id) const override { return id == 256; }
  int32_t token_to_id(std::string_view) const override { return -1; }
  bool strips_leading_space() const override { return strip_space_; }

 private:
  bool strip_space_;
};

// Streams `ids`, checking every chunk is valid UTF-8; returns the concatenation.
std::string stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  IncrementalDetokenizer detok(tok, skip_special);
  std::string all;
  for (int32_t id : ids) {
    const std::string chunk = detok.push(id);
    EXPECT_TRUE(is_valid_utf8(chunk)) << "chunk after id " << id;
    all += chunk;
  }
  const std::string rest = detok.flush();
  EXPECT_TRUE(is_valid_utf8(rest));
  return all + rest;
}

std::vector<int32_t> bytes_of(std::string_view s) { return ByteTokenizer(false).encode(s, false); }

TEST(Detokenizer, HoldsSplitCharactersUntilComplete) {
  ByteTokenizer tok(false);
  IncrementalDetokenizer d(tok, false);
  // 😀 = F0 9F 98 80, 日 = E6 97 A5
  EXPECT_EQ(d.push(0xF0), "");
  EXPECT_EQ(d.push(0x9F), "");
  EXPECT_EQ(d.push(0x98), "");
  EXPECT_EQ(d.push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(d.push('a'), "a");
  EXPECT_EQ(d.push(0xE6), "");
  EXPECT_EQ(d.push(0x97), "");
  EXPECT_EQ(d.push(0xA5), "\xE6\x97\xA5");
  EXPECT_EQ(d.flush(), "");
}

TEST(Detokenizer, InvalidBytesBecomeReplacementCharacters) {
  ByteTokenizer tok(false);
  const std::string fffd = "\xEF\xBF\xBD";
  {
    IncrementalDetokenizer d(tok, false);
    EXPECT_EQ(d.push('H'), "H");
    EXPECT_EQ(d.push(0xC3), "");  // could still become é
    EXPECT_EQ(d.flush(), fffd);   // the sequence ended: U+FFFD at flush
  }
  {
    IncrementalDetokenizer d(tok, false);
    EXPECT_EQ(d.push(0xF0), "");
    EXPECT_EQ(d.push(0x9F), "");
    EXPECT_EQ(d.push(0x98), "");
    EXPECT_EQ(d.push('('), fffd + "(");  // a truncated emoji is one U+FFFD (maximal subpart)
    EXPECT_EQ(d.push(0xFF), fffd);       // never valid: replaced at once, not held
    EXPECT_EQ(d.flush(), "");
  }
  // Same results as Python's bytes.decode(errors="replace") on the corpus' hex lines.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xff", fffd},
      {"Hello\xffworld", "Hello" + fffd + "world"},
      {"\xc3(", fffd + "("},
      {"\xe2\x82(", fffd + "("},
      {"\xf0\x90\x8c", fffd},
      {"\xed\xa0\x80", fffd + fffd + fffd},  // a surrogate: each byte is its own subpart
      {"\x80\x81\x82\x83", fffd + fffd + fffd + fffd},
      {"H\xc3", "H" + fffd},
      {"\xf0\x9f\x98", fffd},
  };
  for (const auto& [bytes, want] : cases) {
    EXPECT_EQ(stream(tok, bytes_of(bytes), false), want);
    EXPECT_EQ(tok.decode(bytes_of(bytes), false), want);
  }
}

TEST(Detokenizer, RandomByteStreamsMatchDecode) {
  ByteTokenizer tok(false);
  std::mt19937 rng(7);
  // Bytes biased toward UTF-8 lead/continuation values so that valid,
  // truncated and invalid sequences all occur.
  const std::vector<int> alphabet = {'a', ' ', 0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC2, 0xC3, 0xDF, 0xE0,
                                     0xE6, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 256};
  for (int round = 0; round < 2000; ++round) {
    std::vector<int32_t> ids(rng() % 12);
    for (auto& id : ids) id = alphabet[rng() % alphabet.size()];
    for (bool skip : {false, true}) {
      ASSERT_EQ(stream(tok, ids, skip), tok.decode(ids, skip)) << "round " << round;
    }
  }
}

TEST(Detokenizer, SkipsSpecialTokensAndOutOfRangeIds) {
  ByteTokenizer tok(false);
  const std::vector<int32_t> ids = {'a', 256, 'b', -1, 9999, 0xE6, 256, 0x97, 0xA5};
  EXPECT_EQ(stream(tok, ids, true), "ab\xE6\x97\xA5");
  // A special token between the bytes of one character ends that character.
  EXPECT_EQ(stream(tok, ids, false), "a<|eot|>b\xEF\xBF\xBD<|eot|>\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(stream(tok, ids, false), tok.decode(ids, false));
}

TEST(Detokenizer, DropsTheLeadingSpaceOnceLikeDecode) {
  ByteTokenizer tok(true);
  EXPECT_EQ(stream(tok, {257, 257}, false), "x x");
  EXPECT_EQ(stream(tok, {' ', ' ', 'a'}, false), " a");
  EXPECT_EQ(stream(tok, {256, 257}, false), "<|eot|> x");  // not at the start: kept
  EXPECT_EQ(stream(tok, {256, 257}, true), "x");           // skipped specials do not count
  EXPECT_EQ(stream(tok, {0xE6, 257}, false), "\xEF\xBF\xBD x");
  for (const auto& ids : std::vector<std::vector<int32_t>>{{257, 257}, {' ', ' ', 'a'}, {256, 257}, {0xE6, 257}}) {
    for (bool skip : {false, true}) EXPECT_EQ(stream(tok, ids, skip), tok.decode(ids, skip));
  }
  ByteTokenizer keep(false);
  EXPECT_EQ(stream(keep, {257}, false), " x");
}

// The SentencePiece fixture: emoji and CJK outside its vocabulary are spelled
// with <0xNN> byte pieces, so single ids carry partial characters.
TEST(Detokenizer, SentencePieceByteFallbackOneIdAtATime) {
  auto lib = load_sentencepiece_model(kSpmDir + "/tokenizer.model");
  ASSERT_TRUE(lib.ok()) << lib.error().message;
  auto file = GgufFile::open(kSpmDir + "/vocab.gguf");
  ASSERT_TRUE(file.ok()) << file.error().message;
  auto own = load_tokenizer_from_gguf(*file);
  ASSERT_TRUE(own.ok()) << own.error().message;
  const std::vector<std::string> texts = {
      "emoji: \xF0\x9F\x98\x80\xF0\x9F\x98\x83 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",
      "\xE4\xB8\xAD\xE6\x96\x87\xE6\xB5\x8B\xE8\xAF\x95\xEF\xBC\x9A\xE4\xBD\xA0\xE5\xA5\xBD",  // 中文测试：你好
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xF0\x9F\x94\xA5 end",                             // 한국어 🔥 end
      " leading space and \xF0\x9F\x8E\x89",
      "<s>[INST] \xE9\xAF\xA8 [/INST]</s>",
  };
  for (const Tokenizer* tok : {lib->get(), own->get()}) {
    for (const std::string& text : texts) {
      const std::vector<int32_t> ids = tok->encode(text, true);
      int byte_pieces = 0;
      for (int32_t id : ids) byte_pieces += tok->token_bytes(id).size() == 1 && (tok->token_bytes(id)[0] & 0x80);
      EXPECT_GT(byte_pieces, 0) << "fixture should need byte fallback for: " << text;
      for (bool skip : {false, true}) {
        EXPECT_EQ(stream(*tok, ids, skip), tok->decode(ids, skip)) << text;
      }
      EXPECT_EQ(tok->decode(ids, true), text.rfind("<s>", 0) == 0 ? "[INST] \xE9\xAF\xA8 [/INST]" : text);
    }
    // A byte-fallback sequence cut in the middle of a character: U+FFFD at flush.
    std::vector<int32_t> ids = tok->encode("\xF0\x9F\x98\x80", false);
    ASSERT_GE(ids.size(), 4u);
    ids.pop_back();
    IncrementalDetokenizer d(*tok, false);
    std::string out;
    for (int32_t id : ids) out += d.push(id);
    EXPECT_EQ(out, "");
    EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");
    EXPECT_EQ(tok->decode(ids, false), "\xEF\xBF\xBD");
  }
}

}  // namespace
}  // namespace ember
