// CudaModelRunner (cuda_model_runner_impl.h): its methods, and the
// single-GPU factories of cuda_model_runner.h.
#include "engine/cuda/cuda_model_runner.h"

#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/cuda/cuda_model_runner_impl.h"
#include "engine/cuda/device_weights.h"
#include "engine/cuda/gpu_sampler.h"
#include "engine/cuda/step_profile.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.h"
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

}  // namespace

CudaModelRunner::CudaModelRunner(std::unique_ptr<DeviceWeights> weights, std::unique_ptr<CudaBackend> backend,
                                 const CudaRunnerOptions& options, int64_t max_model_len, std::vector<float> kv_scales)
    : weights_(std::move(weights)),
      backend_(std::move(backend)),
      options_(options),
      max_model_len_(max_model_len),
      decoder_(weights_->views(), *backend_),
      kv_scales_(std::move(kv_scales)) {
  decoder_.set_communicator(options.communicator, backend_->stream());
  if (kv_scales_.empty()) kv_scales_.assign(2 * static_cast<size_t>(config().num_layers), 1.0f);
}

CudaModelRunner::~CudaModelRunner() {
  watchdog_.reset();
  cudaSetDevice(options_.device);
  cudaStreamSynchronize(backend_->stream());
  if (step_profile_) step_profile_->report();
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);
  cudaFree(kv_);
  cudaFreeHost(pinned_logits_);
}

void CudaModelRunner::check_backend() {
  if (Status s = backend_->status(); !s.ok()) fatal(s.error().message);
}

void CudaModelRunner::profile_begin(std::span<const StepSequence> seqs) {
  if (!step_profile_) return;
  int64_t tokens = 0, prefill_seqs = 0;
  for (const StepSequence& s : seqs) {
    tokens += s.num_tokens;
    prefill_seqs += s.num_tokens > 1;
  }
  const int64_t b = static_cast<int64_t>(seqs.size());
  std::string kind;
  const bool verify = std::all_of(
      seqs.begin(), seqs.end(), [](const StepSequence& s) { return s.num_logits > 1 && s.num_logits == s.num_tokens; });
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

int64_t CudaModelRunner::kv_block_bytes() const {
  const ModelConfig& c = config();
  const int64_t elem_bytes = options_.kv_cache_fp8 ? 1 : 2;
  return 2 * c.num_layers * options_.block_size * c.num_kv_heads * c.head_dim * elem_bytes;
}

Status CudaModelRunner::allocate_kv(int64_t blocks) {
  const ModelConfig& c = config();
  cudaFree(kv_);
  kv_ = nullptr;
  const DType dtype = options_.kv_cache_fp8 ? DType::kF8E4M3 : DType::kBF16;
  // The scales' bytes rounded up to 256: every layer's cache stays aligned for the kernels' vector loads.
  const size_t scale_bytes = options_.kv_cache_fp8 ? (kv_scales_.size() * sizeof(float) + 255) / 256 * 256 : 0;
  const int64_t per_layer = blocks * options_.block_size * c.num_kv_heads * c.head_dim * dtype_bytes(dtype, 1);
  const size_t bytes = scale_bytes + static_cast<size_t>(per_layer) * 2 * static_cast<size_t>(c.num_layers);
  EMBER_CUDA_TRY(cudaMalloc(&kv_, bytes));
  // Finite contents everywhere: padding rows of graph replays read block 0.
  EMBER_CUDA_TRY(cudaMemset(kv_, 0, bytes));
  const auto* scales = static_cast<const float*>(kv_);
  if (options_.kv_cache_fp8)
    EMBER_CUDA_TRY(
        cudaMemcpy(kv_, kv_scales_.data(), kv_scales_.size() * sizeof(float), cudaMemcpyHostToDevice));
  // Both ran on the legacy stream, which the backend's non-blocking stream does not wait for (and a pageable
  // copy may return before it lands): the first step must not read a scale of 0.
  EMBER_CUDA_TRY(cudaDeviceSynchronize());
  cache_ = KvCacheView{};
  auto* base = static_cast<uint8_t*>(kv_) + scale_bytes;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::initializer_list<int64_t> dims = {blocks, options_.block_size, c.num_kv_heads, c.head_dim};
    cache_.k.push_back(Tensor::of(base + (2 * l) * per_layer, dtype, dims));
    cache_.v.push_back(Tensor::of(base + (2 * l + 1) * per_layer, dtype, dims));
    if (options_.kv_cache_fp8) {
      cache_.k.back().scale = scales + 2 * l;
      cache_.v.back().scale = scales + 2 * l + 1;
    }
  }
  num_blocks_ = blocks;
  return Status::success();
}

// vLLM's way: run the largest step the scheduler may send, see what memory
// the activations, workspaces and libraries take, and give the rest of
// gpu_memory_utilization * total to KV blocks.
Status CudaModelRunner::profile_and_allocate_kv() {
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
  // The prefill step's GEMMs time cuBLASLt's candidates (as the decode graphs'
  // warm-ups do theirs): a full step of max_tokens tokens is the shape that
  // long prompts and offline batches run at, and the heuristic's first choice
  // is not always the fastest there.
  backend_->set_gemm_autotune(static_cast<int>(max_tokens));
  forward_logits(prefill, logits);
  backend_->set_gemm_autotune(0);
  std::vector<int32_t> one_block(1, 0);
  std::vector<StepSequence> decode(static_cast<size_t>(options_.max_num_seqs),
                                   StepSequence{std::span<const int32_t>(tokens.data(), 1), 0, 1, one_block, 1});
  forward_logits(decode, logits);
  EMBER_CUDA_TRY(cudaDeviceSynchronize());

  int64_t blocks_total = options_.num_gpu_blocks_override;
  const int64_t per_block = kv_block_bytes();  // (FP8: half of bf16's, twice the tokens)
  if (blocks_total <= 0) {
    cudaFree(kv_);
    kv_ = nullptr;
    size_t free_bytes = 0, total_bytes = 0;
    EMBER_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
    const int64_t used = static_cast<int64_t>(total_bytes - free_bytes);
    const int64_t budget = static_cast<int64_t>(options_.gpu_memory_utilization * static_cast<double>(total_bytes)) -
                           used - kHeadroomBytes;
    blocks_total = budget / per_block;
    // Never more than every sequence at full length could use.
    blocks_total = std::min<int64_t>(blocks_total, int64_t{options_.max_num_seqs} * ((max_model_len_ + bs - 1) / bs));
    spdlog::info(
        "GPU memory: {:.2f} GiB total, {:.2f} GiB in use after the profile step (weights {:.2f} GiB), "
        "{:.2f} GiB for the KV cache at --gpu-memory-utilization {}",
        total_bytes / 1073741824.0, used / 1073741824.0, weights_->bytes() / 1073741824.0,
        std::max<int64_t>(budget, 0) / 1073741824.0, options_.gpu_memory_utilization);
    if (blocks_total < 1) {
      return Error{
          "no GPU memory left for the KV cache after the weights and activations: raise "
          "--gpu-memory-utilization or lower --max-num-batched-tokens"};
    }
  }
  EMBER_TRY_STATUS(allocate_kv(blocks_total));
  spdlog::info(
      "KV cache ({}): {} blocks of {} tokens ({:.2f} GiB): {} tokens at once, {:.1f}x concurrency at {} tokens",
      options_.kv_cache_fp8 ? "fp8 e4m3" : "bf16", blocks_total, bs, blocks_total * per_block / 1073741824.0,
      blocks_total * bs, static_cast<double>(blocks_total * bs) / static_cast<double>(max_model_len_),
      max_model_len_);
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
  // Checked here, not at the first step (which would end the server): the attention kernels' instantiations.
  if (config().head_dim != 64 && config().head_dim != 128)
    return Error{"the CUDA runner's attention kernels take a head size of 64 or 128; this model's is " +
                 std::to_string(config().head_dim) + " (run it with --device cpu)"};
  EMBER_TRY_STATUS(backend_->prepare_rope(rope_config_of(config()), config().head_dim));
  EMBER_TRY_STATUS(profile_and_allocate_kv());
  EMBER_TRY_STATUS(capture_graphs());
  // After the profile step and the graphs: the first served step sets the scales (and runs eager to do so).
  if (options_.kv_cache_fp8 && options_.calculate_kv_scales) decoder_.calculate_kv_scales_next_forward();
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
  auto graph = uniform && !decoder_.kv_scales_pending()
                   ? graphs_.lower_bound({q_len, static_cast<int32_t>(seqs.size())})
                   : graphs_.end();
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
  for (size_t i = 0; i < out.size() && i < drafts.size(); ++i)
    out[i].accepted = drafts[i] >= 0 && out[i].token == drafts[i];
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
  for (int32_t b = 0; uniform && b < seqs; ++b)
    uniform = starts[static_cast<size_t>(b) + 1] - starts[static_cast<size_t>(b)] == q_len;
  // (While the scales are pending, rank 0 runs eager, and so does every rank: they all were told alike.)
  const auto graph = uniform && !decoder_.kv_scales_pending() ? graphs_.find({q_len, seqs}) : graphs_.end();
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

namespace {

// --kv-cache-dtype fp8 needs the E4M3 conversions of sm_89+ (the kernels
// would run emulated, far slower, below).
Status check_kv_cache_dtype(const CudaRunnerOptions& o) {
  if (!o.kv_cache_fp8 || gpu::fp8_supported(o.device)) return Status::success();
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, o.device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, o.device);
  return Error{"--kv-cache-dtype fp8 needs a GPU with FP8 conversions (compute capability 8.9 or newer: Ada, "
               "Hopper, Blackwell); GPU " + std::to_string(o.device) + " is " + std::to_string(major) + "." +
               std::to_string(minor)};
}

// kv_scales: as CudaModelRunner's.
Result<std::unique_ptr<ModelRunner>> finish(std::unique_ptr<DeviceWeights> weights, const CudaRunnerOptions& o,
                                            std::vector<float> kv_scales = {}) {
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
  auto runner =
      std::make_unique<CudaModelRunner>(std::move(weights), std::move(*backend), o, max_model_len, std::move(kv_scales));
  if (Status s = runner->init(); !s.ok()) return s.error();
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

}  // namespace

Status set_device(int device) {
  EMBER_CUDA_TRY(cudaSetDevice(device));
  return Status::success();
}

Result<std::unique_ptr<ModelRunner>> make_cuda_model_runner(const LlamaWeights& weights,
                                                            const CudaRunnerOptions& options) {
  EMBER_TRY_STATUS(set_device(options.device));
  EMBER_TRY_STATUS(check_kv_cache_dtype(options));
  const bool fp8 = gpu::fp8_supported(options.device);
  if (has_fp8(weights) && !fp8)
    spdlog::warn("this GPU has no FP8 (compute capability < 8.9): the checkpoint's FP8 weights are expanded to bf16");
  auto d = DeviceWeights::upload(weights, fp8);
  if (!d) return d.error();
  if (options.quantize_fp8) EMBER_TRY_STATUS((*d)->quantize_fp8(options.device));
  std::vector<float> kv_scales;
  for (const LayerWeights& l : weights.layers) kv_scales.insert(kv_scales.end(), {l.k_scale, l.v_scale});
  return finish(std::move(*d), options, std::move(kv_scales));
}

Result<std::unique_ptr<ModelRunner>> make_cuda_model_runner_dummy(const ModelConfig& config,
                                                                  const CudaRunnerOptions& options) {
  EMBER_TRY_STATUS(set_device(options.device));
  EMBER_TRY_STATUS(check_kv_cache_dtype(options));
  // (a rank of a tensor-parallel runner, even of one, splits the LM head as told; a runner alone keeps it whole)
  const LmHead head = options.communicator != nullptr ? options.lm_head : LmHead::kReplicated;
  auto d = DeviceWeights::dummy(config, options.dummy_seed, options.tensor_parallel_rank, options.tensor_parallel_size,
                                head);
  if (!d) return d.error();
  if (options.quantize_fp8) EMBER_TRY_STATUS((*d)->quantize_fp8(options.device));
  return finish(std::move(*d), options);
}

}  // namespace ember
