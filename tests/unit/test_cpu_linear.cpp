// CPU linear kernels (kernels/cpu/linear_kernels.h) for every weight DType,
// both ISAs, against a reference built from independent parts: the loader's
// dequantizer (models/formats/gguf.h, itself checked bit-exact against gguf-py) and a
// double-precision matmul. Weight blocks are random bytes with valid fp16
// scales, so every nibble / 6-bit / sign pattern occurs.
//
// Error bound. The kernels' dequantized weights are bit-identical to the
// reference's (the embedding test checks the row dequantizer bit for bit), so
// the only error is float32 summation of the K products plus the bias, in
// whatever order: |y - y_ref| <= gamma_{K+2} * (sum_k |w_k x_k| + |b|), with
// gamma_n = n u / (1 - n u), u = 2^-24 (Higham, Accuracy and Stability, 3.1).
// It is tight enough to catch one wrong weight: that moves y by about
// sum|w x| / K, which exceeds the bound while K^2 u << 1 (K <= 768 here).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/linear_kernels.h"
#include "kernels/quant/quant_blocks.h"
#include "models/formats/gguf.h"

namespace ember {
namespace {

GgmlType ggml_of(DType t) {
  switch (t) {
    case DType::kF32: return GgmlType::kF32;
    case DType::kF16: return GgmlType::kF16;
    case DType::kBF16: return GgmlType::kBF16;
    case DType::kQ8_0: return GgmlType::kQ8_0;
    case DType::kQ4_0: return GgmlType::kQ4_0;
    case DType::kQ4_1: return GgmlType::kQ4_1;
    case DType::kQ4_K: return GgmlType::kQ4_K;
    case DType::kQ6_K: return GgmlType::kQ6_K;
    case DType::kF8E4M3: break;  // (no GGUF type; the CPU kernels never see it)
  }
  return GgmlType::kF32;
}

const char* name_of(DType t) { return ggml_type_name(ggml_of(t)); }

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// A finite fp16 of magnitude in [2^-9, 2^1): realistic scales, never inf/NaN.
uint16_t random_fp16_scale(std::mt19937& rng) {
  const uint16_t sign = static_cast<uint16_t>((rng() & 1u) << 15);
  const uint16_t exp = static_cast<uint16_t>(6 + rng() % 10);
  return static_cast<uint16_t>(sign | (exp << 10) | (rng() & 0x3FFu));
}

// Random weights of `dtype`, shape [n, k], as raw bytes.
std::vector<uint8_t> random_weights(DType dtype, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> w(static_cast<size_t>(n * dtype_row_bytes(dtype, k)));
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  const int64_t bytes = dtype_block_bytes(dtype);
  const int64_t blocks = static_cast<int64_t>(w.size()) / bytes;
  for (int64_t i = 0; i < blocks; ++i) {
    uint8_t* b = w.data() + i * bytes;
    switch (dtype) {
      case DType::kF32: {
        const float v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
        std::memcpy(b, &v, 4);
        break;
      }
      case DType::kF16:  // any finite half, subnormals included
        put_u16(b, static_cast<uint16_t>((rng() & 0x8000u) | ((rng() % 31u) << 10) | (rng() & 0x3FFu)));
        break;
      case DType::kBF16:  // finite, magnitude near 1
        put_u16(b, static_cast<uint16_t>((rng() & 0x8000u) | ((120u + rng() % 10u) << 7) | (rng() & 0x7Fu)));
        break;
      case DType::kQ8_0:
      case DType::kQ4_0: put_u16(b, random_fp16_scale(rng)); break;
      case DType::kQ4_1:
      case DType::kQ4_K:
        put_u16(b, random_fp16_scale(rng));
        put_u16(b + 2, random_fp16_scale(rng));
        break;
      case DType::kQ6_K: put_u16(b + quant::kQ6_KD, random_fp16_scale(rng)); break;
      case DType::kF8E4M3:
        if ((*b & 0x7Fu) == 0x7Fu) *b = 0;  // no NaN
        break;
    }
  }
  return w;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

struct Problem {
  int64_t m, n, k;
  bool with_bias;
  std::vector<float> x, bias, w_f32;  // w_f32: the reference dequantization
  std::vector<uint8_t> w;
  DType dtype;

  LinearArgs args(float* y) const {
    LinearArgs a;
    a.x = x.data(), a.w = w.data(), a.w_dtype = dtype, a.bias = with_bias ? bias.data() : nullptr, a.y = y;
    a.m = m, a.n = n, a.k = k;
    return a;
  }
};

Problem make_problem(DType dtype, int64_t m, int64_t n, int64_t k, bool with_bias, uint32_t seed) {
  Problem p{m, n, k, with_bias, random_floats(m * k, seed), random_floats(n, seed + 1), {}, {}, dtype};
  p.w = random_weights(dtype, n, k, seed + 2);
  p.w_f32.resize(n * k);
  const Status st = dequantize(ggml_of(dtype), p.w.data(), n * k, p.w_f32.data());
  EXPECT_TRUE(st.ok());
  return p;
}

// Largest |y - y_ref| / bound over all outputs (<= 1 passes), with the bound above.
double worst_error_ratio(const Problem& p, const std::vector<float>& y, std::string* where) {
  const double u = std::ldexp(1.0, -24);
  const double n_terms = static_cast<double>(p.k + 2);
  const double gamma = n_terms * u / (1.0 - n_terms * u);
  double worst = 0;
  for (int64_t r = 0; r < p.m; ++r) {
    for (int64_t c = 0; c < p.n; ++c) {
      double ref = p.with_bias ? p.bias[c] : 0.0, mag = std::abs(ref);
      for (int64_t i = 0; i < p.k; ++i) {
        const double t = static_cast<double>(p.w_f32[c * p.k + i]) * p.x[r * p.k + i];
        ref += t;
        mag += std::abs(t);
      }
      const double got = y[r * p.n + c];
      const double ratio = std::isnan(got) ? INFINITY : std::abs(got - ref) / (gamma * mag);
      if (ratio > worst) {
        worst = ratio;
        *where = "y[" + std::to_string(r) + "," + std::to_string(c) + "] = " + std::to_string(got) + ", reference " +
                 std::to_string(ref);
      }
    }
  }
  return worst;
}

void expect_matches_reference(const Problem& p, const std::vector<float>& y, const std::string& what) {
  std::string where;
  const double ratio = worst_error_ratio(p, y, &where);
  EXPECT_LE(ratio, 1.0) << what << ": " << where;
}

struct Shape {
  int64_t n, k;
};

std::vector<Shape> shapes_for(DType dtype) {
  // N: not a multiple of the 4-row tile nor of the 16-row thread group.
  if (dtype == DType::kQ4_K || dtype == DType::kQ6_K) return {{37, 256}, {19, 768}, {1, 512}};
  if (dtype_is_quantized(dtype)) return {{37, 64}, {19, 576}, {1, 32}};
  return {{37, 100}, {19, 576}, {5, 8}, {3, 7}};  // K % 8 != 0 exercises the scalar tail
}

constexpr int64_t kRowCounts[] = {1, 3, 16, 33};
constexpr DType kAllTypes[] = {DType::kF32, DType::kF16,  DType::kBF16, DType::kQ8_0,
                               DType::kQ4_0, DType::kQ4_1, DType::kQ4_K, DType::kQ6_K};

class LinearKernel : public ::testing::TestWithParam<std::tuple<DType, CpuIsa>> {};

TEST_P(LinearKernel, MatchesDequantizeThenDoubleMatmul) {
  const auto [dtype, isa] = GetParam();
  if (isa == CpuIsa::kAvx2 && !cpu_supports_avx2()) GTEST_SKIP() << "this CPU has no AVX2+FMA+F16C";
  uint32_t seed = 1;
  for (const Shape& s : shapes_for(dtype)) {
    for (int64_t m : kRowCounts) {
      const bool with_bias = (seed % 2) == 0;
      const Problem p = make_problem(dtype, m, s.n, s.k, with_bias, seed += 7);
      std::vector<float> y(m * s.n, std::nanf(""));
      // Two ranges, split off a row group boundary, as threads would see them.
      const int64_t split = s.n / 2;
      linear_rows(p.args(y.data()), 0, split, isa);
      linear_rows(p.args(y.data()), split, s.n, isa);
      expect_matches_reference(p, y,
                               std::string(name_of(dtype)) + " M=" + std::to_string(m) + " N=" + std::to_string(s.n) +
                                   " K=" + std::to_string(s.k) + (with_bias ? " bias" : ""));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, LinearKernel,
                         ::testing::Combine(::testing::ValuesIn(kAllTypes),
                                            ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2)),
                         [](const auto& info) {
                           return std::string(name_of(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) == CpuIsa::kAvx2 ? "_avx2" : "_scalar");
                         });

// With x = the identity (M = K rows), y = W^T: each output has one nonzero
// product, so the sum is exact and y must equal the reference dequantization
// bit for bit. This pins the in-register unpacking to ggml's float32
// operations (a fused multiply-add would round differently).
TEST_P(LinearKernel, IdentityInputRecoversWeightsExactly) {
  const auto [dtype, isa] = GetParam();
  if (isa == CpuIsa::kAvx2 && !cpu_supports_avx2()) GTEST_SKIP() << "this CPU has no AVX2+FMA+F16C";
  const int64_t n = 21, k = dtype == DType::kQ4_K || dtype == DType::kQ6_K ? 256 : 72 - 72 % dtype_block_elems(dtype);
  Problem p = make_problem(dtype, k, n, k, false, 4242);
  std::fill(p.x.begin(), p.x.end(), 0.0f);
  for (int64_t i = 0; i < k; ++i) p.x[i * k + i] = 1.0f;
  std::vector<float> y(k * n, std::nanf(""));
  linear_rows(p.args(y.data()), 0, n, isa);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t c = 0; c < n; ++c)
      ASSERT_EQ(y[i * n + c], p.w_f32[c * k + i]) << name_of(dtype) << " weight [" << c << "," << i << "]";
}

// Through the backend: the thread pool splits N over uneven ranges.
TEST(CpuLinear, BackendSplitsRowsOverThreads) {
  CpuBackend be(3);
  for (DType dtype : kAllTypes) {
    const int64_t k = dtype == DType::kQ4_K || dtype == DType::kQ6_K ? 512 : 96;
    for (int64_t m : kRowCounts) {
      const Problem p = make_problem(dtype, m, 101, k, true, static_cast<uint32_t>(m) * 31);
      std::vector<float> y(m * 101, std::nanf(""));
      Tensor x = Tensor::f32(p.x.data(), {m, k}), b = Tensor::f32(p.bias.data(), {101});
      Tensor yt = Tensor::f32(y.data(), {m, 101});
      be.linear(x, Tensor::typed(p.w.data(), dtype, 101, k), &b, yt);
      expect_matches_reference(p, y, std::string("backend ") + name_of(dtype) + " M=" + std::to_string(m));
    }
  }
}

// The kernels' own row dequantizer (used by embedding and the scalar path)
// against the loader's, bit for bit, including any fp16 scale pattern (inf, NaN).
TEST(CpuLinear, EmbeddingDequantizesRowsBitExact) {
  CpuBackend be(2);
  for (DType dtype : kAllTypes) {
    const int64_t v = 9, h = dtype == DType::kQ4_K || dtype == DType::kQ6_K ? 512 : 64;
    std::vector<uint8_t> table(static_cast<size_t>(v * dtype_row_bytes(dtype, h)));
    std::mt19937 rng(static_cast<uint32_t>(dtype) + 5);
    for (auto& b : table) b = static_cast<uint8_t>(rng());
    if (dtype == DType::kF32) table = random_weights(dtype, v, h, 3);  // NaN payloads are not memcpy's problem
    std::vector<float> ref(v * h);
    ASSERT_TRUE(dequantize(ggml_of(dtype), table.data(), v * h, ref.data()).ok());
    const std::vector<int32_t> ids = {4, 0, 8, 4, 2};
    std::vector<float> out(ids.size() * h);
    Tensor o = Tensor::f32(out.data(), {static_cast<int64_t>(ids.size()), h});
    ForwardInputs in;
    in.token_ids = ids;
    be.embedding(Tensor::typed(table.data(), dtype, v, h), in, o);
    for (size_t t = 0; t < ids.size(); ++t)
      ASSERT_EQ(std::memcmp(out.data() + t * h, ref.data() + ids[t] * h, h * sizeof(float)), 0)
          << name_of(dtype) << " token " << ids[t];
  }
}

// The bound is not vacuous: one weight of one row off by 1/16 of the weight
// range is caught (the reference is perturbed; the kernel output is not).
TEST(CpuLinear, BoundDetectsOneWrongWeight) {
  Problem p = make_problem(DType::kQ4_1, 1, 4, 576, false, 99);
  std::vector<float> y(4);
  linear_rows(p.args(y.data()), 0, 4, CpuIsa::kScalar);
  std::string where;
  ASSERT_LE(worst_error_ratio(p, y, &where), 1.0) << where;
  int64_t big = 0;  // the largest |x| so the change shows in y
  for (int64_t i = 0; i < p.k; ++i)
    if (std::abs(p.x[i]) > std::abs(p.x[big])) big = i;
  float lo = p.w_f32[2 * p.k], hi = lo;
  for (int64_t i = 0; i < p.k; ++i) lo = std::min(lo, p.w_f32[2 * p.k + i]), hi = std::max(hi, p.w_f32[2 * p.k + i]);
  p.w_f32[2 * p.k + big] += (hi - lo) / 16;
  EXPECT_GT(worst_error_ratio(p, y, &where), 1.0);
}

}  // namespace
}  // namespace ember
