#pragma once
// What the front ends (HTTP server, `ember generate`) hand to the engine and
// what they get back. A request with n > 1 becomes n sequences in the
// scheduler; its outputs come back on one stream, each delta tagged with the
// index of its sequence (OpenAI's choice index).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/sampling_params.h"
#include "scheduler/finish_reason.h"

namespace ember {

using Clock = std::chrono::steady_clock;

struct EngineRequest {
  std::string external_id;          // shown in logs and responses ("cmpl-...")
  std::vector<int32_t> prompt_ids;  // already tokenized (chat template applied)
  SamplingParams params;            // validated by the caller
  std::string cache_salt;           // isolates a tenant's prefix-cache entries
  int32_t priority = 0;             // lower runs first under --scheduling-policy priority
};

// One step's news for one sequence of a request.
struct SequenceDelta {
  int32_t index = 0;                   // which of the request's n sequences
  std::vector<int32_t> token_ids;      // tokens sampled since the last delta
  std::string text;                    // text that became final since the last delta
  std::vector<SampledToken> logprobs;  // one per token when params.logprobs is set
  FinishReason finish = FinishReason::kNone;
  // Why it stopped when finish == kStop: the matched stop string, or the
  // stop/EOS token id as text (vLLM's stop_reason); empty otherwise.
  std::string stop_reason;
  bool stop_reason_is_token = false;
  int32_t num_prompt_tokens = 0;
  int32_t num_output_tokens = 0;  // total so far
  int32_t num_cached_tokens = 0;  // prompt tokens served from the prefix cache
};

// The per-request channel. The engine thread pushes; one consumer pops.
// Closed once every sequence has finished (or the request was rejected).
class RequestStream {
 public:
  explicit RequestStream(int32_t num_sequences) : unfinished_(num_sequences) {}

  // Engine side.
  void push(SequenceDelta delta);
  void fail(std::string message);  // the request was dropped (engine shutdown)

  // Consumer side: waits up to `timeout` for deltas; returns what arrived
  // (possibly nothing). `done()` tells when nothing more will come.
  std::vector<SequenceDelta> pop(std::chrono::milliseconds timeout);
  bool done() const;
  std::optional<std::string> error() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SequenceDelta> queue_;
  int32_t unfinished_;
  std::optional<std::string> error_;
};

}  // namespace ember
