// Scheduler + BlockManager cost per engine step (schedule() + update()), the CPU time the
// engine thread spends between two forwards. Goal (issue 5): <= 50 us per step with 256
// running requests and a long waiting queue; a decode step of a 135M model on an H100 takes
// a few ms, so this keeps scheduling under ~2% of a step.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "scheduler/scheduler.h"

namespace ember {
namespace {

struct Engine {
  Scheduler s;
  uint64_t next_id = 0;
  int32_t prompt_len;
  int32_t max_tokens;
  int32_t shared_prefix;  // tokens every prompt starts with (a system prompt): prefix hits
  std::vector<std::pair<uint64_t, int32_t>> sampled;

  Engine(const SchedulerConfig& c, int32_t prompt, int32_t max_out, int32_t shared)
      : s(c), prompt_len(prompt), max_tokens(max_out), shared_prefix(shared) {}

  void add_one() {
    NewRequest r;
    r.id = next_id++;
    r.prompt.resize(prompt_len);
    for (int32_t i = 0; i < prompt_len; ++i) {
      r.prompt[i] = i < shared_prefix ? i : static_cast<int32_t>((r.id * 7919 + i) % 32000);
    }
    r.max_tokens = max_tokens;
    (void)s.add(std::move(r));
  }

  // One step; finished requests are replaced so the waiting queue stays long.
  int32_t step() {
    const SchedulerOutput out = s.schedule();
    sampled.clear();
    for (const ScheduledRequest& r : out.scheduled) {
      if (r.wants_logits) sampled.emplace_back(r.id, static_cast<int32_t>((r.id + r.start) % 32000));
    }
    for (size_t i = 0, n = s.update(out, sampled).size(); i < n; ++i) add_one();
    return out.num_tokens;
  }
};

SchedulerConfig bench_config() {
  SchedulerConfig c;
  c.max_num_seqs = 256;
  c.max_num_batched_tokens = 2048;
  c.block_size = 16;
  c.num_blocks = 256 * 80;  // room for 256 requests of 1280 tokens: no preemption
  c.max_model_len = 4096;
  return c;
}

// Steady state: 256 running requests decoding, 1000 waiting.
void BM_DecodeStep256Running1000Waiting(benchmark::State& state) {
  Engine e(bench_config(), 128, 1024, 0);
  for (int i = 0; i < 256 + 1000; ++i) e.add_one();
  while (e.s.stats().num_running < 256 || e.step() != 256) e.step();  // all prefilled
  int64_t tokens = 0;
  for (auto _ : state) tokens += e.step();
  state.counters["tokens/step"] = benchmark::Counter(static_cast<double>(tokens) / state.iterations());
  state.counters["waiting"] = e.s.stats().num_waiting;
  state.counters["running"] = e.s.stats().num_running;
}
BENCHMARK(BM_DecodeStep256Running1000Waiting)->Unit(benchmark::kMicrosecond);

// Churn: short outputs, so every step admits new requests (prefix lookups and hits on a
// shared 256-token system prompt, chunked prefills mixed with decodes).
void BM_ChurnStepSharedPrefix(benchmark::State& state) {
  Engine e(bench_config(), 320, 32, 256);
  for (int i = 0; i < 256 + 1000; ++i) e.add_one();
  for (int i = 0; i < 200; ++i) e.step();
  int64_t tokens = 0;
  for (auto _ : state) tokens += e.step();
  const SchedulerStats st = e.s.stats();
  state.counters["tokens/step"] = benchmark::Counter(static_cast<double>(tokens) / state.iterations());
  state.counters["hit_rate"] = static_cast<double>(st.prefix_hits) / static_cast<double>(st.prefix_queries);
  state.counters["running"] = st.num_running;
}
BENCHMARK(BM_ChurnStepSharedPrefix)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ember

BENCHMARK_MAIN();
