#pragma once
// The target model's tokenizer, as the dataset builder needs it: to make
// prompts that are exactly N tokens long and to count ShareGPT lengths. Either
// ember's own tokenizer loaded from a local file (--tokenizer), or the server's
// POST /tokenize and /detokenize (ember and vLLM both serve them).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace ember {

class OpenAiClient;
class Tokenizer;

class TokenCounter {
 public:
  virtual ~TokenCounter() = default;
  // Counts as the server's completion endpoint does (special tokens added).
  virtual Result<std::vector<int32_t>> encode(const std::string& text) = 0;
  virtual Result<std::string> decode(const std::vector<int32_t>& ids) = 0;
  // Ids random prompts are drawn from: ordinary (non-special) tokens.
  virtual const std::vector<int32_t>& id_pool() = 0;
};

// A GGUF file, tokenizer.json, tokenizer.model or a Hugging Face directory.
Result<std::unique_ptr<TokenCounter>> local_token_counter(const std::string& path);
// Over a tokenizer the caller owns (and keeps alive).
std::unique_ptr<TokenCounter> tokenizer_token_counter(const Tokenizer& tokenizer);
// The client must outlive the counter.
Result<std::unique_ptr<TokenCounter>> server_token_counter(OpenAiClient& client, const std::string& model);

}  // namespace ember
