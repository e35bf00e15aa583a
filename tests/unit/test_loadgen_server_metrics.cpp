// `ember bench` reads a server's speculative decoding counters from /metrics:
// ember's own text (EngineMetrics::prometheus) and vLLM's spelling parse to the
// same numbers, and the run's share is the difference of two scrapes.
#include <gtest/gtest.h>

#include "engine/metrics.h"
#include "loadgen/server_metrics.h"

namespace ember {
namespace {

TEST(LoadgenServerMetrics, ReadsEmbersSpecDecodeCounters) {
  EngineMetrics m;
  m.spec_decode_enabled = true;
  m.spec_decode_num_drafts_total = 10;
  m.spec_decode_num_draft_tokens_total = 40;
  m.spec_decode_num_accepted_tokens_total = 25;
  m.spec_decode_num_accepted_tokens_per_pos = {9, 8, 5, 3};
  auto c = parse_spec_decode_counters(m.prometheus("m"));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->num_drafts, 10);
  EXPECT_EQ(c->num_draft_tokens, 40);
  EXPECT_EQ(c->num_accepted_tokens, 25);
  EXPECT_EQ(c->accepted_per_pos, (std::vector<double>{9, 8, 5, 3}));
  EXPECT_DOUBLE_EQ(c->acceptance_rate(), 25.0 / 40);
  EXPECT_DOUBLE_EQ(c->mean_acceptance_length(), 1 + 25.0 / 10);

  EngineMetrics off;  // speculation off: no counters, nothing to report
  EXPECT_FALSE(parse_spec_decode_counters(off.prometheus("m")));
}

TEST(LoadgenServerMetrics, ReadsVllmsSpellingAndTakesTheDifference) {
  const char* before = R"(# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 4.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 12.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 6.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 4.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 2.0
vllm:num_requests_running{engine="0",model_name="m"} 3.0
)";
  const char* after = R"(vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 14.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 42.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 13.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 10.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="2"} 7.0
)";
  auto b = parse_spec_decode_counters(before);
  auto a = parse_spec_decode_counters(after);
  ASSERT_TRUE(a && b);
  const SpecDecodeCounters d = a->minus(*b);
  EXPECT_EQ(d.num_drafts, 10);
  EXPECT_EQ(d.num_draft_tokens, 30);
  EXPECT_EQ(d.num_accepted_tokens, 24);
  EXPECT_EQ(d.accepted_per_pos, (std::vector<double>{9, 8, 7}));
  const nlohmann::json j = d.to_json();
  EXPECT_DOUBLE_EQ(j["acceptance_rate"].get<double>(), 0.8);
  EXPECT_DOUBLE_EQ(j["mean_acceptance_length"].get<double>(), 3.4);
  EXPECT_FALSE(parse_spec_decode_counters("vllm:num_requests_running 3\n# spec_decode_num_drafts_total 9\n"));
}

}  // namespace
}  // namespace ember
