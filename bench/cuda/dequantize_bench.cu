// GPU dequantization throughput next to a device-to-device copy of the same
// output bytes, measured in the same run (the copy is this GPU's ceiling).
// Prints one JSON line per format: {"format", "gb_per_s", "copy_gb_per_s", "ratio"}.
// Bytes counted: quantized bytes read + bf16 bytes written.

#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "kernels/cuda/dequantize.h"

using ember::QuantFormat;

namespace {

float time_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  return ms;
}

}  // namespace

int main() {
  const int64_t n = 4096LL * 14336;  // one Llama-3-8B MLP matrix
  const int iters = 50;
  void* src = nullptr;
  __nv_bfloat16* dst = nullptr;
  void* copy_src = nullptr;
  if (cudaMalloc(&src, n * 4) != cudaSuccess || cudaMalloc(&dst, n * 2) != cudaSuccess ||
      cudaMalloc(&copy_src, n * 2) != cudaSuccess) {
    std::fprintf(stderr, "dequantize_bench: no GPU or not enough memory\n");
    return 1;
  }
  cudaMemset(src, 0x11, n * 4);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);

  for (int i = 0; i < 5; ++i) cudaMemcpy(dst, copy_src, n * 2, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e0);
  for (int i = 0; i < iters; ++i) cudaMemcpyAsync(dst, copy_src, n * 2, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  const double copy_gbs = 2.0 * n * 2 * iters / (time_ms(e0, e1) * 1e6);

  for (QuantFormat f : {QuantFormat::kQ4_0, QuantFormat::kQ4_1, QuantFormat::kQ8_0, QuantFormat::kF16, QuantFormat::kF32}) {
    const char* name = f == QuantFormat::kQ4_0 ? "Q4_0" : f == QuantFormat::kQ4_1 ? "Q4_1" : f == QuantFormat::kQ8_0 ? "Q8_0"
                     : f == QuantFormat::kF16 ? "F16" : "F32";
    for (int i = 0; i < 5; ++i) (void)ember::dequantize_to_bf16(f, src, n, dst, nullptr);
    cudaEventRecord(e0);
    for (int i = 0; i < iters; ++i) (void)ember::dequantize_to_bf16(f, src, n, dst, nullptr);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    const double bytes = static_cast<double>(ember::quant_format_bytes(f, n)) + 2.0 * n;
    const double gbs = bytes * iters / (time_ms(e0, e1) * 1e6);
    std::printf("{\"format\": \"%s\", \"elements\": %lld, \"gb_per_s\": %.1f, \"copy_gb_per_s\": %.1f, \"ratio\": %.3f}\n",
                name, static_cast<long long>(n), gbs, copy_gbs, gbs / copy_gbs);
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    std::fprintf(stderr, "dequantize_bench: %s\n", cudaGetErrorString(err));
    return 1;
  }
  return 0;
}
