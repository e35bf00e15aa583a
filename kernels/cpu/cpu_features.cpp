// CPUID checks behind CpuIsa.
#include "kernels/cpu/cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace ember {
namespace {

#if defined(__x86_64__) || defined(__i386__)
bool has_avx2() {
  // __builtin_cpu_supports checks that the OS saves the YMM registers; clang 14
  // does not know "f16c" there, so that bit comes from CPUID leaf 1 directly.
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

bool has_avx512_vnni() {
  // (__builtin_cpu_supports also checks that the OS saves the ZMM and mask registers.)
  __builtin_cpu_init();
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
}
#else
bool has_avx2() { return false; }
bool has_avx512_vnni() { return false; }
#endif

}  // namespace

bool cpu_supports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kAvx2:
      return has_avx2();
    case CpuIsa::kAvx512Vnni:
      return has_avx512_vnni();
  }
  return false;
}

bool cpu_supports_avx2() { return cpu_supports(CpuIsa::kAvx2); }

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512Vnni:
      return "avx512vnni";
  }
  return "?";
}

CpuIsa best_cpu_isa() {
  static const CpuIsa isa = [] {
    CpuIsa cap = CpuIsa::kAvx512Vnni;
    if (const char* env = std::getenv("EMBER_CPU_ISA")) {
      for (CpuIsa i : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512Vnni})
        if (std::strcmp(env, cpu_isa_name(i)) == 0) cap = i;
    }
    for (CpuIsa i : {CpuIsa::kAvx512Vnni, CpuIsa::kAvx2})
      if (static_cast<uint8_t>(i) <= static_cast<uint8_t>(cap) && cpu_supports(i)) return i;
    return CpuIsa::kScalar;
  }();
  return isa;
}

}  // namespace ember
