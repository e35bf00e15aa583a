#include "engine/parallel/thread_group.h"

#include <algorithm>

namespace ember {

class ThreadGroup::Rank final : public Communicator {
 public:
  Rank(ThreadGroup& group, int rank) : g_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.size_; }

  void all_reduce_sum(float* data, int64_t n) override {
    const int size = g_.size_;
    if (size == 1) return;
    g_.buffers_[static_cast<size_t>(rank_)] = data;
    g_.barrier_.arrive_and_wait();  // every buffer published
    // Slice rank_ of the elements is this rank's to sum and write back: the
    // slices are disjoint, so no element is read by one rank while another writes it.
    const int64_t begin = n * rank_ / size, end = n * (rank_ + 1) / size;
    // In tiles, summed in rank order into a local tile (so the loops vectorize
    // and every element sums the same way whoever owns it), then copied out.
    constexpr int64_t kTile = 2048;
    float tile[kTile];
    float* const* bufs = g_.buffers_.data();
    for (int64_t i = begin; i < end; i += kTile) {
      const int64_t len = std::min(kTile, end - i);
      std::copy(bufs[0] + i, bufs[0] + i + len, tile);
      for (int r = 1; r < size; ++r) {
        const float* src = bufs[r] + i;
        for (int64_t j = 0; j < len; ++j) tile[j] += src[j];
      }
      for (int r = 0; r < size; ++r) std::copy(tile, tile + len, bufs[r] + i);
    }
    g_.barrier_.arrive_and_wait();  // every slice written before anyone reads its buffer
  }

  void all_gather(const float* data, int64_t n, float* out) override {
    const int size = g_.size_;
    if (size == 1) {
      std::copy(data, data + n, out);
      return;
    }
    g_.buffers_[static_cast<size_t>(rank_)] = const_cast<float*>(data);  // (only read)
    g_.barrier_.arrive_and_wait();                                       // every buffer published
    for (int r = 0; r < size; ++r)
      std::copy(g_.buffers_[static_cast<size_t>(r)], g_.buffers_[static_cast<size_t>(r)] + n, out + r * n);
    g_.barrier_.arrive_and_wait();  // every rank done reading before any buffer changes
  }

 private:
  ThreadGroup& g_;
  const int rank_;
};

ThreadGroup::ThreadGroup(int size)
    : size_(std::max(size, 1)), buffers_(static_cast<size_t>(size_), nullptr), barrier_(size_) {
  for (int r = 0; r < size_; ++r) comms_.push_back(std::make_unique<Rank>(*this, r));
  for (int r = 1; r < size_; ++r) workers_.emplace_back([this, r] { worker(r); });
}

ThreadGroup::~ThreadGroup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadGroup::run(const std::function<void(int)>& fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    pending_ = size_ - 1;
    ++generation_;
  }
  start_cv_.notify_all();
  fn(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadGroup::worker(int rank) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(rank);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --pending_;
    }
    done_cv_.notify_one();
  }
}

}  // namespace ember
