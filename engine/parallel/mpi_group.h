#pragma once
// Tensor-parallel ranks as processes started by an MPI launcher (mpirun,
// Slurm's srun): one rank per process, on one host or many (process_group.h
// says who does what). Steps go out with MPI_Bcast, the decoder's all-reduces
// through MPI_Allreduce, a vocab-parallel LM head's logits through MPI_Allgather. A rank that dies ends the job: MPI's default error
// handler aborts, and the launcher ends every rank. Built when CMake finds MPI
// (Debian: libopenmpi-dev); else from_launcher() says so when a launcher
// started the process.

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "kernels/backend.h"
#include "engine/parallel/process_group.h"

namespace ember {

class MpiGroup final : public ProcessGroup {
 public:
  // MPI when the process was started by a launcher (its environment names a
  // world size > 1), nullptr when not; an Error when it was but this ember
  // has no MPI, or MPI fails to start.
  static Result<std::unique_ptr<MpiGroup>> from_launcher();
  ~MpiGroup() override;  // tells the workers to stop (rank 0), finalizes MPI
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  Communicator& communicator() override;
  void broadcast_step(const ForwardInputs& in) override;
  bool receive_step(ForwardInputs& in) override;
  void broadcast_bytes(std::string& bytes) override;
  const char* kind() const override { return "processes under MPI"; }

 private:
  MpiGroup(int rank, int size, int local_rank);
  void broadcast_stop();
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool stopped_ = false;
  std::unique_ptr<Communicator> comm_;
};

}  // namespace ember
