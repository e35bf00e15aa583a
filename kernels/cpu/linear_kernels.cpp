// ISA detection and dispatch of the linear kernels.
#include "kernels/cpu/linear_kernels.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace ember {

bool cpu_supports_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports checks that the OS saves the YMM registers; clang 14
  // does not know "f16c" there, so that bit comes from CPUID leaf 1 directly.
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
  return false;
#endif
}

CpuIsa best_cpu_isa() {
  static const CpuIsa isa = [] {
    const char* env = std::getenv("EMBER_CPU_ISA");
    if (env && std::strcmp(env, "scalar") == 0) return CpuIsa::kScalar;
    return cpu_supports_avx2() ? CpuIsa::kAvx2 : CpuIsa::kScalar;
  }();
  return isa;
}

void linear_rows(const LinearArgs& a, int64_t n_begin, int64_t n_end, CpuIsa isa) {
  if (n_begin >= n_end || a.m == 0) return;
  if (isa == CpuIsa::kAvx2) {
    if (dtype_is_quantized(a.w_dtype)) return linear_rows_avx2_quant(a, n_begin, n_end);
    return linear_rows_avx2_float(a, n_begin, n_end);
  }
  linear_rows_scalar(a, n_begin, n_end);
}

}  // namespace ember
