#include "engine/parallel/tensor_parallel_runner.h"

#include <string>

namespace ember {

Result<std::unique_ptr<TensorParallelRunner>> TensorParallelRunner::create(
    int n, const RankFactory& make, ModelConfig whole, std::vector<std::unique_ptr<Communicator>> comms,
    double collective_timeout_s) {
  if (n < 1) return Error{"tensor parallelism: no ranks"};
  std::unique_ptr<TensorParallelRunner> tp(new TensorParallelRunner());
  tp->whole_ = std::move(whole);
  tp->comms_ = std::move(comms);
  tp->group_ = std::make_unique<ThreadGroup>(n);
  tp->ranks_.resize(static_cast<size_t>(n));
  std::vector<Status> made(static_cast<size_t>(n), Status::success());
  tp->group_->run([&](int r) {
    Result<std::unique_ptr<ModelRunner>> runner = make(r);
    if (runner) {
      tp->ranks_[static_cast<size_t>(r)] = std::move(*runner);
    } else {
      made[static_cast<size_t>(r)] = runner.error();
    }
  });
  for (int r = 0; r < n; ++r)
    if (!made[static_cast<size_t>(r)].ok())
      return Error{"tensor-parallel rank " + std::to_string(r) + ": " + made[static_cast<size_t>(r)].error().message};
  for (int r = 1; r < n; ++r)
    if (tp->ranks_[static_cast<size_t>(r)]->num_blocks() != tp->ranks_.front()->num_blocks())
      return Error{"tensor-parallel ranks sized different KV pools (" +
                   std::to_string(tp->ranks_.front()->num_blocks()) + " and " +
                   std::to_string(tp->ranks_[static_cast<size_t>(r)]->num_blocks()) +
                   " blocks): give every rank the same device kind, or --num-gpu-blocks-override"};
  tp->discarded_.resize(static_cast<size_t>(n));
  tp->discarded_logits_.resize(static_cast<size_t>(n));
  if (collective_timeout_s > 0 && static_cast<int>(tp->comms_.size()) == n) {
    std::vector<Communicator*> watched;
    for (auto& c : tp->comms_) watched.push_back(c.get());
    tp->watchdog_ = std::make_unique<CollectiveWatchdog>(std::move(watched), collective_timeout_s);
  }
  return tp;
}

TensorParallelRunner::~TensorParallelRunner() {
  watchdog_.reset();
  // Each rank is torn down on its own thread (its device current there).
  if (group_) group_->run([&](int r) { ranks_[static_cast<size_t>(r)].reset(); });
}

void TensorParallelRunner::launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) {
  const size_t n = ranks_.size();
  rank_rows_.resize(n);
  rank_generators_.resize(n);
  for (size_t r = 1; r < n; ++r) {
    rank_rows_[r].assign(rows.begin(), rows.end());
    rank_generators_[r].resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].generator == nullptr) continue;
      rank_generators_[r][i] = *rows[i].generator;
      rank_rows_[r][i].generator = &rank_generators_[r][i];
    }
  }
  group_->run([&](int r) {
    if (watchdog_) watchdog_->begin(r);
    ranks_[static_cast<size_t>(r)]->launch(seqs, r == 0 ? rows : std::span<const SamplerRow>(rank_rows_[static_cast<size_t>(r)]));
  });
}

void TensorParallelRunner::collect(std::vector<SampledToken>& out) {
  group_->run([&](int r) {
    ranks_[static_cast<size_t>(r)]->collect(r == 0 ? out : discarded_[static_cast<size_t>(r)]);
    if (watchdog_) watchdog_->end(r);
  });
}

void TensorParallelRunner::forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) {
  group_->run([&](int r) {
    if (watchdog_) watchdog_->begin(r);
    ranks_[static_cast<size_t>(r)]->forward_logits(seqs, r == 0 ? logits : discarded_logits_[static_cast<size_t>(r)]);
    if (watchdog_) watchdog_->end(r);
  });
}

}  // namespace ember
