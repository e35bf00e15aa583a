// The FP8 KV cache on the GPU (--kv-cache-dtype fp8, kernels/backend.h):
//   - the RoPE + cache write stores e4m3(rotated k / k_scale) and
//     e4m3(v / v_scale) as kernels/quant/fp8.h would on the host from the
//     same bf16 inputs: v codes bit for bit; k codes at most one code apart
//     (the host's sin/cos may differ from sincosf by an ulp), almost all equal;
//     q and k_out bit for bit the bf16-cache write's;
//   - decode, prefill and mixed attention over an FP8 cache equal the bf16
//     kernels over the dequantized cache (power-of-two scales: code * scale is
//     exact in bf16, so only fp32 rounding differs), and the fp32 reference
//     over an FP8 cache with arbitrary scales.
// The whole-model check (an FP8-cache runner against the bf16-cache one) is in
// test_cuda_runner.cpp. Runs only on a GPU machine of compute capability 8.9+.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/ops.h"
#include "kernels/quant/fp8.h"
#include "tests/gpu/attention_reference.h"
#include "tests/gpu/ops_test_util.h"

namespace ember {
namespace {

using gputest::bf16;
using gputest::DeviceBuffer;

void require_fp8() {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  ASSERT_TRUE(gpu::fp8_supported(0)) << "this GPU has no FP8 (compute capability < 8.9)";
}

// E4M3 codes in value order (sign and magnitude; +0 and -0 alike): codes one
// rounding step apart differ by 1.
int code_order(uint8_t code) { return code & 0x80 ? -(code & 0x7F) : (code & 0x7F); }

struct RopeCase {
  int64_t t, hq, hkv, d;
  bool fused;  // q, k, v as column ranges of one projection, no k_out
};

void check_rope_fp8(const RopeCase& c, std::mt19937& rng) {
  const int64_t block_size = 16, num_blocks = (c.t * 3 / 2 + block_size - 1) / block_size + 1;
  const int64_t slots = num_blocks * block_size, row = c.hkv * c.d, qd = c.hq * c.d, width = qd + 2 * row;
  const float k_scale = 0.0371f, v_scale = 0.0123f;
  std::vector<float> qkv_f;
  auto qkv = gputest::random_bf16(c.t * width, rng, qkv_f);
  // Some v beyond 448 * v_scale: the codes saturate at +-448.
  for (int64_t i = qd + row; i < c.t * width; i += 97) {
    qkv[i] = gputest::to_bf16(i % 2 ? 8.0f : -9.0f);
    qkv_f[i] = gputest::to_float(qkv[i]);
  }
  std::vector<int32_t> positions(c.t);
  std::uniform_int_distribution<int32_t> pos(0, 32768);
  for (auto& p : positions) p = pos(rng);
  std::vector<int64_t> perm(slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int64_t> slot_mapping(perm.begin(), perm.begin() + c.t);
  for (int64_t i = 4; i < c.t; i += 5) slot_mapping[i] = -1;  // padding tokens: rotated, not cached
  RopeConfig rope;
  rope.theta = 500000.0;
  const std::vector<float> inv_freq = rope_inv_freq(rope, c.d);

  // The split form's rows are packed (q [T, Hq*D], k and v [T, Hkv*D], each rotated in place: QkvRows' contract),
  // one after the other in the buffer; the fused form's are the projection's [T, width] rows.
  std::vector<bf16> input = qkv;
  if (!c.fused) {
    for (int64_t t = 0; t < c.t; ++t) {
      std::copy_n(qkv.begin() + t * width, qd, input.begin() + t * qd);
      std::copy_n(qkv.begin() + t * width + qd, row, input.begin() + c.t * qd + t * row);
      std::copy_n(qkv.begin() + t * width + qd + row, row, input.begin() + c.t * (qd + row) + t * row);
    }
  }
  DeviceBuffer<bf16> d_qkv(qkv.size()), d_qkv_bf16(qkv.size()), d_q(c.t * qd), d_q_bf16(c.t * qd);
  DeviceBuffer<bf16> d_kc_bf16(slots * row), d_vc_bf16(slots * row);
  DeviceBuffer<uint8_t> d_kc(slots * row), d_vc(slots * row);
  DeviceBuffer<int32_t> d_pos(c.t);
  DeviceBuffer<int64_t> d_slots(c.t);
  DeviceBuffer<float> d_inv(inv_freq.size()), d_scales(2);
  d_qkv.upload(input);
  d_qkv_bf16.upload(input);
  d_pos.upload(positions);
  d_slots.upload(slot_mapping);
  d_inv.upload(inv_freq);
  d_scales.upload({k_scale, v_scale});
  d_kc.poison();
  d_vc.poison();
  d_q.poison();
  d_q_bf16.poison();
  // The same call into an FP8 and a bf16 cache: q (and k_out) must not care.
  auto rows_of = [&](bf16* base, bf16* q_out) {
    if (c.fused) return gputest::fused_qkv_rows(base, q_out, qd, row);
    gpu::QkvRows r;
    r.q_in = r.q_out = base;
    r.q_stride = qd;
    r.k_in = r.k_out = base + c.t * qd;
    r.k_stride = row;
    r.v_in = base + c.t * (qd + row);
    r.v_stride = row;
    return r;
  };
  const gpu::Fp8KvCache fp8{d_kc.get(), d_vc.get(), d_scales.get(), d_scales.get() + 1};
  Status s = gpu::rope_qkv_and_cache_write(rows_of(d_qkv.get(), d_q.get()), d_pos.get(), d_slots.get(), d_inv.get(),
                                           c.t, c.hq, c.hkv, c.d, fp8, nullptr);
  ASSERT_TRUE(s.ok()) << s.error().message;
  s = gpu::rope_qkv_and_cache_write(rows_of(d_qkv_bf16.get(), d_q_bf16.get()), d_pos.get(), d_slots.get(), d_inv.get(),
                                    c.t, c.hq, c.hkv, c.d, d_kc_bf16.get(), d_vc_bf16.get(), nullptr);
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  const auto got_kc = d_kc.download(), got_vc = d_vc.download();
  const auto q_pair =
      c.fused ? std::pair{d_q.download(), d_q_bf16.download()} : std::pair{d_qkv.download(), d_qkv_bf16.download()};
  int64_t rotated_diffs = 0;
  for (size_t i = 0; i < q_pair.first.size(); ++i)
    rotated_diffs += gputest::bits_of(q_pair.first[i]) != gputest::bits_of(q_pair.second[i]);
  EXPECT_EQ(rotated_diffs, 0) << "rotated q / k_out differ from the bf16-cache write's";

  // The host reference: the same float32 rotation of the same bf16 inputs.
  std::vector<int64_t> token_of_slot(slots, -1);
  for (int64_t t = 0; t < c.t; ++t)
    if (slot_mapping[t] >= 0) token_of_slot[slot_mapping[t]] = t;
  const int64_t half = c.d / 2;
  int64_t k_far = 0, k_off_by_one = 0, v_diffs = 0, touched = 0, cached = 0;
  for (int64_t sl = 0; sl < slots; ++sl) {
    const int64_t t = token_of_slot[sl];
    if (t < 0) {
      for (int64_t j = 0; j < row; ++j) touched += got_kc[sl * row + j] != 0xFF || got_vc[sl * row + j] != 0xFF;
      continue;
    }
    const float* k = qkv_f.data() + t * width + qd;
    const float* v = k + row;
    for (int64_t h = 0; h < c.hkv; ++h) {
      for (int64_t i = 0; i < c.d; ++i) {
        const int64_t p = i % half;
        const float angle = static_cast<float>(positions[t]) * inv_freq[p];
        const float cs = std::cos(angle), sn = std::sin(angle);
        const float a = k[h * c.d + p], b = k[h * c.d + half + p];
        const float rotated = i < half ? a * cs - b * sn : b * cs + a * sn;
        const uint8_t want = quant::fp8_e4m3_from_float(rotated / k_scale);
        const int off = std::abs(code_order(got_kc[sl * row + h * c.d + i]) - code_order(want));
        k_far += off > 1;
        k_off_by_one += off == 1;
        ++cached;
      }
    }
    for (int64_t j = 0; j < row; ++j) v_diffs += got_vc[sl * row + j] != quant::fp8_e4m3_from_float(v[j] / v_scale);
  }
  EXPECT_EQ(v_diffs, 0) << "v codes differ from kernels/quant/fp8.h's";
  EXPECT_EQ(k_far, 0) << "k codes more than one step from the host rotation's";
  // A flip needs the two rotations (a few float ulps apart) to straddle a code
  // boundary: ~1e-5 of the elements. Double rounding (through bf16) flips ~1%.
  EXPECT_LE(k_off_by_one, cached / 1000) << "k codes one step off: " << k_off_by_one << " of " << cached;
  EXPECT_EQ(touched, 0) << "slots outside slot_mapping were written";
}

// D 128 and 64 on the vector path, 72 on the scalar one; the split and the
// fused (strided rows, no k_out) forms.
TEST(KvFp8Gpu, RopeCacheWriteQuantizesLikeTheHost) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(29);
  for (const RopeCase c : {RopeCase{300, 32, 8, 128, false}, RopeCase{17, 8, 2, 128, true},
                           RopeCase{33, 9, 3, 64, true}, RopeCase{40, 4, 2, 72, false}}) {
    SCOPED_TRACE(testing::Message() << "t=" << c.t << " hq=" << c.hq << " hkv=" << c.hkv << " d=" << c.d
                                    << (c.fused ? " fused" : ""));
    check_rope_fp8(c, rng);
  }
}

// --calculate-kv-scales' op on the GPU against the CPU backend's on the same (bf16) values: rows of a fused q/k/v
// projection, K's scale from its rotation pairs, V's from its elements, and a scale kept when the columns are zero.
TEST(KvFp8Gpu, SetKvScaleMatchesTheCpuBackend) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  std::mt19937 rng(31);
  CpuBackend cpu(1);
  for (const RopeCase c :
       {RopeCase{300, 32, 8, 128, true}, RopeCase{1, 4, 2, 64, true}, RopeCase{4097, 9, 3, 64, true}}) {
    SCOPED_TRACE(testing::Message() << "t=" << c.t << " hq=" << c.hq << " hkv=" << c.hkv << " d=" << c.d);
    const int64_t row = c.hkv * c.d, qd = c.hq * c.d, width = qd + 2 * row;
    std::vector<float> x_f;
    auto x = gputest::random_bf16(c.t * width, rng, x_f, 3.0f);
    DeviceBuffer<bf16> xd(x.size());
    xd.upload(x);
    DeviceBuffer<float> scales(3);
    scales.upload({1.0f, 1.0f, 0.5f});
    ASSERT_TRUE(gpu::kv_scale_from_max(xd.get(), c.t, width, qd, row, c.d, 200.0f, scales.get(), nullptr).ok());
    ASSERT_TRUE(gpu::kv_scale_from_max(xd.get(), c.t, width, qd + row, row, 0, 100.0f, scales.get() + 1, nullptr).ok());
    std::vector<bf16> zeros(x.size(), gputest::to_bf16(0.0f));
    DeviceBuffer<bf16> zd(zeros.size());
    zd.upload(zeros);
    ASSERT_TRUE(gpu::kv_scale_from_max(zd.get(), c.t, width, qd, row, c.d, 200.0f, scales.get() + 2, nullptr).ok());
    const std::vector<float> got = scales.download();
    float want_k = 1.0f, want_v = 1.0f;
    uint8_t code = 0;
    const Tensor xt = Tensor::f32(x_f.data(), {c.t, width});
    Tensor kc = Tensor::of(&code, DType::kF8E4M3, {1, 1, 1, 1}), vc = kc;
    kc.scale = &want_k;
    vc.scale = &want_v;
    cpu.set_kv_scale(xt, qd, row, c.d, 200.0f, kc);
    cpu.set_kv_scale(xt, qd + row, row, 0, 100.0f, vc);
    EXPECT_NEAR(got[0], want_k, 1e-6f * want_k);
    EXPECT_NEAR(got[1], want_v, 1e-6f * want_v);
    EXPECT_NE(want_k, 1.0f);
    EXPECT_EQ(got[2], 0.5f);
  }
}

struct AttnCase {
  std::string name;
  int hq, hkv, d, bs;
  std::vector<int> q_lens, seq_lens;
};

// One case's inputs: random q, a cache of random codes, shuffled block
// tables; run() launches a kernel over the FP8 cache or over its bf16
// dequantization.
class Fp8Attention {
 public:
  Fp8Attention(const AttnCase& c, uint32_t seed) : c_(c) {
    std::mt19937 rng(seed);
    qsl_.assign(1, 0);
    for (int q : c.q_lens) qsl_.push_back(qsl_.back() + q);
    int total_blocks = 2;
    for (int s : c.seq_lens) {
      max_blocks_ = std::max(max_blocks_, (s + c.bs - 1) / c.bs);
      total_blocks += (s + c.bs - 1) / c.bs;
    }
    std::vector<int32_t> perm(total_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    size_t next = 0;
    for (int s : c.seq_lens)
      for (int i = 0; i < max_blocks_; ++i) tables_.push_back(i < (s + c.bs - 1) / c.bs ? perm[next++] : perm[0]);
    std::vector<float> unused;
    q_ = gputest::random_bf16(static_cast<size_t>(qsl_.back()) * c.hq * c.d, rng, unused, 2.0f);
    const size_t cache = static_cast<size_t>(total_blocks) * c.bs * c.hkv * c.d;
    std::normal_distribution<float> value(0.0f, 1.0f);
    for (auto* codes : {&k_codes_, &v_codes_}) {
      codes->resize(cache);
      for (uint8_t& code : *codes) code = quant::fp8_e4m3_from_float(value(rng) * 64.0f);  // around code 64
    }
  }

  // kernel: "decode", "prefill64", "prefill128", "mixed" or "reference".
  // scales > 0: an FP8 cache read with them; else the bf16 cache of the codes
  // times -scales (rounded to bf16).
  std::vector<float> run(const std::string& kernel, float k_scale, float v_scale) {
    const bool fp8 = k_scale > 0;
    DeviceBuffer<bf16> d_q(q_.size()), d_out(q_.size()), d_kb(k_codes_.size()), d_vb(v_codes_.size());
    DeviceBuffer<uint8_t> d_k(k_codes_.size()), d_v(v_codes_.size());
    DeviceBuffer<int32_t> d_qsl(qsl_.size()), d_lens(c_.seq_lens.size()), d_tables(tables_.size());
    DeviceBuffer<float> d_scales(2);
    d_q.upload(q_);
    d_qsl.upload(qsl_);
    d_lens.upload(std::vector<int32_t>(c_.seq_lens.begin(), c_.seq_lens.end()));
    d_tables.upload(tables_);
    d_out.poison();
    PagedAttentionArgs a;
    if (fp8) {
      d_k.upload(k_codes_);
      d_v.upload(v_codes_);
      d_scales.upload({k_scale, v_scale});
      a.k_cache = d_k.get();
      a.v_cache = d_v.get();
      a.kv_fp8 = true;
      a.k_scale = d_scales.get();
      a.v_scale = d_scales.get() + 1;
    } else {
      d_kb.upload(dequantized(k_codes_, -k_scale));
      d_vb.upload(dequantized(v_codes_, -v_scale));
      a.k_cache = d_kb.get();
      a.v_cache = d_vb.get();
    }
    a.q = d_q.get();
    a.out = d_out.get();
    a.query_start_loc = d_qsl.get();
    a.seq_lens = d_lens.get();
    a.block_tables = d_tables.get();
    a.num_seqs = static_cast<int32_t>(c_.q_lens.size());
    a.num_tokens = qsl_.back();
    a.num_heads = c_.hq;
    a.num_kv_heads = c_.hkv;
    a.head_dim = c_.d;
    a.block_size = c_.bs;
    a.max_blocks_per_seq = max_blocks_;
    a.max_seq_len = *std::max_element(c_.seq_lens.begin(), c_.seq_lens.end());
    a.max_query_len = *std::max_element(c_.q_lens.begin(), c_.q_lens.end());
    a.scale = 1.0f / std::sqrt(static_cast<float>(c_.d));
    a.workspace_bytes =
        paged_attention_workspace_bytes(a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim, a.max_seq_len);
    DeviceBuffer<uint8_t> workspace(a.workspace_bytes);
    a.workspace = a.workspace_bytes ? workspace.get() : nullptr;
    Status st;
    if (kernel == "decode") {
      st = paged_attention_decode(a, nullptr);
    } else if (kernel == "mixed") {
      st = paged_attention_mixed(a, nullptr);
    } else if (kernel == "reference") {
      st = paged_attention_reference(a, nullptr);
    } else {
      a.prefill_rows = kernel == "prefill64" ? 64 : 128;
      st = paged_attention_prefill(a, nullptr);
    }
    EXPECT_TRUE(st.ok()) << kernel << ": " << (st.ok() ? "" : st.error().message);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << kernel;
    return gputest::to_floats(d_out.download());
  }

  bool all_decode() const {
    return std::all_of(c_.q_lens.begin(), c_.q_lens.end(), [](int q) { return q == 1; });
  }

 private:
  static std::vector<bf16> dequantized(const std::vector<uint8_t>& codes, float scale) {
    std::vector<bf16> out(codes.size());
    for (size_t i = 0; i < codes.size(); ++i) out[i] = gputest::to_bf16(quant::fp8_e4m3_to_float(codes[i]) * scale);
    return out;
  }

  AttnCase c_;
  std::vector<int32_t> qsl_, tables_;
  int max_blocks_ = 0;
  std::vector<bf16> q_;
  std::vector<uint8_t> k_codes_, v_codes_;
};

void check_attention(const AttnCase& c, uint32_t seed) {
  SCOPED_TRACE(c.name);
  Fp8Attention f(c, seed);
  std::vector<std::string> kernels = {"prefill64", "prefill128", "mixed"};
  if (f.all_decode()) kernels.insert(kernels.begin(), "decode");
  // Power-of-two scales: the bf16 kernel on the exact dequantized cache. The
  // logits are the same products scaled by the same power of two, and so are
  // the output's sums, so the two should agree to the bit; the bounds allow a
  // bf16 ulp here and there (an FMA contracted differently), and worst_rel
  // catches one wrong key or row that rel_l2 would average away.
  for (const std::string& kernel : kernels) {
    const auto got = f.run(kernel, 0.5f / 64, 2.0f / 64);
    const auto want = f.run(kernel, -0.5f / 64, -2.0f / 64);
    const auto e = gputest::compare(got, want);
    std::printf("[kv fp8] %-24s %-10s vs bf16 kernel rel_err %.3e worst %.3e\n", c.name.c_str(), kernel.c_str(),
                e.rel_l2, e.worst_rel);
    EXPECT_EQ(e.non_finite, 0) << kernel;
    EXPECT_LT(e.rel_l2, 1e-3) << kernel << " against the bf16 kernel on the dequantized cache";
    EXPECT_LT(e.worst_rel, 2e-2) << kernel << " against the bf16 kernel on the dequantized cache";
  }
  // Arbitrary scales: the fp32 reference over the same FP8 cache.
  const auto ref = f.run("reference", 0.0173f, 0.0291f);
  for (const std::string& kernel : kernels) {
    const auto e = gputest::compare(f.run(kernel, 0.0173f, 0.0291f), ref);
    std::printf("[kv fp8] %-24s %-10s vs reference rel_err %.3e\n", c.name.c_str(), kernel.c_str(), e.rel_l2);
    EXPECT_EQ(e.non_finite, 0) << kernel;
    EXPECT_LT(e.rel_l2, 1e-2) << kernel << " against the reference";
  }
}

std::vector<int> ones(size_t n) { return std::vector<int>(n, 1); }

// GQA groups of 1, 4 and 8, contexts across blocks and decode splits (4,100
// keys: several partitions merged), short and long prompts with cached
// context, decodes mixed into a prefill batch.
TEST(KvFp8Gpu, AttentionMatchesTheBf16KernelOnTheDequantizedCache) {
  ASSERT_NO_FATAL_FAILURE(require_fp8());
  check_attention({"dec_d128_32x8_bs16", 32, 8, 128, 16, ones(5), {1, 15, 17, 1000, 4100}}, 1);
  check_attention({"dec_d64_8x2_bs32", 8, 2, 64, 32, ones(3), {3, 700, 2050}}, 2);
  check_attention({"mix_d128_16x4_bs16", 16, 4, 128, 16, {37, 1, 100, 1, 250}, {37, 500, 613, 1, 1300}}, 3);
  check_attention({"pre_d64_8x2_bs16", 8, 2, 64, 16, {333}, {333}}, 4);
  check_attention({"pre_d128_8x2_bs8_ctx", 8, 2, 128, 8, {129, 64}, {1200, 64}}, 5);
  check_attention({"dec_d128_64x8_bs16_g8", 64, 8, 128, 16, ones(3), {1, 300, 2100}}, 6);
  check_attention({"mix_d64_8x8_bs16_g1", 8, 8, 64, 16, {50, 1, 1}, {50, 400, 17}}, 7);
}

}  // namespace
}  // namespace ember
