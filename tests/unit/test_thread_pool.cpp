// ThreadPool: every index once, whichever way the handoff goes (spinning,
// sleeping workers, a sleeping caller), many short jobs in a row (what a
// decode step does; run under TSan by scripts/test.sh), and destruction in
// either state.
#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace ember {
namespace {

void expect_covered_once(ThreadPool& pool, int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        ASSERT_LT(b, e);
        if (grain > 0) {
          ASSERT_LE(e - b, grain);
        }
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      },
      grain);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " i=" << i;
}

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int spin_us : {0, 50, ThreadPool::kDefaultSpinUs}) {
    ThreadPool pool(3, spin_us);
    for (int64_t n : {1, 2, 3, 7, 100, 1001})
      for (int64_t grain : {0, 1, 7, 5000})
        for (int rep = 0; rep < 3; ++rep) expect_covered_once(pool, n, grain);
  }
}

TEST(ThreadPool, WorkersAndCallerWakeFromSleep) {
  // A 1 us spin: the workers are asleep when each job comes, and the caller falls asleep
  // while a worker still sleeps in fn.
  ThreadPool pool(3, 1);
  const std::thread::id caller = std::this_thread::get_id();
  for (int rep = 0; rep < 20; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::atomic<int64_t> sum{0};
    pool.parallel_for(
        12,
        [&](int64_t b, int64_t e) {
          if (std::this_thread::get_id() != caller) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          for (int64_t i = b; i < e; ++i) sum += i;
        },
        1);
    ASSERT_EQ(sum.load(), 66);
  }
}

TEST(ThreadPool, ManyShortJobsInARow) {
  for (int spin_us : {0, ThreadPool::kDefaultSpinUs}) {
    ThreadPool pool(2, spin_us);
    std::vector<int64_t> out(64, 0);  // written by whichever thread claims the index: the job's end orders it
    int64_t total = 0;
    for (int job = 0; job < 5000; ++job) {
      pool.parallel_for(
          64,
          [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] += i;
          },
          4);
      total += 2016;
    }
    int64_t got = 0;
    for (int64_t v : out) got += v;
    EXPECT_EQ(got, total);
  }
}

TEST(ThreadPool, DestroyedWhileSpinningOrAsleep) {
  for (int spin_us : {0, 1, 100000}) {
    ThreadPool pool(4, spin_us);
    std::atomic<int> calls{0};
    pool.parallel_for(
        8, [&](int64_t, int64_t) { calls++; }, 1);
    if (spin_us == 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(calls.load(), 8);
  }  // ~ThreadPool joins its workers in either state
}

}  // namespace
}  // namespace ember
