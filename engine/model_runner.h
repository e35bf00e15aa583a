#pragma once
// The model runner: turns one scheduler step into one forward pass and its
// sampling. It owns the weights, the backend, the paged KV cache and the
// sampler; it builds the flat varlen ForwardInputs (the same on CPU and GPU)
// from the scheduled sequences, runs the decoder and samples one token per
// logits row where the logits are (the GPU: they never cross PCIe).
//
// One API for every runner, synchronous or not: launch() a step, collect()
// its tokens. A GPU runner returns from launch() once the work is enqueued,
// so the engine can prepare the next step while this one runs (async
// scheduling); the CPU runner finishes the step inside launch(). The API is
// rank-agnostic so that a runner over several devices (tensor parallelism,
// not built yet) can hand the same StepSequences and rows to every rank in
// launch() and sample once.
//
// It knows nothing of requests: the engine describes each scheduled sequence
// as a StepSequence and each row to sample as a SamplerRow.

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/parallel/shard.h"
#include "engine/sampler.h"
#include "kernels/backend.h"
#include "kernels/communicator.h"
#include "models/llama_decoder.h"
#include "models/model_config.h"
#include "models/weights.h"

namespace ember {

struct StepSequence {
  std::span<const int32_t> tokens;     // the sequence's whole known context (prompt + output)
  int64_t start = 0;                   // tokens already in the KV cache
  int32_t num_tokens = 0;              // tokens to compute this step: tokens[start, start + num_tokens)
  std::span<const int32_t> block_ids;  // its KV blocks, covering start + num_tokens slots
  // Logits rows this chunk yields, from its last num_logits positions: 0 for
  // a prompt chunk that does not end the prompt, 1 for a decode or the end of
  // a prompt, k + 1 where the chunk ends with k proposed tokens to verify.
  int32_t num_logits = 0;
  // Async scheduling: >= 0 when the chunk's last token is not in `tokens` yet
  // (tokens holds start + num_tokens - 1 of them): it is the token the
  // previous launch() sampled for its row `prev_row`, read where that launch
  // left it (on the device for a GPU runner).
  int32_t prev_row = -1;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // Starts one step: the forward over `seqs` and the sampling of `rows`, one
  // row per logits row (in sequence order, and within a sequence in position
  // order). A row's `logits` span is not read: the runner's logits are.
  // rows are read during the call only (the generators of non-greedy rows
  // advance here). At most two launches may be outstanding.
  virtual void launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) = 0;
  // Waits for the oldest outstanding launch; its tokens, one per row.
  virtual void collect(std::vector<SampledToken>& out) = 0;

  // The forward alone, its logits rows copied to the host (each vocab_size()
  // floats). For tests and tools that compare backends; the engine never
  // calls it. No launch may be outstanding.
  virtual void forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) = 0;

  virtual const ModelConfig& config() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int64_t num_blocks() const = 0;
  virtual int32_t block_size() const = 0;
};

// Builds the flat varlen batch for `seqs` (exposed for tests and the CUDA
// runner). Tokens named by prev_row are written as 0, to be patched by the runner.
void build_forward_inputs(std::span<const StepSequence> seqs, int32_t block_size, ForwardInputs& in);

enum class CpuPrecision : uint8_t;  // kernels/cpu/cpu_ops.h

// Float32 on the CPU backend. The cache gets `num_blocks` blocks of
// `block_size` tokens; eos_ids are the model's end tokens (min_tokens masks them).
class ThreadGroup;  // engine/parallel/thread_group.h
class ProcessGroup;  // engine/parallel/process_group.h

class CpuModelRunner final : public ModelRunner {
 public:
  CpuModelRunner(LlamaWeights weights, int num_threads, int64_t num_blocks, int32_t block_size,
                 std::vector<int32_t> eos_ids);
  // Tensor parallelism on the CPU: the model split over `tensor_parallel_size`
  // ranks (engine/parallel/shard.h), each a thread with its own backend,
  // decoder, KV cache (its KV heads) and num_threads / size pool threads,
  // all-reducing through shared memory (engine/parallel/thread_group.h).
  // Sampling happens once, on rank 0's logits. An Error when the model does not split.
  // With `group`, the ranks are processes instead: this runner is rank
  // group->rank() alone; rank 0 broadcasts each step's inputs before its
  // forward, and the other ranks call serve_rank_steps(). `lm_head`: how the
  // ranks share the LM head (engine/parallel/shard.h).
  static Result<std::unique_ptr<CpuModelRunner>> create(LlamaWeights weights, int tensor_parallel_size,
                                                        int num_threads, int64_t num_blocks, int32_t block_size,
                                                        std::vector<int32_t> eos_ids, ProcessGroup* group = nullptr,
                                                        LmHead lm_head = LmHead::kVocabParallel);
  // The same from shards already cut (shard_weights, or a loader's LayerHook
  // with shard_layer): every rank's in rank order, or in a process group this process's
  // rank's alone. `whole`: the unsplit model's config.
  static Result<std::unique_ptr<CpuModelRunner>> from_shards(std::vector<LlamaWeights> shards, const ModelConfig& whole,
                                                             int num_threads, int64_t num_blocks, int32_t block_size,
                                                             std::vector<int32_t> eos_ids, ProcessGroup* group = nullptr);
  // Ranks > 0 of a process group: runs rank 0's steps on this shard until rank 0 stops.
  void serve_rank_steps();
  // A runner of one shard as a rank of someone else's group (TensorParallelRunner): its all-reduces go to `comm`.
  void set_communicator(Communicator* comm);
  // What every rank's backend trades for speed (kernels/cpu/cpu_ops.h); kExact unless set.
  void set_precision(CpuPrecision precision);
  // --kv-cache-dtype fp8: every rank's cache becomes FP8 E4M3 codes (a quarter of float32's bytes), scaled by
  // the layers' k_scale / v_scale (models/weights.h). Before the first step: the cache starts empty.
  void use_fp8_kv_cache();
  // --calculate-kv-scales: the first step sets every layer's FP8 cache scales from its own K and V
  // (LlamaDecoder::calculate_kv_scales_next_forward), each rank from its KV heads. After use_fp8_kv_cache.
  void calculate_kv_scales();
  ~CpuModelRunner() override;

  void launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) override;
  void collect(std::vector<SampledToken>& out) override;
  void forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) override;
  const ModelConfig& config() const override { return config_; }
  int32_t vocab_size() const override { return static_cast<int32_t>(config_.vocab_size); }
  int64_t num_blocks() const override;
  int32_t block_size() const override;
  int tensor_parallel_size() const { return static_cast<int>(ranks_.size()); }

  // KV bytes one token takes in a cache of this config (both K and V, all layers), float32 or FP8.
  static int64_t kv_bytes_per_token(const ModelConfig& config, bool fp8 = false);

 private:
  struct Rank;
  CpuModelRunner(std::vector<LlamaWeights> shards, int threads_per_rank, int64_t num_blocks, int32_t block_size,
                 std::vector<int32_t> eos_ids);

  ModelConfig config_;                       // the whole model's
  std::vector<std::unique_ptr<Rank>> ranks_;  // one without tensor parallelism
  std::unique_ptr<ThreadGroup> group_;        // ranks > 1 as threads
  ProcessGroup* processes_ = nullptr;         // ranks as processes (not owned)
  ForwardInputs inputs_;
  Sampler sampler_;
  std::vector<float> logits_;
  std::deque<std::vector<SampledToken>> done_;  // launched, not collected
  std::vector<int32_t> newest_;                 // the newest launch's tokens: prev_row reads them
};

}  // namespace ember
