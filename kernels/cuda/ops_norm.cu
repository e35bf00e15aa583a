// RMSNorm with the fused residual add (vLLM's fused_add_rms_norm):
//   residual = bf16(x + residual);  out = bf16(residual * rsqrt(mean(residual^2) + eps) * weight)
// One block per row; the row stays in registers between the sum of squares and
// the scaling, so x and residual are read once: bytes = 2*H*2 (x, out) plus
// 2*H*2 with a residual, i.e. ~3 TB/s bound (a 4096-wide row of 64 tokens is
// 1 MB: ~0.35 us of traffic; at decode the launch dominates).

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {
namespace {

// rms_norm_vec's launch for a row of nvec 16-byte vectors (nvec <= 4096):
// `vecs` vectors a thread, `threads` a block (a multiple of 32); thread t
// holds vectors t, t + threads, ...
struct RmsNormShape {
  int vecs, threads;
};
RmsNormShape rms_norm_shape(int nvec) {
  const int vecs = nvec <= 256 ? 1 : nvec <= 512 ? 2 : nvec <= 1024 ? 4 : 8;
  const int per_thread = (nvec + vecs - 1) / vecs;
  return {vecs, per_thread < 32 ? 32 : (per_thread + 31) / 32 * 32};
}

// A thread's running sum of squares over 8 values, in order, each step one
// rounding (fma).
__device__ __forceinline__ float add_squares8(const float (&v)[8], float ss) {
#pragma unroll
  for (int e = 0; e < 8; ++e) ss = __fmaf_rn(v[e], v[e], ss);
  return ss;
}

// kVecs 16-byte vectors a thread; the block covers the row once. `out` may
// alias `x`: every load happens before block_sum's barrier, every store after.
// kFp8: the output row is quantized per row instead of stored (codes [rows,
// hidden], one scale a row), from its bf16 values: what rms_norm then
// quantize_rows_fp8 would write, without the bf16 row's round trip.
// x_scale: x is an FP8 GEMM's raw product of codes, scaled here as its scale
// pass would have (x_scale[row] * w_scale[col], then the bf16 rounding).
template <int kVecs, bool kFp8 = false>
__global__ void __launch_bounds__(kVecs == 8 ? 512 : 256)
    rms_norm_vec(const bf16* x, bf16* residual, const float* weight, float eps, int hidden, bf16* out,
                 uint8_t* codes = nullptr, float* scales = nullptr, const float* x_scale = nullptr,
                 const float* w_scale = nullptr) {
  pdl_launch_dependents();  // a projection follows: let its weights stream in
  const int nvec = hidden / 8;
  // The norm's weights are constant: they load while the kernel before this
  // one (which wrote x) finishes, not after the sum of squares (up to 4
  // vectors a thread: 8 would spill).
  constexpr bool kEarlyWeights = kVecs <= 4;
  const float4* w4 = reinterpret_cast<const float4*>(weight);
  auto load_weights = [&](int j, float(&w8)[8]) {
    const float4 wa = __ldg(w4 + 2 * j), wb = __ldg(w4 + 2 * j + 1);
    w8[0] = wa.x, w8[1] = wa.y, w8[2] = wa.z, w8[3] = wa.w;
    w8[4] = wb.x, w8[5] = wb.y, w8[6] = wb.z, w8[7] = wb.w;
  };
  float w[kEarlyWeights ? kVecs : 1][8];
  if constexpr (kEarlyWeights) {
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const int j = threadIdx.x + i * blockDim.x;
      if (j < nvec) load_weights(j, w[i]);
    }
  }
  pdl_wait();
  const int64_t row_off = static_cast<int64_t>(blockIdx.x) * hidden;
  const uint4* xr = reinterpret_cast<const uint4*>(x + row_off);
  const float sx = x_scale != nullptr ? x_scale[blockIdx.x] : 0.0f;
  float v[kVecs][8];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < nvec) {
      unpack8(xr[j], v[i]);
      if (x_scale != nullptr) apply_fp8_scales8(v[i], sx, w_scale + 8 * j);
      if (residual) {
        uint4* rr = reinterpret_cast<uint4*>(residual + row_off);
        float r[8];
        unpack8(rr[j], r);
#pragma unroll
        for (int e = 0; e < 8; ++e) v[i][e] += r[e];
        // The norm is taken of the stored (rounded) sum, as HF's bf16 model.
        const uint4 sum = pack8(v[i]);
        rr[j] = sum;
        unpack8(sum, v[i]);
      }
      ss = add_squares8(v[i], ss);
    }
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(hidden) + eps);
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < nvec) {
      float* wi = w[0];
      if constexpr (kEarlyWeights) {
        wi = w[i];
      } else {
        load_weights(j, w[0]);
      }
      float o[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = v[i][e] * inv * wi[e];
      if constexpr (kFp8) {
        unpack8(pack8(o), v[i]);  // the bf16 values rms_norm would store
      } else {
        reinterpret_cast<uint4*>(out + row_off)[j] = pack8(o);
      }
    }
  }
  if constexpr (kFp8) quantize_row_from_registers<kVecs>(v, nvec, codes + row_off, scales + blockIdx.x);
}

// Any H or alignment: two passes over global memory (the second hits L1/L2).
// Element j is only ever touched by thread j % blockDim, so the aliasing of
// out and x and the residual's write-then-read need no extra barrier.
__global__ void rms_norm_scalar(const bf16* x, bf16* residual, const float* weight, float eps, int hidden, bf16* out) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t row_off = static_cast<int64_t>(blockIdx.x) * hidden;
  float ss = 0.0f;
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
    float a = __bfloat162float(x[row_off + j]);
    if (residual) {
      const bf16 sum = __float2bfloat16(a + __bfloat162float(residual[row_off + j]));
      residual[row_off + j] = sum;
      a = __bfloat162float(sum);
    }
    ss += a * a;
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(hidden) + eps);
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
    const float a = __bfloat162float(residual ? residual[row_off + j] : x[row_off + j]);
    out[row_off + j] = __float2bfloat16(a * inv * weight[j]);
  }
}

// rms_norm_vec at rms_norm_shape's launch for a row of nvec vectors.
template <bool kFp8>
cudaError_t launch_rms_norm_vec(int nvec, unsigned grid, cudaStream_t stream, const bf16* x, bf16* residual,
                                const float* weight, float eps, int hidden, bf16* out, uint8_t* codes, float* scales,
                                const float* x_scale, const float* w_scale) {
  const RmsNormShape shape = rms_norm_shape(nvec);
  auto* kernel = shape.vecs == 1   ? rms_norm_vec<1, kFp8>
                 : shape.vecs == 2 ? rms_norm_vec<2, kFp8>
                 : shape.vecs == 4 ? rms_norm_vec<4, kFp8>
                                   : rms_norm_vec<8, kFp8>;
  return launch_pdl(true, kernel, dim3(grid), dim3(shape.threads), 0, stream, x, residual, weight, eps, hidden, out,
                    codes, scales, x_scale, w_scale);
}

}  // namespace

Status rms_norm_fp8(const bf16* x, bf16* residual, const float* weight, float eps, int64_t rows, int64_t hidden,
                    uint8_t* codes, float* scales, cudaStream_t stream, const float* x_scale, const float* w_scale) {
  if (rows <= 0 || hidden <= 0) return Status::success();
  if ((x_scale == nullptr) != (w_scale == nullptr)) return Error{"rms_norm_fp8: x_scale and w_scale come together"};
  if (!rms_norm_fp8_supports(rows, hidden) || !aligned16(x) || !aligned16(weight) ||
      (residual != nullptr && !aligned16(residual)) || !aligned16(codes))
    return Error{"rms_norm_fp8: hidden size " + std::to_string(hidden) +
                 " must be a multiple of 8 up to 32768, rows and weights 16-byte aligned"};
  const unsigned grid = static_cast<unsigned>(rows);
  const int h = static_cast<int>(hidden);
  return cuda_status(launch_rms_norm_vec<true>(static_cast<int>(hidden / 8), grid, stream, x, residual, weight, eps, h,
                                               nullptr, codes, scales, x_scale, w_scale),
                     "rms_norm_fp8 launch");
}

bool rms_norm_fp8_supports(int64_t rows, int64_t hidden) {
  return rows <= 0x7fffffff && hidden > 0 && hidden % 8 == 0 && hidden / 8 <= 4096;
}

Status rms_norm(const bf16* x, bf16* residual, const float* weight, float eps, int64_t rows, int64_t hidden, bf16* out,
                cudaStream_t stream, const float* x_scale, const float* w_scale) {
  if (rows <= 0 || hidden <= 0) return Status::success();
  if ((x_scale == nullptr) != (w_scale == nullptr)) return Error{"rms_norm: x_scale and w_scale come together"};
  if (rows > 0x7fffffff) return Error{"rms_norm: too many rows: " + std::to_string(rows)};
  if (hidden > 65536) return Error{"rms_norm: hidden size " + std::to_string(hidden) + " over 65536"};
  const unsigned grid = static_cast<unsigned>(rows);
  const int h = static_cast<int>(hidden);
  const int64_t nvec = hidden / 8;
  const bool vec = hidden % 8 == 0 && aligned16(x) && aligned16(out) && aligned16(weight) &&
                   (residual == nullptr || aligned16(residual));
  if (x_scale != nullptr && !(vec && nvec <= 4096))
    return Error{"rms_norm: scales on x need a hidden size that is a multiple of 8 up to 32768, rows 16-byte aligned"};
  const float* xs = x_scale;
  const float* ws = w_scale;
  // Vectors a thread holds (rms_norm_shape): as few as keep the block <= 256
  // threads (512 for the widest rows); one row's registers never exceed 64
  // floats a thread.
  const cudaError_t e =
      vec && nvec <= 4096
          ? launch_rms_norm_vec<false>(static_cast<int>(nvec), grid, stream, x, residual, weight, eps, h, out, nullptr,
                                       nullptr, xs, ws)
          : launch_pdl(true, rms_norm_scalar, dim3(grid), dim3(256), 0, stream, x, residual, weight, eps, h, out);
  return cuda_status(e, "rms_norm launch");
}

}  // namespace ember::gpu
