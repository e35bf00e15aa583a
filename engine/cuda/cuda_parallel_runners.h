#pragma once
// Tensor parallelism on CUDA GPUs: every layer's weights split over ranks
// (engine/parallel/shard.h), each rank a single-GPU runner
// (cuda_model_runner.h) whose all-reduces and all-gathers go through NCCL.
// The ranks are threads of this process (make_cuda_tensor_parallel_runner) or
// processes of a group (make_cuda_process_group_runner, serve_cuda_rank_steps).

#include <memory>

#include "common/status.h"
#include "engine/cuda/cuda_model_runner.h"
#include "engine/model_runner.h"
#include "engine/parallel/process_group.h"
#include "models/weights.h"

namespace ember {

// Tensor parallelism over GPUs 0..n-1 of this process: rank r is a CUDA runner
// on GPU r holding its shard of `weights` (engine/parallel/shard.h), the ranks
// all-reduce through NCCL (inside their CUDA graphs) and run side by side, one
// thread each (engine/parallel/tensor_parallel_runner.h). `weights` null:
// dummy weights, each rank generating its slice. n = 1 runs the whole path on one GPU
// (with options.lm_head vocab-parallel, the LM head's all-gather too). A
// watchdog (engine/parallel/collective_watchdog.h) ends the process with a
// message when NCCL reports an error or a step has not completed within
// options.collective_timeout_s.
Result<std::unique_ptr<ModelRunner>> make_cuda_tensor_parallel_runner(const LlamaWeights* weights,
                                                                      const ModelConfig& config,
                                                                      const CudaRunnerOptions& options, int n);

// Tensor parallelism across processes, on one host or many (MPI or TCP,
// engine/parallel/process_group.h): this process is rank group.rank() on GPU
// options.device. Rank 0 makes the NCCL unique id and sends it through the
// group (broadcast_bytes); every rank joins with ncclCommInitRank, then
// builds a CUDA runner of `shard` (this rank's, shard_layer's cut; null: dummy
// weights, generated as this rank's slice) whose all-reduces and all-gathers
// go through that communicator. Every rank's KV pool is cut to the smallest
// rank's. A watchdog over the communicator ends the process when NCCL reports
// an error or a step (start-up included) outlasts options.collective_timeout_s.
// Rank 0's runner is its engine's: it broadcasts each step before its
// forward; it samples, and the others do not, so its engine must run without
// async scheduling. Ranks > 0 pass theirs to serve_cuda_rank_steps.
Result<std::unique_ptr<ModelRunner>> make_cuda_process_group_runner(const LlamaWeights* shard,
                                                                    const ModelConfig& config,
                                                                    const CudaRunnerOptions& options,
                                                                    ProcessGroup& group);

// Ranks > 0: runs rank 0's steps on `rank` (make_cuda_process_group_runner's)
// until rank 0 stops.
void serve_cuda_rank_steps(ModelRunner& rank, ProcessGroup& group);

}  // namespace ember
