// Host half of GpuSampler: folds each row's logits processors into sparse
// entries (the same float ops the CPU sampler does, in its order), stages
// everything in one pinned buffer, launches, and reads the results back.

#include "engine/cuda/gpu_sampler.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/sampling_rules.h"

namespace ember {

GpuSampler::GpuSampler(int32_t vocab, int32_t max_rows, std::vector<int32_t> eos)
    : vocab_(vocab), max_rows_(max_rows), eos_(std::move(eos)), slot_(static_cast<size_t>(vocab), -1) {}

GpuSampler::~GpuSampler() {
  for (Slot& sl : slots_) {
    if (sl.done) cudaEventSynchronize(sl.done);
    cudaFreeHost(sl.h_upload);
    cudaFree(sl.d_upload);
    cudaFreeHost(sl.h_results);
    cudaFree(sl.d_results);
    cudaFreeHost(sl.h_tokens);
    cudaFree(sl.d_tokens);
    if (sl.done) cudaEventDestroy(sl.done);
  }
}

Result<std::unique_ptr<GpuSampler>> GpuSampler::create(int32_t vocab, int32_t max_rows, std::vector<int32_t> eos) {
  if (vocab <= 0 || max_rows <= 0)
    return Error{"GpuSampler: vocab and max_rows must be positive, got " + std::to_string(vocab) + " and " +
                 std::to_string(max_rows)};
  std::unique_ptr<GpuSampler> s(new GpuSampler(vocab, max_rows, std::move(eos)));
  const size_t n = static_cast<size_t>(max_rows);
  for (Slot& sl : s->slots_) {
    EMBER_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&sl.h_results), n * sizeof(GpuSamplerRowResult)));
    EMBER_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&sl.d_results), n * sizeof(GpuSamplerRowResult)));
    EMBER_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&sl.h_tokens), n * sizeof(int32_t)));
    EMBER_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&sl.d_tokens), n * sizeof(int32_t)));
    EMBER_CUDA_TRY(cudaEventCreateWithFlags(&sl.done, cudaEventDisableTiming));
    // Room for every row's params and a modest number of entries; grows on demand.
    Status st = s->reserve_upload(sl, n * sizeof(GpuSamplerRowParams) + 64 * n * sizeof(GpuSamplerEntry), nullptr);
    if (!st.ok()) return st.error();
  }
  return s;
}

Status GpuSampler::reserve_upload(Slot& sl, size_t bytes, cudaStream_t stream) {
  if (bytes <= sl.upload_capacity) return Status::success();
  bytes = std::max(bytes, sl.upload_capacity * 2);
  // An outstanding launch may still read the old buffers (rare: growth only).
  if (sl.d_upload != nullptr) EMBER_CUDA_TRY(cudaStreamSynchronize(stream));
  cudaFreeHost(sl.h_upload);
  cudaFree(sl.d_upload);
  sl.h_upload = sl.d_upload = nullptr;
  sl.upload_capacity = 0;
  EMBER_CUDA_TRY(cudaMallocHost(&sl.h_upload, bytes));
  EMBER_CUDA_TRY(cudaMalloc(&sl.d_upload, bytes));
  sl.upload_capacity = bytes;
  return Status::success();
}

void GpuSampler::add_entries(const SamplerRow& row, GpuSamplerRowParams& params) {
  const SamplingParams& sp = *row.params;
  const int32_t begin = static_cast<int32_t>(entries_.size());
  params.entry_begin = begin;
  auto in_vocab = [&](int32_t id) { return id >= 0 && id < vocab_; };
  auto touch = [&](int32_t id) -> GpuSamplerEntry& {
    if (slot_[id] < 0) {
      slot_[id] = static_cast<int32_t>(entries_.size());
      entries_.push_back({id, 0u, 0.0f, 0.0f, 0.0f});
      counts_.push_back(0);
    }
    return entries_[slot_[id]];
  };

  for (const auto& [id, bias] : sp.logit_bias) {
    if (!in_vocab(id)) continue;
    GpuSamplerEntry& e = touch(id);
    e.flags |= kEntryBias;
    e.bias = bias;
  }
  if (sampling::min_tokens_masks(static_cast<int64_t>(row.output_ids.size()) + row.pending_outputs, sp.min_tokens) &&
      (row.allowed == nullptr || mask_allows_more_than_stops(row, vocab_, eos_))) {
    if (!sp.ignore_eos)
      for (int32_t id : eos_)
        if (in_vocab(id)) touch(id).flags |= kEntryMask;
    for (int32_t id : sp.stop_token_ids)
      if (in_vocab(id)) touch(id).flags |= kEntryMask;
  }
  const bool repetition = sp.repetition_penalty != 1.0f;
  const bool additive = sp.presence_penalty != 0.0f || sp.frequency_penalty != 0.0f;
  if (repetition) {
    params.repetition = sp.repetition_penalty;
    for (int32_t id : row.prompt_ids)
      if (in_vocab(id)) touch(id).flags |= kEntryRepetition;
    for (int32_t id : row.output_ids)
      if (in_vocab(id)) touch(id).flags |= kEntryRepetition;
  }
  if (additive) {
    for (int32_t id : row.output_ids)
      if (in_vocab(id)) {
        touch(id);
        ++counts_[slot_[id]];
      }
    for (size_t e = static_cast<size_t>(begin); e < entries_.size(); ++e) {
      if (counts_[e] == 0) continue;
      // The CPU's expression, evaluated here in float exactly as it does.
      entries_[e].sub = sampling::additive_penalty(sp.frequency_penalty, sp.presence_penalty, counts_[e]);
      entries_[e].flags |= kEntrySubtract;
    }
  }
  for (size_t e = static_cast<size_t>(begin); e < entries_.size(); ++e) slot_[entries_[e].id] = -1;
  params.entry_end = static_cast<int32_t>(entries_.size());
}

Status GpuSampler::launch(float* d_logits, std::span<const SamplerRow> rows, cudaStream_t stream) {
  if (outstanding_ >= kSlots) return Error{"GpuSampler: launch with " + std::to_string(kSlots) + " outstanding"};
  if (rows.size() > static_cast<size_t>(max_rows_))
    return Error{"GpuSampler: " + std::to_string(rows.size()) + " rows, at most " + std::to_string(max_rows_)};
  Slot& sl = slots_[next_];
  const int32_t n = static_cast<int32_t>(rows.size());

  params_.assign(rows.size(), GpuSamplerRowParams{});
  entries_.clear();
  masks_.clear();
  counts_.clear();
  sl.n_logprobs.assign(rows.size(), -1);
  bool fast = true;
  for (size_t r = 0; r < rows.size(); ++r) {
    const SamplerRow& row = rows[r];
    if (row.params == nullptr) return Error{"GpuSampler: row " + std::to_string(r) + " has no params"};
    const SamplingParams& sp = *row.params;
    if (row.pending_outputs > 0 && sp.penalizes_outputs())
      return Error{"GpuSampler: row " + std::to_string(r) + " penalizes outputs that are not known yet"};
    GpuSamplerRowParams& p = params_[r];
    p.greedy = sp.greedy() ? 1 : 0;
    p.top_k = sp.top_k_or_off();
    p.inv_temperature = p.greedy ? 1.0f : sampling::inverse_temperature(sp.temperature);  // the CPU's float reciprocal
    p.top_p = sp.top_p;
    p.min_p = sp.min_p;
    if (sp.logprobs) {
      if (*sp.logprobs < 0 || *sp.logprobs > kGpuSamplerMaxLogprobs)
        return Error{"GpuSampler: row " + std::to_string(r) + " asks for " + std::to_string(*sp.logprobs) +
                     " logprobs, at most " + std::to_string(kGpuSamplerMaxLogprobs)};
      p.n_logprobs = *sp.logprobs;
    }
    sl.n_logprobs[r] = p.n_logprobs;
    if (!p.greedy) {
      if (row.generator == nullptr) return Error{"GpuSampler: row " + std::to_string(r) + " has no generator"};
      p.uniform = row.generator->next_uniform();  // one draw per non-greedy row, as the CPU
      if (row.draft_token >= 0) {               // a verify row takes two, whatever happens
        p.draft = row.draft_token;
        p.uniform2 = row.generator->next_uniform();
      }
    }
    add_entries(row, p);
    if (row.allowed != nullptr) {  // the grammar's bitmask, uploaded after the entries
      const size_t words = (static_cast<size_t>(vocab_) + 31) / 32;
      p.mask_offset = static_cast<int64_t>(masks_.size());
      masks_.insert(masks_.end(), row.allowed, row.allowed + words);
    }
    fast = fast && p.greedy && p.n_logprobs < 0 && p.entry_end == p.entry_begin && p.mask_offset < 0;
  }
  sl.rows = n;
  sl.fast = fast;

  if (n > 0 && fast) {
    Status st = launch_argmax_rows(d_logits, n, vocab_, sl.d_tokens, stream);
    if (!st.ok()) return st;
    EMBER_CUDA_TRY(cudaMemcpyAsync(sl.h_tokens, sl.d_tokens, rows.size() * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                   stream));
  } else if (n > 0) {
    const size_t params_bytes = rows.size() * sizeof(GpuSamplerRowParams);
    const size_t entries_bytes = entries_.size() * sizeof(GpuSamplerEntry);
    const size_t masks_bytes = masks_.size() * sizeof(uint32_t);
    static_assert(sizeof(GpuSamplerRowParams) % 8 == 0 && sizeof(GpuSamplerEntry) % 4 == 0);
    // The slot's previous launch was collected: its staging is free to rewrite.
    Status st = reserve_upload(sl, params_bytes + entries_bytes + masks_bytes, stream);
    if (!st.ok()) return st;
    auto* h = static_cast<char*>(sl.h_upload);
    std::memcpy(h, params_.data(), params_bytes);
    if (entries_bytes) std::memcpy(h + params_bytes, entries_.data(), entries_bytes);
    if (masks_bytes) std::memcpy(h + params_bytes + entries_bytes, masks_.data(), masks_bytes);
    EMBER_CUDA_TRY(cudaMemcpyAsync(sl.d_upload, sl.h_upload, params_bytes + entries_bytes + masks_bytes,
                                   cudaMemcpyHostToDevice, stream));
    auto* d = static_cast<char*>(sl.d_upload);
    auto* d_params = reinterpret_cast<const GpuSamplerRowParams*>(d);
    auto* d_entries = reinterpret_cast<GpuSamplerEntry*>(d + params_bytes);
    auto* d_masks = reinterpret_cast<const uint32_t*>(d + params_bytes + entries_bytes);
    st = launch_sample_rows(d_logits, n, vocab_, d_params, d_entries, d_masks, sl.d_results, sl.d_tokens, stream);
    if (!st.ok()) return st;
    EMBER_CUDA_TRY(cudaMemcpyAsync(sl.h_results, sl.d_results, rows.size() * sizeof(GpuSamplerRowResult),
                                   cudaMemcpyDeviceToHost, stream));
  }
  EMBER_CUDA_TRY(cudaEventRecord(sl.done, stream));
  next_ = (next_ + 1) % kSlots;
  ++outstanding_;
  return Status::success();
}

const int32_t* GpuSampler::device_tokens() const { return slots_[(next_ + kSlots - 1) % kSlots].d_tokens; }

Status GpuSampler::collect(std::vector<SampledToken>& out) {
  out.clear();
  if (outstanding_ == 0) return Error{"GpuSampler: collect with nothing launched"};
  Slot& sl = slots_[(next_ + kSlots - outstanding_) % kSlots];
  --outstanding_;
  EMBER_CUDA_TRY(cudaEventSynchronize(sl.done));
  out.resize(static_cast<size_t>(sl.rows));
  for (int32_t r = 0; r < sl.rows; ++r) {
    SampledToken& t = out[static_cast<size_t>(r)];
    if (sl.fast) {
      t.token = sl.h_tokens[r];
      continue;
    }
    const GpuSamplerRowResult& res = sl.h_results[r];
    t.token = res.token;
    if (sl.n_logprobs[static_cast<size_t>(r)] >= 0) {
      t.logprob = res.logprob;
      const int32_t got = std::min(res.n_top, kGpuSamplerMaxLogprobs);
      for (int32_t j = 0; j < got; ++j) t.top.push_back({res.top_id[j], res.top_logprob[j]});
    }
  }
  return Status::success();
}

Status GpuSampler::sample(float* d_logits, std::span<const SamplerRow> rows, std::vector<SampledToken>& out,
                          cudaStream_t stream) {
  out.clear();
  if (Status st = launch(d_logits, rows, stream); !st.ok()) return st;
  return collect(out);
}

}  // namespace ember
