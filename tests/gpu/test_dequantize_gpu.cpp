// The CUDA dequantization kernels against the CPU reference (models/gguf.h's
// dequantize) on random blocks. Runs only on a GPU machine (scripts/gpu_check.sh);
// without a GPU it FAILS rather than skipping, so a GPU run can never pass vacuously.

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/dequantize.h"
#include "kernels/cuda/device_info.h"
#include "models/formats/gguf.h"

namespace ember {
namespace {

uint16_t to_half_bits(float f) {
  __half h = __float2half(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

float bf16_to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Random bytes in the format's block layout, with finite fp16 scales.
std::vector<uint8_t> random_blocks(QuantFormat format, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> bytes(quant_format_bytes(format, n));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  auto put_half = [&](size_t at, float v) {
    uint16_t h = to_half_bits(v);
    bytes[at] = h & 0xFF;
    bytes[at + 1] = h >> 8;
  };
  const int64_t blocks = n / 32;
  for (int64_t b = 0; b < blocks; ++b) {
    switch (format) {
      case QuantFormat::kQ8_0: put_half(b * 34, scale(rng)); break;
      case QuantFormat::kQ4_0: put_half(b * 18, scale(rng)); break;
      case QuantFormat::kQ4_1: put_half(b * 20, scale(rng)); put_half(b * 20 + 2, scale(rng)); break;
      default: break;
    }
  }
  if (format == QuantFormat::kF32) {
    std::normal_distribution<float> g;
    auto* f = reinterpret_cast<float*>(bytes.data());
    for (int64_t i = 0; i < n; ++i) f[i] = g(rng);
  } else if (format == QuantFormat::kF16) {
    std::normal_distribution<float> g;
    for (int64_t i = 0; i < n; ++i) put_half(i * 2, g(rng));
  }
  return bytes;
}

class DequantizeGpu : public ::testing::TestWithParam<QuantFormat> {};

TEST_P(DequantizeGpu, MatchesCpuReference) {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
  const QuantFormat format = GetParam();
  std::mt19937 rng(1234 + static_cast<int>(format));
  for (int64_t n : {32LL, 4096LL, 32LL * 1000 + 0, 576LL * 1536}) {
    std::vector<uint8_t> host = random_blocks(format, n, rng);
    std::vector<float> reference(n);
    ASSERT_TRUE(dequantize(static_cast<GgmlType>(format), host.data(), n, reference.data()).ok());

    void* d_src = nullptr;
    __nv_bfloat16* d_dst = nullptr;
    ASSERT_EQ(cudaMalloc(&d_src, host.size()), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_dst, n * sizeof(__nv_bfloat16)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_src, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemset(d_dst, 0xFF, n * sizeof(__nv_bfloat16)), cudaSuccess);  // poison: NaN
    ASSERT_TRUE(dequantize_to_bf16(format, d_src, n, d_dst, nullptr).ok());
    std::vector<__nv_bfloat16> out(n);
    ASSERT_EQ(cudaMemcpy(out.data(), d_dst, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(d_src);
    cudaFree(d_dst);

    int64_t mismatches = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float got = bf16_to_float(out[i]);
      const float want = bf16_to_float(__float2bfloat16(reference[i]));
      // Same math in float on both sides; FMA contraction may move the float
      // result by an ulp, which can flip the bf16 rounding: allow one bf16 ulp.
      const float tol = std::ldexp(std::fabs(want), -7) + 1e-30f;
      if (!(std::fabs(got - want) <= tol)) ++mismatches;
    }
    EXPECT_EQ(mismatches, 0) << "n=" << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, DequantizeGpu,
                         ::testing::Values(QuantFormat::kF32, QuantFormat::kF16, QuantFormat::kQ8_0,
                                           QuantFormat::kQ4_0, QuantFormat::kQ4_1));

}  // namespace
}  // namespace ember
