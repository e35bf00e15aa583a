#pragma once
// A small persistent pool: parallel_for covers [0, n) with ranges that the
// caller and the workers claim from a shared counter, and returns when all are
// done.
//
// A decode step hands ~150 ops of 10-100 us each to the pool, so a handoff must
// cost far less than a futex wake-up (tens of us in a VM). Between ops the
// workers spin on a generation counter, for up to spin_us, before sleeping on a
// condition variable. A worker joins a job only while the caller has not closed
// it, and the caller closes it as soon as every range is claimed: it then waits
// for the workers that joined (each holds at most one range), never for one
// that is asleep or preempted. On a busy machine the pool degrades to the
// caller doing the work alone, not to waiting on threads that do not run.
// Not re-entrant: fn must not call parallel_for on the same pool; concurrent
// callers are serialised.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ember {

class ThreadPool {
 public:
  // num_threads counts the caller; <= 0 means std::thread::hardware_concurrency().
  // spin_us < 0: $EMBER_POOL_SPIN_US if set, else kDefaultSpinUs; 0: no spinning.
  explicit ThreadPool(int num_threads, int spin_us = -1);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Calls fn(begin, end) on disjoint ranges covering [0, n), from any thread of
  // the pool, in no fixed order. Ranges hold `grain` indices (the last one
  // fewer); grain <= 0 cuts n into kChunksPerThread ranges per thread, so that
  // a thread that starts late leaves its share to the others.
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn, int64_t grain = 0);
  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Spinning past a decode step's gap between ops keeps the workers awake for a whole step.
  static constexpr int kDefaultSpinUs = 200;
  static constexpr int kChunksPerThread = 4;

 private:
  void worker_loop();
  void run_chunks();
  uint64_t wait_for_job(uint64_t seen);
  bool try_join(uint64_t generation);
  void leave();
  void wait_for_joined();

  std::vector<std::thread> workers_;
  int64_t spin_ns_ = 0;
  std::mutex call_mu_;  // one parallel_for at a time

  // The job: written by the caller before it opens join_, read by a worker that joined, unchanged until the
  // caller has seen every joined worker leave.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_grain_ = 1;

  // join_: the job's generation << kGenShift | kClosed if closed | the count of workers inside it.
  static constexpr uint64_t kClosed = uint64_t{1} << 15, kCountMask = kClosed - 1;
  static constexpr int kGenShift = 16;
  alignas(64) std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  alignas(64) std::atomic<uint64_t> join_{kClosed};
  alignas(64) std::atomic<int64_t> next_{0};  // first index not yet claimed
  // Sleeping, after the spin: workers on start_cv_ (counted in sleepers_), the caller on done_cv_
  // (caller_waiting_). Each side reads the other's flag after its own seq_cst update, so one of the two sees
  // the other.
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
};

}  // namespace ember
