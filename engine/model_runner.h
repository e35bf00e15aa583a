#pragma once
// The model runner: turns one scheduler step into one forward pass. It owns
// the weights, the backend and the paged KV cache; it builds the flat varlen
// ForwardInputs (the same on CPU and GPU) from the scheduled sequences and
// returns one logits row per sequence that wants a token sampled.
//
// It knows nothing of requests or sampling: the engine describes each
// scheduled sequence as a StepSequence and gets logits back.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/sampler.h"
#include "kernels/backend.h"
#include "models/llama_decoder.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {

struct StepSequence {
  std::span<const int32_t> tokens;     // the sequence's whole known context (prompt + output)
  int64_t start = 0;                   // tokens already in the KV cache
  int32_t num_tokens = 0;              // tokens to compute this step: tokens[start, start + num_tokens)
  std::span<const int32_t> block_ids;  // its KV blocks, covering start + num_tokens slots
  bool wants_logits = false;           // the chunk ends the known context: a token will be sampled
  // Async scheduling: >= 0 when the chunk's last token is not in `tokens` yet
  // (tokens holds start + num_tokens - 1 of them): it is the token the previous
  // launch() sampled for its row `prev_row`, read on the device.
  int32_t prev_row = -1;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // Rows of `logits` follow the sequences with wants_logits, in order;
  // each row holds vocab_size() floats.
  virtual void execute(std::span<const StepSequence> seqs, std::vector<float>& logits) = 0;
  // The step and its sampling where the logits are (the GPU: they never
  // cross PCIe). rows[i] describes the i-th sequence with wants_logits; its
  // `logits` span is not read. Returns false, having done nothing, when this
  // runner cannot: the engine then runs execute() and the CPU Sampler.
  virtual bool execute_and_sample(std::span<const StepSequence> /*seqs*/, std::span<const SamplerRow> /*rows*/,
                                  std::vector<SampledToken>& /*out*/) {
    return false;
  }
  // Async scheduling: starts the step and its sampling (as execute_and_sample)
  // and returns without waiting for them; collect() later returns the tokens.
  // Sequences with prev_row >= 0 take their last input token from the previous
  // launch's samples on the device. rows are read during the call only (the
  // generators of non-greedy rows advance here). At most two launches may be
  // outstanding. Returns false, having done nothing, when this runner cannot:
  // the engine then steps synchronously.
  virtual bool launch(std::span<const StepSequence> /*seqs*/, std::span<const SamplerRow> /*rows*/) { return false; }
  // Waits for the oldest outstanding launch; its tokens, one per row.
  virtual void collect(std::vector<SampledToken>& out) { out.clear(); }
  virtual const ModelConfig& config() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int64_t num_blocks() const = 0;
  virtual int32_t block_size() const = 0;
};

// Builds the flat varlen batch for `seqs` (exposed for tests and the CUDA runner).
void build_forward_inputs(std::span<const StepSequence> seqs, int32_t block_size, ForwardInputs& in);

// Float32 on the CPU backend. The cache gets `num_blocks` blocks of `block_size` tokens.
class CpuModelRunner final : public ModelRunner {
 public:
  CpuModelRunner(LlamaWeights weights, int num_threads, int64_t num_blocks, int32_t block_size);

  void execute(std::span<const StepSequence> seqs, std::vector<float>& logits) override;
  const ModelConfig& config() const override { return weights_.config; }
  int32_t vocab_size() const override { return static_cast<int32_t>(weights_.config.vocab_size); }
  int64_t num_blocks() const override { return cache_.num_blocks; }
  int32_t block_size() const override { return static_cast<int32_t>(cache_.block_size); }

  // KV bytes one token takes in this runner's cache (both K and V, all layers).
  static int64_t kv_bytes_per_token(const ModelConfig& config);

 private:
  LlamaWeights weights_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaDecoder> decoder_;
  KvCache cache_;
  ForwardInputs inputs_;
};

}  // namespace ember
