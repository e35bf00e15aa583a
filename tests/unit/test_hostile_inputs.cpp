// Hostile inputs that once exhausted the stack or memory (found in review):
// deeply nested JSON, decoded GGUF metadata far larger than the file, token
// ids far past the vocabulary.

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/json_limits.h"
#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"

namespace ember {
namespace {

TEST(JsonShape, DepthAndContainerLimits) {
  EXPECT_TRUE(check_json_shape(R"({"a": [1, {"b": 2}]})", 3, 10, "x").ok());
  EXPECT_FALSE(check_json_shape(R"({"a": [1, {"b": [2]}]})", 3, 10, "x").ok());
  EXPECT_FALSE(check_json_shape("[[],[],[],[]]", 8, 4, "x").ok());
  // Brackets inside strings, escaped quotes included, do not count.
  EXPECT_TRUE(check_json_shape(R"({"k": "[[[[{{{{\"[[[["})", 1, 1, "x").ok());
  auto s = check_json_shape(std::string(100000, '['), 64, 1u << 20, "deep.json");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("deep.json: offset 64"), std::string::npos) << s.error().message;
}

TEST(JsonShape, ObjectMemberLimit) {
  // Members of one object count (commas inside strings and nested containers do not); arrays are not limited.
  EXPECT_TRUE(check_json_shape(R"({"a": 1, "b": 2, "c": 3})", 4, 10, "x", 3).ok());
  auto s = check_json_shape(R"({"a": 1, "b": 2, "c": 3, "d": 4})", 4, 10, "x", 3);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("more than 3 members"), std::string::npos) << s.error().message;
  EXPECT_TRUE(check_json_shape(R"({"a": "x,y,z,w", "b": [1, 2, 3, 4, 5], "c": {"d": 1, "e": 2}})", 4, 10, "x", 3).ok());
  std::string bias = R"({"logit_bias": {)";
  for (int i = 0; i < 70000; ++i) bias += (i ? ",\"" : "\"") + std::to_string(i) + "\": 1";
  bias += "}}";
  EXPECT_FALSE(check_json_shape(bias, 8, 100, "x", 65536).ok());
  EXPECT_TRUE(check_json_shape(bias, 8, 100, "x").ok());  // unlimited by default
  // (Unbalanced text, closing brackets first, once indexed the member tracking below zero: the fuzz corpora keep
  // those inputs, under the sanitizers of the fuzz runs; a plain build could not see the fault.)
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(HostileTokenizerJson, DeepNestingIsAnErrorNotAStackOverflow) {
  const std::string deep = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": )" +
                           std::string(100000, '[') + std::string(100000, ']') + "}";
  auto tok = load_tokenizer_json(write_temp("deep_tokenizer.json", deep));
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.error().message.find("nested deeper"), std::string::npos) << tok.error().message;
}

TEST(HostileTokenizerJson, IdFarPastTheVocabularyIsRejected) {
  const std::string text = R"({"model": {"type": "BPE", "vocab": {"a": 16777215, "b": 1}, "merges": []},
                               "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
                               "decoder": {"type": "ByteLevel"}})";
  auto tok = load_tokenizer_json(write_temp("far_id.json", text));
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.error().message.find("16777215"), std::string::npos) << tok.error().message;
  const std::string float_id = R"({"model": {"type": "BPE", "vocab": {"a": 1e300}, "merges": []}})";
  EXPECT_FALSE(load_tokenizer_json(write_temp("float_id.json", float_id)).ok());
}

TEST(HostileTokenizerJson, CatastrophicRegexDegradesInsteadOfHanging) {
  // (a+)+b on a run of a's without a b backtracks exponentially: without the
  // matcher's time limit this encode runs for hours.
  const std::string text = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2}, "merges": []},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(a+)+b"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "decoder": {"type": "ByteLevel"}})";
  auto tok = load_tokenizer_json(write_temp("evil_regex.json", text));
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const std::string input = std::string(40, 'a') + "c";
  const auto ids = (*tok)->encode(input, false);
  EXPECT_EQ(ids.size(), input.size());
  EXPECT_EQ((*tok)->decode(ids, false), input);
}

template <class T>
void put(std::vector<uint8_t>* out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out->insert(out->end(), p, p + sizeof(T));
}

TEST(HostileGguf, MetadataThatExplodesWhenDecodedIsRejected) {
  // One key holding 3M empty arrays: 12 bytes each in the file (36 MB), a
  // whole GgufValue each once decoded (over half a GiB).
  constexpr uint64_t kCount = 3'000'000;
  std::vector<uint8_t> file;
  file.reserve(64 + kCount * 12);
  const char magic[4] = {'G', 'G', 'U', 'F'};
  file.insert(file.end(), magic, magic + 4);
  put<uint32_t>(&file, 3);        // version
  put<uint64_t>(&file, 0);        // tensors
  put<uint64_t>(&file, 1);        // kv pairs
  put<uint64_t>(&file, 1);        // key length
  file.push_back('k');
  put<uint32_t>(&file, 9);        // value: array
  put<uint32_t>(&file, 9);        // of arrays
  put<uint64_t>(&file, kCount);
  for (uint64_t i = 0; i < kCount; ++i) {
    put<uint32_t>(&file, 0);      // inner: uint8 elements
    put<uint64_t>(&file, 0);      // none of them
  }
  auto parsed = GgufFile::parse(file.data(), file.size(), "bomb.gguf");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("MiB of memory"), std::string::npos) << parsed.error().message;
}

}  // namespace
}  // namespace ember
