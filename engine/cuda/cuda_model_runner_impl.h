#pragma once
// Internal to engine/cuda: the single-GPU runner's class, which
// cuda_model_runner.cpp defines and the tensor-parallel factories
// (cuda_parallel_runners.cpp) build their ranks from. Everyone else reaches it
// through the factories of cuda_model_runner.h and cuda_parallel_runners.h.
//
// CudaModelRunner: the decoder of models/ over the CUDA backend, a KV pool
// (bf16, or FP8 E4M3 with options.kv_cache_fp8) sized from what the device has
// left, and CUDA graphs for decode steps.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/device_weights.h"
#include "engine/cuda/gpu_sampler.h"
#include "engine/cuda/step_profile.h"
#include "engine/parallel/collective_watchdog.h"
#include "engine/parallel/process_group.h"
#include "kernels/cuda/cuda_backend.h"
#include "models/llama_decoder.h"

namespace ember {

class CudaModelRunner final : public ModelRunner {
 public:
  // kv_scales: an FP8 cache's scales, layer l's k_scale at 2l and v_scale at
  // 2l + 1 (LayerWeights); empty: 1 for every layer.
  CudaModelRunner(std::unique_ptr<DeviceWeights> weights, std::unique_ptr<CudaBackend> backend,
                  const CudaRunnerOptions& options, int64_t max_model_len, std::vector<float> kv_scales = {});
  ~CudaModelRunner() override;

  Status init();

  void launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) override;
  void collect(std::vector<SampledToken>& out) override;
  void forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) override;
  const ModelConfig& config() const override { return weights_->views().config; }
  int32_t vocab_size() const override { return static_cast<int32_t>(config().vocab_size); }
  int64_t num_blocks() const override { return num_blocks_; }
  int32_t block_size() const override { return options_.block_size; }

  // A rank of a process group (make_cuda_process_group_runner): owns its
  // communicator and watchdog; `group` set on rank 0 only, which from now on
  // broadcasts each step's inputs, as built (padded to a graph's bucket), before its forward.
  void join_processes(ProcessGroup* group, std::unique_ptr<Communicator> comm,
                      std::unique_ptr<CollectiveWatchdog> watchdog) {
    processes_ = group;
    owned_comm_ = std::move(comm);
    watchdog_ = std::move(watchdog);
  }
  // KV blocks past `blocks` go unused (every rank of a group uses the smallest pool).
  void limit_blocks(int64_t blocks) { num_blocks_ = std::min(num_blocks_, blocks); }
  // Ranks > 0: one of rank 0's steps, as rank 0 runs it (the same graph, or
  // eager); the logits stay on the device.
  void run_rank_step(const ForwardInputs& in);

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    Tensor logits;  // where its replay leaves the logits
  };

  Status profile_and_allocate_kv();
  Status allocate_kv(int64_t blocks);
  // KV bytes of one block, every layer's K and V, in the cache's dtype.
  int64_t kv_block_bytes() const;
  Status capture_graphs();
  // A step of `b` sequences of q_len tokens each (decode: 1; verify: K + 1)
  // padded to `bucket` sequences: padding rows read block 0 and write nothing.
  void build_padded(std::span<const StepSequence> seqs, int32_t bucket, int32_t q_len);
  void fetch_logits(const Tensor& out, int64_t rows, std::vector<float>& logits);
  // Runs the step: the device logits, num_logits rows per sequence, in order.
  Tensor forward_step(std::span<const StepSequence> seqs);
  // Logits rows a step may sample: every sequence with its most rows (several
  // when it verifies proposed tokens). Buffers sized here never move, which the
  // captured graphs rely on.
  int64_t max_rows() const {
    return int64_t{std::max(options_.max_num_seqs, 1)} * std::max(options_.max_logits_per_seq, 1);
  }
  // Ends the process on a backend error (a CUDA error is sticky: see fatal).
  void check_backend();

  std::unique_ptr<Communicator> owned_comm_;  // a process group's rank: destroyed after the graphs that use it
  std::unique_ptr<DeviceWeights> weights_;
  std::unique_ptr<CudaBackend> backend_;
  CudaRunnerOptions options_;
  int64_t max_model_len_;
  LlamaDecoder decoder_;
  void* kv_ = nullptr;  // an FP8 cache's scales (kv_scales_ as uploaded), then every layer's K and V
  std::vector<float> kv_scales_;
  KvCacheView cache_;
  int64_t num_blocks_ = 0;
  std::map<std::pair<int32_t, int32_t>, Graph> graphs_;  // by (q_len, bucket)
  ForwardInputs inputs_;
  float* pinned_logits_ = nullptr;
  size_t pinned_logits_bytes_ = 0;
  std::unique_ptr<GpuSampler> sampler_;
  std::unique_ptr<StepProfile> step_profile_;         // EMBER_CUDA_PROFILE=1
  std::vector<int32_t> patch_index_, patch_row_;      // patch_previous_tokens' scratch
  std::deque<std::vector<int32_t>> launched_drafts_;  // per outstanding launch: each row's draft token or -1
  ProcessGroup* processes_ = nullptr;                 // rank 0 of a process group: steps go to the other ranks
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // a process group's rank: this rank's steps, its NCCL communicator
  // Profiling (when enabled): a step begins before its first GPU work.
  void profile_begin(std::span<const StepSequence> seqs);
  // Patches the tokens of sequences with prev_row >= 0 after begin_forward().
  void patch_previous_tokens(std::span<const StepSequence> seqs);
};

// cudaSetDevice as a Status: a factory's first step, so that what it
// allocates lands on its device.
Status set_device(int device);

}  // namespace ember
