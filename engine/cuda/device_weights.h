#pragma once
// A decoder's weights in device memory: matrices bf16 (whatever their type in
// the file: GGUF blocks are expanded on the host, row by row), norms and
// biases float32; and the views of them the decoder runs on.

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "engine/cuda/dummy_fill.h"
#include "engine/parallel/shard.h"
#include "models/llama_decoder.h"
#include "models/weights.h"

namespace ember {

class DeviceWeights {
 public:
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;
  ~DeviceWeights();

  static Result<std::unique_ptr<DeviceWeights>> upload(const LlamaWeights& weights);
  // make_dummy_weights' values (same seed, same tensor streams) rounded to
  // bf16, generated on the device: Llama-3-8B's would be 32 GB as host float32.
  // With tensor_parallel_size n > 1: rank `rank`'s slices of them
  // (engine/parallel/shard.h), each generated where it lies in the whole;
  // with kVocabParallel (at any n) its vocabulary rows of the LM head.
  static Result<std::unique_ptr<DeviceWeights>> dummy(const ModelConfig& config, uint64_t seed, int rank = 0,
                                                      int tensor_parallel_size = 1,
                                                      LmHead lm_head = LmHead::kReplicated);

  const DecoderWeights& views() const { return views_; }
  uint64_t bytes() const { return bytes_; }

 private:
  DeviceWeights() = default;
  Result<void*> alloc(size_t bytes);

  std::vector<void*> buffers_;
  uint64_t bytes_ = 0;
  DecoderWeights views_;
};

}  // namespace ember
