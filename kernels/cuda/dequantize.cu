// Dequantization of ggml block formats to bf16.
//   Q8_0: {fp16 d; int8 q[32]}            w = d * q                      34 B / 32 w
//   Q4_0: {fp16 d; uint8 q[16]}           w = d * (nibble - 8)           18 B / 32 w
//   Q4_1: {fp16 d; fp16 m; uint8 q[16]}   w = d * nibble + m             20 B / 32 w
// Nibble layout: byte j holds weight j (low 4 bits) and weight j + 16 (high).
// One thread per weight pair (j, j + 16) for the 4-bit formats, so every byte
// is read once; blocks are not 4-byte aligned, hence byte loads. Purely
// bandwidth bound: reads ~0.6 B and writes 2 B a weight, so a 16 GB bf16
// model is produced in a few ms at 3 TB/s — load time is the disk, not this.

#include "kernels/cuda/dequantize.h"

#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"

namespace ember {
namespace {

constexpr int kBlock = 32;

__device__ inline float load_half(const uint8_t* p) {
  __half h;
  uint16_t bits = static_cast<uint16_t>(p[0] | (p[1] << 8));
  memcpy(&h, &bits, 2);
  return __half2float(h);
}

__global__ void dequant_q8_0(const uint8_t* src, int64_t n, __nv_bfloat16* dst) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const uint8_t* block = src + (i / kBlock) * 34;
  float d = load_half(block);
  dst[i] = __float2bfloat16(d * static_cast<float>(static_cast<int8_t>(block[2 + i % kBlock])));
}

template <bool kHasMin>
__global__ void dequant_q4(const uint8_t* src, int64_t n_pairs, __nv_bfloat16* dst) {
  int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n_pairs) return;
  constexpr int kBytes = kHasMin ? 20 : 18;
  const int64_t b = p / 16;
  const int j = static_cast<int>(p % 16);
  const uint8_t* block = src + b * kBytes;
  const float d = load_half(block);
  const float m = kHasMin ? load_half(block + 2) : -8.0f * d;
  const uint8_t q = block[(kHasMin ? 4 : 2) + j];
  dst[b * kBlock + j] = __float2bfloat16(d * static_cast<float>(q & 0xF) + m);
  dst[b * kBlock + j + 16] = __float2bfloat16(d * static_cast<float>(q >> 4) + m);
}

__global__ void convert_f32(const float* src, int64_t n, __nv_bfloat16* dst) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16(src[i]);
}

__global__ void convert_f16(const __half* src, int64_t n, __nv_bfloat16* dst) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16(__half2float(src[i]));
}

unsigned grid_for(int64_t threads, int block) { return static_cast<unsigned>((threads + block - 1) / block); }

}  // namespace

uint64_t quant_format_bytes(QuantFormat format, int64_t n) {
  if (n < 0) return 0;
  const uint64_t un = static_cast<uint64_t>(n);
  switch (format) {
    case QuantFormat::kF32: return un * 4;
    case QuantFormat::kF16:
    case QuantFormat::kBF16: return un * 2;
    case QuantFormat::kQ8_0: return n % kBlock ? 0 : un / kBlock * 34;
    case QuantFormat::kQ4_0: return n % kBlock ? 0 : un / kBlock * 18;
    case QuantFormat::kQ4_1: return n % kBlock ? 0 : un / kBlock * 20;
  }
  return 0;
}

Status dequantize_to_bf16(QuantFormat format, const void* src, int64_t n, __nv_bfloat16* dst, cudaStream_t stream) {
  if (n == 0) return Status::success();
  if (quant_format_bytes(format, n) == 0) return Error{"dequantize_to_bf16: element count is not a whole number of blocks"};
  constexpr int kThreads = 256;
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (format) {
    case QuantFormat::kF32:
      convert_f32<<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<const float*>(src), n, dst);
      break;
    case QuantFormat::kF16:
      convert_f16<<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<const __half*>(src), n, dst);
      break;
    case QuantFormat::kBF16:
      EMBER_CUDA_TRY(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * 2, cudaMemcpyDeviceToDevice, stream));
      break;
    case QuantFormat::kQ8_0:
      dequant_q8_0<<<grid_for(n, kThreads), kThreads, 0, stream>>>(bytes, n, dst);
      break;
    case QuantFormat::kQ4_0:
      dequant_q4<false><<<grid_for(n / 2, kThreads), kThreads, 0, stream>>>(bytes, n / 2, dst);
      break;
    case QuantFormat::kQ4_1:
      dequant_q4<true><<<grid_for(n / 2, kThreads), kThreads, 0, stream>>>(bytes, n / 2, dst);
      break;
  }
  EMBER_CUDA_TRY(cudaGetLastError());
  return Status::success();
}

}  // namespace ember
