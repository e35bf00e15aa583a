#pragma once
// What the engine tests (tests/unit/test_engine.cpp on the CPU,
// tests/gpu/test_async_gpu.cpp on the GPU) share: a tokenizer whose token i
// decodes to a fixed short piece, so stop strings can be placed across token
// boundaries deliberately, and a reader that drains a request's stream.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "engine/request.h"
#include "models/formats/gguf.h"
#include "models/model_config.h"
#include "models/tokenizer/tokenizer.h"
#include "models/weights.h"

namespace ember::test_util {

class PieceTokenizer final : public Tokenizer {
 public:
  explicit PieceTokenizer(int32_t vocab) : vocab_(vocab) {}
  std::vector<int32_t> encode(std::string_view, bool) const override { return {}; }
  std::string token_bytes(int32_t id) const override {
    static const char* kPieces[] = {"a", "b", "c", " ", "St", "OP", "x\n", "é"};
    return kPieces[id % 8];
  }
  std::string decode(const std::vector<int32_t>& ids, bool) const override {
    std::string s;
    for (int32_t id : ids) s += token_bytes(id);
    return s;
  }
  int32_t vocab_size() const override { return vocab_; }
  int32_t bos_id() const override { return -1; }
  int32_t eos_id() const override { return -1; }
  bool is_special(int32_t) const override { return false; }
  int32_t token_to_id(std::string_view) const override { return -1; }

 private:
  int32_t vocab_;
};

// tests/fixtures/gguf/tiny_llama.gguf (random weights, vocabulary of 32): its config and weights.
inline void load_tiny_llama(ModelConfig& config, LlamaWeights& weights) {
  Result<GgufFile> f = GgufFile::open(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/gguf/tiny_llama.gguf");
  ASSERT_TRUE(f.ok()) << f.error().message;
  Result<ModelConfig> c = model_config_from_gguf(*f);
  ASSERT_TRUE(c.ok()) << c.error().message;
  config = *c;
  Result<LlamaWeights> w = load_llama_weights(*f, config);
  ASSERT_TRUE(w.ok()) << w.error().message;
  weights = std::move(*w);
}

struct Outcome {
  std::vector<std::vector<int32_t>> tokens;  // per sequence index
  std::vector<std::string> text;
  std::vector<FinishReason> finish;
};

// Reads the stream until it is done (at most `limit`); fails the test if it never is.
inline Outcome collect(RequestStream& stream, int32_t n, std::chrono::seconds limit = std::chrono::seconds(120)) {
  Outcome o;
  o.tokens.resize(static_cast<size_t>(n));
  o.text.resize(static_cast<size_t>(n));
  o.finish.assign(static_cast<size_t>(n), FinishReason::kNone);
  const auto deadline = Clock::now() + limit;
  while (!stream.done() && Clock::now() < deadline) {
    for (SequenceDelta& d : stream.pop(std::chrono::milliseconds(50))) {
      const auto i = static_cast<size_t>(d.index);
      o.tokens[i].insert(o.tokens[i].end(), d.token_ids.begin(), d.token_ids.end());
      o.text[i] += d.text;
      if (d.finish != FinishReason::kNone) o.finish[i] = d.finish;
    }
  }
  EXPECT_TRUE(stream.done()) << "request did not finish in time";
  return o;
}

}  // namespace ember::test_util
