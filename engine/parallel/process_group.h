#pragma once
// Tensor-parallel ranks as processes, on one host or many: what rank 0 and the
// other ranks exchange, whoever carries it. Rank 0 runs the scheduler, the
// sampler and the HTTP server; before every forward it broadcasts the step's
// inputs, and the other ranks run the same forward on their shards, meeting
// rank 0 in the decoder's all-reduces. Two carriers:
//   MpiGroup (mpi_group.h): ranks started by an MPI launcher (mpirun, srun);
//   TcpGroup (tcp_group.h): ranks started by anything (a Kubernetes
//     LeaderWorkerSet, a shell on each host) that meet at --master-addr:port.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "kernels/backend.h"
#include "kernels/communicator.h"

namespace ember {

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;  // rank 0: tells the other ranks to stop
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // This rank's index among the ranks on its host (its GPU, for GPU ranks):
  // MpiGroup asks MPI which ranks share the host; TcpGroup reads $LOCAL_RANK
  // (torchrun's name), else 0 (one rank a host).
  virtual int local_rank() const = 0;
  // This rank's all-reduce over the group (host float32).
  virtual Communicator& communicator() = 0;
  // Rank 0: the next forward's inputs to every other rank.
  virtual void broadcast_step(const ForwardInputs& in) = 0;
  // Ranks > 0: the next forward's inputs; false once rank 0 has stopped.
  virtual bool receive_step(ForwardInputs& in) = 0;
  // Rank 0's `bytes` to every rank, at start-up (ranks > 0 pass any string
  // and return holding rank 0's): the NCCL unique id. Every rank calls it at
  // the same point, outside the step loop.
  virtual void broadcast_bytes(std::string& bytes) = 0;
  // A name for logs: "processes under MPI", "processes over TCP".
  virtual const char* kind() const = 0;
};

// A step's inputs as bytes (the same on every carrier): a header of sizes,
// then the int32 arrays, then the slots. unpack_step is false on bytes that
// are not a whole step.
std::string pack_step(const ForwardInputs& in);
bool unpack_step(std::string_view bytes, ForwardInputs& in);

// Ranks > 0: runs `forward` on each of rank 0's steps until rank 0 stops (the
// loop of every worker rank, CPU or GPU).
void serve_rank_steps(ProcessGroup& group, const std::function<void(const ForwardInputs&)>& forward);

// A rank lost or a collective timed out: nothing can go on (every rank holds a
// part of every layer). Logs `what` and ends the process with status 1, so a
// supervisor restarts the whole group instead of it hanging.
[[noreturn]] void process_group_failure(const std::string& what);

}  // namespace ember
