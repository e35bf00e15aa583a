// Causal paged attention over a varlen batch, float32 (over a float32 or an
// FP8 cache). One task per
// (token, query head): scores for the whole visible context, then softmax and
// the weighted sum of V. The GPU kernels (flash attention / flash decoding)
// are checked against this loop (the exact precision); the fast one runs
// attention_avx2.cpp per task.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/attention_avx2.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/quant/fp8.h"

namespace ember {

namespace {

// The fast kernel over an FP8 cache: a decode token reads each key once per query head, so it decodes codes as it
// goes. A prefill chunk's tokens read the same keys again and again, so its context is decoded once, to code *
// scale in float32 (the exact loop's values, bit for bit), and attended as a float32 cache whose block i lies at
// i * block_size (`identity`). A plain decode step makes no copy.
struct PrefillContexts {
  std::vector<float> floats;  // per sequence b with a chunk of 2+ tokens: [seq_lens[b], Hkv, D] of K, then V
  std::vector<int64_t> at;    // where sequence b's starts in floats, or -1
  std::vector<int32_t> identity;

  bool has(int64_t b) const { return !at.empty() && at[static_cast<size_t>(b)] >= 0; }
};

PrefillContexts decode_prefill_contexts(const Tensor& k_cache, const Tensor& v_cache, const ForwardInputs& in,
                                        ThreadPool& pool) {
  const int64_t block_size = k_cache.dim(1), row = k_cache.dim(2) * k_cache.dim(3);
  const float k_scale = *k_cache.scale, v_scale = *v_cache.scale;
  PrefillContexts c;
  c.at.assign(static_cast<size_t>(in.num_seqs()), -1);
  int64_t floats = 0, most_blocks = 0;
  for (int64_t b = 0; b < in.num_seqs(); ++b) {
    if (in.query_start_loc[b + 1] - in.query_start_loc[b] < 2) continue;
    c.at[static_cast<size_t>(b)] = floats;
    floats += 2 * int64_t{in.seq_lens[b]} * row;
    most_blocks = std::max<int64_t>(most_blocks, (in.seq_lens[b] + block_size - 1) / block_size);
  }
  c.floats.resize(static_cast<size_t>(floats));
  c.identity.resize(static_cast<size_t>(most_blocks));
  for (int64_t i = 0; i < most_blocks; ++i) c.identity[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const auto* k_codes = static_cast<const uint8_t*>(k_cache.data);
  const auto* v_codes = static_cast<const uint8_t*>(v_cache.data);
  for (int64_t b = 0; b < in.num_seqs(); ++b) {
    if (!c.has(b)) continue;
    const int64_t ctx = in.seq_lens[b];
    const int32_t* table = in.block_tables.data() + b * in.max_blocks_per_seq;
    float* k_out = c.floats.data() + c.at[static_cast<size_t>(b)];
    float* v_out = k_out + ctx * row;
    pool.parallel_for(ctx, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int64_t slot = int64_t{table[j / block_size]} * block_size + j % block_size;
        dequantize_fp8_avx2(k_codes + slot * row, row, k_scale, k_out + j * row);
        dequantize_fp8_avx2(v_codes + slot * row, row, v_scale, v_out + j * row);
      }
    });
  }
  return c;
}

}  // namespace

void CpuBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const ForwardInputs& in,
                                 int64_t num_heads, float scale, Tensor& out) {
  const int64_t t_count = in.query_start_loc.back();
  const int64_t hq = num_heads, d = q.cols() / hq;
  const int64_t block_size = k_cache.dim(1), hkv = k_cache.dim(2);
  assert(q.rows() == t_count && q.cols() == hq * d && out.rows() == t_count && out.cols() == hq * d);
  assert(k_cache.dim(3) == d && hq % hkv == 0);
  const int64_t group = hq / hkv;

  // Which sequence each token belongs to, and its index in the chunk.
  std::vector<int32_t> seq_of(t_count);
  for (int64_t b = 0; b < in.num_seqs(); ++b)
    for (int32_t t = in.query_start_loc[b]; t < in.query_start_loc[b + 1]; ++t) seq_of[t] = static_cast<int32_t>(b);

  // The fast precision takes the AVX2 kernel (another summation order); the exact one this loop.
  const bool fast = precision_ == CpuPrecision::kFast && best_cpu_isa() != CpuIsa::kScalar && d % 8 == 0;
  // An FP8 cache (kernels/backend.h) is read as code * scale: rows decoded into scratch for the exact loop, 8
  // codes at a time in the AVX2 kernel, whole contexts of prefill chunks before it (decode_prefill_contexts).
  const bool fp8 = k_cache.dtype == DType::kF8E4M3;
  assert(v_cache.dtype == k_cache.dtype);
  const float k_scale = fp8 ? *k_cache.scale : 1.0f, v_scale = fp8 ? *v_cache.scale : 1.0f;
  const float* values = quant::fp8_e4m3_values();
  const PrefillContexts contexts =
      fast && fp8 ? decode_prefill_contexts(k_cache, v_cache, in, pool_) : PrefillContexts{};
  // A task's cost grows with its token's visible context, so a prefill's last tokens cost the most: tasks are
  // claimed last token first, in small chunks, and the cheap early tokens even out the threads at the end.
  const int64_t tasks = t_count * hq;
  const int64_t grain = std::max<int64_t>(1, tasks / (16 * pool_.num_threads()));
  auto attend = [&](int64_t begin, int64_t end) {
    std::vector<float> scores, decoded(static_cast<size_t>(d));
    std::vector<int64_t> rows;
    // Row j of this task's KV head in a cache, as float32.
    auto row_of = [&](const Tensor& cache, float cache_scale, int64_t at) -> const float* {
      if (!fp8) return cache.f32() + at;
      const uint8_t* codes = static_cast<const uint8_t*>(cache.data) + at;
      for (int64_t i = 0; i < d; ++i) decoded[static_cast<size_t>(i)] = values[codes[i]] * cache_scale;
      return decoded.data();
    };
    for (int64_t c = begin; c < end; ++c) {
      const int64_t task = tasks - 1 - c;
      const int64_t t = task / hq, h = task % hq, kvh = h / group;
      const int32_t b = seq_of[t];
      const int64_t q_len = in.query_start_loc[b + 1] - in.query_start_loc[b];
      const int64_t visible = in.seq_lens[b] - q_len + (t - in.query_start_loc[b]) + 1;
      const int32_t* table = in.block_tables.data() + static_cast<int64_t>(b) * in.max_blocks_per_seq;
      auto slot_of = [&](int64_t j) {
        return static_cast<int64_t>(table[j / block_size]) * block_size + j % block_size;
      };

      const float* qv = q.f32() + (t * hq + h) * d;
      if (fast) {
        AttendArgs args{nullptr, nullptr, hkv * d, d, visible, scale, table, block_size};
        if (contexts.has(b)) {
          args.k_cache = contexts.floats.data() + contexts.at[static_cast<size_t>(b)] + kvh * d;
          args.v_cache = args.k_cache + in.seq_lens[b] * hkv * d;
          args.block_table = contexts.identity.data();
        } else if (fp8) {
          args.k_codes = static_cast<const uint8_t*>(k_cache.data) + kvh * d;
          args.v_codes = static_cast<const uint8_t*>(v_cache.data) + kvh * d;
          args.k_scale = k_scale;
          args.v_scale = v_scale;
        } else {
          args.k_cache = k_cache.f32() + kvh * d;
          args.v_cache = v_cache.f32() + kvh * d;
        }
        attend_one_avx2(args, qv, out.f32() + (t * hq + h) * d, scores, rows);
        continue;
      }
      scores.resize(visible);
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < visible; ++j) {
        const float* kv = row_of(k_cache, k_scale, (slot_of(j) * hkv + kvh) * d);
        float s = 0;
        for (int64_t i = 0; i < d; ++i) s += qv[i] * kv[i];
        scores[j] = s * scale;
        max_score = std::max(max_score, scores[j]);
      }
      float sum = 0;
      for (int64_t j = 0; j < visible; ++j) {
        scores[j] = std::exp(scores[j] - max_score);
        sum += scores[j];
      }
      float* o = out.f32() + (t * hq + h) * d;
      std::fill_n(o, d, 0.0f);
      for (int64_t j = 0; j < visible; ++j) {
        const float* vv = row_of(v_cache, v_scale, (slot_of(j) * hkv + kvh) * d);
        const float p = scores[j] / sum;
        for (int64_t i = 0; i < d; ++i) o[i] += p * vv[i];
      }
    }
  };
  pool_.parallel_for(tasks, attend, grain);
}

}  // namespace ember
