#pragma once
// Scheduler: continuous batching over the BlockManager's paged KV pool.
//
// One call of schedule() plans one engine step: which requests run and how many tokens
// each computes. Running requests come first (a decode token each, 1 + lookahead for
// speculative verification, or their next prefill chunk), then waiting requests in
// arrival order (kPriority: lower `priority` value first, then arrival), each prefill
// chunked to what is left of max_num_batched_tokens. Prefill chunks and decodes share a
// step. A new request skips the tokens the prefix cache already holds (the last prompt
// token is always computed, so a full hit still computes 1 token).
//
// Async scheduling (the engine schedules step N+1 before step N's tokens are back):
// schedule() counts each scheduled chunk that samples as a pending token, so a decode
// step N+1 computes the position whose token step N is still sampling (the runner reads
// it on the device), and a request whose last allowed token is pending is not scheduled
// again. update(N) then appends the real tokens. A request the engine finishes (stop,
// abort) while a later step for it is in flight is simply gone when that step's
// update() comes. Lookahead (speculative) tokens need the sampled tokens before the
// next schedule: the engine does not combine them with async scheduling.
//
// Out of blocks: the most recently arrived running request (kPriority: the lowest
// priority, then the newest) is preempted: its blocks are freed, num_computed_tokens goes
// back to 0 and it returns to the waiting queue ahead of newer requests, to be recomputed
// (prefix-cache hits usually make that cheap). If the victim is the request being
// scheduled itself, it is preempted. No new request is admitted in a step that preempted.
//
// Never deadlock, never starve: admission guarantees each request fits alone in the empty
// pool; the waiting queue is served strictly in order (a head that does not fit blocks
// the ones behind it rather than being overtaken forever), and preemption always takes
// the newest, so the oldest running request always progresses.
//
// Lifecycle and ownership: add() -> waiting -> running (<-> waiting on preemption) ->
// finished. A finished request is erased from the scheduler at once (its blocks freed);
// update() returns the ids it finished (kLength) so the engine can emit final outputs,
// and finish() (stop or abort, decided by the engine) erases immediately. find() returns
// nullptr for any id that is not waiting or running.
//
// Not thread safe: only the engine thread touches it (DESIGN.md).

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "scheduler/block_manager.h"
#include "scheduler/finish_reason.h"

namespace ember {

struct SchedulerConfig {
  int32_t max_num_seqs = 256;             // --max-num-seqs: requests running at once
  int32_t max_num_batched_tokens = 2048;  // --max-num-batched-tokens: tokens per step
  int32_t block_size = 16;                // --block-size: tokens per KV block
  int32_t num_blocks = 0;                 // KV pool size (from the memory profile)
  int32_t max_model_len = 0;              // --max-model-len: prompt + output limit
  bool enable_prefix_caching = true;      // --enable-prefix-caching
  bool enable_chunked_prefill = true;     // off: a prefill runs whole in one step or waits
  enum Policy { kFcfs, kPriority } policy = kFcfs;
};

// "" when the config is usable, else what is wrong (every size positive). Limits that
// depend on a request (chunked prefill off) are checked by Scheduler::add.
std::string validate(const SchedulerConfig& config);

enum class SchedStatus { kWaiting, kRunning, kFinished };

// What the engine hands in for a new sequence.
struct NewRequest {
  uint64_t id = 0;                    // assigned by the engine, unique among live requests
  std::vector<int32_t> prompt;
  int32_t max_tokens = 16;            // max output tokens, >= 1
  std::string cache_salt;             // isolates prefix-cache sharing (per tenant)
  int32_t priority = 0;               // kPriority: lower runs first
  int32_t num_lookahead_tokens = 0;   // speculative tokens verified per decode step
};

// The scheduler's view of one sequence. The engine reads tokens and the block table
// through Scheduler::find() when it builds ForwardInputs.
struct SchedRequest {
  uint64_t id = 0;
  std::vector<int32_t> tokens;        // prompt, then outputs appended by update()
  int32_t num_prompt_tokens = 0;
  int32_t max_tokens = 0;
  std::string cache_salt;
  int32_t priority = 0;
  int32_t num_lookahead_tokens = 0;
  // Tokens whose KV is in `blocks` or being written by a scheduled step (prefix-cache
  // hits included): schedule() advances it. Invariant while running:
  // num_computed_tokens < tokens.size() + num_pending_tokens + lookahead.
  int64_t num_computed_tokens = 0;
  // Steps scheduled for this request that will sample a token and whose update() has
  // not come yet. 0 after every update() when the engine updates each step before
  // scheduling the next; 1 or 2 under async scheduling, whose in-flight tokens are
  // placeholders: positions [tokens.size(), tokens.size() + pending) are known to
  // exist, their values are still on the device.
  int32_t num_pending_tokens = 0;
  SchedStatus status = SchedStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  BlockTable blocks;
  int32_t num_cached_tokens = -1;     // prefix-cache hit at first schedule (-1: not yet)
  int32_t num_preemptions = 0;
  uint64_t arrival = 0;               // admission order, breaks every tie

  int32_t num_output_tokens() const { return static_cast<int32_t>(tokens.size()) - num_prompt_tokens; }
};

struct ScheduledRequest {
  uint64_t id = 0;
  int32_t num_tokens = 0;  // tokens computed this step: positions [start, start + num_tokens)
  int64_t start = 0;       // num_computed_tokens before the step
  // The chunk reaches the end of the request's known tokens: the engine samples from the
  // logits of its last position (with lookahead: of its last 1 + lookahead positions).
  bool wants_logits = false;
};

struct SchedulerOutput {
  std::vector<ScheduledRequest> scheduled;  // running requests first, then newly admitted
  std::vector<uint64_t> preempted;          // lost their KV this step (now waiting)
  int32_t num_tokens = 0;                   // sum of scheduled[].num_tokens
};

struct FinishedRequest {
  uint64_t id = 0;
  FinishReason reason = FinishReason::kNone;
  int32_t num_cached_tokens = 0;
  int32_t num_output_tokens = 0;
};

struct SchedulerStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  double kv_usage = 0;                 // fraction of blocks owned by requests
  int64_t prefix_queries = 0;          // tokens looked up in the prefix cache
  int64_t prefix_hits = 0;             // of which found cached
  int64_t num_preemptions = 0;         // since start
  int32_t num_scheduled_tokens = 0;    // in the last step
};

// Admission result: an empty error means accepted.
struct AddStatus {
  std::string error;
  bool ok() const { return error.empty(); }
};

class Scheduler {
 public:
  // `config` must pass validate().
  explicit Scheduler(const SchedulerConfig& config);

  // Rejects (and keeps nothing of) an empty prompt, max_tokens < 1, prompt + max_tokens >
  // max_model_len, a request whose tokens cannot fit even in an empty pool (or, chunked
  // prefill off, in one step's token budget), and an id already live.
  AddStatus add(NewRequest request);

  SchedulerOutput schedule();

  // Applies the step the engine ran for `output` (the oldest scheduled step without its
  // update): appends `sampled` tokens (in order; several pairs with one id are several
  // tokens, for speculative decoding: num_computed_tokens is then clamped to the known
  // tokens - 1, the KV of rejected drafts being simply overwritten later) and resolves
  // the step's pending tokens. Finishes requests with kLength when their output reaches
  // max_tokens or their tokens reach max_model_len, and returns them (already erased).
  // Ids no longer live (finished between schedule and update) are ignored; a request
  // preempted since (waiting again) still gets its token.
  std::vector<FinishedRequest> update(const SchedulerOutput& output,
                                      const std::vector<std::pair<uint64_t, int32_t>>& sampled);

  // Stop (engine-decided) or abort: frees the blocks now and erases the request, waiting
  // or running. Unknown or already finished ids are ignored (returns false).
  bool finish(uint64_t id, FinishReason reason);

  // Speculative decoding: how many proposed tokens the next schedule() computes after the
  // request's known tokens (the engine sets it to the drafts it holds, 0 to stop). The
  // update() after such a step returns surplus blocks to the pool. Unknown ids are ignored.
  void set_num_lookahead(uint64_t id, int32_t num_tokens);

  const SchedRequest* find(uint64_t id) const;
  SchedulerStats stats() const;
  size_t num_unfinished() const { return requests_.size(); }
  bool has_unfinished() const { return !requests_.empty(); }
  const SchedulerConfig& config() const { return config_; }
  const BlockManager& block_manager() const { return blocks_; }

  // For tests: block manager invariants against all live tables, and the scheduler's own
  // (every live request in exactly one queue with a matching status, queues ordered,
  // waiting requests hold no blocks). "" when all hold.
  std::string check_invariants() const;

 private:
  struct Before {  // queue order: (priority under kPriority, arrival)
    const Scheduler* s;
    bool operator()(const SchedRequest* a, const SchedRequest* b) const;
  };

  // Records r's chunk of n tokens in `out` and advances r past it.
  void commit(SchedRequest* r, int64_t n, int64_t known, SchedulerOutput& out);
  void preempt(SchedRequest* r);
  void insert_waiting(SchedRequest* r);
  void insert_running(SchedRequest* r);
  void erase(SchedRequest* r, FinishReason reason);

  SchedulerConfig config_;
  BlockManager blocks_;
  std::unordered_map<uint64_t, std::unique_ptr<SchedRequest>> requests_;
  std::vector<SchedRequest*> running_;  // sorted by Before: back() is the preemption victim
  std::deque<SchedRequest*> waiting_;   // sorted by Before: front() is admitted next
  std::vector<SchedRequest*> step_requests_;  // update()'s scratch, kept to reuse its capacity
  uint64_t next_arrival_ = 0;
  int64_t num_preemptions_ = 0;
  int32_t last_num_tokens_ = 0;
};

}  // namespace ember
