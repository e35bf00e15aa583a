// The metric math of `ember bench`, against values computed by hand (and
// numpy's percentile/std conventions, which vLLM's benchmark uses).

#include <gtest/gtest.h>

#include "loadgen/metrics.h"
#include "loadgen/stats.h"

namespace ember {
namespace {

TEST(LoadgenStats, PercentileInterpolatesLikeNumpy) {
  // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100]) = [1, 1.75, 2.5, 3.7, 4]
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 25), 1.75);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);
  EXPECT_NEAR(percentile(v, 90), 3.7, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4);
  // numpy.percentile([10, 20, 30, 40, 50], 99) = 49.6
  EXPECT_NEAR(percentile({10, 20, 30, 40, 50}, 99), 49.6, 1e-12);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
}

TEST(LoadgenStats, MeanAndPopulationStd) {
  // numpy.std([2, 4, 4, 4, 5, 5, 7, 9]) = 2.0 (ddof=0), mean 5.
  const std::vector<double> v = {2, 4, 4, 4, 5, 5, 7, 9};
  EXPECT_DOUBLE_EQ(mean_of(v), 5);
  EXPECT_DOUBLE_EQ(stddev_of(v), 2);
  const Distribution d = summarize(v, {50, 90});
  EXPECT_DOUBLE_EQ(d.median, 4.5);
  EXPECT_DOUBLE_EQ(d.min, 2);
  EXPECT_DOUBLE_EQ(d.max, 9);
  ASSERT_EQ(d.percentiles.size(), 2u);
  // rank 0.9 * 7 = 6.3: 7 + 0.3 * (9 - 7) = 7.6
  EXPECT_NEAR(d.percentiles[1].second, 7.6, 1e-12);
  EXPECT_EQ(d.count, 8u);
}

RequestRecord ok(double start, double ttft, double latency, int64_t out, int64_t in, std::vector<double> itl) {
  RequestRecord r;
  r.success = true;
  r.usage_from_server = true;
  r.start_s = start;
  r.ttft_s = ttft;
  r.latency_s = latency;
  r.output_tokens = out;
  r.prompt_tokens = in;
  r.itl_s = std::move(itl);
  r.content_chunks = static_cast<int64_t>(r.itl_s.size()) + 1;
  return r;
}

TEST(LoadgenMetrics, TpotExcludesTheFirstToken) {
  // (1.0 - 0.1) / (10 - 1) = 0.1 s
  EXPECT_NEAR(tpot_of(ok(0, 0.1, 1.0, 10, 5, {})), 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(tpot_of(ok(0, 0.1, 1.0, 1, 5, {})), 0);
  EXPECT_DOUBLE_EQ(tpot_of(ok(0, 0.1, 1.0, 0, 5, {})), 0);
}

TEST(LoadgenMetrics, AggregatesOverCompletedRequests) {
  std::vector<RequestRecord> recs = {
      ok(0.0, 0.2, 1.0, 5, 10, {0.2, 0.2, 0.2, 0.2}),  // TPOT 0.8/4 = 0.2
      ok(0.5, 0.4, 2.0, 9, 20, {0.2, 0.2}),            // TPOT 1.6/8 = 0.2
      ok(1.0, 0.1, 0.5, 1, 30, {}),                    // one token: no TPOT
  };
  RequestRecord bad;
  bad.error = "HTTP 503: overloaded";
  bad.start_s = 1.5;
  bad.latency_s = 0.01;
  recs.push_back(bad);
  const BenchMetrics m = compute_metrics(recs, 4.0, {50, 99}, GoodputSlo{});
  EXPECT_EQ(m.num_requests, 4);
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 1);
  EXPECT_EQ(m.failure_reasons.at("HTTP 503: overloaded"), 1);
  EXPECT_EQ(m.total_input_tokens, 60);
  EXPECT_EQ(m.total_output_tokens, 15);
  EXPECT_DOUBLE_EQ(m.request_throughput, 0.75);
  EXPECT_DOUBLE_EQ(m.output_throughput, 3.75);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 18.75);
  EXPECT_NEAR(m.ttft_ms.mean, (200 + 400 + 100) / 3.0, 1e-9);
  EXPECT_NEAR(m.ttft_ms.median, 200, 1e-9);
  EXPECT_EQ(m.tpot_ms.count, 2u);
  EXPECT_NEAR(m.tpot_ms.mean, 200, 1e-9);
  EXPECT_EQ(m.itl_ms.count, 6u);  // ITLs of all requests pooled
  EXPECT_NEAR(m.itl_ms.mean, 200, 1e-9);
  EXPECT_NEAR(m.e2el_ms.mean, 3500 / 3.0, 1e-9);
  EXPECT_NEAR(m.e2el_ms.percentiles[1].second, 1000 + (2000 - 1000) * 0.98, 1e-9);
  EXPECT_TRUE(m.usage_from_server);
  // [0, 1), [0.5, 2.5), [1, 1.5), [1.5, 1.51): the first ends as the third
  // starts and the third as the fourth starts, so never more than two are open.
  EXPECT_EQ(m.peak_concurrency, 2);
  EXPECT_DOUBLE_EQ(m.request_goodput, 0);
}

TEST(LoadgenMetrics, GoodputCountsRequestsMeetingEverySlo) {
  const std::vector<RequestRecord> recs = {
      ok(0, 0.10, 1.0, 10, 1, {}),  // TTFT 100 ms, TPOT 100 ms, E2E 1000 ms
      ok(0, 0.30, 1.2, 10, 1, {}),  // TTFT 300 ms: misses ttft:200
      ok(0, 0.05, 2.0, 10, 1, {}),  // TPOT 216.7 ms: misses tpot:150
      ok(0, 0.15, 0.2, 1, 1, {}),   // one token: TPOT 0 meets any TPOT SLO
  };
  auto slo = parse_goodput({"ttft:200", "tpot:150"});
  ASSERT_TRUE(slo.ok()) << slo.error().message;
  const BenchMetrics m = compute_metrics(recs, 2.0, {99}, *slo);
  EXPECT_EQ(m.good_requests, 2);
  EXPECT_DOUBLE_EQ(m.request_goodput, 1.0);
  auto e2e = parse_goodput({"e2el:1000"});
  ASSERT_TRUE(e2e.ok());
  EXPECT_EQ(compute_metrics(recs, 2.0, {99}, *e2e).good_requests, 2);  // 1000 and 200 ms
}

TEST(LoadgenMetrics, GoodputRejectsBadSpecs) {
  EXPECT_FALSE(parse_goodput({"ttft"}).ok());
  EXPECT_FALSE(parse_goodput({"ttft:"}).ok());
  EXPECT_FALSE(parse_goodput({"ttft:-5"}).ok());
  EXPECT_FALSE(parse_goodput({"ttft:5ms"}).ok());
  EXPECT_FALSE(parse_goodput({"latency:5"}).ok());
  EXPECT_FALSE(parse_goodput({}).value().any());
}

TEST(LoadgenMetrics, UsageFallbackIsFlagged) {
  RequestRecord r = ok(0, 0.1, 0.5, 3, 4, {0.1, 0.1});
  r.usage_from_server = false;
  EXPECT_FALSE(compute_metrics({r}, 1.0, {}, GoodputSlo{}).usage_from_server);
}

TEST(LoadgenMetrics, PeakConcurrencyHandsSlotsOver) {
  // Back-to-back requests (one ends as the next starts) never overlap.
  std::vector<RequestRecord> recs = {ok(0, 0.1, 1, 2, 1, {}), ok(1, 0.1, 1, 2, 1, {}), ok(2, 0.1, 1, 2, 1, {})};
  EXPECT_EQ(peak_concurrency_of(recs), 1);
  recs.push_back(ok(0.5, 0.1, 2, 2, 1, {}));
  EXPECT_EQ(peak_concurrency_of(recs), 2);
}

TEST(LoadgenMetrics, TimeSeriesSpreadsTokensOverChunks) {
  // 4 tokens in 2 chunks at t = 0.5 and 1.5: 2 tokens in each 1 s bin.
  const RequestRecord r = ok(0, 0.5, 2.0, 4, 1, {1.0});
  const TimeSeries ts = time_series_of({r}, 2.0, 1.0);
  ASSERT_EQ(ts.output_tokens_per_s.size(), 2u);
  EXPECT_DOUBLE_EQ(ts.output_tokens_per_s[0], 2);
  EXPECT_DOUBLE_EQ(ts.output_tokens_per_s[1], 2);
  EXPECT_DOUBLE_EQ(ts.concurrency[0], 1);
  EXPECT_DOUBLE_EQ(ts.concurrency[1], 1);
  const TimeSeries half = time_series_of({ok(0.5, 0.1, 1.0, 1, 1, {})}, 2.0, 1.0);
  EXPECT_DOUBLE_EQ(half.concurrency[0], 0.5);
  EXPECT_DOUBLE_EQ(half.concurrency[1], 0.5);
}

}  // namespace
}  // namespace ember
