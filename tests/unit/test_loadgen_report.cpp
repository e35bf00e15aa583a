// Reports of `ember bench`: --result-json keys and sums, the HTML report's
// plots, the SVG tick choice and escaping.

#include <gtest/gtest.h>

#include "loadgen/report.h"
#include "loadgen/svg_plot.h"

namespace ember {
namespace {

BenchRun sample_run() {
  BenchRun run;
  run.target.model = "m<&>";
  run.dataset = "random";
  run.num_prompts = 3;
  run.percentiles = {90, 99.9};
  for (int i = 0; i < 2; ++i) {
    RequestRecord r;
    r.index = i;
    r.success = true;
    r.usage_from_server = true;
    r.start_s = 0.1 * i;
    r.ttft_s = 0.05;
    r.latency_s = 0.5;
    r.itl_s = {0.1, 0.1};
    r.content_chunks = 3;
    r.output_tokens = 3;
    r.prompt_tokens = 10;
    run.records.push_back(r);
  }
  RequestRecord bad;
  bad.index = 2;
  bad.error = "request failed: Connection";
  run.records.push_back(bad);
  run.metrics = compute_metrics(run.records, 1.0, run.percentiles, run.slo);
  return run;
}

TEST(LoadgenReport, JsonHasVllmKeysAndConsistentSums) {
  const BenchRun run = sample_run();
  const nlohmann::json j = result_json(run);
  for (const char* key : {"completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
                          "output_throughput", "total_token_throughput", "mean_ttft_ms", "median_tpot_ms",
                          "p90_itl_ms", "p99.9_e2el_ms", "std_e2el_ms", "max_concurrent_requests", "requests",
                          "errors", "input_lens", "output_lens", "ttfts", "itls", "failure_reasons"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["total_output_tokens"], 6);
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_TRUE(j["request_goodput"].is_null());
  EXPECT_EQ(j["failure_reasons"]["request failed: Connection"], 1);
  ASSERT_EQ(j["requests"].size(), 3u);
  EXPECT_EQ(j["requests"][2]["error"], "request failed: Connection");
  EXPECT_NEAR(j["requests"][0]["tpot_s"].get<double>(), 0.225, 1e-12);
  EXPECT_EQ(percentile_key(99), "p99");
  EXPECT_EQ(percentile_key(99.9), "p99.9");
}

TEST(LoadgenReport, TextSummaryListsFailures) {
  const std::string s = summary_text(sample_run());
  EXPECT_NE(s.find("Successful requests:                      2"), std::string::npos) << s;
  EXPECT_NE(s.find("P99.9 TTFT (ms):"), std::string::npos) << s;
  EXPECT_NE(s.find("1 x request failed: Connection"), std::string::npos) << s;
}

TEST(LoadgenReport, HtmlHasEveryPlotAndEscapes) {
  const std::string h = html_report(sample_run());
  for (const char* id : {"ttft_cdf", "tpot_cdf", "latency_over_time", "throughput_over_time", "concurrency_over_time"}) {
    EXPECT_NE(h.find(std::string("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" id=\"") + id), std::string::npos) << id;
  }
  EXPECT_NE(h.find("m&lt;&amp;&gt;"), std::string::npos);
  EXPECT_EQ(h.find("m<&>"), std::string::npos);
  EXPECT_NE(h.find("<polyline"), std::string::npos);
  EXPECT_NE(h.find("<circle"), std::string::npos);
  EXPECT_EQ(h.find("<script"), std::string::npos);  // static: opens offline
}

TEST(LoadgenReport, NiceTicks) {
  EXPECT_EQ(nice_ticks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  const auto small = nice_ticks(0, 0.9, 5);
  ASSERT_EQ(small.size(), 6u);
  for (size_t i = 0; i < small.size(); ++i) EXPECT_NEAR(small[i], 0.2 * static_cast<double>(i), 1e-12);
  const auto t = nice_ticks(0, 1234, 5);
  EXPECT_EQ(t.front(), 0);
  EXPECT_GE(t.back(), 1234);
  EXPECT_EQ(t[1] - t[0], 500);  // raw step 246.8: the next of 1, 2, 5 x 100 above it
  EXPECT_EQ(t.size(), 4u);       // 0, 500, 1000, 1500
  EXPECT_FALSE(nice_ticks(5, 5).empty());
}

}  // namespace
}  // namespace ember
