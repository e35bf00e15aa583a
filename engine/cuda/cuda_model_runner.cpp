// CudaModelRunner: the decoder of models/ over the CUDA backend, a KV pool
// sized from what the device has left, and CUDA graphs for decode steps.
#include "engine/cuda/cuda_model_runner.h"

#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <string>

#include "engine/cuda/device_weights.h"
#include "engine/cuda/gpu_sampler.h"
#include "kernels/cuda/cuda_backend.h"
#include "engine/parallel/collective_watchdog.h"
#include "engine/parallel/process_group.h"
#include "engine/parallel/shard.h"
#include "engine/parallel/tensor_parallel_runner.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/nccl_communicator.h"
#include "models/llama_decoder.h"

namespace ember {
namespace {

// Device memory kept free beside the KV pool: CUDA graphs, cuBLAS's internal
// buffers, and the allocator's rounding.
constexpr int64_t kHeadroomBytes = int64_t{256} << 20;

// Decode batch sizes with a captured graph: powers of two to 8, then steps of
// at most 2x / 1.5x so padding wastes little.
std::vector<int32_t> graph_buckets(int32_t max_seqs) {
  std::vector<int32_t> out;
  for (int32_t b : {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512}) {
    if (b >= max_seqs) break;
    out.push_back(b);
  }
  out.push_back(max_seqs);
  return out;
}

// Verify steps (every sequence checking K proposed tokens: K + 1 tokens and
// logits each) get graphs too, for the buckets whose padded step holds at most
// this many tokens: speculation pays at small batches, where a step without a
// graph spends a fifth of its time launching kernels (H200, Llama-3-8B shape).
constexpr int32_t kMaxVerifyGraphTokens = 512;

[[noreturn]] void fatal(const std::string& what) {
  // A CUDA error is sticky: the context cannot run another kernel, so the
  // process cannot serve anything. Say why and stop.
  // stderr directly too: spdlog's stdout may be a buffered file that abort() drops.
  std::fprintf(stderr, "ember: CUDA model runner: %s\n", what.c_str());
  spdlog::critical("CUDA model runner: {}", what);
  std::abort();
}

// EMBER_CUDA_PROFILE=1: where a step's time goes, by step kind, printed to
// stderr when the runner is destroyed: host wall time inside the runner
// (preparation, launches, and the wait for the tokens), the GPU's span of the
// step (CUDA events from the inputs' upload to the tokens' copy back), and the
// GPU's idle time before the step: from the previous step's last copy to this
// step's first (what async scheduling exists to remove).
struct StepProfile {
  using Clock = std::chrono::steady_clock;
  struct Kind {
    int64_t steps = 0, tokens = 0, seqs = 0;
    double host_ms = 0, gpu_ms = 0, idle_ms = 0;
  };
  struct Open {  // launched, not finished
    std::string kind;
    int64_t tokens = 0, seqs = 0;
    double host_ms = 0;
    int slot = 0;
  };
  // Events of the outstanding steps and of the last finished one.
  static constexpr int kRing = 4;
  cudaEvent_t start[kRing] = {}, end[kRing] = {};
  std::deque<Open> open;
  std::map<std::string, Kind> kinds;
  int next = 0;
  int prev = -1;  // the last finished step's slot

  StepProfile() {
    for (int i = 0; i < kRing; ++i) {
      cudaEventCreate(&start[i]);
      cudaEventCreate(&end[i]);
    }
  }
  ~StepProfile() {
    for (int i = 0; i < kRing; ++i) {
      cudaEventDestroy(start[i]);
      cudaEventDestroy(end[i]);
    }
  }
  static double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  }
  // Before the step's first GPU work.
  void begin(std::string kind, int64_t tokens, int64_t seqs, cudaStream_t stream) {
    Open o{std::move(kind), tokens, seqs, 0.0, next};
    next = (next + 1) % kRing;
    cudaEventRecord(start[o.slot], stream);
    open.push_back(std::move(o));
  }
  // After its last GPU work was enqueued; host_ms: the host's time so far.
  void end_launch(double host_ms, cudaStream_t stream) {
    cudaEventRecord(end[open.back().slot], stream);
    open.back().host_ms += host_ms;
  }
  // Its tokens are back; host_ms: the host's time spent collecting them.
  void finish(double host_ms) {
    Open o = std::move(open.front());
    open.pop_front();
    Kind& k = kinds[o.kind];
    ++k.steps;
    k.tokens += o.tokens;
    k.seqs += o.seqs;
    k.host_ms += o.host_ms + host_ms;
    float ms = 0;
    if (cudaEventSynchronize(end[o.slot]) == cudaSuccess &&
        cudaEventElapsedTime(&ms, start[o.slot], end[o.slot]) == cudaSuccess)
      k.gpu_ms += ms;
    if (prev >= 0 && cudaEventElapsedTime(&ms, end[prev], start[o.slot]) == cudaSuccess) k.idle_ms += std::max(ms, 0.0f);
    prev = o.slot;
  }
  void report() const {
    std::fprintf(stderr,
                 "ember: CUDA step profile (host ms inside the runner, the GPU's span of each step, and the GPU's "
                 "idle ms before each step)\n");
    std::fprintf(stderr, "  %-22s %7s %9s %9s %11s %11s %11s %9s\n", "step kind", "steps", "tokens", "seqs",
                 "host ms", "gpu ms", "idle ms", "idle/step");
    for (const auto& [name, k] : kinds) {
      std::fprintf(stderr, "  %-22s %7lld %9lld %9lld %11.1f %11.1f %11.1f %9.3f\n", name.c_str(),
                   static_cast<long long>(k.steps), static_cast<long long>(k.tokens), static_cast<long long>(k.seqs),
                   k.host_ms, k.gpu_ms, k.idle_ms, k.idle_ms / static_cast<double>(k.steps));
    }
  }
};

class CudaModelRunner final : public ModelRunner {
 public:
  CudaModelRunner(std::unique_ptr<DeviceWeights> weights, std::unique_ptr<CudaBackend> backend,
                  const CudaRunnerOptions& options, int64_t max_model_len)
      : weights_(std::move(weights)),
        backend_(std::move(backend)),
        options_(options),
        max_model_len_(max_model_len),
        decoder_(weights_->views(), *backend_) {
    decoder_.set_communicator(options.communicator, backend_->stream());
  }

  ~CudaModelRunner() override {
    watchdog_.reset();
    cudaSetDevice(options_.device);
    cudaStreamSynchronize(backend_->stream());
    if (step_profile_) step_profile_->report();
    for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);
    cudaFree(kv_);
    cudaFreeHost(pinned_logits_);
  }

  Status init();

  void launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) override;
  void collect(std::vector<SampledToken>& out) override;
  void forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) override;
  const ModelConfig& config() const override { return weights_->views().config; }
  int32_t vocab_size() const override { return static_cast<int32_t>(config().vocab_size); }
  int64_t num_blocks() const override { return num_blocks_; }
  int32_t block_size() const override { return options_.block_size; }

  // A rank of a process group (make_cuda_process_group_runner): owns its
  // communicator and watchdog; `group` set on rank 0 only, which from now on
  // broadcasts each step's inputs, as built (padded to a graph's bucket), before its forward.
  void join_processes(ProcessGroup* group, std::unique_ptr<Communicator> comm,
                      std::unique_ptr<CollectiveWatchdog> watchdog) {
    processes_ = group;
    owned_comm_ = std::move(comm);
    watchdog_ = std::move(watchdog);
  }
  // KV blocks past `blocks` go unused (every rank of a group uses the smallest pool).
  void limit_blocks(int64_t blocks) { num_blocks_ = std::min(num_blocks_, blocks); }
  // Ranks > 0: one of rank 0's steps, as rank 0 runs it (the same graph, or
  // eager); the logits stay on the device.
  void run_rank_step(const ForwardInputs& in);

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    Tensor logits;  // where its replay leaves the logits
  };

  Status profile_and_allocate_kv();
  Status allocate_kv(int64_t blocks);
  Status capture_graphs();
  // A step of `b` sequences of q_len tokens each (decode: 1; verify: K + 1)
  // padded to `bucket` sequences: padding rows read block 0 and write nothing.
  void build_padded(std::span<const StepSequence> seqs, int32_t bucket, int32_t q_len);
  void fetch_logits(const Tensor& out, int64_t rows, std::vector<float>& logits);
  // Runs the step: the device logits, num_logits rows per sequence, in order.
  Tensor forward_step(std::span<const StepSequence> seqs);
  // Logits rows a step may sample: every sequence with its most rows (several
  // when it verifies proposed tokens). Buffers sized here never move, which the
  // captured graphs rely on.
  int64_t max_rows() const {
    return int64_t{std::max(options_.max_num_seqs, 1)} * std::max(options_.max_logits_per_seq, 1);
  }
  void check_backend() {
    if (Status s = backend_->status(); !s.ok()) fatal(s.error().message);
  }

  std::unique_ptr<Communicator> owned_comm_;  // a process group's rank: destroyed after the graphs that use it
  std::unique_ptr<DeviceWeights> weights_;
  std::unique_ptr<CudaBackend> backend_;
  CudaRunnerOptions options_;
  int64_t max_model_len_;
  LlamaDecoder decoder_;
  void* kv_ = nullptr;
  KvCacheView cache_;
  int64_t num_blocks_ = 0;
  std::map<std::pair<int32_t, int32_t>, Graph> graphs_;  // by (q_len, bucket)
  ForwardInputs inputs_;
  float* pinned_logits_ = nullptr;
  size_t pinned_logits_bytes_ = 0;
  std::unique_ptr<GpuSampler> sampler_;
  std::unique_ptr<StepProfile> step_profile_;  // EMBER_CUDA_PROFILE=1
  std::vector<int32_t> patch_index_, patch_row_;  // patch_previous_tokens' scratch
  std::deque<std::vector<int32_t>> launched_drafts_;  // per outstanding launch: each row's draft token or -1
  ProcessGroup* processes_ = nullptr;            // rank 0 of a process group: steps go to the other ranks
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // a process group's rank: this rank's steps, its NCCL communicator
  // Profiling (when enabled): a step begins before its first GPU work.
  void profile_begin(std::span<const StepSequence> seqs);
  // Patches the tokens of sequences with prev_row >= 0 after begin_forward().
  void patch_previous_tokens(std::span<const StepSequence> seqs);
};

void CudaModelRunner::profile_begin(std::span<const StepSequence> seqs) {
  if (!step_profile_) return;
  int64_t tokens = 0, prefill_seqs = 0;
  for (const StepSequence& s : seqs) {
    tokens += s.num_tokens;
    prefill_seqs += s.num_tokens > 1;
  }
  const int64_t b = static_cast<int64_t>(seqs.size());
  std::string kind;
  const bool verify = std::all_of(seqs.begin(), seqs.end(),
                                  [](const StepSequence& s) { return s.num_logits > 1 && s.num_logits == s.num_tokens; });
  if (verify) {
    kind = "verify";
  } else if (prefill_seqs == 0) {
    kind = b <= 4 ? "decode b<=4" : b <= 64 ? "decode b<=64" : "decode b>64";
  } else {
    kind = prefill_seqs == b ? "prefill only" : "prefill+decode";
  }
  step_profile_->begin(std::move(kind), tokens, b, backend_->stream());
}

void CudaModelRunner::patch_previous_tokens(std::span<const StepSequence> seqs) {
  patch_index_.clear();
  patch_row_.clear();
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].prev_row < 0) continue;
    patch_index_.push_back(inputs_.query_start_loc[i + 1] - 1);  // the sequence's last token
    patch_row_.push_back(seqs[i].prev_row);
  }
  if (patch_index_.empty()) return;
  if (!sampler_) fatal("a step reads sampled tokens before the sampler exists");
  // (the other processes' ranks hold no sampled tokens: their engine runs without async scheduling)
  if (processes_ != nullptr) fatal("async scheduling with tensor-parallel ranks in other processes");
  backend_->patch_token_ids(patch_index_, patch_row_, sampler_->device_tokens());
}

Status CudaModelRunner::allocate_kv(int64_t blocks) {
  const ModelConfig& c = config();
  cudaFree(kv_);
  kv_ = nullptr;
  const int64_t per_layer = blocks * options_.block_size * c.num_kv_heads * c.head_dim;
  const size_t bytes = static_cast<size_t>(per_layer) * 2 * 2 * static_cast<size_t>(c.num_layers);
  EMBER_CUDA_TRY(cudaMalloc(&kv_, bytes));
  // Finite contents everywhere: padding rows of graph replays read block 0.
  EMBER_CUDA_TRY(cudaMemset(kv_, 0, bytes));
  cache_ = KvCacheView{};
  auto* base = static_cast<uint16_t*>(kv_);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::initializer_list<int64_t> dims = {blocks, options_.block_size, c.num_kv_heads, c.head_dim};
    cache_.k.push_back(Tensor::of(base + (2 * l) * per_layer, DType::kBF16, dims));
    cache_.v.push_back(Tensor::of(base + (2 * l + 1) * per_layer, DType::kBF16, dims));
  }
  num_blocks_ = blocks;
  return Status::success();
}

// vLLM's way: run the largest step the scheduler may send, see what memory
// the activations, workspaces and libraries take, and give the rest of
// gpu_memory_utilization * total to KV blocks.
Status CudaModelRunner::profile_and_allocate_kv() {
  const ModelConfig& c = config();
  const int32_t bs = options_.block_size;
  const int64_t max_tokens = options_.max_num_batched_tokens;
  decoder_.reserve(max_tokens, max_rows());

  // A prefill step of max_tokens tokens split into sequences of at most
  // max_model_len, then a decode step of max_num_seqs sequences, over a
  // temporary cache just big enough.
  const int64_t seq_len = std::min<int64_t>(max_tokens, max_model_len_);
  const int64_t blocks_per_seq = (seq_len + bs - 1) / bs;
  // (never more sequences than a step may hold: the scheduler sends no more)
  const int64_t num_seqs = std::min<int64_t>((max_tokens + seq_len - 1) / seq_len, options_.max_num_seqs);
  EMBER_TRY_STATUS(allocate_kv(std::max<int64_t>(num_seqs * blocks_per_seq, options_.max_num_seqs)));
  std::vector<int32_t> tokens(static_cast<size_t>(seq_len), 1);
  std::vector<std::vector<int32_t>> blocks(static_cast<size_t>(num_seqs));
  std::vector<StepSequence> prefill;
  int64_t left = max_tokens;
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int64_t b = 0; b < blocks_per_seq; ++b) blocks[s].push_back(static_cast<int32_t>(s * blocks_per_seq + b));
    const int32_t n = static_cast<int32_t>(std::min(left, seq_len));
    left -= n;
    prefill.push_back({tokens, 0, n, blocks[s], 1});
  }
  std::vector<float> logits;
  forward_logits(prefill, logits);
  std::vector<int32_t> one_block(1, 0);
  std::vector<StepSequence> decode(static_cast<size_t>(options_.max_num_seqs),
                                   StepSequence{std::span<const int32_t>(tokens.data(), 1), 0, 1, one_block, 1});
  forward_logits(decode, logits);
  EMBER_CUDA_TRY(cudaDeviceSynchronize());

  int64_t blocks_total = options_.num_gpu_blocks_override;
  const ModelConfig& cfg = c;
  const int64_t per_block = 2 * cfg.num_layers * bs * cfg.num_kv_heads * cfg.head_dim * 2;
  if (blocks_total <= 0) {
    cudaFree(kv_);
    kv_ = nullptr;
    size_t free_bytes = 0, total_bytes = 0;
    EMBER_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
    const int64_t used = static_cast<int64_t>(total_bytes - free_bytes);
    const int64_t budget =
        static_cast<int64_t>(options_.gpu_memory_utilization * static_cast<double>(total_bytes)) - used -
        kHeadroomBytes;
    blocks_total = budget / per_block;
    // Never more than every sequence at full length could use.
    blocks_total = std::min<int64_t>(blocks_total, int64_t{options_.max_num_seqs} * ((max_model_len_ + bs - 1) / bs));
    spdlog::info("GPU memory: {:.2f} GiB total, {:.2f} GiB in use after the profile step (weights {:.2f} GiB), "
                 "{:.2f} GiB for the KV cache at --gpu-memory-utilization {}",
                 total_bytes / 1073741824.0, used / 1073741824.0, weights_->bytes() / 1073741824.0,
                 std::max<int64_t>(budget, 0) / 1073741824.0, options_.gpu_memory_utilization);
    if (blocks_total < 1) {
      return Error{"no GPU memory left for the KV cache after the weights and activations: raise "
                   "--gpu-memory-utilization or lower --max-num-batched-tokens"};
    }
  }
  EMBER_TRY_STATUS(allocate_kv(blocks_total));
  spdlog::info("KV cache: {} blocks of {} tokens ({:.2f} GiB): {} tokens at once, {:.1f}x concurrency at {} tokens",
               blocks_total, bs, blocks_total * per_block / 1073741824.0, blocks_total * bs,
               static_cast<double>(blocks_total * bs) / static_cast<double>(max_model_len_), max_model_len_);
  return Status::success();
}

void CudaModelRunner::build_padded(std::span<const StepSequence> seqs, int32_t bucket, int32_t q_len) {
  build_forward_inputs(seqs, options_.block_size, inputs_);
  const int32_t b = static_cast<int32_t>(seqs.size());
  const int32_t stride = inputs_.max_blocks_per_seq;
  inputs_.block_tables.resize(static_cast<size_t>(bucket) * stride, 0);
  for (int32_t i = b; i < bucket; ++i) {
    for (int32_t j = 0; j < q_len; ++j) {
      inputs_.token_ids.push_back(0);
      inputs_.positions.push_back(j);
      inputs_.slot_mapping.push_back(-1);
    }
    inputs_.query_start_loc.push_back((i + 1) * q_len);
    inputs_.seq_lens.push_back(q_len);
  }
  // Every row's logits come out (the graph's gather is fixed); the padding's
  // rows follow the wanted ones.
  const int32_t rows = bucket * q_len;
  inputs_.logits_indices.resize(static_cast<size_t>(rows));
  for (int32_t i = 0; i < rows; ++i) inputs_.logits_indices[static_cast<size_t>(i)] = i;
}

Status CudaModelRunner::capture_graphs() {
  if (options_.enforce_eager) return Status::success();
  cudaStream_t stream = backend_->stream();
  // Decode steps (q_len 1) at every bucket, verify steps (q_len K + 1) at the small ones.
  const int32_t verify_len = options_.max_logits_per_seq;
  std::vector<std::pair<int32_t, int32_t>> shapes;
  for (int32_t bucket : graph_buckets(options_.max_num_seqs)) shapes.emplace_back(1, bucket);
  if (verify_len > 1) {
    for (int32_t bucket : graph_buckets(options_.max_num_seqs))
      if (bucket * verify_len <= std::min<int64_t>(kMaxVerifyGraphTokens, options_.max_num_batched_tokens))
        shapes.emplace_back(verify_len, bucket);
  }
  std::vector<int32_t> tokens(static_cast<size_t>(std::max(verify_len, 1)), 0);
  std::vector<int32_t> block(1, 0);
  // Each decode bucket's warm-up times the cuBLASLt candidates of its GEMM
  // shapes (the graphs replay those shapes for the server's lifetime). Verify
  // steps keep the heuristic's plans, which eager steps of the same shape use
  // too: a prompt of K + 1 tokens computes the same with speculation as without.
  for (const auto& [q_len, bucket] : shapes) {
    backend_->set_gemm_autotune(q_len == 1 ? options_.max_num_seqs : 0);
    std::vector<StepSequence> seqs(static_cast<size_t>(bucket), StepSequence{tokens, 0, q_len, block, q_len});
    build_padded(seqs, bucket, q_len);
    backend_->begin_forward(inputs_);
    // Attention inside the graph must serve any context up to max_model_len.
    backend_->set_seq_len_bound(static_cast<int32_t>(max_model_len_));
    decoder_.forward(inputs_, cache_);  // warm-up outside capture (library handles, workspaces)
    EMBER_CUDA_TRY(cudaStreamSynchronize(stream));
    cudaGraph_t graph = nullptr;
    EMBER_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    const Tensor out = decoder_.forward(inputs_, cache_);
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    backend_->set_seq_len_bound(0);
    EMBER_TRY_STATUS(backend_->status());
    EMBER_CUDA_TRY(end);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    EMBER_CUDA_TRY(inst);
    graphs_[{q_len, bucket}] = Graph{exec, out};
  }
  backend_->set_gemm_autotune(0);
  EMBER_CUDA_TRY(cudaStreamSynchronize(stream));
  spdlog::info("CUDA graphs captured for decode batch sizes up to {} ({} graphs{})", options_.max_num_seqs,
               graphs_.size(),
               verify_len > 1 ? fmt::format(", verify steps of {} tokens a sequence among them", verify_len) : "");
  return Status::success();
}

Status CudaModelRunner::init() {
  EMBER_TRY_STATUS(backend_->prepare_rope(rope_config_of(config()), config().head_dim));
  EMBER_TRY_STATUS(profile_and_allocate_kv());
  EMBER_TRY_STATUS(capture_graphs());
  auto sampler = GpuSampler::create(vocab_size(), static_cast<int32_t>(max_rows()), options_.eos_token_ids);
  if (!sampler) return sampler.error();
  sampler_ = std::move(*sampler);
  // After the profile step and the graph warm-ups: only served steps count.
  // (EMBER_CUDA_PROFILE=steps: the step table alone, without per-op events)
  if (const char* env = std::getenv("EMBER_CUDA_PROFILE"); env != nullptr) {
    const std::string mode(env);
    if (mode == "1" || mode == "steps") step_profile_ = std::make_unique<StepProfile>();
    if (mode == "1") backend_->enable_op_profile();
  }
  return backend_->status();
}

void CudaModelRunner::fetch_logits(const Tensor& out, int64_t rows, std::vector<float>& logits) {
  const size_t bytes = static_cast<size_t>(rows * out.cols()) * sizeof(float);
  if (bytes > pinned_logits_bytes_) {
    cudaFreeHost(pinned_logits_);
    pinned_logits_ = nullptr;
    if (cudaMallocHost(reinterpret_cast<void**>(&pinned_logits_), bytes) != cudaSuccess) fatal("pinned logits");
    pinned_logits_bytes_ = bytes;
  }
  if (cudaMemcpyAsync(pinned_logits_, out.data, bytes, cudaMemcpyDeviceToHost, backend_->stream()) != cudaSuccess ||
      cudaStreamSynchronize(backend_->stream()) != cudaSuccess) {
    fatal("logits download failed");
  }
  logits.assign(pinned_logits_, pinned_logits_ + rows * out.cols());
}

Tensor CudaModelRunner::forward_step(std::span<const StepSequence> seqs) {
  // A step replays a graph when its sequences all take the same q_len tokens
  // and want every one's logits (a decode step, or a verify step of K + 1).
  const int32_t q_len = seqs.front().num_tokens;
  const bool uniform = std::all_of(seqs.begin(), seqs.end(), [q_len](const StepSequence& s) {
    return s.num_tokens == q_len && s.num_logits == q_len;
  });
  auto graph = uniform ? graphs_.lower_bound({q_len, static_cast<int32_t>(seqs.size())}) : graphs_.end();
  if (graph != graphs_.end() && graph->first.first != q_len) graph = graphs_.end();
  if (graph != graphs_.end()) {
    build_padded(seqs, graph->first.second, q_len);
    if (processes_ != nullptr) processes_->broadcast_step(inputs_);
    profile_begin(seqs);
    backend_->begin_forward(inputs_);
    patch_previous_tokens(seqs);
    if (cudaGraphLaunch(graph->second.exec, backend_->stream()) != cudaSuccess) fatal("graph launch failed");
    check_backend();
    // The padded rows follow the real ones.
    const Tensor& all = graph->second.logits;
    return Tensor::of(all.data, DType::kF32, {static_cast<int64_t>(seqs.size()) * q_len, all.cols()});
  }
  build_forward_inputs(seqs, options_.block_size, inputs_);
  if (processes_ != nullptr) processes_->broadcast_step(inputs_);
  profile_begin(seqs);
  backend_->begin_forward(inputs_);
  patch_previous_tokens(seqs);
  const Tensor out = decoder_.forward(inputs_, cache_);
  check_backend();
  return out;
}

void CudaModelRunner::forward_logits(std::span<const StepSequence> seqs, std::vector<float>& logits) {
  if (seqs.empty()) {
    logits.clear();
    return;
  }
  if (sampler_ && sampler_->outstanding() > 0) fatal("forward_logits() while a launched step is outstanding");
  cudaSetDevice(options_.device);  // (a tensor-parallel rank's thread may serve any device first)
  const auto start = StepProfile::Clock::now();
  if (watchdog_) watchdog_->begin(0);
  const Tensor out = forward_step(seqs);
  if (step_profile_) step_profile_->end_launch(0.0, backend_->stream());
  fetch_logits(out, out.rows(), logits);
  if (watchdog_) watchdog_->end(0);
  if (step_profile_) step_profile_->finish(StepProfile::ms_since(start));
}

void CudaModelRunner::launch(std::span<const StepSequence> seqs, std::span<const SamplerRow> rows) {
  if (seqs.empty()) fatal("launch() of an empty step");
  cudaSetDevice(options_.device);
  const auto start = StepProfile::Clock::now();
  if (watchdog_) watchdog_->begin(0);
  const Tensor logits = forward_step(seqs);
  if (logits.rows() != static_cast<int64_t>(rows.size())) fatal("sampler rows do not match the logits rows");
  if (logits.rows() > max_rows()) fatal("a step samples more rows than --max-num-seqs x the logits per sequence");
  if (Status s = sampler_->launch(logits.f32(), rows, backend_->stream()); !s.ok()) fatal(s.error().message);
  std::vector<int32_t>& drafts = launched_drafts_.emplace_back();
  for (const SamplerRow& r : rows) drafts.push_back(r.draft_token);
  if (step_profile_) step_profile_->end_launch(StepProfile::ms_since(start), backend_->stream());
}

void CudaModelRunner::collect(std::vector<SampledToken>& out) {
  cudaSetDevice(options_.device);
  const auto start = StepProfile::Clock::now();
  if (Status s = sampler_->collect(out); !s.ok()) fatal(s.error().message);
  const std::vector<int32_t> drafts = std::move(launched_drafts_.front());
  launched_drafts_.pop_front();
  for (size_t i = 0; i < out.size() && i < drafts.size(); ++i) out[i].accepted = drafts[i] >= 0 && out[i].token == drafts[i];
  if (watchdog_) watchdog_->end(0);
  if (step_profile_) step_profile_->finish(StepProfile::ms_since(start));
}

void CudaModelRunner::run_rank_step(const ForwardInputs& in) {
  cudaSetDevice(options_.device);
  if (watchdog_) watchdog_->begin(0);
  inputs_ = in;
  // Rank 0 replays graph (q_len, bucket) exactly when its step is `bucket`
  // sequences of q_len tokens each with every row's logits (it padded them so);
  // otherwise it ran eager. The same test here picks the same forward: the
  // collectives must meet rank 0's in number and size.
  const auto& starts = inputs_.query_start_loc;
  const int32_t seqs = static_cast<int32_t>(inputs_.num_seqs());
  const int32_t q_len = seqs > 0 ? starts[1] - starts[0] : 0;
  bool uniform = seqs > 0 && inputs_.logits_indices.size() == inputs_.token_ids.size();
  for (int32_t b = 0; uniform && b < seqs; ++b) uniform = starts[static_cast<size_t>(b) + 1] - starts[static_cast<size_t>(b)] == q_len;
  const auto graph = uniform ? graphs_.find({q_len, seqs}) : graphs_.end();
  backend_->begin_forward(inputs_);
  if (graph != graphs_.end()) {
    if (cudaGraphLaunch(graph->second.exec, backend_->stream()) != cudaSuccess) fatal("graph launch failed");
  } else {
    decoder_.forward(inputs_, cache_);
  }
  check_backend();
  if (cudaStreamSynchronize(backend_->stream()) != cudaSuccess) fatal("a tensor-parallel rank's step failed");
  if (watchdog_) watchdog_->end(0);
}

}  // namespace

namespace {

Result<std::unique_ptr<ModelRunner>> finish(std::unique_ptr<DeviceWeights> weights, const CudaRunnerOptions& o) {
  const ModelConfig& c = weights->views().config;
  const int64_t max_model_len = o.max_model_len > 0 ? o.max_model_len : c.max_position_embeddings;
  CudaBackendLimits limits;
  limits.max_tokens = std::max<int64_t>(o.max_num_batched_tokens, o.max_num_seqs);
  limits.max_seqs = o.max_num_seqs;
  limits.max_model_len = max_model_len;
  limits.block_size = o.block_size;
  auto backend = CudaBackend::create(limits);
  if (!backend) return backend.error();
  (*backend)->set_communicator(o.communicator);
  auto runner = std::make_unique<CudaModelRunner>(std::move(weights), std::move(*backend), o, max_model_len);
  if (Status s = runner->init(); !s.ok()) return s.error();
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

Status set_device(int device) {
  EMBER_CUDA_TRY(cudaSetDevice(device));
  return Status::success();
}

}  // namespace

Result<std::unique_ptr<ModelRunner>> make_cuda_model_runner(const LlamaWeights& weights,
                                                             const CudaRunnerOptions& options) {
  EMBER_TRY_STATUS(set_device(options.device));
  const bool fp8 = gpu::fp8_supported(options.device);
  if (has_fp8(weights) && !fp8)
    spdlog::warn("this GPU has no FP8 (compute capability < 8.9): the checkpoint's FP8 weights are expanded to bf16");
  auto d = DeviceWeights::upload(weights, fp8);
  if (!d) return d.error();
  if (options.quantize_fp8) EMBER_TRY_STATUS((*d)->quantize_fp8(options.device));
  return finish(std::move(*d), options);
}

Result<std::unique_ptr<ModelRunner>> make_cuda_model_runner_dummy(const ModelConfig& config,
                                                                   const CudaRunnerOptions& options) {
  EMBER_TRY_STATUS(set_device(options.device));
  // (a rank of a tensor-parallel runner, even of one, splits the LM head as told; a runner alone keeps it whole)
  const LmHead head = options.communicator != nullptr ? options.lm_head : LmHead::kReplicated;
  auto d = DeviceWeights::dummy(config, options.dummy_seed, options.tensor_parallel_rank, options.tensor_parallel_size,
                                head);
  if (!d) return d.error();
  if (options.quantize_fp8) EMBER_TRY_STATUS((*d)->quantize_fp8(options.device));
  return finish(std::move(*d), options);
}

Result<std::unique_ptr<ModelRunner>> make_cuda_tensor_parallel_runner(const LlamaWeights* weights,
                                                                      const ModelConfig& config,
                                                                      const CudaRunnerOptions& options, int n) {
  Result<ModelConfig> shard = shard_config(config, n);
  if (!shard) return shard.error();
  int visible = 0;
  if (cudaGetDeviceCount(&visible) != cudaSuccess || visible < n)
    return Error{"--tensor-parallel-size " + std::to_string(n) + " needs " + std::to_string(n) + " GPUs; " +
                 std::to_string(visible) + " visible"};
  std::vector<int> devices;
  for (int r = 0; r < n; ++r) devices.push_back(r);
  auto nccl = NcclCommunicator::create_all(devices);
  if (!nccl) return nccl.error();
  std::vector<Communicator*> comm_of;
  std::vector<std::unique_ptr<Communicator>> comms;
  for (auto& c : *nccl) {
    comm_of.push_back(c.get());
    comms.push_back(std::move(c));
  }
  const TensorParallelRunner::RankFactory make = [&](int r) -> Result<std::unique_ptr<ModelRunner>> {
    CudaRunnerOptions o = options;
    o.device = devices[static_cast<size_t>(r)];
    o.communicator = comm_of[static_cast<size_t>(r)];
    o.tensor_parallel_rank = r;
    o.tensor_parallel_size = n;
    if (weights == nullptr) return make_cuda_model_runner_dummy(config, o);
    Result<LlamaWeights> s = shard_weights(*weights, r, n, options.lm_head);
    if (!s) return s.error();
    return make_cuda_model_runner(*s, o);
  };
  auto tp = TensorParallelRunner::create(n, make, config, std::move(comms), options.collective_timeout_s);
  if (!tp) return tp.error();
  return std::unique_ptr<ModelRunner>(std::move(*tp));
}

Result<std::unique_ptr<ModelRunner>> make_cuda_process_group_runner(const LlamaWeights* shard, const ModelConfig& config,
                                                                    const CudaRunnerOptions& options,
                                                                    ProcessGroup& group) {
  const int rank = group.rank(), n = group.size();
  if (Result<ModelConfig> s = shard_config(config, n); !s) return s.error();
  EMBER_TRY_STATUS(set_device(options.device));
  // The NCCL id from rank 0; an empty one tells the others rank 0 has none.
  std::string id;
  Status made = Status::success();
  if (rank == 0) {
    Result<std::string> fresh = NcclCommunicator::new_unique_id();
    if (fresh) {
      id = std::move(*fresh);
    } else {
      made = fresh.error();
    }
  }
  group.broadcast_bytes(id);
  if (!made.ok()) return made.error();
  if (id.empty()) return Error{"rank 0 could not start NCCL (its log says why)"};
  // What shapes the steps and the graphs: a rank started with other flags would meet rank 0's collectives with
  // others of other sizes (a hang, or wrong sums).
  const std::string flags = fmt::format(
      "--block-size {} --max-num-seqs {} --max-num-batched-tokens {} --max-model-len {} --enforce-eager {} "
      "--lm-head {} --seed {} --quantization {} (logits a sequence {})",
      options.block_size, options.max_num_seqs, options.max_num_batched_tokens, options.max_model_len,
      options.enforce_eager, options.lm_head == LmHead::kReplicated ? "replicated" : "vocab-parallel",
      options.dummy_seed, options.quantize_fp8 ? "fp8" : "none", options.max_logits_per_seq);
  std::string rank0 = flags;
  group.broadcast_bytes(rank0);
  if (rank0 != flags)
    return Error{"tensor-parallel rank " + std::to_string(rank) + " was started with other flags than rank 0: " +
                 flags + ", rank 0 " + rank0};
  auto comm = NcclCommunicator::create_rank(id, rank, n);
  if (!comm) return comm.error();
  // From here every rank runs the same collectives (the profile step, the
  // graphs' warm-ups, the KV pool's size): the watchdog times them as a step.
  auto watchdog = std::make_unique<CollectiveWatchdog>(std::vector<Communicator*>{comm->get()},
                                                       options.collective_timeout_s);
  watchdog->begin(0);
  CudaRunnerOptions o = options;
  o.communicator = comm->get();
  o.tensor_parallel_rank = rank;
  o.tensor_parallel_size = n;
  Result<std::unique_ptr<ModelRunner>> runner =
      shard == nullptr ? make_cuda_model_runner_dummy(config, o) : make_cuda_model_runner(*shard, o);
  if (!runner) return runner.error();
  // Each rank sized its KV pool from its own free memory; all use the smallest.
  std::vector<float> blocks(static_cast<size_t>(n));
  const float mine = static_cast<float>((*runner)->num_blocks());  // (exact below 2^24 blocks)
  group.communicator().all_gather(&mine, 1, blocks.data());
  auto& cuda = static_cast<CudaModelRunner&>(**runner);
  cuda.limit_blocks(static_cast<int64_t>(*std::min_element(blocks.begin(), blocks.end())));
  watchdog->end(0);
  cuda.join_processes(rank == 0 ? &group : nullptr, std::move(*comm), std::move(watchdog));
  return runner;
}

void serve_cuda_rank_steps(ModelRunner& rank, ProcessGroup& group) {
  auto& cuda = static_cast<CudaModelRunner&>(rank);
  serve_rank_steps(group, [&](const ForwardInputs& in) { cuda.run_rank_step(in); });
}

}  // namespace ember
