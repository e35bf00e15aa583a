#pragma once
// The op interface the Llama-family decoder (models/) is written against once;
// kernels/cpu and kernels/cuda implement it. A forward pass is a flat, varlen
// batch (ForwardInputs): any mix of prefill chunks and single-token decodes,
// with K/V in a paged cache. Shapes below use T = tokens in the batch,
// B = sequences, Hq/Hkv = query/KV heads, D = head_dim.
//
// Ops trust their inputs (validated at the model loader / scheduler edge):
// shape mismatches are programming errors, caught by asserts in debug builds.

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <vector>

namespace ember {

// Element types of Tensor data. Quantized types (appended; values of the first
// three are kept) are ggml's GGUF blocks stored as in the file: a quantized
// Tensor has the LOGICAL shape [N, K] (elements, not bytes) and its data is N
// rows of K / dtype_block_elems() raw blocks, each dtype_block_bytes() long,
// rows back to back and blocks unaligned. K must be a whole number of blocks.
// Layouts: kernels/quant/quant_blocks.h.
// kF8E4M3: one byte an element (kernels/quant/fp8.h), scaled by Tensor::scale:
// a weight's rows (the CUDA backend's --quantization fp8 weights), or a whole
// KV cache (--kv-cache-dtype fp8, see Backend below).
enum class DType : uint8_t { kF32, kBF16, kF16, kQ8_0, kQ4_0, kQ4_1, kQ4_K, kQ6_K, kF8E4M3 };

// Elements per block (1 for plain types) and bytes per block.
constexpr int64_t dtype_block_elems(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kBF16:
    case DType::kF16:
    case DType::kF8E4M3: return 1;
    case DType::kQ4_K:
    case DType::kQ6_K: return 256;
    default: return 32;
  }
}
constexpr int64_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kQ8_0: return 34;
    case DType::kQ4_0: return 18;
    case DType::kQ4_1: return 20;
    case DType::kQ4_K: return 144;
    case DType::kQ6_K: return 210;
    case DType::kF8E4M3: return 1;
  }
  return 0;
}
constexpr bool dtype_is_quantized(DType t) { return dtype_block_elems(t) > 1; }
// Bytes of one row of `cols` elements (cols a multiple of dtype_block_elems).
constexpr int64_t dtype_row_bytes(DType t, int64_t cols) { return cols / dtype_block_elems(t) * dtype_block_bytes(t); }

// A non-owning view of a row-major contiguous tensor of up to 4 dims, on the
// host or the device depending on the backend. Constness of the data follows
// the constness of the Tensor reference an op takes.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int ndim = 0;
  std::array<int64_t, 4> shape{};
  // kF8E4M3 only, in the tensor's memory: a weight's float32 scale a row (row r = codes * scale[r]); a KV
  // cache's one scale (every element = code * scale[0]).
  const float* scale = nullptr;

  static Tensor f32(const float* data, std::initializer_list<int64_t> dims) { return of(data, DType::kF32, dims); }
  // A view of plain (not quantized) elements of any dtype.
  static Tensor of(const void* data, DType dtype, std::initializer_list<int64_t> dims) {
    assert(dims.size() <= 4);
    Tensor t;
    t.data = const_cast<void*>(data);  // views never own; constness is the op's contract
    t.dtype = dtype;
    for (int64_t d : dims) t.shape[t.ndim++] = d;
    return t;
  }
  // A [rows, cols] view of weights in any dtype (raw GGUF blocks for quantized
  // types, see DType); cols counts elements.
  static Tensor typed(const void* data, DType dtype, int64_t rows, int64_t cols) {
    assert(cols % dtype_block_elems(dtype) == 0);
    Tensor t;
    t.data = const_cast<void*>(data);
    t.dtype = dtype;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    return t;
  }
  // FP8 weights: [rows, cols] codes, row r scaled by scale[r].
  static Tensor fp8(const void* codes, const float* scale, int64_t rows, int64_t cols) {
    Tensor t = typed(codes, DType::kF8E4M3, rows, cols);
    t.scale = scale;
    return t;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t dim(int i) const { return shape[i]; }
  // Product of all dims but the last: the "row count" of a 2-D view.
  int64_t rows() const { return ndim == 0 ? 1 : numel() / shape[ndim - 1]; }
  int64_t cols() const { return ndim == 0 ? 1 : shape[ndim - 1]; }
  float* f32() const {
    assert(dtype == DType::kF32);
    return static_cast<float*>(data);
  }
};

// One forward step, flat over all scheduled tokens (the same on CPU and GPU).
// Sequence b owns tokens [query_start_loc[b], query_start_loc[b+1]) of the
// batch; they are the LAST q_len tokens of its context of seq_lens[b] tokens,
// i.e. the cache already holds seq_lens[b] - q_len tokens of it and this step
// writes the rest. Token i of the chunk sits at position seq_lens[b] - q_len + i.
struct ForwardInputs {
  std::vector<int32_t> token_ids;        // [T]
  std::vector<int32_t> positions;        // [T] RoPE positions
  std::vector<int64_t> slot_mapping;     // [T] block_id * block_size + offset in block; < 0: not written
  std::vector<int32_t> query_start_loc;  // [B + 1], query_start_loc[0] = 0, [B] = T
  std::vector<int32_t> seq_lens;         // [B] context length including this step's tokens
  std::vector<int32_t> block_tables;     // [B * max_blocks_per_seq], row b: the blocks of sequence b
  int32_t max_blocks_per_seq = 0;        // row stride of block_tables
  std::vector<int32_t> logits_indices;   // rows of the hidden state whose logits are wanted

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t num_seqs() const { return static_cast<int64_t>(seq_lens.size()); }
};

enum class RopeScalingKind { kNone, kLinear, kLlama3 };

// Rotary embedding parameters (mirrors ModelConfig's rope fields; kernels/
// does not depend on models/).
struct RopeConfig {
  double theta = 10000.0;
  RopeScalingKind scaling = RopeScalingKind::kNone;
  double factor = 1.0;  // linear: positions / factor; llama3: low-frequency divisor
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// The D/2 inverse frequencies, HF transformers' convention: theta^(-2i/D),
// then scaled (linear: / factor; llama3: _compute_llama3_parameters's bands).
// Computed in double, rounded to float once.
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

// Bytes of `n` plain elements (not quantized types).
constexpr int64_t dtype_bytes(DType t, int64_t n) { return n * dtype_block_bytes(t); }

// A backend without FP8 activations was asked for them (a caller that did
// not check Backend::takes_fp8_activations): a programming error.
[[noreturn]] inline void no_fp8_activations() {
  std::fprintf(stderr, "ember: rms_norm_fp8 / silu_mul_fp8 called on a backend without FP8 activations\n");
  std::abort();
}

// All ops run synchronously on the CPU backend and in stream order on CUDA.
// Tensors an op reads or writes live in the backend's memory (host memory on
// the CPU, device memory on CUDA): the decoder gets its activations from
// allocate() and its weights and caches from the runner that owns the backend.
//
// Ops that take ForwardInputs read the step's metadata as it was given to the
// last begin_forward(): the CUDA backend uploads it there once per step (and
// at fixed addresses, so a captured CUDA graph replays on new inputs).
class Backend {
 public:
  virtual ~Backend() = default;

  // The dtype of activations (and of the KV cache): float32 on the CPU, bf16 on CUDA.
  virtual DType activation_dtype() const = 0;
  // Backend memory for activations; never null (failure aborts: an
  // out-of-memory here is a sizing bug, the runner reserves before serving).
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr) = 0;

  // Makes `in` the current step (see above). Call before the step's ops.
  virtual void begin_forward(const ForwardInputs& in) = 0;

  // dst = src (same dtype and size).
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  // A strided 2-D copy: row i of src (src.cols() elements, src_stride apart)
  // to row i of dst (dst_stride apart). src and dst are [rows, cols] views of
  // plain elements whose rows lie stride apart (a vocab-parallel LM head puts
  // each rank's logits into its columns this way). The default copies row by
  // row with copy(); CUDA overrides it with one cudaMemcpy2DAsync.
  virtual void copy_2d(const Tensor& src, int64_t src_stride, Tensor& dst, int64_t dst_stride) {
    assert(src.dtype == dst.dtype && src.rows() == dst.rows() && src.cols() == dst.cols());
    const int64_t bytes = dtype_bytes(src.dtype, 1);
    for (int64_t i = 0; i < src.rows(); ++i) {
      const char* row = static_cast<const char*>(src.data) + i * src_stride * bytes;
      const Tensor from = Tensor::of(row, src.dtype, {src.cols()});
      Tensor to = Tensor::of(static_cast<char*>(dst.data) + i * dst_stride * bytes, dst.dtype, {dst.cols()});
      copy(from, to);
    }
  }
  // Copies a float32 tensor to host memory, waiting for it to be ready.
  virtual void download(const Tensor& src, float* host) = 0;

  // out[t, :] = table[in.token_ids[t], :].   table [V, H], out [T, H].
  // first_row >= 0 with a table of R rows: the table holds vocabulary rows
  // [first_row, first_row + R) (a vocab-parallel rank's) and a token outside
  // them gets a row of zeros (the ranks' all-reduce then sums one real row).
  virtual void embedding(const Tensor& table, const ForwardInputs& in, Tensor& out, int64_t first_row = -1) = 0;

  // RMSNorm over the last dim: out = x / sqrt(mean(x^2) + eps) * weight.
  // With `residual` (fused add, as in vLLM): residual = x + residual first,
  // then out = norm(residual) * weight; residual keeps the sum for the next layer.
  // x, out, residual [M, H]; weight [H]. out may alias x.
  virtual void rms_norm(const Tensor& x, Tensor* residual, const Tensor& weight, float eps, Tensor& out) = 0;

  // y = x W^T + b.   x [M, K], w [N, K] (HF/PyTorch layout), bias [N] float32 or null, y [M, N]
  // in the activation dtype, or float32 (the logits).
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;

  // The KV caches below are [num_blocks, block_size, Hkv, D] of the activation
  // dtype, or of kF8E4M3 codes with Tensor::scale pointing at the layer's one
  // scale for K (for V) in backend memory (vLLM's k_scale / v_scale): writes
  // store e4m3(x / scale) (kernels/quant/fp8.h: nearest even, saturating at
  // +-448), reads see code * scale, and attention accumulates in float32.
  //
  // Rotates q and k in place (HF rotate_half: pairs (i, i + D/2), angle
  // positions[t] * inv_freq[i]) and writes k and v of token t to slot
  // slot_mapping[t] of the caches.   q [T, Hq*D], k and v [T, Hkv*D],
  // k_cache and v_cache [num_blocks, block_size, Hkv, D].
  virtual void rope_and_cache_write(Tensor& q, Tensor& k, const Tensor& v, const ForwardInputs& in,
                                    const RopeConfig& rope, int64_t head_dim, Tensor& k_cache,
                                    Tensor& v_cache) = 0;

  // rope_and_cache_write over one fused q/k/v projection: qkv [T, (Hq + 2*Hkv) * D]
  // holds each token's q, k and v side by side (wq, wk, wv stacked by rows).
  // Rotated q goes to q [T, Hq*D]; rotated k and v only to the caches. Hkv is
  // k_cache.dim(2).
  virtual void qkv_rope_and_cache_write(const Tensor& qkv, const ForwardInputs& in, const RopeConfig& rope,
                                        int64_t head_dim, Tensor& q, Tensor& k_cache, Tensor& v_cache) = 0;

  // --calculate-kv-scales (vLLM's): sets an FP8 cache's scale from the values
  // about to be written, before they are: *cache.scale = m / range, m the
  // largest |x| over every row of x [T, W] in columns [col, col + width). With
  // rope_head_dim D > 0 those columns are heads of D about to be rotated, and m
  // is the largest norm of a rotation pair (x[i], x[i + D/2]): every rotated
  // element stays within it, at any position. m == 0 (or not finite) keeps the
  // scale. The scale lives in backend memory: later ops read the new value.
  virtual void set_kv_scale(const Tensor& x, int64_t col, int64_t width, int64_t rope_head_dim, float range,
                            Tensor& cache) = 0;

  // Causal paged attention over the varlen batch: query token i of sequence b
  // attends to context tokens [0, seq_lens[b] - q_len + i] read through the
  // block table; query head h uses KV head h / (Hq / Hkv) (GQA).
  // out = softmax(q K^T * scale) V.   q, out [T, Hq*D]; caches as above.
  virtual void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const ForwardInputs& in,
                               int64_t num_heads, float scale, Tensor& out) = 0;

  // SwiGLU: out = silu(gate) * up, gate = x[:, :I], up = x[:, I:] (a fused
  // gate_up projection).   x [M, 2I], out [M, I].
  virtual void silu_mul(const Tensor& x, Tensor& out) = 0;

  // FP8 activations (the CUDA backend with FP8 weights): true when linear(x, w)
  // over `rows` rows would quantize x per row to E4M3 itself (amax / 448 a
  // row, kernels/quant/fp8.h). The op before it may then write x in that form
  // (rms_norm_fp8, silu_mul_fp8: out a kF8E4M3 tensor, Tensor::fp8, of codes
  // and one float32 scale a row) and linear takes it as it is: the same
  // codes, one pass over memory less. Only called where this returned true.
  virtual bool takes_fp8_activations(const Tensor& /*w*/, int64_t /*rows*/) { return false; }
  virtual void rms_norm_fp8(const Tensor& /*x*/, Tensor* /*residual*/, const Tensor& /*weight*/, float /*eps*/,
                            Tensor& /*out*/) {
    no_fp8_activations();
  }
  virtual void silu_mul_fp8(const Tensor& /*x*/, Tensor& /*out*/) { no_fp8_activations(); }
  // The MLP's first half with FP8 activations: linear(x, w_gate_up) into
  // gate_up (scratch [M, 2I]), then silu_mul_fp8 into act, with the same
  // result bit for bit. A backend may fuse the GEMM's scales into the SiLU
  // (the CUDA one does where its GEMM would apply them in a pass of its own).
  virtual void linear_silu_mul_fp8(const Tensor& x, const Tensor& w_gate_up, Tensor& gate_up, Tensor& act) {
    linear(x, w_gate_up, nullptr, gate_up);
    silu_mul_fp8(gate_up, act);
  }
  // Small-batch forms that fold the op after a linear into it (the CUDA
  // backend's FP8 GEMV epilogues). True: the linear and the op were done, with
  // the result of the two bit for bit (the linear's output itself is not
  // written); false: nothing was done, and the caller runs the two.
  //   linear(x, w_qkv, nullptr, qkv), then qkv_rope_and_cache_write(qkv, ...):
  virtual bool linear_rope_and_cache_write(const Tensor& /*x*/, const Tensor& /*w_qkv*/, const ForwardInputs& /*in*/,
                                           const RopeConfig& /*rope*/, int64_t /*head_dim*/, Tensor& /*q*/,
                                           Tensor& /*k_cache*/, Tensor& /*v_cache*/) {
    return false;
  }
  //   linear(x, w_gate_up, nullptr, gate_up), then silu_mul(gate_up, act):
  virtual bool linear_silu_mul(const Tensor& /*x*/, const Tensor& /*w_gate_up*/, Tensor& /*act*/) { return false; }
  // A residual branch's end (linear(x, w) into y, then rms_norm(y, &residual,
  // norm_weight, eps, out)) with the norm left half done for `next`, the
  // linear that reads `out`: true when the op that comes next is one of the two
  // above over (out, next) and will finish the norm, not bit for bit (the CUDA
  // backend's FP8 GEMVs: fp8.h, GemvNormAdd). Then `out` holds something only
  // that op reads, and any other op in between fails. False: nothing was done.
  virtual bool linear_add_for_next_norm(const Tensor& /*x*/, const Tensor& /*w*/, Tensor& /*residual*/,
                                        const Tensor& /*norm_weight*/, float /*eps*/, const Tensor& /*next*/,
                                        Tensor& /*out*/) {
    return false;
  }
  // The op that reads a linear's output next, for linear_scaled_by_next_op:
  // rms_norm or rms_norm_fp8 over a residual branch's last linear (o_proj,
  // down_proj), or qkv_rope_and_cache_write over the fused q/k/v projection.
  enum class ScalesReader { kRmsNorm, kQkvRope };
  // A linear with FP8 weights, linear(x, w, nullptr, y), whose output scales
  // the next op over y (`reader`) applies as it reads y, where the backend
  // would scale y in a pass of its own (the CUDA one, on one device: an
  // all-reduce cannot sum products under different ranks' scales). True: y
  // holds the raw product and that op must be the next on this backend, with
  // the same result bit for bit; false: nothing was done.
  virtual bool linear_scaled_by_next_op(const Tensor& /*x*/, const Tensor& /*w*/, Tensor& /*y*/,
                                        ScalesReader /*reader*/) {
    return false;
  }

  // out[r, :] = x[in.logits_indices[r], :] (the rows whose logits are wanted).   x [T, H], out [R, H].
  virtual void gather_logit_rows(const Tensor& x, const ForwardInputs& in, Tensor& out) = 0;

  // Sum over tensor-parallel ranks, in place. A no-op on one device.
  virtual void all_reduce(Tensor& x) = 0;
};

}  // namespace ember
