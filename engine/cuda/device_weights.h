#pragma once
// A decoder's weights in device memory: matrices bf16 (whatever their type in
// the file: GGUF blocks are expanded on the host, row by row), norms and
// biases float32; and the views of them the decoder runs on. With
// --quantization fp8 the layers' matrices are then quantized in place to FP8
// E4M3 with a scale per output row (the embedding and LM head stay bf16, as
// in vLLM).

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

  // keep_fp8: an FP8 checkpoint's layer matrices stay FP8 (codes and row
  // scales as loaded); false (a GPU without FP8): they are expanded to bf16.
  static Result<std::unique_ptr<DeviceWeights>> upload(const LlamaWeights& weights, bool keep_fp8 = true);
  // make_dummy_weights' values (same seed, same tensor streams) rounded to
  // bf16, generated on the device: Llama-3-8B's would be 32 GB as host float32.
  // With tensor_parallel_size n > 1: rank `rank`'s slices of them
  // (engine/parallel/shard.h), each generated where it lies in the whole;
  // with kVocabParallel (at any n) its vocabulary rows of the LM head.
  static Result<std::unique_ptr<DeviceWeights>> dummy(const ModelConfig& config, uint64_t seed, int rank = 0,
                                                      int tensor_parallel_size = 1,
                                                      LmHead lm_head = LmHead::kReplicated);

  // Every layer's q/k/v, o, gate/up and down to FP8 (kernels/cuda/fp8.h), one
  // matrix at a time: the bf16 copy is freed as its FP8 one is made. An
  // Error on GPUs without FP8 (compute capability below 8.9).
  Status quantize_fp8(int device);

  const DecoderWeights& views() const { return views_; }
  uint64_t bytes() const { return bytes_; }

 private:
  DeviceWeights() = default;
  Result<void*> alloc(size_t bytes);
  void release(void* buffer);
  // keep_source: the bf16 matrix stays (the embedding an LM head is tied to).
  Result<Tensor> to_fp8(const Tensor& bf16_matrix, bool keep_source = false);

  struct Buffer {
    void* data;
    size_t bytes;
  };
  std::vector<Buffer> buffers_;
  uint64_t bytes_ = 0;
  DecoderWeights views_;
};

}  // namespace ember
