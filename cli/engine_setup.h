#pragma once
// From options to a running engine: weights (GGUF, safetensors or dummy),
// the backend, the KV pool size and the scheduler limits. Shared by
// `ember serve` and `ember generate`.

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

// A tensor-parallel rank's CPU runner alone (ranks > 0 under MPI run no engine).
Result<std::unique_ptr<CpuModelRunner>> make_cpu_rank(const ModelSource& src, const ModelOptions& model,
                                                     const EngineOptions& engine);

// The model's end-of-sequence ids: the config's, plus the tokenizer's.
std::vector<int32_t> eos_ids_of(const ModelSource& src);

}  // namespace ember
