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
// The block arithmetic lives once, in kernels/quant/quant_blocks (the CPU
// kernels read the same blocks): float32 in the same order as ggml's reference
// (and gguf-py), so results match them bit for bit. GCC may fuse a multiply
// and an add into an FMA, which cannot change a bit here: every product before
// an add is exact in float32 (a 4- to 8-bit integer times a half-precision scale).

#include <string>

#include "kernels/quant/quant_blocks.h"
#include "models/formats/gguf.h"

namespace ember {
namespace {

DType dtype_of(GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return DType::kF32;
    case GgmlType::kF16: return DType::kF16;
    case GgmlType::kBF16: return DType::kBF16;
    case GgmlType::kQ4_0: return DType::kQ4_0;
    case GgmlType::kQ4_1: return DType::kQ4_1;
    case GgmlType::kQ8_0: return DType::kQ8_0;
    case GgmlType::kQ4_K: return DType::kQ4_K;
    case GgmlType::kQ6_K: return DType::kQ6_K;
  }
  return DType::kF32;  // unreachable: ggml_type_layout() rejected other types
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
  // A tensor's blocks are contiguous: the whole tensor is one long row.
  if (num_elements > 0) quant::dequantize_row(dtype_of(type), src, num_elements, dst);
  return {};
}

}  // namespace ember
