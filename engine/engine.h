#pragma once
// The engine: one thread owns the scheduler and the model runner (with the KV
// cache and the sampler inside it), and loops: take new and aborted requests,
// schedule a step, run and sample it, update the scheduler, push text deltas to each
// request's stream. Other threads only call add(), abort(), metrics() and
// shutdown(), which are thread safe. An idle engine sleeps on a condition
// variable; it never spins.
//
// Stepping goes through the runner's one API: launch() a step (its forward and
// its sampling), collect() its tokens. Synchronous stepping collects each step
// before scheduling the next.
//
// Async scheduling (EngineConfig::async_scheduling, the GPU's default): the
// engine schedules and launches step N+1 before it waits for step N's tokens,
// then applies step N (scheduler update, detokenization, stop checks, stream
// pushes) while the GPU runs N+1, so the GPU never waits for the host between
// steps. Step N+1's decodes read their input tokens where step N's sampler
// left them on the device. What it costs: a sequence that stops (EOS, stop
// string, abort) has already been scheduled for one more step, whose token is
// dropped (that step may even have taken a new KV block for it and, in a full
// pool, preempted a newer request, as in vLLM). Outputs are the same as synchronous stepping: seeded generators
// advance one draw per sampled token whatever happens, min_tokens counts the
// token in flight, and a step with a row whose penalties read the generated
// ids is applied before the next one is scheduled.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/metrics.h"
#include "engine/model_runner.h"
#include "engine/output_processor.h"
#include "engine/request.h"
#include "engine/request_limits.h"
#include "engine/sampler.h"
#include "engine/spec_decode/proposer.h"
#include "engine/spec_decode/spec_config.h"
#include "engine/structured/grammar_matcher.h"
#include "models/tokenizer/tokenizer.h"
#include "scheduler/scheduler.h"

namespace ember {

struct EngineConfig {
  SchedulerConfig scheduler;    // num_blocks and block_size must match the runner's cache
  int32_t max_queue_len = 1024;  // sequences (a request counts its n) waiting to be scheduled, at most
  uint64_t seed = 0;             // seeds the per-request seeds of unseeded requests
  double log_interval_s = 5.0;   // periodic throughput line (0: never)
  bool async_scheduling = false;  // see above; the runner need not support it (then it only delays stops)
  // Speculative decoding (engine/spec_decode): each step proposes up to K tokens per
  // decoding sequence and the runner verifies them in the same forward. Steps then run
  // synchronously (the proposals need the previous step's tokens); async_scheduling
  // must be off. `proposer` is what proposes (a draft model's); unset with the ngram
  // method, the engine makes an NgramProposer.
  SpeculativeConfig speculative;
  std::shared_ptr<Proposer> proposer;
};

struct AddResult {
  enum class Code { kOk, kInvalid, kOverloaded, kShuttingDown };
  Code code = Code::kOk;
  std::string error;  // when code != kOk
  uint64_t id = 0;    // for abort()
  std::shared_ptr<RequestStream> stream;
};

class Engine {
 public:
  // `tokenizer` must outlive the engine. eos_ids: the model's end tokens.
  Engine(EngineConfig config, std::unique_ptr<ModelRunner> runner, const Tokenizer& tokenizer,
         std::vector<int32_t> eos_ids);
  ~Engine();  // shutdown(0): aborts what is left
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // params must have passed SamplingParams::validate and the request
  // check_request_limits(request_limits()) (its max_tokens resolved): add()
  // asserts the latter (kInvalid, never a scheduler error) and checks the
  // queue bound. The request then runs asynchronously.
  AddResult add(EngineRequest request);
  // What check_request_limits checks against.
  RequestLimits request_limits() const;

  // Finishes the request (all its sequences) with reason abort at the next
  // step and frees its KV blocks. Unknown or finished ids are ignored.
  void abort(uint64_t id);

  // Stops accepting requests, lets the running ones finish for up to `drain`,
  // aborts the rest and joins the engine thread. Idempotent.
  void shutdown(std::chrono::milliseconds drain);

  EngineMetrics metrics() const;  // a snapshot
  // The engine's heartbeat: how long it has had requests without completing a
  // step (zero while it has none). /health turns 503 past a bound.
  std::chrono::steady_clock::duration stalled_for() const;
  const SchedulerConfig& scheduler_config() const { return config_.scheduler; }
  const ModelConfig& model_config() const { return runner_->config(); }
  int32_t vocab_size() const { return runner_->vocab_size(); }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

 private:
  struct RequestState;
  struct SequenceState {
    RequestState* request = nullptr;
    int32_t index = 0;
    RequestGenerator generator;
    int32_t num_outputs = 0;  // tokens applied so far
    std::unique_ptr<SequenceOutputProcessor> output;
    std::unique_ptr<structured::GrammarMatcher> grammar;  // structured outputs: where its output stands
    Clock::time_point last_token{};
  };
  struct RequestState {
    uint64_t id = 0;
    EngineRequest request;
    std::shared_ptr<RequestStream> stream;
    std::vector<uint64_t> seq_ids;
    int32_t unfinished = 0;
    int32_t generated = 0;  // over all sequences
    int32_t num_cached_tokens = 0;
    FinishReason last_finish = FinishReason::kNone;
    Clock::time_point arrival{};
    Clock::time_point first_token{};
  };

  void loop();
  void admit(std::unique_ptr<RequestState> request);
  void abort_now(uint64_t request_id);
  // A step launched and not yet applied.
  struct StepInFlight {
    SchedulerOutput out;
    std::vector<uint64_t> rows;         // the sequences sampled, in row order
    std::vector<int32_t> drafts;        // per row: the proposed token it verifies, or -1
    int64_t prompt_tokens = 0;
    // A row's penalties read the generated ids, or its grammar's mask follows
    // from them: the next step waits for these tokens (no async overlap).
    bool needs_outputs = false;
    std::vector<std::vector<uint32_t>> masks;  // grammar token masks, read by the runner during launch
  };
  void step();
  // Proposes tokens for every decoding sequence (drafts_) and tells the scheduler how many.
  void propose_drafts();
  // Speculative decoding counters of some steps.
  struct SpecStats {
    int64_t num_drafts = 0, num_draft_tokens = 0, num_accepted = 0;
    std::vector<int64_t> accepted_per_pos;
    void add(int32_t proposed, int32_t accepted);
    void merge(const SpecStats& other);
    void add_to(EngineMetrics& m) const;
  };
  StepInFlight launch_step(SchedulerOutput out);
  // Waits for the step's tokens and applies them.
  void complete(StepInFlight& step);
  // Ends one sequence: pushes `delta` (with its finish), frees the scheduler
  // entry when `release` and retires the request when it was the last.
  void finish_sequence(uint64_t seq_id, FinishReason kind, SequenceDelta delta, bool release);
  void publish_stats(int64_t new_prompt_tokens, int64_t new_generation_tokens);

  EngineConfig config_;
  std::unique_ptr<ModelRunner> runner_;
  const Tokenizer& tokenizer_;
  std::vector<int32_t> eos_ids_;

  // Shared with other threads, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<RequestState>> inbox_;
  std::vector<uint64_t> aborts_;
  bool accepting_ = true;
  bool stop_ = false;
  int64_t num_waiting_ = 0;    // inbox + scheduler waiting, for the queue bound
  int64_t num_in_flight_ = 0;  // requests added and not finished
  // When the last step completed, or work arrived at an idle engine (guarded by mu_).
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
  EngineMetrics metrics_;
  std::condition_variable drained_cv_;
  uint64_t next_request_id_ = 1;

  // Engine thread only.
  Scheduler scheduler_;
  std::mt19937_64 seed_rng_;
  uint64_t next_seq_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<RequestState>> requests_;
  std::unordered_map<uint64_t, SequenceState> sequences_;
  std::optional<StepInFlight> in_flight_;  // async scheduling: launched, not applied
  std::unordered_map<uint64_t, std::vector<int32_t>> drafts_;  // this step's proposals, by sequence
  SpecStats spec_since_log_;
  Clock::time_point last_log_{};
  int64_t prompt_tokens_since_log_ = 0, generation_tokens_since_log_ = 0;

  std::thread thread_;
};

}  // namespace ember
