// ggml tensor types: block layouts and the reference dequantization to float32.
// Layouts (one block, little-endian, fp16 = IEEE half):
//   Q4_0  32 elems, 18 B: d fp16 | qs[16]          x = (nibble - 8) * d
//   Q4_1  32 elems, 20 B: d fp16 | m fp16 | qs[16] x = nibble * d + m
//   Q8_0  32 elems, 34 B: d fp16 | qs int8[32]     x = q * d
//   (Q4_x: byte j holds element j in its low nibble and element j + 16 in its high nibble.)
//   Q4_K 256 elems, 144 B: d fp16 | dmin fp16 | scales[12] (8 x 6-bit scale + 8 x 6-bit min) | qs[128]
//        sub-block s (32 elems) = (d * sc[s]) * nibble - (dmin * mn[s]); qs byte chunk c (32 B) holds
//        sub-block 2c in low nibbles and 2c + 1 in high nibbles.
//   Q6_K 256 elems, 210 B: ql[128] (low 4 bits) | qh[64] (high 2 bits) | scales int8[16] | d fp16
//        x = (d * scale[i / 16]) * (q6 - 32)
// The arithmetic is float32 in the same order as ggml's reference (and gguf-py),
// so results match them bit for bit; the build uses ISO C++ (-ffp-contract=off),
// so no multiply-add is fused behind our back.

#include <bit>
#include <cstring>
#include <string>

#include "models/gguf.h"

namespace ember {
namespace {

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Exact IEEE half -> float (subnormals, infinities and NaN payloads preserved).
float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
  // Zero or subnormal: mant * 2^-24 is exact in float32.
  const float mag = static_cast<float>(mant) * 0x1p-24f;
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(mag));
}

float load_fp16(const uint8_t* p) { return fp16_to_fp32(load_u16(p)); }

void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const float m = load_fp16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// The 12 scale bytes pack eight 6-bit scales and eight 6-bit mins: sub-blocks 0-3
// use the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 take
// their low 4 bits from bytes 8-11 and their top 2 bits from the top of bytes 0-7.
void q4_k_scale_min(const uint8_t* s, int j, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const float dmin = load_fp16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int c = 0; c < 4; ++c) {
    for (int half = 0; half < 2; ++half) {
      const int sub = 2 * c + half;
      uint8_t sc = 0, mn = 0;
      q4_k_scale_min(scales, sub, &sc, &mn);
      const float ds = d * static_cast<float>(sc);
      const float dm = dmin * static_cast<float>(mn);
      for (int l = 0; l < 32; ++l) {
        const int q = (qs[32 * c + l] >> (4 * half)) & 0x0F;
        y[32 * sub + l] = ds * static_cast<float>(q) - dm;
      }
    }
  }
}

void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_fp16(b + 208);
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128;  // each half of the block has its own 64 ql and 32 qh bytes
    const int r = i % 128;
    const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
    const float ds = d * static_cast<float>(scales[i / 16]);
    y[i] = ds * static_cast<float>((lo | (hi << 4)) - 32);
  }
}

}  // namespace

const char* ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return "F32";
    case GgmlType::kF16: return "F16";
    case GgmlType::kQ4_0: return "Q4_0";
    case GgmlType::kQ4_1: return "Q4_1";
    case GgmlType::kQ8_0: return "Q8_0";
    case GgmlType::kQ4_K: return "Q4_K";
    case GgmlType::kQ6_K: return "Q6_K";
    case GgmlType::kBF16: return "BF16";
  }
  return "unknown";
}

bool ggml_type_layout(GgmlType type, int64_t* block_elems, int64_t* block_bytes) {
  int64_t e = 0, b = 0;
  switch (type) {
    case GgmlType::kF32: e = 1, b = 4; break;
    case GgmlType::kF16: e = 1, b = 2; break;
    case GgmlType::kBF16: e = 1, b = 2; break;
    case GgmlType::kQ4_0: e = 32, b = 18; break;
    case GgmlType::kQ4_1: e = 32, b = 20; break;
    case GgmlType::kQ8_0: e = 32, b = 34; break;
    case GgmlType::kQ4_K: e = 256, b = 144; break;
    case GgmlType::kQ6_K: e = 256, b = 210; break;
    default: return false;
  }
  *block_elems = e;
  *block_bytes = b;
  return true;
}

Status dequantize(GgmlType type, const uint8_t* src, int64_t num_elements, float* dst) {
  int64_t block_elems = 0, block_bytes = 0;
  if (!ggml_type_layout(type, &block_elems, &block_bytes)) {
    return Error{"dequantize: ggml type " + std::to_string(static_cast<uint32_t>(type)) + " is not supported"};
  }
  if (num_elements < 0 || num_elements % block_elems != 0) {
    return Error{"dequantize: " + std::to_string(num_elements) + " elements is not a whole number of " +
                 ggml_type_name(type) + " blocks"};
  }
  const int64_t blocks = num_elements / block_elems;
  switch (type) {
    case GgmlType::kF32:
      if (num_elements > 0) std::memcpy(dst, src, static_cast<size_t>(num_elements) * 4);
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < num_elements; ++i) dst[i] = load_fp16(src + 2 * i);
      break;
    case GgmlType::kBF16:  // bf16 is the top half of a float32
      for (int64_t i = 0; i < num_elements; ++i) {
        dst[i] = std::bit_cast<float>(static_cast<uint32_t>(load_u16(src + 2 * i)) << 16);
      }
      break;
    default: {
      void (*block_fn)(const uint8_t*, float*) = nullptr;
      switch (type) {
        case GgmlType::kQ4_0: block_fn = dequant_q4_0; break;
        case GgmlType::kQ4_1: block_fn = dequant_q4_1; break;
        case GgmlType::kQ8_0: block_fn = dequant_q8_0; break;
        case GgmlType::kQ4_K: block_fn = dequant_q4_k; break;
        default: block_fn = dequant_q6_k; break;
      }
      for (int64_t i = 0; i < blocks; ++i) block_fn(src + i * block_bytes, dst + i * block_elems);
    }
  }
  return {};
}

}  // namespace ember
