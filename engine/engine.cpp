#include "engine/engine.h"

#include <algorithm>
#include <cstdlib>
#include <span>
#include <utility>

#include <spdlog/spdlog.h>

#include "engine/structured/grammar_matcher.h"

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
  if (config_.speculative.enabled()) {
    metrics_.spec_decode_enabled = true;
    if (!config_.proposer) config_.proposer = std::make_shared<NgramProposer>(config_.speculative);
    if (config_.async_scheduling) {
      spdlog::info("speculative decoding steps synchronously: async scheduling is off");
      config_.async_scheduling = false;
    }
  }
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
    // The queue bound counts sequences (a request of n samples waits as n).
    const int64_t seqs = std::max<int32_t>(state->request.params.n, 1);
    if (seqs > config_.max_queue_len) {
      result.code = AddResult::Code::kInvalid;
      result.error = "n = " + std::to_string(seqs) + " is more sequences than the server queues at once (" +
                     std::to_string(config_.max_queue_len) + ", --max-queue-len)";
      return result;
    }
    if (num_waiting_ + seqs > config_.max_queue_len) {
      result.code = AddResult::Code::kOverloaded;
      result.error = "the server is overloaded: " + std::to_string(num_waiting_) + " sequences are waiting";
      return result;
    }
    state->id = next_request_id_++;
    result.id = state->id;
    result.stream = state->stream;
    num_waiting_ += seqs;
    if (num_in_flight_ == 0) last_progress_ = Clock::now();  // an idle engine has not been stalling
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

std::chrono::steady_clock::duration Engine::stalled_for() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (num_in_flight_ == 0) return std::chrono::steady_clock::duration::zero();
  return Clock::now() - last_progress_;
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
      std::lock_guard<std::mutex> lock(mu_);
      last_progress_ = Clock::now();
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
      num_waiting_ -= std::max<int32_t>(r->request.params.n, 1);
      --num_in_flight_;
      drained_cv_.notify_all();
      return;
    }
    SequenceState s;
    s.request = r;
    s.index = i;
    s.generator = RequestGenerator{seed, static_cast<uint32_t>(i), 0};
    s.output = std::make_unique<SequenceOutputProcessor>(tokenizer_, r->request.params, eos_ids_);
    if (params.grammar) s.grammar = std::make_unique<structured::GrammarMatcher>(params.grammar);
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
  // Penalties and grammars read the generated ids: the next schedule must see the tokens.
  if (in_flight_ && in_flight_->needs_outputs) {
    complete(*in_flight_);
    in_flight_.reset();
  }
  if (config_.speculative.enabled()) propose_drafts();
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
  // Sequences verifying proposed tokens: their known tokens and the drafts, one
  // buffer each (the runner reads them during launch only).
  std::vector<std::vector<int32_t>> with_drafts;
  with_drafts.reserve(drafts_.size());
  for (const ScheduledRequest& s : out.scheduled) {
    const SchedRequest* r = scheduler_.find(s.id);
    StepSequence step;
    step.tokens = r->tokens;
    step.start = s.start;
    step.num_tokens = s.num_tokens;
    step.block_ids = r->blocks.ids;
    const auto known = static_cast<int64_t>(r->tokens.size());
    // Positions past the known tokens hold proposed tokens (scheduled as lookahead).
    // (speculation steps synchronously: nothing of such a sequence is in flight)
    const auto proposed = drafts_.find(s.id);
    const int64_t num_drafts =
        proposed == drafts_.end() ? 0 : std::max<int64_t>(0, s.start + s.num_tokens - known);
    step.num_logits = s.wants_logits ? static_cast<int32_t>(1 + num_drafts) : 0;
    if (num_drafts > 0) {
      const std::vector<int32_t>& d = proposed->second;
      if (num_drafts > static_cast<int64_t>(d.size())) {
        spdlog::critical("engine: sequence {} is scheduled past its {} proposed tokens", s.id, d.size());
        std::abort();
      }
      with_drafts.push_back(r->tokens);
      with_drafts.back().insert(with_drafts.back().end(), d.begin(), d.begin() + num_drafts);
      step.tokens = with_drafts.back();
    } else if (s.start + s.num_tokens > known) {
      // The chunk ends on the token the in-flight step is sampling: the runner reads it where that step left it.
      auto it = prev_row.find(s.id);
      if (it == prev_row.end() || s.start + s.num_tokens != known + 1) {
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
    const std::span<const int32_t> all(step.tokens);
    // Grammar masks: row j's after the drafts before it (propose_drafts kept only drafts the grammar accepts).
    const size_t first_mask = f.masks.size();
    if (seq.grammar) {
      const size_t words = structured::bitmask_words(runner_->vocab_size());
      for (int64_t j = 0; j <= num_drafts; ++j) {
        if (j > 0) seq.grammar->accept(all[static_cast<size_t>(known + j - 1)]);
        f.masks.emplace_back(words);
        seq.grammar->fill_mask(f.masks.back().data());
      }
      seq.grammar->rollback(static_cast<int32_t>(num_drafts));
    }
    for (int64_t j = 0; j <= num_drafts; ++j) {
      // Row j samples the position after draft j - 1: its outputs include drafts [0, j).
      SamplerRow row{{}, all.first(r->num_prompt_tokens),
                     all.subspan(r->num_prompt_tokens, static_cast<size_t>(known - r->num_prompt_tokens + j)), params,
                     &seq.generator};
      row.pending_outputs = r->num_pending_tokens - 1;  // those before this step's own
      row.draft_token = j < num_drafts ? all[static_cast<size_t>(known + j)] : -1;
      if (seq.grammar) row.allowed = f.masks[first_mask + static_cast<size_t>(j)].data();
      rows.push_back(row);
      f.rows.push_back(r->id);
      f.drafts.push_back(row.draft_token);
    }
    f.needs_outputs = f.needs_outputs || params->penalizes_outputs() || seq.grammar != nullptr;
  }
  f.out = std::move(out);
  runner_->launch(seqs, rows);
  return f;
}

void Engine::propose_drafts() {
  const int32_t k = config_.speculative.num_speculative_tokens;
  drafts_.clear();
  // vLLM's disable_by_batch_size: a batch this large is compute-bound enough
  // that verifying drafts costs more than it saves.
  const int32_t disable_at = config_.speculative.disable_by_batch_size;
  bool disabled = false;
  if (disable_at > 0) {
    int32_t running = 0;
    for (const auto& entry : sequences_) {
      const SchedRequest* r = scheduler_.find(entry.first);
      running += r != nullptr && r->status == SchedStatus::kRunning ? 1 : 0;
    }
    disabled = running >= disable_at;
  }
  std::vector<ProposalRequest> reqs;
  for (const auto& entry : sequences_) {
    const uint64_t seq_id = entry.first;
    const SchedRequest* r = scheduler_.find(seq_id);
    if (r == nullptr) continue;
    scheduler_.set_num_lookahead(seq_id, 0);
    if (disabled) continue;
    // Only a sequence whose next step is a plain decode (its prompt computed, nothing in flight) speculates.
    const bool decoding = r->status == SchedStatus::kRunning && r->num_pending_tokens == 0 &&
                          r->num_computed_tokens + 1 == static_cast<int64_t>(r->tokens.size());
    if (!decoding) continue;
    // The scheduler computes no position past the one whose logits give the last allowed token.
    const int32_t room = r->max_tokens - r->num_output_tokens() - 1;
    if (room < 1) continue;
    reqs.push_back({seq_id, r->tokens, std::min(k, room)});
  }
  if (reqs.empty()) return;
  std::vector<std::vector<int32_t>> proposed;
  config_.proposer->propose(reqs, proposed);
  for (size_t i = 0; i < reqs.size(); ++i) {
    proposed[i].resize(std::min(proposed[i].size(), static_cast<size_t>(reqs[i].max_tokens)));
    // Under a grammar, proposals stop at the first token it rejects (that one could never be accepted).
    if (auto seq = sequences_.find(reqs[i].seq_id); seq != sequences_.end() && seq->second.grammar) {
      structured::GrammarMatcher& g = *seq->second.grammar;
      size_t ok = 0;
      while (ok < proposed[i].size() && g.accept(proposed[i][ok])) ++ok;
      g.rollback(static_cast<int32_t>(ok));
      proposed[i].resize(ok);
    }
    if (proposed[i].empty()) continue;
    scheduler_.set_num_lookahead(reqs[i].seq_id, static_cast<int32_t>(proposed[i].size()));
    drafts_.emplace(reqs[i].seq_id, std::move(proposed[i]));
  }
}

void Engine::complete(StepInFlight& f) {
  std::vector<SampledToken> sampled;
  runner_->collect(sampled);
  if (sampled.size() != f.rows.size()) {
    spdlog::critical("engine: the runner returned {} tokens for {} rows", sampled.size(), f.rows.size());
    std::abort();
  }
  // A sequence's rows give its tokens of this step: each accepted draft, then
  // the token of the first row that is not one (a rejection's replacement, or
  // the bonus token after all drafts were accepted, or a plain sample).
  struct Run {
    uint64_t seq_id;
    size_t first, count;  // rows [first, first + count) emitted
    int32_t cached;
  };
  std::vector<Run> runs;
  std::vector<std::pair<uint64_t, int32_t>> pairs;
  pairs.reserve(f.rows.size());
  SpecStats spec;
  for (size_t i = 0; i < f.rows.size();) {
    size_t end = i;
    while (end < f.rows.size() && f.rows[end] == f.rows[i]) ++end;
    size_t n = 0;
    while (i + n < end) {
      const size_t row = i + n++;
      pairs.emplace_back(f.rows[row], sampled[row].token);
      if (f.drafts[row] < 0 || !sampled[row].accepted) break;
    }
    if (end - i > 1) spec.add(static_cast<int32_t>(end - i - 1), static_cast<int32_t>(n - 1));
    const SchedRequest* r = scheduler_.find(f.rows[i]);
    runs.push_back({f.rows[i], i, n, r != nullptr ? std::max(0, r->num_cached_tokens) : 0});
    i = end;
  }
  const std::vector<FinishedRequest> by_length = scheduler_.update(f.out, pairs);

  const Clock::time_point now = Clock::now();
  int64_t applied = 0;
  for (const Run& run : runs) {
    auto it = sequences_.find(run.seq_id);
    if (it == sequences_.end()) continue;  // stopped or aborted while this step ran: its tokens are dropped
    SequenceState& seq = it->second;
    RequestState& req = *seq.request;
    SequenceDelta delta;
    delta.index = seq.index;
    delta.num_prompt_tokens = static_cast<int32_t>(req.request.prompt_ids.size());
    delta.num_cached_tokens = run.cached;
    req.num_cached_tokens = std::max(req.num_cached_tokens, run.cached);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (req.first_token == Clock::time_point{}) {
        req.first_token = now;
        metrics_.time_to_first_token.observe(seconds(now - req.arrival));
      }
      if (seq.last_token != Clock::time_point{}) metrics_.inter_token_latency.observe(seconds(now - seq.last_token));
    }
    seq.last_token = now;
    const bool length = std::any_of(by_length.begin(), by_length.end(),
                                    [&](const FinishedRequest& fr) { return fr.id == run.seq_id; });
    FinishReason stop = FinishReason::kNone;
    for (size_t k = 0; k < run.count && stop == FinishReason::kNone; ++k) {
      ++applied;
      ++req.generated;
      delta.num_output_tokens = ++seq.num_outputs;
      stop = seq.output->on_token(sampled[run.first + k], seq.num_outputs, delta);
      // (EOS ends the sequence whatever the grammar says: the mask allows it at a dead end too.)
      if (seq.grammar && stop == FinishReason::kNone && !seq.grammar->accept(sampled[run.first + k].token)) {
        // The mask made this impossible; never go on with output the grammar does not hold.
        spdlog::error("request {}: token {} breaks its grammar; the sequence stops", req.request.external_id,
                      sampled[run.first + k].token);
        stop = FinishReason::kAbort;
      }
    }
    if (stop == FinishReason::kStop) {
      // A stop on the last allowed token is a stop, not a length finish (as vLLM);
      // tokens of the run after the stop are dropped with the sequence.
      finish_sequence(run.seq_id, FinishReason::kStop, std::move(delta), /*release=*/!length);
    } else if (stop == FinishReason::kAbort) {
      finish_sequence(run.seq_id, FinishReason::kAbort, std::move(delta), /*release=*/!length);
    } else if (length) {
      finish_sequence(run.seq_id, FinishReason::kLength, std::move(delta), /*release=*/false);
    } else {
      seq.request->stream->push(std::move(delta));
    }
  }
  if (spec.num_drafts > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    spec.add_to(metrics_);
  }
  spec_since_log_.merge(spec);
  publish_stats(f.prompt_tokens, applied);
}

void Engine::finish_sequence(uint64_t seq_id, FinishReason kind, SequenceDelta delta, bool release) {
  auto it = sequences_.find(seq_id);
  if (it == sequences_.end()) return;
  SequenceState& seq = it->second;
  RequestState* req = seq.request;
  if (release) scheduler_.finish(seq_id, kind);
  if (config_.proposer) config_.proposer->release(seq_id);
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t inbox_sequences = 0;
    for (const auto& r : inbox_) inbox_sequences += std::max<int32_t>(r->request.params.n, 1);
    num_waiting_ = s.num_waiting + inbox_sequences;
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
    if (spec_since_log_.num_drafts > 0) {
      // vLLM's SpecDecoding metrics line: how much of what was proposed was accepted.
      const SpecStats& sp = spec_since_log_;
      std::string per_pos;
      for (size_t i = 0; i < sp.accepted_per_pos.size(); ++i)
        per_pos += (i ? ", " : "") + fmt::format("{:.3f}", static_cast<double>(sp.accepted_per_pos[i]) / sp.num_drafts);
      spdlog::info("SpecDecoding metrics: Mean acceptance length: {:.2f}, Accepted: {} tokens, Drafted: {} tokens, "
                   "Draft acceptance rate: {:.1f}%, Per-position acceptance rate: {}",
                   1.0 + static_cast<double>(sp.num_accepted) / sp.num_drafts, sp.num_accepted, sp.num_draft_tokens,
                   100.0 * static_cast<double>(sp.num_accepted) / static_cast<double>(sp.num_draft_tokens), per_pos);
      spec_since_log_ = SpecStats{};
    }
    last_log_ = now;
    prompt_tokens_since_log_ = generation_tokens_since_log_ = 0;
  }
}

void Engine::SpecStats::add(int32_t proposed, int32_t accepted) {
  ++num_drafts;
  num_draft_tokens += proposed;
  num_accepted += accepted;
  if (accepted_per_pos.size() < static_cast<size_t>(proposed)) accepted_per_pos.resize(static_cast<size_t>(proposed), 0);
  for (int32_t i = 0; i < accepted; ++i) ++accepted_per_pos[static_cast<size_t>(i)];
}

void Engine::SpecStats::merge(const SpecStats& o) {
  num_drafts += o.num_drafts;
  num_draft_tokens += o.num_draft_tokens;
  num_accepted += o.num_accepted;
  if (accepted_per_pos.size() < o.accepted_per_pos.size()) accepted_per_pos.resize(o.accepted_per_pos.size(), 0);
  for (size_t i = 0; i < o.accepted_per_pos.size(); ++i) accepted_per_pos[i] += o.accepted_per_pos[i];
}

void Engine::SpecStats::add_to(EngineMetrics& m) const {
  m.spec_decode_num_drafts_total += static_cast<uint64_t>(num_drafts);
  m.spec_decode_num_draft_tokens_total += static_cast<uint64_t>(num_draft_tokens);
  m.spec_decode_num_accepted_tokens_total += static_cast<uint64_t>(num_accepted);
  if (m.spec_decode_num_accepted_tokens_per_pos.size() < accepted_per_pos.size())
    m.spec_decode_num_accepted_tokens_per_pos.resize(accepted_per_pos.size(), 0);
  for (size_t i = 0; i < accepted_per_pos.size(); ++i)
    m.spec_decode_num_accepted_tokens_per_pos[i] += static_cast<uint64_t>(accepted_per_pos[i]);
}

}  // namespace ember
