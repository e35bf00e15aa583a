// AVX512-VNNI int8 linear: linear_int8_x86.h with vpdpbusd on 256-bit
// registers (AVX512VL), one instruction where AVX2 needs maddubs + madd and
// no int16 intermediate. Entered only when cpu_supports(kAvx512Vnni).
#include "kernels/cpu/linear_int8.h"

#if defined(__x86_64__)
#define EMBER_INT8_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
#define EMBER_INT8_VNNI 1
#define EMBER_INT8_NS int8_vnni
#include "kernels/cpu/linear_int8_x86.h"

namespace ember {
void linear_int8_rows_vnni(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  int8_vnni::linear_int8_rows(a, n_begin, n_end);
}
}  // namespace ember

#else  // not x86-64: best_cpu_isa() never picks kAvx512Vnni

namespace ember {
void linear_int8_rows_vnni(const Int8LinearArgs& a, int64_t n_begin, int64_t n_end) {
  linear_int8_rows_scalar(a, n_begin, n_end);
}
}  // namespace ember

#endif
