#include "scheduler/scheduler.h"

#include <algorithm>
#include <cassert>

namespace ember {

std::string validate(const SchedulerConfig& c) {
  if (c.max_num_seqs < 1) return "max_num_seqs must be >= 1";
  if (c.max_num_batched_tokens < 1) return "max_num_batched_tokens must be >= 1";
  if (c.block_size < 1) return "block_size must be >= 1";
  if (c.num_blocks < 1) return "num_blocks must be >= 1 (no room for the KV cache)";
  if (c.max_model_len < 1) return "max_model_len must be >= 1";
  return "";
}

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), blocks_(config.num_blocks, config.block_size, config.enable_prefix_caching) {
  assert(validate(config).empty());
  running_.reserve(static_cast<size_t>(config.max_num_seqs));
}

bool Scheduler::Before::operator()(const SchedRequest* a, const SchedRequest* b) const {
  if (s->config_.policy == SchedulerConfig::kPriority && a->priority != b->priority) {
    return a->priority < b->priority;
  }
  return a->arrival < b->arrival;
}

AddStatus Scheduler::add(NewRequest in) {
  const int64_t prompt = static_cast<int64_t>(in.prompt.size());
  const int64_t total = prompt + in.max_tokens;
  auto fail = [&](std::string why) { return AddStatus{"request " + std::to_string(in.id) + ": " + why}; };
  if (prompt == 0) return fail("prompt is empty");
  if (in.max_tokens < 1) return fail("max_tokens must be >= 1, got " + std::to_string(in.max_tokens));
  if (in.num_lookahead_tokens < 0) return fail("num_lookahead_tokens must be >= 0");
  if (total > config_.max_model_len) {
    return fail("prompt (" + std::to_string(prompt) + " tokens) + max_tokens (" + std::to_string(in.max_tokens) +
                ") = " + std::to_string(total) + " exceeds max_model_len " + std::to_string(config_.max_model_len));
  }
  const int64_t blocks_needed = (total + config_.block_size - 1) / config_.block_size;
  if (blocks_needed > config_.num_blocks) {
    return fail("needs " + std::to_string(blocks_needed) + " KV blocks of " + std::to_string(config_.block_size) +
                " tokens but the pool has only " + std::to_string(config_.num_blocks));
  }
  // Without chunking a (re)computation must fit one step: after preemption that is every
  // token but the last sampled one.
  if (!config_.enable_chunked_prefill && total - 1 > config_.max_num_batched_tokens) {
    return fail("prompt + max_tokens - 1 = " + std::to_string(total - 1) +
                " exceeds max_num_batched_tokens " + std::to_string(config_.max_num_batched_tokens) +
                " and chunked prefill is off");
  }
  if (1 + int64_t{in.num_lookahead_tokens} > config_.max_num_batched_tokens) {
    return fail("1 + num_lookahead_tokens exceeds max_num_batched_tokens");
  }
  if (requests_.contains(in.id)) return fail("id already in use");

  auto r = std::make_unique<SchedRequest>();
  r->id = in.id;
  r->tokens = std::move(in.prompt);
  r->num_prompt_tokens = static_cast<int32_t>(prompt);
  r->max_tokens = in.max_tokens;
  r->cache_salt = std::move(in.cache_salt);
  r->priority = in.priority;
  r->num_lookahead_tokens = in.num_lookahead_tokens;
  r->arrival = next_arrival_++;
  SchedRequest* p = r.get();
  requests_.emplace(p->id, std::move(r));
  insert_waiting(p);
  return {};
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  out.scheduled.reserve(running_.size() + 16);
  int64_t budget = config_.max_num_batched_tokens;
  const bool chunked = config_.enable_chunked_prefill;

  // 1. Running requests, oldest (highest priority) first: decodes and unfinished prefills.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    SchedRequest* r = running_[i];
    const int64_t known = static_cast<int64_t>(r->tokens.size()) + r->num_pending_tokens;
    // Never compute past the last position that can matter (the last output is sampled,
    // not computed), which also caps lookahead at the end of the request.
    const int64_t last = int64_t{r->num_prompt_tokens} + r->max_tokens - 1;
    int64_t want = std::min(known + r->num_lookahead_tokens, last) - r->num_computed_tokens;
    if (want <= 0 && r->num_pending_tokens > 0) {
      ++i;  // its last token is in flight: nothing left to compute
      continue;
    }
    want = std::max<int64_t>(want, 1);
    if (!chunked && want > budget) {
      ++i;  // a whole decode does not fit what is left: it runs next step
      continue;
    }
    const int64_t n = std::min(want, budget);
    bool ok;
    while (!(ok = blocks_.allocate_slots(&r->blocks, r->num_computed_tokens + n))) {
      SchedRequest* victim = running_.back();  // newest; at index >= i, so not yet scheduled
      running_.pop_back();
      preempt(victim);
      out.preempted.push_back(victim->id);
      if (victim == r) break;
    }
    if (!ok) break;  // r preempted itself: it was the last running request
    commit(r, n, known, out);
    budget -= n;
    ++i;
  }

  // 2. Waiting requests in order. A step that had to preempt admits nobody: blocks are short.
  while (out.preempted.empty() && !waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    SchedRequest* r = waiting_.front();
    // Preempted while a step that samples for it is in flight: its tokens are not all
    // known yet (the engine's next update brings them). Admission waits one step, as
    // for any head that cannot run (under kPriority the head may hold back others).
    if (r->num_pending_tokens > 0) break;
    const PrefixHit hit = blocks_.find_cached_prefix(r->tokens, r->cache_salt, &r->blocks);
    const int64_t known = static_cast<int64_t>(r->tokens.size());
    const int64_t want = known - hit.num_tokens;
    // The head blocks the queue rather than being overtaken: that is what keeps a long
    // prompt from starving behind a stream of short ones.
    if (!chunked && want > budget) break;
    const int64_t n = std::min(want, budget);
    if (!blocks_.allocate_slots(&r->blocks, hit.num_tokens + n, &hit)) break;
    waiting_.pop_front();
    r->num_computed_tokens = hit.num_tokens;
    if (r->num_cached_tokens < 0) r->num_cached_tokens = hit.num_tokens;
    r->status = SchedStatus::kRunning;
    insert_running(r);
    commit(r, n, known, out);
    budget -= n;
  }

  out.num_tokens = static_cast<int32_t>(config_.max_num_batched_tokens - budget);
  last_num_tokens_ = out.num_tokens;
  return out;
}

void Scheduler::commit(SchedRequest* r, int64_t n, int64_t known, SchedulerOutput& out) {
  const bool samples = r->num_computed_tokens + n >= known;
  out.scheduled.push_back({r->id, static_cast<int32_t>(n), r->num_computed_tokens, samples});
  r->num_computed_tokens += n;
  r->num_pending_tokens += samples;
}

std::vector<FinishedRequest> Scheduler::update(const SchedulerOutput& output,
                                               const std::vector<std::pair<uint64_t, int32_t>>& sampled) {
  auto live = [&](uint64_t id) -> SchedRequest* {
    auto it = requests_.find(id);
    return it != requests_.end() ? it->second.get() : nullptr;
  };
  // One id lookup per scheduled request; `sampled` normally follows the same order, so a
  // moving cursor resolves it without further lookups.
  step_requests_.clear();
  for (const ScheduledRequest& s : output.scheduled) {
    SchedRequest* r = live(s.id);
    if (r != nullptr && s.wants_logits) {
      assert(r->num_pending_tokens > 0);
      --r->num_pending_tokens;
    }
    step_requests_.push_back(r);
  }
  size_t cursor = 0;
  for (const auto& [id, token] : sampled) {
    while (cursor < step_requests_.size() && output.scheduled[cursor].id != id) ++cursor;
    SchedRequest* r = cursor < step_requests_.size() ? step_requests_[cursor] : live(id);
    if (cursor == step_requests_.size()) cursor = 0;  // out of order: looked up, restart
    if (r != nullptr) r->tokens.push_back(token);
  }
  std::vector<FinishedRequest> finished;
  for (SchedRequest* r : step_requests_) {
    if (r == nullptr) continue;
    // Positions past the known tokens held rejected drafts (or the engine sampled nothing):
    // recompute from the last known token. Keeps "work left" true for every running request.
    const int64_t have = static_cast<int64_t>(r->tokens.size());
    r->num_computed_tokens = std::min(r->num_computed_tokens, have + r->num_pending_tokens - 1);
    // (a waiting request, preempted since, holds no blocks: nothing to cache)
    if (r->status == SchedStatus::kRunning) {
      blocks_.cache_full_blocks(&r->blocks, r->tokens, std::min(r->num_computed_tokens, have), r->cache_salt);
      // Blocks taken for rejected lookahead go back; the known tokens keep their slots.
      if (r->num_lookahead_tokens > 0) blocks_.trim(&r->blocks, have + r->num_pending_tokens);
    }
    if (r->num_output_tokens() >= r->max_tokens || have >= config_.max_model_len) {
      finished.push_back({r->id, FinishReason::kLength, std::max(r->num_cached_tokens, 0), r->num_output_tokens()});
      erase(r, FinishReason::kLength);
    }
  }
  step_requests_.clear();
  return finished;
}

void Scheduler::set_num_lookahead(uint64_t id, int32_t num_tokens) {
  auto it = requests_.find(id);
  if (it != requests_.end()) it->second->num_lookahead_tokens = std::max(num_tokens, 0);
}

bool Scheduler::finish(uint64_t id, FinishReason reason) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  erase(it->second.get(), reason);
  return true;
}

const SchedRequest* Scheduler::find(uint64_t id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.num_running = static_cast<int32_t>(running_.size());
  s.num_waiting = static_cast<int32_t>(waiting_.size());
  s.kv_usage = blocks_.usage();
  s.prefix_queries = blocks_.prefix_queries();
  s.prefix_hits = blocks_.prefix_hits();
  s.num_preemptions = num_preemptions_;
  s.num_scheduled_tokens = last_num_tokens_;
  return s;
}

void Scheduler::preempt(SchedRequest* r) {
  blocks_.free(&r->blocks);
  r->num_computed_tokens = 0;
  r->status = SchedStatus::kWaiting;
  ++r->num_preemptions;
  ++num_preemptions_;
  insert_waiting(r);  // sorts ahead of every newer request: the front, under FCFS
}

void Scheduler::insert_waiting(SchedRequest* r) {
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), r, Before{this}), r);
}

void Scheduler::insert_running(SchedRequest* r) {
  running_.insert(std::upper_bound(running_.begin(), running_.end(), r, Before{this}), r);
}

void Scheduler::erase(SchedRequest* r, FinishReason reason) {
  auto remove_from = [&](auto& queue) {
    auto it = std::lower_bound(queue.begin(), queue.end(), r, Before{this});
    assert(it != queue.end() && *it == r);
    queue.erase(it);
  };
  if (r->status == SchedStatus::kRunning) remove_from(running_);
  if (r->status == SchedStatus::kWaiting) remove_from(waiting_);
  blocks_.free(&r->blocks);
  r->status = SchedStatus::kFinished;
  r->finish_reason = reason;
  requests_.erase(r->id);  // destroys r
}

std::string Scheduler::check_invariants() const {
  std::vector<const BlockTable*> tables;
  tables.reserve(requests_.size());
  for (const auto& [id, r] : requests_) tables.push_back(&r->blocks);
  std::string err = blocks_.check_invariants(tables);
  if (!err.empty()) return err;
  if (running_.size() + waiting_.size() != requests_.size()) return "a live request is in no queue (or in two)";
  if (static_cast<int32_t>(running_.size()) > config_.max_num_seqs) return "more running than max_num_seqs";
  const Before before{this};
  for (size_t i = 0; i < running_.size(); ++i) {
    const SchedRequest* r = running_[i];
    if (r->status != SchedStatus::kRunning) return "request in running with another status";
    if (i > 0 && !before(running_[i - 1], r)) return "running queue out of order";
    const int64_t known = static_cast<int64_t>(r->tokens.size()) + r->num_pending_tokens;
    if (r->num_computed_tokens >= known + r->num_lookahead_tokens) return "running request with no work left";
    if (r->num_pending_tokens < 0) return "negative pending tokens";
    if (r->num_computed_tokens > static_cast<int64_t>(r->blocks.ids.size()) * config_.block_size) {
      return "computed tokens beyond the request's blocks";
    }
  }
  for (size_t i = 0; i < waiting_.size(); ++i) {
    const SchedRequest* r = waiting_[i];
    if (r->status != SchedStatus::kWaiting) return "request in waiting with another status";
    if (i > 0 && !before(waiting_[i - 1], r)) return "waiting queue out of order";
    if (!r->blocks.ids.empty() || r->num_computed_tokens != 0) return "waiting request holds KV";
    if (r->num_pending_tokens < 0) return "negative pending tokens";
  }
  return "";
}

}  // namespace ember
