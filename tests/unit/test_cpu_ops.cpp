// CPU backend ops vs naive references written here (double precision, no
// tricks), on random inputs. Tolerance: 1e-5 relative to the largest
// reference magnitude of the output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace ember {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double rel = 1e-5) {
  ASSERT_EQ(got.size(), ref.size());
  double scale = 0;
  for (double r : ref) scale = std::max(scale, std::abs(r));
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], rel * scale) << "at " << i;
}

TEST(CpuOps, Embedding) {
  CpuBackend be(2);
  const int64_t v = 11, h = 5;
  auto table = random_vec(v * h, 1);
  std::vector<int32_t> ids = {3, 0, 10, 3};
  std::vector<float> out(ids.size() * h);
  Tensor o = Tensor::f32(out.data(), {4, h});
  ForwardInputs in;
  in.token_ids = ids;
  be.embedding(Tensor::f32(table.data(), {v, h}), in, o);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t i = 0; i < h; ++i) EXPECT_EQ(out[t * h + i], table[ids[t] * h + i]);
}

TEST(CpuOps, RmsNormPlainAndFusedResidual) {
  CpuBackend be(3);
  const int64_t m = 5, h = 67;
  const float eps = 1e-5f;
  auto x = random_vec(m * h, 2), w = random_vec(h, 3), res0 = random_vec(m * h, 4, -3, 3);
  for (bool with_residual : {false, true}) {
    std::vector<float> res = res0, out(m * h);
    std::vector<double> ref(m * h), ref_res(m * h);
    for (int64_t r = 0; r < m; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < h; ++i) {
        ref_res[r * h + i] = double(x[r * h + i]) + (with_residual ? res0[r * h + i] : 0.0);
        ss += ref_res[r * h + i] * ref_res[r * h + i];
      }
      const double inv = 1.0 / std::sqrt(ss / h + eps);
      for (int64_t i = 0; i < h; ++i) ref[r * h + i] = ref_res[r * h + i] * inv * w[i];
    }
    Tensor rt = Tensor::f32(res.data(), {m, h}), ot = Tensor::f32(out.data(), {m, h});
    be.rms_norm(Tensor::f32(x.data(), {m, h}), with_residual ? &rt : nullptr, Tensor::f32(w.data(), {h}), eps, ot);
    expect_close(out, ref);
    if (with_residual)
      expect_close(res, ref_res);
    else
      EXPECT_EQ(res, res0);  // untouched without the fused add
  }
}

TEST(CpuOps, RmsNormInPlace) {
  CpuBackend be(2);
  const int64_t m = 3, h = 16;
  auto x = random_vec(m * h, 5), w = random_vec(h, 6);
  std::vector<float> expected(m * h), inplace = x;
  Tensor et = Tensor::f32(expected.data(), {m, h}), it = Tensor::f32(inplace.data(), {m, h});
  be.rms_norm(Tensor::f32(x.data(), {m, h}), nullptr, Tensor::f32(w.data(), {h}), 1e-6f, et);
  be.rms_norm(it, nullptr, Tensor::f32(w.data(), {h}), 1e-6f, it);
  EXPECT_EQ(inplace, expected);
}

TEST(CpuOps, LinearWithAndWithoutBias) {
  for (int threads : {1, 3}) {
    CpuBackend be(threads);
    for (int64_t m : {1, 5, 17}) {
      const int64_t k = 67, n = 37;  // n not a multiple of the row block
      auto x = random_vec(m * k, 7 + m), w = random_vec(n * k, 8), b = random_vec(n, 9);
      for (bool with_bias : {false, true}) {
        std::vector<double> ref(m * n);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t c = 0; c < n; ++c) {
            double s = with_bias ? b[c] : 0.0;
            for (int64_t i = 0; i < k; ++i) s += double(x[r * k + i]) * w[c * k + i];
            ref[r * n + c] = s;
          }
        std::vector<float> y(m * n);
        Tensor yt = Tensor::f32(y.data(), {m, n}), bt = Tensor::f32(b.data(), {n});
        be.linear(Tensor::f32(x.data(), {m, k}), Tensor::f32(w.data(), {n, k}), with_bias ? &bt : nullptr, yt);
        expect_close(y, ref);
      }
    }
  }
}

TEST(CpuOps, SiluMul) {
  CpuBackend be(2);
  const int64_t m = 4, inter = 13;
  auto x = random_vec(m * 2 * inter, 10, -6, 6);
  std::vector<double> ref(m * inter);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t i = 0; i < inter; ++i) {
      const double g = x[r * 2 * inter + i], u = x[r * 2 * inter + inter + i];
      ref[r * inter + i] = g / (1.0 + std::exp(-g)) * u;
    }
  std::vector<float> out(m * inter);
  Tensor ot = Tensor::f32(out.data(), {m, inter});
  be.silu_mul(Tensor::f32(x.data(), {m, 2 * inter}), ot);
  expect_close(out, ref);
}

TEST(CpuOps, GatherLogitRows) {
  CpuBackend be(1);
  auto x = random_vec(6 * 3, 11);
  std::vector<int32_t> idx = {5, 0, 5};
  std::vector<float> out(idx.size() * 3);
  Tensor ot = Tensor::f32(out.data(), {3, 3});
  ForwardInputs in;
  in.logits_indices = idx;
  be.gather_logit_rows(Tensor::f32(x.data(), {6, 3}), in, ot);
  for (size_t r = 0; r < idx.size(); ++r)
    for (int i = 0; i < 3; ++i) EXPECT_EQ(out[r * 3 + i], x[idx[r] * 3 + i]);
}

// inv_freq straight from the formulas (transformers' default, linear and
// _compute_llama3_parameters), in double.
std::vector<double> ref_inv_freq(const RopeConfig& c, int64_t d) {
  std::vector<double> f(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) {
    double inv = 1.0 / std::pow(c.theta, double(2 * i) / double(d));
    if (c.scaling == RopeScalingKind::kLinear) inv /= c.factor;
    if (c.scaling == RopeScalingKind::kLlama3) {
      const double old = double(c.original_max_position_embeddings);
      const double wavelen = 2 * std::numbers::pi / inv;
      const double scaled = wavelen > old / c.low_freq_factor ? inv / c.factor : inv;
      const double smooth = (old / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
      const double smoothed = (1 - smooth) * scaled / c.factor + smooth * scaled;
      const bool medium = !(wavelen < old / c.high_freq_factor) && !(wavelen > old / c.low_freq_factor);
      inv = medium ? smoothed : scaled;
    }
    f[i] = inv;
  }
  return f;
}

TEST(CpuOps, RopeInvFreqDefaultLinearLlama3) {
  RopeConfig none;
  none.theta = 10000;
  RopeConfig lin = none;
  lin.scaling = RopeScalingKind::kLinear;
  lin.factor = 4;
  RopeConfig l3;  // Llama 3.1 8B
  l3.theta = 500000;
  l3.scaling = RopeScalingKind::kLlama3;
  l3.factor = 8;
  l3.low_freq_factor = 1;
  l3.high_freq_factor = 4;
  l3.original_max_position_embeddings = 8192;
  for (const RopeConfig& c : {none, lin, l3}) {
    auto got = rope_inv_freq(c, 128);
    auto ref = ref_inv_freq(c, 128);
    ASSERT_EQ(got.size(), 64u);
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-6 * ref[i]) << i;
  }
  // The llama3 bands really are all exercised: highest frequency kept, lowest
  // divided by factor, and at least one blended value strictly between.
  RopeConfig plain3;
  plain3.theta = 500000;
  auto base = rope_inv_freq(plain3, 128);
  auto scaled = rope_inv_freq(l3, 128);
  EXPECT_FLOAT_EQ(scaled[0], base[0]);
  EXPECT_FLOAT_EQ(scaled[63], base[63] / 8);
  int blended = 0;
  for (int i = 0; i < 64; ++i) blended += scaled[i] < base[i] * 0.99f && scaled[i] > base[i] / 8 * 1.01f;
  EXPECT_GT(blended, 0);
  EXPECT_NEAR(rope_inv_freq(lin, 8)[1], 0.1 / 4, 1e-8);  // 10000^(-2/8) / 4
}

TEST(CpuOps, RopeAndCacheWrite) {
  CpuBackend be(3);
  const int64_t t_count = 5, hq = 6, hkv = 2, d = 16, block_size = 4, num_blocks = 3;
  RopeConfig rope;
  rope.theta = 10000;
  ForwardInputs in;
  in.positions = {0, 1, 7, 300, 4095};
  in.token_ids.assign(t_count, 0);
  in.slot_mapping = {5, 0, -1, 11, 6};  // -1: padding, not cached
  auto q0 = random_vec(t_count * hq * d, 20), k0 = random_vec(t_count * hkv * d, 21),
       v = random_vec(t_count * hkv * d, 22);
  std::vector<float> q = q0, k = k0;
  std::vector<float> kc(num_blocks * block_size * hkv * d, 99.0f), vc = kc;
  Tensor qt = Tensor::f32(q.data(), {t_count, hq * d}), kt = Tensor::f32(k.data(), {t_count, hkv * d});
  Tensor kct = Tensor::f32(kc.data(), {num_blocks, block_size, hkv, d}),
         vct = Tensor::f32(vc.data(), {num_blocks, block_size, hkv, d});
  be.rope_and_cache_write(qt, kt, Tensor::f32(v.data(), {t_count, hkv * d}), in, rope, d, kct, vct);

  auto rotated = [&](const std::vector<float>& x, int64_t heads) {
    std::vector<double> out(x.size());
    for (int64_t t = 0; t < t_count; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < d / 2; ++i) {
          const double ang = in.positions[t] * std::pow(10000.0, -2.0 * i / d);
          const double a = x[(t * heads + h) * d + i], b = x[(t * heads + h) * d + i + d / 2];
          out[(t * heads + h) * d + i] = a * std::cos(ang) - b * std::sin(ang);
          out[(t * heads + h) * d + i + d / 2] = b * std::cos(ang) + a * std::sin(ang);
        }
    return out;
  };
  // Angles up to ~4095 rad are float32 products (as in HF), hence the looser bound.
  expect_close(q, rotated(q0, hq), 2e-4);
  expect_close(k, rotated(k0, hkv), 2e-4);
  for (int64_t s = 0; s < num_blocks * block_size; ++s) {
    auto it = std::find(in.slot_mapping.begin(), in.slot_mapping.end(), s);
    for (int64_t i = 0; i < hkv * d; ++i) {
      if (it == in.slot_mapping.end()) {
        ASSERT_EQ(kc[s * hkv * d + i], 99.0f) << "slot " << s << " written";
        ASSERT_EQ(vc[s * hkv * d + i], 99.0f);
      } else {
        const int64_t t = it - in.slot_mapping.begin();
        ASSERT_EQ(kc[s * hkv * d + i], k[t * hkv * d + i]);  // the rotated k
        ASSERT_EQ(vc[s * hkv * d + i], v[t * hkv * d + i]);
      }
    }
  }
}

// Three sequences with different cached lengths and chunk sizes (a fresh
// prefill, a decode, a later prefill chunk), non-contiguous block tables and
// chunks crossing block boundaries, vs dense causal softmax attention.
// The fast precision runs the AVX2 kernel (attention_avx2.cpp) on the same inputs.
void check_paged_attention(int64_t hq, int64_t hkv, CpuPrecision precision = CpuPrecision::kExact, int64_t d = 16) {
  CpuBackend be(3, precision);
  const int64_t block_size = 4, num_blocks = 24, max_blocks = 8;
  const std::vector<int32_t> cached = {0, 21, 13}, chunk = {7, 1, 9};
  const int64_t b_count = 3;
  ForwardInputs in;
  in.max_blocks_per_seq = max_blocks;
  in.query_start_loc = {0};
  std::vector<int32_t> pool(num_blocks);
  for (int i = 0; i < num_blocks; ++i) pool[i] = i;
  std::shuffle(pool.begin(), pool.end(), std::mt19937(123));
  in.block_tables.assign(b_count * max_blocks, -1);
  int next = 0;
  for (int64_t b = 0; b < b_count; ++b) {
    in.seq_lens.push_back(cached[b] + chunk[b]);
    in.query_start_loc.push_back(in.query_start_loc.back() + chunk[b]);
    for (int64_t j = 0; j < (in.seq_lens[b] + block_size - 1) / block_size; ++j)
      in.block_tables[b * max_blocks + j] = pool[next++];
  }
  const int64_t t_count = in.query_start_loc.back();
  in.token_ids.assign(t_count, 0);
  // Dense per-sequence K/V [ctx, hkv, d], scattered into the paged cache.
  std::vector<std::vector<float>> dk(b_count), dv(b_count);
  std::vector<float> kc(num_blocks * block_size * hkv * d, NAN), vc = kc;
  for (int64_t b = 0; b < b_count; ++b) {
    dk[b] = random_vec(in.seq_lens[b] * hkv * d, 40 + b, -2, 2);
    dv[b] = random_vec(in.seq_lens[b] * hkv * d, 50 + b);
    for (int64_t j = 0; j < in.seq_lens[b]; ++j) {
      const int64_t slot = in.block_tables[b * max_blocks + j / block_size] * block_size + j % block_size;
      std::copy_n(dk[b].begin() + j * hkv * d, hkv * d, kc.begin() + slot * hkv * d);
      std::copy_n(dv[b].begin() + j * hkv * d, hkv * d, vc.begin() + slot * hkv * d);
    }
  }
  auto q = random_vec(t_count * hq * d, 60, -2, 2);
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<double> ref(t_count * hq * d);
  for (int64_t b = 0; b < b_count; ++b)
    for (int64_t i = 0; i < chunk[b]; ++i) {
      const int64_t t = in.query_start_loc[b] + i, pos = cached[b] + i;
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t kvh = h / (hq / hkv);
        std::vector<double> p(pos + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= pos; ++j) {
          double s = 0;
          for (int64_t e = 0; e < d; ++e) s += double(q[(t * hq + h) * d + e]) * dk[b][(j * hkv + kvh) * d + e];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        for (auto& x : p) sum += (x = std::exp(x - mx));
        for (int64_t e = 0; e < d; ++e) {
          double o = 0;
          for (int64_t j = 0; j <= pos; ++j) o += p[j] / sum * dv[b][(j * hkv + kvh) * d + e];
          ref[(t * hq + h) * d + e] = o;
        }
      }
    }
  std::vector<float> out(t_count * hq * d);
  Tensor ot = Tensor::f32(out.data(), {t_count, hq * d});
  be.paged_attention(Tensor::f32(q.data(), {t_count, hq * d}), Tensor::f32(kc.data(), {num_blocks, block_size, hkv, d}),
                     Tensor::f32(vc.data(), {num_blocks, block_size, hkv, d}), in, hq, float(scale), ot);
  expect_close(out, ref);
}

TEST(CpuOps, PagedAttentionVarlenMha) { check_paged_attention(2, 2); }
TEST(CpuOps, PagedAttentionVarlenGqa3) { check_paged_attention(6, 2); }
TEST(CpuOps, PagedAttentionVarlenGqa4) { check_paged_attention(8, 2); }
TEST(CpuOps, PagedAttentionFastMha) { check_paged_attention(2, 2, CpuPrecision::kFast); }
TEST(CpuOps, PagedAttentionFastGqa3HeadDim64) { check_paged_attention(6, 2, CpuPrecision::kFast, 64); }
TEST(CpuOps, PagedAttentionFastHeadDim24) { check_paged_attention(3, 1, CpuPrecision::kFast, 24); }

}  // namespace
}  // namespace ember
