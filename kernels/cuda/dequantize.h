#pragma once
// GGUF weight formats expanded to bf16 on the GPU, so that a quantized file is
// uploaded as stored (4-5 bits a weight) and widened where memory is fast.
// The CPU reference is models/formats/gguf_dequantize.cpp (tests/gpu compares them).

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "common/status.h"

namespace ember {

// Block formats of ggml (32 weights a block): the byte layouts are in the
// kernel file. Values match ggml's type ids so callers can cast.
enum class QuantFormat : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kBF16 = 30 };

// Bytes that hold `num_elements` weights of `format`; 0 if the count is not a
// whole number of blocks.
uint64_t quant_format_bytes(QuantFormat format, int64_t num_elements);

// dst[i] = bf16(weight i). `src` and `dst` are device pointers.
Status dequantize_to_bf16(QuantFormat format, const void* src, int64_t num_elements, __nv_bfloat16* dst,
                          cudaStream_t stream);

}  // namespace ember
