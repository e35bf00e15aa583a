// Scheduler rules, one case each: admission, chunked prefill, budget and max_num_seqs,
// prefix-cache skips, preemption (including of itself), priority, finish and lookahead.
#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <numeric>
#include <utility>
#include <vector>

namespace ember {
namespace {

SchedulerConfig small_config() {
  SchedulerConfig c;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 64;
  c.block_size = 4;
  c.num_blocks = 64;
  c.max_model_len = 256;
  return c;
}

std::vector<int32_t> prompt(int32_t n, int32_t first = 1000) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

NewRequest req(uint64_t id, int32_t prompt_len, int32_t max_tokens, int32_t first = 1000) {
  NewRequest r;
  r.id = id;
  r.prompt = prompt(prompt_len, first);
  r.max_tokens = max_tokens;
  return r;
}

const ScheduledRequest* find_in(const SchedulerOutput& out, uint64_t id) {
  for (const auto& s : out.scheduled)
    if (s.id == id) return &s;
  return nullptr;
}

// One engine step: every request that wants logits samples token 7.
struct Step {
  SchedulerOutput out;
  std::vector<FinishedRequest> finished;
};
Step step(Scheduler& s) {
  Step st;
  st.out = s.schedule();
  std::vector<std::pair<uint64_t, int32_t>> sampled;
  for (const auto& r : st.out.scheduled)
    if (r.wants_logits) sampled.emplace_back(r.id, 7);
  st.finished = s.update(st.out, sampled);
  EXPECT_EQ(s.check_invariants(), "");
  return st;
}

TEST(Scheduler, ValidateConfig) {
  EXPECT_EQ(validate(small_config()), "");
  SchedulerConfig c = small_config();
  c.num_blocks = 0;
  EXPECT_NE(validate(c), "");
  c = small_config();
  c.max_num_seqs = 0;
  EXPECT_NE(validate(c), "");
}

TEST(Scheduler, AdmissionRejectsWhatCanNeverRun) {
  SchedulerConfig c = small_config();
  c.num_blocks = 4;  // 16 tokens
  Scheduler s(c);
  EXPECT_NE(s.add(req(1, 0, 4)).error.find("empty"), std::string::npos);
  EXPECT_NE(s.add(req(1, 4, 0)).error.find("max_tokens"), std::string::npos);
  EXPECT_NE(s.add(req(1, 250, 10)).error.find("max_model_len"), std::string::npos);
  EXPECT_NE(s.add(req(1, 10, 7)).error.find("KV blocks"), std::string::npos);  // 17 tokens > 16
  EXPECT_TRUE(s.add(req(1, 10, 6)).ok());                                      // exactly 16
  EXPECT_NE(s.add(req(1, 2, 2)).error.find("already"), std::string::npos);
  EXPECT_EQ(s.num_unfinished(), 1u);

  SchedulerConfig nc = small_config();
  nc.enable_chunked_prefill = false;
  nc.max_num_batched_tokens = 16;
  Scheduler ns(nc);
  EXPECT_NE(ns.add(req(1, 12, 6)).error.find("chunked"), std::string::npos);  // 17 > 16
  EXPECT_TRUE(ns.add(req(2, 12, 5)).ok());
}

TEST(Scheduler, SingleRequestPrefillsThenDecodesToLength) {
  Scheduler s(small_config());
  ASSERT_TRUE(s.add(req(1, 10, 3)).ok());
  Step a = step(s);
  ASSERT_EQ(a.out.scheduled.size(), 1u);
  EXPECT_EQ(a.out.scheduled[0].num_tokens, 10);
  EXPECT_EQ(a.out.scheduled[0].start, 0);
  EXPECT_TRUE(a.out.scheduled[0].wants_logits);
  EXPECT_EQ(a.out.num_tokens, 10);
  EXPECT_EQ(s.find(1)->tokens.size(), 11u);
  EXPECT_EQ(s.find(1)->num_computed_tokens, 10);
  Step b = step(s);
  EXPECT_EQ(b.out.scheduled[0].num_tokens, 1);
  EXPECT_EQ(b.out.scheduled[0].start, 10);
  EXPECT_TRUE(b.finished.empty());
  Step c = step(s);
  ASSERT_EQ(c.finished.size(), 1u);
  EXPECT_EQ(c.finished[0].id, 1u);
  EXPECT_EQ(c.finished[0].reason, FinishReason::kLength);
  EXPECT_EQ(c.finished[0].num_output_tokens, 3);
  EXPECT_EQ(s.find(1), nullptr);
  EXPECT_EQ(s.block_manager().num_free_blocks(), 64);
  EXPECT_FALSE(s.has_unfinished());
}

TEST(Scheduler, ChunkedPrefillSamplesOnlyAtTheEnd) {
  SchedulerConfig c = small_config();
  c.max_num_batched_tokens = 32;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 100, 2)).ok());
  std::vector<int32_t> sizes;
  for (int i = 0; i < 4; ++i) {
    Step st = step(s);
    ASSERT_EQ(st.out.scheduled.size(), 1u);
    EXPECT_EQ(st.out.scheduled[0].start, 32 * i);
    EXPECT_EQ(st.out.scheduled[0].wants_logits, i == 3);
    sizes.push_back(st.out.scheduled[0].num_tokens);
  }
  EXPECT_EQ(sizes, (std::vector<int32_t>{32, 32, 32, 4}));
  EXPECT_EQ(s.find(1)->tokens.size(), 101u);
}

TEST(Scheduler, DecodesGoFirstAndPrefillsTakeWhatIsLeft) {
  SchedulerConfig c = small_config();
  c.max_num_batched_tokens = 16;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 8, 10)).ok());
  step(s);  // 1 prefills
  ASSERT_TRUE(s.add(req(2, 40, 2, 5000)).ok());
  Step st = step(s);
  ASSERT_EQ(st.out.scheduled.size(), 2u);
  EXPECT_EQ(st.out.scheduled[0].id, 1u);
  EXPECT_EQ(st.out.scheduled[0].num_tokens, 1);
  EXPECT_EQ(st.out.scheduled[1].id, 2u);
  EXPECT_EQ(st.out.scheduled[1].num_tokens, 15);
  EXPECT_FALSE(st.out.scheduled[1].wants_logits);
  EXPECT_EQ(st.out.num_tokens, 16);
  EXPECT_EQ(s.stats().num_scheduled_tokens, 16);
}

TEST(Scheduler, MaxNumSeqsBoundsRunning) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 2;
  Scheduler s(c);
  for (uint64_t id = 1; id <= 4; ++id) ASSERT_TRUE(s.add(req(id, 3, 5, 100 * id)).ok());
  Step st = step(s);
  EXPECT_EQ(st.out.scheduled.size(), 2u);
  EXPECT_EQ(s.stats().num_running, 2);
  EXPECT_EQ(s.stats().num_waiting, 2);
  EXPECT_EQ(s.find(3)->status, SchedStatus::kWaiting);
}

TEST(Scheduler, WithoutChunkingAPromptThatDoesNotFitWaitsInOrder) {
  SchedulerConfig c = small_config();
  c.enable_chunked_prefill = false;
  c.max_num_batched_tokens = 20;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 12, 3)).ok());
  ASSERT_TRUE(s.add(req(2, 12, 3, 2000)).ok());  // 12 > 8 left: waits whole
  ASSERT_TRUE(s.add(req(3, 2, 3, 3000)).ok());   // would fit, but does not overtake 2
  Step a = step(s);
  ASSERT_EQ(a.out.scheduled.size(), 1u);
  EXPECT_EQ(a.out.scheduled[0].id, 1u);
  Step b = step(s);  // 1 decodes (1 token), 2 now fits whole (12 <= 19), then 3 (2 <= 7)
  ASSERT_EQ(b.out.scheduled.size(), 3u);
  EXPECT_EQ(b.out.scheduled[1].id, 2u);
  EXPECT_EQ(b.out.scheduled[1].num_tokens, 12);
  EXPECT_EQ(b.out.scheduled[2].id, 3u);
}

TEST(Scheduler, PrefixHitSkipsCachedTokensButComputesTheLast) {
  Scheduler s(small_config());
  ASSERT_TRUE(s.add(req(1, 16, 1)).ok());
  step(s);  // computes and caches 4 blocks, finishes
  ASSERT_FALSE(s.has_unfinished());
  ASSERT_TRUE(s.add(req(2, 16, 1)).ok());  // identical prompt: a full hit
  Step st = step(s);
  ASSERT_EQ(st.out.scheduled.size(), 1u);
  EXPECT_EQ(st.out.scheduled[0].start, 12);
  EXPECT_EQ(st.out.scheduled[0].num_tokens, 4);  // hit is block aligned, below 16
  EXPECT_EQ(st.finished.at(0).num_cached_tokens, 12);
  NewRequest r3 = req(3, 18, 1);
  ASSERT_TRUE(s.add(r3).ok());
  Step st3 = step(s);
  EXPECT_EQ(st3.out.scheduled[0].start, 16);
  EXPECT_EQ(st3.out.scheduled[0].num_tokens, 2);
  const SchedulerStats stats = s.stats();
  EXPECT_EQ(stats.prefix_queries, 16 + 16 + 18);
  EXPECT_EQ(stats.prefix_hits, 12 + 16);
}

TEST(Scheduler, BlocksAreCachedOnlyAfterTheyAreComputed) {
  Scheduler s(small_config());
  ASSERT_TRUE(s.add(req(1, 16, 2)).ok());
  ASSERT_TRUE(s.add(req(2, 16, 2)).ok());  // same prompt, same step: no hit yet
  Step st = step(s);
  EXPECT_EQ(find_in(st.out, 2)->start, 0);
  EXPECT_EQ(find_in(st.out, 2)->num_tokens, 16);
}

TEST(Scheduler, SaltPreventsSharing) {
  Scheduler s(small_config());
  NewRequest a = req(1, 16, 1);
  a.cache_salt = "alice";
  ASSERT_TRUE(s.add(a).ok());
  step(s);
  NewRequest b = req(2, 16, 1);
  b.cache_salt = "bob";
  ASSERT_TRUE(s.add(b).ok());
  EXPECT_EQ(step(s).out.scheduled[0].start, 0);
}

TEST(Scheduler, OutOfBlocksPreemptsTheNewestWhichRecomputesLater) {
  SchedulerConfig c = small_config();
  c.num_blocks = 4;  // 16 token slots
  c.enable_prefix_caching = false;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 7, 8)).ok());
  ASSERT_TRUE(s.add(req(2, 7, 8, 2000)).ok());
  step(s);  // both prefill 7 tokens: 2 blocks each, pool full
  step(s);  // both decode position 7: still 2 blocks each
  Step st = step(s);  // 1 needs a third block: 2 (newest) is preempted
  ASSERT_EQ(st.out.preempted, (std::vector<uint64_t>{2}));
  ASSERT_EQ(st.out.scheduled.size(), 1u);
  EXPECT_EQ(st.out.scheduled[0].id, 1u);
  const SchedRequest* r2 = s.find(2);
  EXPECT_EQ(r2->status, SchedStatus::kWaiting);
  EXPECT_EQ(r2->num_computed_tokens, 0);
  EXPECT_TRUE(r2->blocks.ids.empty());
  EXPECT_EQ(r2->num_preemptions, 1);
  EXPECT_EQ(r2->tokens.size(), 9u);  // its outputs are kept and recomputed
  EXPECT_EQ(s.stats().num_preemptions, 1);
  while (s.find(1) != nullptr) step(s);
  Step back = step(s);  // 2 recomputes all 9 known tokens and samples the next
  ASSERT_EQ(back.out.scheduled.size(), 1u);
  EXPECT_EQ(back.out.scheduled[0].id, 2u);
  EXPECT_EQ(back.out.scheduled[0].num_tokens, 9);
  EXPECT_TRUE(back.out.scheduled[0].wants_logits);
  int guard = 0;
  while (s.has_unfinished() && ++guard < 100) step(s);
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.block_manager().num_free_blocks(), 4);
}

TEST(Scheduler, ARequestThatIsTheNewestPreemptsItself) {
  SchedulerConfig c = small_config();
  c.num_blocks = 4;
  c.enable_prefix_caching = false;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 5, 3)).ok());        // 2 blocks, room up to 8 tokens
  ASSERT_TRUE(s.add(req(2, 8, 4, 2000)).ok());  // 2 blocks, full
  step(s);
  Step st = step(s);  // 1 fits; 2 needs a third block and is itself the newest
  EXPECT_EQ(st.out.preempted, (std::vector<uint64_t>{2}));
  ASSERT_EQ(st.out.scheduled.size(), 1u);
  EXPECT_EQ(st.out.scheduled[0].id, 1u);
  EXPECT_EQ(s.find(2)->status, SchedStatus::kWaiting);
}

TEST(Scheduler, PreemptedRequestGoesBackAheadOfNewerOnes) {
  SchedulerConfig c = small_config();
  c.num_blocks = 4;
  c.enable_prefix_caching = false;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 7, 8)).ok());
  ASSERT_TRUE(s.add(req(2, 7, 8, 2000)).ok());
  step(s);
  ASSERT_TRUE(s.add(req(3, 2, 2, 3000)).ok());  // waits: no blocks
  step(s);
  Step st = step(s);
  ASSERT_EQ(st.out.preempted, (std::vector<uint64_t>{2}));
  // Once blocks free up, 2 is admitted before 3.
  std::vector<uint64_t> admitted;
  for (int i = 0; i < 50 && s.has_unfinished(); ++i) {
    Step x = step(s);
    for (const auto& r : x.out.scheduled)
      if (r.start == 0) admitted.push_back(r.id);
  }
  ASSERT_GE(admitted.size(), 2u);
  EXPECT_EQ(admitted[0], 2u);
  EXPECT_EQ(admitted[1], 3u);
}

TEST(Scheduler, PriorityPolicyOrdersWaitingAndChoosesVictims) {
  SchedulerConfig c = small_config();
  c.policy = SchedulerConfig::kPriority;
  c.max_num_seqs = 1;
  Scheduler s(c);
  NewRequest low = req(1, 4, 1), high = req(2, 4, 1, 2000);
  low.priority = 5;
  high.priority = -1;
  ASSERT_TRUE(s.add(low).ok());
  ASSERT_TRUE(s.add(high).ok());
  EXPECT_EQ(step(s).out.scheduled.at(0).id, 2u);

  SchedulerConfig pc = small_config();
  pc.policy = SchedulerConfig::kPriority;
  pc.num_blocks = 4;
  pc.enable_prefix_caching = false;
  Scheduler p(pc);
  NewRequest a = req(1, 7, 8), b = req(2, 7, 8, 2000);
  a.priority = 9;  // older but less important: the victim
  b.priority = 0;
  ASSERT_TRUE(p.add(a).ok());
  ASSERT_TRUE(p.add(b).ok());
  step(p);
  step(p);
  Step st = step(p);
  EXPECT_EQ(st.out.preempted, (std::vector<uint64_t>{1}));
}

TEST(Scheduler, FinishFreesBlocksForWaitingRunningAndIgnoresUnknown) {
  Scheduler s(small_config());
  ASSERT_TRUE(s.add(req(1, 10, 5)).ok());
  step(s);
  ASSERT_TRUE(s.add(req(2, 10, 5, 2000)).ok());
  EXPECT_TRUE(s.finish(1, FinishReason::kAbort));
  EXPECT_TRUE(s.finish(2, FinishReason::kStop));
  EXPECT_FALSE(s.finish(1, FinishReason::kAbort));
  EXPECT_FALSE(s.finish(42, FinishReason::kAbort));
  EXPECT_EQ(s.block_manager().num_free_blocks(), 64);
  EXPECT_EQ(s.check_invariants(), "");
  EXPECT_TRUE(s.schedule().scheduled.empty());
}

TEST(Scheduler, UpdateIgnoresRequestsFinishedAfterSchedule) {
  Scheduler s(small_config());
  ASSERT_TRUE(s.add(req(1, 10, 5)).ok());
  SchedulerOutput out = s.schedule();
  EXPECT_TRUE(s.finish(1, FinishReason::kAbort));
  EXPECT_TRUE(s.update(out, {{1, 7}}).empty());
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(Scheduler, LookaheadSchedulesDraftsAndRollsBackRejected) {
  Scheduler s(small_config());
  NewRequest r = req(1, 10, 20);
  r.num_lookahead_tokens = 3;
  ASSERT_TRUE(s.add(r).ok());
  EXPECT_EQ(step(s).out.scheduled[0].num_tokens, 10);  // prefill: no drafts
  SchedulerOutput out = s.schedule();
  ASSERT_EQ(out.scheduled[0].num_tokens, 4);  // last token + 3 drafts
  EXPECT_EQ(out.scheduled[0].start, 10);
  EXPECT_TRUE(out.scheduled[0].wants_logits);
  s.update(out, {{1, 5}, {1, 6}});  // one draft accepted + one corrected token
  EXPECT_EQ(s.find(1)->tokens.size(), 13u);
  EXPECT_EQ(s.find(1)->num_computed_tokens, 12);
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(Scheduler, LookaheadStopsAtTheLastUsefulPosition) {
  Scheduler s(small_config());
  NewRequest r = req(1, 10, 2);
  r.num_lookahead_tokens = 5;
  ASSERT_TRUE(s.add(r).ok());
  step(s);
  EXPECT_EQ(s.schedule().scheduled[0].num_tokens, 1);  // only position 10 can matter
}

TEST(Scheduler, FinishesAtMaxModelLen) {
  SchedulerConfig c = small_config();
  c.max_model_len = 12;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 10, 2)).ok());
  step(s);
  Step st = step(s);
  ASSERT_EQ(st.finished.size(), 1u);
  EXPECT_EQ(st.finished[0].reason, FinishReason::kLength);
}

TEST(Scheduler, StatsReportQueuesAndUsage) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  Scheduler s(c);
  ASSERT_TRUE(s.add(req(1, 8, 4)).ok());
  ASSERT_TRUE(s.add(req(2, 8, 4, 2000)).ok());
  step(s);
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.num_running, 1);
  EXPECT_EQ(st.num_waiting, 1);
  EXPECT_DOUBLE_EQ(st.kv_usage, 2.0 / 64.0);  // KV of 8 computed tokens: 2 blocks of 4
  EXPECT_EQ(st.num_scheduled_tokens, 8);
}

}  // namespace
}  // namespace ember
