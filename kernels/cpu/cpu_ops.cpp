// Elementwise and matmul ops of the CPU backend (attention.cpp and rope.cpp
// hold the rest).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/linear_int8.h"
#include "kernels/cpu/linear_kernels.h"
#include "kernels/quant/quant_blocks.h"

namespace ember {

void* CpuBackend::allocate(size_t bytes) {
  // 64-byte aligned for the AVX kernels' loads; never null (see Backend).
  void* p = ::operator new (std::max<size_t>(bytes, 1), std::align_val_t{64});
  return p;
}

void CpuBackend::deallocate(void* ptr) { ::operator delete (ptr, std::align_val_t{64}); }

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  assert(src.dtype == dst.dtype && src.numel() == dst.numel() && !dtype_is_quantized(src.dtype));
  if (src.numel() == 0) return;
  std::memmove(dst.data, src.data, static_cast<size_t>(dtype_bytes(src.dtype, src.numel())));
}

void CpuBackend::download(const Tensor& src, float* host) {
  // (an empty step has no logits rows: host may be null, and memmove's pointers must not be even for 0 bytes)
  if (src.numel() == 0 || host == src.data) return;
  std::memmove(host, src.f32(), static_cast<size_t>(src.numel()) * sizeof(float));
}

void CpuBackend::embedding(const Tensor& table, const ForwardInputs& in, Tensor& out, int64_t first_row) {
  const std::vector<int32_t>& token_ids = in.token_ids;
  const int64_t h = table.cols();
  assert(out.rows() == static_cast<int64_t>(token_ids.size()) && out.cols() == h);
  // Quantized / half tables stay in their file format; only the looked-up rows are dequantized.
  const int64_t row_bytes = dtype_row_bytes(table.dtype, h);
  const auto* src = static_cast<const uint8_t*>(table.data);
  float* dst = out.f32();
  const int64_t first = first_row < 0 ? 0 : first_row;
  for (size_t t = 0; t < token_ids.size(); ++t) {
    const int64_t row = token_ids[t] - first;
    if (first_row >= 0 && (row < 0 || row >= table.rows())) {  // another rank's token
      std::fill(dst + t * h, dst + (t + 1) * h, 0.0f);
      continue;
    }
    assert(row >= 0 && row < table.rows());
    quant::dequantize_row(table.dtype, src + row * row_bytes, h, dst + t * h);
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
  if (precision_ == CpuPrecision::kFast && int8_linear_supports(w.dtype)) return linear_int8(x, w, bias, y);
  LinearArgs a;
  a.m = x.rows(), a.k = x.cols(), a.n = w.rows();
  assert(w.cols() == a.k && y.rows() == a.m && y.cols() == a.n);
  assert(!bias || bias->numel() == a.n);
  assert(a.k % dtype_block_elems(w.dtype) == 0);
  a.x = x.f32();
  a.w = w.data;
  a.w_dtype = w.dtype;
  a.bias = bias ? bias->f32() : nullptr;
  a.y = y.f32();
  const CpuIsa isa = best_cpu_isa();
  const int64_t groups = (a.n + kLinearRowGroup - 1) / kLinearRowGroup;
  pool_.parallel_for(groups, [&](int64_t begin, int64_t end) {
    linear_rows(a, begin * kLinearRowGroup, std::min(a.n, end * kLinearRowGroup), isa);
  });
}

void CpuBackend::linear_int8(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const int64_t m = x.rows(), k = x.cols(), n = w.rows();
  assert(w.cols() == k && y.rows() == m && y.cols() == n && k % kQ8Block == 0);
  assert(!bias || bias->numel() == n);
  const size_t elems = static_cast<size_t>(m * k), blocks = elems / kQ8Block;
  if (q8_q_.size() < elems) q8_q_.resize(elems);
  if (q8_d_.size() < blocks) q8_d_.resize(blocks), q8_ds_.resize(blocks), q8_sum_.resize(blocks);
  const Q8Rows q8{q8_q_.data(), q8_d_.data(), q8_ds_.data(), q8_sum_.data(), m, k};
  const CpuIsa isa = best_cpu_isa();
  const float* xf = x.f32();
  if (m == 1) {
    quantize_rows_q8(xf, 0, 1, q8, isa);  // (a few hundred ns: not worth waking the pool)
  } else {
    pool_.parallel_for(m, [&](int64_t begin, int64_t end) { quantize_rows_q8(xf, begin, end, q8, isa); });
  }
  Int8LinearArgs a;
  a.x = &q8;
  a.w = w.data;
  a.w_dtype = w.dtype;
  a.bias = bias ? bias->f32() : nullptr;
  a.y = y.f32();
  a.n = n;
  const int64_t groups = (n + kLinearRowGroup - 1) / kLinearRowGroup;
  pool_.parallel_for(groups, [&](int64_t begin, int64_t end) {
    linear_int8_rows(a, begin * kLinearRowGroup, std::min(n, end * kLinearRowGroup), isa);
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

void CpuBackend::gather_logit_rows(const Tensor& x, const ForwardInputs& in, Tensor& out) {
  const std::vector<int32_t>& indices = in.logits_indices;
  const int64_t h = x.cols();
  assert(out.rows() == static_cast<int64_t>(indices.size()) && out.cols() == h);
  for (size_t r = 0; r < indices.size(); ++r) {
    assert(indices[r] >= 0 && indices[r] < x.rows());
    std::memmove(out.f32() + r * h, x.f32() + static_cast<int64_t>(indices[r]) * h, h * sizeof(float));
  }
}

}  // namespace ember
