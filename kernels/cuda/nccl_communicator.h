#pragma once
// Tensor-parallel collectives between GPUs through NCCL: the GPUs of one
// process (create_all: ncclCommInitAll, rank r on devices[r]), or one GPU a
// process across processes and hosts (create_rank: ncclCommInitRank, every
// rank given the unique id rank 0 made with new_unique_id). The
// all-reduce and all-gather are enqueued on the caller's stream, so CUDA
// graphs capture them. A collective NCCL refuses to enqueue ends the process
// with a message naming the rank: the other ranks could only wait on it
// forever. One that was enqueued and then fails or hangs is the watchdog's
// (engine/parallel/collective_watchdog.h): it polls async_error() and calls
// abort().
// Built when CMake finds NCCL (it ships with the CUDA toolkit here); without
// it the factories say so.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/communicator.h"

namespace ember {

class NcclCommunicator final : public Communicator {
 public:
  static Result<std::vector<std::unique_ptr<NcclCommunicator>>> create_all(const std::vector<int>& devices);
  // Rank 0 of a group of processes: the id every rank passes to create_rank
  // (ncclGetUniqueId; opaque bytes, carried by the caller).
  static Result<std::string> new_unique_id();
  // This process's rank on the current device; returns once all `size` ranks
  // have called it with the same id.
  static Result<std::unique_ptr<NcclCommunicator>> create_rank(const std::string& unique_id, int rank, int size);
  ~NcclCommunicator() override;  // ncclCommDestroy, or nothing more after abort()

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Device float32 on the default stream (tests, benchmarks).
  void all_reduce_sum(float* data, int64_t n) override;
  void all_gather(const float* data, int64_t n, float* out) override;
  // A bf16 or float32 device tensor, in place, on `stream`.
  void all_reduce(Tensor& x, void* stream) override;
  // Float32 device tensors, on `stream`.
  void all_gather(const Tensor& x, Tensor& out, void* stream) override;

  // ncclCommGetAsyncError (with ncclGetLastError's detail): empty while healthy.
  std::string async_error() override;
  // ncclCommAbort, once: every collective in flight on this communicator returns.
  void abort() override;

 private:
  NcclCommunicator(void* comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  void* comm_;  // ncclComm_t
  int rank_, size_;
  std::atomic<bool> aborted_{false};
};

// Whether this ember was built with NCCL.
bool nccl_available();

}  // namespace ember
