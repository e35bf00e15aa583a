#pragma once
// Turning CUDA runtime failures into ember Errors at the backend boundary.

#include <cuda_runtime.h>

#include <string>

#include "common/status.h"

namespace ember {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::success();
  return Error{std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err)};
}

}  // namespace ember

#define EMBER_CUDA_TRY(expr)                                      \
  do {                                                            \
    ::ember::Status s_ = ::ember::cuda_status((expr), #expr);     \
    if (!s_.ok()) return s_.error();                              \
  } while (0)
