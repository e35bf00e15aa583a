// Programmatic dependent launch (kernels/cuda/pdl.cuh) against a writer that
// triggers its dependents first and writes 2 ms later (tests/gpu/pdl_probe.h):
// a decode kernel launched as a dependent must read the writer's values, as
// it would after a plain launch, eagerly and in a CUDA graph. A probe that
// copies before it waits shows that, in a graph, the dependent really does
// start before the writer is done (where the kernels launch as dependents),
// so the checks are not vacuous. Eagerly the first form of this test saw no
// early start (H100, 2026-12-06; that probe had no wait at all): the eager
// lead is printed, not asserted.
// Runs only on a GPU machine; without one every test FAILS.

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/ops_test_util.h"
#include "tests/gpu/pdl_probe.h"

namespace ember {
namespace {

using gputest::bf16;
using gputest::DeviceBuffer;

constexpr int64_t kLateNs = 2'000'000;  // the writer's sleep: far longer than any launch

// A non-blocking stream, as the runner's: a blocking one waits for the default
// stream before each launch, which would keep the dependents from starting
// early. So the uploads and memsets (default stream) are followed by a device
// synchronize before the stream's work.
struct Stream {
  cudaStream_t s = nullptr;
  Stream() { EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess); }
  ~Stream() { cudaStreamDestroy(s); }
};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Runs `launches` on s eagerly, or captured in a CUDA graph (as the runner's decode steps), then waits.
void run_launches(cudaStream_t s, bool graph, const std::function<void()>& launches) {
  cudaGraphExec_t exec = nullptr;
  if (!graph) {
    launches();
  } else {
    cudaGraph_t g = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    launches();
    ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
    ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
    cudaGraphDestroy(g);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  }
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  if (exec != nullptr) cudaGraphExecDestroy(exec);
}

TEST(PdlGpu, DecodeKernelsWaitForAWriterThatTriggersEarly) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  const int h = 4096, n = 2048;
  std::mt19937 rng(61);
  std::vector<float> f;
  const std::vector<bf16> old_x = gputest::random_bf16(h, rng, f), new_x = gputest::random_bf16(h, rng, f);
  std::vector<float> norm_w(h);
  for (float& v : norm_w) v = std::uniform_real_distribution<float>(0.5f, 1.5f)(rng);
  const std::vector<bf16> w16 = gputest::random_bf16(static_cast<size_t>(n) * h, rng, f, 0.05f);
  std::vector<uint8_t> w8(static_cast<size_t>(n) * h);
  for (uint8_t& c : w8) c = static_cast<uint8_t>(rng() % 0x7F) | (rng() % 2 ? 0x80 : 0);  // finite E4M3 codes
  std::vector<float> w8_scale(n, 0.01f);

  DeviceBuffer<bf16> d_x(h), d_new(h), d_seen(h), d_w16(w16.size()), d_y(h);
  DeviceBuffer<float> d_norm_w(h), d_w8_scale(n);
  DeviceBuffer<uint8_t> d_w8(w8.size());
  d_new.upload(new_x);
  d_norm_w.upload(norm_w);
  d_w16.upload(w16);
  d_w8.upload(w8);
  d_w8_scale.upload(w8_scale);
  Stream stream;
  const cudaStream_t s = stream.s;

  // Each op on new_x after a plain synchronize: the values a correct dependent must produce.
  using Op = Status (*)(const bf16* x, bf16* out, const float* norm_w, const bf16* w16, const uint8_t* w8,
                        const float* w8_scale, cudaStream_t s);
  struct Case {
    const char* name;
    Op op;
    int out_elems;
  };
  const Case cases[] = {
      {"rms_norm",
       [](const bf16* x, bf16* out, const float* nw, const bf16*, const uint8_t*, const float*, cudaStream_t st) {
         return gpu::rms_norm(x, nullptr, nw, 1e-5f, 1, 4096, out, st);
       },
       h},
      {"gemv bf16",
       [](const bf16* x, bf16* out, const float*, const bf16* w, const uint8_t*, const float*, cudaStream_t st) {
         return gpu::gemv(x, w, nullptr, out, false, 1, 2048, 4096, st);
       },
       n},
      {"gemv_fp8",
       [](const bf16* x, bf16* out, const float*, const bf16*, const uint8_t* w, const float* ws, cudaStream_t st) {
         return gpu::gemv_fp8(x, w, ws, nullptr, out, false, 1, 2048, 4096, st);
       },
       n},
      {"gemv_fp8_silu_mul",
       [](const bf16* x, bf16* out, const float*, const bf16*, const uint8_t* w, const float* ws, cudaStream_t st) {
         return gpu::gemv_fp8_silu_mul(x, w, ws, 1, 1024, 4096, out, st);
       },
       n / 2},
  };

  const auto run = [&](bool graph, const std::function<void()>& launches) { run_launches(s, graph, launches); };

  const bool dependents = gpu::gemv_launches_as_dependent();
  DeviceBuffer<uint64_t> d_times(2);
  for (bool graph : {false, true}) {
    SCOPED_TRACE(graph ? "in a CUDA graph" : "eager");
    // The probe: with dependents on, in a graph, it reads x before the writer has written it.
    d_x.upload(old_x);
    d_seen.poison();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    run(graph, [&] {
      ASSERT_EQ(gputest::late_copy(d_new.get(), d_x.get(), h, kLateNs, s, d_times.get()), cudaSuccess);
      ASSERT_EQ(gputest::copy_before_waiting(d_x.get(), d_seen.get(), h, s, d_times.get()), cudaSuccess);
    });
    const std::vector<uint64_t> times = d_times.download();
    const double lead_us = (static_cast<double>(times[0]) - static_cast<double>(times[1])) / 1e3;
    const bool early = same_bits(d_seen.download(), old_x);
    std::printf("%s: the probe started %.1f us before the writer wrote (dependents %s)\n", graph ? "graph" : "eager",
                lead_us, dependents ? "on" : "off");
    if (graph) {
      EXPECT_EQ(early, dependents) << "the probe started " << lead_us << " us before the write";
    }

    for (const Case& c : cases) {
      SCOPED_TRACE(c.name);
      d_x.upload(new_x);
      d_y.poison();
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      ASSERT_TRUE(c.op(d_x.get(), d_y.get(), d_norm_w.get(), d_w16.get(), d_w8.get(), d_w8_scale.get(), s).ok());
      ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
      std::vector<bf16> want = d_y.download();
      want.resize(c.out_elems);

      d_x.upload(old_x);
      d_y.poison();
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      run(graph, [&] {
        ASSERT_EQ(gputest::late_copy(d_new.get(), d_x.get(), h, kLateNs, s), cudaSuccess);
        ASSERT_TRUE(c.op(d_x.get(), d_y.get(), d_norm_w.get(), d_w16.get(), d_w8.get(), d_w8_scale.get(), s).ok());
      });
      std::vector<bf16> got = d_y.download();
      got.resize(c.out_elems);
      EXPECT_TRUE(same_bits(got, want)) << "read x before the writer finished";
    }
  }
}

// Decode attention launches as a programmatic dependent of the kernel that
// writes this step's key and value (the q/k/v projection's rope): here that
// kernel writes the sequence's last key, or its last value, 2 ms after it lets
// the attention start. The attention loads its first keys before it waits
// (all but the new one: PagedAttentionArgs::decode_early_kv, the default). Each
// output must be the one it gives after a plain synchronize, for contexts
// whose last key is in a warp's first tile or in a later one, with and without
// splits, eagerly and in a CUDA graph, with the bf16 and the FP8 cache.
TEST(PdlGpu, DecodeAttentionWaitsForThisStepsKey) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  const int hq = 32, hkv = 8, d = 128, bs = 16, max_len = 4096, blocks = max_len / bs;
  std::mt19937 rng(71);
  std::vector<float> f;
  const std::vector<bf16> q = gputest::random_bf16(static_cast<size_t>(hq) * d, rng, f);
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  DeviceBuffer<bf16> d_q(q.size()), d_out(q.size());
  DeviceBuffer<int32_t> d_table(blocks), d_qsl(2), d_len(1);
  DeviceBuffer<float> d_scales(2);
  d_q.upload(q);
  d_table.upload(table);
  d_qsl.upload({0, 1});
  d_scales.upload({0.05f, 0.07f});
  Stream stream;
  const cudaStream_t s = stream.s;

  for (bool fp8 : {false, true}) {
    // A slot's K (or V) row in bytes, and the caches as bytes: bf16 values, or E4M3 codes (no NaN code).
    const int row = hkv * d * (fp8 ? 1 : 2);
    auto random_bytes = [&](size_t n) {
      std::vector<uint8_t> out(n);
      if (fp8) {
        std::uniform_int_distribution<int> code(0, 255);
        for (uint8_t& c : out) do
            c = static_cast<uint8_t>(code(rng));
          while ((c & 0x7F) == 0x7F);
      } else {
        const std::vector<bf16> v = gputest::random_bf16(n / 2, rng, f);
        std::memcpy(out.data(), v.data(), n);
      }
      return out;
    };
    const std::vector<uint8_t> k = random_bytes(static_cast<size_t>(blocks) * bs * row), v = random_bytes(k.size());
    const std::vector<uint8_t> new_row = random_bytes(row);
    DeviceBuffer<uint8_t> d_k(k.size()), d_v(v.size()), d_new(row);
    d_new.upload(new_row);
    PagedAttentionArgs a;
    a.q = d_q.get();
    a.out = d_out.get();
    a.k_cache = d_k.get();
    a.v_cache = d_v.get();
    a.kv_fp8 = fp8;
    a.k_scale = d_scales.get();
    a.v_scale = d_scales.get() + 1;
    a.query_start_loc = d_qsl.get();
    a.seq_lens = d_len.get();
    a.block_tables = d_table.get();
    a.num_seqs = a.num_tokens = 1;
    a.num_heads = hq;
    a.num_kv_heads = hkv;
    a.head_dim = d;
    a.block_size = bs;
    a.max_blocks_per_seq = blocks;
    a.max_seq_len = max_len;  // as a decode graph: planned for the longest context
    a.max_query_len = 1;
    a.scale = 0.088f;
    a.decode_early_kv = true;
    a.workspace_bytes = paged_attention_workspace_bytes(1, hq, hkv, d, max_len);
    DeviceBuffer<uint8_t> d_ws(std::max<size_t>(a.workspace_bytes, 1));
    a.workspace = d_ws.get();

    // 1: the last key is the first tile's only one; 8, 9: a first tile's last key and
    // a second tile's first (one split of 64 keys); 67: a split's first tile; 300, 1100: several splits.
    for (int len : {1, 8, 9, 67, 300, 1100})
      for (bool late_v : {false, true}) {
        SCOPED_TRACE(std::string(fp8 ? "FP8" : "bf16") + " cache, context " + std::to_string(len) +
                     (late_v ? ", late value" : ", late key"));
        const int64_t last = static_cast<int64_t>(table[(len - 1) / bs]) * bs + (len - 1) % bs;
        DeviceBuffer<uint8_t>& late = late_v ? d_v : d_k;
        const std::vector<uint8_t>& old = late_v ? v : k;
        d_len.upload({len});
        d_k.upload(k);
        d_v.upload(v);
        std::vector<uint8_t> now = old;
        std::copy(new_row.begin(), new_row.end(), now.begin() + last * row);
        late.upload(now);
        d_out.poison();
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        ASSERT_TRUE(paged_attention_decode(a, s).ok());
        ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
        const std::vector<bf16> want = d_out.download();

        for (bool graph : {false, true}) {
          SCOPED_TRACE(graph ? "in a CUDA graph" : "eager");
          late.upload(old);  // the last row's old value, until the writer runs
          d_out.poison();
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          run_launches(s, graph, [&] {
            // (late_copy moves bf16 elements: a row of bytes is row / 2 of them)
            ASSERT_EQ(gputest::late_copy(reinterpret_cast<const bf16*>(d_new.get()),
                                         reinterpret_cast<bf16*>(late.get() + last * row), row / 2, kLateNs, s),
                      cudaSuccess);
            ASSERT_TRUE(paged_attention_decode(a, s).ok());
          });
          EXPECT_TRUE(same_bits(d_out.download(), want)) << "read this step's row before the writer finished";
        }
      }
  }
}

}  // namespace
}  // namespace ember
