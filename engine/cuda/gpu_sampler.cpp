// Host half of GpuSampler: folds each row's logits processors into sparse
// entries (the same float ops the CPU sampler does, in its order), stages
// everything in one pinned buffer, launches, and reads the results back.

#include "engine/cuda/gpu_sampler.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_check.h"

namespace ember {

GpuSampler::GpuSampler(int32_t vocab, int32_t max_rows, std::vector<int32_t> eos)
    : vocab_(vocab), max_rows_(max_rows), eos_(std::move(eos)), slot_(static_cast<size_t>(vocab), -1) {}

GpuSampler::~GpuSampler() {
  cudaFreeHost(h_upload_);
  cudaFree(d_upload_);
  cudaFreeHost(h_results_);
  cudaFree(d_results_);
  cudaFreeHost(h_tokens_);
  cudaFree(d_tokens_);
}

Result<std::unique_ptr<GpuSampler>> GpuSampler::create(int32_t vocab, int32_t max_rows, std::vector<int32_t> eos) {
  if (vocab <= 0 || max_rows <= 0)
    return Error{"GpuSampler: vocab and max_rows must be positive, got " + std::to_string(vocab) + " and " +
                 std::to_string(max_rows)};
  std::unique_ptr<GpuSampler> s(new GpuSampler(vocab, max_rows, std::move(eos)));
  const size_t n = static_cast<size_t>(max_rows);
  EMBER_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&s->h_results_), n * sizeof(GpuSamplerRowResult)));
  EMBER_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&s->d_results_), n * sizeof(GpuSamplerRowResult)));
  EMBER_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&s->h_tokens_), n * sizeof(int32_t)));
  EMBER_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&s->d_tokens_), n * sizeof(int32_t)));
  // Room for every row's params and a modest number of entries; grows on demand.
  Status st = s->reserve_upload(n * sizeof(GpuSamplerRowParams) + 64 * n * sizeof(GpuSamplerEntry));
  if (!st.ok()) return st.error();
  return s;
}

Status GpuSampler::reserve_upload(size_t bytes) {
  if (bytes <= upload_capacity_) return Status::success();
  bytes = std::max(bytes, upload_capacity_ * 2);
  // The previous call ended with a stream sync, so nothing still reads these.
  cudaFreeHost(h_upload_);
  cudaFree(d_upload_);
  h_upload_ = d_upload_ = nullptr;
  upload_capacity_ = 0;
  EMBER_CUDA_TRY(cudaMallocHost(&h_upload_, bytes));
  EMBER_CUDA_TRY(cudaMalloc(&d_upload_, bytes));
  upload_capacity_ = bytes;
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
  if (static_cast<int64_t>(row.output_ids.size()) < sp.min_tokens) {
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
      entries_[e].sub = sp.frequency_penalty * static_cast<float>(counts_[e]) + sp.presence_penalty;
      entries_[e].flags |= kEntrySubtract;
    }
  }
  for (size_t e = static_cast<size_t>(begin); e < entries_.size(); ++e) slot_[entries_[e].id] = -1;
  params.entry_end = static_cast<int32_t>(entries_.size());
}

Status GpuSampler::sample(float* d_logits, std::span<const SamplerRow> rows, std::vector<SampledToken>& out,
                          cudaStream_t stream) {
  out.clear();
  if (rows.empty()) return Status::success();
  if (rows.size() > static_cast<size_t>(max_rows_))
    return Error{"GpuSampler: " + std::to_string(rows.size()) + " rows, at most " + std::to_string(max_rows_)};
  const int32_t n = static_cast<int32_t>(rows.size());

  params_.assign(rows.size(), GpuSamplerRowParams{});
  entries_.clear();
  counts_.clear();
  next_generators_.assign(rows.size(), RequestGenerator{});
  bool fast = true;
  for (size_t r = 0; r < rows.size(); ++r) {
    const SamplerRow& row = rows[r];
    if (row.params == nullptr) return Error{"GpuSampler: row " + std::to_string(r) + " has no params"};
    const SamplingParams& sp = *row.params;
    GpuSamplerRowParams& p = params_[r];
    p.greedy = sp.greedy() ? 1 : 0;
    p.top_k = sp.top_k_or_off();
    p.inv_temperature = p.greedy ? 1.0f : 1.0f / sp.temperature;  // the CPU's float reciprocal
    p.top_p = sp.top_p;
    p.min_p = sp.min_p;
    if (sp.logprobs) {
      if (*sp.logprobs < 0 || *sp.logprobs > kGpuSamplerMaxLogprobs)
        return Error{"GpuSampler: row " + std::to_string(r) + " asks for " + std::to_string(*sp.logprobs) +
                     " logprobs, at most " + std::to_string(kGpuSamplerMaxLogprobs)};
      p.n_logprobs = *sp.logprobs;
    }
    if (!p.greedy) {
      if (row.generator == nullptr) return Error{"GpuSampler: row " + std::to_string(r) + " has no generator"};
      next_generators_[r] = *row.generator;
      p.uniform = next_generators_[r].next_uniform();  // taken only if the device reports a draw
    }
    add_entries(row, p);
    fast = fast && p.greedy && p.n_logprobs < 0 && p.entry_end == p.entry_begin;
  }

  if (fast) {
    Status st = launch_argmax_rows(d_logits, n, vocab_, d_tokens_, stream);
    if (!st.ok()) return st;
    EMBER_CUDA_TRY(cudaMemcpyAsync(h_tokens_, d_tokens_, rows.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
    EMBER_CUDA_TRY(cudaStreamSynchronize(stream));
    out.resize(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) out[r].token = h_tokens_[r];
    return Status::success();
  }

  const size_t params_bytes = rows.size() * sizeof(GpuSamplerRowParams);
  const size_t entries_bytes = entries_.size() * sizeof(GpuSamplerEntry);
  Status st = reserve_upload(params_bytes + entries_bytes);
  if (!st.ok()) return st;
  std::memcpy(h_upload_, params_.data(), params_bytes);
  if (entries_bytes) std::memcpy(static_cast<char*>(h_upload_) + params_bytes, entries_.data(), entries_bytes);
  EMBER_CUDA_TRY(cudaMemcpyAsync(d_upload_, h_upload_, params_bytes + entries_bytes, cudaMemcpyHostToDevice, stream));
  auto* d_params = static_cast<const GpuSamplerRowParams*>(d_upload_);
  auto* d_entries = reinterpret_cast<GpuSamplerEntry*>(static_cast<char*>(d_upload_) + params_bytes);
  st = launch_sample_rows(d_logits, n, vocab_, d_params, d_entries, d_results_, stream);
  if (!st.ok()) return st;
  EMBER_CUDA_TRY(cudaMemcpyAsync(h_results_, d_results_, rows.size() * sizeof(GpuSamplerRowResult),
                                 cudaMemcpyDeviceToHost, stream));
  EMBER_CUDA_TRY(cudaStreamSynchronize(stream));

  out.resize(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    const GpuSamplerRowResult& res = h_results_[r];
    SampledToken& t = out[r];
    t.token = res.token;
    if (res.drew) *rows[r].generator = next_generators_[r];
    if (params_[r].n_logprobs >= 0) {
      t.logprob = res.logprob;
      const int32_t got = std::min(res.n_top, kGpuSamplerMaxLogprobs);
      for (int32_t j = 0; j < got; ++j) t.top.push_back({res.top_id[j], res.top_logprob[j]});
    }
  }
  return Status::success();
}

}  // namespace ember
