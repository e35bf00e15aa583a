// The tensor-parallel factories of cuda_parallel_runners.h: their ranks are
// CudaModelRunners (cuda_model_runner_impl.h) joined by NCCL, as threads of
// one process or as processes of a group.
#include "engine/cuda/cuda_parallel_runners.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/cuda/cuda_model_runner_impl.h"
#include "engine/parallel/collective_watchdog.h"
#include "engine/parallel/shard.h"
#include "engine/parallel/tensor_parallel_runner.h"
#include "kernels/cuda/nccl_communicator.h"

namespace ember {

Result<std::unique_ptr<ModelRunner>> make_cuda_tensor_parallel_runner(const LlamaWeights* weights,
                                                                      const ModelConfig& config,
                                                                      const CudaRunnerOptions& options, int n) {
  Result<ModelConfig> shard = shard_config(config, n);
  if (!shard) return shard.error();
  int visible = 0;
  if (cudaGetDeviceCount(&visible) != cudaSuccess || visible < n)
    return Error{"--tensor-parallel-size " + std::to_string(n) + " needs " + std::to_string(n) + " GPUs; " +
                 std::to_string(visible) + " visible"};
  std::vector<int> devices;
  for (int r = 0; r < n; ++r) devices.push_back(r);
  auto nccl = NcclCommunicator::create_all(devices);
  if (!nccl) return nccl.error();
  std::vector<Communicator*> comm_of;
  std::vector<std::unique_ptr<Communicator>> comms;
  for (auto& c : *nccl) {
    comm_of.push_back(c.get());
    comms.push_back(std::move(c));
  }
  const TensorParallelRunner::RankFactory make = [&](int r) -> Result<std::unique_ptr<ModelRunner>> {
    CudaRunnerOptions o = options;
    o.device = devices[static_cast<size_t>(r)];
    o.communicator = comm_of[static_cast<size_t>(r)];
    o.tensor_parallel_rank = r;
    o.tensor_parallel_size = n;
    if (weights == nullptr) return make_cuda_model_runner_dummy(config, o);
    Result<LlamaWeights> s = shard_weights(*weights, r, n, options.lm_head);
    if (!s) return s.error();
    return make_cuda_model_runner(*s, o);
  };
  auto tp = TensorParallelRunner::create(n, make, config, std::move(comms), options.collective_timeout_s);
  if (!tp) return tp.error();
  return std::unique_ptr<ModelRunner>(std::move(*tp));
}

Result<std::unique_ptr<ModelRunner>> make_cuda_process_group_runner(const LlamaWeights* shard,
                                                                    const ModelConfig& config,
                                                                    const CudaRunnerOptions& options,
                                                                    ProcessGroup& group) {
  const int rank = group.rank(), n = group.size();
  if (Result<ModelConfig> s = shard_config(config, n); !s) return s.error();
  EMBER_TRY_STATUS(set_device(options.device));
  // The NCCL id from rank 0; an empty one tells the others rank 0 has none.
  std::string id;
  Status made = Status::success();
  if (rank == 0) {
    Result<std::string> fresh = NcclCommunicator::new_unique_id();
    if (fresh) {
      id = std::move(*fresh);
    } else {
      made = fresh.error();
    }
  }
  group.broadcast_bytes(id);
  if (!made.ok()) return made.error();
  if (id.empty()) return Error{"rank 0 could not start NCCL (its log says why)"};
  // What shapes the steps and the graphs: a rank started with other flags would meet rank 0's collectives with
  // others of other sizes (a hang, or wrong sums).
  const std::string flags = fmt::format(
      "--block-size {} --max-num-seqs {} --max-num-batched-tokens {} --max-model-len {} --enforce-eager {} "
      "--lm-head {} --seed {} --quantization {} (logits a sequence {})",
      options.block_size, options.max_num_seqs, options.max_num_batched_tokens, options.max_model_len,
      options.enforce_eager, options.lm_head == LmHead::kReplicated ? "replicated" : "vocab-parallel",
      options.dummy_seed, options.quantize_fp8 ? "fp8" : "none", options.max_logits_per_seq);
  std::string rank0 = flags;
  group.broadcast_bytes(rank0);
  if (rank0 != flags)
    return Error{"tensor-parallel rank " + std::to_string(rank) +
                 " was started with other flags than rank 0: " + flags + ", rank 0 " + rank0};
  // ncclCommInitRank waits for every rank: one that died since the id
  // exchange would hold the others there, so a start-up watchdog ends them.
  Result<std::unique_ptr<NcclCommunicator>> comm = Error{""};
  {
    auto startup = CollectiveWatchdog::for_startup(rank, "NCCL's start-up (ncclCommInitRank)", options.collective_timeout_s);
    startup->begin(0);
    comm = NcclCommunicator::create_rank(id, rank, n);
    startup->end(0);
  }
  if (!comm) return comm.error();
  // From here every rank runs the same collectives (the profile step, the
  // graphs' warm-ups, the KV pool's size): the watchdog times them as a step.
  auto watchdog =
      std::make_unique<CollectiveWatchdog>(std::vector<Communicator*>{comm->get()}, options.collective_timeout_s);
  watchdog->begin(0);
  CudaRunnerOptions o = options;
  o.communicator = comm->get();
  o.tensor_parallel_rank = rank;
  o.tensor_parallel_size = n;
  Result<std::unique_ptr<ModelRunner>> runner =
      shard == nullptr ? make_cuda_model_runner_dummy(config, o) : make_cuda_model_runner(*shard, o);
  if (!runner) return runner.error();
  // Each rank sized its KV pool from its own free memory; all use the smallest.
  std::vector<float> blocks(static_cast<size_t>(n));
  const float mine = static_cast<float>((*runner)->num_blocks());  // (exact below 2^24 blocks)
  group.communicator().all_gather(&mine, 1, blocks.data());
  auto& cuda = static_cast<CudaModelRunner&>(**runner);
  cuda.limit_blocks(static_cast<int64_t>(*std::min_element(blocks.begin(), blocks.end())));
  watchdog->end(0);
  cuda.join_processes(rank == 0 ? &group : nullptr, std::move(*comm), std::move(watchdog));
  return runner;
}

void serve_cuda_rank_steps(ModelRunner& rank, ProcessGroup& group) {
  auto& cuda = static_cast<CudaModelRunner&>(rank);
  serve_rank_steps(group, [&](const ForwardInputs& in) { cuda.run_rank_step(in); });
}

}  // namespace ember
