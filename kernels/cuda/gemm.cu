// Gemm: dispatch between the small-M gemv kernel and cuBLASLt, and the
// cuBLASLt plans. cuBLASLt is column-major: row-major y[M,N] = x[M,K] w[N,K]^T
// is, read column-major, D[N,M] = A^T B with A = w as a K x N matrix (ld K),
// B = x as K x M (ld K), D ld N: the "TN" layout cuBLASLt serves best (and
// the only one its FP8 kernels take). The bias epilogue adds bias[row of D] =
// bias[n].
//
// FP8 (linear_fp8): x is quantized per row (per token) into a scratch buffer,
// then an E4M3 x E4M3 GEMM with float32 accumulation applies both scales as
// "outer vectors" (A's per output channel, B's per token) before writing
// bf16; where cuBLASLt offers no such algorithm (the H100's and H200's
// cuBLAS of 2026-12 did not) it writes the raw product of the codes in bf16
// and scale_fp8_output_inplace (fp8.cu) applies the scales over it: measured
// on the H100, the float32 round trip it replaces took a third of an FP8
// GEMM's time at 8,192 tokens.

#include <cublasLt.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops_common.cuh"

namespace ember::gpu {
namespace {

Status lt_status(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::success();
  return Error{std::string("cuBLASLt ") + what + ": " + cublasLtGetStatusName(s) + ": " + cublasLtGetStatusString(s)};
}

#define EMBER_LT_TRY(expr)                         \
  do {                                             \
    ::ember::Status s_ = lt_status((expr), #expr); \
    if (!s_.ok()) return s_.error();               \
  } while (0)

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristic
// assumes 256-byte aligned buffers unless told otherwise, and a row offset of
// a cudaMalloc'd buffer (a gathered row, a slice) can be less aligned.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

// Fallback when no algorithm takes a float32 bias with this output type.
template <class T>
__global__ void add_bias_kernel(T* y, const float* bias, int n, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = static_cast<T>(static_cast<float>(y[i]) + bias[i % n]);
  }
}

// Grows a scratch buffer to at least `bytes` (outside graph capture only: a
// captured step must find it sized by an earlier, larger step).
Status grow(void*& buffer, size_t& capacity, size_t bytes, cudaStream_t stream, const char* what) {
  if (bytes <= capacity) return Status::success();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &st) != cudaSuccess || st != cudaStreamCaptureStatusNone)
    return Error{std::string("linear_fp8: the ") + what + " scratch (" + std::to_string(capacity) +
                 " bytes) is too small inside graph capture; run a larger step first"};
  size_t want = 256;
  while (want < bytes) want *= 2;
  if (buffer != nullptr) {
    EMBER_CUDA_TRY(cudaStreamSynchronize(stream));
    cudaFree(buffer);
    buffer = nullptr;
    capacity = 0;
  }
  EMBER_CUDA_TRY(cudaMalloc(&buffer, want));
  capacity = want;
  return Status::success();
}

Status add_bias(const float* bias, void* y, bool y_f32, int m, int n, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(m) * n;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65536));
  if (y_f32) {
    add_bias_kernel<float><<<blocks, 256, 0, stream>>>(static_cast<float*>(y), bias, n, total);
  } else {
    add_bias_kernel<bf16><<<blocks, 256, 0, stream>>>(static_cast<bf16*>(y), bias, n, total);
  }
  return cuda_status(cudaGetLastError(), "add_bias launch");
}

}  // namespace

struct Gemm::Impl {
  // M, N, K, y_f32, has_bias, alignments of x, w, y, operand type (kBf16 | kFp8).
  enum Operands { kBf16, kFp8 };
  // FP8: both scales inside cuBLASLt ("outer vectors", where it offers them);
  // else its raw product of codes, then scale_fp8_output: in place over a bf16
  // y, or from a float32 scratch when y is float32.
  enum class Fp8Epilogue { kOuterScales, kBf16Raw, kFloat32Raw };
  using Key = std::tuple<int, int, int, bool, bool, uint32_t, uint32_t, uint32_t, int>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool bias_in_epilogue = false;
    Fp8Epilogue fp8 = Fp8Epilogue::kOuterScales;  // FP8: where the two scales are applied
    std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's, in its order
    bool tuned = false;
  };

  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::mutex mu;  // guards plans
  std::map<Key, Plan> plans;
  int autotune_max_m = 0;
  // EMBER_GEMV=mma: M <= kGemvMmaMaxM through the tensor-core kernel instead of
  // the FMA one (M <= kGemvDispatchMaxM) and cuBLASLt (a benchmarking knob
  // until the GPU run decides the default; read once at create).
  bool small_m_mma = false;
  // FP8 scratch: x's codes and scales, and the float32 product when the
  // scales cannot be fused (grown outside graph capture, never shrunk).
  void* fp8_x = nullptr;        // uint8 [M, K]
  void* fp8_x_scale = nullptr;  // float [M]
  void* fp8_acc = nullptr;      // float [M, N]
  size_t fp8_x_bytes = 0, fp8_x_scale_bytes = 0, fp8_acc_bytes = 0;
  int fp8_gemv_max_m = kGemvFp8DispatchMaxM;     // EMBER_FP8_GEMV_MAX_M: a benchmarking knob
  int fp8_mma_max_m = kGemvMmaFp8DispatchMaxM;   // EMBER_FP8_MMA_MAX_M: likewise
  int fp8_gemv_variant = 0;                      // EMBER_FP8_GEMV_VARIANT: likewise (fp8.h)
  // cuBLASLt's FP8 "fast accumulation" (no periodic promotion of the tensor
  // cores' partial sums to float32, as vLLM's CUTLASS FP8 kernels run): off.
  // Measured on the H100 it saved nothing measurable (the GEMMs at 512-8,192
  // tokens took 0.95-1.13x the precise time) and its error was 10x (relative
  // L2 1.3e-3 against 1.2e-4 at K = 4,096). set_fp8_fast_accum;
  // EMBER_FP8_FAST_ACCUM=1 at create.
  bool fp8_fast_accum = false;
  // linear_fp8's kernel for M rows over K (fp8.h's rule: by M alone; the kernels' alignment aside).
  enum class Fp8Kernel { kGemv, kMma, kCublasLt };
  Fp8Kernel fp8_kernel(int m, int k) const {
    if (m < 1 || k <= 0 || k % 16 != 0) return Fp8Kernel::kCublasLt;
    if (m <= fp8_gemv_max_m && m <= kGemvFp8MaxM) return Fp8Kernel::kGemv;
    if (m <= fp8_mma_max_m && m <= kGemvMmaMaxM) return Fp8Kernel::kMma;
    return Fp8Kernel::kCublasLt;
  }
  void* flush = nullptr;  // tuning: written between timed runs so weights come from HBM, as in a step
  static constexpr size_t kFlushBytes = size_t{96} << 20;  // > the 50 MB L2 of an H100

  ~Impl() {
    for (auto& [key, p] : plans) destroy(p);
    if (flush) cudaFree(flush);
    if (fp8_x) cudaFree(fp8_x);
    if (fp8_x_scale) cudaFree(fp8_x_scale);
    if (fp8_acc) cudaFree(fp8_acc);
    if (workspace) cudaFree(workspace);
    if (handle) cublasLtDestroy(handle);
  }

  static void destroy(Plan& p) {
    if (p.d) cublasLtMatrixLayoutDestroy(p.d);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.op) cublasLtMatmulDescDestroy(p.op);
    p = Plan{};
  }

  // Descriptors and the heuristic's first algorithm that fits the workspace.
  // `with_bias`: ask for the float32-bias epilogue.
  // FP8 (the key's operands): `fp8_epi` says where the scales go.
  Status build(const Key& key, bool with_bias, Plan& p, Fp8Epilogue fp8_epi = Fp8Epilogue::kOuterScales) {
    const auto [m, n, k, y_f32, has_bias, align_x, align_w, key_align_y, operands] = key;
    (void)has_bias;
    const bool fp8 = operands == kFp8;
    const bool fp8_outer = fp8 && fp8_epi == Fp8Epilogue::kOuterScales;
    const bool f32_scratch = fp8 && fp8_epi == Fp8Epilogue::kFloat32Raw;
    const cudaDataType_t in_type = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    const cudaDataType_t out_type = y_f32 || f32_scratch ? CUDA_R_32F : CUDA_R_16BF;
    const uint32_t align_y = f32_scratch ? 256u : key_align_y;
    EMBER_LT_TRY(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    EMBER_LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
    EMBER_LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
    if (with_bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      const int32_t bias_type = CUDA_R_32F;
      EMBER_LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
      EMBER_LT_TRY(
          cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    }
    if (fp8) {
      const int8_t fast = fp8_fast_accum ? 1 : 0;
      EMBER_LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)));
    }
    if (fp8_outer) {
      const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
      EMBER_LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)));
      EMBER_LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)));
    }
    EMBER_LT_TRY(cublasLtMatrixLayoutCreate(&p.a, in_type, k, n, k));
    EMBER_LT_TRY(cublasLtMatrixLayoutCreate(&p.b, in_type, k, m, k));
    EMBER_LT_TRY(cublasLtMatrixLayoutCreate(&p.d, out_type, n, m, n));

    cublasLtMatmulPreference_t pref = nullptr;
    EMBER_LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = workspace_bytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_w, sizeof(align_w));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_x, sizeof(align_x));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_y, sizeof(align_y));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_y, sizeof(align_y));
    cublasLtMatmulHeuristicResult_t results[8];
    int found = 0;
    const cublasStatus_t hs =
        cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.d, p.d, pref, 8, results, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    for (int i = 0; hs == CUBLAS_STATUS_SUCCESS && i < found; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= workspace_bytes)
        p.candidates.push_back(results[i].algo);
    }
    if (!p.candidates.empty()) {
      p.algo = p.candidates.front();
      p.bias_in_epilogue = with_bias;
      p.fp8 = fp8_epi;
      return Status::success();
    }
    return Error{"cuBLASLt: no algorithm for M " + std::to_string(m) + " N " + std::to_string(n) + " K " +
                 std::to_string(k) + (fp8 ? (fp8_outer ? " fp8 with outer-vector scales" : " fp8") : "") +
                 (y_f32 ? " (f32 out)" : " (bf16 out)") + (with_bias ? " with bias" : "")};
  }

  // Times every candidate on this call's buffers (a warm-up, then the best of
  // 3 runs, each after the L2 was overwritten: in a forward step the weights
  // stream from HBM, and a 32 MB matrix timed back to back would sit in L2)
  // and keeps the fastest. Called once per plan, outside graph capture, with
  // the lock held; it synchronizes the stream (a one-time cost per shape).
  void tune(Plan& p, const void* x, const void* w, const float* bias, void* y, cudaStream_t stream) {
    p.tuned = true;
    if (p.candidates.size() < 2) return;
    if (flush == nullptr && cudaMalloc(&flush, kFlushBytes) != cudaSuccess) {
      flush = nullptr;
      cudaGetLastError();
      return;  // no room to tune honestly: keep the heuristic's choice
    }
    cudaEvent_t start = nullptr, stop = nullptr;
    if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) {
      if (start) cudaEventDestroy(start);
      return;
    }
    if (p.bias_in_epilogue)
      cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    const float alpha = 1.0f, beta = 0.0f;
    float best_ms = 0;
    const cublasLtMatmulAlgo_t* best = nullptr;
    for (const cublasLtMatmulAlgo_t& algo : p.candidates) {
      auto run = [&] {
        return cublasLtMatmul(handle, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &algo, workspace,
                              workspace_bytes, stream) == CUBLAS_STATUS_SUCCESS;
      };
      if (!run()) continue;
      float ms = 0;
      bool ok = true;
      for (int i = 0; i < 3 && ok; ++i) {
        cudaMemsetAsync(flush, i, kFlushBytes, stream);
        cudaEventRecord(start, stream);
        ok = run();
        cudaEventRecord(stop, stream);
        float once = 0;
        ok = ok && cudaEventSynchronize(stop) == cudaSuccess && cudaEventElapsedTime(&once, start, stop) == cudaSuccess;
        if (ok && (i == 0 || once < ms)) ms = once;
      }
      if (!ok) continue;
      if (best == nullptr || ms < best_ms) {
        best_ms = ms;
        best = &algo;
      }
    }
    if (best) p.algo = *best;
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }

  // The FP8 GEMM of plan p into d: the scales go in as pointers where p applies
  // them (kOuterScales); otherwise d gets the raw product of the codes.
  Status matmul_fp8(Plan& p, int m, const uint8_t* xq, const float* x_scale, const uint8_t* w, const float* w_scale,
                    void* d, cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    std::lock_guard<std::mutex> lock(mu);
    if (p.fp8 == Fp8Epilogue::kOuterScales) {
      EMBER_LT_TRY(
          cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof(w_scale)));
      EMBER_LT_TRY(
          cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof(x_scale)));
    }
    if (!p.tuned && m <= autotune_max_m) {
      cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
      if (cudaStreamIsCapturing(stream, &st) == cudaSuccess && st == cudaStreamCaptureStatusNone)
        tune(p, xq, w, nullptr, d, stream);
    }
    EMBER_LT_TRY(cublasLtMatmul(handle, p.op, &alpha, w, p.a, xq, p.b, &beta, d, p.d, d, p.d, &p.algo, workspace,
                                workspace_bytes, stream));
    return Status::success();
  }

  Result<Plan*> plan_for(const Key& key) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = plans.find(key);
    if (it != plans.end()) return &it->second;
    Plan p;
    if (std::get<8>(key) == kFp8) {  // scales in the GEMM, else the raw product and scale_fp8_output
      if (build(key, false, p, Fp8Epilogue::kOuterScales).ok()) return &plans.emplace(key, p).first->second;
      destroy(p);
      const bool y_f32 = std::get<3>(key);
      if (Status raw = build(key, false, p, y_f32 ? Fp8Epilogue::kFloat32Raw : Fp8Epilogue::kBf16Raw); !raw.ok()) {
        destroy(p);
        return raw.error();
      }
      return &plans.emplace(key, p).first->second;
    }
    Status fused = build(key, std::get<4>(key), p);
    if (!fused.ok() && std::get<4>(key)) {  // no fused float32 bias: plain GEMM + add_bias_kernel
      destroy(p);
      Status plain = build(key, false, p);
      if (!plain.ok()) {
        destroy(p);
        return plain.error();
      }
    } else if (!fused.ok()) {
      destroy(p);
      return fused.error();
    }
    return &plans.emplace(key, p).first->second;
  }
};

Gemm::Gemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
void Gemm::set_autotune_max_m(int max_m) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->autotune_max_m = max_m;
  if (max_m == 0 && impl_->flush != nullptr) {  // tuning is over: give the scratch back
    cudaDeviceSynchronize();
    cudaFree(impl_->flush);
    impl_->flush = nullptr;
  }
}
void Gemm::set_fp8_fast_accum(bool on) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->fp8_fast_accum == on) return;
  impl_->fp8_fast_accum = on;
  for (auto it = impl_->plans.begin(); it != impl_->plans.end();) {  // rebuilt with the new setting on next use
    if (std::get<8>(it->first) == Impl::kFp8) {
      Impl::destroy(it->second);
      it = impl_->plans.erase(it);
    } else {
      ++it;
    }
  }
}

std::string Gemm::fp8_path(int m, int n, int k) {
  const Impl::Fp8Kernel kernel = impl_->fp8_kernel(m, k);
  if (kernel == Impl::Fp8Kernel::kGemv) return "gemv_fp8";
  if (kernel == Impl::Fp8Kernel::kMma) return "gemv_mma_fp8";
  const Impl::Key key{m, n, k, false, false, 256u, 256u, 256u, Impl::kFp8};
  Result<Impl::Plan*> plan = impl_->plan_for(key);
  if (!plan.ok()) return "none: " + plan.error().message;
  const Impl::Fp8Epilogue e = (*plan)->fp8;
  return std::string(e == Impl::Fp8Epilogue::kOuterScales ? "cublaslt outer-vector scales"
                     : e == Impl::Fp8Epilogue::kBf16Raw   ? "cublaslt bf16 + in-place scale pass"
                                                          : "cublaslt float32 + scale pass") +
         (impl_->fp8_fast_accum ? ", fast accumulation" : "");
}

Gemm::~Gemm() = default;

Result<std::unique_ptr<Gemm>> Gemm::create(size_t workspace_bytes) {
  auto impl = std::make_unique<Impl>();
  if (const char* env = std::getenv("EMBER_GEMV"); env != nullptr) impl->small_m_mma = std::string(env) == "mma";
  if (const char* env = std::getenv("EMBER_FP8_GEMV_MAX_M"); env != nullptr)
    impl->fp8_gemv_max_m = std::clamp(std::atoi(env), 0, kGemvFp8MaxM);
  if (const char* env = std::getenv("EMBER_FP8_GEMV_VARIANT"); env != nullptr)
    impl->fp8_gemv_variant = std::clamp(std::atoi(env), 0, kGemvFp8Variants - 1);
  if (const char* env = std::getenv("EMBER_FP8_MMA_MAX_M"); env != nullptr)
    impl->fp8_mma_max_m = std::clamp(std::atoi(env), 0, kGemvMmaMaxM);
  if (const char* env = std::getenv("EMBER_FP8_FAST_ACCUM"); env != nullptr)
    impl->fp8_fast_accum = std::string(env) == "1";
  EMBER_LT_TRY(cublasLtCreate(&impl->handle));
  if (workspace_bytes > 0) {
    EMBER_CUDA_TRY(cudaMalloc(&impl->workspace, workspace_bytes));
    impl->workspace_bytes = workspace_bytes;
  }
  return std::unique_ptr<Gemm>(new Gemm(std::move(impl)));
}

Status Gemm::linear(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int m, int n, int k,
                    cudaStream_t stream) {
  if (impl_->small_m_mma) {
    if (gemv_mma_supports(x, w, m, k)) return gemv_mma(x, w, bias, y, y_f32, m, n, k, stream);
  } else if (m >= 2 && m <= kGemvMmaDispatchMaxM && int64_t{n} * k * 2 <= kGemvMmaDispatchMaxBytes &&
             gemv_mma_supports(x, w, m, k)) {
    return gemv_mma_variant(x, w, bias, y, y_f32, m, n, k, kGemvMmaDispatchVariant, /*pdl=*/true, stream);
  } else if (m <= kGemvDispatchMaxM && gemv_supports(x, w, m, k)) {
    return gemv(x, w, bias, y, y_f32, m, n, k, stream);
  }
  return linear_cublaslt(x, w, bias, y, y_f32, m, n, k, stream);
}

Status Gemm::linear_cublaslt(const bf16* x, const bf16* w, const float* bias, void* y, bool y_f32, int m, int n, int k,
                             cudaStream_t stream) {
  if (m < 0 || n < 0 || k < 0)
    return Error{"linear: negative shape M " + std::to_string(m) + " N " + std::to_string(n) + " K " +
                 std::to_string(k)};
  if (m == 0 || n == 0) return Status::success();
  if (k == 0) return Error{"linear: K == 0 is not supported"};
  // The epilogue reads the bias with vector loads: an unaligned bias (never
  // the case for cudaMalloc'd weights) goes through the separate kernel.
  const bool fuse_bias = bias != nullptr && aligned16(bias);
  const Impl::Key key{m, n, k, y_f32, fuse_bias, alignment_of(x), alignment_of(w), alignment_of(y), Impl::kBf16};
  Result<Impl::Plan*> plan = impl_->plan_for(key);
  if (!plan.ok()) return plan.error();
  Impl::Plan& p = **plan;
  const float alpha = 1.0f, beta = 0.0f;
  {
    // The descriptor is per shape, the bias pointer per call: set it each time
    // (host-side only, so capture-safe) under the lock, as plans are shared.
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!p.tuned && m <= impl_->autotune_max_m) {
      cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
      if (cudaStreamIsCapturing(stream, &st) == cudaSuccess && st == cudaStreamCaptureStatusNone)
        impl_->tune(p, x, w, bias, y, stream);
    }
    if (p.bias_in_epilogue)
      EMBER_LT_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    EMBER_LT_TRY(cublasLtMatmul(impl_->handle, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &p.algo,
                                impl_->workspace, impl_->workspace_bytes, stream));
  }
  if (bias == nullptr || p.bias_in_epilogue) return Status::success();
  return add_bias(bias, y, y_f32, m, n, stream);
}

Status Gemm::linear_fp8(const bf16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y, bool y_f32,
                        int m, int n, int k, cudaStream_t stream) {
  const Impl::Fp8Kernel kernel = impl_->fp8_kernel(m, k);
  if (kernel == Impl::Fp8Kernel::kGemv && gemv_fp8_supports(x, w, m, k))
    return gemv_fp8(x, w, w_scale, bias, y, y_f32, m, n, k, stream, impl_->fp8_gemv_variant);
  if (kernel == Impl::Fp8Kernel::kMma && gemv_mma_fp8_supports(x, w, m, k))
    return gemv_mma_fp8(x, w, w_scale, bias, y, y_f32, m, n, k, kGemvMmaFp8DispatchVariant, /*pdl=*/true, stream);
  return linear_fp8_cublaslt(x, w, w_scale, bias, y, y_f32, m, n, k, stream);
}

bool Gemm::fp8_uses_gemv(int m, int /*n*/, int k) const {
  return m >= 1 && k > 0 && k % 16 == 0 && impl_->fp8_kernel(m, k) == Impl::Fp8Kernel::kGemv;
}

bool Gemm::fp8_quantizes_x(int m, int /*n*/, int k) const {
  return m >= 1 && k > 0 && k % 16 == 0 && impl_->fp8_kernel(m, k) == Impl::Fp8Kernel::kCublasLt;
}

Status Gemm::linear_fp8_cublaslt(const bf16* x, const uint8_t* w, const float* w_scale, const float* bias, void* y,
                                 bool y_f32, int m, int n, int k, cudaStream_t stream) {
  if (m < 0 || n < 0 || k <= 0 || k % 16 != 0)
    return Error{"linear_fp8: shape M " + std::to_string(m) + " N " + std::to_string(n) + " K " + std::to_string(k) +
                 " (K must be a positive multiple of 16)"};
  if (m == 0 || n == 0) return Status::success();
  Impl& im = *impl_;
  EMBER_TRY_STATUS(grow(im.fp8_x, im.fp8_x_bytes, static_cast<size_t>(m) * k, stream, "activation"));
  EMBER_TRY_STATUS(grow(im.fp8_x_scale, im.fp8_x_scale_bytes, static_cast<size_t>(m) * sizeof(float), stream,
                        "activation scale"));
  float* x_scale = static_cast<float*>(im.fp8_x_scale);
  EMBER_TRY_STATUS(quantize_rows_fp8(x, m, k, static_cast<uint8_t*>(im.fp8_x), x_scale, stream));
  return linear_fp8_quantized(static_cast<const uint8_t*>(im.fp8_x), x_scale, w, w_scale, bias, y, y_f32, m, n, k,
                              stream);
}

Status Gemm::linear_fp8_quantized(const uint8_t* xq, const float* x_scale, const uint8_t* w, const float* w_scale,
                                  const float* bias, void* y, bool y_f32, int m, int n, int k, cudaStream_t stream) {
  if (m < 0 || n < 0 || k <= 0 || k % 16 != 0)
    return Error{"linear_fp8: shape M " + std::to_string(m) + " N " + std::to_string(n) + " K " + std::to_string(k) +
                 " (K must be a positive multiple of 16)"};
  if (m == 0 || n == 0) return Status::success();
  Impl& im = *impl_;
  const Impl::Key key{m, n, k, y_f32, false, alignment_of(xq), alignment_of(w), alignment_of(y), Impl::kFp8};
  Result<Impl::Plan*> plan = im.plan_for(key);
  if (!plan.ok()) return plan.error();
  Impl::Plan& p = **plan;
  void* d = y;
  if (p.fp8 == Impl::Fp8Epilogue::kFloat32Raw) {
    EMBER_TRY_STATUS(grow(im.fp8_acc, im.fp8_acc_bytes, static_cast<size_t>(m) * n * sizeof(float), stream, "product"));
    d = im.fp8_acc;
  }
  EMBER_TRY_STATUS(im.matmul_fp8(p, m, xq, x_scale, w, w_scale, d, stream));
  if (p.fp8 == Impl::Fp8Epilogue::kFloat32Raw)
    return scale_fp8_output(static_cast<const float*>(im.fp8_acc), x_scale, w_scale, bias, y, y_f32, m, n, stream);
  if (p.fp8 == Impl::Fp8Epilogue::kBf16Raw)
    return scale_fp8_output_inplace(static_cast<bf16*>(y), x_scale, w_scale, bias, m, n, stream);
  return bias == nullptr ? Status::success() : add_bias(bias, y, y_f32, m, n, stream);
}

Result<bool> Gemm::linear_fp8_unscaled(const bf16* x, const uint8_t* w, bf16* y, int m, int n, int k,
                                       cudaStream_t stream, const float** x_scale) {
  if (m <= 0 || n <= 0 || k <= 0 || k % 16 != 0 || impl_->fp8_kernel(m, k) != Impl::Fp8Kernel::kCublasLt)
    return false;
  Impl& im = *impl_;
  EMBER_TRY_STATUS(grow(im.fp8_x, im.fp8_x_bytes, static_cast<size_t>(m) * k, stream, "activation"));
  EMBER_TRY_STATUS(grow(im.fp8_x_scale, im.fp8_x_scale_bytes, static_cast<size_t>(m) * sizeof(float), stream,
                        "activation scale"));
  const Impl::Key key{m, n, k, false, false, alignment_of(im.fp8_x), alignment_of(w), alignment_of(y), Impl::kFp8};
  Result<Impl::Plan*> plan = im.plan_for(key);
  if (!plan.ok()) return plan.error();
  if ((*plan)->fp8 != Impl::Fp8Epilogue::kBf16Raw) return false;
  float* scale = static_cast<float*>(im.fp8_x_scale);
  EMBER_TRY_STATUS(quantize_rows_fp8(x, m, k, static_cast<uint8_t*>(im.fp8_x), scale, stream));
  EMBER_TRY_STATUS(im.matmul_fp8(**plan, m, static_cast<const uint8_t*>(im.fp8_x), nullptr, w, nullptr, y, stream));
  *x_scale = scale;
  return true;
}

Result<bool> Gemm::linear_fp8_quantized_unscaled(const uint8_t* xq, const uint8_t* w, bf16* y, int m, int n, int k,
                                                 cudaStream_t stream) {
  if (m <= 0 || n <= 0 || k <= 0 || k % 16 != 0 || impl_->fp8_kernel(m, k) != Impl::Fp8Kernel::kCublasLt)
    return false;
  Impl& im = *impl_;
  const Impl::Key key{m, n, k, false, false, alignment_of(xq), alignment_of(w), alignment_of(y), Impl::kFp8};
  Result<Impl::Plan*> plan = im.plan_for(key);
  if (!plan.ok()) return plan.error();
  if ((*plan)->fp8 != Impl::Fp8Epilogue::kBf16Raw) return false;
  EMBER_TRY_STATUS(im.matmul_fp8(**plan, m, xq, nullptr, w, nullptr, y, stream));
  return true;
}

}  // namespace ember::gpu
