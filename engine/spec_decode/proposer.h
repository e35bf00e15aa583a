#pragma once
// A proposer suggests, before each step, up to k tokens to follow each
// decoding sequence; the target verifies them in the step's forward
// (engine.cpp). Two kinds: n-gram lookup in the sequence's own tokens
// (stateless) and a draft model (its own runner and KV cache, kept in step
// with each sequence's accepted tokens).

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/model_runner.h"
#include "engine/spec_decode/spec_config.h"
#include "scheduler/block_manager.h"

namespace ember {

struct ProposalRequest {
  uint64_t seq_id = 0;
  std::span<const int32_t> tokens;  // the sequence's known tokens (prompt + output)
  int32_t max_tokens = 0;           // propose at most this many (>= 1)
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  // out[i]: the proposals for reqs[i] (possibly none).
  virtual void propose(std::span<const ProposalRequest> reqs, std::vector<std::vector<int32_t>>& out) = 0;
  // The sequence is gone (finished or aborted): drop what is kept for it.
  virtual void release(uint64_t /*seq_id*/) {}
};

class NgramProposer final : public Proposer {
 public:
  explicit NgramProposer(const SpeculativeConfig& config) : config_(config) {}
  void propose(std::span<const ProposalRequest> reqs, std::vector<std::vector<int32_t>>& out) override;

 private:
  SpeculativeConfig config_;
};

// Greedy proposals from a smaller model with the target's vocabulary. The
// draft runs on its own runner (CPU or CUDA) and KV pool (blocks from its own BlockManager),
// so it never competes with the target's scheduler. Per sequence it keeps the
// tokens whose draft KV is computed; after a step only the prefix that agrees
// with the sequence's tokens stays valid (rejected proposals roll back by
// shrinking it), the rest is recomputed in the next proposal's first forward.
// Each call: one forward that catches every sequence up and proposes its
// first token, then k - 1 single-token decode forwards, all sequences batched.
// Proposals are the draft's argmax: a point-mass q, which the sampler's
// verification accepts exactly (engine/sampler.h).
class DraftModelProposer final : public Proposer {
 public:
  // max_batch_tokens: tokens one catch-up forward may carry (longer catch-ups take several).
  DraftModelProposer(std::unique_ptr<ModelRunner> draft, int32_t max_batch_tokens);
  void propose(std::span<const ProposalRequest> reqs, std::vector<std::vector<int32_t>>& out) override;
  void release(uint64_t seq_id) override;
  // Fraction of the draft's KV blocks held (0 once every sequence is released).
  double kv_usage() const { return blocks_.usage(); }

 private:
  struct SeqState {
    BlockTable blocks;
    std::vector<int32_t> inputs;  // tokens whose draft KV is computed, in position order
  };
  // Greedy tokens of one step of `seqs`: one per sequence with logits, from its last logits row.
  void step(std::span<const StepSequence> seqs, std::vector<int32_t>& tokens);

  std::unique_ptr<ModelRunner> draft_;
  int32_t max_batch_tokens_;
  BlockManager blocks_;
  std::unordered_map<uint64_t, SeqState> seqs_;
  SamplingParams greedy_;
  RequestGenerator generator_;  // greedy rows take no draws
};

}  // namespace ember
