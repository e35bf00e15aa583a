#pragma once
// FP8 E4M3 (OCP "E4M3FN", CUDA's __NV_E4M3): 1 sign, 4 exponent (bias 7) and
// 3 mantissa bits, no infinities, 0x7F/0xFF NaN, largest finite 448, smallest
// subnormal 2^-9. The host reference of the GPU's conversions: the CUDA
// kernels (kernels/cuda/fp8.cuh) must give these bits exactly.
//
// Quantization as vLLM's dynamic fp8 (and ember's --quantization fp8): a row
// of values v gets scale s = amax(|v|) / 448 (1 for an all-zero row) and codes
// q = e4m3(v / s), the division rounded to nearest float and the conversion
// to nearest e4m3, ties to even, saturating at +-448.

#include <cstdint>

namespace ember::quant {

inline constexpr float kFp8E4M3Max = 448.0f;

// Round to nearest even, saturating (values beyond +-448 and infinities give
// +-448; NaN gives 0x7F with the sign).
uint8_t fp8_e4m3_from_float(float v);
float fp8_e4m3_to_float(uint8_t code);
// The 256 codes' values (fp8_e4m3_to_float of each), for decoding by table.
const float* fp8_e4m3_values();

// q[i] = e4m3(v[i] / scale) for one row; returns the row's scale.
float quantize_row_fp8_e4m3(const float* v, int64_t n, uint8_t* q);

}  // namespace ember::quant
