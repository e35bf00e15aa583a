#pragma once
// ggml block layouts of the quantized DTypes, re-declared here because kernels/
// does not depend on models/ (models/formats/gguf_dequantize.cpp holds the loader's
// copy; tests check the two agree bit for bit). One block, little-endian,
// fp16 = IEEE half, blocks unaligned in memory:
//   Q4_0  32 elems,  18 B: d fp16 | qs[16]            x = d * (nibble - 8)
//   Q4_1  32 elems,  20 B: d fp16 | m fp16 | qs[16]   x = d * nibble + m
//   Q8_0  32 elems,  34 B: d fp16 | qs int8[32]       x = q * d
//   (Q4_x: byte j holds element j in its low nibble and element j + 16 in its high nibble.)
//   Q4_K 256 elems, 144 B: d fp16 | dmin fp16 | scales[12] | qs[128]
//        sub-block s (32 elems): x = (d * sc[s]) * nibble - (dmin * mn[s]); qs bytes
//        [32c, 32c + 32) hold sub-block 2c in low nibbles and 2c + 1 in high nibbles.
//   Q6_K 256 elems, 210 B: ql[128] | qh[64] | scales int8[16] | d fp16
//        x = (d * scales[i / 16]) * (q6 - 32); see q6_k_value below.
// Every kernel computes each weight with exactly these float32 operations in
// this order, so dequantized weights are bit-identical to ggml's reference and
// a linear differs from dequantize-then-matmul only in summation order. Whether
// the compiler fuses "d * q + m" into an FMA (GCC does for C++) cannot change a
// bit: every product before an add is exact in float32 (an fp16 scale has 11
// significant bits, q at most 4; Q4_K's d * sc adds 6 more, 21 in all).

#include <cstdint>
#include <cstring>

#include "kernels/backend.h"

namespace ember::quant {

inline constexpr int64_t kQ4_0Bytes = 18, kQ4_1Bytes = 20, kQ8_0Bytes = 34, kQ4_KBytes = 144, kQ6_KBytes = 210;
inline constexpr int kQ6_KQl = 0, kQ6_KQh = 128, kQ6_KScales = 192, kQ6_KD = 208;

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Exact IEEE half -> float (subnormals, infinities and NaN payloads preserved).
inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else {  // zero or subnormal: mant * 2^-24 is exact in float32
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    std::memcpy(&bits, &mag, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float bf16_to_f32(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;  // bf16 is the top half of a float32
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float load_fp16(const uint8_t* p) { return fp16_to_f32(load_u16(p)); }

// Q4_K packs eight 6-bit scales and eight 6-bit mins in 12 bytes: sub-blocks
// 0-3 use the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7
// take their low 4 bits from bytes 8-11 and their top 2 bits from bytes 0-7.
inline void q4_k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: the per-sub-block multipliers d * sc[s] and dmin * mn[s], float32 as in ggml.
inline void q4_k_block_scales(const uint8_t* block, float ds[8], float dm[8]) {
  const float d = load_fp16(block);
  const float dmin = load_fp16(block + 2);
  for (int s = 0; s < 8; ++s) {
    int sc = 0, mn = 0;
    q4_k_scale_min(block + 4, s, &sc, &mn);
    ds[s] = d * static_cast<float>(sc);
    dm[s] = dmin * static_cast<float>(mn);
  }
}

// Dequantizes one row of `cols` elements (a whole number of blocks) of any
// DType to float32, bit-identical to ggml's reference. Scalar: used by
// embedding lookups and the portable linear fallback.
void dequantize_row(DType dtype, const void* row, int64_t cols, float* out);

}  // namespace ember::quant
