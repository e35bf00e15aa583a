#pragma once
// Ends the process when tensor-parallel collectives fail or hang, instead of
// leaving it blocked forever: NCCL enqueues a collective and returns, so a
// rank that died, a GPU that fell off the bus or a stalled link shows only as
// a step that never completes (and, sometimes, an asynchronous error).
//
// The runner marks each rank's steps: begin(rank) when a step that runs
// collectives is launched, end(rank) when its results are back. A thread
// polls every `poll_s`:
//   - each communicator's async_error() (ncclCommGetAsyncError): any error
//     ends the process at once, naming the rank;
//   - each rank's oldest unfinished step: older than `timeout_s` ends the
//     process, naming the ranks whose steps did not finish.
// Ending means: log, abort() every communicator (ncclCommAbort, so no rank is
// left inside a collective; given a few seconds, it may itself hang on a dead
// device), then `fail(message)` — process_group_failure by default, which
// exits with status 1 so a supervisor restarts the server. An idle server has
// no step in flight and never times out.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/communicator.h"

namespace ember {

class CollectiveWatchdog {
 public:
  using Failure = std::function<void(const std::string& message)>;
  // comms[i] is the i-th watched rank's: begin(i), end(i); messages name comms[i]->rank() (a process
  // of a group watches its one rank). Not owned; they outlive the watchdog. fail: null
  // for process_group_failure; tests pass one that records and returns, after
  // which the watchdog stops watching.
  CollectiveWatchdog(std::vector<Communicator*> comms, double timeout_s, Failure fail = nullptr, double poll_s = 0.1);
  // Before there is a communicator: NCCL's start-up (ncclCommInitRank blocks
  // until every rank has joined, so a rank that died after the id exchange
  // would leave the others there for ever). Watches group rank `rank` as
  // watched rank 0; its timeout names `what`.
  static std::unique_ptr<CollectiveWatchdog> for_startup(int rank, std::string what, double timeout_s,
                                                         Failure fail = nullptr, double poll_s = 0.1);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  void begin(int rank);  // rank launched a step
  void end(int rank);    // rank's oldest step completed

 private:
  using Clock = std::chrono::steady_clock;
  void watch();
  // Empty while all is well; else what went wrong.
  std::string check(Clock::time_point now);
  void fail(const std::string& message);

  std::vector<Communicator*> comms_;
  std::vector<int> ranks_;  // the watched ranks' group ranks (comms_[i]->rank(), or for_startup's)
  std::string what_ = "a step's collectives";
  const Clock::duration timeout_, poll_;
  Failure fail_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<std::deque<Clock::time_point>> started_;  // per rank: its unfinished steps' launch times
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ember
