#pragma once
// The collectives tensor parallelism needs, behind one interface: a backend's
// all_reduce() (kernels/backend.h) calls its rank's Communicator. Ranks as
// threads of one process over shared memory: engine/parallel/thread_group.h;
// as processes (MPI or TCP): engine/parallel/process_group.h; GPUs through NCCL:
// kernels/cuda/nccl_communicator.h.

#include <cstdint>

#include "kernels/backend.h"

namespace ember {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank calls it with its own n floats; all return holding the
  // elementwise sum over the ranks, bit-identical on every rank.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  // x in place, as a backend holds it: host float32 for the CPU's
  // communicators (the default), device memory enqueued on `stream` (a
  // cudaStream_t) for NCCL's.
  virtual void all_reduce(Tensor& x, void* stream) {
    (void)stream;
    all_reduce_sum(x.f32(), x.numel());
  }
};

}  // namespace ember
