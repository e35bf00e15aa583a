#include "engine/model_runner.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <thread>

#include <spdlog/spdlog.h>

#include "engine/parallel/process_group.h"
#include "engine/parallel/shard.h"
#include "engine/parallel/thread_group.h"
#include "kernels/cpu/cpu_ops.h"

namespace ember {

void build_forward_inputs(std::span<const StepSequence> seqs, int32_t block_size, ForwardInputs& in) {
  in.token_ids.clear();
  in.positions.clear();
  in.slot_mapping.clear();
  in.query_start_loc.assign(1, 0);
  in.seq_lens.clear();
  in.logits_indices.clear();
  size_t max_blocks = 1;
  for (const StepSequence& s : seqs) max_blocks = std::max(max_blocks, s.block_ids.size());
  in.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  in.block_tables.assign(seqs.size() * max_blocks, 0);

  for (size_t b = 0; b < seqs.size(); ++b) {
    const StepSequence& s = seqs[b];
    const int64_t end = s.start + s.num_tokens;
    // (a prev_row token is written as 0 here and patched by the runner)
    const int64_t have = static_cast<int64_t>(s.tokens.size());
    assert(s.num_tokens > 0 && end - (s.prev_row >= 0 ? 1 : 0) <= have);
    assert(static_cast<int64_t>(s.block_ids.size()) * block_size >= end);
    for (int64_t pos = s.start; pos < end; ++pos) {
      in.token_ids.push_back(pos < have ? s.tokens[static_cast<size_t>(pos)] : 0);
      in.positions.push_back(static_cast<int32_t>(pos));
      const int64_t block = s.block_ids[static_cast<size_t>(pos / block_size)];
      in.slot_mapping.push_back(block * block_size + pos % block_size);
    }
    in.query_start_loc.push_back(static_cast<int32_t>(in.token_ids.size()));
    in.seq_lens.push_back(static_cast<int32_t>(end));
    std::copy(s.block_ids.begin(), s.block_ids.end(), in.block_tables.begin() + static_cast<ptrdiff_t>(b * max_blocks));
    assert(s.num_logits >= 0 && s.num_logits <= s.num_tokens);
    for (int32_t i = s.num_logits; i > 0; --i) in.logits_indices.push_back(static_cast<int32_t>(in.token_ids.size()) - i);
  }
}

struct CpuModelRunner::Rank {
  LlamaWeights weights;  // this rank's shard (the whole model alone)
  CpuBackend backend;
  LlamaDecoder decoder;
  KvCache cache;
  std::vector<float> logits;  // ranks > 0: computed (every rank ends with the whole logits), not used

  Rank(LlamaWeights w, int threads, int64_t blocks, int32_t block_size)
      : weights(std::move(w)),
        backend(threads),
        decoder(weights, backend),
        cache(KvCache::allocate(weights.config, blocks, block_size)) {}

  // Its collectives (the backend's all-reduces, the LM head's all-gather) go through `comm`.
  void join(Communicator* comm) {
    backend.set_communicator(comm);
    decoder.set_communicator(comm);
  }
};

namespace {

std::vector<LlamaWeights> one(LlamaWeights w) {
  std::vector<LlamaWeights> v;
  v.push_back(std::move(w));
  return v;
}

}  // namespace

CpuModelRunner::CpuModelRunner(LlamaWeights weights, int num_threads, int64_t num_blocks, int32_t block_size,
                               std::vector<int32_t> eos_ids)
    : CpuModelRunner(one(std::move(weights)), num_threads, num_blocks, block_size, std::move(eos_ids)) {}

CpuModelRunner::CpuModelRunner(std::vector<LlamaWeights> shards, int threads_per_rank, int64_t num_blocks,
                               int32_t block_size, std::vector<int32_t> eos_ids)
    : sampler_(std::move(eos_ids)) {
  for (LlamaWeights& w : shards)
    ranks_.push_back(std::make_unique<Rank>(std::move(w), threads_per_rank, num_blocks, block_size));
  config_ = ranks_.front()->weights.config;
  if (ranks_.size() > 1) {
    group_ = std::make_unique<ThreadGroup>(static_cast<int>(ranks_.size()));
    for (size_t r = 0; r < ranks_.size(); ++r) ranks_[r]->join(&group_->communicator(static_cast<int>(r)));
  }
}

CpuModelRunner::~CpuModelRunner() = default;

int64_t CpuModelRunner::num_blocks() const { return ranks_.front()->cache.num_blocks; }
int32_t CpuModelRunner::block_size() const { return static_cast<int32_t>(ranks_.front()->cache.block_size); }

Result<std::unique_ptr<CpuModelRunner>> CpuModelRunner::create(LlamaWeights weights, int tensor_parallel_size,
                                                               int num_threads, int64_t num_blocks,
                                                               int32_t block_size, std::vector<int32_t> eos_ids,
                                                               ProcessGroup* group, LmHead lm_head) {
  const int n = tensor_parallel_size;
  if (Result<ModelConfig> sc = shard_config(weights.config, n); !sc) return sc.error();
  if (group != nullptr && group->size() != n)
    return Error{"the launcher started " + std::to_string(group->size()) + " ranks for --tensor-parallel-size " +
                 std::to_string(n) + ": they must be equal"};
  const ModelConfig whole = weights.config;
  std::vector<LlamaWeights> shards;
  if (n == 1) {
    shards.push_back(std::move(weights));
  } else {
    for (int r = 0; r < n; ++r) {
      if (group != nullptr && r != group->rank()) continue;
      Result<LlamaWeights> s = shard_weights(weights, r, n, lm_head);
      if (!s) return s.error();
      shards.push_back(std::move(*s));
    }
  }
  return from_shards(std::move(shards), whole, num_threads, num_blocks, block_size, std::move(eos_ids), group);
}

Result<std::unique_ptr<CpuModelRunner>> CpuModelRunner::from_shards(std::vector<LlamaWeights> shards,
                                                                    const ModelConfig& whole, int num_threads,
                                                                    int64_t num_blocks, int32_t block_size,
                                                                    std::vector<int32_t> eos_ids, ProcessGroup* group) {
  if (shards.empty()) return Error{"CPU runner: no shards"};
  const int n = group != nullptr ? group->size() : static_cast<int>(shards.size());
  if (group != nullptr && shards.size() != 1)
    return Error{"CPU runner: in a process group a process holds one rank's shard"};
  int per_rank = num_threads;
  if (n > 1 && group == nullptr) {
    const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    per_rank = std::max(1, (num_threads > 0 ? num_threads : hardware) / n);
  }
  std::unique_ptr<CpuModelRunner> runner(
      new CpuModelRunner(std::move(shards), per_rank, num_blocks, block_size, std::move(eos_ids)));
  runner->config_ = whole;
  if (group != nullptr) {
    runner->processes_ = group;
    runner->ranks_.front()->join(&group->communicator());
  }
  return runner;
}

void CpuModelRunner::forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) {
  build_forward_inputs(seqs, block_size(), inputs_);
  if (inputs_.token_ids.empty()) {
    logits.clear();
    return;
  }
  // Inputs named by prev_row are the newest launch's tokens (async scheduling).
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int32_t row = seqs[i].prev_row;
    if (row < 0) continue;
    if (static_cast<size_t>(row) >= newest_.size()) {
      spdlog::critical("CPU runner: prev_row {} outside the previous launch's {} rows", row, newest_.size());
      std::abort();
    }
    inputs_.token_ids[static_cast<size_t>(inputs_.query_start_loc[i + 1] - 1)] = newest_[static_cast<size_t>(row)];
  }
  if (!group_) {
    if (processes_ != nullptr) processes_->broadcast_step(inputs_);  // the other processes run the same step
    Rank& r = *ranks_.front();
    r.decoder.forward(inputs_, r.cache, logits);
    return;
  }
  // Every rank runs the whole step on its shard; the decoder's all-reduces
  // meet in the group. Rank 0's logits are the step's.
  group_->run([&](int rank) {
    Rank& r = *ranks_[static_cast<size_t>(rank)];
    r.decoder.forward(inputs_, r.cache, rank == 0 ? logits : r.logits);
  });
}

void CpuModelRunner::launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) {
  if (done_.size() >= 2) {
    spdlog::critical("CPU runner: a third launch with two outstanding");
    std::abort();
  }
  forward_logits(seqs, logits_);
  const size_t vocab = static_cast<size_t>(vocab_size());
  if (logits_.size() != rows.size() * vocab) {
    spdlog::critical("CPU runner: {} sampler rows for {} logits rows", rows.size(), logits_.size() / vocab);
    std::abort();
  }
  std::vector<SamplerRow> with_logits(rows.begin(), rows.end());
  for (size_t i = 0; i < with_logits.size(); ++i)
    with_logits[i].logits = std::span<const float>(logits_).subspan(i * vocab, vocab);
  done_.push_back(sampler_.sample(with_logits));
  newest_.clear();
  for (const SampledToken& t : done_.back()) newest_.push_back(t.token);
}

void CpuModelRunner::collect(std::vector<SampledToken>& out) {
  if (done_.empty()) {
    spdlog::critical("CPU runner: collect with nothing launched");
    std::abort();
  }
  out = std::move(done_.front());
  done_.pop_front();
}

void CpuModelRunner::set_communicator(Communicator* comm) {
  if (ranks_.size() != 1) {
    spdlog::critical("CPU runner: set_communicator on a runner of {} ranks", ranks_.size());
    std::abort();
  }
  ranks_.front()->join(comm);
}

void CpuModelRunner::set_precision(CpuPrecision precision) {
  for (auto& rank : ranks_) rank->backend.set_precision(precision);
}

void CpuModelRunner::serve_rank_steps() {
  if (processes_ == nullptr || processes_->rank() == 0) return;
  Rank& r = *ranks_.front();
  ember::serve_rank_steps(*processes_, [&](const ForwardInputs& in) { r.decoder.forward(in, r.cache, r.logits); });
}

int64_t CpuModelRunner::kv_bytes_per_token(const ModelConfig& config, bool fp8) {
  return KvCache::bytes_per_token(config, fp8 ? DType::kF8E4M3 : DType::kF32);
}

void CpuModelRunner::use_fp8_kv_cache() {
  for (auto& rank : ranks_) {
    KvCache& c = rank->cache;
    c = KvCache::allocate(rank->weights.config, c.num_blocks, c.block_size, DType::kF8E4M3);
    for (size_t l = 0; l < rank->weights.layers.size(); ++l) {
      c.k_scale[l] = rank->weights.layers[l].k_scale;
      c.v_scale[l] = rank->weights.layers[l].v_scale;
    }
  }
}

void CpuModelRunner::calculate_kv_scales() {
  for (auto& rank : ranks_) rank->decoder.calculate_kv_scales_next_forward();
}

}  // namespace ember
