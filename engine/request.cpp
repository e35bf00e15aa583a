#include "engine/request.h"

#include <utility>

namespace ember {

void RequestStream::push(SequenceDelta delta) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (delta.finish != FinishReason::kNone && unfinished_ > 0) --unfinished_;
    queue_.push_back(std::move(delta));
  }
  cv_.notify_all();
}

void RequestStream::fail(std::string message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::move(message);
    unfinished_ = 0;
  }
  cv_.notify_all();
}

std::vector<SequenceDelta> RequestStream::pop(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || unfinished_ == 0; });
  std::vector<SequenceDelta> out(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

bool RequestStream::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unfinished_ == 0 && queue_.empty();
}

std::optional<std::string> RequestStream::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

}  // namespace ember
