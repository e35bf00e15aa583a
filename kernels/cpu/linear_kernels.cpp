// Dispatch of the float-activation linear kernels (ISA detection: cpu_features.cpp).
#include "kernels/cpu/linear_kernels.h"

namespace ember {

void linear_rows(const LinearArgs& a, int64_t n_begin, int64_t n_end, CpuIsa isa) {
  if (n_begin >= n_end || a.m == 0) return;
  if (isa != CpuIsa::kScalar) {
    if (dtype_is_quantized(a.w_dtype)) return linear_rows_avx2_quant(a, n_begin, n_end);
    return linear_rows_avx2_float(a, n_begin, n_end);
  }
  linear_rows_scalar(a, n_begin, n_end);
}

}  // namespace ember
