#pragma once
// Helpers of the op and GEMM GPU tests: device buffers, bf16 random data, and
// the error measures (relative L2 error, worst element, non-finite count).

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/device_info.h"
#include "kernels/cuda/ops.h"

namespace ember::gputest {

using bf16 = __nv_bfloat16;

inline float to_float(bf16 v) { return __bfloat162float(v); }
inline bf16 to_bf16(float v) { return __float2bfloat16(v); }
inline uint16_t bits_of(bf16 v) {
  uint16_t b;
  std::memcpy(&b, &v, 2);
  return b;
}

// An owning device buffer of T; poison() fills every byte with 0xFF (NaN for
// bf16 and float), so an element a kernel forgot to write cannot pass.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(&p_, (n ? n : 1) * sizeof(T)) != cudaSuccess) p_ = nullptr;
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  bool ok() const { return p_ != nullptr; }
  void upload(const std::vector<T>& h) {
    ASSERT_EQ(h.size(), n_);
    ASSERT_EQ(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    EXPECT_EQ(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  void poison() { ASSERT_EQ(cudaMemset(p_, 0xFF, n_ * sizeof(T)), cudaSuccess); }

 private:
  T* p_ = nullptr;
  size_t n_;
};

inline void require_gpu() {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
}

// Normal(0, scale) values rounded to bf16; `f` gets the same values as float.
inline std::vector<bf16> random_bf16(size_t n, std::mt19937& rng, std::vector<float>& f, float scale = 1.0f) {
  std::normal_distribution<float> g(0.0f, scale);
  std::vector<bf16> out(n);
  f.resize(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = to_bf16(g(rng));
    f[i] = to_float(out[i]);
  }
  return out;
}

inline std::vector<float> to_floats(const std::vector<bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = to_float(v[i]);
  return f;
}

struct ErrorStats {
  double rel_l2 = 0;       // ||out - ref|| / ||ref||
  double worst_rel = 0;    // max |out - ref| / rms(ref)
  int64_t non_finite = 0;  // NaN or Inf in out (ref is always finite)
};

template <class Ref>
ErrorStats compare(const std::vector<float>& out, const std::vector<Ref>& ref) {
  ErrorStats s;
  double num = 0, den = 0, worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      ++s.non_finite;
      continue;
    }
    const double d = static_cast<double>(out[i]) - static_cast<double>(ref[i]);
    num += d * d;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
    worst = std::max(worst, std::fabs(d));
  }
  const double rms = std::sqrt(den / std::max<size_t>(1, out.size()));
  s.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  s.worst_rel = rms > 0 ? worst / rms : worst;
  return s;
}

// rope_qkv_and_cache_write's rows over one fused q/k/v projection [T, q_dim
// + 2 * kv_dim]: q (rotated into q_out), k and v side by side in each row.
inline gpu::QkvRows fused_qkv_rows(const bf16* base, bf16* q_out, int64_t q_dim, int64_t kv_dim) {
  gpu::QkvRows r;
  r.q_in = base;
  r.q_out = q_out;
  r.k_in = base + q_dim;
  r.v_in = base + q_dim + kv_dim;
  r.q_stride = r.k_stride = r.v_stride = q_dim + 2 * kv_dim;
  return r;
}

}  // namespace ember::gputest
