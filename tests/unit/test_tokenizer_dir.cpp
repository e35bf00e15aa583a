// load_tokenizer_from_dir on a tokenizer.json directory: BOS/EOS follow
// tokenizer_config.json (Llama 3 Instruct ends turns with <|eot_id|>).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "models/tokenizer/tokenizer.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

fs::path make_dir(const std::string& name, const std::string& config) {
  const fs::path dir = fs::path(::testing::TempDir()) / name;
  fs::create_directories(dir);
  fs::copy_file(fs::path(EMBER_SOURCE_DIR) / "tests/fixtures/tokenizer/bpe/llama3.json", dir / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  if (!config.empty()) std::ofstream(dir / "tokenizer_config.json") << config;
  return dir;
}

TEST(TokenizerDir, EosFromTokenizerConfig) {
  auto plain = load_tokenizer_from_dir(make_dir("tokdir_plain", "").string());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  const int32_t eot = (*plain)->token_to_id("<|eot_id|>");
  ASSERT_GE(eot, 0);
  EXPECT_NE((*plain)->eos_id(), eot);

  auto tok = load_tokenizer_from_dir(
      make_dir("tokdir_cfg", R"({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"}})").string());
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  EXPECT_EQ((*tok)->eos_id(), eot);
  EXPECT_EQ((*tok)->bos_id(), (*tok)->token_to_id("<|begin_of_text|>"));
}

TEST(TokenizerDir, UnknownEosIsAnError) {
  auto tok = load_tokenizer_from_dir(make_dir("tokdir_bad", R"({"eos_token": "<|nope|>"})").string());
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.error().message.find("tokenizer_config.json"), std::string::npos);
}

}  // namespace
}  // namespace ember
