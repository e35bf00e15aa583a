// Dispatch of the int8 linear kernels and the activation quantizer by ISA.
#include "kernels/cpu/linear_int8.h"

namespace ember {

void quantize_rows_q8(const float* x, int64_t r_begin, int64_t r_end, const Q8Rows& out, CpuIsa isa) {
  if (isa == CpuIsa::kScalar) return quantize_rows_q8_scalar(x, r_begin, r_end, out);
  quantize_rows_q8_avx2(x, r_begin, r_end, out);
}

void linear_int8_rows(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end, CpuIsa isa) {
  if (n_begin >= n_end || a.x->m == 0) return;
  switch (isa) {
    case CpuIsa::kScalar:
      return linear_int8_rows_scalar(a, n_begin, n_end);
    case CpuIsa::kAvx2:
      return linear_int8_rows_avx2(a, n_begin, n_end);
    case CpuIsa::kAvx512Vnni:
      return linear_int8_rows_vnni(a, n_begin, n_end);
  }
}

}  // namespace ember
