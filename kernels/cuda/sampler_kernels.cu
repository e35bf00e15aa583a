// Sampling kernels: the CPU sampler's semantics (engine/sampler.cpp), one
// thread block of 512 threads per row.
//
// Per row, reading the [vocab] float32 row from L2/HBM several times:
//   logprobs : max + log-sum-exp of the raw row, top-N (N <= 20) by a radix select
//   processors: the sparse entries (bias, min_tokens mask, penalties), in place
//   greedy   : argmax, lowest id on ties
//   sampling : y = x * (1/T); top-k threshold by a count radix select; softmax
//              mass (double); top-p threshold by a *mass* radix select (weights in
//              2^-60 fixed point, so histogram sums are exact and order-free);
//              min-p; inverse CDF over survivors in ascending id order.
// The per-logit rules (processors, temperature) come from
// kernels/sampling_rules.h, which the CPU sampler also compiles: the same IEEE
// ops with no contraction, so processed logits and keys are bit-identical to
// the CPU's; only double sums differ (summation order, ~1e-16).
// Cost: ~4 row passes greedy-with-processors, ~12 with top-k + top-p + logprobs;
// vocab 128256 is 0.5 MB/row, so a row costs a few µs per pass from L2.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/sampler_kernels.h"
#include "kernels/sampling_rules.h"

namespace ember {
namespace {

constexpr int kThreads = 512;  // leaves up to 128 registers a thread (the full path takes 82, no spill)
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;
constexpr double kFixedOne = 1152921504606846976.0;  // 2^60: the mass of p = 1 in fixed point

struct Smem {
  unsigned long long hist_w[256];
  uint32_t hist_c[256];
  double red_d[kWarps];
  float red_f[kWarps];
  int32_t red_i[kWarps];
  int32_t warp_cnt[kWarps];
  uint32_t sel_key;
  unsigned long long sel_above;
  uint32_t sel_count;
  int32_t bcast_i;
  float bcast_f;
  float raw0;  // id 0's raw logit: the pick of a row whose every id is masked
  int32_t top_n;
  uint32_t top_key[kGpuSamplerMaxLogprobs];
  int32_t top_id[kGpuSamplerMaxLogprobs];
};

__device__ __forceinline__ float canon(float v) { return v == 0.0f ? 0.0f : v; }  // -0 ties +0, as on the CPU

// Order-preserving float -> uint32 (larger float, larger key).
__device__ __forceinline__ uint32_t float_key(float v) {
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_float(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }
__device__ __forceinline__ int warp_id() { return threadIdx.x >> 5; }

// Block-wide reduction; every thread gets the result. The leading barrier
// keeps a previous reduction's readers off the scratch we overwrite.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if (lane_id() == 0) scratch[warp_id()] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < kWarps; ++w) v = op(v, scratch[w]);  // same order in every thread
  return v;
}

struct Add {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxF {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }  // NaN-ignoring
};
struct MaxI {
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
};

// (value, id) argmax with the CPU's tie rule: larger value, then lower id.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

__device__ int block_argmax(float v, int id, Smem& sm) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, o);
    const int oi = __shfl_xor_sync(kFull, id, o);
    if (better(ov, oi, v, id)) v = ov, id = oi;
  }
  __syncthreads();
  if (lane_id() == 0) sm.red_f[warp_id()] = v, sm.red_i[warp_id()] = id;
  __syncthreads();
  v = sm.red_f[0];
  id = sm.red_i[0];
  for (int w = 1; w < kWarps; ++w)
    if (better(sm.red_f[w], sm.red_i[w], v, id)) v = sm.red_f[w], id = sm.red_i[w];
  return id;
}

// Histogram add with warp aggregation: lanes sharing a digit add once (the
// first radix pass puts most of a row into a handful of buckets, and 32-way
// same-address shared atomics would serialise). kUnit: every weight is 1.
template <bool kUnit>
__device__ __forceinline__ void hist_add(Smem& sm, bool part, uint32_t digit, unsigned long long w, bool count) {
  if (!__any_sync(kFull, part)) return;
  const uint32_t d = part ? digit : 0xffffffffu;
  const unsigned peers = __match_any_sync(kFull, d);
  const int lane = lane_id();
  const int leader = __ffs(peers) - 1;
  if (kUnit) {
    if (part && lane == leader) {
      atomicAdd(&sm.hist_w[d], static_cast<unsigned long long>(__popc(peers)));
      if (count) atomicAdd(&sm.hist_c[d], static_cast<uint32_t>(__popc(peers)));
    }
    return;
  }
  const bool solo = __popc(peers) == 1;
  if (part && solo) {
    atomicAdd(&sm.hist_w[d], w);
    if (count) atomicAdd(&sm.hist_c[d], 1u);
  }
  unsigned groups = __ballot_sync(kFull, part && !solo && lane == leader);
  while (groups) {
    const int l = __ffs(groups) - 1;
    groups &= groups - 1;
    const uint32_t dl = __shfl_sync(kFull, d, l);
    unsigned long long v = d == dl ? w : 0ull;  // non-participants hold the sentinel digit
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if (lane == l) {
      atomicAdd(&sm.hist_w[dl], v);
      if (count) atomicAdd(&sm.hist_c[dl], static_cast<uint32_t>(__popc(peers)));
    }
  }
}

struct Selected {
  uint32_t key;              // the key at which the weight from the top first reaches the target
  unsigned long long above;  // weight of keys strictly above it (< target)
  uint32_t count;            // elements with exactly this key
};

// Radix select over the row's participating elements, 8 bits per pass from the
// top: returns the key K with weight(> K) < target <= weight(>= K), target
// clamped to the total (count mode: the target-th largest key; mass mode: the
// top-p boundary). key_of(i, key) -> participates; weight_of(i) is called only
// for elements inside the current prefix.
template <bool kUnit, class KeyOf, class WeightOf>
__device__ Selected radix_select(int vocab, unsigned long long target, KeyOf key_of, WeightOf weight_of, Smem& sm) {
  uint32_t prefix = 0, mask = 0;
  unsigned long long above = 0;
  uint32_t count = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) sm.hist_w[b] = 0, sm.hist_c[b] = 0;
    __syncthreads();
    const bool last = shift == 0;
    for (int base = 0; base < vocab; base += kThreads) {
      const int i = base + threadIdx.x;
      uint32_t key = 0;
      bool part = i < vocab && key_of(i, key) && (key & mask) == prefix;
      unsigned long long w = 1;
      if (!kUnit && part) w = weight_of(i);
      hist_add<kUnit>(sm, part, (key >> shift) & 255u, w, last);
    }
    __syncthreads();
    if (warp_id() == 0) {
      // Lane l holds buckets 255-8l .. 248-8l: scanning lanes upward walks keys downward.
      const int lane = lane_id();
      unsigned long long loc[8], s = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) s += (loc[j] = sm.hist_w[255 - (lane * 8 + j)]);
      unsigned long long incl = s;
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned long long n = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += n;
      }
      const unsigned long long total = __shfl_sync(kFull, incl, 31);
      unsigned long long rem = target > above ? target - above : 0;
      if (rem > total) rem = total;
      if (rem == 0) rem = 1;  // degenerate (nothing participates): pick the first non-empty bucket
      const unsigned hit = __ballot_sync(kFull, incl >= rem);
      const int first = hit ? __ffs(hit) - 1 : 31;
      if (lane == first) {
        unsigned long long run = incl - s;
        int bucket = 255 - (lane * 8 + 7);
        unsigned long long run_at = run;
        bool found = false;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (!found && run + loc[j] >= rem) {
            found = true;
            bucket = 255 - (lane * 8 + j);
            run_at = run;
          }
          run += loc[j];
        }
        sm.sel_key = static_cast<uint32_t>(bucket);
        sm.sel_above = above + run_at;
        sm.sel_count = sm.hist_c[bucket];
      }
    }
    __syncthreads();
    prefix |= sm.sel_key << shift;
    mask |= 255u << shift;
    above = sm.sel_above;
    count = sm.sel_count;
  }
  return {prefix, above, count};
}

// The id of the m-th (1-based) element in ascending id order with pred(i);
// vocab when there are fewer.
template <class Pred>
__device__ int nth_match_id(int vocab, int m, Pred pred, Smem& sm) {
  int seen = 0;
  for (int base = 0; base < vocab; base += kThreads) {
    const int i = base + threadIdx.x;
    const bool p = i < vocab && pred(i);
    const int c = __syncthreads_count(p);
    if (seen + c >= m) {
      const unsigned bal = __ballot_sync(kFull, p);
      if (lane_id() == 0) sm.warp_cnt[warp_id()] = __popc(bal);
      __syncthreads();
      int before = 0;
      for (int w = 0; w < warp_id(); ++w) before += sm.warp_cnt[w];
      const int rank = seen + before + __popc(bal & ((1u << lane_id()) - 1u));
      if (p && rank == m - 1) sm.bcast_i = i;
      __syncthreads();
      return sm.bcast_i;
    }
    seen += c;
  }
  return vocab;
}

// The entry's rules, in their order (kernels/sampling_rules.h).
__device__ __forceinline__ float process(float x, const GpuSamplerEntry& e, float repetition) {
  if (e.flags & kEntryBias) x = sampling::with_bias(x, e.bias);
  if (e.flags & kEntryMask) x = sampling::masked_logit();
  if (e.flags & kEntryRepetition) x = sampling::with_repetition_penalty(x, repetition);
  if (e.flags & kEntrySubtract) x = sampling::with_additive_penalty(x, e.sub);
  return x;
}

// Raw logprobs: log-sum-exp of the unmodified row and its top-N, best first.
__device__ double raw_logprobs(const float* row, int vocab, int n, GpuSamplerRowResult& res, Smem& sm) {
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += kThreads) mx = fmaxf(mx, row[i]);
  mx = block_reduce(mx, MaxF{}, sm.red_f);
  double sum = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) sum += exp(__dsub_rn(row[i], mx));
  sum = block_reduce(sum, Add{}, sm.red_d);
  const double lse = __dadd_rn(mx, log(sum));
  if (n > vocab) n = vocab;
  if (n <= 0) {
    if (threadIdx.x == 0) res.n_top = 0;
    return lse;
  }
  auto key_of = [&](int i, uint32_t& k) { k = float_key(canon(row[i])); return true; };
  auto unit = [](int) { return 1ull; };
  const Selected sel = radix_select<true>(vocab, static_cast<unsigned long long>(n), key_of, unit, sm);
  const int need_ties = n - static_cast<int>(sel.above);
  int tie_cut = vocab;
  if (static_cast<int>(sel.count) > need_ties)
    tie_cut = nth_match_id(vocab, need_ties, [&](int i) { return float_key(canon(row[i])) == sel.key; }, sm);
  if (threadIdx.x == 0) sm.top_n = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const uint32_t k = float_key(canon(row[i]));
    if (k > sel.key || (k == sel.key && i <= tie_cut)) {
      const int slot = atomicAdd(&sm.top_n, 1);
      if (slot < kGpuSamplerMaxLogprobs) sm.top_key[slot] = k, sm.top_id[slot] = i;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int got = sm.top_n < n ? sm.top_n : n;
    for (int a = 1; a < got; ++a) {  // insertion sort, <= 20 items: larger key, then lower id
      const uint32_t k = sm.top_key[a];
      const int id = sm.top_id[a];
      int b = a - 1;
      while (b >= 0 && (sm.top_key[b] < k || (sm.top_key[b] == k && sm.top_id[b] > id))) {
        sm.top_key[b + 1] = sm.top_key[b], sm.top_id[b + 1] = sm.top_id[b];
        --b;
      }
      sm.top_key[b + 1] = k, sm.top_id[b + 1] = id;
    }
    res.n_top = got;
    for (int a = 0; a < got; ++a) {
      res.top_id[a] = sm.top_id[a];
      res.top_logprob[a] = static_cast<float>(__dsub_rn(key_float(sm.top_key[a]), lse));
    }
  }
  return lse;
}

// Draws from the sampling distribution; returns the token, or -1 when every
// logit is -inf (the CPU returns 0 then and takes no draw).
__device__ int draw(float* row, int vocab, const GpuSamplerRowParams& p, Smem& sm) {
  const float inv_t = p.inv_temperature;
  auto y_of = [&](float x) { return canon(sampling::with_temperature(x, inv_t)); };

  // Candidates (x > -inf, as the CPU) and the max scaled logit.
  int n_cand = 0;
  float mxf = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float x = row[i];
    if (x > -INFINITY) ++n_cand, mxf = fmaxf(mxf, y_of(x));
  }
  n_cand = block_reduce(n_cand, Add{}, sm.red_i);
  if (n_cand == 0) return -1;
  mxf = block_reduce(mxf, MaxF{}, sm.red_f);
  const double mx = mxf;

  // top-k: keep keys >= the k-th largest (ties with it kept, as vLLM).
  uint32_t k_floor = 0;
  if (p.top_k > 0 && p.top_k < n_cand) {
    auto key_of = [&](int i, uint32_t& k) {
      const float x = row[i];
      k = float_key(y_of(x));
      return x > -INFINITY;
    };
    auto unit = [](int) { return 1ull; };
    k_floor = radix_select<true>(vocab, static_cast<unsigned long long>(p.top_k), key_of, unit, sm).key;
  }
  auto in_topk = [&](int i, float& y) {
    const float x = row[i];
    y = y_of(x);
    return x > -INFINITY && float_key(y) >= k_floor;
  };

  double sum = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    float y;
    if (in_topk(i, y)) sum += exp(__dsub_rn(y, mx));
  }
  sum = block_reduce(sum, Add{}, sm.red_d);
  auto prob = [&](float y) { return __ddiv_rn(exp(__dsub_rn(y, mx)), sum); };

  // top-p: a token survives if the mass strictly before it (best first, ties by
  // id) is below top_p. The mass select finds the boundary value; ties at it
  // are kept lowest id first, as many as the CPU's running sum allows.
  const bool use_top_p = p.top_p < 1.0f;
  uint32_t p_key = 0;
  int tie_cut = vocab;
  if (use_top_p) {
    auto key_of = [&](int i, uint32_t& k) {
      float y;
      const bool in = in_topk(i, y);
      k = float_key(y);
      return in;
    };
    auto mass = [&](int i) { return __double2ull_rn(prob(y_of(row[i])) * kFixedOne); };
    const double top_p = p.top_p;
    const Selected sel =
        radix_select<false>(vocab, __double2ull_rn(top_p * kFixedOne), key_of, mass, sm);
    p_key = sel.key;
    const double before = static_cast<double>(sel.above) / kFixedOne;
    const double pj = prob(key_float(sel.key));
    double keep = pj > 0.0 ? ceil((top_p - before) / pj) : static_cast<double>(sel.count);
    if (keep < 1.0) keep = 1.0;
    if (keep < static_cast<double>(sel.count)) {
      const int m = static_cast<int>(keep);
      tie_cut = nth_match_id(vocab, m, [&](int i) {
        float y;
        return in_topk(i, y) && float_key(y) == p_key;
      }, sm);
    }
  }

  const bool use_min_p = p.min_p > 0.0f;
  const double floor_p = static_cast<double>(p.min_p) * __ddiv_rn(1.0, sum);
  auto survives = [&](int i, double& pr) {
    float y;
    if (!in_topk(i, y)) return false;
    if (use_top_p) {
      const uint32_t k = float_key(y);
      if (k < p_key || (k == p_key && i > tie_cut)) return false;
    }
    pr = prob(y);
    return !(use_min_p && pr < floor_p);
  };

  // Inverse CDF in ascending id order: warp w owns ids [w*seg, (w+1)*seg).
  const int seg = ((vocab + kThreads - 1) / kThreads) * 32;
  const int lane = lane_id(), warp = warp_id();
  const int seg_begin = warp * seg;
  const int seg_end = min(seg_begin + seg, vocab);
  double wsum = 0.0;
  int last = -1;
  for (int i = seg_begin + lane; i < seg_end; i += 32) {
    double pr;
    if (survives(i, pr)) wsum += pr, last = i != p.draft ? i : last;  // (a rejected draft is no fallback)
  }
  for (int o = 16; o > 0; o >>= 1) wsum += __shfl_xor_sync(kFull, wsum, o);
  last = block_reduce(last, MaxI{}, sm.red_i);
  if (lane == 0) sm.red_d[warp] = wsum;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kWarps; ++w) total += sm.red_d[w];
  double u = p.uniform * total;
  // Verification of a proposed token d (the CPU's rule, engine/sampler.cpp):
  // accept it with probability p(d), else draw from the survivors without d
  // with the second uniform. Every thread evaluates the same id, so all take
  // the same branch.
  int excluded = -1;
  double excluded_p = 0.0;
  if (p.draft >= 0 && p.draft < vocab) {
    double pd = 0.0;
    if (!survives(p.draft, pd)) pd = 0.0;
    if (p.uniform * total < pd) return p.draft;
    const double rest = total - pd;
    if (!(rest > 0.0)) return p.draft;
    excluded = p.draft;
    excluded_p = pd;
    u = p.uniform2 * rest;
  }
  const int excluded_warp = excluded >= 0 ? excluded / seg : -1;
  double acc = 0.0;
  int owner = -1;
  for (int w = 0; w < kWarps && owner < 0; ++w) {
    const double mass = w == excluded_warp ? sm.red_d[w] - excluded_p : sm.red_d[w];
    if (u < acc + mass) owner = w;
    else acc += mass;
  }
  if (threadIdx.x == 0) sm.bcast_i = last;
  __syncthreads();
  if (warp == owner) {
    bool done = false;
    for (int base = seg_begin; base < seg_end && !done; base += 32) {
      const int i = base + lane;
      double pr = 0.0;
      const bool s = i < seg_end && i != excluded && survives(i, pr);
      double incl = s ? pr : 0.0;
      for (int o = 1; o < 32; o <<= 1) {
        const double n = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += n;
      }
      const unsigned hit = __ballot_sync(kFull, s && u < acc + incl);
      if (hit) {
        if (lane == __ffs(hit) - 1) sm.bcast_i = i;
        done = true;
      }
      acc += __shfl_sync(kFull, incl, 31);
    }
  }
  __syncthreads();
  return sm.bcast_i;
}

__global__ void __launch_bounds__(kThreads, 1)
    sample_rows_kernel(float* logits, int vocab, const GpuSamplerRowParams* params, GpuSamplerEntry* entries,
                       const uint32_t* masks, GpuSamplerRowResult* results, int32_t* tokens) {
  __shared__ Smem sm;
  const int r = blockIdx.x;
  float* row = logits + static_cast<size_t>(r) * vocab;
  const GpuSamplerRowParams p = params[r];
  GpuSamplerRowResult& res = results[r];

  double lse = 0.0;
  if (p.n_logprobs >= 0) lse = raw_logprobs(row, vocab, p.n_logprobs, res, sm);
  // The raw logits the sampled token's logprob may need, before the grammar
  // and the processors change them: the processed ids', and id 0's (the pick
  // when every id is masked, e.g. a grammar that allows only EOS while
  // min_tokens forbids it).
  for (int e = p.entry_begin + threadIdx.x; e < p.entry_end; e += kThreads) entries[e].raw = row[entries[e].id];
  if (threadIdx.x == 0) sm.raw0 = row[0];
  __syncthreads();

  if (p.mask_offset >= 0) {  // the grammar first (structured outputs), as the CPU sampler
    const uint32_t* mask = masks + p.mask_offset;
    for (int i = threadIdx.x; i < vocab; i += kThreads)
      if (!((mask[i >> 5] >> (i & 31)) & 1u)) row[i] = sampling::masked_logit();
    __syncthreads();
  }

  // Then the processors, over the masked row (a masked logit stays masked).
  for (int e = p.entry_begin + threadIdx.x; e < p.entry_end; e += kThreads) {
    GpuSamplerEntry& en = entries[e];
    row[en.id] = process(row[en.id], en, p.repetition);
  }
  __syncthreads();

  int token;
  int drew = 0;
  if (p.greedy) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += kThreads)
      if (better(row[i], i, bv, bi)) bv = row[i], bi = i;
    token = block_argmax(bv, bi, sm);
    if (token >= vocab) token = 0;  // only NaNs: the CPU's scan keeps id 0
  } else {
    token = draw(row, vocab, p, sm);
    drew = token >= 0;
    if (token < 0) token = 0;
  }

  if (p.n_logprobs >= 0) {
    // The sampled token's raw logit: saved above if it was processed (or is id 0).
    if (threadIdx.x == 0) sm.bcast_f = token == 0 ? sm.raw0 : row[token];
    __syncthreads();
    for (int e = p.entry_begin + threadIdx.x; e < p.entry_end; e += kThreads)
      if (entries[e].id == token) sm.bcast_f = entries[e].raw;
    __syncthreads();
    if (threadIdx.x == 0) res.logprob = static_cast<float>(__dsub_rn(sm.bcast_f, lse));
  } else if (threadIdx.x == 0) {
    res.logprob = 0.0f;
    res.n_top = 0;
  }
  if (threadIdx.x == 0) res.token = token, res.drew = drew, tokens[r] = token;
}

// Greedy fast path: 16-byte loads when the row allows, block argmax.
__global__ void __launch_bounds__(kThreads, 1)
    argmax_rows_kernel(const float* logits, int vocab, int32_t* tokens) {
  __shared__ Smem sm;
  const float* row = logits + static_cast<size_t>(blockIdx.x) * vocab;
  float bv = -INFINITY;
  int bi = 0x7fffffff;
  const bool vec = (vocab % 4) == 0 && (reinterpret_cast<uintptr_t>(logits) % 16) == 0;
  if (vec) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int j = threadIdx.x; j < vocab / 4; j += kThreads) {
      const float4 v = row4[j];
      if (better(v.x, 4 * j, bv, bi)) bv = v.x, bi = 4 * j;
      if (better(v.y, 4 * j + 1, bv, bi)) bv = v.y, bi = 4 * j + 1;
      if (better(v.z, 4 * j + 2, bv, bi)) bv = v.z, bi = 4 * j + 2;
      if (better(v.w, 4 * j + 3, bv, bi)) bv = v.w, bi = 4 * j + 3;
    }
  } else {
    for (int i = threadIdx.x; i < vocab; i += kThreads)
      if (better(row[i], i, bv, bi)) bv = row[i], bi = i;
  }
  const int token = block_argmax(bv, bi, sm);
  if (threadIdx.x == 0) tokens[blockIdx.x] = token < vocab ? token : 0;
}

}  // namespace

Status launch_argmax_rows(const float* d_logits, int32_t rows, int32_t vocab, int32_t* d_tokens,
                          cudaStream_t stream) {
  if (rows <= 0) return Status::success();
  argmax_rows_kernel<<<rows, kThreads, 0, stream>>>(d_logits, vocab, d_tokens);
  EMBER_CUDA_TRY(cudaGetLastError());
  return Status::success();
}

Status launch_sample_rows(float* d_logits, int32_t rows, int32_t vocab, const GpuSamplerRowParams* d_params,
                          GpuSamplerEntry* d_entries, const uint32_t* d_masks, GpuSamplerRowResult* d_results,
                          int32_t* d_tokens, cudaStream_t stream) {
  if (rows <= 0) return Status::success();
  sample_rows_kernel<<<rows, kThreads, 0, stream>>>(d_logits, vocab, d_params, d_entries, d_masks, d_results,
                                                    d_tokens);
  EMBER_CUDA_TRY(cudaGetLastError());
  return Status::success();
}

}  // namespace ember
