// The int8-activation linear (kernels/cpu/linear_int8.h), every ISA against
// the scalar reference and both against independent arithmetic:
//  - the activation quantizer: AVX2 bit-identical to the scalar one, and the
//    scalar one to the formula (d = amax / 127, q = x / d rounded half to even);
//  - the kernels: bit-identical to the scalar reference (the order of the
//    float operations is part of the definition), for Q8_0 / Q4_0 / Q4_1 and
//    odd M, N and block counts, over split ranges;
//  - the reference: each block's integer dot computed here in int64 from the
//    loader's dequantized weights, scaled in double: equal within float32
//    rounding of the scaling and the sum;
//  - the whole: within the quantization error of x of the float32 linear.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/linear_int8.h"
#include "kernels/cpu/linear_kernels.h"
#include "kernels/quant/quant_blocks.h"
#include "models/formats/gguf.h"

namespace ember {
namespace {

constexpr DType kTypes[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1};
constexpr CpuIsa kIsas[] = {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512Vnni};

const char* name_of(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    default:
      return "Q4_1";
  }
}

GgmlType ggml_of(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return GgmlType::kQ8_0;
    case DType::kQ4_0:
      return GgmlType::kQ4_0;
    default:
      return GgmlType::kQ4_1;
  }
}

// A finite fp16 of magnitude in [2^-9, 2), either sign.
uint16_t random_fp16_scale(std::mt19937& rng) {
  return static_cast<uint16_t>(((rng() & 1u) << 15) | ((6 + rng() % 10) << 10) | (rng() & 0x3FFu));
}

std::vector<uint8_t> random_weights(DType dtype, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> w(static_cast<size_t>(n * dtype_row_bytes(dtype, k)));
  for (auto& b : w) b = static_cast<uint8_t>(rng());  // every nibble and int8 (-128 included)
  const int64_t bytes = dtype_block_bytes(dtype);
  for (size_t off = 0; off < w.size(); off += static_cast<size_t>(bytes)) {
    for (int s = 0; s < (dtype == DType::kQ4_1 ? 2 : 1); ++s) {
      const uint16_t h = random_fp16_scale(rng);
      std::memcpy(w.data() + off + 2 * s, &h, 2);
    }
  }
  return w;
}

// Activations as a model has them: mostly small, some blocks with an outlier,
// one all-zero block, and values landing exactly on a rounding tie.
std::vector<float> random_x(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = dist(rng);
  for (int64_t i = 0; i < m * k; i += 97) x[i] *= 40.0f;
  if (k >= 64) std::fill_n(x.begin() + 32, 32, 0.0f);
  // A block whose max is 127 makes d = 1 and x * (1/d) = x: ties at .5 and -2.5 round to even.
  if (m * k >= 96) {
    x[64] = 127.0f, x[65] = 0.5f, x[66] = -2.5f, x[67] = 1.5f;
  }
  return x;
}

struct Quantized {
  std::vector<int8_t> q;
  std::vector<float> d, ds;
  std::vector<int32_t> sum;
  Q8Rows rows;
  Quantized(int64_t m, int64_t k)
      : q(static_cast<size_t>(m * k)), d(static_cast<size_t>(m * k / 32)), ds(d.size()), sum(d.size()) {
    rows = Q8Rows{q.data(), d.data(), ds.data(), sum.data(), m, k};
  }
};

bool skip(CpuIsa isa) { return !cpu_supports(isa); }

TEST(LinearInt8, QuantizerFollowsTheFormulaOnEveryIsa) {
  for (int64_t m : {1, 3}) {
    for (int64_t k : {32, 96, 576}) {
      const std::vector<float> x = random_x(m, k, static_cast<uint32_t>(m * k));
      Quantized ref(m, k);
      quantize_rows_q8_scalar(x.data(), 0, m, ref.rows);
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t j = 0; j < k / 32; ++j) {
          const float* xb = x.data() + r * k + j * 32;
          float amax = 0;
          for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(xb[i]));
          const int64_t at = r * (k / 32) + j;
          ASSERT_EQ(ref.d[at], amax / 127.0f);
          int32_t sum = 0;
          for (int i = 0; i < 32; ++i) {
            const int8_t q = ref.q[r * k + j * 32 + i];
            sum += q;
            ASSERT_LE(std::abs(q), 127);
            // Nearest: within half a step of x (and exactly x where d = 1).
            ASSERT_LE(std::abs(static_cast<double>(q) * ref.d[at] - xb[i]), 0.5 * ref.d[at] * (1 + 1e-6));
          }
          ASSERT_EQ(ref.sum[at], sum);
          ASSERT_EQ(ref.ds[at], ref.d[at] * static_cast<float>(sum));
        }
      }
      if (m * k >= 96) {  // the ties: 0.5 -> 0, -2.5 -> -2, 1.5 -> 2
        EXPECT_EQ(ref.q[64], 127);
        EXPECT_EQ(ref.q[65], 0);
        EXPECT_EQ(ref.q[66], -2);
        EXPECT_EQ(ref.q[67], 2);
      }
      if (k >= 64) {
        EXPECT_EQ(ref.d[1], 0.0f);  // the zero block
      }
      for (CpuIsa isa : kIsas) {
        if (skip(isa)) continue;
        Quantized got(m, k);
        quantize_rows_q8(x.data(), 0, m, got.rows, isa);
        EXPECT_EQ(got.q, ref.q) << cpu_isa_name(isa);
        EXPECT_EQ(got.sum, ref.sum) << cpu_isa_name(isa);
        EXPECT_EQ(std::memcmp(got.d.data(), ref.d.data(), ref.d.size() * 4), 0) << cpu_isa_name(isa);
        EXPECT_EQ(std::memcmp(got.ds.data(), ref.ds.data(), ref.ds.size() * 4), 0) << cpu_isa_name(isa);
      }
    }
  }
}

struct Problem {
  DType dtype;
  int64_t m, n, k;
  std::vector<float> x, bias, w_f32;
  std::vector<uint8_t> w;
  Quantized xq;
  Problem(DType t, int64_t m_, int64_t n_, int64_t k_, uint32_t seed)
      : dtype(t), m(m_), n(n_), k(k_), x(random_x(m_, k_, seed)), w_f32(static_cast<size_t>(n_ * k_)), xq(m_, k_) {
    std::mt19937 rng(seed + 1);
    for (int64_t i = 0; i < n; ++i) bias.push_back(std::uniform_real_distribution<float>(-1, 1)(rng));
    w = random_weights(t, n, k, seed + 2);
    EXPECT_TRUE(dequantize(ggml_of(t), w.data(), n * k, w_f32.data()).ok());
    quantize_rows_q8_scalar(x.data(), 0, m, xq.rows);
  }
  Int8LinearArgs args(float* y, bool with_bias) const {
    Int8LinearArgs a;
    a.x = &xq.rows, a.w = w.data(), a.w_dtype = dtype, a.bias = with_bias ? bias.data() : nullptr, a.y = y, a.n = n;
    return a;
  }
  // Computed with ranges split off the thread-group boundaries, as threads see them.
  std::vector<float> run(CpuIsa isa, bool with_bias) const {
    std::vector<float> y(static_cast<size_t>(m * n), std::nanf(""));
    const int64_t split = n / 3;
    linear_int8_rows(args(y.data(), with_bias), 0, split, isa);
    linear_int8_rows(args(y.data(), with_bias), split, n, isa);
    return y;
  }
};

struct Shape {
  int64_t m, n, k;
};
// M: 1 (decode), 2-4 (one tile), 5, 7, 33 (tiles and a remainder); N: odd, not a
// multiple of the 16-row group; K: block counts 1, 3, 5, 7, 18 (576, SmolLM2), 48
// (1536): every remainder of the 4-block step.
constexpr Shape kShapes[] = {{1, 37, 32},  {1, 19, 576}, {2, 5, 96},    {3, 21, 160}, {4, 17, 224},
                             {5, 33, 576}, {7, 3, 1536}, {33, 19, 224}, {1, 1, 1536}, {16, 40, 576}};

class Int8Kernel : public ::testing::TestWithParam<std::tuple<DType, CpuIsa>> {};

TEST_P(Int8Kernel, BitIdenticalToTheScalarReference) {
  const auto [dtype, isa] = GetParam();
  if (skip(isa)) GTEST_SKIP() << "this CPU lacks " << cpu_isa_name(isa);
  uint32_t seed = 10;
  for (const Shape& s : kShapes) {
    const Problem p(dtype, s.m, s.n, s.k, seed += 13);
    const bool with_bias = seed % 2 == 0;
    const std::vector<float> ref = p.run(CpuIsa::kScalar, with_bias), got = p.run(isa, with_bias);
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_EQ(got[i], ref[i]) << name_of(dtype) << " " << cpu_isa_name(isa) << " M=" << s.m << " N=" << s.n
                                << " K=" << s.k << " y[" << i / s.n << "," << i % s.n << "]";
  }
}

// Each row's y is the same alone as in any batch (what a verify step of
// speculative decoding needs to accept exactly the greedy tokens).
TEST_P(Int8Kernel, RowsDoNotDependOnTheBatch) {
  const auto [dtype, isa] = GetParam();
  if (skip(isa)) GTEST_SKIP() << "this CPU lacks " << cpu_isa_name(isa);
  const Problem p(dtype, 7, 29, 576, 77);
  const std::vector<float> all = p.run(isa, true);
  for (int64_t r = 0; r < p.m; ++r) {
    Quantized one(1, p.k);
    quantize_rows_q8(p.x.data() + r * p.k, 0, 1, one.rows, isa);
    Int8LinearArgs a = p.args(nullptr, true);
    std::vector<float> y(static_cast<size_t>(p.n));
    a.x = &one.rows, a.y = y.data();
    linear_int8_rows(a, 0, p.n, isa);
    for (int64_t c = 0; c < p.n; ++c) ASSERT_EQ(y[c], all[r * p.n + c]) << "row " << r << " col " << c;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, Int8Kernel,
                         ::testing::Combine(::testing::ValuesIn(kTypes), ::testing::ValuesIn(kIsas)),
                         [](const auto& info) {
                           return std::string(name_of(std::get<0>(info.param))) + "_" +
                                  cpu_isa_name(std::get<1>(info.param));
                         });

// The reference's float arithmetic against exact integers: block j of row r
// and weight row c contributes dx * sum(w_f32 / dw ... ) -- computed here as
// int64 dots of the quantized x with the weights' integer codes recovered from
// the loader's dequantization, then scaled in double. The float32 kernel may
// differ by the rounding of about 3 operations per block, relative to the
// sum of the terms' magnitudes.
TEST(LinearInt8, ScalarReferenceIsTheIntegerDotScaled) {
  for (DType dtype : kTypes) {
    for (const Shape& s : kShapes) {
      const Problem p(dtype, s.m, s.n, s.k, static_cast<uint32_t>(s.m * 1000 + s.n));
      const std::vector<float> y = p.run(CpuIsa::kScalar, true);
      const int64_t blocks = s.k / 32, bytes = dtype_block_bytes(dtype), row_bytes = dtype_row_bytes(dtype, s.k);
      for (int64_t r = 0; r < s.m; ++r) {
        for (int64_t c = 0; c < s.n; ++c) {
          double ref = p.bias[c], mag = std::abs(ref);
          for (int64_t j = 0; j < blocks; ++j) {
            const uint8_t* b = p.w.data() + c * row_bytes + j * bytes;
            const double dw = quant::load_fp16(b), mw = dtype == DType::kQ4_1 ? quant::load_fp16(b + 2) : 0.0;
            int64_t dot = 0;  // sum of integer weight codes times q, codes recovered as (w - m) / d
            for (int i = 0; i < 32; ++i) {
              const double wf = p.w_f32[c * s.k + j * 32 + i];
              const int64_t code = std::llround((wf - mw) / dw);
              dot += code * p.xq.q[r * s.k + j * 32 + i];
            }
            const int64_t at = r * blocks + j;
            const double term = dw * p.xq.d[at] * static_cast<double>(dot) + mw * p.xq.ds[at];
            ref += term;
            mag += std::abs(dw * p.xq.d[at] * static_cast<double>(dot)) + std::abs(mw * p.xq.ds[at]);
          }
          const double bound = (blocks + 8) * std::ldexp(1.0, -23) * mag;
          ASSERT_LE(std::abs(y[r * s.n + c] - ref), bound)
              << name_of(dtype) << " M=" << s.m << " N=" << s.n << " K=" << s.k << " y[" << r << "," << c << "]";
        }
      }
    }
  }
}

// Against the float32 linear on the unquantized x: each x_i moves by at most
// d/2 of its block, so |y - y_f32| <= sum_j d_j / 2 * sum_i |w_ji| (plus float rounding).
TEST(LinearInt8, WithinTheActivationQuantizationErrorOfTheFloatPath) {
  for (DType dtype : kTypes) {
    const Problem p(dtype, 5, 33, 576, 5);
    const std::vector<float> y = p.run(best_cpu_isa(), false);
    for (int64_t r = 0; r < p.m; ++r) {
      for (int64_t c = 0; c < p.n; ++c) {
        double exact = 0, bound = 0, mag = 0;
        for (int64_t i = 0; i < p.k; ++i) {
          const double w = p.w_f32[c * p.k + i];
          exact += w * p.x[r * p.k + i];
          bound += 0.5 * p.xq.d[r * (p.k / 32) + i / 32] * std::abs(w);
          mag += std::abs(w * p.x[r * p.k + i]);
        }
        bound += 1e-5 * mag;
        ASSERT_LE(std::abs(y[r * p.n + c] - exact), bound) << name_of(dtype) << " y[" << r << "," << c << "]";
      }
    }
  }
}

// Through the backend: kFast sends Q8_0/Q4_0/Q4_1 to the int8 kernels (the
// best ISA, the pool's split) and every other type to the float path unchanged.
TEST(LinearInt8, BackendPrecisionChoosesThePath) {
  CpuBackend fast(3, CpuPrecision::kFast), exact(3);
  const int64_t m = 6, n = 50, k = 256;
  for (DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ4_K, DType::kF32}) {
    std::mt19937 rng(3);
    std::vector<uint8_t> w(static_cast<size_t>(n * dtype_row_bytes(dtype, k)));
    if (dtype == DType::kF32) {
      for (size_t i = 0; i < w.size(); i += 4) {
        const float v = std::uniform_real_distribution<float>(-1, 1)(rng);
        std::memcpy(w.data() + i, &v, 4);
      }
    } else {
      w = int8_linear_supports(dtype) ? random_weights(dtype, n, k, 9) : std::vector<uint8_t>(w.size(), 0x11);
    }
    std::vector<float> x = random_x(m, k, 4), bias(static_cast<size_t>(n), 0.25f);
    std::vector<float> y_fast(static_cast<size_t>(m * n)), y_exact(y_fast.size());
    const Tensor xt = Tensor::f32(x.data(), {m, k}), wt = Tensor::typed(w.data(), dtype, n, k);
    const Tensor bt = Tensor::f32(bias.data(), {n});
    Tensor yf = Tensor::f32(y_fast.data(), {m, n}), ye = Tensor::f32(y_exact.data(), {m, n});
    fast.linear(xt, wt, &bt, yf);
    exact.linear(xt, wt, &bt, ye);
    if (!int8_linear_supports(dtype)) {
      EXPECT_EQ(y_fast, y_exact) << "float path for " << static_cast<int>(dtype);
      continue;
    }
    Quantized xq(m, k);
    quantize_rows_q8_scalar(x.data(), 0, m, xq.rows);
    std::vector<float> ref(y_fast.size());
    Int8LinearArgs a;
    a.x = &xq.rows, a.w = w.data(), a.w_dtype = dtype, a.bias = bias.data(), a.y = ref.data(), a.n = n;
    linear_int8_rows(a, 0, n, CpuIsa::kScalar);
    EXPECT_EQ(y_fast, ref) << name_of(dtype);
    EXPECT_NE(y_fast, y_exact) << name_of(dtype) << ": the int8 path was not taken";
  }
}

}  // namespace
}  // namespace ember
