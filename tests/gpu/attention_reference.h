#pragma once
// The slow, obviously correct paged attention the GPU tests compare the
// shipped kernels (kernels/cuda/attention.h) with: one warp per (token,
// head), online softmax in fp32. Same contract as the shipped entry points
// (bf16 or FP8 caches); any head_dim <= 256 that is a multiple of 32, any
// power-of-two block_size.

#include <cuda_runtime.h>

#include "common/status.h"
#include "kernels/cuda/attention.h"

namespace ember {

Status paged_attention_reference(const PagedAttentionArgs& args, cudaStream_t stream);

}  // namespace ember
