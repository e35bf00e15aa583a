// FP8 weights (Gemm::linear_fp8) against bf16 (Gemm::linear) at the
// Llama-3-8B layer shapes, in the same run:
//   decode (M = 1-32): time and GB/s of the weight bytes (N*K for FP8, 2*N*K
//     for bf16), weights rotating over >= 512 MB so they stream from HBM.
//     Each FP8 kernel alone beside the dispatch: the CUDA-core GEMV (M <= 8),
//     the tensor-core one's variants, cuBLASLt; "fp8_path" the dispatch's pick.
//   prefill (M = 512, 4096, 8192): TFLOP/s (2MNK) of the FP8 path (the
//     per-token activation quantization included) against bf16 cuBLASLt,
//     with cuBLASLt's fast accumulation (the default) and without, and the
//     quantization's own time.
// One JSON object per line; ratio = bf16 time / FP8 time.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda/linear_bench_util.cuh"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/gemm.h"

namespace {

using ember::bench::alloc_random;
using ember::bench::bf16;
using ember::bench::median_us;
using ember::bench::require_ok;

struct Shape {
  int n, k;
  const char* what;
};

// `copies` bf16 matrices and their FP8 quantizations.
struct Weights {
  std::vector<bf16*> bf16s;
  std::vector<uint8_t*> codes;
  std::vector<float*> scales;
};

Weights make_weights(const Shape& s, int copies) {
  Weights w;
  const size_t elems = static_cast<size_t>(s.n) * s.k;
  for (int c = 0; c < copies; ++c) {
    w.bf16s.push_back(alloc_random(elems, 100u + c, 0.05f));
    uint8_t* q = nullptr;
    float* sc = nullptr;
    BENCH_CHECK(cudaMalloc(&q, elems));
    BENCH_CHECK(cudaMalloc(&sc, static_cast<size_t>(s.n) * sizeof(float)));
    require_ok(ember::gpu::quantize_rows_fp8(w.bf16s.back(), s.n, s.k, q, sc, nullptr));
    w.codes.push_back(q);
    w.scales.push_back(sc);
  }
  BENCH_CHECK(cudaDeviceSynchronize());
  return w;
}

void free_weights(Weights& w) {
  for (bf16* p : w.bf16s) cudaFree(p);
  for (uint8_t* p : w.codes) cudaFree(p);
  for (float* p : w.scales) cudaFree(p);
}

}  // namespace

int main() {
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "fp8_bench: no CUDA device\n");
    return 1;
  }
  if (!ember::gpu::fp8_supported(0)) {
    std::fprintf(stderr, "fp8_bench: this GPU has no FP8 (compute capability < 8.9)\n");
    return 1;
  }
  auto gemm_r = ember::gpu::Gemm::create();
  require_ok(gemm_r.ok() ? ember::Status::success() : ember::Status(gemm_r.error()));
  ember::gpu::Gemm& gemm = *gemm_r.value();
  const std::vector<Shape> shapes = {{4096, 4096, "o_proj"},
                                     {6144, 4096, "qkv_proj"},
                                     {28672, 4096, "gate_up_proj"},
                                     {4096, 14336, "down_proj"}};
  for (const Shape& s : shapes) {
    const size_t elems = static_cast<size_t>(s.n) * s.k;
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{512} << 20) / (elems * 2) + 1));
    Weights w = make_weights(s, copies);
    bf16* x = alloc_random(static_cast<size_t>(64) * s.k, 7u, 1.0f);
    bf16* y = nullptr;
    BENCH_CHECK(cudaMalloc(&y, static_cast<size_t>(64) * s.n * sizeof(bf16)));
    for (int m : {1, 2, 4, 8, 16, 32, 64}) {
      auto fp8_time = [&](auto&& call) {
        return median_us([&](int i) { require_ok(call(w.codes[i % copies], w.scales[i % copies])); }, 50);
      };
      const double bf16_us = median_us(
          [&](int i) { require_ok(gemm.linear(x, w.bf16s[i % copies], nullptr, y, false, m, s.n, s.k, nullptr)); }, 50);
      const double fp8_us = fp8_time([&](const uint8_t* q, const float* sc) {
        return gemm.linear_fp8(x, q, sc, nullptr, y, false, m, s.n, s.k, nullptr);
      });
      // Each FP8 kernel alone: the CUDA-core GEMV, the tensor-core one's variants, cuBLASLt.
      std::string each;
      auto add = [&](const std::string& key, double us) {
        char buf[96];
        std::snprintf(buf, sizeof buf, ", \"%s_us\": %.2f", key.c_str(), us);
        each += buf;
      };
      if (m <= ember::gpu::kGemvFp8MaxM)
        add("gemv_fp8", fp8_time([&](const uint8_t* q, const float* sc) {
              return ember::gpu::gemv_fp8(x, q, sc, nullptr, y, false, m, s.n, s.k, nullptr);
            }));
      for (int v = 0; v < (m <= 16 ? ember::gpu::kGemvMmaVariants : 1); ++v)
        add("gemv_mma_fp8_v" + std::to_string(v), fp8_time([&](const uint8_t* q, const float* sc) {
              return ember::gpu::gemv_mma_fp8(x, q, sc, nullptr, y, false, m, s.n, s.k, v, true, nullptr);
            }));
      add("cublaslt_fp8", fp8_time([&](const uint8_t* q, const float* sc) {
            return gemm.linear_fp8_cublaslt(x, q, sc, nullptr, y, false, m, s.n, s.k, nullptr);
          }));
      std::printf(
          "{\"name\": \"fp8_decode_linear\", \"what\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"bf16_us\": %.2f, "
          "\"fp8_us\": %.2f, \"bf16_gb_per_s\": %.0f, \"fp8_gb_per_s\": %.0f, \"ratio\": %.3f, \"fp8_path\": \"%s\"%s}\n",
          s.what, m, s.n, s.k, bf16_us, fp8_us, 2.0 * elems / (bf16_us * 1e3), 1.0 * elems / (fp8_us * 1e3),
          bf16_us / fp8_us, gemm.fp8_path(m, s.n, s.k).c_str(), each.c_str());
      std::fflush(stdout);
    }
    BENCH_CHECK(cudaFree(x));
    BENCH_CHECK(cudaFree(y));
    if (s.n != 4096 || s.k != 4096) {
      for (int m : {512, 4096, 8192}) {
        bf16* xp = alloc_random(static_cast<size_t>(m) * s.k, 9u, 1.0f);
        bf16* yp = nullptr;
        BENCH_CHECK(cudaMalloc(&yp, static_cast<size_t>(m) * s.n * sizeof(bf16)));
        const double flops = 2.0 * m * s.n * s.k;
        const int reps = std::max(3, static_cast<int>(2e12 / flops));
        const double bf16_us = median_us(
            [&](int) { require_ok(gemm.linear_cublaslt(xp, w.bf16s[0], nullptr, yp, false, m, s.n, s.k, nullptr)); },
            reps, 7);
        auto fp8_prefill = [&] {
          return median_us(
              [&](int) {
                require_ok(gemm.linear_fp8(xp, w.codes[0], w.scales[0], nullptr, yp, false, m, s.n, s.k, nullptr));
              },
              reps, 7);
        };
        const double fp8_us = fp8_prefill();  // fast accumulation (the default)
        gemm.set_fp8_fast_accum(false);
        const double precise_us = fp8_prefill();
        const std::string precise_path = gemm.fp8_path(m, s.n, s.k);
        gemm.set_fp8_fast_accum(true);
        // The per-token activation quantization alone (inside both FP8 times).
        uint8_t* xq = nullptr;
        float* xs = nullptr;
        BENCH_CHECK(cudaMalloc(&xq, static_cast<size_t>(m) * s.k));
        BENCH_CHECK(cudaMalloc(&xs, static_cast<size_t>(m) * sizeof(float)));
        const double quant_us =
            median_us([&](int) { require_ok(ember::gpu::quantize_rows_fp8(xp, m, s.k, xq, xs, nullptr)); }, reps, 7);
        BENCH_CHECK(cudaFree(xq));
        BENCH_CHECK(cudaFree(xs));
        std::printf(
            "{\"name\": \"fp8_prefill_linear\", \"what\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"bf16_us\": %.1f, "
            "\"fp8_us\": %.1f, \"bf16_tflops\": %.1f, \"fp8_tflops\": %.1f, \"ratio\": %.3f, \"fp8_path\": \"%s\", "
            "\"fp8_precise_us\": %.1f, \"fp8_precise_path\": \"%s\", \"quantize_x_us\": %.1f}\n",
            s.what, m, s.n, s.k, bf16_us, fp8_us, flops / (bf16_us * 1e6), flops / (fp8_us * 1e6), bf16_us / fp8_us,
            gemm.fp8_path(m, s.n, s.k).c_str(), precise_us, precise_path.c_str(), quant_us);
        std::fflush(stdout);
        BENCH_CHECK(cudaFree(xp));
        BENCH_CHECK(cudaFree(yp));
      }
    }
    free_weights(w);
  }
  return 0;
}
