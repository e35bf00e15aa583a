#include "engine/parallel/collective_watchdog.h"

#include <future>
#include <memory>

#include <spdlog/spdlog.h>

#include "engine/parallel/process_group.h"

namespace ember {
namespace {

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

CollectiveWatchdog::CollectiveWatchdog(std::vector<Communicator*> comms, double timeout_s, Failure fail, double poll_s)
    : comms_(std::move(comms)),
      timeout_(seconds(timeout_s)),
      poll_(seconds(poll_s)),
      fail_(std::move(fail)),
      started_(comms_.size()) {
  for (Communicator* c : comms_) ranks_.push_back(c->rank());
  thread_ = std::thread([this] { watch(); });
}

std::unique_ptr<CollectiveWatchdog> CollectiveWatchdog::for_startup(int rank, std::string what, double timeout_s,
                                                                    Failure fail, double poll_s) {
  std::unique_ptr<CollectiveWatchdog> dog(new CollectiveWatchdog({}, timeout_s, std::move(fail), poll_s));
  std::lock_guard<std::mutex> lock(dog->mu_);  // (its thread reads these under the lock)
  dog->ranks_ = {rank};
  dog->started_.resize(1);
  dog->what_ = std::move(what);
  return dog;
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void CollectiveWatchdog::begin(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  started_[static_cast<size_t>(rank)].push_back(Clock::now());
}

void CollectiveWatchdog::end(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& q = started_[static_cast<size_t>(rank)];
  if (!q.empty()) q.pop_front();
}

std::string CollectiveWatchdog::check(Clock::time_point now) {
  for (Communicator* c : comms_) {
    if (std::string e = c->async_error(); !e.empty())
      return "NCCL reported an error on rank " + std::to_string(c->rank()) + ": " + e;
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::string late;
  for (size_t r = 0; r < started_.size(); ++r) {
    if (started_[r].empty() || now - started_[r].front() < timeout_) continue;
    late += (late.empty() ? "" : ", ") + std::to_string(ranks_[r]);  // (a process's one rank: its group rank)
  }
  if (late.empty()) return {};
  const auto s = std::chrono::duration_cast<std::chrono::duration<double>>(timeout_).count();
  return what_ + " did not complete within " + std::to_string(static_cast<int>(s)) +
         " s (--collective-timeout) on rank(s) " + late +
         ": a rank died or hung, a GPU failed, or the link between them stalled";
}

void CollectiveWatchdog::fail(const std::string& message) {
  spdlog::critical("tensor parallelism: {}; aborting the NCCL communicators", message);
  // ncclCommAbort returns the ranks blocked in collectives; on a dead device it
  // can hang itself, so it gets a few seconds on a thread of its own.
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> aborted = done->get_future();
  std::thread([comms = comms_, done] {
    for (Communicator* c : comms) c->abort();
    done->set_value();
  }).detach();
  if (aborted.wait_for(std::chrono::seconds(10)) != std::future_status::ready)
    spdlog::critical("tensor parallelism: ncclCommAbort did not return within 10 s");
  if (fail_) {
    fail_(message);
  } else {
    process_group_failure(message);
  }
}

void CollectiveWatchdog::watch() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    wake_.wait_for(lock, poll_, [this] { return stop_; });
    if (stop_) return;
    lock.unlock();
    const std::string problem = check(Clock::now());
    if (!problem.empty()) {
      fail(problem);
      return;  // (a test's fail returns: nothing more to watch)
    }
    lock.lock();
  }
}

}  // namespace ember
