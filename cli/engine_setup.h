#pragma once
// From options to a running engine: weights (GGUF, safetensors or dummy),
// the backend, the KV pool size and the scheduler limits. Shared by
// `ember serve` and `ember generate`.

#include <functional>
#include <memory>
#include <string>

#include "cli/options.h"
#include "common/status.h"
#include "engine/engine.h"
#include "models/model_source.h"

namespace ember {

// `device` is the resolved device ("cpu" or "cuda"). The engine keeps a
// reference to src.tokenizer: `src` must outlive it.
Result<std::unique_ptr<Engine>> start_engine(const ModelSource& src, const ModelOptions& model,
                                             const EngineOptions& engine, const std::string& device,
                                             int32_t max_queue_len = 1024);

// A tensor-parallel rank > 0 of a process group (MPI or TCP; it runs no
// engine): its runner on `device`, built as rank 0's engine builds its own,
// and the loop that runs rank 0's steps on it until rank 0 stops.
struct WorkerRank {
  std::unique_ptr<ModelRunner> runner;
  std::function<void()> serve_rank_steps;
};
Result<WorkerRank> make_worker_rank(const ModelSource& src, const ModelOptions& model, const EngineOptions& engine,
                                    const std::string& device);

// The model's end-of-sequence ids: the config's, plus the tokenizer's.
std::vector<int32_t> eos_ids_of(const ModelSource& src);

}  // namespace ember
