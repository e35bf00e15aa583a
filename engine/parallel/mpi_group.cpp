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

 private:
  int rank_, size_;
};

// A step's inputs on the wire: a header of sizes, then the int32 arrays, then the slots.
enum : int64_t { kStop = 0, kStep = 1 };
constexpr int kHeader = 8;
#endif

}  // namespace

MpiGroup::MpiGroup(int rank, int size) : rank_(rank), size_(size) {
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
  return std::unique_ptr<MpiGroup>(new MpiGroup(rank, size));
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
  int64_t header[kHeader] = {kStop};
  MPI_Bcast(header, kHeader, MPI_INT64_T, 0, MPI_COMM_WORLD);
#endif
}

void MpiGroup::broadcast_step(const ForwardInputs& in) {
#ifdef EMBER_HAVE_MPI
  int64_t header[kHeader] = {kStep,
                             static_cast<int64_t>(in.token_ids.size()),
                             static_cast<int64_t>(in.query_start_loc.size()),
                             static_cast<int64_t>(in.seq_lens.size()),
                             static_cast<int64_t>(in.block_tables.size()),
                             in.max_blocks_per_seq,
                             static_cast<int64_t>(in.logits_indices.size()),
                             0};
  MPI_Bcast(header, kHeader, MPI_INT64_T, 0, MPI_COMM_WORLD);
  std::vector<int32_t> ints;
  ints.reserve(static_cast<size_t>(2 * header[1] + header[2] + header[3] + header[4] + header[6]));
  for (const std::vector<int32_t>* v :
       {&in.token_ids, &in.positions, &in.query_start_loc, &in.seq_lens, &in.block_tables, &in.logits_indices})
    ints.insert(ints.end(), v->begin(), v->end());
  MPI_Bcast(ints.data(), static_cast<int>(ints.size()), MPI_INT32_T, 0, MPI_COMM_WORLD);
  MPI_Bcast(const_cast<int64_t*>(in.slot_mapping.data()), static_cast<int>(in.slot_mapping.size()), MPI_INT64_T, 0,
            MPI_COMM_WORLD);
#else
  (void)in;
#endif
}

bool MpiGroup::receive_step(ForwardInputs& in) {
#ifdef EMBER_HAVE_MPI
  int64_t header[kHeader] = {};
  MPI_Bcast(header, kHeader, MPI_INT64_T, 0, MPI_COMM_WORLD);
  if (header[0] != kStep) return false;
  const auto n = [&](int i) { return static_cast<size_t>(header[i]); };
  std::vector<int32_t> ints(2 * n(1) + n(2) + n(3) + n(4) + n(6));
  MPI_Bcast(ints.data(), static_cast<int>(ints.size()), MPI_INT32_T, 0, MPI_COMM_WORLD);
  const int32_t* p = ints.data();
  const auto take = [&p](std::vector<int32_t>& v, size_t count) {
    v.assign(p, p + count);
    p += count;
  };
  take(in.token_ids, n(1));
  take(in.positions, n(1));
  take(in.query_start_loc, n(2));
  take(in.seq_lens, n(3));
  take(in.block_tables, n(4));
  take(in.logits_indices, n(6));
  in.max_blocks_per_seq = static_cast<int32_t>(header[5]);
  in.slot_mapping.resize(n(1));
  MPI_Bcast(in.slot_mapping.data(), static_cast<int>(n(1)), MPI_INT64_T, 0, MPI_COMM_WORLD);
  return true;
#else
  (void)in;
  return false;
#endif
}

}  // namespace ember
