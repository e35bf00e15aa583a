#pragma once
// The subcommands. Each returns the process exit code.

#include "cli/options.h"

namespace ember {

int run_serve(const ServeOptions& options);
int run_generate(const GenerateOptions& options);
int run_bench(const BenchOptions& options);
// Tensor-parallel rank > 0 under an MPI launcher: loads this rank's shard of
// the model and runs rank 0's steps until rank 0 stops.
int run_tensor_parallel_worker(const ModelOptions& model, const EngineOptions& engine);

}  // namespace ember
