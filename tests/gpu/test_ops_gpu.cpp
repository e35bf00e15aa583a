// The CUDA ops (kernels/cuda/ops.h) against the float32 CpuBackend on float
// copies of the same bf16 inputs: fresh random inputs per case, outputs poisoned
// with NaN before each run, every element compared. Copies (embedding, gather,
// the v cache write, conversions) must be bit exact; arithmetic ops must land
// under a relative L2 error of 1e-2 (bf16 output rounding alone is ~2e-3).
// Runs only on a GPU machine; without one every test FAILS.

#include <algorithm>
#include <numeric>
#include <tuple>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/ops_test_util.h"

namespace ember {
namespace {

using gputest::bf16;
using gputest::compare;
using gputest::DeviceBuffer;
using gputest::to_floats;

constexpr double kBf16Tol = 1e-2;
constexpr double kWorstTol = 0.1;  // one element off by > 10% of the RMS is a bug, not rounding

CpuBackend& cpu() {
  static CpuBackend backend(4);
  return backend;
}

// Embedding and gather_rows: the same kernel; H not a multiple of 8 takes the scalar path.
TEST(OpsGpu, EmbeddingAndGatherAreExactCopies) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  std::mt19937 rng(11);
  for (int64_t h : {64, 100, 576, 4096, 8190}) {
    for (int64_t t : {1, 7, 300}) {
      const int64_t v = 1000;
      std::vector<float> table_f;
      auto table = gputest::random_bf16(v * h, rng, table_f);
      std::vector<int32_t> ids(t);
      std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(v - 1));
      for (auto& id : ids) id = pick(rng);
      DeviceBuffer<bf16> d_table(v * h), d_out(t * h);
      DeviceBuffer<int32_t> d_ids(t);
      d_table.upload(table);
      d_ids.upload(ids);
      std::vector<float> ref(t * h), ref_gather(t * h);
      ForwardInputs in;
      in.token_ids = ids;
      in.logits_indices = ids;
      Tensor tt = Tensor::f32(table_f.data(), {v, h}), out = Tensor::f32(ref.data(), {t, h});
      Tensor out_gather = Tensor::f32(ref_gather.data(), {t, h});
      cpu().embedding(tt, in, out);
      cpu().gather_logit_rows(tt, in, out_gather);
      for (int op = 0; op < 2; ++op) {
        d_out.poison();
        Status s = op == 0 ? gpu::embedding(d_table.get(), d_ids.get(), t, h, d_out.get(), nullptr)
                           : gpu::gather_rows(d_table.get(), d_ids.get(), t, h, d_out.get(), nullptr);
        ASSERT_TRUE(s.ok()) << s.error().message;
        const auto got = to_floats(d_out.download());
        int64_t diff = 0;
        const auto& want = op == 0 ? ref : ref_gather;
        for (int64_t i = 0; i < t * h; ++i) diff += !(got[i] == want[i]);
        EXPECT_EQ(diff, 0) << (op ? "gather" : "embedding") << " h=" << h << " t=" << t;
      }
    }
  }
}

struct NormCase {
  int64_t m, h;
  bool residual, alias;
};

void check_rms_norm(const NormCase& c, std::mt19937& rng) {
  const int64_t n = c.m * c.h;
  std::vector<float> x_f, r_f, w_f;
  auto x = gputest::random_bf16(n, rng, x_f);
  auto r = gputest::random_bf16(n, rng, r_f, 2.0f);
  std::normal_distribution<float> wd(1.0f, 0.3f);
  w_f.resize(c.h);
  for (auto& w : w_f) w = wd(rng);
  DeviceBuffer<bf16> d_x(n), d_r(n), d_out(n);
  DeviceBuffer<float> d_w(c.h);
  d_x.upload(x);
  d_r.upload(r);
  ASSERT_EQ(cudaMemcpy(d_w.get(), w_f.data(), c.h * 4, cudaMemcpyHostToDevice), cudaSuccess);
  d_out.poison();
  bf16* out = c.alias ? d_x.get() : d_out.get();
  const float eps = 1e-5f;
  Status s = gpu::rms_norm(d_x.get(), c.residual ? d_r.get() : nullptr, d_w.get(), eps, c.m, c.h, out, nullptr);
  ASSERT_TRUE(s.ok()) << s.error().message;
  const auto got = to_floats(c.alias ? d_x.download() : d_out.download());

  // The GPU stores bf16(x + residual) and normalizes that; the CPU backend's
  // float sum, rounded once, must match the stored residual bit for bit.
  std::vector<float> src = x_f;
  if (c.residual) {
    std::vector<float> res = r_f, scratch(n);
    Tensor xt = Tensor::f32(x_f.data(), {c.m, c.h}), rt = Tensor::f32(res.data(), {c.m, c.h});
    Tensor wt = Tensor::f32(w_f.data(), {c.h}), st = Tensor::f32(scratch.data(), {c.m, c.h});
    cpu().rms_norm(xt, &rt, wt, eps, st);
    const auto got_res = to_floats(d_r.download());
    int64_t diff = 0;
    for (int64_t i = 0; i < n; ++i) {
      src[i] = gputest::to_float(gputest::to_bf16(res[i]));
      diff += !(got_res[i] == src[i]);
    }
    EXPECT_EQ(diff, 0) << "residual m=" << c.m << " h=" << c.h;
  }
  std::vector<float> ref(n);
  Tensor st = Tensor::f32(src.data(), {c.m, c.h}), wt = Tensor::f32(w_f.data(), {c.h});
  Tensor rt = Tensor::f32(ref.data(), {c.m, c.h});
  cpu().rms_norm(st, nullptr, wt, eps, rt);
  const auto e = compare(got, ref);
  EXPECT_EQ(e.non_finite, 0) << "m=" << c.m << " h=" << c.h;
  EXPECT_LT(e.rel_l2, kBf16Tol) << "m=" << c.m << " h=" << c.h << " residual=" << c.residual;
  EXPECT_LT(e.worst_rel, kWorstTol) << "m=" << c.m << " h=" << c.h;
}

// Every launch shape: 1, 2, 4, 8 vectors a thread, the scalar path (H % 8 != 0
// and H > 32768), each with and without the fused residual and out == x.
TEST(OpsGpu, RmsNormMatchesCpu) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  std::mt19937 rng(22);
  for (int64_t h : {64, 100, 576, 1536, 2048, 4096, 8192, 14336, 40000}) {
    for (int64_t m : {1, 3, 67}) {
      for (int variant = 0; variant < 4; ++variant) {
        SCOPED_TRACE(testing::Message() << "h=" << h << " m=" << m << " variant=" << variant);
        check_rms_norm({m, h, (variant & 1) != 0, (variant & 2) != 0}, rng);
      }
    }
  }
}

TEST(OpsGpu, SiluMulMatchesCpu) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  std::mt19937 rng(33);
  for (int64_t inter : {64, 100, 1536, 14336}) {
    for (int64_t m : {1, 5, 300}) {
      std::vector<float> x_f;
      auto x = gputest::random_bf16(m * 2 * inter, rng, x_f, 3.0f);
      DeviceBuffer<bf16> d_x(m * 2 * inter), d_out(m * inter);
      d_x.upload(x);
      d_out.poison();
      Status s = gpu::silu_mul(d_x.get(), m, inter, d_out.get(), nullptr);
      ASSERT_TRUE(s.ok()) << s.error().message;
      std::vector<float> ref(m * inter);
      Tensor xt = Tensor::f32(x_f.data(), {m, 2 * inter}), rt = Tensor::f32(ref.data(), {m, inter});
      cpu().silu_mul(xt, rt);
      const auto e = compare(to_floats(d_out.download()), ref);
      EXPECT_EQ(e.non_finite, 0) << "m=" << m << " inter=" << inter;
      EXPECT_LT(e.rel_l2, kBf16Tol) << "m=" << m << " inter=" << inter;
      EXPECT_LT(e.worst_rel, kWorstTol) << "m=" << m << " inter=" << inter;
    }
  }
}

struct RopeCase {
  int64_t t, hq, hkv, d;
};

// q/k rotated in place against the CPU; every written cache slot holds exactly
// the GPU's rotated k and the input v; every other slot keeps its poison.
void check_rope(const RopeCase& c, std::mt19937& rng) {
  const int64_t block_size = 16;
  const int64_t num_blocks = (c.t * 3 / 2 + block_size - 1) / block_size + 1;
  const int64_t slots = num_blocks * block_size, row = c.hkv * c.d;
  std::vector<float> q_f, k_f, v_f;
  auto q = gputest::random_bf16(c.t * c.hq * c.d, rng, q_f);
  auto k = gputest::random_bf16(c.t * row, rng, k_f);
  auto v = gputest::random_bf16(c.t * row, rng, v_f);
  ForwardInputs in;
  in.token_ids.assign(c.t, 0);
  in.positions.resize(c.t);
  std::uniform_int_distribution<int32_t> pos(0, 32768);
  for (auto& p : in.positions) p = pos(rng);
  std::vector<int64_t> perm(slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  in.slot_mapping.assign(perm.begin(), perm.begin() + c.t);
  for (int64_t i = 4; i < c.t; i += 5) in.slot_mapping[i] = -1;  // padding tokens: rotated, not cached
  RopeConfig rope;
  rope.theta = 500000.0;
  rope.scaling = RopeScalingKind::kLlama3;
  rope.factor = 8.0;
  rope.original_max_position_embeddings = 8192;
  const std::vector<float> inv_freq = rope_inv_freq(rope, c.d);

  DeviceBuffer<bf16> d_q(q.size()), d_k(k.size()), d_v(v.size()), d_kc(slots * row), d_vc(slots * row);
  DeviceBuffer<int32_t> d_pos(c.t);
  DeviceBuffer<int64_t> d_slots(c.t);
  DeviceBuffer<float> d_inv(inv_freq.size());
  d_q.upload(q);
  d_k.upload(k);
  d_v.upload(v);
  d_pos.upload(in.positions);
  d_slots.upload(in.slot_mapping);
  d_inv.upload(inv_freq);
  d_kc.poison();
  d_vc.poison();
  Status s = gpu::rope_and_cache_write(d_q.get(), d_k.get(), d_v.get(), d_pos.get(), d_slots.get(), d_inv.get(), c.t,
                                       c.hq, c.hkv, c.d, d_kc.get(), d_vc.get(), nullptr);
  ASSERT_TRUE(s.ok()) << s.error().message;

  std::vector<float> kc_f(slots * row, 0.0f), vc_f(slots * row, 0.0f);
  Tensor qt = Tensor::f32(q_f.data(), {c.t, c.hq * c.d}), kt = Tensor::f32(k_f.data(), {c.t, row});
  Tensor vt = Tensor::f32(v_f.data(), {c.t, row});
  Tensor kct = Tensor::f32(kc_f.data(), {num_blocks, block_size, c.hkv, c.d});
  Tensor vct = Tensor::f32(vc_f.data(), {num_blocks, block_size, c.hkv, c.d});
  cpu().rope_and_cache_write(qt, kt, vt, in, rope, c.d, kct, vct);

  const auto got_q = d_q.download(), got_k = d_k.download(), got_kc = d_kc.download(), got_vc = d_vc.download();
  for (auto [got, ref, name] : {std::tuple{&got_q, &q_f, "q"}, std::tuple{&got_k, &k_f, "k"}}) {
    const auto e = compare(to_floats(*got), *ref);
    EXPECT_EQ(e.non_finite, 0) << name;
    EXPECT_LT(e.rel_l2, kBf16Tol) << name;
    EXPECT_LT(e.worst_rel, kWorstTol) << name;
  }
  std::vector<int64_t> token_of_slot(slots, -1);
  for (int64_t t = 0; t < c.t; ++t)
    if (in.slot_mapping[t] >= 0) token_of_slot[in.slot_mapping[t]] = t;
  int64_t bad_k = 0, bad_v = 0, touched = 0;
  for (int64_t sl = 0; sl < slots; ++sl) {
    const int64_t t = token_of_slot[sl];
    for (int64_t j = 0; j < row; ++j) {
      const uint16_t kb = gputest::bits_of(got_kc[sl * row + j]), vb = gputest::bits_of(got_vc[sl * row + j]);
      if (t < 0) {
        touched += kb != 0xFFFF || vb != 0xFFFF;
      } else {
        bad_k += kb != gputest::bits_of(got_k[t * row + j]);
        bad_v += vb != gputest::bits_of(v[t * row + j]);
      }
    }
  }
  EXPECT_EQ(bad_k, 0) << "k cache rows differ from the rotated k";
  EXPECT_EQ(bad_v, 0) << "v cache rows differ from v";
  EXPECT_EQ(touched, 0) << "slots outside slot_mapping were written";
  // The fused form (q, k, v as column ranges of one [T, (Hq + 2 Hkv) D]
  // projection) writes bit for bit what the split form wrote.
  {
    const int64_t qd = c.hq * c.d, width = qd + 2 * row;
    std::vector<typename decltype(q)::value_type> qkv(static_cast<size_t>(c.t * width));
    for (int64_t t = 0; t < c.t; ++t) {
      std::copy_n(q.begin() + t * qd, qd, qkv.begin() + t * width);
      std::copy_n(k.begin() + t * row, row, qkv.begin() + t * width + qd);
      std::copy_n(v.begin() + t * row, row, qkv.begin() + t * width + qd + row);
    }
    DeviceBuffer<bf16> d_qkv(qkv.size()), d_q2(q.size()), d_kc2(slots * row), d_vc2(slots * row);
    d_qkv.upload(qkv);
    d_q2.poison();
    d_kc2.poison();
    d_vc2.poison();
    gpu::QkvRows rows;
    rows.q_in = d_qkv.get();
    rows.q_out = d_q2.get();
    rows.q_stride = width;
    rows.k_in = d_qkv.get() + qd;
    rows.k_stride = width;
    rows.v_in = d_qkv.get() + qd + row;
    rows.v_stride = width;
    Status fs = gpu::rope_qkv_and_cache_write(rows, d_pos.get(), d_slots.get(), d_inv.get(), c.t, c.hq, c.hkv, c.d,
                                              d_kc2.get(), d_vc2.get(), nullptr);
    ASSERT_TRUE(fs.ok()) << fs.error().message;
    const auto fq = d_q2.download(), fkc = d_kc2.download(), fvc = d_vc2.download();
    int64_t diff_q = 0, diff_k = 0, diff_v = 0;
    for (size_t i = 0; i < fq.size(); ++i) diff_q += gputest::bits_of(fq[i]) != gputest::bits_of(got_q[i]);
    for (size_t i = 0; i < fkc.size(); ++i) {
      diff_k += gputest::bits_of(fkc[i]) != gputest::bits_of(got_kc[i]);
      diff_v += gputest::bits_of(fvc[i]) != gputest::bits_of(got_vc[i]);
    }
    EXPECT_EQ(diff_q, 0) << "fused q differs from the split op's";
    EXPECT_EQ(diff_k, 0) << "fused k cache differs from the split op's";
    EXPECT_EQ(diff_v, 0) << "fused v cache differs from the split op's";
  }

  // The written k rows against the CPU backend's cache rows.
  std::vector<float> gpu_rows, cpu_rows;
  for (int64_t sl = 0; sl < slots; ++sl) {
    if (token_of_slot[sl] < 0) continue;
    for (int64_t j = 0; j < row; ++j) {
      gpu_rows.push_back(gputest::to_float(got_kc[sl * row + j]));
      cpu_rows.push_back(kc_f[sl * row + j]);
    }
  }
  const auto e = compare(gpu_rows, cpu_rows);
  EXPECT_EQ(e.non_finite, 0);
  EXPECT_LT(e.rel_l2, kBf16Tol) << "k cache";
}

// D 64 (SmolLM2) and 128 (Llama) on the vector path, 72 on the scalar path
// (D/2 not a multiple of 8), 16 the smallest vector case; positions to 32k
// with llama3-scaled frequencies.
TEST(OpsGpu, RopeAndCacheWriteMatchesCpu) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  std::mt19937 rng(55);
  for (const RopeCase shape :
       {RopeCase{0, 9, 3, 64}, RopeCase{0, 32, 8, 128}, RopeCase{0, 4, 2, 72}, RopeCase{0, 2, 1, 16}}) {
    for (int64_t t : {1, 17, 300}) {
      RopeCase c = shape;
      c.t = t;
      SCOPED_TRACE(testing::Message() << "t=" << t << " hq=" << c.hq << " hkv=" << c.hkv << " d=" << c.d);
      check_rope(c, rng);
    }
  }
}

TEST(OpsGpu, ConversionsRoundToNearestEven) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  std::mt19937 rng(44);
  for (int64_t n : {1, 1000, 1 << 20}) {
    std::vector<float> src(n);
    std::normal_distribution<float> g(0.0f, 100.0f);
    for (auto& v : src) v = g(rng);
    DeviceBuffer<float> d_src(n), d_back(n);
    DeviceBuffer<bf16> d_mid(n);
    ASSERT_EQ(cudaMemcpy(d_src.get(), src.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
    d_mid.poison();
    d_back.poison();
    ASSERT_TRUE(gpu::f32_to_bf16(d_src.get(), n, d_mid.get(), nullptr).ok());
    ASSERT_TRUE(gpu::bf16_to_f32(d_mid.get(), n, d_back.get(), nullptr).ok());
    const auto mid = d_mid.download();
    const auto back = d_back.download();
    int64_t diff = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bf16 want = gputest::to_bf16(src[i]);  // host RNE conversion of cuda_bf16.h
      diff += gputest::bits_of(mid[i]) != gputest::bits_of(want);
      diff += !(back[i] == gputest::to_float(want));
    }
    EXPECT_EQ(diff, 0) << "n=" << n;
  }
}

}  // namespace
}  // namespace ember
