// CPU linear y = x W^T (kernels/cpu/linear_kernels.h) at SmolLM2-135M shapes:
// gate_up N=1536 K=576 and the tied LM head N=49152 K=576, weights F32 / Q8_0 /
// Q4_1 (random blocks, valid fp16 scales), M = 1 (decode) and 16 (batched).
// Counters: W_bytes/s = weight bytes streamed per second (the decode roofline
// is the machine's read bandwidth, measured here by bm_read_bandwidth);
// FLOP/s = 2 M N K per second (the FMA ceiling is cores x 2 FMA x 8 lanes x 2
// x clock); us/row = time per row of x. "naive_f32" is the pre-kernel CpuBackend::linear (8-accumulator
// scalar dot over f32 weights, 8-row blocks over the pool) for reference. "int8" rows run the same shapes
// with 8-bit activations (CpuPrecision::kFast, linear_int8.h; quantizing x included), beside the
// float32-activation rows of the same run.
// All run on EMBER_BENCH_THREADS threads (default: one per hardware thread).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/linear_kernels.h"

namespace {

using ember::DType;

int bench_threads() {
  const char* env = std::getenv("EMBER_BENCH_THREADS");
  return env ? std::atoi(env) : 0;
}

std::vector<uint8_t> random_weights(DType dtype, int64_t n, int64_t k) {
  std::mt19937 rng(7);
  std::vector<uint8_t> w(static_cast<size_t>(n * ember::dtype_row_bytes(dtype, k)));
  if (dtype == DType::kF32) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (size_t i = 0; i < w.size(); i += 4) {
      const float v = dist(rng);
      std::memcpy(w.data() + i, &v, 4);
    }
    return w;
  }
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  const int64_t bytes = ember::dtype_block_bytes(dtype);
  const int scales = dtype == DType::kQ4_1 ? 2 : 1;  // Q4_1: d and m; Q8_0: d
  for (size_t off = 0; off < w.size(); off += bytes)
    for (int s = 0; s < scales; ++s) {
      const uint16_t h = static_cast<uint16_t>(((6 + rng() % 10) << 10) | (rng() & 0x3FF));  // in [2^-9, 2)
      std::memcpy(w.data() + off + 2 * s, &h, 2);
    }
  return w;
}

std::vector<float> random_x(int64_t m, int64_t k) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(m * k);
  for (auto& v : x) v = dist(rng);
  return x;
}

void set_counters(benchmark::State& state, int64_t m, int64_t n, int64_t k, DType dtype) {
  const double iters = static_cast<double>(state.iterations());
  const double w_bytes = static_cast<double>(n * ember::dtype_row_bytes(dtype, k));
  state.counters["W_bytes/s"] = benchmark::Counter(w_bytes * iters, benchmark::Counter::kIsRate);
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * m * n * k * iters, benchmark::Counter::kIsRate);
  state.counters["us/row"] = benchmark::Counter(iters * m, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ember's kernels through the backend (isa: the best this CPU has).
void bm_linear_with(benchmark::State& state, ember::CpuBackend& backend, DType dtype, int64_t n, int64_t k) {
  const int64_t m = state.range(0);
  const auto w = random_weights(dtype, n, k);
  auto x = random_x(m, k);
  std::vector<float> y(m * n);
  ember::Tensor xt = ember::Tensor::f32(x.data(), {m, k}), yt = ember::Tensor::f32(y.data(), {m, n});
  const ember::Tensor wt = ember::Tensor::typed(w.data(), dtype, n, k);
  for (auto _ : state) {
    backend.linear(xt, wt, nullptr, yt);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, m, n, k, dtype);
  state.SetLabel(ember::cpu_isa_name(ember::best_cpu_isa()));
}

void bm_linear(benchmark::State& state, DType dtype, int64_t n, int64_t k) {
  static ember::CpuBackend backend(bench_threads());
  bm_linear_with(state, backend, dtype, n, k);
}

void bm_linear_int8(benchmark::State& state, DType dtype, int64_t n, int64_t k) {
  static ember::CpuBackend backend(bench_threads(), ember::CpuPrecision::kFast);
  bm_linear_with(state, backend, dtype, n, k);
}

// The CpuBackend::linear this replaces, verbatim in substance.
float naive_dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void bm_naive_f32(benchmark::State& state, int64_t n, int64_t k) {
  const int64_t m = state.range(0);
  static ember::ThreadPool pool(bench_threads());
  const auto wb = random_weights(DType::kF32, n, k);
  const float* wd = reinterpret_cast<const float*>(wb.data());
  auto x = random_x(m, k);
  std::vector<float> y(m * n);
  constexpr int64_t kRowBlock = 8;
  for (auto _ : state) {
    pool.parallel_for((n + kRowBlock - 1) / kRowBlock, [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t n0 = blk * kRowBlock, n1 = std::min(n, n0 + kRowBlock);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t c = n0; c < n1; ++c) y[r * n + c] = naive_dot(x.data() + r * k, wd + c * k, k);
      }
    });
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, m, n, k, DType::kF32);
}

// The decode ceiling: summing a 256 MiB buffer on every hardware thread.
void bm_read_bandwidth(benchmark::State& state) {
  static ember::ThreadPool pool(bench_threads());
  const int64_t n = int64_t{64} << 20;
  std::vector<float> buf(n, 1.0f);
  std::vector<float> sums(64);
  for (auto _ : state) {
    pool.parallel_for(n / 4096, [&](int64_t begin, int64_t end) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = begin * 4096; i < end * 4096; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += buf[i + j];
      sums[begin % 64] = acc[0] + acc[7];
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["bytes/s"] = benchmark::Counter(4.0 * n * state.iterations(), benchmark::Counter::kIsRate);
}

constexpr int64_t kGateUpN = 1536, kHeadN = 49152, kHidden = 576;
constexpr auto kUs = benchmark::kMicrosecond;

BENCHMARK(bm_read_bandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(bm_naive_f32, gate_up, kGateUpN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear, gate_up_f32, DType::kF32, kGateUpN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear, gate_up_q8_0, DType::kQ8_0, kGateUpN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear, gate_up_q4_1, DType::kQ4_1, kGateUpN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear_int8, gate_up_q8_0, DType::kQ8_0, kGateUpN, kHidden)
    ->Arg(1)
    ->Arg(16)
    ->Unit(kUs)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_linear_int8, gate_up_q4_1, DType::kQ4_1, kGateUpN, kHidden)
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->Unit(kUs)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_linear, gate_up_q4_1, DType::kQ4_1, kGateUpN, kHidden)->Arg(64)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_naive_f32, head, kHeadN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear, head_f32, DType::kF32, kHeadN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear, head_q8_0, DType::kQ8_0, kHeadN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear, head_q4_1, DType::kQ4_1, kHeadN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear_int8, head_q8_0, DType::kQ8_0, kHeadN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();
BENCHMARK_CAPTURE(bm_linear_int8, head_q4_1, DType::kQ4_1, kHeadN, kHidden)->Arg(1)->Arg(16)->Unit(kUs)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
