// FP8 E4M3 on the GPU (kernels/cuda/fp8.h, Gemm::linear_fp8) against the host
// reference of kernels/quant/fp8.h: the quantizer bit for bit (codes and
// scales), the FP8 linear layers against a float64 sum over the same codes
// and scales. Runs only on a GPU machine of compute capability 8.9+.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <tuple>

#include "kernels/backend.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "kernels/quant/fp8.h"
#include "tests/gpu/ops_test_util.h"

namespace ember {
namespace {

using gputest::bf16;
using gputest::DeviceBuffer;

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void require_fp8() {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8 (compute capability < 8.9)";
}

struct Quantized {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};

Quantized host_quantize(const std::vector<float>& x, int rows, int cols) {
  Quantized q{std::vector<uint8_t>(static_cast<size_t>(rows) * cols), std::vector<float>(static_cast<size_t>(rows))};
  for (int r = 0; r < rows; ++r)
    q.scales[static_cast<size_t>(r)] = quant::quantize_row_fp8_e4m3(
        x.data() + static_cast<size_t>(r) * cols, cols, q.codes.data() + static_cast<size_t>(r) * cols);
  return q;
}

Quantized device_quantize(const std::vector<bf16>& x, int rows, int cols) {
  DeviceBuffer<bf16> d_x(x.size());
  DeviceBuffer<uint8_t> d_q(x.size());
  DeviceBuffer<float> d_s(static_cast<size_t>(rows));
  d_x.upload(x);
  d_q.poison();
  d_s.poison();
  const Status s = gpu::quantize_rows_fp8(d_x.get(), rows, cols, d_q.get(), d_s.get(), nullptr);
  EXPECT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {d_q.download(), d_s.download()};
}

void expect_same_bits(const Quantized& got, const Quantized& want) {
  ASSERT_EQ(got.codes.size(), want.codes.size());
  size_t code_diffs = 0, first = 0;
  for (size_t i = 0; i < got.codes.size(); ++i)
    if (got.codes[i] != want.codes[i] && code_diffs++ == 0) first = i;
  EXPECT_EQ(code_diffs, 0u) << "first at " << first << ": gpu " << int(got.codes[first]) << " host "
                            << int(want.codes[first]);
  for (size_t r = 0; r < got.scales.size(); ++r)
    EXPECT_EQ(float_bits(got.scales[r]), float_bits(want.scales[r])) << "row " << r;
}

// Rows of many magnitudes (and an all-zero row, and one dominated by a single
// value), cols not a multiple of the block's 256 threads x 8.
TEST(Fp8Gpu, QuantizerMatchesTheHostReferenceBitForBit) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(1);
  const int rows = 12, cols = 4104;
  std::vector<float> f;
  std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(rows) * cols, rng, f);
  const float magnitude[rows] = {1e-6f, 1e-3f, 0.02f, 1.0f, 3.0f, 100.0f, 448.0f, 1e4f, 3e5f, 1.0f, 0.0f, 1.0f};
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r) * cols + c;
      x[i] = gputest::to_bf16(f[i] * magnitude[r]);
      f[i] = gputest::to_float(x[i]);
    }
  x[static_cast<size_t>(11) * cols + 7] = gputest::to_bf16(5e4f);  // one outlier: most codes subnormal
  f[static_cast<size_t>(11) * cols + 7] = gputest::to_float(x[static_cast<size_t>(11) * cols + 7]);
  expect_same_bits(device_quantize(x, rows, cols), host_quantize(f, rows, cols));
}

// A row whose amax is 448 has scale 1, so its codes are the conversion of
// the values themselves: every e4m3 value, every midpoint between
// neighbours (ties to even), values just off the midpoints, and values past
// 448 (saturation; here -448 .. 448 plus the amax). All are bf16-exact.
TEST(Fp8Gpu, ConversionRoundsToNearestEvenLikeTheHost) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::vector<float> values = {448.0f};
  for (int c = 0; c < 126; ++c) {
    const float a = quant::fp8_e4m3_to_float(static_cast<uint8_t>(c));
    const float b = quant::fp8_e4m3_to_float(static_cast<uint8_t>(c + 1));
    const float mid = a + (b - a) / 2;
    for (float v : {a, mid, std::nextafter(mid, a), std::nextafter(mid, b), b}) {
      values.push_back(v);
      values.push_back(-v);
    }
  }
  std::vector<bf16> x;
  std::vector<float> f;
  for (float v : values) {
    const bf16 b = gputest::to_bf16(v);  // (off-midpoint values round to bf16; still within the codes' span)
    x.push_back(b);
    f.push_back(gputest::to_float(b));
  }
  while (x.size() % 8 != 0) {
    x.push_back(gputest::to_bf16(0.0f));
    f.push_back(0.0f);
  }
  const int cols = static_cast<int>(x.size());
  const Quantized host = host_quantize(f, 1, cols);
  ASSERT_EQ(float_bits(host.scales[0]), float_bits(1.0f));
  expect_same_bits(device_quantize(x, 1, cols), host);
}

// y[m, n] = sum_k x[m, k] * w[n, k] in float64, w dequantized from the codes.
std::vector<double> reference(const std::vector<float>& x, const Quantized& w, int m, int n, int k,
                              const Quantized* xq) {
  std::vector<double> ref(static_cast<size_t>(m) * n);
  for (int row = 0; row < m; ++row)
    for (int col = 0; col < n; ++col) {
      double acc = 0;
      for (int i = 0; i < k; ++i) {
        const double wv = quant::fp8_e4m3_to_float(w.codes[static_cast<size_t>(col) * k + i]);
        const double xv = xq ? quant::fp8_e4m3_to_float(xq->codes[static_cast<size_t>(row) * k + i])
                             : x[static_cast<size_t>(row) * k + i];
        acc += xv * wv;
      }
      ref[static_cast<size_t>(row) * n + col] = acc * w.scales[static_cast<size_t>(col)] *
                                                (xq ? xq->scales[static_cast<size_t>(row)] : 1.0);
    }
  return ref;
}

enum class Path { kDispatch, kGemv, kMma, kCublasLt };

// Both output types, with and without bias. The small-M kernel keeps x in
// bf16 (W8A16); cuBLASLt's path quantizes x per row first (W8A8): each is
// checked against the reference of what it computes.
void check_fp8_shape(gpu::Gemm& gemm, int m, int n, int k, Path path, std::mt19937& rng, int variant_of_mma = 0,
                     double f32_rel_l2 = 1e-4, double f32_worst = 1e-3) {
  SCOPED_TRACE(testing::Message() << "M=" << m << " N=" << n << " K=" << k << " path=" << static_cast<int>(path)
                                  << " mma variant=" << variant_of_mma);
  std::vector<float> x_f, w_f, bias(static_cast<size_t>(n));
  const std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(m) * k, rng, x_f);
  gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
  const Quantized w = host_quantize(w_f, n, k);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (float& b : bias) b = g(rng);
  const bool quantized_x = path == Path::kCublasLt || (path == Path::kDispatch && m > gpu::kGemvMmaFp8DispatchMaxM);
  const Quantized xq = host_quantize(x_f, m, k);
  const std::vector<double> ref = reference(x_f, w, m, n, k, quantized_x ? &xq : nullptr);

  DeviceBuffer<bf16> d_x(x.size());
  DeviceBuffer<uint8_t> d_w(w.codes.size());
  DeviceBuffer<float> d_ws(w.scales.size()), d_bias(bias.size()), d_y32(static_cast<size_t>(m) * n);
  DeviceBuffer<bf16> d_y16(static_cast<size_t>(m) * n);
  d_x.upload(x);
  d_w.upload(w.codes);
  d_ws.upload(w.scales);
  d_bias.upload(bias);
  for (int variant = 0; variant < 4; ++variant) {
    const bool with_bias = variant & 1, f32_out = variant & 2;
    d_y32.poison();
    d_y16.poison();
    void* y = f32_out ? static_cast<void*>(d_y32.get()) : static_cast<void*>(d_y16.get());
    const float* b = with_bias ? d_bias.get() : nullptr;
    const Status s =
        path == Path::kGemv ? gpu::gemv_fp8(d_x.get(), d_w.get(), d_ws.get(), b, y, f32_out, m, n, k, nullptr)
        : path == Path::kMma
            ? gpu::gemv_mma_fp8(d_x.get(), d_w.get(), d_ws.get(), b, y, f32_out, m, n, k, variant_of_mma, true, nullptr)
        : path == Path::kCublasLt
            ? gemm.linear_fp8_cublaslt(d_x.get(), d_w.get(), d_ws.get(), b, y, f32_out, m, n, k, nullptr)
            : gemm.linear_fp8(d_x.get(), d_w.get(), d_ws.get(), b, y, f32_out, m, n, k, nullptr);
    ASSERT_TRUE(s.ok()) << s.error().message;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<double> want = ref;
    if (with_bias)
      for (size_t i = 0; i < want.size(); ++i) want[i] += bias[i % static_cast<size_t>(n)];
    const std::vector<float> got = f32_out ? d_y32.download() : gputest::to_floats(d_y16.download());
    const auto e = gputest::compare(got, want);
    EXPECT_EQ(e.non_finite, 0) << "bias=" << with_bias << " f32=" << f32_out;
    // float32 outputs carry only the accumulation's error; bf16 its rounding (~2e-3).
    EXPECT_LT(e.rel_l2, f32_out ? f32_rel_l2 : 1e-2) << "bias=" << with_bias << " f32=" << f32_out;
    EXPECT_LT(e.worst_rel, f32_out ? f32_worst : 0.05) << "bias=" << with_bias << " f32=" << f32_out;
    if (f32_out && with_bias && m == 257 && k == 4096)
      std::printf("fp8 gemm M=%d N=%d K=%d: rel_l2 %.3g worst_rel %.3g\n", m, n, k, e.rel_l2, e.worst_rel);
  }
}

std::unique_ptr<gpu::Gemm> make_gemm() {
  auto g = gpu::Gemm::create();
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message);
  return g.ok() ? std::move(g.value()) : nullptr;
}

// rms_norm_fp8 and silu_mul_fp8 write, bit for bit, what rms_norm (residual
// too) and silu_mul then quantize_rows_fp8 give, at every vector count a
// thread of their kernels takes.
TEST(Fp8Gpu, FusedNormAndSiluQuantizeLikeTheQuantizer) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(16);
  for (int rows : {1, 7, 130})
    for (int h : {64, 2048, 4096, 8192, 14336}) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " width " << h);
      std::vector<float> f;
      const std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(rows) * h, rng, f);
      const std::vector<bf16> res = gputest::random_bf16(static_cast<size_t>(rows) * h, rng, f);
      const std::vector<bf16> gu = gputest::random_bf16(static_cast<size_t>(rows) * 2 * h, rng, f, 4.0f);
      std::vector<float> weight(static_cast<size_t>(h));
      std::normal_distribution<float> g(1.0f, 0.3f);
      for (float& v : weight) v = g(rng);
      DeviceBuffer<bf16> d_x(x.size()), d_r1(res.size()), d_r2(res.size()), d_out(x.size()), d_gu(gu.size()),
          d_act(x.size());
      DeviceBuffer<float> d_w(weight.size()), d_s1(rows), d_s2(rows);
      DeviceBuffer<uint8_t> d_q1(x.size()), d_q2(x.size());
      d_x.upload(x);
      d_gu.upload(gu);
      d_w.upload(weight);
      for (bool with_residual : {false, true}) {
        d_r1.upload(res);
        d_r2.upload(res);
        d_q1.poison();
        d_q2.poison();
        bf16* r1 = with_residual ? d_r1.get() : nullptr;
        bf16* r2 = with_residual ? d_r2.get() : nullptr;
        ASSERT_TRUE(gpu::rms_norm(d_x.get(), r1, d_w.get(), 1e-5f, rows, h, d_out.get(), nullptr).ok());
        ASSERT_TRUE(gpu::quantize_rows_fp8(d_out.get(), rows, h, d_q1.get(), d_s1.get(), nullptr).ok());
        const Status st = gpu::rms_norm_fp8(d_x.get(), r2, d_w.get(), 1e-5f, rows, h, d_q2.get(), d_s2.get(), nullptr);
        ASSERT_TRUE(st.ok()) << st.error().message;
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        expect_same_bits({d_q2.download(), d_s2.download()}, {d_q1.download(), d_s1.download()});
        if (with_residual) {
          const std::vector<bf16> a = d_r1.download(), b = d_r2.download();
          EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)), 0) << "the residual sum";
        }
      }
      d_q1.poison();
      d_q2.poison();
      ASSERT_TRUE(gpu::silu_mul(d_gu.get(), rows, h, d_act.get(), nullptr).ok());
      ASSERT_TRUE(gpu::quantize_rows_fp8(d_act.get(), rows, h, d_q1.get(), d_s1.get(), nullptr).ok());
      const Status st = gpu::silu_mul_fp8(d_gu.get(), rows, h, d_q2.get(), d_s2.get(), nullptr);
      ASSERT_TRUE(st.ok()) << st.error().message;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      expect_same_bits({d_q2.download(), d_s2.download()}, {d_q1.download(), d_s1.download()});
    }
}

// An FP8 GEMM's raw product of codes [rows, cols] (large: sums of up to K
// products of |code| <= 448) with random token (x) and channel (w) scales,
// on the device as it is (`raw`) and as its scale pass leaves it (`scaled`,
// scale_fp8_output_inplace): what the fused readers must reproduce.
struct RawProduct {
  RawProduct(int rows, int cols, std::mt19937& rng, std::uniform_real_distribution<float> x_sc,
             std::uniform_real_distribution<float> w_sc)
      : raw(static_cast<size_t>(rows) * cols),
        scaled(static_cast<size_t>(rows) * cols),
        xs(static_cast<size_t>(rows)),
        ws(static_cast<size_t>(cols)) {
    std::vector<float> f, x(static_cast<size_t>(rows)), w(static_cast<size_t>(cols));
    const std::vector<bf16> host = gputest::random_bf16(static_cast<size_t>(rows) * cols, rng, f, 3000.0f);
    for (float& v : x) v = x_sc(rng);
    for (float& v : w) v = w_sc(rng);
    raw.upload(host);
    scaled.upload(host);
    xs.upload(x);
    ws.upload(w);
    EXPECT_TRUE(gpu::scale_fp8_output_inplace(scaled.get(), xs.get(), ws.get(), nullptr, rows, cols, nullptr).ok());
  }
  DeviceBuffer<bf16> raw, scaled;
  DeviceBuffer<float> xs, ws;
};

// silu_mul_fp8 over gate/up's raw product of codes with the GEMM's scales
// (x's a row, w's a column) writes, bit for bit, what the scale pass
// (scale_fp8_output_inplace) then silu_mul_fp8 write; and through the GEMM:
// Gemm::linear_fp8_quantized_unscaled then the scaled SiLU, what
// linear_fp8_quantized then silu_mul_fp8 write, where it takes that path.
TEST(Fp8Gpu, SiluMulAppliesTheGemmScalesLikeTheScalePass) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> sc(1e-4f, 3e-3f);
  for (int rows : {1, 7, 130})
    for (int inter : {64, 2048, 14336}) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " inter " << inter);
      const RawProduct prod(rows, 2 * inter, rng, sc, sc);
      DeviceBuffer<float> d_s1(static_cast<size_t>(rows)), d_s2(static_cast<size_t>(rows));
      DeviceBuffer<uint8_t> d_q1(static_cast<size_t>(rows) * inter), d_q2(static_cast<size_t>(rows) * inter);
      d_q1.poison();
      d_q2.poison();
      ASSERT_TRUE(gpu::silu_mul_fp8(prod.scaled.get(), rows, inter, d_q1.get(), d_s1.get(), nullptr).ok());
      const Status st =
          gpu::silu_mul_fp8(prod.raw.get(), rows, inter, d_q2.get(), d_s2.get(), nullptr, prod.xs.get(), prod.ws.get());
      ASSERT_TRUE(st.ok()) << st.error().message;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      expect_same_bits({d_q2.download(), d_s2.download()}, {d_q1.download(), d_s1.download()});
    }
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  for (int m : {1, 48, 240, 1000}) {
    const int k = 512, inter = 1024;
    SCOPED_TRACE(testing::Message() << "through the GEMM, M " << m);
    std::vector<float> x_f, w_f;
    gputest::random_bf16(static_cast<size_t>(m) * k, rng, x_f);
    gputest::random_bf16(static_cast<size_t>(2 * inter) * k, rng, w_f, 0.05f);
    const Quantized xq = host_quantize(x_f, m, k), w = host_quantize(w_f, 2 * inter, k);
    DeviceBuffer<uint8_t> d_x(xq.codes.size()), d_w(w.codes.size()), d_q1(static_cast<size_t>(m) * inter),
        d_q2(static_cast<size_t>(m) * inter);
    DeviceBuffer<float> d_xs(xq.scales.size()), d_ws(w.scales.size()), d_s1(xq.scales.size()), d_s2(xq.scales.size());
    DeviceBuffer<bf16> d_gu1(static_cast<size_t>(m) * 2 * inter), d_gu2(static_cast<size_t>(m) * 2 * inter);
    d_x.upload(xq.codes);
    d_w.upload(w.codes);
    d_xs.upload(xq.scales);
    d_ws.upload(w.scales);
    d_q1.poison();
    d_q2.poison();
    ASSERT_TRUE(gemm->linear_fp8_quantized(d_x.get(), d_xs.get(), d_w.get(), d_ws.get(), nullptr, d_gu1.get(), false, m,
                                           2 * inter, k, nullptr)
                    .ok());
    ASSERT_TRUE(gpu::silu_mul_fp8(d_gu1.get(), m, inter, d_q1.get(), d_s1.get(), nullptr).ok());
    Result<bool> raw = gemm->linear_fp8_quantized_unscaled(d_x.get(), d_w.get(), d_gu2.get(), m, 2 * inter, k, nullptr);
    ASSERT_TRUE(raw.ok()) << raw.error().message;
    // The unscaled GEMM runs exactly where linear_fp8 takes cuBLASLt's path and applies the scales in a pass.
    const std::string path = gemm->fp8_path(m, 2 * inter, k);
    EXPECT_EQ(*raw, path == "cublaslt bf16 + in-place scale pass") << path;
    if (!*raw) continue;
    ASSERT_TRUE(gpu::silu_mul_fp8(d_gu2.get(), m, inter, d_q2.get(), d_s2.get(), nullptr, d_xs.get(), d_ws.get()).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_same_bits({d_q2.download(), d_s2.download()}, {d_q1.download(), d_s1.download()});
  }
}

// rms_norm and rms_norm_fp8 over an FP8 GEMM's raw product with its scales
// write, bit for bit, what the scale pass then the norm write (the residual
// sum included): o_proj's and down_proj's scales applied by the next norm.
TEST(Fp8Gpu, NormsApplyTheGemmScalesLikeTheScalePass) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(19);
  std::uniform_real_distribution<float> sc(1e-4f, 3e-3f);
  for (int rows : {1, 7, 130})
    for (int h : {64, 2048, 4096, 8192}) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " width " << h);
      const RawProduct prod(rows, h, rng, sc, sc);  // (the norms read x only: it serves both outputs)
      std::vector<float> f;
      const std::vector<bf16> res = gputest::random_bf16(static_cast<size_t>(rows) * h, rng, f);
      std::vector<float> weight(static_cast<size_t>(h));
      std::normal_distribution<float> g(1.0f, 0.3f);
      for (float& v : weight) v = g(rng);
      DeviceBuffer<bf16> d_r1(res.size()), d_r2(res.size()), d_o1(res.size()), d_o2(res.size());
      DeviceBuffer<float> d_w(weight.size()), d_s1(static_cast<size_t>(rows)), d_s2(static_cast<size_t>(rows));
      DeviceBuffer<uint8_t> d_q1(res.size()), d_q2(res.size());
      d_w.upload(weight);
      for (bool fp8_out : {false, true}) {
        d_r1.upload(res);
        d_r2.upload(res);
        d_q1.poison();
        d_q2.poison();
        d_o1.poison();
        d_o2.poison();
        Status a = Status::success(), b = Status::success();
        if (fp8_out) {
          a = gpu::rms_norm_fp8(prod.scaled.get(), d_r1.get(), d_w.get(), 1e-5f, rows, h, d_q1.get(), d_s1.get(), nullptr);
          b = gpu::rms_norm_fp8(prod.raw.get(), d_r2.get(), d_w.get(), 1e-5f, rows, h, d_q2.get(), d_s2.get(), nullptr,
                                prod.xs.get(), prod.ws.get());
        } else {
          a = gpu::rms_norm(prod.scaled.get(), d_r1.get(), d_w.get(), 1e-5f, rows, h, d_o1.get(), nullptr);
          b = gpu::rms_norm(prod.raw.get(), d_r2.get(), d_w.get(), 1e-5f, rows, h, d_o2.get(), nullptr, prod.xs.get(),
                            prod.ws.get());
        }
        ASSERT_TRUE(a.ok()) << a.error().message;
        ASSERT_TRUE(b.ok()) << b.error().message;
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        if (fp8_out) {
          expect_same_bits({d_q2.download(), d_s2.download()}, {d_q1.download(), d_s1.download()});
        } else {
          const std::vector<bf16> o1 = d_o1.download(), o2 = d_o2.download();
          EXPECT_EQ(std::memcmp(o1.data(), o2.data(), o1.size() * sizeof(bf16)), 0) << "the norm's output";
        }
        const std::vector<bf16> r1 = d_r1.download(), r2 = d_r2.download();
        EXPECT_EQ(std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(bf16)), 0) << "the residual sum, fp8 " << fp8_out;
      }
    }
}

// Where a rope and cache write goes: rotated q, and a bf16 and an FP8 cache
// (k and v) of `cache_elems` each, every byte poisoned before a write.
struct RopeTargets {
  RopeTargets(size_t q_elems, size_t cache_elems)
      : q(q_elems), k(cache_elems), v(cache_elems), k8(cache_elems), v8(cache_elems) {}
  void poison() {
    for (auto* b : {&q, &k, &v}) b->poison();
    for (auto* b : {&k8, &v8}) b->poison();
  }
  gpu::Fp8KvCache fp8(const float* kv_scales) const { return {k8.get(), v8.get(), kv_scales, kv_scales + 1}; }
  DeviceBuffer<bf16> q, k, v;
  DeviceBuffer<uint8_t> k8, v8;
};

// The GEMV rope epilogue's outputs into t: the cache of the type asked for
// (kv_scales: k's and v's scales, for the FP8 cache).
gpu::GemvRopeWrite rope_write_into(RopeTargets& t, const int32_t* positions, const int64_t* slots,
                                   const float* inv_freq, int hq, int hkv, int d, bool fp8_cache,
                                   const float* kv_scales) {
  gpu::GemvRopeWrite o;
  o.q_out = t.q.get();
  o.positions = positions;
  o.slots = slots;
  o.inv_freq = inv_freq;
  o.hq = hq;
  o.hkv = hkv;
  o.d = d;
  o.fp8_cache = fp8_cache;
  o.k_cache = fp8_cache ? static_cast<void*>(t.k8.get()) : static_cast<void*>(t.k.get());
  o.v_cache = fp8_cache ? static_cast<void*>(t.v8.get()) : static_cast<void*>(t.v.get());
  if (fp8_cache) {
    o.k_scale = kv_scales;
    o.v_scale = kv_scales + 1;
  }
  return o;
}

// Two rope writes, bit for bit: rotated q (its first q_elems, all written and
// finite) and the caches of the type written (slots left alone stay poison).
void expect_same_rope_writes(const RopeTargets& a, const RopeTargets& b, size_t q_elems, bool fp8_cache) {
  const auto same = [](const auto& x, const auto& y, const char* what) {
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])), 0) << what;
  };
  std::vector<bf16> qa = a.q.download(), qb = b.q.download();
  qa.resize(q_elems);
  qb.resize(q_elems);
  for (bf16 v : qa) ASSERT_TRUE(std::isfinite(gputest::to_float(v))) << "rotated q unwritten or not finite";
  same(qa, qb, "rotated q");
  if (fp8_cache) {
    same(a.k8.download(), b.k8.download(), "k cache codes");
    same(a.v8.download(), b.v8.download(), "v cache codes");
  } else {
    same(a.k.download(), b.k.download(), "k cache");
    same(a.v.download(), b.v.download(), "v cache");
  }
}

// The fused q/k/v projection's raw product (codes' sums) scaled by the rope
// as it reads it (QkvRows' scales) gives, bit for bit, rotated q, the k cache
// and the v cache that the scale pass and then the rope give: both cache
// types, head sizes on the vector path (128) and off it (72), padding tokens.
TEST(Fp8Gpu, RopeAppliesTheGemmScalesLikeTheScalePass) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> x_sc(0.01f, 0.1f), w_sc(1e-4f, 3e-3f);
  struct Case {
    int t, hq, hkv, d;
  };
  for (const Case c : {Case{9, 8, 2, 128}, Case{130, 32, 8, 128}, Case{6, 4, 2, 72}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.t << " heads " << c.hq << "/" << c.hkv << " D " << c.d);
    const int64_t qd = int64_t{c.hq} * c.d, row = int64_t{c.hkv} * c.d, width = qd + 2 * row, slots = 2 * c.t;
    ASSERT_EQ(width % 8, 0);
    const RawProduct prod(c.t, static_cast<int>(width), rng, x_sc, w_sc);
    std::vector<int32_t> positions(static_cast<size_t>(c.t));
    std::uniform_int_distribution<int32_t> pos(0, 32768);
    for (auto& p : positions) p = pos(rng);
    std::vector<int64_t> slot_mapping(static_cast<size_t>(c.t));
    for (int64_t i = 0; i < c.t; ++i) slot_mapping[static_cast<size_t>(i)] = i % 4 == 3 ? -1 : 2 * i;  // padding too
    RopeConfig rope;
    rope.theta = 500000.0;
    const std::vector<float> inv_freq = rope_inv_freq(rope, c.d);
    RopeTargets t1(static_cast<size_t>(c.t * qd), static_cast<size_t>(slots * row)),
        t2(static_cast<size_t>(c.t * qd), static_cast<size_t>(slots * row));
    DeviceBuffer<float> d_inv(inv_freq.size()), d_kv_scales(2);
    DeviceBuffer<int32_t> d_pos(positions.size());
    DeviceBuffer<int64_t> d_slots(slot_mapping.size());
    d_inv.upload(inv_freq);
    d_kv_scales.upload({0.05f, 0.02f});
    d_pos.upload(positions);
    d_slots.upload(slot_mapping);
    const auto rows_of = [&](const bf16* base, bf16* q_out, bool scaled) {
      gpu::QkvRows r = gputest::fused_qkv_rows(base, q_out, qd, row);
      if (scaled) {
        r.x_scale = prod.xs.get();
        r.q_w_scale = prod.ws.get();
        r.k_w_scale = prod.ws.get() + qd;
        r.v_w_scale = prod.ws.get() + qd + row;
      }
      return r;
    };
    // The scale pass then the rope into t1, the rope scaling as it reads into t2.
    const auto write = [&](const gpu::QkvRows& rows, RopeTargets& t, bool fp8_cache) {
      return fp8_cache ? gpu::rope_qkv_and_cache_write(rows, d_pos.get(), d_slots.get(), d_inv.get(), c.t, c.hq,
                                                       c.hkv, c.d, t.fp8(d_kv_scales.get()), nullptr)
                       : gpu::rope_qkv_and_cache_write(rows, d_pos.get(), d_slots.get(), d_inv.get(), c.t, c.hq,
                                                       c.hkv, c.d, t.k.get(), t.v.get(), nullptr);
    };
    for (bool fp8_cache : {false, true}) {
      SCOPED_TRACE(fp8_cache ? "fp8 cache" : "bf16 cache");
      t1.poison();
      t2.poison();
      const Status a = write(rows_of(prod.scaled.get(), t1.q.get(), false), t1, fp8_cache);
      const Status b = write(rows_of(prod.raw.get(), t2.q.get(), true), t2, fp8_cache);
      ASSERT_TRUE(a.ok()) << a.error().message;
      ASSERT_TRUE(b.ok()) << b.error().message;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      expect_same_rope_writes(t1, t2, static_cast<size_t>(c.t * qd), fp8_cache);
    }
  }
}

// The FP8 GEMV with the next op in its epilogue (fp8.h) writes, bit for
// bit, what gemv_fp8 into bf16 and then the op write: the rope and cache write
// (rotated q, the k and v caches, bf16 and FP8, a padding token's slot left
// alone) over the fused q/k/v projection, and the SiLU over gate/up, at 1-4
// rows, K with and without a partial group of loads.
TEST(Fp8Gpu, GemvEpiloguesMatchTheGemvThenTheOp) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(29);
  const auto fp8_weights = [&](int n, int k) {
    std::vector<float> w_f;
    gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
    return host_quantize(w_f, n, k);
  };
  for (int k : {576, 4112, 4096}) {
    std::vector<float> x_f;
    const std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(gpu::kGemvFp8EpilogueMaxM) * k, rng, x_f);
    DeviceBuffer<bf16> d_x(x.size());
    d_x.upload(x);
    // q/k/v: 8 q heads and 2 kv heads of 128, 4 and 2 of 64, 32 and 8 of 128.
    for (auto [hq, hkv, d] : {std::tuple{8, 2, 128}, std::tuple{4, 2, 64}, std::tuple{32, 8, 128}}) {
      const int n = (hq + 2 * hkv) * d, row = hkv * d, slots = 16;
      const Quantized w = fp8_weights(n, k);
      DeviceBuffer<uint8_t> d_w(w.codes.size());
      const std::vector<float> inv_freq = rope_inv_freq(RopeConfig{}, d);
      DeviceBuffer<float> d_ws(w.scales.size()), d_inv(inv_freq.size()), d_kv_scales(2);
      d_w.upload(w.codes);
      d_ws.upload(w.scales);
      d_inv.upload(inv_freq);
      d_kv_scales.upload({0.02f, 0.015f});  // outputs ~1: codes well inside E4M3, few saturated
      const size_t q_elems = static_cast<size_t>(gpu::kGemvFp8EpilogueMaxM) * hq * d;
      DeviceBuffer<bf16> d_y(static_cast<size_t>(gpu::kGemvFp8EpilogueMaxM) * n);
      RopeTargets t1(q_elems, static_cast<size_t>(slots) * row), t2(q_elems, static_cast<size_t>(slots) * row);
      DeviceBuffer<int32_t> d_pos(gpu::kGemvFp8EpilogueMaxM);
      DeviceBuffer<int64_t> d_slots(gpu::kGemvFp8EpilogueMaxM);
      d_pos.upload({5, 32000, 17, 4095});
      d_slots.upload({11, 3, -1, 7});  // the third token is padding: rotated, not cached
      for (int m = 1; m <= gpu::kGemvFp8EpilogueMaxM; ++m)
        for (bool fp8_cache : {false, true}) {
          SCOPED_TRACE(testing::Message() << "K " << k << " heads " << hq << "/" << hkv << " D " << d << " M " << m
                                          << (fp8_cache ? " fp8 cache" : " bf16 cache"));
          t1.poison();
          t2.poison();
          // gemv_fp8 into bf16, then the rope, into t1.
          ASSERT_TRUE(
              gpu::gemv_fp8(d_x.get(), d_w.get(), d_ws.get(), nullptr, d_y.get(), false, m, n, k, nullptr).ok());
          const gpu::QkvRows rows = gputest::fused_qkv_rows(d_y.get(), t1.q.get(), hq * d, row);
          const Status a = fp8_cache ? gpu::rope_qkv_and_cache_write(rows, d_pos.get(), d_slots.get(), d_inv.get(), m,
                                                                     hq, hkv, d, t1.fp8(d_kv_scales.get()), nullptr)
                                     : gpu::rope_qkv_and_cache_write(rows, d_pos.get(), d_slots.get(), d_inv.get(), m,
                                                                     hq, hkv, d, t1.k.get(), t1.v.get(), nullptr);
          ASSERT_TRUE(a.ok()) << a.error().message;
          // The epilogue form into t2.
          const gpu::GemvRopeWrite o =
              rope_write_into(t2, d_pos.get(), d_slots.get(), d_inv.get(), hq, hkv, d, fp8_cache, d_kv_scales.get());
          const Status b = gpu::gemv_fp8_rope_and_cache_write(d_x.get(), d_w.get(), d_ws.get(), m, k, o, nullptr);
          ASSERT_TRUE(b.ok()) << b.error().message;
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          expect_same_rope_writes(t1, t2, static_cast<size_t>(m) * hq * d, fp8_cache);
        }
    }
    // gate/up: I = 1004 (silu_mul's scalar path: I % 8 != 0), 1536 and 6144 (its vector path).
    for (int inter : {1004, 1536, 6144}) {
      const Quantized w = fp8_weights(2 * inter, k);
      DeviceBuffer<uint8_t> d_w(w.codes.size());
      DeviceBuffer<float> d_ws(w.scales.size());
      d_w.upload(w.codes);
      d_ws.upload(w.scales);
      DeviceBuffer<bf16> d_y(static_cast<size_t>(gpu::kGemvFp8EpilogueMaxM) * 2 * inter),
          d_a1(static_cast<size_t>(gpu::kGemvFp8EpilogueMaxM) * inter),
          d_a2(static_cast<size_t>(gpu::kGemvFp8EpilogueMaxM) * inter);
      for (int m = 1; m <= gpu::kGemvFp8EpilogueMaxM; ++m) {
        SCOPED_TRACE(testing::Message() << "K " << k << " I " << inter << " M " << m);
        d_a1.poison();
        d_a2.poison();
        ASSERT_TRUE(
            gpu::gemv_fp8(d_x.get(), d_w.get(), d_ws.get(), nullptr, d_y.get(), false, m, 2 * inter, k, nullptr).ok());
        ASSERT_TRUE(gpu::silu_mul(d_y.get(), m, inter, d_a1.get(), nullptr).ok());
        const Status b = gpu::gemv_fp8_silu_mul(d_x.get(), d_w.get(), d_ws.get(), m, inter, k, d_a2.get(), nullptr);
        ASSERT_TRUE(b.ok()) << b.error().message;
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        std::vector<bf16> a1 = d_a1.download(), a2 = d_a2.download();
        a1.resize(static_cast<size_t>(m) * inter);
        a2.resize(a1.size());
        for (bf16 v : a1) ASSERT_TRUE(std::isfinite(gputest::to_float(v))) << "silu_mul unwritten";
        EXPECT_EQ(std::memcmp(a1.data(), a2.data(), a1.size() * sizeof(bf16)), 0);
      }
    }
  }
}

// An RMSNorm split across the GEMVs around it (fp8.h, GemvNormAdd): the
// residual stream bit for bit as gemv_fp8 then rms_norm's add; the sums of
// squares as float64's; the gate/up SiLU within bf16 rounding of a float64
// chain from the same residual (as the norm kernel's path is), and the rope
// epilogue's q and cache within bf16 rounding of the norm kernel's path. Hidden
// sizes from 72 blocks of rows (sums of squares) to 640.
TEST(Fp8Gpu, SplitNormMatchesTheNormKernelWithinRounding) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(31);
  constexpr int kMaxM = gpu::kGemvFp8EpilogueMaxM, kIn = 2048, kInter = 1536;
  constexpr float kEps = 1e-5f;
  const auto fp8_weights = [&](int n, int k) {
    std::vector<float> w_f;
    gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
    return host_quantize(w_f, n, k);
  };
  for (int n : {576, 1040, 4096, 5120}) {
    std::vector<float> x_f, r_f;
    const std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(kMaxM) * kIn, rng, x_f);
    const std::vector<bf16> r0 = gputest::random_bf16(static_cast<size_t>(kMaxM) * n, rng, r_f, 2.0f);
    std::vector<float> g(static_cast<size_t>(n));
    std::uniform_real_distribution<float> g_dist(0.5f, 1.5f);
    for (float& v : g) v = g_dist(rng);
    const Quantized wo = fp8_weights(n, kIn), wgu = fp8_weights(2 * kInter, n);
    DeviceBuffer<bf16> d_x(x.size()), d_y(r0.size()), d_r1(r0.size()), d_r2(r0.size()), d_normed(r0.size()),
        d_hg(r0.size()), d_a1(static_cast<size_t>(kMaxM) * kInter), d_a2(static_cast<size_t>(kMaxM) * kInter);
    DeviceBuffer<uint8_t> d_wo(wo.codes.size()), d_wgu(wgu.codes.size());
    const int count = gpu::gemv_fp8_norm_partials(n);
    DeviceBuffer<float> d_wos(wo.scales.size()), d_wgus(wgu.scales.size()), d_g(g.size()),
        d_parts(static_cast<size_t>(kMaxM) * count);
    d_x.upload(x);
    d_wo.upload(wo.codes);
    d_wos.upload(wo.scales);
    d_wgu.upload(wgu.codes);
    d_wgus.upload(wgu.scales);
    d_g.upload(g);
    for (int m = 1; m <= kMaxM; ++m) {
      SCOPED_TRACE(testing::Message() << "hidden " << n << " M " << m);
      d_r1.upload(r0);
      d_r2.upload(r0);
      d_a1.poison();
      d_a2.poison();
      d_parts.poison();
      // The norm kernel's path: gemv_fp8, rms_norm with the residual, the SiLU epilogue.
      ASSERT_TRUE(
          gpu::gemv_fp8(d_x.get(), d_wo.get(), d_wos.get(), nullptr, d_y.get(), false, m, n, kIn, nullptr).ok());
      ASSERT_TRUE(gpu::rms_norm(d_y.get(), d_r1.get(), d_g.get(), kEps, m, n, d_normed.get(), nullptr).ok());
      ASSERT_TRUE(
          gpu::gemv_fp8_silu_mul(d_normed.get(), d_wgu.get(), d_wgus.get(), m, kInter, n, d_a1.get(), nullptr).ok());
      // The split.
      gpu::GemvNormAdd add;
      add.residual = d_r2.get();
      add.weight = d_g.get();
      add.out = d_hg.get();
      add.partials = d_parts.get();
      Status s = gpu::gemv_fp8_add_for_norm(d_x.get(), d_wo.get(), d_wos.get(), m, n, kIn, add, nullptr);
      ASSERT_TRUE(s.ok()) << s.error().message;
      const gpu::GemvNormParts parts{d_parts.get(), count, kEps};
      s = gpu::gemv_fp8_silu_mul(d_hg.get(), d_wgu.get(), d_wgus.get(), m, kInter, n, d_a2.get(), nullptr, parts);
      ASSERT_TRUE(s.ok()) << s.error().message;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

      const std::vector<bf16> r1 = d_r1.download(), r2 = d_r2.download();
      ASSERT_EQ(std::memcmp(r1.data(), r2.data(), static_cast<size_t>(m) * n * sizeof(bf16)), 0) << "residual";
      const std::vector<float> partials = d_parts.download();
      const std::vector<bf16> a1 = d_a1.download(), a2 = d_a2.download();
      for (int t = 0; t < m; ++t) {
        // float64 from the residual's bits: the norm, gate/up over the same codes and scales, the SiLU.
        double ss = 0, parts_sum = 0;
        for (int i = 0; i < n; ++i) ss += std::pow(gputest::to_float(r1[static_cast<size_t>(t) * n + i]), 2);
        for (int b = 0; b < count; ++b) parts_sum += partials[static_cast<size_t>(t) * count + b];
        EXPECT_NEAR(parts_sum, ss, 1e-5 * ss) << "token " << t;
        const double inv = 1.0 / std::sqrt(ss / n + kEps);
        std::vector<double> normed(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) normed[i] = gputest::to_float(r1[static_cast<size_t>(t) * n + i]) * inv * g[i];
        std::vector<double> want(kInter);
        double sq = 0;
        for (int j = 0; j < kInter; ++j) {
          double gate = 0, up = 0;
          for (int i = 0; i < n; ++i) {
            gate += quant::fp8_e4m3_to_float(wgu.codes[static_cast<size_t>(j) * n + i]) * normed[i];
            up += quant::fp8_e4m3_to_float(wgu.codes[static_cast<size_t>(kInter + j) * n + i]) * normed[i];
          }
          gate *= wgu.scales[j];
          up *= wgu.scales[kInter + j];
          want[j] = gate / (1.0 + std::exp(-gate)) * up;
          sq += want[j] * want[j];
        }
        const double rms = std::sqrt(sq / kInter);
        // Each path's largest error in units of |want| + rms, and its root-mean-square error.
        double worst[2] = {0, 0}, mse[2] = {0, 0};
        for (int j = 0; j < kInter; ++j) {
          const size_t at = static_cast<size_t>(t) * kInter + j;
          const double e[2] = {gputest::to_float(a1[at]) - want[j], gputest::to_float(a2[at]) - want[j]};
          for (int p = 0; p < 2; ++p) {
            worst[p] = std::max(worst[p], std::abs(e[p]) / (std::abs(want[j]) + rms));
            mse[p] += e[p] * e[p] / kInter;
          }
        }
        // Both within bf16 noise of float64; the split's error no larger than the norm kernel's path's by half.
        EXPECT_LE(worst[0], 1.0 / 32) << "token " << t << ": the norm kernel's path";
        EXPECT_LE(worst[1], 1.0 / 32) << "token " << t << ": the split";
        EXPECT_LE(std::sqrt(mse[1]), 1.5 * std::sqrt(mse[0]) + 1e-6 * rms) << "token " << t;
        std::printf(
            "split norm: hidden %d token %d: rms error %.3g of the rms (norm kernel's path %.3g), largest %.3g "
            "(%.3g)\n",
            n, t, std::sqrt(mse[1]) / rms, std::sqrt(mse[0]) / rms, worst[1], worst[0]);
      }

      // The rope epilogue (8 q heads, 2 kv heads of 128 over this hidden size) from the same two inputs.
      constexpr int hq = 8, hkv = 2, d = 128, slots = 16;
      const Quantized wqkv = fp8_weights((hq + 2 * hkv) * d, n);
      DeviceBuffer<uint8_t> d_wqkv(wqkv.codes.size());
      DeviceBuffer<float> d_wqkvs(wqkv.scales.size()), d_inv(d / 2);
      DeviceBuffer<int32_t> d_pos(kMaxM);
      DeviceBuffer<int64_t> d_slots(kMaxM);
      d_wqkv.upload(wqkv.codes);
      d_wqkvs.upload(wqkv.scales);
      d_inv.upload(rope_inv_freq(RopeConfig{}, d));
      d_pos.upload({5, 32000, 17, 4095});
      d_slots.upload({11, 3, -1, 7});
      RopeTargets t1(static_cast<size_t>(kMaxM) * hq * d, static_cast<size_t>(slots) * hkv * d),
          t2(static_cast<size_t>(kMaxM) * hq * d, static_cast<size_t>(slots) * hkv * d);
      t1.poison();
      t2.poison();
      const auto rope_into = [&](RopeTargets& t, const bf16* in, const gpu::GemvNormParts& p) {
        const gpu::GemvRopeWrite o =
            rope_write_into(t, d_pos.get(), d_slots.get(), d_inv.get(), hq, hkv, d, false, nullptr);
        return gpu::gemv_fp8_rope_and_cache_write(in, d_wqkv.get(), d_wqkvs.get(), m, n, o, nullptr, p);
      };
      ASSERT_TRUE(rope_into(t1, d_normed.get(), {}).ok());
      ASSERT_TRUE(rope_into(t2, d_hg.get(), parts).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto close = [&](const std::vector<bf16>& ref, const std::vector<bf16>& got, size_t count_,
                             const char* what) {
        double sq = 0;
        size_t written = 0;
        for (size_t i = 0; i < count_; ++i)
          if (!std::isnan(gputest::to_float(ref[i]))) sq += std::pow(gputest::to_float(ref[i]), 2), ++written;
        ASSERT_GT(written, 0u) << what;
        const double rms = std::sqrt(sq / static_cast<double>(written));
        size_t bad = 0;
        for (size_t i = 0; i < count_; ++i) {
          const double a = gputest::to_float(ref[i]), b = gputest::to_float(got[i]);
          if (std::isnan(a) && std::isnan(b)) continue;  // (a slot neither wrote)
          if (!(std::abs(a - b) <= std::abs(a) / 64 + rms / 32) && bad++ < 3)
            ADD_FAILURE() << what << " " << i << ": norm kernel " << a << " split " << b << " rms " << rms;
        }
        EXPECT_EQ(bad, 0u) << what;
      };
      close(t1.q.download(), t2.q.download(), static_cast<size_t>(m) * hq * d, "rotated q");
      close(t1.k.download(), t2.k.download(), static_cast<size_t>(slots) * hkv * d, "k cache");
      close(t1.v.download(), t2.v.download(), static_cast<size_t>(slots) * hkv * d, "v cache");
    }
    // Partials that do not match K are refused.
    const gpu::GemvNormParts wrong{d_parts.get(), count + 1, kEps};
    EXPECT_FALSE(
        gpu::gemv_fp8_silu_mul(d_hg.get(), d_wgu.get(), d_wgus.get(), 1, kInter, n, d_a2.get(), nullptr, wrong).ok());
  }
}

TEST(Fp8Gpu, GemvMatchesFloat64Reference) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(11);
  for (int m = 1; m <= gpu::kGemvFp8MaxM; ++m)
    for (auto [n, k] : {std::pair{65, 64}, std::pair{1536, 576}, std::pair{1000, 4096}, std::pair{513, 4112}})
      check_fp8_shape(*gemm, m, n, k, Path::kGemv, rng);
}

// Every launch shape of the CUDA-core GEMV (fp8.h: kGemvFp8Variants) writes
// variant 0's bits, at M 1-8 (above 4 the variant is ignored), N not a
// multiple of any variant's rows a block and K with and without a partial
// group; variant 0 itself is checked against float64 above.
TEST(Fp8Gpu, GemvVariantsWriteTheSameBits) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(21);
  for (auto [n, k] : {std::pair{65, 64}, std::pair{1000, 4096}, std::pair{513, 4112}, std::pair{4096, 14336}}) {
    std::vector<float> x_f, w_f;
    const std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(gpu::kGemvFp8MaxM) * k, rng, x_f);
    gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
    const Quantized w = host_quantize(w_f, n, k);
    DeviceBuffer<bf16> d_x(x.size());
    DeviceBuffer<uint8_t> d_w(w.codes.size());
    DeviceBuffer<float> d_ws(w.scales.size()), d_y(static_cast<size_t>(gpu::kGemvFp8MaxM) * n);
    d_x.upload(x);
    d_w.upload(w.codes);
    d_ws.upload(w.scales);
    for (int m = 1; m <= gpu::kGemvFp8MaxM; ++m) {
      std::vector<float> first;
      for (int variant = 0; variant < gpu::kGemvFp8Variants; ++variant) {
        SCOPED_TRACE(testing::Message() << "M=" << m << " N=" << n << " K=" << k << " variant " << variant);
        d_y.poison();
        const Status s =
            gpu::gemv_fp8(d_x.get(), d_w.get(), d_ws.get(), nullptr, d_y.get(), true, m, n, k, nullptr, variant);
        ASSERT_TRUE(s.ok()) << s.error().message;
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        std::vector<float> got = d_y.download();
        got.resize(static_cast<size_t>(m) * n);
        if (variant == 0) {
          for (float v : got) ASSERT_TRUE(std::isfinite(v));
          first = std::move(got);
          continue;
        }
        size_t diffs = 0, at = 0;
        for (size_t i = 0; i < got.size(); ++i)
          if (float_bits(got[i]) != float_bits(first[i]) && diffs++ == 0) at = i;
        EXPECT_EQ(diffs, 0u) << "first at " << at << ": " << got[at] << " against " << first[at];
      }
    }
  }
}

TEST(Fp8Gpu, MmaGemvMatchesFloat64Reference) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(14);
  // Token tiles 1-8, K with and without a partial 64-wide step, N past a row tile.
  for (int m : {1, 2, 7, 8, 9, 16, 17, 33, 64})
    for (auto [n, k] : {std::pair{65, 64}, std::pair{1000, 4096}, std::pair{513, 4112}})
      check_fp8_shape(*gemm, m, n, k, Path::kMma, rng);
  for (int variant = 1; variant < gpu::kGemvMmaVariants; ++variant)
    check_fp8_shape(*gemm, 3, 1536, 576, Path::kMma, rng, variant);
}

// The tensor-core kernel multiplies in f16 (gemv_mma.cu): x's values are
// f16's, rounded to nearest (subnormals below 2^-14) and saturated at
// +-65504. Rows of x at the edges of that range (tiny, huge, one outlier past
// 65504 among ordinary values) against a float64 reference that applies the
// same rule: within float32 accumulation error, and never inf or NaN.
TEST(Fp8Gpu, MmaGemvTakesXAsF16) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  constexpr int kM = 8, kN = 96, kK = 4096;
  std::mt19937 rng(31);
  std::vector<float> x_f, w_f;
  std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(kM) * kK, rng, x_f);
  const float magnitude[kM] = {1.0f, 1e-6f, 3e-5f, 4e4f, 1e5f, 1.0f, 2.0f, 1e-3f};
  for (int r = 0; r < kM; ++r)
    for (int c = 0; c < kK; ++c) {
      const size_t i = static_cast<size_t>(r) * kK + c;
      x[i] = gputest::to_bf16(x_f[i] * magnitude[r]);
    }
  x[static_cast<size_t>(5) * kK + 100] = gputest::to_bf16(-2.5e5f);  // one value past f16's range
  std::vector<float> as_f16(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = std::clamp(gputest::to_float(x[i]), -65504.0f, 65504.0f);
    as_f16[i] = static_cast<float>(static_cast<_Float16>(v));
  }
  gputest::random_bf16(static_cast<size_t>(kN) * kK, rng, w_f, 0.05f);
  const Quantized w = host_quantize(w_f, kN, kK);
  const std::vector<double> want = reference(as_f16, w, kM, kN, kK, nullptr);

  DeviceBuffer<bf16> d_x(x.size());
  DeviceBuffer<uint8_t> d_w(w.codes.size());
  DeviceBuffer<float> d_ws(w.scales.size()), d_y(static_cast<size_t>(kM) * kN);
  d_x.upload(x);
  d_w.upload(w.codes);
  d_ws.upload(w.scales);
  for (int m : {1, kM}) {
    d_y.poison();
    const Status s = gpu::gemv_mma_fp8(d_x.get(), d_w.get(), d_ws.get(), nullptr, d_y.get(), true, m, kN, kK,
                                       gpu::kGemvMmaFp8DispatchVariant, true, nullptr);
    ASSERT_TRUE(s.ok()) << s.error().message;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> got = d_y.download();
    for (int r = 0; r < m; ++r) {
      SCOPED_TRACE(testing::Message() << "M=" << m << " row " << r << " (x about " << magnitude[r] << ")");
      const std::vector<float> row(got.begin() + static_cast<ptrdiff_t>(r) * kN,
                                   got.begin() + static_cast<ptrdiff_t>(r + 1) * kN);
      const std::vector<double> ref(want.begin() + static_cast<ptrdiff_t>(r) * kN,
                                    want.begin() + static_cast<ptrdiff_t>(r + 1) * kN);
      const auto e = gputest::compare(row, ref);
      EXPECT_EQ(e.non_finite, 0);
      EXPECT_LT(e.rel_l2, 1e-4);
      EXPECT_LT(e.worst_rel, 1e-3);
    }
  }
}

// Every E4M3 code (NaN's two excepted) through the tensor-core kernel's
// in-register conversion: one-hot x picks code (m + 16 n) % 256 as y[m, n],
// which float32 output must hold exactly (scale 1).
TEST(Fp8Gpu, MmaGemvConvertsEveryCodeExactly) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  constexpr int kM = 16, kN = 16, kK = 256;
  std::vector<uint8_t> codes(static_cast<size_t>(kN) * kK);
  for (int n = 0; n < kN; ++n)
    for (int k = 0; k < kK; ++k) {
      const auto c = static_cast<uint8_t>((k + 16 * n) % 256);
      codes[static_cast<size_t>(n) * kK + k] = (c & 0x7F) == 0x7F ? 0 : c;
    }
  std::vector<bf16> x(static_cast<size_t>(kM) * kK, gputest::to_bf16(0.0f));
  for (int m = 0; m < kM; ++m) x[static_cast<size_t>(m) * kK + m] = gputest::to_bf16(1.0f);
  DeviceBuffer<bf16> d_x(x.size());
  DeviceBuffer<uint8_t> d_w(codes.size());
  DeviceBuffer<float> d_ws(kN), d_y(static_cast<size_t>(kM) * kN);
  d_x.upload(x);
  d_w.upload(codes);
  d_ws.upload(std::vector<float>(kN, 1.0f));
  d_y.poison();
  const Status s = gpu::gemv_mma_fp8(d_x.get(), d_w.get(), d_ws.get(), nullptr, d_y.get(), true, kM, kN, kK, 0, true,
                                     nullptr);
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> y = d_y.download();
  int wrong = 0;
  for (int m = 0; m < kM; ++m)
    for (int n = 0; n < kN; ++n) {
      const uint8_t c = codes[static_cast<size_t>(n) * kK + m];
      const float want = quant::fp8_e4m3_to_float(c), got = y[static_cast<size_t>(m) * kN + n];
      if (got != want && wrong++ < 8)  // (value equality: a sum of -0 and +0 products is +0)
        ADD_FAILURE() << "code 0x" << std::hex << int(c) << std::dec << ": got " << got << " want " << want;
    }
  EXPECT_EQ(wrong, 0);
}

// A token's outputs do not depend on the other tokens or on M (a verify
// chunk's rows equal the decode steps' bit for bit).
TEST(Fp8Gpu, MmaGemvRowsDoNotDependOnM) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(15);
  const int n = 1536, k = 4096, max_m = gpu::kGemvMmaMaxM;
  std::vector<float> x_f, w_f;
  const std::vector<bf16> x = gputest::random_bf16(static_cast<size_t>(max_m) * k, rng, x_f);
  gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
  const Quantized w = host_quantize(w_f, n, k);
  DeviceBuffer<bf16> d_x(x.size());
  DeviceBuffer<uint8_t> d_w(w.codes.size());
  DeviceBuffer<float> d_ws(w.scales.size()), d_one(static_cast<size_t>(n)), d_all(static_cast<size_t>(max_m) * n);
  d_x.upload(x);
  d_w.upload(w.codes);
  d_ws.upload(w.scales);
  ASSERT_TRUE(gpu::gemv_mma_fp8(d_x.get(), d_w.get(), d_ws.get(), nullptr, d_all.get(), true, max_m, n, k, 0, true,
                                nullptr)
                  .ok());
  const std::vector<float> all = d_all.download();
  for (int r : {0, 7, 8, 31, max_m - 1}) {
    ASSERT_TRUE(gpu::gemv_mma_fp8(d_x.get() + static_cast<size_t>(r) * k, d_w.get(), d_ws.get(), nullptr, d_one.get(),
                                  true, 1, n, k, 0, true, nullptr)
                    .ok());
    const std::vector<float> one = d_one.download();
    for (int c = 0; c < n; ++c)
      ASSERT_EQ(float_bits(one[static_cast<size_t>(c)]), float_bits(all[static_cast<size_t>(r) * n + c]))
          << "token " << r << " column " << c;
  }
}

// cuBLASLt with and without fast accumulation (off by default): the precise
// one within its accumulation's error (relative L2 1.2e-4, worst 1.2e-3 at
// K = 4,096 on the H100: more than a float32 sum's, the tensor cores' FP8
// partial sums being narrower), the fast one within 10x that (1.3e-3, 2.2e-2).
TEST(Fp8Gpu, CublasLtMatchesFloat64ReferenceOfQuantizedActivations) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(12);
  for (bool fast : {false, true}) {
    SCOPED_TRACE(fast ? "fast accumulation" : "precise accumulation");
    gemm->set_fp8_fast_accum(fast);
    for (int m : {1, 9, 64, 257})
      for (int n : {64, 1536})
        for (int k : {576, 4096})
          check_fp8_shape(*gemm, m, n, k, Path::kCublasLt, rng, 0, fast ? 3e-3 : 3e-4, fast ? 5e-2 : 3e-3);
  }
}

TEST(Fp8Gpu, DispatchAcrossTheGemvThreshold) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(13);
  // Each kernel on its side of each threshold (fp8.h), and the sums right on all of them.
  EXPECT_EQ(gemm->fp8_path(gpu::kGemvFp8DispatchMaxM, 576, 1536), "gemv_fp8");
  EXPECT_EQ(gemm->fp8_path(gpu::kGemvFp8DispatchMaxM + 1, 576, 1536), "gemv_mma_fp8");
  EXPECT_EQ(gemm->fp8_path(gpu::kGemvMmaFp8DispatchMaxM, 576, 1536), "gemv_mma_fp8");
  EXPECT_EQ(gemm->fp8_path(gpu::kGemvMmaFp8DispatchMaxM + 1, 576, 1536).rfind("cublaslt", 0), 0u);
  for (int m : {1, 2, 3, 4, 5, 16, 17, 32, 33, 65})
    check_fp8_shape(*gemm, m, 576, 1536, Path::kDispatch, rng, 0, 3e-4, 3e-3);
  // A larger step after smaller ones grows the activation scratch.
  check_fp8_shape(*gemm, 1024, 256, 2048, Path::kDispatch, rng, 0, 3e-4, 3e-3);
}

}  // namespace
}  // namespace ember
