#pragma once
// The device side of DeviceWeights::dummy (C++17: included by a .cu file).

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace ember {

// Fills `n` bf16 values with make_dummy_weights' N(0, std^2) stream of
// (seed, tensor) (models/weights_dummy.cpp), rounded to bf16.
Status fill_dummy_bf16(void* dst, int64_t n, double std, uint64_t seed, uint64_t tensor, cudaStream_t stream);

}  // namespace ember
