// CudaBackend (see cuda_backend.h): the Backend ops mapped onto the kernels of
// kernels/cuda (ops.h, gemm.h, attention.h) and the step metadata upload.
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"

namespace ember {
namespace {

using bf16 = __nv_bfloat16;

const bf16* bf16_of(const Tensor& t) {
  assert(t.dtype == DType::kBF16);
  return static_cast<const bf16*>(t.data);
}
bf16* bf16_of(Tensor& t) {
  assert(t.dtype == DType::kBF16);
  return static_cast<bf16*>(t.data);
}

// An FP8 KV cache's codes and scales (kernels/backend.h).
gpu::Fp8KvCache fp8_cache(Tensor& k_cache, Tensor& v_cache) {
  assert(k_cache.dtype == DType::kF8E4M3 && v_cache.dtype == DType::kF8E4M3 && k_cache.scale && v_cache.scale);
  return {static_cast<uint8_t*>(k_cache.data), static_cast<uint8_t*>(v_cache.data), k_cache.scale, v_cache.scale};
}

bool same_rope(const RopeConfig& a, const RopeConfig& b) {
  return a.theta == b.theta && a.scaling == b.scaling && a.factor == b.factor &&
         a.low_freq_factor == b.low_freq_factor && a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings;
}

// enable_op_profile(): CUDA events around every op outside graph capture,
// summed per op and shape class and printed to stderr when the backend is
// destroyed (run with --enforce-eager to see decode steps too). Events cost a
// little host time per op; the figures are GPU time between them.
struct OpProfiler {
  struct Pending {
    std::string name;
    cudaEvent_t start, end;
  };
  struct Total {
    int64_t count = 0;
    double ms = 0;
  };
  std::vector<cudaEvent_t> free_events;
  std::vector<Pending> pending;
  std::map<std::string, Total> totals;

  cudaEvent_t event() {
    if (free_events.empty()) {
      cudaEvent_t e = nullptr;
      cudaEventCreate(&e);
      return e;
    }
    cudaEvent_t e = free_events.back();
    free_events.pop_back();
    return e;
  }
  void resolve() {
    for (Pending& p : pending) {
      float ms = 0;
      if (cudaEventSynchronize(p.end) == cudaSuccess && cudaEventElapsedTime(&ms, p.start, p.end) == cudaSuccess) {
        Total& t = totals[p.name];
        ++t.count;
        t.ms += ms;
      }
      free_events.push_back(p.start);
      free_events.push_back(p.end);
    }
    pending.clear();
  }
  void report() {
    resolve();
    double all = 0;
    for (const auto& [name, t] : totals) all += t.ms;
    std::vector<std::pair<std::string, Total>> rows(totals.begin(), totals.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    std::fprintf(stderr, "ember: CUDA op profile (GPU time between events; %.1f ms in all)\n", all);
    std::fprintf(stderr, "  %-44s %9s %11s %9s %6s\n", "op", "calls", "total ms", "avg us", "share");
    for (const auto& [name, t] : rows) {
      std::fprintf(stderr, "  %-44s %9lld %11.2f %9.1f %5.1f%%\n", name.c_str(), static_cast<long long>(t.count), t.ms,
                   1000.0 * t.ms / static_cast<double>(t.count), all > 0 ? 100.0 * t.ms / all : 0.0);
    }
    for (cudaEvent_t e : free_events) cudaEventDestroy(e);
    free_events.clear();
  }
};

// M classes for the profile: what decides which GEMM kernel runs.
const char* m_class(int64_t m) {
  if (m <= 4) return "m<=4";
  if (m <= 64) return "m<=64";
  if (m <= 512) return "m<=512";
  return "m>512";
}

// One region of the metadata buffers; the host (pinned) and device copies
// share the layout, so each upload is one copy per region of its used bytes.
struct Region {
  size_t offset = 0, capacity = 0;  // bytes
};

}  // namespace

struct CudaBackend::Impl {
  CudaBackendLimits limits;
  cudaStream_t stream = nullptr;
  std::unique_ptr<gpu::Gemm> gemm;
  // FP8 weights: the norm and SiLU quantize the activations the cuBLASLt FP8
  // GEMM takes (Backend::takes_fp8_activations); EMBER_FP8_FUSED_QUANT=0 at
  // creation leaves it to linear (benchmarks compare the two).
  bool fused_fp8_quant = true;
  // EMBER_FP8_FUSED_SCALES=0: the GEMMs' scale passes stay passes of their own
  // (linear_silu_mul_fp8, linear_scaled_by_next_op; a benchmarking knob).
  bool fused_fp8_scales = true;
  // q/k/v's scales applied by the rope (linear_scaled_by_next_op's kQkvRope),
  // a pass less: offline FP8 with the FP8 cache 10,790 -> 10,819 and 10,944 ->
  // 11,066 output tok/s in two runs (H100, 2026-12-06, gpu_check.sh stage
  // fp8rope). EMBER_FP8_QKV_SCALES_IN_ROPE=0 turns it off.
  bool fp8_qkv_scales_in_rope = true;
  // Small-batch decode's FP8 GEMV does the rope and cache write (q/k/v) and
  // the SiLU (gate/up) in its epilogue (linear_rope_and_cache_write,
  // linear_silu_mul): batch-1 decode +3% (H200, 369 tok/s against 358).
  // EMBER_FP8_GEMV_EPILOGUES=0 turns it off.
  bool fp8_gemv_epilogues = true;
  // Whether the FP8 GEMV's epilogue form takes this linear: FP8 weights, bf16
  // x, and a shape the dispatch gives gemv_fp8.
  bool gemv_epilogue_takes(const Tensor& x, const Tensor& w) const {
    if (!fp8_gemv_epilogues || w.dtype != DType::kF8E4M3 || w.scale == nullptr || x.dtype != DType::kBF16 ||
        x.rows() > 0x7fffffff)
      return false;
    const int m = static_cast<int>(x.rows()), n = static_cast<int>(w.rows()), k = static_cast<int>(w.cols());
    return gemm->fp8_uses_gemv(m, n, k) && gpu::gemv_fp8_epilogue_supports(static_cast<const __nv_bfloat16*>(x.data),
                                                                           static_cast<const uint8_t*>(w.data), m, k);
  }
  // The scales linear_scaled_by_next_op left for the next op over y.
  struct PendingScales {
    const void* y = nullptr;
    const float* row = nullptr;  // x's
    const float* col = nullptr;  // w's
    ScalesReader reader = ScalesReader::kRmsNorm;
  } pending;
  // The pending scales if this op (`reader`) reads their y (then they are
  // taken), else a failure: nothing may come between that linear and its op.
  PendingScales take_pending(const void* x, ScalesReader reader) {
    no_pending_norm();
    PendingScales p = pending;
    pending = {};
    if (p.y != nullptr && (p.y != x || p.reader != reader))
      fail(Error{"CudaBackend: a linear's scales were left for another op or tensor"});
    return p.y == x && p.reader == reader ? p : PendingScales{};
  }
  // For ops that take no pending scales: a failure if a linear left some
  // (the op they were left for did not come next), or a half-done norm.
  void no_pending_scales() {
    if (pending.y != nullptr) take_pending(nullptr, pending.reader);
    no_pending_norm();
  }
  // The RMSNorm that linear_add_for_next_norm left half done (fp8.h,
  // GemvNormAdd) for the GEMV epilogue op over `out`: batch-1 decode +1.0% on
  // the H200, +0.7% on the H100 (2026-12-06). EMBER_FP8_NORM_SPLIT=0 turns the
  // split off.
  bool fp8_norm_split = true;
  // Decode attention's warps load their first keys, all but the step's new
  // one, before they wait (PagedAttentionArgs::decode_early_kv): batch-1
  // decode +0.8% in FP8, +0.1% in bf16 (H100, 2026-12-07, three rounds each;
  // scripts/gpu_check.sh stage attnb1). EMBER_ATTN_EARLY_KV=0 turns it off.
  bool attention_early_kv = true;
  float* norm_partials = nullptr;  // [kGemvFp8EpilogueMaxM, kNormPartialsMax]
  static constexpr int kNormPartialsMax = 8192;
  struct PendingNorm {
    const void* out = nullptr;
    gpu::GemvNormParts parts;
  } pending_norm;
  // An epilogue op that refuses its x: a failure if a half-done norm was
  // left for it (linear_add_for_next_norm checked that it would take it).
  bool refused_with_pending_norm(const gpu::GemvNormParts& norm) {
    if (norm.partials != nullptr) fail(Error{"CudaBackend: a GEMV epilogue refused the norm left for it"});
    return false;
  }
  // For ops that read no half-done norm: a failure if one is left (its
  // reader did not come next).
  void no_pending_norm() {
    if (pending_norm.out != nullptr) take_pending_norm(nullptr);
  }
  // The pending norm's parts if this op reads its `out` (then taken), none if
  // there is no pending norm, else a failure.
  gpu::GemvNormParts take_pending_norm(const void* x) {
    const PendingNorm p = pending_norm;
    pending_norm = {};
    if (p.out == nullptr) return {};
    if (p.out != x) fail(Error{"CudaBackend: a half-done norm was left for another op or tensor"});
    return p.out == x ? p.parts : gpu::GemvNormParts{};
  }
  Status first_error = Status::success();
  std::unordered_map<void*, size_t> allocations;
  uint64_t allocated = 0;

  // Step metadata: host (pinned) and device buffers of the same layout.
  int32_t max_blocks_per_seq = 0;  // the device block table's fixed row stride
  Region token_ids, positions, slots, query_start_loc, seq_lens, logits_indices, block_tables, token_patch;
  size_t meta_bytes = 0;
  uint8_t* host_meta = nullptr;
  uint8_t* dev_meta = nullptr;
  cudaEvent_t upload_done = nullptr;

  // The current step, as the host saw it.
  int32_t num_seqs = 0, num_tokens = 0, max_seq_len = 0, max_query_len = 0, num_logit_rows = 0;
  int32_t num_decode_seqs = 0;  // sequences with q_len == 1
  int32_t seq_len_bound = 0;

  RopeConfig rope;
  int64_t rope_dim = 0;
  float* inv_freq = nullptr;

  void* attention_workspace = nullptr;
  size_t attention_workspace_bytes = 0;

  std::unique_ptr<OpProfiler> profiler;  // EMBER_CUDA_PROFILE=1

  void fail(const Status& s) {
    if (!s.ok() && first_error.ok()) {
      first_error = s;
      std::fprintf(stderr, "ember: CUDA backend error: %s\n", s.error().message.c_str());
    }
  }
  void check(cudaError_t err, const char* what) { fail(cuda_status(err, what)); }
  template <typename T>
  T* dev(const Region& r) const {
    return reinterpret_cast<T*>(dev_meta + r.offset);
  }
  template <typename T>
  T* host(const Region& r) const {
    return reinterpret_cast<T*>(host_meta + r.offset);
  }
  void upload(const Region& r, size_t bytes) {
    if (bytes == 0) return;
    check(cudaMemcpyAsync(dev_meta + r.offset, host_meta + r.offset, bytes, cudaMemcpyHostToDevice, stream),
          "metadata upload");
  }
  bool capturing() const {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    return cudaStreamIsCapturing(stream, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone;
  }

  // Times the ops enqueued during its life (when profiling, outside capture).
  class Timed {
   public:
    Timed(Impl& m, const char* op, const std::string& detail = {}) {
      if (!m.profiler || m.capturing()) return;
      p_ = m.profiler.get();
      stream_ = m.stream;
      name_ = detail.empty() ? std::string(op) : std::string(op) + " " + detail;
      start_ = p_->event();
      cudaEventRecord(start_, stream_);
    }
    ~Timed() {
      if (!p_) return;
      cudaEvent_t end = p_->event();
      cudaEventRecord(end, stream_);
      p_->pending.push_back({std::move(name_), start_, end});
    }
    Timed(const Timed&) = delete;
    Timed& operator=(const Timed&) = delete;

   private:
    OpProfiler* p_ = nullptr;
    cudaStream_t stream_ = nullptr;
    std::string name_;
    cudaEvent_t start_ = nullptr;
  };
};

CudaBackend::CudaBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<CudaBackend>> CudaBackend::create(const CudaBackendLimits& limits) {
  if (limits.max_tokens <= 0 || limits.max_seqs <= 0 || limits.max_model_len <= 0 || limits.block_size <= 0)
    return Error{"CudaBackend: limits must be positive"};
  auto impl = std::make_unique<Impl>();
  impl->limits = limits;
  EMBER_CUDA_TRY(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  EMBER_CUDA_TRY(cudaEventCreateWithFlags(&impl->upload_done, cudaEventDisableTiming));
  auto gemm = gpu::Gemm::create();
  if (!gemm) return gemm.error();
  impl->gemm = std::move(*gemm);
  if (const char* env = std::getenv("EMBER_FP8_FUSED_QUANT"); env != nullptr) impl->fused_fp8_quant = std::string(env) != "0";
  if (const char* env = std::getenv("EMBER_FP8_FUSED_SCALES"); env != nullptr)
    impl->fused_fp8_scales = std::string(env) != "0";
  if (const char* env = std::getenv("EMBER_FP8_QKV_SCALES_IN_ROPE"); env != nullptr)
    impl->fp8_qkv_scales_in_rope = std::string(env) != "0";
  if (const char* env = std::getenv("EMBER_FP8_GEMV_EPILOGUES"); env != nullptr)
    impl->fp8_gemv_epilogues = std::string(env) != "0";
  if (const char* env = std::getenv("EMBER_FP8_NORM_SPLIT"); env != nullptr)
    impl->fp8_norm_split = std::string(env) != "0";
  if (const char* env = std::getenv("EMBER_ATTN_EARLY_KV"); env != nullptr)
    impl->attention_early_kv = std::string(env) != "0";
  EMBER_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&impl->norm_partials),
                            sizeof(float) * gpu::kGemvFp8EpilogueMaxM * Impl::kNormPartialsMax));

  impl->max_blocks_per_seq =
      static_cast<int32_t>((limits.max_model_len + limits.block_size - 1) / limits.block_size);
  size_t at = 0;
  const auto region = [&](size_t bytes) {
    Region r{at, bytes};
    at += (bytes + 255) / 256 * 256;
    return r;
  };
  const size_t t = static_cast<size_t>(limits.max_tokens), b = static_cast<size_t>(limits.max_seqs);
  impl->token_ids = region(t * 4);
  impl->positions = region(t * 4);
  impl->slots = region(t * 8);
  impl->query_start_loc = region((b + 1) * 4);
  impl->seq_lens = region(b * 4);
  impl->logits_indices = region(t * 4);
  impl->block_tables = region(b * static_cast<size_t>(impl->max_blocks_per_seq) * 4);
  impl->token_patch = region(b * 2 * 4);
  impl->meta_bytes = at;
  EMBER_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&impl->host_meta), at));
  EMBER_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&impl->dev_meta), at));
  EMBER_CUDA_TRY(cudaMemset(impl->dev_meta, 0, at));
  return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(impl)));
}

CudaBackend::~CudaBackend() {
  Impl& m = *impl_;
  if (m.stream) cudaStreamSynchronize(m.stream);
  if (m.profiler) m.profiler->report();
  for (auto& [ptr, bytes] : m.allocations) cudaFree(ptr);
  cudaFree(m.inv_freq);
  cudaFree(m.norm_partials);
  cudaFree(m.attention_workspace);
  cudaFree(m.dev_meta);
  cudaFreeHost(m.host_meta);
  m.gemm.reset();
  if (m.upload_done) cudaEventDestroy(m.upload_done);
  if (m.stream) cudaStreamDestroy(m.stream);
}

cudaStream_t CudaBackend::stream() const { return impl_->stream; }
const CudaBackendLimits& CudaBackend::limits() const { return impl_->limits; }
Status CudaBackend::status() const { return impl_->first_error; }
uint64_t CudaBackend::allocated_bytes() const { return impl_->allocated; }
void CudaBackend::set_seq_len_bound(int32_t bound) { impl_->seq_len_bound = bound; }
void CudaBackend::set_gemm_autotune(int max_m) { impl_->gemm->set_autotune_max_m(max_m); }
void CudaBackend::enable_op_profile() {
  if (!impl_->profiler) impl_->profiler = std::make_unique<OpProfiler>();
}

void* CudaBackend::allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  if (err != cudaSuccess) {
    // Backend::allocate never returns null: activations are sized before
    // serving (the runner's profile step), so running out here is a sizing bug.
    std::fprintf(stderr, "ember: cudaMalloc of %zu bytes failed: %s\n", bytes, cudaGetErrorString(err));
    std::abort();
  }
  impl_->allocations[p] = bytes;
  impl_->allocated += bytes;
  return p;
}

void CudaBackend::deallocate(void* ptr) {
  auto it = impl_->allocations.find(ptr);
  if (it == impl_->allocations.end()) return;
  // The stream may still use it: buffers are freed between steps, rarely.
  cudaStreamSynchronize(impl_->stream);
  impl_->allocated -= it->second;
  impl_->allocations.erase(it);
  cudaFree(ptr);
}

void CudaBackend::begin_forward(const ForwardInputs& in) {
  Impl& m = *impl_;
  m.no_pending_scales();  // (a forward that left scales or a half-done norm unread has failed)
  const int64_t t = in.num_tokens(), b = in.num_seqs(), r = static_cast<int64_t>(in.logits_indices.size());
  if (t > m.limits.max_tokens || b > m.limits.max_seqs || in.max_blocks_per_seq > m.max_blocks_per_seq) {
    m.fail(Error{"CudaBackend: step of " + std::to_string(t) + " tokens, " + std::to_string(b) + " sequences, " +
                 std::to_string(in.max_blocks_per_seq) + " blocks per sequence is over the limits (" +
                 std::to_string(m.limits.max_tokens) + ", " + std::to_string(m.limits.max_seqs) + ", " +
                 std::to_string(m.max_blocks_per_seq) + ")"});
    return;
  }
  // The previous upload must have left the pinned buffer before it is rewritten.
  m.check(cudaEventSynchronize(m.upload_done), "metadata upload wait");
  if (m.profiler && m.profiler->pending.size() > 4096) m.profiler->resolve();
  std::memcpy(m.host<int32_t>(m.token_ids), in.token_ids.data(), t * 4);
  std::memcpy(m.host<int32_t>(m.positions), in.positions.data(), t * 4);
  std::memcpy(m.host<int64_t>(m.slots), in.slot_mapping.data(), t * 8);
  std::memcpy(m.host<int32_t>(m.query_start_loc), in.query_start_loc.data(), (b + 1) * 4);
  std::memcpy(m.host<int32_t>(m.seq_lens), in.seq_lens.data(), b * 4);
  std::memcpy(m.host<int32_t>(m.logits_indices), in.logits_indices.data(), r * 4);
  // Re-stride the block table to the fixed device stride.
  int32_t* bt = m.host<int32_t>(m.block_tables);
  for (int64_t s = 0; s < b; ++s) {
    std::memcpy(bt + s * m.max_blocks_per_seq, in.block_tables.data() + s * in.max_blocks_per_seq,
                static_cast<size_t>(in.max_blocks_per_seq) * 4);
  }
  m.upload(m.token_ids, t * 4);
  m.upload(m.positions, t * 4);
  m.upload(m.slots, t * 8);
  m.upload(m.query_start_loc, (b + 1) * 4);
  m.upload(m.seq_lens, b * 4);
  m.upload(m.logits_indices, r * 4);
  m.upload(m.block_tables, b * m.max_blocks_per_seq * 4);
  m.check(cudaEventRecord(m.upload_done, m.stream), "metadata upload event");

  m.num_tokens = static_cast<int32_t>(t);
  m.num_seqs = static_cast<int32_t>(b);
  m.num_logit_rows = static_cast<int32_t>(r);
  m.max_seq_len = 0;
  m.max_query_len = 0;
  m.num_decode_seqs = 0;
  for (int64_t s = 0; s < b; ++s) {
    const int32_t q_len = in.query_start_loc[s + 1] - in.query_start_loc[s];
    m.max_seq_len = std::max(m.max_seq_len, in.seq_lens[s]);
    m.max_query_len = std::max(m.max_query_len, q_len);
    m.num_decode_seqs += q_len == 1;
  }
}

void CudaBackend::patch_token_ids(std::span<const int32_t> index, std::span<const int32_t> row, const int32_t* src) {
  Impl& m = *impl_;
  const int64_t n = static_cast<int64_t>(index.size());
  if (n == 0) return;
  if (row.size() != index.size() || n > m.limits.max_seqs) {
    m.fail(Error{"CudaBackend: " + std::to_string(n) + " token patches for a step of at most " +
                 std::to_string(m.limits.max_seqs) + " sequences"});
    return;
  }
  // begin_forward() waited for the previous upload, this region's included.
  int32_t* pairs = m.host<int32_t>(m.token_patch);
  for (int64_t i = 0; i < n; ++i) {
    if (index[i] < 0 || index[i] >= m.num_tokens) {
      m.fail(Error{"CudaBackend: token patch index " + std::to_string(index[i]) + " outside the step's " +
                   std::to_string(m.num_tokens) + " tokens"});
      return;
    }
    pairs[2 * i] = index[i];
    pairs[2 * i + 1] = row[i];
  }
  m.upload(m.token_patch, static_cast<size_t>(n) * 8);
  m.fail(gpu::scatter_tokens(m.dev<int32_t>(m.token_ids), m.dev<int32_t>(m.token_patch), static_cast<int32_t>(n), src,
                             m.stream));
  m.check(cudaEventRecord(m.upload_done, m.stream), "metadata upload event");
}

void CudaBackend::copy(const Tensor& src, Tensor& dst) {
  assert(src.dtype == dst.dtype && src.numel() == dst.numel());
  impl_->no_pending_norm();
  impl_->check(cudaMemcpyAsync(dst.data, src.data, static_cast<size_t>(dtype_bytes(src.dtype, src.numel())),
                               cudaMemcpyDeviceToDevice, impl_->stream),
               "copy");
}

void CudaBackend::copy_2d(const Tensor& src, int64_t src_stride, Tensor& dst, int64_t dst_stride) {
  assert(src.dtype == dst.dtype && src.rows() == dst.rows() && src.cols() == dst.cols());
  const size_t elem = static_cast<size_t>(dtype_bytes(src.dtype, 1));
  if (src.numel() == 0) return;
  impl_->check(cudaMemcpy2DAsync(dst.data, static_cast<size_t>(dst_stride) * elem, src.data,
                                 static_cast<size_t>(src_stride) * elem, static_cast<size_t>(src.cols()) * elem,
                                 static_cast<size_t>(src.rows()), cudaMemcpyDeviceToDevice, impl_->stream),
               "copy_2d");
}

void CudaBackend::download(const Tensor& src, float* host) {
  assert(src.dtype == DType::kF32);
  impl_->check(cudaMemcpyAsync(host, src.data, static_cast<size_t>(src.numel()) * sizeof(float),
                               cudaMemcpyDeviceToHost, impl_->stream),
               "download");
  impl_->check(cudaStreamSynchronize(impl_->stream), "download sync");
}

void CudaBackend::embedding(const Tensor& table, const ForwardInputs& in, Tensor& out, int64_t first_row) {
  Impl& m = *impl_;
  assert(in.num_tokens() == out.rows());
  Impl::Timed timed(m, "embedding");
  m.fail(gpu::embedding(bf16_of(table), m.dev<int32_t>(m.token_ids), in.num_tokens(), table.cols(), bf16_of(out),
                        m.stream, first_row < 0 ? 0 : first_row, first_row < 0 ? -1 : table.rows()));
}

void CudaBackend::rms_norm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps, Tensor& out) {
  Impl::Timed timed(*impl_, "rms_norm", m_class(x.rows()));
  const Impl::PendingScales p = impl_->take_pending(x.data, ScalesReader::kRmsNorm);
  impl_->fail(gpu::rms_norm(bf16_of(x), residual ? bf16_of(*residual) : nullptr, weight.f32(), eps, x.rows(), x.cols(),
                            bf16_of(out), impl_->stream, p.row, p.col));
}

bool CudaBackend::takes_fp8_activations(const Tensor& w, int64_t rows) {
  const int64_t k = w.cols();
  return impl_->fused_fp8_quant && w.dtype == DType::kF8E4M3 && rows > 0 && rows <= 0x7fffffff &&
         gpu::rms_norm_fp8_supports(rows, k) && gpu::silu_mul_fp8_supports(rows, k) &&
         impl_->gemm->fp8_quantizes_x(static_cast<int>(rows), static_cast<int>(w.rows()), static_cast<int>(k));
}

// out: kF8E4M3 codes [M, H] with a float32 scale a row in its `scale` (written here).
void CudaBackend::rms_norm_fp8(const Tensor& x, Tensor* residual, const Tensor& weight, float eps, Tensor& out) {
  Impl::Timed timed(*impl_, "rms_norm_fp8", m_class(x.rows()));
  assert(out.dtype == DType::kF8E4M3 && out.scale != nullptr);
  const Impl::PendingScales p = impl_->take_pending(x.data, ScalesReader::kRmsNorm);
  impl_->fail(gpu::rms_norm_fp8(bf16_of(x), residual ? bf16_of(*residual) : nullptr, weight.f32(), eps, x.rows(),
                                x.cols(), static_cast<uint8_t*>(out.data), const_cast<float*>(out.scale), impl_->stream,
                                p.row, p.col));
}

void CudaBackend::silu_mul_fp8(const Tensor& x, Tensor& out) {
  Impl::Timed timed(*impl_, "silu_mul_fp8", m_class(x.rows()));
  assert(out.dtype == DType::kF8E4M3 && out.scale != nullptr);
  impl_->fail(gpu::silu_mul_fp8(bf16_of(x), x.rows(), out.cols(), static_cast<uint8_t*>(out.data),
                                const_cast<float*>(out.scale), impl_->stream));
}

// Where cuBLASLt would scale gate_up in a pass of its own, the SiLU applies
// the scales as it reads the raw product (Gemm::linear_fp8_quantized_unscaled).
void CudaBackend::linear_silu_mul_fp8(const Tensor& x, const Tensor& w_gate_up, Tensor& gate_up, Tensor& act) {
  if (impl_->fused_fp8_scales && x.dtype == DType::kF8E4M3 && w_gate_up.dtype == DType::kF8E4M3 &&
      gate_up.dtype == DType::kBF16) {
    Impl::Timed timed(*impl_, "linear_silu_mul_fp8",
                      impl_->profiler ? std::to_string(w_gate_up.rows()) + "x" + std::to_string(w_gate_up.cols()) +
                                            " " + m_class(x.rows())
                                      : std::string());
    const int m = static_cast<int>(x.rows()), n = static_cast<int>(w_gate_up.rows()),
              k = static_cast<int>(w_gate_up.cols());
    Result<bool> raw = impl_->gemm->linear_fp8_quantized_unscaled(static_cast<const uint8_t*>(x.data),
                                                                  static_cast<const uint8_t*>(w_gate_up.data),
                                                                  bf16_of(gate_up), m, n, k, impl_->stream);
    if (!raw.ok()) {
      impl_->fail(raw.error());
      return;
    }
    if (*raw) {
      impl_->fail(gpu::silu_mul_fp8(bf16_of(gate_up), gate_up.rows(), act.cols(), static_cast<uint8_t*>(act.data),
                                    const_cast<float*>(act.scale), impl_->stream, x.scale, w_gate_up.scale));
      return;
    }
  }
  Backend::linear_silu_mul_fp8(x, w_gate_up, gate_up, act);
}

// o_proj and down_proj (and q/k/v, unless EMBER_FP8_QKV_SCALES_IN_ROPE=0) on one
// device where cuBLASLt would scale y in a pass of its own: the next norm (the
// rope) applies the scales (Impl::pending) as it reads y. y's width a multiple
// of 8: the scale pass's 8-wide arithmetic, which the readers reproduce.
bool CudaBackend::linear_scaled_by_next_op(const Tensor& x, const Tensor& w, Tensor& y, ScalesReader reader) {
  // Under tensor parallelism o's and down's outputs are summed across ranks before their norm; q/k/v are
  // column-parallel (a rank's rows and scales are its own, no all-reduce before the rope).
  const bool norm = reader == ScalesReader::kRmsNorm;
  if (!impl_->fused_fp8_scales || (norm && (comm_ != nullptr || y.cols() > 32768)) ||
      (!norm && !impl_->fp8_qkv_scales_in_rope) || w.dtype != DType::kF8E4M3 || y.dtype != DType::kBF16 ||
      y.cols() % 8 != 0 || reinterpret_cast<uintptr_t>(y.data) % 16 != 0 ||
      (x.dtype != DType::kF8E4M3 && x.dtype != DType::kBF16))
    return false;
  Impl::Timed timed(*impl_, "linear_scaled_by_next_op",
                    impl_->profiler
                        ? std::to_string(w.rows()) + "x" + std::to_string(w.cols()) + " " + m_class(x.rows())
                        : std::string());
  const int m = static_cast<int>(x.rows()), n = static_cast<int>(w.rows()), k = static_cast<int>(w.cols());
  const auto* wq = static_cast<const uint8_t*>(w.data);
  const float* x_scale = x.scale;
  Result<bool> raw =
      x.dtype == DType::kF8E4M3
          ? impl_->gemm->linear_fp8_quantized_unscaled(static_cast<const uint8_t*>(x.data), wq, bf16_of(y), m, n, k,
                                                       impl_->stream)
          : impl_->gemm->linear_fp8_unscaled(bf16_of(x), wq, bf16_of(y), m, n, k, impl_->stream, &x_scale);
  if (!raw.ok()) {
    impl_->fail(raw.error());
    return false;
  }
  if (!*raw) return false;
  impl_->pending = {y.data, x_scale, w.scale, reader};
  return true;
}

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  impl_->no_pending_scales();
  if (w.dtype != DType::kBF16 && (w.dtype != DType::kF8E4M3 || w.scale == nullptr)) {
    impl_->fail(Error{"CudaBackend::linear: weights must be bf16, or fp8 with row scales, on the GPU (the runner "
                      "converts them)"});
    return;
  }
  assert(x.cols() == w.cols() && y.cols() == w.rows() && y.rows() == x.rows());
  const bool y_f32 = y.dtype == DType::kF32;
  // (the shape string only when profiling: linear runs hundreds of times a step)
  Impl::Timed timed(*impl_, "linear",
                    impl_->profiler ? std::to_string(w.rows()) + "x" + std::to_string(w.cols()) + " " + m_class(x.rows())
                                    : std::string());
  const float* b = bias ? bias->f32() : nullptr;
  const int m = static_cast<int>(x.rows()), n = static_cast<int>(w.rows()), k = static_cast<int>(w.cols());
  if (w.dtype == DType::kF8E4M3 && x.dtype == DType::kF8E4M3) {  // x from rms_norm_fp8 / silu_mul_fp8
    impl_->fail(impl_->gemm->linear_fp8_quantized(static_cast<const uint8_t*>(x.data), x.scale,
                                                  static_cast<const uint8_t*>(w.data), w.scale, b, y.data, y_f32, m, n,
                                                  k, impl_->stream));
    return;
  }
  if (w.dtype == DType::kF8E4M3) {
    impl_->fail(impl_->gemm->linear_fp8(bf16_of(x), static_cast<const uint8_t*>(w.data), w.scale, b, y.data, y_f32, m,
                                        n, k, impl_->stream));
    return;
  }
  impl_->fail(impl_->gemm->linear(bf16_of(x), bf16_of(w), b, y.data, y_f32, m, n, k, impl_->stream));
}

Status CudaBackend::prepare_rope(const RopeConfig& rope, int64_t head_dim) {
  Impl& m = *impl_;
  if (m.inv_freq != nullptr && m.rope_dim == head_dim && same_rope(m.rope, rope)) return Status::success();
  if (m.capturing()) return Error{"CudaBackend: rope frequencies must be prepared before graph capture"};
  const std::vector<float> f = rope_inv_freq(rope, head_dim);
  cudaFree(m.inv_freq);
  m.inv_freq = nullptr;
  EMBER_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&m.inv_freq), f.size() * sizeof(float)));
  EMBER_CUDA_TRY(cudaMemcpy(m.inv_freq, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice));
  m.rope = rope;
  m.rope_dim = head_dim;
  return Status::success();
}

void CudaBackend::rope_and_cache_write(Tensor& q, Tensor& k, const Tensor& v, const ForwardInputs& in,
                                       const RopeConfig& rope, int64_t head_dim, Tensor& k_cache, Tensor& v_cache) {
  Impl& m = *impl_;
  if (Status s = prepare_rope(rope, head_dim); !s.ok()) return m.fail(s);
  Impl::Timed timed(m, "rope_and_cache_write", m_class(in.num_tokens()));
  const int64_t hq = q.cols() / head_dim, hkv = k.cols() / head_dim;
  if (k_cache.dtype == DType::kF8E4M3) {
    m.fail(gpu::rope_and_cache_write(bf16_of(q), bf16_of(k), bf16_of(v), m.dev<int32_t>(m.positions),
                                     m.dev<int64_t>(m.slots), m.inv_freq, in.num_tokens(), hq, hkv, head_dim,
                                     fp8_cache(k_cache, v_cache), m.stream));
    return;
  }
  m.fail(gpu::rope_and_cache_write(bf16_of(q), bf16_of(k), bf16_of(v), m.dev<int32_t>(m.positions),
                                   m.dev<int64_t>(m.slots), m.inv_freq, in.num_tokens(), hq, hkv, head_dim,
                                   bf16_of(k_cache), bf16_of(v_cache), m.stream));
}

void CudaBackend::set_kv_scale(const Tensor& x, int64_t col, int64_t width, int64_t rope_head_dim, float range,
                               Tensor& cache) {
  Impl& m = *impl_;
  m.no_pending_norm();
  if (cache.dtype != DType::kF8E4M3 || cache.scale == nullptr)
    return m.fail(Error{"set_kv_scale: not an FP8 cache with its scale"});
  // The scale is the runner's device float (CudaModelRunner's kv_ pool), written here as the contract says.
  m.fail(gpu::kv_scale_from_max(bf16_of(x), x.rows(), x.cols(), col, width, rope_head_dim, range,
                                const_cast<float*>(cache.scale), m.stream));
}

void CudaBackend::qkv_rope_and_cache_write(const Tensor& qkv, const ForwardInputs& in, const RopeConfig& rope,
                                           int64_t head_dim, Tensor& q, Tensor& k_cache, Tensor& v_cache) {
  Impl& m = *impl_;
  if (Status s = prepare_rope(rope, head_dim); !s.ok()) return m.fail(s);
  const int64_t hq = q.cols() / head_dim, hkv = k_cache.dim(2), stride = qkv.cols();
  assert(stride == (hq + 2 * hkv) * head_dim);
  const bf16* base = bf16_of(qkv);
  Impl::Timed timed(m, "qkv_rope_and_cache_write", m_class(in.num_tokens()));
  gpu::QkvRows rows;
  rows.q_in = base;
  rows.q_out = bf16_of(q);
  rows.q_stride = stride;
  rows.k_in = base + hq * head_dim;
  rows.k_stride = stride;
  rows.v_in = base + (hq + hkv) * head_dim;
  rows.v_stride = stride;
  if (const Impl::PendingScales p = m.take_pending(qkv.data, ScalesReader::kQkvRope); p.y != nullptr) {
    rows.x_scale = p.row;
    rows.q_w_scale = p.col;
    rows.k_w_scale = p.col + hq * head_dim;
    rows.v_w_scale = p.col + (hq + hkv) * head_dim;
  }
  if (k_cache.dtype == DType::kF8E4M3) {
    m.fail(gpu::rope_qkv_and_cache_write(rows, m.dev<int32_t>(m.positions), m.dev<int64_t>(m.slots), m.inv_freq,
                                         in.num_tokens(), hq, hkv, head_dim, fp8_cache(k_cache, v_cache), m.stream));
    return;
  }
  m.fail(gpu::rope_qkv_and_cache_write(rows, m.dev<int32_t>(m.positions), m.dev<int64_t>(m.slots), m.inv_freq,
                                       in.num_tokens(), hq, hkv, head_dim, bf16_of(k_cache), bf16_of(v_cache),
                                       m.stream));
}

// FP8 decode on the CUDA-core GEMV (1-2 rows, fp8.h) (unless EMBER_FP8_GEMV_EPILOGUES=0): the q/k/v GEMV
// rotates q and k and writes the cache in its epilogue (fp8.h).
bool CudaBackend::linear_rope_and_cache_write(const Tensor& x, const Tensor& w_qkv, const ForwardInputs& in,
                                              const RopeConfig& rope, int64_t head_dim, Tensor& q, Tensor& k_cache,
                                              Tensor& v_cache) {
  Impl& m = *impl_;
  const int64_t hq = q.cols() / head_dim, hkv = k_cache.dim(2);
  const gpu::GemvNormParts norm = m.take_pending_norm(x.data);
  if (!m.gemv_epilogue_takes(x, w_qkv) || w_qkv.rows() != (hq + 2 * hkv) * head_dim || head_dim % 2 != 0 ||
      in.num_tokens() != x.rows())
    return m.refused_with_pending_norm(norm);
  m.no_pending_scales();
  if (Status s = prepare_rope(rope, head_dim); !s.ok()) {
    m.fail(s);
    return true;
  }
  Impl::Timed timed(m, "linear_rope_and_cache_write", m_class(in.num_tokens()));
  gpu::GemvRopeWrite o;
  o.q_out = bf16_of(q);
  o.positions = m.dev<int32_t>(m.positions);
  o.slots = m.dev<int64_t>(m.slots);
  o.inv_freq = m.inv_freq;
  o.hq = static_cast<int>(hq);
  o.hkv = static_cast<int>(hkv);
  o.d = static_cast<int>(head_dim);
  o.k_cache = k_cache.data;
  o.v_cache = v_cache.data;
  if (k_cache.dtype == DType::kF8E4M3) {
    const gpu::Fp8KvCache c = fp8_cache(k_cache, v_cache);
    o.fp8_cache = true;
    o.k_scale = c.k_scale;
    o.v_scale = c.v_scale;
  }
  m.fail(gpu::gemv_fp8_rope_and_cache_write(bf16_of(x), static_cast<const uint8_t*>(w_qkv.data), w_qkv.scale,
                                            static_cast<int>(x.rows()), static_cast<int>(w_qkv.cols()), o, m.stream,
                                            norm));
  return true;
}

// FP8 decode on the CUDA-core GEMV (1-2 rows, fp8.h) (unless EMBER_FP8_GEMV_EPILOGUES=0): the gate/up GEMV
// applies the SiLU in its epilogue (fp8.h).
bool CudaBackend::linear_silu_mul(const Tensor& x, const Tensor& w_gate_up, Tensor& act) {
  Impl& m = *impl_;
  const gpu::GemvNormParts norm = m.take_pending_norm(x.data);
  if (!m.gemv_epilogue_takes(x, w_gate_up) || w_gate_up.rows() != 2 * act.cols() || act.rows() != x.rows() ||
      act.dtype != DType::kBF16)
    return m.refused_with_pending_norm(norm);
  m.no_pending_scales();
  Impl::Timed timed(m, "linear_silu_mul", m_class(x.rows()));
  m.fail(gpu::gemv_fp8_silu_mul(bf16_of(x), static_cast<const uint8_t*>(w_gate_up.data), w_gate_up.scale,
                                static_cast<int>(x.rows()), static_cast<int>(act.cols()),
                                static_cast<int>(w_gate_up.cols()), bf16_of(act), m.stream, norm));
  return true;
}

// FP8 decode on the CUDA-core GEMV (1-2 rows) on one device (unless EMBER_FP8_NORM_SPLIT=0 or
// EMBER_FP8_GEMV_EPILOGUES=0): o or down adds to the residual and leaves the
// norm's last step to the GEMV epilogue over (out, next) (fp8.h, GemvNormAdd).
bool CudaBackend::linear_add_for_next_norm(const Tensor& x, const Tensor& w, Tensor& residual,
                                           const Tensor& norm_weight, float eps, const Tensor& next, Tensor& out) {
  Impl& m = *impl_;
  const int64_t n = w.rows();
  if (!m.fp8_norm_split || comm_ != nullptr || !m.gemv_epilogue_takes(x, w) || !m.gemv_epilogue_takes(out, next) ||
      next.cols() != n || out.cols() != n || residual.cols() != n || out.rows() != x.rows() ||
      residual.rows() != x.rows() || residual.dtype != DType::kBF16 || norm_weight.dtype != DType::kF32 ||
      norm_weight.numel() != n || gpu::gemv_fp8_norm_partials(static_cast<int>(n)) > Impl::kNormPartialsMax)
    return false;
  m.no_pending_scales();
  Impl::Timed timed(
      m, "linear_add_for_next_norm",
      m.profiler ? std::to_string(n) + "x" + std::to_string(w.cols()) + " " + m_class(x.rows()) : std::string());
  gpu::GemvNormAdd o;
  o.residual = bf16_of(residual);
  o.weight = norm_weight.f32();
  o.out = bf16_of(out);
  o.partials = m.norm_partials;
  const Status s =
      gpu::gemv_fp8_add_for_norm(bf16_of(x), static_cast<const uint8_t*>(w.data), w.scale, static_cast<int>(x.rows()),
                                 static_cast<int>(n), static_cast<int>(w.cols()), o, m.stream);
  if (!s.ok()) {
    m.fail(s);
    return true;  // (the step has failed; the caller's fallback would read a half-written residual)
  }
  m.pending_norm = {out.data,
                    gpu::GemvNormParts{m.norm_partials, gpu::gemv_fp8_norm_partials(static_cast<int>(n)), eps}};
  return true;
}

void CudaBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                  const ForwardInputs& /*in*/, int64_t num_heads, float scale, Tensor& out) {
  Impl& m = *impl_;
  m.no_pending_norm();
  PagedAttentionArgs a;
  a.q = bf16_of(q);
  a.out = bf16_of(out);
  a.k_cache = k_cache.data;
  a.v_cache = v_cache.data;
  if (k_cache.dtype == DType::kF8E4M3) {
    a.kv_fp8 = true;
    a.k_scale = k_cache.scale;
    a.v_scale = v_cache.scale;
  } else {
    assert(k_cache.dtype == DType::kBF16 && v_cache.dtype == DType::kBF16);
  }
  a.query_start_loc = m.dev<int32_t>(m.query_start_loc);
  a.seq_lens = m.dev<int32_t>(m.seq_lens);
  a.block_tables = m.dev<int32_t>(m.block_tables);
  a.num_seqs = m.num_seqs;
  a.num_tokens = m.num_tokens;
  a.num_heads = static_cast<int32_t>(num_heads);
  a.num_kv_heads = static_cast<int32_t>(k_cache.dim(2));
  a.head_dim = static_cast<int32_t>(k_cache.dim(3));
  a.block_size = static_cast<int32_t>(k_cache.dim(1));
  a.max_blocks_per_seq = m.max_blocks_per_seq;
  a.max_seq_len = m.seq_len_bound > 0 ? m.seq_len_bound : m.max_seq_len;
  a.max_query_len = m.max_query_len;
  a.scale = scale;
  const bool decode = m.max_query_len == 1;
  // Decodes inside a prefill step go to the decode kernel too (see
  // paged_attention_mixed); steps without any stay on the prefill kernel.
  const bool mixed = !decode && m.num_decode_seqs > 0;
  if (decode || mixed) {
    // Sized once for the largest step the limits allow, so capture never allocates.
    const size_t need = paged_attention_workspace_bytes(
        m.limits.max_seqs, a.num_heads, a.num_kv_heads, a.head_dim,
        static_cast<int>(std::max<int64_t>(m.limits.max_model_len, a.max_seq_len)));
    if (need > m.attention_workspace_bytes) {
      if (m.capturing()) return m.fail(Error{"CudaBackend: attention workspace must be sized before capture"});
      cudaStreamSynchronize(m.stream);
      cudaFree(m.attention_workspace);
      m.attention_workspace = nullptr;
      m.attention_workspace_bytes = 0;
      m.check(cudaMalloc(&m.attention_workspace, need), "attention workspace");
      if (!m.first_error.ok()) return;
      m.attention_workspace_bytes = need;
    }
    a.workspace = m.attention_workspace;
    a.workspace_bytes = m.attention_workspace_bytes;
    a.decode_early_kv = m.attention_early_kv;
    if (mixed) {
      Impl::Timed timed(m, "attention mixed", m_class(a.num_tokens));
      m.fail(paged_attention_mixed(a, m.stream));
    } else {
      Impl::Timed timed(m, "attention decode", m_class(a.num_seqs));
      m.fail(paged_attention_decode(a, m.stream));
    }
  } else {
    Impl::Timed timed(m, "attention prefill", m_class(a.num_tokens));
    m.fail(paged_attention_prefill(a, m.stream));
  }
}

void CudaBackend::silu_mul(const Tensor& x, Tensor& out) {
  impl_->no_pending_norm();
  Impl::Timed timed(*impl_, "silu_mul", m_class(x.rows()));
  impl_->fail(gpu::silu_mul(bf16_of(x), x.rows(), out.cols(), bf16_of(out), impl_->stream));
}

void CudaBackend::all_reduce(Tensor& x) {
  impl_->no_pending_norm();
  if (comm_ == nullptr) return;
  Impl::Timed timed(*impl_, "all_reduce", m_class(x.rows()));
  comm_->all_reduce(x, impl_->stream);
}

void CudaBackend::gather_logit_rows(const Tensor& x, const ForwardInputs& in, Tensor& out) {
  Impl& m = *impl_;
  m.no_pending_norm();
  Impl::Timed timed(m, "gather_logit_rows");
  m.fail(gpu::gather_rows(bf16_of(x), m.dev<int32_t>(m.logits_indices),
                          static_cast<int64_t>(in.logits_indices.size()), x.cols(), bf16_of(out), m.stream));
}

}  // namespace ember
