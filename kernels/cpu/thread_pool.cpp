#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ember {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Spins until done() or spin_ns have passed; true if done().
template <class Done>
bool spin_until(int64_t spin_ns, Done done) {
  if (spin_ns <= 0) return done();
  const int64_t deadline = now_ns() + spin_ns;
  for (;;) {
    for (int i = 0; i < 64; ++i) {  // (the clock costs more than a pause: read it every 64)
      if (done()) return true;
      cpu_relax();
    }
    if (now_ns() >= deadline) return done();
  }
}

int spin_us_from_env() {
  const char* s = std::getenv("EMBER_POOL_SPIN_US");
  if (s == nullptr || *s == '\0') return ThreadPool::kDefaultSpinUs;
  return std::max(0, std::atoi(s));
}

}  // namespace

ThreadPool::ThreadPool(int num_threads, int spin_us) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  spin_ns_ = int64_t{spin_us < 0 ? spin_us_from_env() : spin_us} * 1000;
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);  // spinning workers see it, then stop_
  {
    std::lock_guard<std::mutex> lk(mu_);
    start_cv_.notify_all();
  }
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_chunks() {
  const int64_t n = job_n_, grain = job_grain_;
  for (;;) {
    const int64_t begin = next_.fetch_add(grain, std::memory_order_relaxed);
    if (begin >= n) return;
    (*job_)(begin, std::min(n, begin + grain));
  }
}

uint64_t ThreadPool::wait_for_job(uint64_t seen) {
  uint64_t g = seen;
  if (spin_until(spin_ns_, [&] { return (g = generation_.load(std::memory_order_acquire)) != seen; })) return g;
  std::unique_lock<std::mutex> lk(mu_);
  sleepers_.fetch_add(1);
  while ((g = generation_.load()) == seen) start_cv_.wait(lk);
  sleepers_.fetch_sub(1);
  return g;
}

bool ThreadPool::try_join(uint64_t generation) {
  const uint64_t tag = generation & (~uint64_t{0} >> kGenShift);
  uint64_t w = join_.load(std::memory_order_relaxed);
  for (;;) {
    if ((w >> kGenShift) != tag || (w & kClosed) != 0) return false;
    // acquire: pairs with the caller's opening store, so the job's fields are visible
    if (join_.compare_exchange_weak(w, w + 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
}

void ThreadPool::leave() {
  const uint64_t w = join_.fetch_sub(1);  // (release: this worker's reads of the job come before its reuse)
  if ((w & kCountMask) == 1 && caller_waiting_.load()) {
    std::lock_guard<std::mutex> lk(mu_);
    done_cv_.notify_one();
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    seen = wait_for_job(seen);
    if (stop_.load()) return;
    if (!try_join(seen)) continue;  // the caller did it all already
    run_chunks();
    leave();
  }
}

void ThreadPool::wait_for_joined() {
  auto none_inside = [&] { return (join_.load(std::memory_order_acquire) & kCountMask) == 0; };
  if (spin_until(spin_ns_, none_inside)) return;
  std::unique_lock<std::mutex> lk(mu_);
  caller_waiting_.store(true);
  while ((join_.load() & kCountMask) != 0) done_cv_.wait(lk);
  caller_waiting_.store(false);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  const int64_t chunks = int64_t{num_threads()} * kChunksPerThread;
  if (grain <= 0) grain = std::max<int64_t>(1, (n + chunks - 1) / chunks);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call(call_mu_);
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  next_.store(0, std::memory_order_relaxed);
  const uint64_t g = generation_.load(std::memory_order_relaxed) + 1;
  join_.store(g << kGenShift, std::memory_order_release);  // open: the fields above are published
  generation_.store(g);                                    // (seq_cst: ordered before the load of sleepers_)
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    start_cv_.notify_all();
  }
  run_chunks();
  // Every range is claimed: close the job to late workers, then wait for those inside.
  if ((join_.fetch_or(kClosed) & kCountMask) != 0) wait_for_joined();
  job_ = nullptr;
}

}  // namespace ember
