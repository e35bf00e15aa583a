#pragma once
// The collectives tensor parallelism needs, behind one interface: a backend's
// all_reduce() (kernels/backend.h) calls its rank's Communicator, and a
// vocab-parallel LM head (models/llama_decoder.h) all-gathers the ranks'
// logits through it. Ranks as threads of one process over shared memory:
// engine/parallel/thread_group.h; as processes (MPI or TCP):
// engine/parallel/process_group.h; GPUs through NCCL:
// kernels/cuda/nccl_communicator.h.

#include <cstdint>
#include <string>

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
  // Every rank calls it with its own n floats; all return with `out` holding
  // size() * n floats, rank r's at [r * n, (r + 1) * n), bits as sent.
  // `out` must not overlap `data`.
  virtual void all_gather(const float* data, int64_t n, float* out) = 0;

  // The same over tensors as a backend holds them: host float32 for the CPU's
  // communicators (the defaults), device memory enqueued on `stream` (a
  // cudaStream_t) for NCCL's.
  virtual void all_reduce(Tensor& x, void* stream) {
    (void)stream;
    all_reduce_sum(x.f32(), x.numel());
  }
  // x float32 [n]; out float32 [size() * n].
  virtual void all_gather(const Tensor& x, Tensor& out, void* stream) {
    (void)stream;
    all_gather(x.f32(), x.numel(), out.f32());
  }

  // For a watchdog on another thread (engine/parallel/collective_watchdog.h).
  // A failure the communicator met in the background (NCCL's asynchronous
  // error): a message, or empty. Safe to call while a collective runs.
  virtual std::string async_error() { return {}; }
  // Ends every collective in flight so the ranks blocked in them return
  // (ncclCommAbort); the communicator is unusable afterwards. A no-op where
  // collectives cannot hang unseen (the CPU's have their own timeouts or
  // share one process's fate).
  virtual void abort() {}
};

}  // namespace ember
