#include "loadgen/runner.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "loadgen/arrival.h"

namespace ember {
namespace {

// One line, rewritten in place: done/total, in flight, failures, output tok/s.
void print_progress(int64_t done, int64_t total, int64_t in_flight, int64_t failed, int64_t tokens, double elapsed) {
  constexpr int kWidth = 30;
  const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
  std::string bar(static_cast<size_t>(filled), '=');
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "\r[%s] %lld/%lld  in flight %lld  failed %lld  %.0f tok/s  %.1f s ", bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total), static_cast<long long>(in_flight),
               static_cast<long long>(failed), elapsed > 0 ? static_cast<double>(tokens) / elapsed : 0.0, elapsed);
  std::fflush(stderr);
}

}  // namespace

Result<RunResult> run_load(const TargetOptions& target, const std::vector<BenchRequest>& requests, const RunOptions& options) {
  const auto n = static_cast<int64_t>(requests.size());
  RunResult result;
  result.records.resize(requests.size());
  if (n == 0) return result;
  int64_t workers = options.max_concurrency > 0 ? std::min(options.max_concurrency, n) : n;
  workers = std::min(workers, kMaxWorkers);
  result.workers = workers;

  std::vector<std::unique_ptr<OpenAiClient>> clients;
  for (int64_t w = 0; w < workers; ++w) {
    auto c = OpenAiClient::create(target);
    if (!c) return c.error();
    clients.push_back(std::move(c).value());
  }
  for (int64_t i = 0; i < options.num_warmups; ++i) {
    const RequestRecord r = clients[0]->send(requests[static_cast<size_t>(i % n)], BenchClock::now());
    if (!r.success) {
      ++result.warmup_failures;
      std::fprintf(stderr, "warm-up request %lld failed: %s\n", static_cast<long long>(i), r.error.c_str());
    }
  }

  const std::vector<double> arrivals = arrival_times(n, options.request_rate, options.burstiness, options.seed);
  std::atomic<int64_t> next{0}, done{0}, in_flight{0}, failed{0}, tokens{0};
  const auto start = BenchClock::now();
  std::vector<std::thread> threads;
  for (int64_t w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      OpenAiClient& client = *clients[static_cast<size_t>(w)];
      for (int64_t i; (i = next.fetch_add(1)) < n;) {
        const auto idx = static_cast<size_t>(i);
        std::this_thread::sleep_until(start + std::chrono::duration_cast<BenchClock::duration>(
                                                  std::chrono::duration<double>(arrivals[idx])));
        ++in_flight;
        RequestRecord r = client.send(requests[idx], start);
        r.scheduled_s = arrivals[idx];
        --in_flight;
        if (!r.success) ++failed;
        tokens += r.output_tokens;
        result.records[idx] = std::move(r);
        ++done;
      }
    });
  }
  // The progress line: only on a terminal, so logs and CI output stay clean.
  const bool live = options.progress && isatty(STDERR_FILENO);
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  std::thread progress;
  if (live) {
    progress = std::thread([&] {
      std::unique_lock lock(mu);
      while (!cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return finished; })) {
        const double elapsed = std::chrono::duration<double>(BenchClock::now() - start).count();
        print_progress(done, n, in_flight, failed, tokens, elapsed);
      }
    });
  }
  for (auto& t : threads) t.join();
  result.duration_s = std::chrono::duration<double>(BenchClock::now() - start).count();
  if (live) {
    {
      std::lock_guard lock(mu);
      finished = true;
    }
    cv.notify_one();
    progress.join();
    print_progress(done, n, 0, failed, tokens, result.duration_s);
    std::fputc('\n', stderr);
  }
  return result;
}

}  // namespace ember
