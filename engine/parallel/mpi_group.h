#pragma once
// Tensor-parallel ranks as processes started by an MPI launcher (mpirun,
// Slurm's srun): one rank per process, on one host or many. Rank 0 runs the
// scheduler, the sampler and the HTTP server; before every forward it
// broadcasts the step's inputs, and the other ranks (run_worker) run the same
// forward on their shards. The decoder's all-reduces go through MPI_Allreduce.
// Built when CMake finds MPI (Debian: libopenmpi-dev); else from_launcher()
// says so when a launcher started the process.

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/communicator.h"

namespace ember {

class MpiGroup {
 public:
  // MPI when the process was started by a launcher (its environment names a
  // world size > 1), nullptr when not; an Error when it was but this ember
  // has no MPI, or MPI fails to start.
  static Result<std::unique_ptr<MpiGroup>> from_launcher();
  ~MpiGroup();  // tells the workers to stop (rank 0), finalizes MPI
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  Communicator& communicator();

  // Rank 0: the next forward's inputs to every other rank.
  void broadcast_step(const ForwardInputs& in);
  // Ranks > 0: the next forward's inputs; false when rank 0 has stopped.
  bool receive_step(ForwardInputs& in);

 private:
  MpiGroup(int rank, int size);
  void broadcast_stop();
  int rank_ = 0, size_ = 1;
  bool stopped_ = false;
  std::unique_ptr<Communicator> comm_;
};

}  // namespace ember
