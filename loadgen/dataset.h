#pragma once
// The prompts a benchmark sends, with their token counts and max_tokens.
//  random:   random ordinary tokens, exactly input_len tokens under the
//            target's tokenizer (lengths drawn in [L(1-r), L(1+r)] with
//            --random-range-ratio r, as vLLM).
//  sharegpt: a ShareGPT JSON file; the first turn is the prompt, the reply's
//            token count is max_tokens (unless output_len is set). Too short
//            (< 4 tokens) or too long (prompt > 1024, both > 2048) pairs are
//            skipped, as vLLM does.
//  prefix:   num_prefix_groups random prefixes of prefix_len tokens, each
//            request one of them plus a random suffix of input_len tokens: it
//            exercises prefix caching.
//  jsonl:    one JSON object a line: {"prompt": "...", "max_tokens": N}
//            ("output_len" is accepted for max_tokens; without either, output_len).

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "loadgen/openai_client.h"
#include "loadgen/token_counter.h"

namespace ember {

struct DatasetOptions {
  std::string name = "random";  // random | sharegpt | prefix | jsonl
  std::string path;             // sharegpt and jsonl
  int64_t num_prompts = 100;
  int64_t input_len = 512;
  int64_t output_len = 128;     // random, prefix; sharegpt/jsonl when > 0 overrides the file
  double range_ratio = 0;       // in [0, 1)
  int64_t prefix_len = 256;
  int64_t num_prefix_groups = 4;
  uint64_t seed = 0;
};

Result<std::vector<BenchRequest>> build_dataset(const DatasetOptions& options, TokenCounter& counter);

// Random ids from `pool` whose text is exactly `target` tokens when appended
// to `prefix_text` (whose own count is part of target). Returns the text of
// the suffix; the exact count lands in *total_tokens (it may differ from target
// when the tokenizer cannot be made to agree in a few rounds, which is rare).
Result<std::string> exact_token_suffix(TokenCounter& counter, const std::string& prefix_text, int64_t target,
                                       uint64_t seed, int64_t* total_tokens);

}  // namespace ember
