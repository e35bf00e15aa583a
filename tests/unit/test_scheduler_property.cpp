// Randomized property test: thousands of small workloads (arrivals over time, random
// prompt/output lengths, shared prefixes, cache salts, aborts, stop tokens, lookahead,
// pools so tiny they force preemption) driven through a simulated engine loop.
//
// The simulated engine keeps a shadow KV cache: every slot holds a hash of (salt, all
// tokens up to and including its position), i.e. what real KV depends on. Before each
// step it checks that every position a request attends to ([0, start)) holds exactly its
// own expected value, which fails if a prefix-cache hit ever hands out a block computed
// for other tokens, another chain or another salt, or if a block is overwritten while
// shared. It writes only blocks it owns alone and that are not in the prefix cache.
//
// A third of the workloads run the loop as async scheduling does: step N+1 is scheduled
// (and its KV written, as the GPU would in stream order) before step N's tokens reach
// update(), so decodes compute positions whose tokens are still pending and stops land
// one step late.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "scheduler/scheduler.h"

namespace ember {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The token a request produces at a position (drafts and samples agree, so an accepted
// draft's KV is the KV of the accepted token).
int32_t token_at(uint64_t id, int64_t pos) { return static_cast<int32_t>(mix(id * 1315423911ull + pos) % 64); }

// What the workloads exercised, summed over all of them: the test asserts each is non-zero
// so that a generator change cannot quietly stop covering preemption, hits, aborts...
struct Coverage {
  int64_t preemptions = 0, prefix_hit_tokens = 0, rejected = 0, aborts = 0, stops = 0, drafts = 0, chunks = 0;
  int64_t async_steps = 0, preempted_pending = 0;  // async: preempted with a token in flight
};

struct Planned {
  NewRequest req;
  bool expect_ok = false;
};

struct Live {
  std::string salt;
  int32_t num_prompt = 0;
  int32_t max_tokens = 0;
  bool done = false;
};

class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(seed) {
    cfg_.block_size = pick({1, 2, 3, 4, 8});
    cfg_.max_model_len = uniform(8, 96);
    cfg_.num_blocks = uniform(1, 96 / cfg_.block_size + 2);
    cfg_.max_num_batched_tokens = uniform(1, 48);
    cfg_.max_num_seqs = uniform(1, 6);
    cfg_.enable_chunked_prefill = uniform(0, 9) < 7;
    cfg_.enable_prefix_caching = uniform(0, 9) < 7;
    cfg_.policy = uniform(0, 9) < 3 ? SchedulerConfig::kPriority : SchedulerConfig::kFcfs;
    async_ = uniform(0, 2) == 0;
    // (the engine never combines speculative lookahead with async scheduling)
    const int32_t lookahead = !async_ && uniform(0, 9) < 2 ? uniform(1, 3) : 0;
    lookahead_ = lookahead > 0;
    std::vector<std::vector<int32_t>> prefixes(3);
    for (auto& p : prefixes) p = random_tokens(uniform(0, 24));
    const int32_t n = uniform(1, 12);
    for (int32_t i = 0; i < n; ++i) {
      Planned p;
      p.req.id = static_cast<uint64_t>(1000 + i);
      p.req.prompt = prefixes[uniform(0, 2)];
      const auto suffix = random_tokens(uniform(0, 16));
      p.req.prompt.insert(p.req.prompt.end(), suffix.begin(), suffix.end());
      p.req.max_tokens = uniform(0, 9) == 0 ? 0 : uniform(1, 16);
      p.req.cache_salt = pick<std::string>({"", "", "x", "y"});
      p.req.priority = uniform(0, 3);
      p.req.num_lookahead_tokens = lookahead;
      const int64_t total = static_cast<int64_t>(p.req.prompt.size()) + p.req.max_tokens;
      p.expect_ok = !p.req.prompt.empty() && p.req.max_tokens >= 1 && total <= cfg_.max_model_len &&
                    (total + cfg_.block_size - 1) / cfg_.block_size <= cfg_.num_blocks &&
                    (cfg_.enable_chunked_prefill || total - 1 <= cfg_.max_num_batched_tokens) &&
                    1 + lookahead <= cfg_.max_num_batched_tokens;
      planned_.push_back(std::move(p));
    }
  }

  void run(Coverage* cov) {
    cov_ = cov;
    Scheduler s(cfg_);
    kv_.assign(static_cast<size_t>(cfg_.num_blocks) * cfg_.block_size, 0);
    size_t next = 0;
    const int kMaxSteps = 20000;  // far beyond any fair schedule of these workloads
    int step = 0;
    for (; step < kMaxSteps; ++step) {
      while (next < planned_.size() && (step == 0 || uniform(0, 2) == 0)) add(s, planned_[next++]);
      if (!live_ids_.empty() && uniform(0, 19) == 0) {  // client disconnects
        const uint64_t id = live_ids_[uniform(0, static_cast<int32_t>(live_ids_.size()) - 1)];
        ASSERT_TRUE(s.finish(id, FinishReason::kAbort));
        mark_done(id);
        ++cov_->aborts;
      }
      if (next == planned_.size() && !s.has_unfinished() && !in_flight_) break;
      ASSERT_NO_FATAL_FAILURE(one_step(s)) << describe();
    }
    ASSERT_FALSE(in_flight_.has_value());
    ASSERT_LT(step, kMaxSteps) << "workload never drained (deadlock or starvation) " << describe();
    for (const auto& [id, l] : live_) EXPECT_TRUE(l.done) << "request " << id << " never finished";
    EXPECT_EQ(s.block_manager().num_free_blocks(), cfg_.num_blocks) << "pool not whole " << describe();
    EXPECT_EQ(s.block_manager().usage(), 0.0);
    EXPECT_EQ(s.check_invariants(), "");
    cov_->preemptions += s.stats().num_preemptions;
    cov_->prefix_hit_tokens += s.stats().prefix_hits;
  }

 private:
  void add(Scheduler& s, const Planned& p) {
    const AddStatus st = s.add(p.req);
    ASSERT_EQ(st.ok(), p.expect_ok) << st.error << " " << describe();
    if (!st.ok()) {
      ++cov_->rejected;
      return;
    }
    live_[p.req.id] = {p.req.cache_salt, static_cast<int32_t>(p.req.prompt.size()), p.req.max_tokens, false};
    live_ids_.push_back(p.req.id);
  }

  void mark_done(uint64_t id) {
    Live& l = live_.at(id);
    ASSERT_FALSE(l.done) << "request " << id << " finished twice";
    l.done = true;
    live_ids_.erase(std::find(live_ids_.begin(), live_ids_.end(), id));
  }

  // What a KV slot at `pos` must hold for this request: a hash of salt and tokens [0, pos].
  std::vector<uint64_t> expected_kv(const SchedRequest& r, int64_t end) const {
    std::vector<uint64_t> e(static_cast<size_t>(end));
    uint64_t h = mix(std::hash<std::string>{}(r.cache_salt));
    for (int64_t p = 0; p < end; ++p) {
      const int32_t t = p < static_cast<int64_t>(r.tokens.size()) ? r.tokens[p] : token_at(r.id, p);
      h = mix(h ^ (static_cast<uint64_t>(t) + 0x51ed27ull));
      e[p] = h | 1;  // never 0, the "never written" value
    }
    return e;
  }

  // Sync: schedule, then update. Async: schedule step N+1, then update step N.
  void one_step(Scheduler& s) {
    // Speculative workloads: the engine sets each step's lookahead to the proposals it holds (0 to 3 here).
    if (lookahead_)
      for (uint64_t id : live_ids_) s.set_num_lookahead(id, uniform(0, 3));
    SchedulerOutput out = s.schedule();
    ASSERT_NO_FATAL_FAILURE(check_scheduled(s, out));
    if (async_) {
      ++cov_->async_steps;
      if (in_flight_) {
        ASSERT_NO_FATAL_FAILURE(finish_step(s, *in_flight_));
      }
      in_flight_.reset();
      if (!out.scheduled.empty()) in_flight_ = std::move(out);
    } else {
      ASSERT_NO_FATAL_FAILURE(finish_step(s, out));
    }
  }

  void check_scheduled(Scheduler& s, const SchedulerOutput& out) {
    const int32_t bs = cfg_.block_size;
    int64_t total = 0;
    std::set<uint64_t> ids;
    ASSERT_LE(static_cast<int32_t>(out.scheduled.size()), cfg_.max_num_seqs);
    ASSERT_LE(s.stats().num_running, cfg_.max_num_seqs);
    for (const ScheduledRequest& sr : out.scheduled) {
      ASSERT_TRUE(ids.insert(sr.id).second) << "scheduled twice in one step";
      ASSERT_GE(sr.num_tokens, 1);
      total += sr.num_tokens;
      const SchedRequest* r = s.find(sr.id);
      ASSERT_NE(r, nullptr);
      ASSERT_EQ(r->status, SchedStatus::kRunning);
      ASSERT_EQ(sr.start + sr.num_tokens, r->num_computed_tokens);
      const int64_t end = sr.start + sr.num_tokens;
      // (tokens still pending from an earlier step exist; their values are token_at's)
      const int64_t pending_before = r->num_pending_tokens - (sr.wants_logits ? 1 : 0);
      ASSERT_GE(pending_before, 0);
      ASSERT_LE(pending_before, async_ ? 1 : 0);
      const int64_t known = static_cast<int64_t>(r->tokens.size()) + pending_before;
      ASSERT_LE(end, static_cast<int64_t>(r->blocks.ids.size()) * bs) << "no slot for a scheduled token";
      ASSERT_LE(end, int64_t{r->num_prompt_tokens} + r->max_tokens - 1);
      ASSERT_EQ(sr.wants_logits, end >= known);
      cov_->chunks += !sr.wants_logits;
      const std::vector<uint64_t> e = expected_kv(*r, end);
      for (int64_t p = 0; p < end; ++p) {
        const int32_t block = r->blocks.ids[p / bs];
        uint64_t& slot = kv_[static_cast<size_t>(block) * bs + p % bs];
        if (p < sr.start) {
          ASSERT_EQ(slot, e[p]) << "request " << sr.id << " attends to wrong KV at position " << p << " (block "
                                << block << ")";
        } else {
          ASSERT_EQ(s.block_manager().ref_count(block), 1) << "write into a shared block";
          ASSERT_FALSE(s.block_manager().is_cached(block)) << "write into a cached block";
          slot = e[p];
        }
      }
      if (sr.wants_logits) cov_->drafts += std::max<int64_t>(0, end - known);
    }
    ASSERT_EQ(total, out.num_tokens);
    ASSERT_LE(total, cfg_.max_num_batched_tokens);
    for (uint64_t id : out.preempted) {
      ASSERT_EQ(ids.count(id), 0u) << "a preempted request was scheduled";
      ASSERT_EQ(s.find(id)->status, SchedStatus::kWaiting);
      cov_->preempted_pending += s.find(id)->num_pending_tokens > 0;
    }
    ASSERT_EQ(s.check_invariants(), "");
  }

  void finish_step(Scheduler& s, const SchedulerOutput& out) {
    std::vector<std::pair<uint64_t, int32_t>> sampled;
    for (const ScheduledRequest& sr : out.scheduled) {
      const SchedRequest* r = s.find(sr.id);
      if (!sr.wants_logits || r == nullptr) continue;
      // Speculative: accept a random number of the drafts, then one more token.
      const int64_t known = static_cast<int64_t>(r->tokens.size());
      const int64_t drafts = std::max<int64_t>(0, sr.start + sr.num_tokens - known);
      int64_t count = 1 + (drafts > 0 ? uniform(0, static_cast<int32_t>(drafts)) : 0);
      count = std::min<int64_t>(count, r->max_tokens - r->num_output_tokens());
      for (int64_t k = 0; k < count; ++k) sampled.emplace_back(sr.id, token_at(sr.id, known + k));
    }
    for (const FinishedRequest& f : s.update(out, sampled)) {
      ASSERT_EQ(f.reason, FinishReason::kLength);
      ASSERT_EQ(f.num_output_tokens, live_.at(f.id).max_tokens);
      ASSERT_EQ(s.find(f.id), nullptr);
      mark_done(f.id);
    }
    for (const ScheduledRequest& sr : out.scheduled) {
      const SchedRequest* r = s.find(sr.id);
      if (r == nullptr) continue;
      for (size_t p = r->num_prompt_tokens; p < r->tokens.size(); ++p) {
        ASSERT_EQ(r->tokens[p], token_at(r->id, static_cast<int64_t>(p)));
      }
      if (sr.wants_logits && r->tokens.back() == 0) {  // the engine's stop-token rule
        ASSERT_TRUE(s.finish(r->id, FinishReason::kStop));
        mark_done(sr.id);
        ++cov_->stops;
      }
    }
    // Rollback returns the blocks taken for rejected lookahead: a speculating request keeps only what its
    // known tokens need.
    for (const ScheduledRequest& sr : out.scheduled) {
      const SchedRequest* r = s.find(sr.id);
      if (r == nullptr || r->num_lookahead_tokens == 0 || r->status != SchedStatus::kRunning) continue;
      const int64_t need = static_cast<int64_t>(r->tokens.size()) + r->num_pending_tokens;
      ASSERT_LE(static_cast<int64_t>(r->blocks.ids.size()), (need + cfg_.block_size - 1) / cfg_.block_size)
          << "request " << r->id << " kept lookahead blocks after its update";
    }
    ASSERT_EQ(s.check_invariants(), "");
  }

  std::vector<int32_t> random_tokens(int32_t n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = uniform(1, 6);  // small alphabet: accidental matches happen
    return t;
  }
  int32_t uniform(int32_t lo, int32_t hi) { return std::uniform_int_distribution<int32_t>(lo, hi)(rng_); }
  template <class T>
  T pick(std::initializer_list<T> v) {
    return *(v.begin() + uniform(0, static_cast<int32_t>(v.size()) - 1));
  }
  std::string describe() const {
    return "[bs " + std::to_string(cfg_.block_size) + " blocks " + std::to_string(cfg_.num_blocks) + " budget " +
           std::to_string(cfg_.max_num_batched_tokens) + " seqs " + std::to_string(cfg_.max_num_seqs) + " len " +
           std::to_string(cfg_.max_model_len) + " chunked " + std::to_string(cfg_.enable_chunked_prefill) +
           " caching " + std::to_string(cfg_.enable_prefix_caching) + " policy " + std::to_string(cfg_.policy) + "]";
  }

  Coverage* cov_ = nullptr;
  std::mt19937_64 rng_;
  SchedulerConfig cfg_;
  std::vector<Planned> planned_;
  std::unordered_map<uint64_t, Live> live_;
  std::vector<uint64_t> live_ids_;
  std::vector<uint64_t> kv_;
  bool async_ = false;
  bool lookahead_ = false;  // speculative: a per-step lookahead is set before each schedule
  std::optional<SchedulerOutput> in_flight_;  // async: scheduled, its update not applied yet
};

TEST(SchedulerProperty, RandomWorkloadsKeepEveryInvariant) {
  Coverage cov;
  for (uint64_t seed = 1; seed <= 4000; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Workload w(seed);
    w.run(&cov);
    if (::testing::Test::HasFatalFailure() || ::testing::Test::HasNonfatalFailure()) break;
  }
  std::printf("coverage: %lld preemptions, %lld prefix-hit tokens, %lld rejected, %lld aborts, %lld stops, "
              "%lld draft tokens, %lld mid-prefill chunks, %lld async steps, %lld preempted with a token pending\n",
              static_cast<long long>(cov.preemptions), static_cast<long long>(cov.prefix_hit_tokens),
              static_cast<long long>(cov.rejected), static_cast<long long>(cov.aborts),
              static_cast<long long>(cov.stops), static_cast<long long>(cov.drafts),
              static_cast<long long>(cov.chunks), static_cast<long long>(cov.async_steps), static_cast<long long>(cov.preempted_pending));
  EXPECT_GT(cov.preemptions, 0);
  EXPECT_GT(cov.prefix_hit_tokens, 0);
  EXPECT_GT(cov.rejected, 0);
  EXPECT_GT(cov.aborts, 0);
  EXPECT_GT(cov.stops, 0);
  EXPECT_GT(cov.drafts, 0);
  EXPECT_GT(cov.chunks, 0);
  EXPECT_GT(cov.async_steps, 0);
  EXPECT_GT(cov.preempted_pending, 0);
}

}  // namespace
}  // namespace ember
