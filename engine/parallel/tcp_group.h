#pragma once
// Tensor-parallel ranks as processes that meet over TCP, for launchers without
// MPI: a Kubernetes LeaderWorkerSet, or a shell on each host. Every process
// runs the same `ember serve` with --nnodes N (one rank per process) and its
// own --node-rank; rank 0 listens on --master-port, the others connect to
// --master-addr:--master-port (retrying until rank 0 is up). process_group.h
// says who does what once they have met.
//
// The links form a star on rank 0: it sends each step to every rank, and an
// all-reduce gathers every rank's floats there, sums them in rank order (the
// same bits as the thread group's) and sends the sum back; an all-gather
// likewise collects every rank's part there and sends the whole back. A rank that closes
// its connection, or a collective that has not completed within
// collective_timeout_s, ends the process with a message (process_group_failure);
// rank 0 watches its links between steps too, so a lost rank ends the server
// at once rather than at the next request.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "engine/parallel/process_group.h"

namespace ember {

struct Rendezvous {
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double join_timeout_s = 300;        // for every rank to arrive
  double collective_timeout_s = 300;  // for one all-reduce to complete
};

class TcpGroup final : public ProcessGroup {
 public:
  // Meets the other ranks; an Error when they do not all arrive in time or a
  // peer is not an ember rank of this group. nnodes 1: a group of one, which
  // meets no one (`ember` starts none: it is for tests of the multi-process path).
  static Result<std::unique_ptr<TcpGroup>> join(const Rendezvous& where);
  ~TcpGroup() override;
  TcpGroup(const TcpGroup&) = delete;
  TcpGroup& operator=(const TcpGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override;
  Communicator& communicator() override { return *comm_; }
  void broadcast_step(const ForwardInputs& in) override;
  bool receive_step(ForwardInputs& in) override;
  void broadcast_bytes(std::string& bytes) override;
  const char* kind() const override { return "processes over TCP"; }

  // The collectives behind communicator().
  void all_reduce_sum(float* data, int64_t n);
  void all_gather(const float* data, int64_t n, float* out);

 private:
  TcpGroup(int rank, int size, double collective_timeout_s);
  void watch_links();  // rank 0: ends the process when a rank's link closes
  [[noreturn]] void fail(const char* collective, const char* what, size_t rank, int io) const;

  int rank_, size_;
  double collective_timeout_s_;
  std::vector<int> links_;  // rank 0: links_[r] to rank r (links_[0] unused); others: links_[0] to rank 0
  std::unique_ptr<Communicator> comm_;
  std::vector<float> scratch_;
  std::atomic<bool> stopping_{false};
  std::thread watcher_;
};

}  // namespace ember
