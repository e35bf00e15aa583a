// The linear layers' speed at Llama-3-8B shapes, every number beside its
// reference measured in the same run:
//   decode (M = 1-16): the small-M kernels (FMA gemv up to M = 8, tensor-core
//     gemv_mma) vs cuBLASLt vs a device-to-device
//     copy, in GB/s of compulsory traffic (w once, x once, y once). Weight
//     buffers rotate over >= 256 MB (L2 is 50 MB), as real decode streams 16 GB.
//   prefill (M = 512, 4096, 8192) at the big shapes through cuBLASLt, in
//     TFLOP/s (2MNK), beside cuBLASLt's 8192^3 in the same run.
// One JSON object per line. Times: median over batches of back-to-back launches
// timed with cudaEvents, after warm-up. Inputs random (never zeros).

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda/linear_bench_util.cuh"
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

}  // namespace

int main() {
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "gemm_bench: no CUDA device\n");
    return 1;
  }
  auto gemm_r = ember::gpu::Gemm::create();
  if (!gemm_r.ok()) {
    std::fprintf(stderr, "gemm_bench: %s\n", gemm_r.error().message.c_str());
    return 1;
  }
  ember::gpu::Gemm& gemm = *gemm_r.value();

  // The copy ceiling: 1 GB device-to-device, read + write counted.
  const size_t copy_bytes = size_t{1} << 30;
  void *c0 = nullptr, *c1 = nullptr;
  BENCH_CHECK(cudaMalloc(&c0, copy_bytes));
  BENCH_CHECK(cudaMalloc(&c1, copy_bytes));
  BENCH_CHECK(cudaMemset(c0, 0x3C, copy_bytes));
  const double copy_us =
      median_us([&](int) { BENCH_CHECK(cudaMemcpyAsync(c1, c0, copy_bytes, cudaMemcpyDeviceToDevice)); }, 5);
  const double copy_gbs = 2.0 * copy_bytes / (copy_us * 1e3);
  std::printf("{\"name\": \"d2d_copy\", \"bytes\": %zu, \"time_us\": %.1f, \"gb_per_s\": %.1f}\n", copy_bytes, copy_us,
              copy_gbs);
  BENCH_CHECK(cudaFree(c0));
  BENCH_CHECK(cudaFree(c1));

  const std::vector<Shape> shapes = {{4096, 4096, "o_proj"},
                                     {6144, 4096, "qkv_proj"},
                                     {28672, 4096, "gate_up_proj"},
                                     {4096, 14336, "down_proj"},
                                     {128256, 4096, "lm_head"}};

  // ---- decode: gemv vs cuBLASLt vs copy ----
  for (const Shape& s : shapes) {
    const size_t w_elems = static_cast<size_t>(s.n) * s.k;
    const size_t w_bytes = w_elems * sizeof(bf16);
    const int buffers = static_cast<int>(std::max<size_t>(2, (size_t{256} << 20) / w_bytes + 1));
    std::vector<bf16*> ws;
    for (int i = 0; i < buffers; ++i) ws.push_back(alloc_random(w_elems, 17u + i, 0.05f));
    bf16* x = alloc_random(static_cast<size_t>(16) * s.k, 5u, 1.0f);
    void* y = nullptr;
    BENCH_CHECK(cudaMalloc(&y, static_cast<size_t>(16) * s.n * sizeof(float)));
    const bool y_f32 = s.n == 128256;  // the LM head writes float32 logits
    for (int m : {1, 2, 4, 5, 6, 8, 9, 16}) {
      const double bytes = static_cast<double>(w_bytes) + 2.0 * m * s.k + (y_f32 ? 4.0 : 2.0) * m * s.n;
      const int reps = std::max(3, static_cast<int>(2e8 / w_bytes));  // ~>= 65 us a batch
      const bool fma_ok = m <= ember::gpu::Gemm::kGemvMaxM;
      const double gemv_us =
          fma_ok ? median_us([&](int i) {
            require_ok(ember::gpu::gemv(x, ws[i % buffers], nullptr, y, y_f32, m, s.n, s.k, nullptr));
          }, reps)
                 : 0.0;
      const double mma_us = median_us(
          [&](int i) { require_ok(ember::gpu::gemv_mma(x, ws[i % buffers], nullptr, y, y_f32, m, s.n, s.k, nullptr)); },
          reps);
      const double lt_us = median_us(
          [&](int i) { require_ok(gemm.linear_cublaslt(x, ws[i % buffers], nullptr, y, y_f32, m, s.n, s.k, nullptr)); },
          reps);
      const double gemv_gbs = fma_ok ? bytes / (gemv_us * 1e3) : 0.0, lt_gbs = bytes / (lt_us * 1e3);
      const double mma_gbs = bytes / (mma_us * 1e3);
      // The tuning grids (gemm.h): every variant with and without programmatic
      // dependent launch (back-to-back calls, as the layers of a decode step).
      auto grid = [&](int count, auto&& call) {
        std::string out;
        for (int v = 0; v < count; ++v)
          for (bool pdl : {false, true}) {
            const double us = median_us([&](int i) { require_ok(call(i, v, pdl)); }, reps);
            char buf[96];
            std::snprintf(buf, sizeof buf, "%s{\"v\": %d, \"pdl\": %d, \"us\": %.2f, \"vs_copy\": %.3f}",
                          out.empty() ? "" : ", ", v, pdl ? 1 : 0, us, bytes / (us * 1e3) / copy_gbs);
            out += buf;
          }
        return out;
      };
      const std::string variants =
          m <= 4 ? grid(ember::gpu::kGemvVariants, [&](int i, int v, bool pdl) {
            return ember::gpu::gemv_variant(x, ws[i % buffers], nullptr, y, y_f32, m, s.n, s.k, v, pdl, nullptr);
          })
                 : std::string();
      const std::string mma_variants = grid(ember::gpu::kGemvMmaVariants, [&](int i, int v, bool pdl) {
        return ember::gpu::gemv_mma_variant(x, ws[i % buffers], nullptr, y, y_f32, m, s.n, s.k, v, pdl, nullptr);
      });
      std::printf(
          "{\"name\": \"decode_linear\", \"what\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"y_f32\": %s, "
          "\"gemv_time_us\": %.2f, \"gemv_gb_per_s\": %.1f, \"gemv_mma_time_us\": %.2f, \"gemv_mma_gb_per_s\": %.1f, "
          "\"cublaslt_time_us\": %.2f, \"cublaslt_gb_per_s\": %.1f, "
          "\"copy_gb_per_s\": %.1f, \"gemv_mma_vs_copy\": %.3f, \"gemv_mma_speedup_vs_cublaslt\": %.2f, "
          "\"gemv_variants\": [%s], \"gemv_mma_variants\": [%s]}\n",
          s.what, m, s.n, s.k, y_f32 ? "true" : "false", gemv_us, gemv_gbs, mma_us, mma_gbs, lt_us, lt_gbs, copy_gbs,
          mma_gbs / copy_gbs, lt_us / mma_us, variants.c_str(), mma_variants.c_str());
      std::fflush(stdout);
    }
    for (bf16* w : ws) BENCH_CHECK(cudaFree(w));
    BENCH_CHECK(cudaFree(x));
    BENCH_CHECK(cudaFree(y));
  }

  // ---- batched decode (graph buckets): cuBLASLt's heuristic choice vs the
  // autotuned one (Gemm::set_autotune_max_m), weight bytes / time vs copy ----
  {
    auto tuned_r = ember::gpu::Gemm::create();
    require_ok(tuned_r.ok() ? ember::Status::success() : ember::Status(tuned_r.error()));
    ember::gpu::Gemm& tuned = *tuned_r.value();
    tuned.set_autotune_max_m(1 << 30);
    for (const Shape& s : shapes) {
      const size_t w_elems = static_cast<size_t>(s.n) * s.k;
      const size_t w_bytes = w_elems * sizeof(bf16);
      const int buffers = static_cast<int>(std::max<size_t>(2, (size_t{256} << 20) / w_bytes + 1));
      std::vector<bf16*> ws;
      for (int i = 0; i < buffers; ++i) ws.push_back(alloc_random(w_elems, 31u + i, 0.05f));
      bf16* x = alloc_random(static_cast<size_t>(512) * s.k, 7u, 1.0f);
      void* y = nullptr;
      const bool y_f32 = s.n == 128256;
      BENCH_CHECK(cudaMalloc(&y, static_cast<size_t>(512) * s.n * (y_f32 ? 4 : 2)));
      for (int m : {16, 32, 64, 128, 256, 512}) {
        const int reps = std::max(3, static_cast<int>(2e8 / w_bytes));
        auto timed = [&](ember::gpu::Gemm& g) {
          return median_us(
              [&](int i) { require_ok(g.linear_cublaslt(x, ws[i % buffers], nullptr, y, y_f32, m, s.n, s.k, nullptr)); },
              reps);
        };
        const double heur_us = timed(gemm), tuned_us = timed(tuned);
        const double flop = 2.0 * m * s.n * s.k;
        // The tensor-core small-M kernel where it takes this M, beside cuBLASLt autotuned.
        const double mma_us =
            m <= ember::gpu::kGemvMmaMaxM
                ? median_us([&](int i) {
                    require_ok(ember::gpu::gemv_mma(x, ws[i % buffers], nullptr, y, y_f32, m, s.n, s.k, nullptr));
                  }, reps)
                : 0.0;
        std::printf(
            "{\"name\": \"batch_decode_linear\", \"what\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
            "\"heuristic_us\": %.2f, \"autotuned_us\": %.2f, \"autotuned_weights_vs_copy\": %.3f, "
            "\"autotuned_tflops\": %.1f, \"speedup\": %.3f, \"gemv_mma_us\": %.2f, \"gemv_mma_vs_copy\": %.3f, "
            "\"gemv_mma_speedup_vs_autotuned\": %.3f}\n",
            s.what, m, s.n, s.k, heur_us, tuned_us, w_bytes / (tuned_us * 1e3) / copy_gbs, flop / (tuned_us * 1e6),
            heur_us / tuned_us, mma_us, mma_us > 0 ? w_bytes / (mma_us * 1e3) / copy_gbs : 0.0,
            mma_us > 0 ? tuned_us / mma_us : 0.0);
        std::fflush(stdout);
      }
      for (bf16* w : ws) BENCH_CHECK(cudaFree(w));
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(y));
    }
  }

  // ---- prefill: cuBLASLt TFLOP/s beside its own 8192^3 ----
  auto gemm_tflops = [&](int m, int n, int k, bool y_f32, double* us_out) {
    bf16* x = alloc_random(static_cast<size_t>(m) * k, 7u, 1.0f);
    bf16* w = alloc_random(static_cast<size_t>(n) * k, 9u, 0.05f);
    void* y = nullptr;
    BENCH_CHECK(cudaMalloc(&y, static_cast<size_t>(m) * n * (y_f32 ? 4 : 2)));
    const double flops = 2.0 * m * n * k;
    const int reps = std::max(3, static_cast<int>(2e12 / flops));
    const double us =
        median_us([&](int) { require_ok(gemm.linear_cublaslt(x, w, nullptr, y, y_f32, m, n, k, nullptr)); }, reps, 9);
    BENCH_CHECK(cudaFree(x));
    BENCH_CHECK(cudaFree(w));
    BENCH_CHECK(cudaFree(y));
    *us_out = us;
    return flops / (us * 1e6);
  };
  double ceiling_us = 0;
  const double ceiling = gemm_tflops(8192, 8192, 8192, false, &ceiling_us);
  std::printf("{\"name\": \"cublaslt_8192_cubed\", \"time_us\": %.1f, \"tflops\": %.1f}\n", ceiling_us, ceiling);
  for (const Shape& s : shapes) {
    if (s.n == 4096 && s.k == 4096) continue;  // the small shapes: decode only
    if (s.n == 6144) continue;
    for (int m : {512, 4096, 8192}) {
      const bool y_f32 = s.n == 128256;
      double us = 0;
      const double tf = gemm_tflops(m, s.n, s.k, y_f32, &us);
      std::printf(
          "{\"name\": \"prefill_linear\", \"what\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"y_f32\": %s, "
          "\"time_us\": %.1f, \"tflops\": %.1f, \"ceiling_tflops\": %.1f, \"ratio\": %.3f}\n",
          s.what, m, s.n, s.k, y_f32 ? "true" : "false", us, tf, ceiling, tf / ceiling);
      std::fflush(stdout);
    }
  }
  return 0;
}
