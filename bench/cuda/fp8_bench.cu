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
//   decode_chain: a batch-1 decode step's 128 linears in one CUDA graph, bf16
//     against FP8 and each gemv_fp8 variant (their launches overlapping as in
//     the runner's graphs, which a kernel timed alone does not show): with
//     `--chain`, in place of the rest (21 GB of weights).
//   `--once`: in place of the rest, each shape's M = 1 GEMV in bf16, in FP8
//     (gemv_fp8) and in FP8 on tensor cores (gemv_mma_fp8), twice each (two
//     copies of the weights), for a profiler (ncu -k regex:gemv).
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

// Batch-1 decode's linears as the decode graph runs them: 32 layers of q/k/v,
// o, gate/up and down at M = 1, each layer its own weights (7 GB in FP8, 14 in
// bf16: every byte from HBM), captured in one CUDA graph, so the kernels'
// launches overlap as programmatic dependents do in the runner's graphs. The
// time a step of bf16, of FP8's dispatch and of each gemv_fp8 variant.
void decode_chain(ember::gpu::Gemm& gemm, const std::vector<Shape>& shapes) {
  constexpr int kLayers = 32;
  int max_k = 0, max_n = 0;
  int64_t bytes = 0;  // FP8 weight bytes of a layer
  for (const Shape& s : shapes) {
    max_k = std::max(max_k, s.k);
    max_n = std::max(max_n, s.n);
    bytes += int64_t{s.n} * s.k;
  }
  std::vector<Weights> layers;
  for (int l = 0; l < kLayers; ++l)
    for (const Shape& s : shapes) layers.push_back(make_weights(s, 1));
  bf16* x = alloc_random(static_cast<size_t>(max_k), 7u, 1.0f);
  bf16* y = nullptr;
  BENCH_CHECK(cudaMalloc(&y, static_cast<size_t>(max_n) * sizeof(bf16)));
  cudaStream_t stream = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // kind: -2 bf16, -1 the FP8 dispatch, v >= 0 gemv_fp8 variant v, -3 - v gemv_mma_fp8 variant v.
  auto step = [&](int kind) {
    for (size_t i = 0; i < layers.size(); ++i) {
      const Shape& s = shapes[i % shapes.size()];
      const Weights& w = layers[i];
      if (kind <= -3) {
        require_ok(ember::gpu::gemv_mma_fp8(x, w.codes[0], w.scales[0], nullptr, y, false, 1, s.n, s.k, -3 - kind, true,
                                            stream));
      } else if (kind == -2) {
        require_ok(gemm.linear(x, w.bf16s[0], nullptr, y, false, 1, s.n, s.k, stream));
      } else if (kind == -1) {
        require_ok(gemm.linear_fp8(x, w.codes[0], w.scales[0], nullptr, y, false, 1, s.n, s.k, stream));
      } else {
        require_ok(ember::gpu::gemv_fp8(x, w.codes[0], w.scales[0], nullptr, y, false, 1, s.n, s.k, stream, kind));
      }
    }
  };
  auto graph_us = [&](int kind) {
    step(kind);  // outside capture: any first-use set-up
    BENCH_CHECK(cudaStreamSynchronize(stream));
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    BENCH_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    step(kind);
    BENCH_CHECK(cudaStreamEndCapture(stream, &graph));
    BENCH_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t a, b;
    BENCH_CHECK(cudaEventCreate(&a));
    BENCH_CHECK(cudaEventCreate(&b));
    std::vector<double> t;
    for (int r = 0; r < 23; ++r) {
      BENCH_CHECK(cudaEventRecord(a, stream));
      BENCH_CHECK(cudaGraphLaunch(exec, stream));
      BENCH_CHECK(cudaEventRecord(b, stream));
      BENCH_CHECK(cudaEventSynchronize(b));
      float ms = 0;
      BENCH_CHECK(cudaEventElapsedTime(&ms, a, b));
      if (r >= 3) t.push_back(1000.0 * ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  const double bf16_us = graph_us(-2);
  const double total = static_cast<double>(bytes) * kLayers;
  auto print = [&](const std::string& what, double us, double weight_bytes) {
    std::printf(
        "{\"name\": \"decode_chain\", \"what\": \"%s\", \"layers\": %d, \"us\": %.1f, \"gb_per_s\": %.0f, "
        "\"ratio_to_bf16\": %.3f}\n",
        what.c_str(), kLayers, us, weight_bytes / (us * 1e3), bf16_us / us);
    std::fflush(stdout);
  };
  print("bf16", bf16_us, 2 * total);
  print("fp8_dispatch", graph_us(-1), total);
  for (int v = 0; v < ember::gpu::kGemvFp8Variants; ++v) print("gemv_fp8_v" + std::to_string(v), graph_us(v), total);
  for (int v = 0; v < ember::gpu::kGemvMmaVariants; ++v)
    print("gemv_mma_fp8_v" + std::to_string(v), graph_us(-3 - v), total);
  for (Weights& w : layers) free_weights(w);
  BENCH_CHECK(cudaFree(x));
  BENCH_CHECK(cudaFree(y));
  BENCH_CHECK(cudaStreamDestroy(stream));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool chain = mode == "--chain";  // the decode_chain lines (alone)
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
  if (mode == "--once") {
    for (const Shape& s : shapes) {
      Weights w = make_weights(s, 2);
      bf16* x = alloc_random(static_cast<size_t>(s.k), 7u, 1.0f);
      bf16* y = nullptr;
      BENCH_CHECK(cudaMalloc(&y, static_cast<size_t>(s.n) * sizeof(bf16)));
      for (int i = 0; i < 2; ++i) require_ok(gemm.linear(x, w.bf16s[i], nullptr, y, false, 1, s.n, s.k, nullptr));
      for (int i = 0; i < 2; ++i)
        require_ok(ember::gpu::gemv_fp8(x, w.codes[i], w.scales[i], nullptr, y, false, 1, s.n, s.k, nullptr));
      for (int i = 0; i < 2; ++i)  // the tensor-core kernel at M = 1 (its dispatch variant), for comparison
        require_ok(ember::gpu::gemv_mma_fp8(x, w.codes[i], w.scales[i], nullptr, y, false, 1, s.n, s.k,
                                            ember::gpu::kGemvMmaFp8DispatchVariant, true, nullptr));
      BENCH_CHECK(cudaDeviceSynchronize());
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(y));
      free_weights(w);
    }
    return 0;
  }
  for (const Shape& s : shapes) {
    if (chain) break;
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
      for (int v = 1; m <= 4 && v < ember::gpu::kGemvFp8Variants; ++v)
        add("gemv_fp8_v" + std::to_string(v), fp8_time([&](const uint8_t* q, const float* sc) {
              return ember::gpu::gemv_fp8(x, q, sc, nullptr, y, false, m, s.n, s.k, nullptr, v);
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
  if (chain) decode_chain(gemm, shapes);
  return 0;
}
