// SentencePiece tokenizers: ember's own SPM-BPE over hand-made GGUF "llama"
// vocabularies (merge order, byte fallback, unknowns, dummy prefix, control
// and unused pieces, bad vocabularies), and the library / directory loaders
// on the committed fixture (tests/fixtures/tokenizer/spm, made by
// scripts/gen_spm_fixtures.py). Corpus-wide parity with the Python
// references is tests/integration/test_spm_parity.py.

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/tokenizer_spm_gguf.h"

namespace ember {
namespace {

const std::string kSpmDir = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/tokenizer/spm";

// A minimal GGUF v3 writer: metadata only, no tensors.
class GgufBuilder {
 public:
  GgufBuilder& str(const std::string& key, const std::string& v) {
    key_(key, 8);
    string_(v);
    return *this;
  }
  GgufBuilder& boolean(const std::string& key, bool v) {
    key_(key, 7);
    pod_<uint8_t>(v ? 1 : 0);
    return *this;
  }
  GgufBuilder& u32(const std::string& key, uint32_t v) {
    key_(key, 4);
    pod_(v);
    return *this;
  }
  GgufBuilder& strings(const std::string& key, const std::vector<std::string>& v) {
    key_(key, 9);
    pod_<uint32_t>(8);
    pod_<uint64_t>(v.size());
    for (const auto& s : v) string_(s);
    return *this;
  }
  GgufBuilder& floats(const std::string& key, const std::vector<float>& v) {
    key_(key, 9);
    pod_<uint32_t>(6);
    pod_<uint64_t>(v.size());
    for (float f : v) pod_(f);
    return *this;
  }
  GgufBuilder& ints(const std::string& key, const std::vector<int32_t>& v) {
    key_(key, 9);
    pod_<uint32_t>(5);
    pod_<uint64_t>(v.size());
    for (int32_t i : v) pod_(i);
    return *this;
  }
  // The file bytes; the GgufFile parsed from them points into `bytes_`.
  Result<GgufFile> parse() {
    bytes_.clear();
    const uint32_t magic = 0x46554747, version = 3;
    append_(&magic, 4);
    append_(&version, 4);
    const uint64_t tensors = 0;
    append_(&tensors, 8);
    append_(&count_, 8);
    bytes_ += kvs_;
    return GgufFile::parse(reinterpret_cast<const uint8_t*>(bytes_.data()), bytes_.size(), "hand.gguf");
  }

 private:
  template <class T>
  void pod_(T v) {
    kvs_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void append_(const void* p, size_t n) { bytes_.append(static_cast<const char*>(p), n); }
  void string_(const std::string& s) {
    pod_<uint64_t>(s.size());
    kvs_ += s;
  }
  void key_(const std::string& k, uint32_t type) {
    string_(k);
    pod_(type);
    ++count_;
  }
  std::string kvs_;
  std::string bytes_;
  uint64_t count_ = 0;
};

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

struct Piece {
  std::string text;
  float score;
  int32_t type;
};

// ids: 0 <unk>, 1 <s>, 2 </s>, then `extra` from id 3 on.
GgufBuilder vocab_builder(const std::vector<Piece>& extra, bool add_space_prefix) {
  std::vector<Piece> all = {{"<unk>", 0, kUnknown}, {"<s>", 0, kControl}, {"</s>", 0, kControl}};
  all.insert(all.end(), extra.begin(), extra.end());
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const Piece& p : all) {
    tokens.push_back(p.text);
    scores.push_back(p.score);
    types.push_back(p.type);
  }
  GgufBuilder b;
  b.str("tokenizer.ggml.model", "llama")
      .strings("tokenizer.ggml.tokens", tokens)
      .floats("tokenizer.ggml.scores", scores)
      .ints("tokenizer.ggml.token_type", types)
      .u32("tokenizer.ggml.bos_token_id", 1)
      .u32("tokenizer.ggml.eos_token_id", 2)
      .u32("tokenizer.ggml.unknown_token_id", 0)
      .boolean("tokenizer.ggml.add_bos_token", true)
      .boolean("tokenizer.ggml.add_space_prefix", add_space_prefix);
  return b;
}

// Owns the builder (whose bytes the GgufFile points into) and the tokenizer.
struct HandVocab {
  GgufBuilder builder;
  std::unique_ptr<Tokenizer> tok;
};

HandVocab make(const std::vector<Piece>& extra, bool add_space_prefix = false) {
  HandVocab h{vocab_builder(extra, add_space_prefix), nullptr};
  auto gguf = h.builder.parse();
  EXPECT_TRUE(gguf.ok()) << (gguf.ok() ? "" : gguf.error().message);
  auto tok = load_spm_tokenizer_from_gguf(*gguf);
  EXPECT_TRUE(tok.ok()) << (tok.ok() ? "" : tok.error().message);
  if (tok.ok()) h.tok = std::move(tok).value();
  return h;
}

std::string error_of(GgufBuilder b) {
  auto gguf = b.parse();
  if (!gguf.ok()) return "gguf: " + gguf.error().message;
  auto tok = load_spm_tokenizer_from_gguf(*gguf);
  return tok.ok() ? "" : tok.error().message;
}

using Ids = std::vector<int32_t>;

// a=3 b=4 c=5 ab=6 bc=7 abc=8
const std::vector<Piece> kAbc = {{"a", -10, kNormal}, {"b", -10, kNormal}, {"c", -10, kNormal},
                                 {"ab", -1, kNormal}, {"bc", -0.5, kNormal}, {"abc", -2, kNormal}};

TEST(SpmGguf, MergesHighestScoreFirst) {
  auto h = make(kAbc);
  // bc (-0.5) beats ab (-1); then a+bc -> abc.
  EXPECT_EQ(h.tok->encode("abc", false), (Ids{8}));
  auto no_abc = make({kAbc[0], kAbc[1], kAbc[2], kAbc[3], kAbc[4]});
  EXPECT_EQ(no_abc.tok->encode("abc", false), (Ids{3, 7}));  // a + bc, never ab + c
  auto ab_first = make({kAbc[0], kAbc[1], kAbc[2], {"ab", -0.1f, kNormal}, kAbc[4]});
  EXPECT_EQ(ab_first.tok->encode("abc", false), (Ids{6, 5}));
}

TEST(SpmGguf, TiesMergeLeftmost) {
  auto h = make({{"a", -10, kNormal}, {"aa", -1, kNormal}});
  EXPECT_EQ(h.tok->encode("aaa", false), (Ids{4, 3}));
  EXPECT_EQ(h.tok->encode("aaaaa", false), (Ids{4, 4, 3}));
}

TEST(SpmGguf, ByteFallbackForUnknownCharacters) {
  std::vector<Piece> v = kAbc;
  for (int b : {0xC3, 0xA9, 0xE6, 0x97, 0xA5}) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    v.push_back({name, 0, kByte});  // ids 9..13
  }
  auto h = make(v);
  EXPECT_EQ(h.tok->encode("a\xC3\xA9" "b", false), (Ids{3, 9, 10, 4}));       // é
  EXPECT_EQ(h.tok->encode("\xE6\x97\xA5", false), (Ids{11, 12, 13}));       // 日
  EXPECT_EQ(h.tok->encode("\xE2\x82\xAC", false), (Ids{0, 0, 0}));  // € : no <0xE2>... pieces -> <unk> per byte
  EXPECT_EQ(h.tok->decode({3, 9, 10, 4}, false), "a\xC3\xA9" "b");
  EXPECT_EQ(h.tok->token_bytes(9), "\xC3");
}

TEST(SpmGguf, UnknownWithoutByteFallback) {
  auto h = make(kAbc);
  EXPECT_EQ(h.tok->encode("a\xC3\xA9z", false), (Ids{3, 0, 0}));  // one <unk> per unknown character
  EXPECT_TRUE(h.tok->is_special(0));
  EXPECT_EQ(h.tok->decode({3, 0}, false), "a<unk>");
  EXPECT_EQ(h.tok->decode({3, 0}, true), "a");
}

TEST(SpmGguf, InvalidUtf8InputIsRepairedFirst) {
  std::vector<Piece> v = kAbc;
  for (const char* b : {"<0xEF>", "<0xBF>", "<0xBD>"}) v.push_back({b, 0, kByte});  // 9..11 = U+FFFD
  auto h = make(v);
  EXPECT_EQ(h.tok->encode("a\xFF" "b", false), (Ids{3, 9, 10, 11, 4}));
  EXPECT_EQ(h.tok->encode("\xF0\x9F\x98", false), (Ids{9, 10, 11}));  // one U+FFFD for the truncated emoji
}

TEST(SpmGguf, SpacePrefixAndSpaces) {
  // "▁" = E2 96 81
  auto h = make({{"\xE2\x96\x81", -5, kNormal}, {"a", -5, kNormal}, {"b", -5, kNormal},
                 {"\xE2\x96\x81" "a", -1, kNormal}, {"\xE2\x96\x81\xE2\x96\x81", -2, kNormal}},
                /*add_space_prefix=*/true);
  EXPECT_EQ(h.tok->encode("a", false), (Ids{6}));                 // ▁a
  EXPECT_EQ(h.tok->encode("a b", false), (Ids{6, 3, 5}));         // ▁a ▁ b
  EXPECT_EQ(h.tok->encode(" a", false), (Ids{3, 6}));             // ▁ ▁a: ▁a (-1) beats ▁▁ (-2)
  EXPECT_EQ(h.tok->encode("a", true), (Ids{1, 6}));               // BOS
  EXPECT_EQ(h.tok->encode("", true), (Ids{1}));
  EXPECT_EQ(h.tok->encode("", false), (Ids{}));
  EXPECT_EQ(h.tok->decode({6, 3, 5}, false), "a b");              // the dummy prefix is dropped
  EXPECT_EQ(h.tok->decode({1, 6}, false), "<s> a");               // ... only at the very start (HF)
  EXPECT_EQ(h.tok->decode({1, 6}, true), "a");
  EXPECT_TRUE(h.tok->strips_leading_space());
  auto no_prefix = make({{"\xE2\x96\x81", -5, kNormal}, {"a", -5, kNormal}}, false);
  EXPECT_EQ(no_prefix.tok->encode("a a", false), (Ids{4, 3, 4}));
  EXPECT_FALSE(no_prefix.tok->strips_leading_space());
}

TEST(SpmGguf, ControlAndUserDefinedTokensInText) {
  auto h = make({{"\xE2\x96\x81", -5, kNormal}, {"a", -5, kNormal}, {"<|x|>", 0, kUserDefined},
                 {"<", -5, kNormal}, {"s", -5, kNormal}, {">", -5, kNormal}},
                true);
  // Control strings are matched whole; a segment after a special token gets no dummy prefix.
  EXPECT_EQ(h.tok->encode("<s>a", false), (Ids{1, 4}));
  EXPECT_EQ(h.tok->encode("a<s>a</s>", false), (Ids{3, 4, 1, 4, 2}));
  EXPECT_EQ(h.tok->encode("a<|x|>a", false), (Ids{3, 4, 5, 4}));
  EXPECT_EQ(h.tok->encode("<unk>", false), (Ids{0}));
  EXPECT_EQ(h.tok->encode("<s", false), (Ids{3, 6, 7}));  // a prefix of a control string is text
  EXPECT_TRUE(h.tok->is_special(1));
  EXPECT_FALSE(h.tok->is_special(5));  // user-defined pieces are text (llama.cpp, Gemma)
  EXPECT_EQ(h.tok->decode({1, 4, 5, 2}, true), "a<|x|>");
  EXPECT_EQ(h.tok->decode({1, 4, 5, 2}, false), "<s>a<|x|></s>");
  EXPECT_EQ(h.tok->token_to_id("<|x|>"), 5);
  EXPECT_EQ(h.tok->token_to_id("nope"), -1);
  EXPECT_EQ(h.tok->bos_id(), 1);
  EXPECT_EQ(h.tok->eos_id(), 2);
}

TEST(SpmGguf, UnusedPiecesAreSplitBack) {
  // bc is unused: it may be formed by a merge but is emitted as b + c.
  auto h = make({kAbc[0], kAbc[1], kAbc[2], kAbc[3], {"bc", -0.5, kUnused}});
  EXPECT_EQ(h.tok->encode("abc", false), (Ids{3, 4, 5}));
  // With abc present, the unused bc is an intermediate step only.
  auto with_abc = make({kAbc[0], kAbc[1], kAbc[2], kAbc[3], {"bc", -0.5, kUnused}, kAbc[5]});
  EXPECT_EQ(with_abc.tok->encode("abc", false), (Ids{8}));
}

TEST(SpmGguf, ControlPiecesAreNeverMergeTargets) {
  // "▁a" exists only as a control piece; raw text cannot spell "▁" as a space,
  // so it is never matched whole either, and merging must not produce it.
  auto h = make({{"\xE2\x96\x81", -1, kNormal}, {"a", -1, kNormal}, {"\xE2\x96\x81" "a", 0, kControl}}, true);
  EXPECT_EQ(h.tok->encode("a", false), (Ids{3, 4}));
}

TEST(SpmGguf, BadVocabularies) {
  auto base = [](bool scores, bool types) {
    GgufBuilder b;
    b.str("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
    if (scores) b.floats("tokenizer.ggml.scores", {0, 0, 0, -1});
    if (types) b.ints("tokenizer.ggml.token_type", {2, 3, 3, 1});
    return b;
  };
  EXPECT_EQ(error_of(base(true, true)), "");
  EXPECT_NE(error_of(base(false, true)).find("tokenizer.ggml.scores is missing"), std::string::npos);
  EXPECT_NE(error_of(base(true, false)).find("tokenizer.ggml.token_type is missing"), std::string::npos);
  EXPECT_NE(error_of(base(false, true).floats("tokenizer.ggml.scores", {0, 0})).find("2 entries for 4 tokens"),
            std::string::npos);
  EXPECT_NE(error_of(base(true, false).ints("tokenizer.ggml.token_type", {1, 1, 1, 1, 1})).find("5 entries for 4"),
            std::string::npos);
  EXPECT_NE(error_of(base(true, false).ints("tokenizer.ggml.token_type", {2, 3, 3, 9})).find("unknown type 9"),
            std::string::npos);
  EXPECT_NE(error_of(base(true, false).ints("tokenizer.ggml.token_type", {2, 3, 3, 6})).find("not <0xNN>"),
            std::string::npos);
  EXPECT_NE(error_of(base(true, true).u32("tokenizer.ggml.bos_token_id", 4)).find("bos_token_id = 4 is outside"),
            std::string::npos);
  EXPECT_NE(error_of(base(true, true).u32("tokenizer.ggml.unknown_token_id", 99)).find("outside"), std::string::npos);
  EXPECT_NE(error_of(base(true, true).str("tokenizer.ggml.eos_token_id", "x")).find("not an integer"),
            std::string::npos);
  EXPECT_NE(error_of(base(true, true).str("tokenizer.ggml.add_bos_token", "yes")).find("not a bool"),
            std::string::npos);
  GgufBuilder wrong_model;
  wrong_model.str("tokenizer.ggml.model", "gpt2");
  EXPECT_NE(error_of(wrong_model).find("not \"llama\""), std::string::npos);
  GgufBuilder empty;
  empty.str("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", {});
  EXPECT_NE(error_of(empty).find("token count 0"), std::string::npos);
  GgufBuilder not_strings;
  not_strings.str("tokenizer.ggml.model", "llama").ints("tokenizer.ggml.tokens", {1, 2});
  EXPECT_NE(error_of(not_strings).find("not an array of strings"), std::string::npos);
  // Error messages name the file.
  EXPECT_NE(error_of(base(false, true)).find("hand.gguf"), std::string::npos);
}

// ---- the committed fixture: library, GGUF and directory loaders agree ----

std::vector<std::string> corpus() {
  std::ifstream in(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/tokenizer/corpus.jsonl");
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    if (j.contains("text")) texts.push_back(j["text"].get<std::string>());
  }
  return texts;
}

TEST(SpmFixture, LibraryAndGgufPathsAgreeOnCorpus) {
  auto lib = load_sentencepiece_model(kSpmDir + "/tokenizer.model");
  ASSERT_TRUE(lib.ok()) << lib.error().message;
  auto file = GgufFile::open(kSpmDir + "/vocab.gguf");
  ASSERT_TRUE(file.ok()) << file.error().message;
  auto own = load_tokenizer_from_gguf(*file);
  ASSERT_TRUE(own.ok()) << own.error().message;
  const auto texts = corpus();
  ASSERT_GE(texts.size(), 60u);
  for (const std::string& t : texts) {
    for (bool add_special : {true, false}) {
      const Ids a = (*lib)->encode(t, add_special);
      EXPECT_EQ(a, (*own)->encode(t, add_special)) << t;
      EXPECT_EQ((*lib)->decode(a, false), (*own)->decode(a, false)) << t;
    }
  }
  EXPECT_EQ((*lib)->vocab_size(), 1200);
  EXPECT_EQ((*lib)->bos_id(), 1);
  EXPECT_EQ((*lib)->eos_id(), 2);
  // Known pieces from scripts/gen_spm_fixtures.py's output: "▁Hello" "▁world".
  EXPECT_EQ((*lib)->encode("Hello world", false).size(), 2u);
  EXPECT_EQ((*lib)->decode((*lib)->encode("Hello world", true), true), "Hello world");
}

TEST(SpmFixture, DirectoryUsesTokenizerConfig) {
  auto bos_only = load_tokenizer_from_dir(kSpmDir + "/hf_llama");
  ASSERT_TRUE(bos_only.ok()) << bos_only.error().message;
  auto eos_only = load_tokenizer_from_dir(kSpmDir + "/hf_llama_eos");
  ASSERT_TRUE(eos_only.ok()) << eos_only.error().message;
  const Ids plain = (*bos_only)->encode("Hello", false);
  Ids with_bos = {1};
  with_bos.insert(with_bos.end(), plain.begin(), plain.end());
  Ids with_eos = plain;
  with_eos.push_back(2);
  EXPECT_EQ((*bos_only)->encode("Hello", true), with_bos);
  EXPECT_EQ((*eos_only)->encode("Hello", true), with_eos);
  // added_tokens_decoder marks <|im_end|> special: skipped by decode(skip_special).
  const int32_t im_end = (*bos_only)->token_to_id("<|im_end|>");
  EXPECT_TRUE((*bos_only)->is_special(im_end));
  EXPECT_EQ((*bos_only)->decode({im_end}, true), "");
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() / ("ember_spm_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                                                      "_" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::binary) << content;
    return (path_ / name).string();
  }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

TEST(SpmFixture, BadFilesAreErrors) {
  TempDir dir;
  EXPECT_FALSE(load_tokenizer_from_dir(dir.str()).ok());  // neither file
  EXPECT_FALSE(load_sentencepiece_model(dir.str() + "/missing.model").ok());
  EXPECT_FALSE(load_sentencepiece_model(dir.file("empty.model", "")).ok());
  std::ifstream in(kSpmDir + "/tokenizer.model", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string model = ss.str();
  for (size_t cut : {size_t{1}, size_t{7}, model.size() / 2, model.size() - 3}) {
    auto r = load_sentencepiece_model(dir.file("cut.model", model.substr(0, cut)));
    EXPECT_FALSE(r.ok()) << cut;
  }
  auto garbage = load_sentencepiece_model(dir.file("garbage.model", std::string(64, '\xff')));
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().message.find("garbage.model"), std::string::npos);

  dir.file("tokenizer.model", model);
  dir.file("tokenizer_config.json", "{\"added_tokens_decoder\": {\"5\": {\"content\": \"<wrong>\"}}}");
  auto mismatch = load_tokenizer_from_dir(dir.str());
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.error().message.find("<wrong>"), std::string::npos);
  dir.file("tokenizer_config.json", "{not json");
  EXPECT_FALSE(load_tokenizer_from_dir(dir.str()).ok());
  // An added token right after the vocabulary is appended and matched whole.
  dir.file("tokenizer_config.json", "{\"added_tokens_decoder\": {\"1200\": {\"content\": \"<pad>\", \"special\": true}}}");
  auto added = load_tokenizer_from_dir(dir.str());
  ASSERT_TRUE(added.ok()) << added.error().message;
  EXPECT_EQ((*added)->vocab_size(), 1201);
  EXPECT_EQ((*added)->encode("<pad>", false), (Ids{1200}));
  EXPECT_EQ((*added)->decode({1200}, false), "<pad>");
  EXPECT_EQ((*added)->decode({1200}, true), "");
}

}  // namespace
}  // namespace ember
