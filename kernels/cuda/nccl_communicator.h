#pragma once
// Tensor-parallel collectives between the GPUs of one process through NCCL:
// one communicator per device (ncclCommInitAll), rank r on devices[r]. The
// all-reduce is enqueued on the caller's stream, so CUDA graphs capture it.
// A failed collective ends the process with a message: the other ranks could
// only wait on it forever.
// Built when CMake finds NCCL (it ships with the CUDA toolkit here); without
// it create_all() says so.

#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/communicator.h"

namespace ember {

class NcclCommunicator final : public Communicator {
 public:
  static Result<std::vector<std::unique_ptr<NcclCommunicator>>> create_all(const std::vector<int>& devices);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Device float32 on the default stream (tests, benchmarks).
  void all_reduce_sum(float* data, int64_t n) override;
  // A bf16 or float32 device tensor, in place, on `stream`.
  void all_reduce(Tensor& x, void* stream) override;

 private:
  NcclCommunicator(void* comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  void* comm_;  // ncclComm_t
  int rank_, size_;
};

// Whether this ember was built with NCCL.
bool nccl_available();

}  // namespace ember
