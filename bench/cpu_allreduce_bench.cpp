// The time of one tensor-parallel all-reduce on the CPU, for decode- and
// prefill-sized messages (tokens x hidden floats), beside a reference measured
// in the same run: one thread summing the ranks' buffers in place (the work an
// all-reduce cannot avoid, without any synchronization).
//   cpu_allreduce_bench                  ranks as threads (ThreadGroup), 2 and 4 ranks
//   mpirun -np N cpu_allreduce_bench     ranks as processes (MpiGroup)
// One JSON line per (transport, ranks, floats).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "engine/parallel/mpi_group.h"
#include "engine/parallel/thread_group.h"

namespace ember {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kSizes[] = {576, 4096, 8 * 4096, 64 * 4096, 512 * 4096};

int reps_for(int64_t n) { return static_cast<int>(std::clamp<int64_t>(int64_t{20'000'000} / (n + 1000), 20, 20000)); }

// One thread summing `ranks` buffers of n floats into the first: microseconds a call.
double reference_us(int ranks, int64_t n) {
  std::vector<std::vector<float>> bufs(static_cast<size_t>(ranks), std::vector<float>(static_cast<size_t>(n), 1.0f));
  const int reps = reps_for(n);
  const auto t0 = Clock::now();
  for (int k = 0; k < reps; ++k)
    for (int r = 1; r < ranks; ++r)
      for (int64_t i = 0; i < n; ++i) bufs[0][static_cast<size_t>(i)] += bufs[static_cast<size_t>(r)][static_cast<size_t>(i)];
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / reps;
  if (bufs[0][0] == 0.0f) std::printf("#\n");  // keeps the loop
  return us;
}

void print(const char* transport, int ranks, int64_t n, double us, double ref) {
  std::printf("{\"name\": \"cpu_allreduce\", \"transport\": \"%s\", \"ranks\": %d, \"floats\": %lld, \"us\": %.2f, "
              "\"reference_sum_us\": %.2f, \"ratio_to_reference\": %.2f}\n",
              transport, ranks, static_cast<long long>(n), us, ref, us / ref);
  std::fflush(stdout);
}

void threads() {
  for (int ranks : {2, 4}) {
    ThreadGroup group(ranks);
    for (int64_t n : kSizes) {
      std::vector<std::vector<float>> bufs(static_cast<size_t>(ranks), std::vector<float>(static_cast<size_t>(n), 1.0f));
      const int reps = reps_for(n);
      double us = 0;
      group.run([&](int rank) {
        Communicator& c = group.communicator(rank);
        c.all_reduce_sum(bufs[static_cast<size_t>(rank)].data(), n);  // warm-up
        const auto t0 = Clock::now();
        for (int k = 0; k < reps; ++k) c.all_reduce_sum(bufs[static_cast<size_t>(rank)].data(), n);
        if (rank == 0) us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / reps;
      });
      print("threads", ranks, n, us, reference_us(ranks, n));
    }
  }
}

int mpi(MpiGroup& group) {
  Communicator& c = group.communicator();
  for (int64_t n : kSizes) {
    std::vector<float> buf(static_cast<size_t>(n), 1.0f);
    const int reps = reps_for(n);
    c.all_reduce_sum(buf.data(), n);
    const auto t0 = Clock::now();
    for (int k = 0; k < reps; ++k) c.all_reduce_sum(buf.data(), n);
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / reps;
    if (group.rank() == 0) print("mpi", group.size(), n, us, reference_us(group.size(), n));
  }
  return 0;
}

}  // namespace
}  // namespace ember

int main() {
  auto group = ember::MpiGroup::from_launcher();
  if (!group) {
    std::fprintf(stderr, "%s\n", group.error().message.c_str());
    return 1;
  }
  if (*group) return ember::mpi(**group);
  ember::threads();
  return 0;
}
