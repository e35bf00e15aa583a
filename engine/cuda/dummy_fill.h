#pragma once
// The device side of DeviceWeights::dummy (C++17: included by a .cu file).

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ember {

// Fills `n` bf16 values with make_dummy_weights' N(0, std^2) stream of
// (seed, tensor) (models/weights_dummy.cpp), rounded to bf16.
Status fill_dummy_bf16(void* dst, int64_t n, double std, uint64_t seed, uint64_t tensor, cudaStream_t stream);

// The same stream's block [row0, row0 + rows) x [col0, col0 + cols) of the
// whole [*, full_cols] matrix, packed into `dst` (a tensor-parallel rank's slice).
Status fill_dummy_bf16_slice(void* dst, int64_t rows, int64_t cols, int64_t full_cols, int64_t row0, int64_t col0,
                             double std, uint64_t seed, uint64_t tensor, cudaStream_t stream);

}  // namespace ember
