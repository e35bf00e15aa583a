#pragma once
// Tensor-parallel ranks as threads of one process (the CPU backend's way):
//   ThreadGroup  N ranks: rank 0 is the calling thread, ranks 1..N-1 are
//                persistent workers; run(fn) calls fn(rank) on all N at once
//                and returns when every one has.
//   communicator(r)  rank r's Communicator: a shared-memory all-reduce. Each
//                rank publishes its buffer; rank r sums slice r over all the
//                buffers (in rank order, so every rank gets the same bits) and
//                writes it back into all of them; two barriers a call. Its
//                all-gather: each rank copies every published buffer into its
//                own output, rank order; two barriers too.
// A fn that throws or aborts takes the process down: ranks share one fate.

#include <barrier>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/communicator.h"

namespace ember {

class ThreadGroup {
 public:
  explicit ThreadGroup(int size);
  ~ThreadGroup();
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;

  int size() const { return size_; }
  Communicator& communicator(int rank) { return *comms_[static_cast<size_t>(rank)]; }
  // fn(0) on the caller, fn(r) on worker r; returns after all of them.
  void run(const std::function<void(int)>& fn);

 private:
  class Rank;
  void worker(int rank);

  const int size_;
  std::vector<std::unique_ptr<Communicator>> comms_;
  // The collectives' shared state: each rank's buffer, and the barrier.
  std::vector<float*> buffers_;
  std::barrier<> barrier_;
  // run()'s hand-off to the workers.
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ember
