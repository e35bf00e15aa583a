// Scalar, bit-exact dequantization of one row of any DType (layouts and the
// float32 operation order in quant_blocks.h).
#include "kernels/quant/quant_blocks.h"

#include "kernels/quant/fp8.h"

namespace ember::quant {
namespace {

void q4_0_block(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void q4_1_block(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const float m = load_fp16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void q8_0_block(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

void q4_k_block(const uint8_t* b, float* y) {
  float ds[8], dm[8];
  q4_k_block_scales(b, ds, dm);
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    const int c = s / 2, shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) y[32 * s + l] = ds[s] * static_cast<float>((qs[32 * c + l] >> shift) & 0x0F) - dm[s];
  }
}

// Element i: h = i / 128 picks the half (64 ql and 32 qh bytes each), r = i % 128;
// low 4 bits from ql[64h + r % 64] >> 4 * (r / 64), high 2 from qh[32h + r % 32] >> 2 * (r / 32).
void q6_k_block(const uint8_t* b, float* y) {
  const uint8_t* ql = b + kQ6_KQl;
  const uint8_t* qh = b + kQ6_KQh;
  const float d = load_fp16(b + kQ6_KD);
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, r = i % 128;
    const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
    const float ds = d * static_cast<float>(static_cast<int8_t>(b[kQ6_KScales + i / 16]));
    y[i] = ds * static_cast<float>((lo | (hi << 4)) - 32);
  }
}

}  // namespace

void dequantize_row(DType dtype, const void* row, int64_t cols, float* out) {
  const auto* src = static_cast<const uint8_t*>(row);
  void (*block_fn)(const uint8_t*, float*) = nullptr;
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, src, static_cast<size_t>(cols) * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < cols; ++i) out[i] = fp16_to_f32(load_u16(src + 2 * i));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < cols; ++i) out[i] = bf16_to_f32(load_u16(src + 2 * i));
      return;
    case DType::kF8E4M3:  // the codes' values; the caller applies the row's scale
      for (int64_t i = 0; i < cols; ++i) out[i] = fp8_e4m3_to_float(src[i]);
      return;
    case DType::kQ8_0: block_fn = q8_0_block; break;
    case DType::kQ4_0: block_fn = q4_0_block; break;
    case DType::kQ4_1: block_fn = q4_1_block; break;
    case DType::kQ4_K: block_fn = q4_k_block; break;
    case DType::kQ6_K: block_fn = q6_k_block; break;
  }
  const int64_t elems = dtype_block_elems(dtype), bytes = dtype_block_bytes(dtype);
  for (int64_t b = 0; b < cols / elems; ++b) block_fn(src + b * bytes, out + b * elems);
}

}  // namespace ember::quant
