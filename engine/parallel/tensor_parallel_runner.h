#pragma once
// A ModelRunner made of N rank runners that run side by side, one thread each
// (ThreadGroup): every step is launched on every rank (each computes its
// shard; their backends all-reduce through their communicators) and rank 0's
// tokens are the step's. Any runner kind works; the CUDA runners of
// make_cuda_tensor_parallel_runner are its use (one GPU per rank, NCCL).
// Every rank also samples its copy of the logits, which are identical, with
// its own copy of each row's generator: each rank's device then holds the
// step's tokens, so async scheduling's on-device token hand-off works per rank
// as it does alone.
// With communicators it owns and a collective timeout, a CollectiveWatchdog
// (collective_watchdog.h) watches every rank's steps from launch to collect:
// an NCCL error, or a step unfinished after the timeout, ends the process with
// a message naming the rank(s).

#include <functional>
#include <memory>
#include <vector>

#include "common/status.h"
#include "engine/model_runner.h"
#include "engine/parallel/collective_watchdog.h"
#include "engine/parallel/thread_group.h"
#include "kernels/communicator.h"

namespace ember {

class TensorParallelRunner final : public ModelRunner {
 public:
  using RankFactory = std::function<Result<std::unique_ptr<ModelRunner>>(int rank)>;
  // Builds rank r < n's runner with make(r) on rank r's own thread, all at
  // once (a runner's start-up may run collectives, which need every rank);
  // `comms`, the ranks' communicators if this runner is to own them, live as
  // long as it. An Error when any rank fails or the ranks' KV pools differ.
  // collective_timeout_s > 0 with `comms`: the watchdog's timeout.
  static Result<std::unique_ptr<TensorParallelRunner>> create(int n, const RankFactory& make, ModelConfig whole,
                                                              std::vector<std::unique_ptr<Communicator>> comms = {},
                                                              double collective_timeout_s = 0);
  ~TensorParallelRunner() override;

  void launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) override;
  void collect(std::vector<SampledToken>& out) override;
  void forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) override;
  const ModelConfig& config() const override { return whole_; }
  int32_t vocab_size() const override { return ranks_.front()->vocab_size(); }
  int64_t num_blocks() const override { return ranks_.front()->num_blocks(); }
  int32_t block_size() const override { return ranks_.front()->block_size(); }
  int size() const { return static_cast<int>(ranks_.size()); }

 private:
  TensorParallelRunner() = default;
  ModelConfig whole_;
  std::vector<std::unique_ptr<Communicator>> comms_;  // outlive the ranks (destroyed after them)
  std::unique_ptr<ThreadGroup> group_;
  std::vector<std::unique_ptr<ModelRunner>> ranks_;
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // null: not watched (started after the ranks, stopped before them)
  std::vector<std::vector<SampledToken>> discarded_;  // ranks > 0's tokens
  std::vector<std::vector<float>> discarded_logits_;
  // Ranks > 0 sample with copies of the rows' generators, taken before any
  // rank draws: the same draws as rank 0, without racing on its generators.
  std::vector<std::vector<SamplerRow>> rank_rows_;
  std::vector<std::vector<RequestGenerator>> rank_generators_;
};

}  // namespace ember
