// Elementwise and matmul ops of the CPU backend (attention.cpp and rope.cpp
// hold the rest).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace ember {
namespace {

// Eight independent accumulators so the compiler can vectorise without
// -ffast-math (a single running sum is a serial dependency chain).
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Rows of W processed together: a block of kRowBlock x K floats stays in
// L1/L2 while every row of x streams past it, so W is read from memory once
// per call whatever M is (decode is bound by reading W: 4 bytes per weight).
constexpr int64_t kRowBlock = 8;

}  // namespace

void CpuBackend::embedding(const Tensor& table, const std::vector<int32_t>& token_ids, Tensor& out) {
  const int64_t h = table.cols();
  assert(out.rows() == static_cast<int64_t>(token_ids.size()) && out.cols() == h);
  const float* src = table.f32();
  float* dst = out.f32();
  for (size_t t = 0; t < token_ids.size(); ++t) {
    assert(token_ids[t] >= 0 && token_ids[t] < table.rows());
    std::memcpy(dst + t * h, src + static_cast<int64_t>(token_ids[t]) * h, h * sizeof(float));
  }
}

void CpuBackend::rms_norm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps, Tensor& out) {
  const int64_t m = x.rows(), h = x.cols();
  assert(out.rows() == m && out.cols() == h && weight.numel() == h);
  assert(!residual || (residual->rows() == m && residual->cols() == h));
  const float* w = weight.f32();
  pool_.parallel_for(m, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x.f32() + r * h;
      float* o = out.f32() + r * h;
      const float* src = xr;
      if (residual) {
        float* res = residual->f32() + r * h;
        for (int64_t i = 0; i < h; ++i) res[i] += xr[i];
        src = res;
      }
      double ss = 0;
      for (int64_t i = 0; i < h; ++i) ss += static_cast<double>(src[i]) * src[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(h) + eps));
      for (int64_t i = 0; i < h; ++i) o[i] = src[i] * inv * w[i];
    }
  });
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const int64_t m = x.rows(), k = x.cols(), n = w.rows();
  assert(w.cols() == k && y.rows() == m && y.cols() == n);
  assert(!bias || bias->numel() == n);
  const float* xd = x.f32();
  const float* wd = w.f32();
  const float* bd = bias ? bias->f32() : nullptr;
  float* yd = y.f32();
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  pool_.parallel_for(blocks, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t n0 = blk * kRowBlock, n1 = std::min(n, n0 + kRowBlock);
      for (int64_t r = 0; r < m; ++r) {
        const float* xr = xd + r * k;
        for (int64_t c = n0; c < n1; ++c) yd[r * n + c] = dot(xr, wd + c * k, k) + (bd ? bd[c] : 0.0f);
      }
    }
  });
}

void CpuBackend::silu_mul(const Tensor& x, Tensor& out) {
  const int64_t m = x.rows(), inter = x.cols() / 2;
  assert(x.cols() == 2 * inter && out.rows() == m && out.cols() == inter);
  pool_.parallel_for(m, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* g = x.f32() + r * 2 * inter;
      const float* u = g + inter;
      float* o = out.f32() + r * inter;
      for (int64_t i = 0; i < inter; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
  });
}

void CpuBackend::gather_rows(const Tensor& x, const std::vector<int32_t>& indices, Tensor& out) {
  const int64_t h = x.cols();
  assert(out.rows() == static_cast<int64_t>(indices.size()) && out.cols() == h);
  for (size_t r = 0; r < indices.size(); ++r) {
    assert(indices[r] >= 0 && indices[r] < x.rows());
    std::memmove(out.f32() + r * h, x.f32() + static_cast<int64_t>(indices[r]) * h, h * sizeof(float));
  }
}

}  // namespace ember
