#include <algorithm>

#include "engine/spec_decode/proposer.h"

namespace ember {

DraftModelProposer::DraftModelProposer(std::unique_ptr<ModelRunner> draft, int32_t max_batch_tokens)
    : draft_(std::move(draft)),
      max_batch_tokens_(std::max(max_batch_tokens, 1)),
      blocks_(static_cast<int32_t>(std::min<int64_t>(draft_->num_blocks(), INT32_MAX)), draft_->block_size(),
              /*enable_prefix_caching=*/false) {
  greedy_.temperature = 0;
}

void DraftModelProposer::release(uint64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  blocks_.free(&it->second.blocks);
  seqs_.erase(it);
}

void DraftModelProposer::step(std::span<const StepSequence> seqs, std::vector<int32_t>& tokens) {
  std::vector<SamplerRow> rows;
  for (const StepSequence& s : seqs)
    for (int32_t i = 0; i < s.num_logits; ++i) rows.push_back(SamplerRow{{}, {}, {}, &greedy_, &generator_});
  std::vector<SampledToken> sampled;
  draft_->launch(seqs, rows);
  draft_->collect(sampled);
  tokens.clear();
  size_t row = 0;
  for (const StepSequence& s : seqs) {
    if (s.num_logits == 0) continue;
    row += static_cast<size_t>(s.num_logits);
    tokens.push_back(sampled[row - 1].token);
  }
}

void DraftModelProposer::propose(std::span<const ProposalRequest> reqs, std::vector<std::vector<int32_t>>& out) {
  out.assign(reqs.size(), {});
  // Which requests take part, and where each one's draft KV stops being valid.
  struct Active {
    size_t req;
    SeqState* state;
    int64_t next;  // first position whose draft KV is still to compute
  };
  std::vector<Active> active;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const ProposalRequest& r = reqs[i];
    const auto len = static_cast<int64_t>(r.tokens.size());
    if (r.max_tokens < 1 || len < 1) continue;
    SeqState& st = seqs_[r.seq_id];
    // Valid: the computed inputs that agree with the tokens, and never the last
    // token (its logits give the first proposal).
    const auto agree = std::mismatch(st.inputs.begin(), st.inputs.end(), r.tokens.begin(), r.tokens.end()).first;
    const int64_t valid = std::min<int64_t>(agree - st.inputs.begin(), len - 1);
    st.inputs.resize(static_cast<size_t>(valid));
    // Slots for the known tokens and the k - 1 proposals fed back.
    if (!blocks_.allocate_slots(&st.blocks, len + r.max_tokens - 1)) continue;  // draft pool full: no proposals
    active.push_back({i, &st, valid});
  }
  if (active.empty()) return;

  // 1. Catch up every sequence to its known tokens (in forwards of at most
  //    max_batch_tokens_), the chunk that reaches the end proposing token 0.
  std::vector<StepSequence> batch;
  std::vector<size_t> batch_of;  // index into `active` per row of the batch
  std::vector<int32_t> tokens;
  for (;;) {
    batch.clear();
    batch_of.clear();
    int64_t budget = max_batch_tokens_;
    for (size_t a = 0; a < active.size() && budget > 0; ++a) {
      const ProposalRequest& r = reqs[active[a].req];
      const auto len = static_cast<int64_t>(r.tokens.size());
      if (active[a].next >= len) continue;
      if (len - active[a].next <= 2 && len >= 2 && max_batch_tokens_ >= 2) {
        if (budget < 2) continue;  // the next forward takes it
        // The usual catch-up after a verification (the bonus and the last
        // proposal, or just the replacement token) is always the last two
        // positions, rewriting one already computed when needed: steps whose
        // sequences all take 2 tokens and 2 logits replay a CUDA graph.
        batch.push_back({r.tokens, len - 2, 2, active[a].state->blocks.ids, 2});
        batch_of.push_back(a);
        budget -= 2;
        active[a].next = len;
        continue;
      }
      const int64_t n = std::min(len - active[a].next, budget);
      const bool last = active[a].next + n == len;
      batch.push_back({r.tokens, active[a].next, static_cast<int32_t>(n), active[a].state->blocks.ids, last ? 1 : 0});
      if (last) batch_of.push_back(a);
      active[a].next += n;
      budget -= n;
    }
    if (batch.empty()) break;
    step(batch, tokens);
    for (size_t j = 0; j < batch_of.size(); ++j) out[active[batch_of[j]].req].push_back(tokens[j]);
  }
  for (Active& a : active) {
    const ProposalRequest& r = reqs[a.req];
    a.state->inputs.assign(r.tokens.begin(), r.tokens.end());
  }

  // 2. Proposals 1 .. k - 1: each sequence feeds back its newest proposal.
  for (int32_t j = 1;; ++j) {
    batch.clear();
    batch_of.clear();
    for (size_t a = 0; a < active.size(); ++a) {
      const ProposalRequest& r = reqs[active[a].req];
      std::vector<int32_t>& proposed = out[active[a].req];
      if (j >= r.max_tokens || proposed.size() != static_cast<size_t>(j)) continue;
      SeqState& st = *active[a].state;
      st.inputs.push_back(proposed.back());
      const auto pos = static_cast<int64_t>(st.inputs.size()) - 1;
      batch.push_back({st.inputs, pos, 1, st.blocks.ids, 1});
      batch_of.push_back(a);
    }
    if (batch.empty()) break;
    step(batch, tokens);
    for (size_t b = 0; b < batch_of.size(); ++b) out[active[batch_of[b]].req].push_back(tokens[b]);
  }
  // The last proposal was never fed back: inputs end at proposal k - 2, so the
  // next call recomputes from the first position the verification changed.
}

}  // namespace ember
