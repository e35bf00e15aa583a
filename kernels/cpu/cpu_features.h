#pragma once
// Which x86 instruction sets the CPU kernels may use, decided at run time:
// the library is built for baseline x86-64 and every faster kernel carries a
// per-function target attribute (avx2_util.h), entered only after these checks.

#include <cstdint>

namespace ember {

// Ordered: each level implies the ones before it.
//   kAvx2:       AVX2 + FMA + F16C (the float and int8 kernels' maddubs path)
//   kAvx512Vnni: kAvx2 plus AVX512F/VL + AVX512_VNNI (vpdpbusd on 256-bit registers)
enum class CpuIsa : uint8_t { kScalar, kAvx2, kAvx512Vnni };

bool cpu_supports(CpuIsa isa);
bool cpu_supports_avx2();  // cpu_supports(CpuIsa::kAvx2)

// The best ISA this CPU supports, decided once. EMBER_CPU_ISA=scalar|avx2|avx512vnni
// in the environment caps it (to compare paths in a whole model); a level the
// CPU lacks falls back to the best it has.
CpuIsa best_cpu_isa();

const char* cpu_isa_name(CpuIsa isa);

}  // namespace ember
