#include "engine/engine.h"

#include <algorithm>
#include <cstdlib>
#include <span>
#include <utility>

#include <spdlog/spdlog.h>

namespace ember {
namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Engine::Engine(EngineConfig config, std::unique_ptr<ModelRunner> runner, const Tokenizer& tokenizer,
               std::vector<int32_t> eos_ids)
    : config_(std::move(config)),
      runner_(std::move(runner)),
      tokenizer_(tokenizer),
      eos_ids_(std::move(eos_ids)),
      scheduler_(config_.scheduler),
      seed_rng_(config_.seed) {
  last_log_ = Clock::now();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { shutdown(std::chrono::milliseconds(0)); }

AddResult Engine::add(EngineRequest request) {
  AddResult result;
  auto invalid = [&](std::string message) {
    result.code = AddResult::Code::kInvalid;
    result.error = std::move(message);
    return result;
  };
  // The front ends checked the request already (check_request_limits); one
  // that did not gets the same answer here instead of a scheduler error.
  int32_t max_tokens = 0;
  if (auto bad = check_request_limits(request.prompt_ids, request.params.max_tokens, request_limits(), max_tokens))
    return invalid(std::move(bad->message));

  auto state = std::make_unique<RequestState>();
  state->request = std::move(request);
  state->stream = std::make_shared<RequestStream>(state->request.params.n);
  state->arrival = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      result.code = AddResult::Code::kShuttingDown;
      result.error = "the server is shutting down";
      return result;
    }
    if (num_waiting_ >= config_.max_queue_len) {
      result.code = AddResult::Code::kOverloaded;
      result.error = "the server is overloaded: " + std::to_string(num_waiting_) + " requests are waiting";
      return result;
    }
    state->id = next_request_id_++;
    result.id = state->id;
    result.stream = state->stream;
    ++num_waiting_;
    ++num_in_flight_;
    inbox_.push_back(std::move(state));
  }
  cv_.notify_all();
  return result;
}

void Engine::abort(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts_.push_back(id);
  }
  cv_.notify_all();
}

void Engine::shutdown(std::chrono::milliseconds drain) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    accepting_ = false;
    drained_cv_.wait_for(lock, drain, [&] { return num_in_flight_ == 0; });
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

RequestLimits Engine::request_limits() const {
  const SchedulerConfig& sc = config_.scheduler;
  RequestLimits l;
  l.vocab_size = runner_->vocab_size();
  l.max_model_len = sc.max_model_len;
  l.block_size = sc.block_size;
  l.num_blocks = sc.num_blocks;
  l.max_num_batched_tokens = sc.max_num_batched_tokens;
  l.enable_chunked_prefill = sc.enable_chunked_prefill;
  return l;
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

void Engine::loop() {
  for (;;) {
    std::vector<std::unique_ptr<RequestState>> incoming;
    std::vector<uint64_t> aborts;
    bool stop = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return !inbox_.empty() || !aborts_.empty() || stop_ || scheduler_.has_unfinished() || in_flight_.has_value();
      });
      incoming.swap(inbox_);
      aborts.swap(aborts_);
      stop = stop_;
    }
    for (auto& r : incoming) admit(std::move(r));
    for (uint64_t id : aborts) abort_now(id);
    if (stop) {
      if (in_flight_) {
        complete(*in_flight_);
        in_flight_.reset();
      }
      std::vector<uint64_t> live;
      for (const auto& [id, r] : requests_) live.push_back(id);
      for (uint64_t id : live) abort_now(id);
      publish_stats(0, 0);
      return;
    }
    if (scheduler_.has_unfinished() || in_flight_) {
      step();
    } else {
      publish_stats(0, 0);  // the gauges must reach zero when the last request is aborted
    }
  }
}

void Engine::admit(std::unique_ptr<RequestState> request) {
  RequestState* r = request.get();
  const SamplingParams& params = r->request.params;
  const uint64_t seed = params.seed ? *params.seed : seed_rng_();
  r->unfinished = params.n;
  for (int32_t i = 0; i < params.n; ++i) {
    const uint64_t seq_id = next_seq_id_++;
    NewRequest nr;
    nr.id = seq_id;
    nr.prompt = r->request.prompt_ids;
    nr.max_tokens = params.max_tokens;
    nr.cache_salt = r->request.cache_salt;
    nr.priority = r->request.priority;
    const AddStatus added = scheduler_.add(std::move(nr));
    if (!added.ok()) {
      // add() checked the same limits; reaching this is a bug, but never a hang:
      // fail the request and drop what was admitted of it.
      spdlog::error("request {}: {}", r->request.external_id, added.error);
      for (uint64_t id : r->seq_ids) {
        scheduler_.finish(id, FinishReason::kAbort);
        sequences_.erase(id);
      }
      r->stream->fail(added.error);
      std::lock_guard<std::mutex> lock(mu_);
      --num_waiting_;
      --num_in_flight_;
      drained_cv_.notify_all();
      return;
    }
    SequenceState s;
    s.request = r;
    s.index = i;
    s.generator = RequestGenerator{seed, static_cast<uint32_t>(i), 0};
    s.output = std::make_unique<SequenceOutputProcessor>(tokenizer_, r->request.params, eos_ids_);
    sequences_.emplace(seq_id, std::move(s));
    r->seq_ids.push_back(seq_id);
  }
  requests_.emplace(r->id, std::move(request));
}

void Engine::abort_now(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  const std::vector<uint64_t> seqs = it->second->seq_ids;
  for (uint64_t seq_id : seqs)
    if (sequences_.count(seq_id)) finish_sequence(seq_id, FinishReason::kAbort, SequenceDelta{}, /*release=*/true);
}

void Engine::step() {
  // Penalties read the generated ids: the next schedule must see the tokens.
  if (in_flight_ && in_flight_->penalizes) {
    complete(*in_flight_);
    in_flight_.reset();
  }
  SchedulerOutput out = scheduler_.schedule();
  std::optional<StepInFlight> next;
  if (!out.scheduled.empty()) next = launch_step(std::move(out));
  if (in_flight_) {
    complete(*in_flight_);
    in_flight_.reset();
  }
  if (!next) return;
  if (config_.async_scheduling) {
    in_flight_ = std::move(next);
  } else {
    complete(*next);
  }
}

Engine::StepInFlight Engine::launch_step(SchedulerOutput out) {
  StepInFlight f;
  // Where the in-flight step's tokens are, for decodes whose input is one of them.
  std::unordered_map<uint64_t, int32_t> prev_row;
  if (in_flight_)
    for (size_t i = 0; i < in_flight_->rows.size(); ++i) prev_row[in_flight_->rows[i]] = static_cast<int32_t>(i);
  std::vector<StepSequence> seqs;
  seqs.reserve(out.scheduled.size());
  std::vector<SamplerRow> rows;
  for (const ScheduledRequest& s : out.scheduled) {
    const SchedRequest* r = scheduler_.find(s.id);
    StepSequence step;
    step.tokens = r->tokens;
    step.start = s.start;
    step.num_tokens = s.num_tokens;
    step.block_ids = r->blocks.ids;
    step.num_logits = s.wants_logits ? 1 : 0;
    if (s.start + s.num_tokens > static_cast<int64_t>(r->tokens.size())) {
      // The chunk ends on the token the in-flight step is sampling: the runner reads it where that step left it.
      auto it = prev_row.find(s.id);
      if (it == prev_row.end() || s.start + s.num_tokens != static_cast<int64_t>(r->tokens.size()) + 1) {
        spdlog::critical("engine: sequence {} is scheduled past its known tokens with no step in flight for it", s.id);
        std::abort();
      }
      step.prev_row = it->second;
    }
    seqs.push_back(step);
    f.prompt_tokens +=
        std::max<int64_t>(0, std::min<int64_t>(s.start + s.num_tokens, r->num_prompt_tokens) - s.start);
    if (!s.wants_logits) continue;
    SequenceState& seq = sequences_.at(r->id);
    const SamplingParams* params = &seq.request->request.params;
    const std::span<const int32_t> all(r->tokens);
    SamplerRow row{{}, all.first(r->num_prompt_tokens), all.subspan(r->num_prompt_tokens), params, &seq.generator};
    row.pending_outputs = r->num_pending_tokens - 1;  // those before this step's own
    rows.push_back(row);
    f.rows.push_back(r->id);
    f.penalizes = f.penalizes || params->penalizes_outputs();
  }
  f.out = std::move(out);
  runner_->launch(seqs, rows);
  return f;
}

void Engine::complete(StepInFlight& f) {
  std::vector<SampledToken> sampled;
  runner_->collect(sampled);
  if (sampled.size() != f.rows.size()) {
    spdlog::critical("engine: the runner returned {} tokens for {} rows", sampled.size(), f.rows.size());
    std::abort();
  }
  std::vector<std::pair<uint64_t, int32_t>> pairs;
  std::vector<int32_t> cached;
  pairs.reserve(f.rows.size());
  cached.reserve(f.rows.size());
  for (size_t i = 0; i < f.rows.size(); ++i) {
    pairs.emplace_back(f.rows[i], sampled[i].token);
    const SchedRequest* r = scheduler_.find(f.rows[i]);
    cached.push_back(r != nullptr ? std::max(0, r->num_cached_tokens) : 0);
  }
  const std::vector<FinishedRequest> by_length = scheduler_.update(f.out, pairs);

  const Clock::time_point now = Clock::now();
  int64_t applied = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const uint64_t seq_id = pairs[i].first;
    auto it = sequences_.find(seq_id);
    if (it == sequences_.end()) continue;  // stopped or aborted while this step ran: its token is dropped
    SequenceState& seq = it->second;
    RequestState& req = *seq.request;
    ++applied;
    SequenceDelta delta;
    delta.index = seq.index;
    delta.num_prompt_tokens = static_cast<int32_t>(req.request.prompt_ids.size());
    delta.num_output_tokens = ++seq.num_outputs;
    delta.num_cached_tokens = cached[i];
    req.num_cached_tokens = std::max(req.num_cached_tokens, cached[i]);
    ++req.generated;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (req.first_token == Clock::time_point{}) {
        req.first_token = now;
        metrics_.time_to_first_token.observe(seconds(now - req.arrival));
      }
      if (seq.last_token != Clock::time_point{}) metrics_.inter_token_latency.observe(seconds(now - seq.last_token));
    }
    seq.last_token = now;
    const FinishReason stop = seq.output->on_token(sampled[i], seq.num_outputs, delta);
    const bool length = std::any_of(by_length.begin(), by_length.end(),
                                    [&](const FinishedRequest& fr) { return fr.id == seq_id; });
    if (stop == FinishReason::kStop) {
      // A stop on the last allowed token is a stop, not a length finish (as vLLM).
      finish_sequence(seq_id, FinishReason::kStop, std::move(delta), /*release=*/!length);
    } else if (length) {
      finish_sequence(seq_id, FinishReason::kLength, std::move(delta), /*release=*/false);
    } else {
      seq.request->stream->push(std::move(delta));
    }
  }
  publish_stats(f.prompt_tokens, applied);
}

void Engine::finish_sequence(uint64_t seq_id, FinishReason kind, SequenceDelta delta, bool release) {
  auto it = sequences_.find(seq_id);
  if (it == sequences_.end()) return;
  SequenceState& seq = it->second;
  RequestState* req = seq.request;
  if (release) scheduler_.finish(seq_id, kind);
  if (kind != FinishReason::kStop) seq.output->finish(delta);
  delta.index = seq.index;
  delta.finish = kind;
  if (delta.num_prompt_tokens == 0) delta.num_prompt_tokens = static_cast<int32_t>(req->request.prompt_ids.size());
  sequences_.erase(it);
  req->last_finish = kind;
  if (--req->unfinished > 0) {
    req->stream->push(std::move(delta));
    return;
  }
  // The last sequence: account for the request before its stream closes, so
  // a client that reads /metrics right after its response sees it counted
  // and its KV blocks returned.
  const Clock::time_point now = Clock::now();
  const double e2e = seconds(now - req->arrival);
  const double ttft = req->first_token == Clock::time_point{} ? 0.0 : seconds(req->first_token - req->arrival);
  spdlog::info("request {}: {} prompt tokens ({} cached), {} generated, TTFT {:.3f} s, total {:.3f} s, finish {}",
               req->request.external_id.empty() ? std::to_string(req->id) : req->request.external_id,
               req->request.prompt_ids.size(), req->num_cached_tokens, req->generated, ttft, e2e,
               finish_reason_name(kind));
  {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_.e2e_request_latency.observe(e2e);
    metrics_.request_prompt_tokens.observe(static_cast<double>(req->request.prompt_ids.size()));
    metrics_.request_generation_tokens.observe(req->generated);
    ++metrics_.request_success_total[finish_reason_name(kind)];
    const SchedulerStats stats = scheduler_.stats();
    metrics_.num_requests_running = stats.num_running;
    metrics_.num_requests_waiting = stats.num_waiting;
    metrics_.kv_cache_usage = stats.kv_usage;
    --num_in_flight_;
  }
  drained_cv_.notify_all();
  std::shared_ptr<RequestStream> stream = req->stream;
  requests_.erase(req->id);
  stream->push(std::move(delta));
}

void Engine::publish_stats(int64_t new_prompt_tokens, int64_t new_generation_tokens) {
  const SchedulerStats s = scheduler_.stats();
  size_t inbox = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox = inbox_.size();
    num_waiting_ = s.num_waiting + static_cast<int64_t>(inbox);
    metrics_.num_requests_running = s.num_running;
    metrics_.num_requests_waiting = s.num_waiting;
    metrics_.kv_cache_usage = s.kv_usage;
    metrics_.prompt_tokens_total += static_cast<uint64_t>(new_prompt_tokens);
    metrics_.generation_tokens_total += static_cast<uint64_t>(new_generation_tokens);
    metrics_.num_preemptions_total = static_cast<uint64_t>(s.num_preemptions);
    metrics_.prefix_cache_queries_total = static_cast<uint64_t>(s.prefix_queries);
    metrics_.prefix_cache_hits_total = static_cast<uint64_t>(s.prefix_hits);
  }
  prompt_tokens_since_log_ += new_prompt_tokens;
  generation_tokens_since_log_ += new_generation_tokens;
  const Clock::time_point now = Clock::now();
  const double elapsed = seconds(now - last_log_);
  if (config_.log_interval_s > 0 && elapsed >= config_.log_interval_s &&
      (prompt_tokens_since_log_ + generation_tokens_since_log_ > 0 || s.num_running > 0)) {
    const double hit_rate = s.prefix_queries > 0 ? 100.0 * static_cast<double>(s.prefix_hits) / s.prefix_queries : 0.0;
    spdlog::info(
        "Avg prompt throughput: {:.1f} tokens/s, Avg generation throughput: {:.1f} tokens/s, Running: {} reqs, "
        "Waiting: {} reqs, KV cache usage: {:.1f}%, Prefix cache hit rate: {:.1f}%",
        prompt_tokens_since_log_ / elapsed, generation_tokens_since_log_ / elapsed, s.num_running, s.num_waiting,
        100.0 * s.kv_usage, hit_rate);
    last_log_ = now;
    prompt_tokens_since_log_ = generation_tokens_since_log_ = 0;
  }
}

}  // namespace ember
