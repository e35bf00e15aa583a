// `ember generate`: one prompt through the decoder on the CPU backend, the
// text streamed as it is produced, then a line of prompt tokens, generated
// tokens, time to first token and decode tokens/s. This is the offline path
// without a scheduler: one sequence, its KV blocks laid out in order.
// (The engine of issue 5 replaces this loop; the output format stays.)

#include "cli/generate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>

#include <spdlog/spdlog.h>

#include "engine/sampler.h"
#include "kernels/cpu/cpu_ops.h"
#include "models/llama_decoder.h"
#include "models/weights.h"

namespace ember {

int generate_one(const ModelSource& src, const GenerateOptions& o) {
  using Clock = std::chrono::steady_clock;
  if (src.format != ModelFormat::kGguf || !src.gguf) {
    spdlog::error("ember generate: only GGUF models can run yet (safetensors weights are not wired to the decoder)");
    return 3;
  }
  if (o.chat) {
    spdlog::error("ember generate --chat: the chat template renderer is not built yet");
    return 3;
  }
  SamplingParams params;
  params.max_tokens = o.max_tokens;
  params.temperature = static_cast<float>(o.temperature);
  params.top_p = static_cast<float>(o.top_p);
  params.top_k = o.top_k;
  params.seed = o.sampling_seed ? static_cast<uint64_t>(*o.sampling_seed) : std::random_device{}();
  const ModelConfig& cfg = src.config;
  if (Status s = params.validate(static_cast<int32_t>(cfg.vocab_size)); !s) {
    spdlog::error("{}", s.error().message);
    return 2;
  }
  const std::vector<int32_t> prompt = src.tokenizer->encode(o.prompt, /*add_special=*/true);
  if (prompt.empty()) {
    spdlog::error("ember generate: the prompt is empty");
    return 2;
  }
  const int64_t max_len = o.model.max_model_len > 0 ? o.model.max_model_len : cfg.max_position_embeddings;
  if (static_cast<int64_t>(prompt.size()) + params.max_tokens > max_len) {
    spdlog::error("ember generate: {} prompt tokens + {} new tokens exceed the context length {}", prompt.size(),
                  params.max_tokens, max_len);
    return 2;
  }

  auto weights = load_llama_weights(*src.gguf, cfg);
  if (!weights) {
    spdlog::error("{}", weights.error().message);
    return 1;
  }
  CpuBackend backend(o.engine.num_threads);
  LlamaDecoder decoder(*weights, backend);
  const int64_t block = o.engine.block_size;
  const int64_t total = static_cast<int64_t>(prompt.size()) + params.max_tokens;
  const int64_t blocks = (total + block - 1) / block;
  KvCache cache = KvCache::allocate(cfg, blocks, block);

  // One sequence whose blocks are 0, 1, 2, ... in order.
  ForwardInputs in;
  in.max_blocks_per_seq = static_cast<int32_t>(blocks);
  in.block_tables.resize(static_cast<size_t>(blocks));
  std::iota(in.block_tables.begin(), in.block_tables.end(), 0);
  auto step = [&](const std::vector<int32_t>& tokens, int32_t start) {
    const auto n = static_cast<int32_t>(tokens.size());
    in.token_ids = tokens;
    in.positions.resize(tokens.size());
    in.slot_mapping.resize(tokens.size());
    for (int32_t i = 0; i < n; ++i) {
      in.positions[i] = start + i;
      in.slot_mapping[i] = start + i;
    }
    in.query_start_loc = {0, n};
    in.seq_lens = {start + n};
    in.logits_indices = {n - 1};
  };

  std::vector<int32_t> eos(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end());
  if (src.tokenizer->eos_id() >= 0) eos.push_back(src.tokenizer->eos_id());
  Sampler sampler(eos);
  RequestGenerator gen{*params.seed, 0, 0};
  IncrementalDetokenizer detok(*src.tokenizer, /*skip_special=*/true);
  std::vector<int32_t> output;
  std::vector<float> logits;

  const auto t0 = Clock::now();
  Clock::time_point first{};
  step(prompt, 0);
  for (int i = 0; i < params.max_tokens; ++i) {
    decoder.forward(in, cache, logits);
    SamplerRow row{logits, prompt, output, &params, &gen};
    const int32_t token = sampler.sample(row).token;
    if (i == 0) first = Clock::now();
    output.push_back(token);
    const bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
    if (is_eos && !params.ignore_eos) break;
    std::fputs(detok.push(token).c_str(), stdout);
    std::fflush(stdout);
    step({token}, static_cast<int32_t>(prompt.size() + output.size() - 1));
  }
  std::fputs(detok.flush().c_str(), stdout);
  const auto t1 = Clock::now();
  const double ttft = std::chrono::duration<double>(first - t0).count();
  const double decode_s = std::chrono::duration<double>(t1 - first).count();
  const size_t decoded = output.size() > 1 ? output.size() - 1 : 0;
  std::printf("\n\nprompt tokens: %zu, generated tokens: %zu, time to first token: %.3f s, decode: %.1f tokens/s\n",
              prompt.size(), output.size(), ttft, decoded > 0 && decode_s > 0 ? decoded / decode_s : 0.0);
  return 0;
}

}  // namespace ember
