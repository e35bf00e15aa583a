#include "engine/parallel/mpi_group.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef EMBER_HAVE_MPI
// The C API only (Open MPI and MPICH would pull in their C++ bindings' libraries otherwise).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace ember {
namespace {

// The world size an MPI launcher announces in the environment (Open MPI,
// MPICH / Slurm's PMI, PMIx), or 0.
int launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(name); v != nullptr) return std::atoi(v);
  }
  return 0;
}

#ifdef EMBER_HAVE_MPI
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float* data, int64_t n) override {
    // (n stays within int: a step's hidden state, at most tokens x hidden size)
    MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
  void all_gather(const float* data, int64_t n, float* out) override {
    // (equal counts: a vocab-parallel LM head pads every rank's slice to the same width)
    MPI_Allgather(data, static_cast<int>(n), MPI_FLOAT, out, static_cast<int>(n), MPI_FLOAT, MPI_COMM_WORLD);
  }

 private:
  int rank_, size_;
};

#endif

}  // namespace

MpiGroup::MpiGroup(int rank, int size, int local_rank) : rank_(rank), size_(size), local_rank_(local_rank) {
#ifdef EMBER_HAVE_MPI
  comm_ = std::make_unique<MpiCommunicator>(rank, size);
#endif
}

Result<std::unique_ptr<MpiGroup>> MpiGroup::from_launcher() {
  const int world = launcher_world_size();
  if (world <= 1) return std::unique_ptr<MpiGroup>();
#ifdef EMBER_HAVE_MPI
  int provided = 0;
  // The engine's thread makes the calls on rank 0, one at a time.
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
    return Error{"MPI_Init_thread failed"};
  if (provided < MPI_THREAD_SERIALIZED) return Error{"this MPI cannot be called from the engine's thread"};
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // The ranks that share this host (MPI knows, whatever the launcher), in world rank order.
  MPI_Comm host;
  int local_rank = 0;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &host) != MPI_SUCCESS)
    return Error{"MPI_Comm_split_type failed"};
  MPI_Comm_rank(host, &local_rank);
  MPI_Comm_free(&host);
  return std::unique_ptr<MpiGroup>(new MpiGroup(rank, size, local_rank));
#else
  return Error{"started by an MPI launcher (world size " + std::to_string(world) +
               ") but this ember was built without MPI (install libopenmpi-dev and rebuild)"};
#endif
}

MpiGroup::~MpiGroup() {
#ifdef EMBER_HAVE_MPI
  if (rank_ == 0) broadcast_stop();
  MPI_Finalize();
#endif
}

Communicator& MpiGroup::communicator() { return *comm_; }

void MpiGroup::broadcast_stop() {
#ifdef EMBER_HAVE_MPI
  if (stopped_) return;
  stopped_ = true;
  int64_t bytes = 0;  // no step: stop
  MPI_Bcast(&bytes, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
#endif
}

void MpiGroup::broadcast_step(const ForwardInputs& in) {
#ifdef EMBER_HAVE_MPI
  std::string step = pack_step(in);
  int64_t bytes = static_cast<int64_t>(step.size());
  MPI_Bcast(&bytes, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  MPI_Bcast(step.data(), static_cast<int>(bytes), MPI_BYTE, 0, MPI_COMM_WORLD);
#else
  (void)in;
#endif
}

void MpiGroup::broadcast_bytes(std::string& bytes) {
#ifdef EMBER_HAVE_MPI
  int64_t n = static_cast<int64_t>(bytes.size());
  MPI_Bcast(&n, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  bytes.resize(static_cast<size_t>(n));
  MPI_Bcast(bytes.data(), static_cast<int>(n), MPI_BYTE, 0, MPI_COMM_WORLD);
#else
  (void)bytes;
#endif
}

bool MpiGroup::receive_step(ForwardInputs& in) {
#ifdef EMBER_HAVE_MPI
  int64_t bytes = 0;
  MPI_Bcast(&bytes, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  if (bytes <= 0) return false;
  std::string step(static_cast<size_t>(bytes), '\0');
  MPI_Bcast(step.data(), static_cast<int>(bytes), MPI_BYTE, 0, MPI_COMM_WORLD);
  if (!unpack_step(step, in)) process_group_failure("rank 0 sent a step that does not unpack");
  return true;
#else
  (void)in;
  return false;
#endif
}

}  // namespace ember
