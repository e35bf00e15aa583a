// The CUDA paged attention entry points (decode, prefill with 64- and 128-row
// tiles and its default choice, mixed) and the test oracle
// (attention_reference.cu) against ember's float32 CPU attention
// (CpuBackend::paged_attention) on the same bf16-rounded random inputs.
// Block tables are shuffled (non-contiguous, non-monotonic) and their unused
// entries point at real but wrong blocks, outputs are poisoned with NaN
// first, every element is checked. Without a GPU every test FAILS.

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device_info.h"
#include "tests/gpu/attention_reference.h"

namespace ember {
namespace {

struct Case {
  std::string name;
  int hq, hkv, d, bs;
  std::vector<int> q_lens, seq_lens;
  int extra_max_seq = 0;  // host bound above the true max (CUDA-graph style)
  int extra_max_q = 0;
  float scale_mul = 1.0f;  // scale = scale_mul / sqrt(d)
};

// Owns device allocations for one case.
struct DeviceArena {
  std::vector<void*> ptrs;
  ~DeviceArena() {
    for (void* p : ptrs) cudaFree(p);
  }
  template <class T>
  T* upload(const std::vector<T>& host) {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(host.size() * sizeof(T), 16)) != cudaSuccess) return nullptr;
    ptrs.push_back(p);
    cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    return static_cast<T*>(p);
  }
  void* alloc(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(bytes, 16)) != cudaSuccess) return nullptr;
    ptrs.push_back(p);
    return p;
  }
};

// Rounds to bf16 and keeps both views.
void random_bf16(size_t n, float stddev, std::mt19937& rng, std::vector<__nv_bfloat16>& dev, std::vector<float>& ref) {
  std::normal_distribution<float> dist(0.0f, stddev);
  dev.resize(n);
  ref.resize(n);
  for (size_t i = 0; i < n; ++i) {
    dev[i] = __float2bfloat16(dist(rng));
    ref[i] = __bfloat162float(dev[i]);
  }
}

struct Outcome {
  double rel = 0;
  bool all_finite = true;
  std::vector<uint16_t> bits;  // the output's bf16 bits
};

// Runs `kernel` ("decode", "prefill64", "prefill128", "prefill" (the default
// tile choice), "mixed64", "mixed128", "reference") on case `c` and compares
// with the CPU attention; returns the relative L2 error. early_kv:
// PagedAttentionArgs::decode_early_kv (the default on; no bit changes).
class AttentionCase {
 public:
  AttentionCase(const Case& c, uint32_t seed) : c_(c) {
    std::mt19937 rng(seed);
    const int nseq = static_cast<int>(c.q_lens.size());
    in_.query_start_loc.assign(1, 0);
    for (int q : c.q_lens) in_.query_start_loc.push_back(in_.query_start_loc.back() + q);
    in_.seq_lens.assign(c.seq_lens.begin(), c.seq_lens.end());
    tokens_ = in_.query_start_loc.back();
    int max_blocks = 0, total_blocks = 3;  // spare blocks nobody owns
    for (int s : c.seq_lens) {
      const int nb = (s + c.bs - 1) / c.bs;
      max_blocks = std::max(max_blocks, nb);
      total_blocks += nb;
    }
    in_.max_blocks_per_seq = max_blocks + 1;  // a column of unused entries
    std::vector<int32_t> perm(total_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::uniform_int_distribution<int> any_block(0, total_blocks - 1);
    in_.block_tables.resize(static_cast<size_t>(nseq) * in_.max_blocks_per_seq);
    size_t next = 0;
    for (int b = 0; b < nseq; ++b) {
      const int nb = (c.seq_lens[b] + c.bs - 1) / c.bs;
      for (int i = 0; i < in_.max_blocks_per_seq; ++i)
        in_.block_tables[b * in_.max_blocks_per_seq + i] = i < nb ? perm[next++] : any_block(rng);
    }
    const size_t cache_elems = static_cast<size_t>(total_blocks) * c.bs * c.hkv * c.d;
    random_bf16(static_cast<size_t>(tokens_) * c.hq * c.d, 2.0f, rng, q_, q_ref_);
    random_bf16(cache_elems, 1.0f, rng, k_, k_ref_);
    random_bf16(cache_elems, 1.0f, rng, v_, v_ref_);
    total_blocks_ = total_blocks;

    CpuBackend cpu;
    ref_.assign(static_cast<size_t>(tokens_) * c.hq * c.d, 0.0f);
    Tensor tq = Tensor::f32(q_ref_.data(), {tokens_, static_cast<int64_t>(c.hq) * c.d});
    Tensor tk = Tensor::f32(k_ref_.data(), {total_blocks, c.bs, c.hkv, c.d});
    Tensor tv = Tensor::f32(v_ref_.data(), {total_blocks, c.bs, c.hkv, c.d});
    Tensor to = Tensor::f32(ref_.data(), {tokens_, static_cast<int64_t>(c.hq) * c.d});
    cpu.paged_attention(tq, tk, tv, in_, c.hq, scale(), to);
  }

  float scale() const { return c_.scale_mul / std::sqrt(static_cast<float>(c_.d)); }
  bool all_decode() const {
    return std::all_of(c_.q_lens.begin(), c_.q_lens.end(), [](int q) { return q == 1; });
  }

  Outcome run(const std::string& kernel, bool early_kv = true) {
    DeviceArena arena;
    PagedAttentionArgs a;
    a.q = arena.upload(q_);
    a.k_cache = arena.upload(k_);
    a.v_cache = arena.upload(v_);
    a.query_start_loc = arena.upload(in_.query_start_loc);
    a.seq_lens = arena.upload(in_.seq_lens);
    a.block_tables = arena.upload(in_.block_tables);
    const size_t out_bytes = ref_.size() * sizeof(__nv_bfloat16);
    a.out = static_cast<__nv_bfloat16*>(arena.alloc(out_bytes));
    EXPECT_EQ(cudaMemset(a.out, 0xFF, out_bytes), cudaSuccess);  // poison: NaN
    a.num_seqs = static_cast<int32_t>(c_.q_lens.size());
    a.num_tokens = static_cast<int32_t>(tokens_);
    a.num_heads = c_.hq;
    a.num_kv_heads = c_.hkv;
    a.head_dim = c_.d;
    a.block_size = c_.bs;
    a.max_blocks_per_seq = in_.max_blocks_per_seq;
    a.max_seq_len = *std::max_element(c_.seq_lens.begin(), c_.seq_lens.end()) + c_.extra_max_seq;
    a.max_query_len = *std::max_element(c_.q_lens.begin(), c_.q_lens.end()) + c_.extra_max_q;
    a.scale = scale();
    a.decode_early_kv = early_kv;
    Status st;
    if (kernel == "decode" || kernel.starts_with("mixed")) {
      a.workspace_bytes = paged_attention_workspace_bytes(a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim,
                                                          a.max_seq_len);
      a.workspace = a.workspace_bytes ? arena.alloc(a.workspace_bytes) : nullptr;
      if (a.workspace_bytes) cudaMemset(a.workspace, 0xFF, a.workspace_bytes);  // stale partials are NaN
      if (kernel == "mixed64") a.prefill_rows = 64;
      if (kernel == "mixed128") a.prefill_rows = 128;
      st = kernel == "decode" ? paged_attention_decode(a, nullptr) : paged_attention_mixed(a, nullptr);
    } else if (kernel.starts_with("prefill")) {
      if (kernel == "prefill64") a.prefill_rows = 64;
      if (kernel == "prefill128") a.prefill_rows = 128;
      st = paged_attention_prefill(a, nullptr);
    } else {
      st = paged_attention_reference(a, nullptr);
    }
    EXPECT_TRUE(st.ok()) << kernel << ": " << (st.ok() ? "" : st.error().message);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << kernel;
    std::vector<__nv_bfloat16> out(ref_.size());
    EXPECT_EQ(cudaMemcpy(out.data(), a.out, out_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    Outcome r;
    r.bits.resize(out.size());
    std::memcpy(r.bits.data(), out.data(), out_bytes);
    double num = 0, den = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      const double o = __bfloat162float(out[i]);
      if (!std::isfinite(o)) r.all_finite = false;
      num += (o - ref_[i]) * (o - ref_[i]);
      den += static_cast<double>(ref_[i]) * ref_[i];
    }
    r.rel = std::sqrt(num / std::max(den, 1e-30));
    if (!r.all_finite) r.rel = INFINITY;
    return r;
  }

 private:
  Case c_;
  ForwardInputs in_;
  int64_t tokens_ = 0;
  int total_blocks_ = 0;
  std::vector<__nv_bfloat16> q_, k_, v_;
  std::vector<float> q_ref_, k_ref_, v_ref_, ref_;
};

// Every case runs each of these ("decode" only on all-decode batches); the
// default prefill tile choice has its own test below.
constexpr int kKernels = 6;
const char* const kKernelNames[kKernels] = {"decode", "prefill64", "prefill128", "mixed64", "mixed128", "reference"};
double g_worst[kKernels] = {};

void check_case(const Case& c, uint32_t seed) {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
  SCOPED_TRACE(c.name);
  AttentionCase ac(c, seed);
  const char* const* kernels = kKernelNames;
  for (int k = 0; k < kKernels; ++k) {
    if (k == 0 && !ac.all_decode()) continue;  // decode
    const Outcome r = ac.run(kernels[k]);
    g_worst[k] = std::max(g_worst[k], r.rel);
    std::printf("[attention] %-28s %-10s rel_err %.3e\n", c.name.c_str(), kernels[k], r.rel);
    EXPECT_TRUE(r.all_finite) << kernels[k] << " wrote NaN/inf or left poison";
    EXPECT_LT(r.rel, 1e-2) << kernels[k];
  }
}

std::vector<int> ones(size_t n) { return std::vector<int>(n, 1); }

TEST(AttentionGpu, DecodeShapeGrid) {
  uint32_t seed = 1;
  for (int d : {64, 128})
    for (auto [hq, hkv] : {std::pair{4, 4}, std::pair{16, 4}, std::pair{32, 4}})
      for (int bs : {16, 32}) {
        const std::string name = "dec_d" + std::to_string(d) + "_" + std::to_string(hq) + "x" +
                                 std::to_string(hkv) + "_bs" + std::to_string(bs);
        check_case({name, hq, hkv, d, bs, ones(5), {1, 15, 16, 17, 1000}}, seed++);
      }
}

TEST(AttentionGpu, DecodeBatchesAndLongContexts) {
  check_case({"dec_b1_ctx4096", 32, 8, 128, 16, ones(1), {4096}}, 101);
  check_case({"dec_b1_ctx32768", 32, 8, 128, 16, ones(1), {32768}}, 102);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(1, 700);
  std::vector<int> lens64(64), lens32(32);
  for (int& l : lens64) l = len(rng);
  for (int& l : lens32) l = len(rng) + 300;
  check_case({"dec_b64_mixed", 32, 8, 128, 16, ones(64), lens64}, 103);
  check_case({"dec_b32_d64_graph_bound", 8, 2, 64, 16, ones(32), lens32, 8192 - 1000}, 104);
  check_case({"dec_b8_bs8", 8, 2, 128, 8, ones(3), {5, 300, 1030}}, 105);
  check_case({"dec_b3_bs256", 8, 2, 128, 256, ones(3), {5, 300, 1030}}, 106);
}

// Loading the first keys before the wait changes no bit: the kernel that
// waits first against early keys, on contexts whose new key sits in a warp's
// first tile (9 keys; 131 with 64-key splits: a split's third key) or further
// in, one split or several, graph-style bounds. (No writer runs concurrently
// here: PdlGpu.DecodeAttentionWaitsForThisStepsKey checks that the new key is
// read after it.)
TEST(AttentionGpu, DecodeEarlyKeysKeepTheBits) {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
  const std::vector<Case> cases = {
      {"b1_short", 32, 8, 128, 16, ones(1), {9}},
      {"b1_graph_bound", 32, 8, 128, 16, ones(1), {131}, 4096 - 131},
      {"b4_lengths", 16, 4, 64, 8, ones(4), {1, 67, 1000, 4097}},
      {"b2_bs256", 8, 2, 128, 256, ones(2), {300, 2}, 2000},
  };
  uint32_t seed = 700;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    AttentionCase ac(c, seed++);
    const Outcome base = ac.run("decode", false);
    EXPECT_TRUE(base.all_finite);
    EXPECT_LT(base.rel, 1e-2);
    EXPECT_TRUE(ac.run("decode", true).bits == base.bits) << "early keys";
    // (the decode kernel's rows; the prefill kernel skips them)
    EXPECT_TRUE(ac.run("mixed64", true).bits == base.bits) << "mixed, early keys";
    EXPECT_TRUE(ac.run("mixed64", false).bits == base.bits) << "mixed";
  }
}

TEST(AttentionGpu, DecodeOddGqaRatios) {
  check_case({"dec_gqa2", 8, 4, 128, 16, ones(2), {33, 517}}, 201);
  check_case({"dec_gqa6", 12, 2, 128, 16, ones(2), {17, 999}}, 202);
  check_case({"dec_gqa16", 16, 1, 64, 32, ones(2), {3, 2050}}, 203);
}

TEST(AttentionGpu, PrefillSinglePrompt) {
  uint32_t seed = 300;
  for (int s : {1, 7, 64, 100, 1000, 2048})
    check_case({"pre_prompt_" + std::to_string(s), 32, 8, 128, 16, {s}, {s}}, seed++);
  check_case({"pre_prompt_333_d64", 8, 2, 64, 16, {333}, {333}}, seed++);
  check_case({"pre_prompt_129_d64_bs8", 4, 4, 64, 8, {129}, {129}}, seed++);
}

TEST(AttentionGpu, PrefillVarlenChunkedWithDecodes) {
  const std::vector<int> q = {37, 1, 100, 64, 1, 250, 5};
  const std::vector<int> s = {37, 500, 613, 141, 1, 1300, 5};
  check_case({"pre_mix_d128_32x8_bs16", 32, 8, 128, 16, q, s}, 401);
  check_case({"pre_mix_d64_8x8_bs32", 8, 8, 64, 32, q, s}, 402);
  check_case({"pre_mix_d128_16x4_bs32", 16, 4, 128, 32, q, s}, 403);
  check_case({"pre_mix_graph_bounds", 8, 2, 128, 16, q, s, 3000, 100}, 404);
  check_case({"pre_mix_bs256", 8, 2, 64, 256, {200, 1, 77}, {900, 300, 77}}, 405);
  check_case({"pre_mix_gqa6_bs8", 12, 2, 128, 8, {65, 129}, {65, 1200}}, 406);
}

// Query tiles starting mid key tile (cached context not a multiple of 64),
// 128-row tiles whose first warps skip the last key tiles, a chunk longer
// than one 128-row tile behind a long context, and a scale other than
// 1/sqrt(d).
TEST(AttentionGpu, PrefillTileBoundaries) {
  check_case({"pre_chunk_offsets_d128", 8, 2, 128, 32, {200, 129, 1, 300}, {1337, 193, 700, 300}}, 601);
  check_case({"pre_chunk_offsets_d64", 8, 4, 64, 16, {257, 64, 127}, {257 + 37, 64 + 1, 127 + 4000}}, 602);
  check_case({"pre_chunk_offsets_bs256", 4, 1, 128, 256, {383, 2}, {383 + 511, 3}}, 603);
  Case half{"pre_half_scale", 4, 2, 128, 16, {150, 3}, {150, 90}};
  half.scale_mul = 0.5f;
  check_case(half, 604);
}

// prefill_rows 0: the entry points pick the tile themselves, as in the backend.
TEST(AttentionGpu, DefaultPrefillDispatch) {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
  for (int s : {100, 1500}) {
    AttentionCase ac({"dispatch", 8, 2, 128, 16, {s, 1}, {s, 40}}, 500 + s);
    for (const char* kernel : {"prefill", "mixed"}) {
      const Outcome r = ac.run(kernel);
      EXPECT_TRUE(r.all_finite) << kernel;
      EXPECT_LT(r.rel, 1e-2) << kernel << " s=" << s;
    }
  }
}

TEST(AttentionGpu, RejectsBadArguments) {
  PagedAttentionArgs a;
  EXPECT_FALSE(paged_attention_decode(a, nullptr).ok());
  int dummy_dev = 0;
  a.q = a.out = reinterpret_cast<__nv_bfloat16*>(&dummy_dev);
  a.k_cache = a.v_cache = a.q;
  a.query_start_loc = a.seq_lens = a.block_tables = &dummy_dev;
  a.num_seqs = 2;
  a.num_tokens = 3;
  a.num_heads = 8;
  a.num_kv_heads = 2;
  a.head_dim = 128;
  a.block_size = 16;
  a.max_blocks_per_seq = 4;
  a.max_seq_len = 64;
  a.max_query_len = 2;
  EXPECT_FALSE(paged_attention_decode(a, nullptr).ok());  // q_len 2 is not a decode
  a.num_tokens = 2;
  a.max_query_len = 1;
  a.max_seq_len = 1 << 20;
  a.workspace_bytes = 0;
  EXPECT_FALSE(paged_attention_decode(a, nullptr).ok());  // workspace too small (or context too long)
  a.block_size = 24;
  EXPECT_FALSE(paged_attention_prefill(a, nullptr).ok());  // not a power of two
  a.block_size = 16;
  a.prefill_rows = 96;
  EXPECT_FALSE(paged_attention_prefill(a, nullptr).ok());  // rows must be 64 or 128
  a.prefill_rows = 0;
  a.max_seq_len = 64;  // the shape is valid again: only the scale is wrong below
  ASSERT_TRUE(check_paged_attention_args(a, "test").ok());
  auto names_scale = [](const Status& s) { return !s.ok() && s.error().message.find("scale") != std::string::npos; };
  for (float scale : {0.0f, -0.5f, NAN}) {
    a.scale = scale;
    EXPECT_TRUE(names_scale(paged_attention_prefill(a, nullptr))) << scale;  // maxima are taken on raw scores
    EXPECT_TRUE(names_scale(paged_attention_mixed(a, nullptr))) << scale;
    EXPECT_TRUE(names_scale(paged_attention_decode(a, nullptr))) << scale;
  }
  a.scale = 1.0f;
  a.head_dim = 96;
  EXPECT_FALSE(paged_attention_prefill(a, nullptr).ok());
  a.prefill_rows = 128;
  EXPECT_FALSE(paged_attention_prefill(a, nullptr).ok());
  a.num_kv_heads = 3;
  EXPECT_FALSE(paged_attention_reference(a, nullptr).ok());
}

TEST(AttentionGpu, WorstErrorsSummary) {
  std::printf("[attention] worst rel_err:");
  for (int k = 0; k < kKernels; ++k) std::printf("  %s %.3e", kKernelNames[k], g_worst[k]);
  std::printf("\n");
  for (double w : g_worst) EXPECT_LT(w, 1e-2);
}

}  // namespace
}  // namespace ember
