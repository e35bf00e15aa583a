// Paged attention speed, one JSON object per line.
//   decode:  K+V bytes read (+ q, out) per second, next to a device-to-device
//            copy (read + write) measured in the same run; 32 q / 8 kv heads,
//            D 128, block 16, shuffled block tables; paged_attention_decode
//            with the planner's split size and a sweep of forced split sizes;
//            then "decode_fp8": the same over an FP8 E4M3 cache (one byte an
//            element: the same time would be half the GB/s), GB/s of its bytes.
//   prefill: causal prompts (one of 1k/4k/16k, eight of 512), 4 s^2 D Hq / 2
//            FLOPs per prompt per second, paged_attention_prefill with its
//            own tile choice ("default") and with 64- and 128-row tiles, and
//            over an FP8 cache ("fp8", the default tile).
// Median of per-launch cudaEvent times after warm-up; inputs smaller than
// ~128 MB are rotated among copies so L2 (50 MB) does not serve them.
// bench/cuda/sdpa_reference.py prints torch SDPA numbers for the same shapes.

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"

using ember::PagedAttentionArgs;

namespace {

#define CHECK_CUDA(x)                                                                       \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "attention_bench: %s: %s\n", #x, cudaGetErrorString(e_));       \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

// Pseudo-random bits of element i: a hash of the index, so GBs fill fast.
__device__ uint32_t hash_bits(size_t i, uint32_t seed) {
  uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
  x ^= x >> 15;
  x *= 2246822519u;
  return x ^ (x >> 13);
}

__global__ void fill_random(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t x = hash_bits(i, seed);
    p[i] = __float2bfloat16((static_cast<float>(x & 0xFFFF) / 65535.0f - 0.5f) * 4.0f);  // never zero-filled
  }
}

template <class T>
T* device_alloc(size_t count) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(count * sizeof(T), 16)));
  return static_cast<T*>(p);
}

// Random E4M3 codes of magnitude 0x20..0x5F (values 2^-5 .. 15), either sign: never NaN (0x7F).
__global__ void fill_random_codes(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t x = hash_bits(i, seed);
    p[i] = static_cast<uint8_t>(0x20 + (x & 0x3F)) | static_cast<uint8_t>((x >> 8) & 0x80);
  }
}

void fill(__nv_bfloat16* p, size_t n, uint32_t seed) {
  fill_random<<<1024, 256>>>(p, n, seed);
  CHECK_CUDA(cudaGetLastError());
}

void fill(uint8_t* p, size_t n, uint32_t seed) {
  fill_random_codes<<<1024, 256>>>(p, n, seed);
  CHECK_CUDA(cudaGetLastError());
}

// Median time in microseconds of `fn` (each call timed alone).
double median_us(const std::function<void(int)>& fn, int reps) {
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  for (int i = 0; i < 5; ++i) fn(i);
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) {
    CHECK_CUDA(cudaEventRecord(e0));
    fn(i);
    CHECK_CUDA(cudaEventRecord(e1));
    CHECK_CUDA(cudaEventSynchronize(e1));
    CHECK_CUDA(cudaEventElapsedTime(&ms[i], e0, e1));
  }
  CHECK_CUDA(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms[reps / 2] * 1000.0;
}

double copy_gb_per_s() {
  const size_t bytes = size_t{1} << 30;
  auto* a = device_alloc<__nv_bfloat16>(bytes / 2);
  auto* b = device_alloc<__nv_bfloat16>(bytes / 2);
  fill(a, bytes / 2, 1);
  const double us = median_us([&](int) { CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 20);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (us * 1e3);
}

// One sequence set with its own cache copies (for rotation).
struct Setup {
  std::vector<PagedAttentionArgs> copies;
  std::vector<void*> owned;
  ~Setup() {
    for (void* p : owned) cudaFree(p);
  }
};

// fp8: the caches hold E4M3 codes, scaled by 0.05 (K) and 0.1 (V).
void make_setup(Setup& s, int batch, int q_len, int ctx, int hq, int hkv, int d, int bs, size_t min_total_bytes,
                bool fp8 = false) {
  const int blocks_per_seq = (ctx + bs - 1) / bs;
  const int blocks = batch * blocks_per_seq;
  const size_t cache_elems = static_cast<size_t>(blocks) * bs * hkv * d;
  const size_t per_copy = 2 * cache_elems * (fp8 ? 1 : sizeof(__nv_bfloat16));
  const int n_copies = static_cast<int>(std::min<size_t>(8, std::max<size_t>(1, min_total_bytes / per_copy + 1)));
  // Row b of the table: entries [b * bps, (b+1) * bps) of a shuffled list of all blocks.
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(42));
  std::vector<int32_t> qsl(batch + 1), lens(batch, ctx);
  for (int b = 0; b <= batch; ++b) qsl[b] = b * q_len;
  const int tokens = batch * q_len;
  auto* d_table = device_alloc<int32_t>(blocks);
  auto* d_qsl = device_alloc<int32_t>(batch + 1);
  auto* d_lens = device_alloc<int32_t>(batch);
  s.owned.insert(s.owned.end(), {d_table, d_qsl, d_lens});
  CHECK_CUDA(cudaMemcpy(d_table, table.data(), blocks * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_qsl, qsl.data(), (batch + 1) * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_lens, lens.data(), batch * 4, cudaMemcpyHostToDevice));
  auto* d_scales = device_alloc<float>(2);
  s.owned.push_back(d_scales);
  const float scales[2] = {0.05f, 0.1f};
  CHECK_CUDA(cudaMemcpy(d_scales, scales, sizeof scales, cudaMemcpyHostToDevice));
  const size_t ws = ember::paged_attention_workspace_bytes(batch, hq, hkv, d, ctx);
  for (int c = 0; c < n_copies; ++c) {
    PagedAttentionArgs a;
    auto* q = device_alloc<__nv_bfloat16>(static_cast<size_t>(tokens) * hq * d);
    auto* out = device_alloc<__nv_bfloat16>(static_cast<size_t>(tokens) * hq * d);
    void* w = ws ? device_alloc<char>(ws) : nullptr;
    s.owned.insert(s.owned.end(), {q, out});
    if (w) s.owned.push_back(w);
    fill(q, static_cast<size_t>(tokens) * hq * d, 10 + c);
    auto caches = [&](auto element) {  // K and V of the cache's element type
      using T = decltype(element);
      auto* k = device_alloc<T>(cache_elems);
      auto* v = device_alloc<T>(cache_elems);
      s.owned.insert(s.owned.end(), {k, v});
      fill(k, cache_elems, 20 + c);
      fill(v, cache_elems, 30 + c);
      a.k_cache = k;
      a.v_cache = v;
    };
    if (fp8) {
      caches(uint8_t{});
      a.kv_fp8 = true;
      a.k_scale = d_scales;
      a.v_scale = d_scales + 1;
    } else {
      caches(__nv_bfloat16{});
    }
    a.q = q;
    a.out = out;
    a.query_start_loc = d_qsl;
    a.seq_lens = d_lens;
    a.block_tables = d_table;
    a.num_seqs = batch;
    a.num_tokens = tokens;
    a.num_heads = hq;
    a.num_kv_heads = hkv;
    a.head_dim = d;
    a.block_size = bs;
    a.max_blocks_per_seq = blocks_per_seq;
    a.max_seq_len = ctx;
    a.max_query_len = q_len;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    a.workspace = w;
    a.workspace_bytes = ws;
    s.copies.push_back(a);
  }
}

void expect_ok(const ember::Status& st) {
  if (!st.ok()) {
    std::fprintf(stderr, "attention_bench: %s\n", st.error().message.c_str());
    std::exit(1);
  }
}

}  // namespace

int main() {
  const double copy = copy_gb_per_s();
  std::printf("{\"name\": \"copy\", \"gb_per_s\": %.1f}\n", copy);
  const int hq = 32, hkv = 8, d = 128, bs = 16;

  const int decode_shapes[][2] = {{1, 4096}, {32, 4096}, {64, 2048}, {8, 32768}};
  for (const auto& shape : decode_shapes) {
    const int batch = shape[0], ctx = shape[1];
    Setup s;
    make_setup(s, batch, 1, ctx, hq, hkv, d, bs, size_t{128} << 20);
    const double us = median_us(
        [&](int i) { expect_ok(ember::paged_attention_decode(s.copies[i % s.copies.size()], nullptr)); }, 100);
    const double bytes = 2.0 * batch * ctx * hkv * d * 2 + 2.0 * batch * hq * d * 2;
    const double gbs = bytes / (us * 1e3);
    // The split size sweep (the planner's choice above): GB/s for each chunk.
    std::string sweep;
    for (int chunk : {128, 256, 512, 1024}) {
      std::vector<PagedAttentionArgs> runs = s.copies;
      const size_t need = ember::paged_attention_workspace_bytes(batch, hq, hkv, d, ctx, 0, chunk);
      void* w = nullptr;
      if (need > 0) CHECK_CUDA(cudaMalloc(&w, need));
      for (PagedAttentionArgs& a : runs) {
        a.decode_chunk = chunk;
        a.workspace = w;
        a.workspace_bytes = need;
      }
      const double cu = median_us(
          [&](int i) { expect_ok(ember::paged_attention_decode(runs[i % runs.size()], nullptr)); }, 100);
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s\"%d\": %.1f", sweep.empty() ? "" : ", ", chunk, bytes / (cu * 1e3));
      sweep += buf;
      if (w) CHECK_CUDA(cudaFree(w));
    }
    std::printf(
        "{\"name\": \"decode\", \"batch\": %d, \"ctx\": %d, \"hq\": %d, \"hkv\": %d, \"d\": %d, \"block\": %d, "
        "\"time_us\": %.2f, \"gb_per_s\": %.1f, \"copy_gb_per_s\": %.1f, \"ratio\": %.3f, "
        "\"gb_per_s_by_chunk\": {%s}}\n",
        batch, ctx, hq, hkv, d, bs, us, gbs, copy, gbs / copy, sweep.c_str());
    std::fflush(stdout);

    // The FP8 cache at the same shape: its own bytes per second, and the speedup over bf16 in time.
    Setup f;
    make_setup(f, batch, 1, ctx, hq, hkv, d, bs, size_t{128} << 20, true);
    const double fus = median_us(
        [&](int i) { expect_ok(ember::paged_attention_decode(f.copies[i % f.copies.size()], nullptr)); }, 100);
    const double fbytes = 2.0 * batch * ctx * hkv * d + 2.0 * batch * hq * d * 2;
    std::printf(
        "{\"name\": \"decode_fp8\", \"batch\": %d, \"ctx\": %d, \"hq\": %d, \"hkv\": %d, \"d\": %d, \"block\": %d, "
        "\"time_us\": %.2f, \"gb_per_s\": %.1f, \"copy_gb_per_s\": %.1f, \"ratio\": %.3f, \"bf16_gb_per_s\": %.1f, "
        "\"speedup_vs_bf16\": %.2f}\n",
        batch, ctx, hq, hkv, d, bs, fus, fbytes / (fus * 1e3), copy, fbytes / (fus * 1e3) / copy, gbs, us / fus);
    std::fflush(stdout);
  }

  // Prefill: (batch, prompt length) single-chunk causal prompts; the tile the
  // entry point picks, then each tile forced (PagedAttentionArgs::prefill_rows).
  struct Variant {
    const char* name;
    int rows;
  };
  const Variant variants[] = {{"default", 0}, {"rows64", 64}, {"rows128", 128}};
  const int prefill_shapes[][2] = {{1, 1024}, {1, 4096}, {1, 16384}, {8, 512}};
  for (const auto& shape : prefill_shapes) {
    const int batch = shape[0], seq = shape[1];
    Setup s;
    make_setup(s, batch, seq, seq, hq, hkv, d, bs, 0);
    const double flops = 4.0 * seq * seq * d * hq / 2 * batch;
    for (const Variant& v : variants) {
      std::vector<PagedAttentionArgs> runs = s.copies;
      for (PagedAttentionArgs& a : runs) a.prefill_rows = v.rows;
      const double us =
          median_us([&](int i) { expect_ok(ember::paged_attention_prefill(runs[i % runs.size()], nullptr)); },
                    seq >= 16384 ? 10 : 30);
      std::printf(
          "{\"name\": \"prefill\", \"variant\": \"%s\", \"batch\": %d, \"seq\": %d, \"hq\": %d, \"hkv\": %d, "
          "\"d\": %d, \"time_us\": %.2f, \"tflop_per_s\": %.1f}\n",
          v.name, batch, seq, hq, hkv, d, us, flops / (us * 1e6));
      std::fflush(stdout);
    }
    Setup f;
    make_setup(f, batch, seq, seq, hq, hkv, d, bs, 0, true);
    const double us = median_us(
        [&](int i) { expect_ok(ember::paged_attention_prefill(f.copies[i % f.copies.size()], nullptr)); },
        seq >= 16384 ? 10 : 30);
    std::printf(
        "{\"name\": \"prefill\", \"variant\": \"fp8\", \"batch\": %d, \"seq\": %d, \"hq\": %d, \"hkv\": %d, "
        "\"d\": %d, \"time_us\": %.2f, \"tflop_per_s\": %.1f}\n",
        batch, seq, hq, hkv, d, us, flops / (us * 1e6));
    std::fflush(stdout);
  }
  return 0;
}
