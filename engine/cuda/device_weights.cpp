#include "engine/cuda/device_weights.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/parallel/shard.h"
#include "kernels/quant/quant_blocks.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fp8.h"

namespace ember {
namespace {

// Round-to-nearest-even float -> bf16 bits (NaN stays NaN).
uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// DeviceWeights::dummy's "the next tensor in make_dummy_weights' order".
constexpr uint64_t kNextTensor = ~uint64_t{0};

}  // namespace

DeviceWeights::~DeviceWeights() {
  for (const Buffer& b : buffers_) cudaFree(b.data);
}

Result<void*> DeviceWeights::alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  if (err != cudaSuccess) {
    return Error{"cannot allocate " + std::to_string(bytes) + " bytes of GPU memory for weights (" +
                 std::to_string(bytes_) + " bytes already): " + cudaGetErrorString(err)};
  }
  buffers_.push_back({p, bytes});
  bytes_ += bytes;
  return p;
}

void DeviceWeights::release(void* buffer) {
  for (size_t i = 0; i < buffers_.size(); ++i) {
    if (buffers_[i].data != buffer) continue;
    cudaFree(buffer);
    bytes_ -= buffers_[i].bytes;
    buffers_.erase(buffers_.begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
}

Result<Tensor> DeviceWeights::to_fp8(const Tensor& w, bool keep_source) {
  const int64_t rows = w.rows(), cols = w.cols();
  Result<void*> codes = alloc(static_cast<size_t>(rows * cols));
  if (!codes) return codes.error();
  Result<void*> scales = alloc(static_cast<size_t>(rows) * sizeof(float));
  if (!scales) return scales.error();
  EMBER_TRY_STATUS(gpu::quantize_rows_fp8(static_cast<const __nv_bfloat16*>(w.data), static_cast<int>(rows),
                                          static_cast<int>(cols), static_cast<uint8_t*>(*codes),
                                          static_cast<float*>(*scales), nullptr));
  EMBER_CUDA_TRY(cudaDeviceSynchronize());
  if (!keep_source) release(w.data);
  return Tensor::fp8(*codes, static_cast<const float*>(*scales), rows, cols);
}

Status DeviceWeights::quantize_fp8(int device) {
  if (!gpu::fp8_supported(device)) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    return Error{"--quantization fp8 needs a GPU with FP8 tensor cores (compute capability 8.9 or newer: Ada, "
                 "Hopper, Blackwell); GPU " + std::to_string(device) + " is " + std::to_string(major) + "." +
                 std::to_string(minor)};
  }
  for (LayerWeightViews& l : views_.layers) {
    if (l.wqkv.cols() % 16 != 0 || l.w_down.cols() % 16 != 0)
      return Error{"--quantization fp8: hidden and intermediate sizes must be multiples of 16"};
    const int64_t q_rows = l.wq.rows(), kv_rows = l.wk.rows(), cols = l.wqkv.cols();
    if (l.wqkv.dtype != DType::kF8E4M3) {  // (an FP8 checkpoint's are already)
      Result<Tensor> qkv = to_fp8(l.wqkv);  // (wq, wk and wv are views into it)
      if (!qkv) return qkv.error();
      l.wqkv = *qkv;
      const auto* codes = static_cast<const uint8_t*>(l.wqkv.data);
      l.wq = Tensor::fp8(codes, l.wqkv.scale, q_rows, cols);
      l.wk = Tensor::fp8(codes + q_rows * cols, l.wqkv.scale + q_rows, kv_rows, cols);
      l.wv = Tensor::fp8(codes + (q_rows + kv_rows) * cols, l.wqkv.scale + q_rows + kv_rows, kv_rows, cols);
    }
    for (Tensor* m : {&l.wo, &l.w_gate_up, &l.w_down}) {
      if (m->dtype == DType::kF8E4M3) continue;
      Result<Tensor> q = to_fp8(*m);
      if (!q) return q.error();
      *m = *q;
    }
  }
  // EMBER_FP8_LM_HEAD=1: the LM head too (a measurement knob: vLLM and the published FP8 checkpoints keep it bf16).
  // Tied to the embedding, the embedding's rows stay bf16 for the lookups and the head gets an FP8 copy.
  if (const char* env = std::getenv("EMBER_FP8_LM_HEAD");
      env != nullptr && std::string(env) == "1" && views_.head.dtype == DType::kBF16) {
    if (views_.head.cols() % 16 != 0) return Error{"EMBER_FP8_LM_HEAD: the hidden size must be a multiple of 16"};
    const bool tied = views_.head.data == views_.embed.data;
    Result<Tensor> q = to_fp8(views_.head, /*keep_source=*/tied);
    if (!q) return q.error();
    views_.head = *q;
  }
  return Status::success();
}

Result<std::unique_ptr<DeviceWeights>> DeviceWeights::upload(const LlamaWeights& w, bool keep_fp8) {
  std::unique_ptr<DeviceWeights> d(new DeviceWeights());
  const ModelConfig& c = w.config;
  d->views_.config = c;
  std::vector<float> row;
  std::vector<uint16_t> staged;

  // A matrix of any dtype, expanded row by row into bf16 on the host (a
  // quantized row is a run of blocks; quant::dequantize_row is the CPU
  // kernels' own, tested bit for bit against gguf-py).
  // Into `dst` when given (a part of a stacked matrix), else a new buffer.
  const auto matrix = [&](const WeightMatrix& m, void* dst = nullptr) -> Result<Tensor> {
    Result<void*> p = dst;
    if (dst == nullptr) p = d->alloc(static_cast<size_t>(m.rows * m.cols) * 2);
    if (!p) return p.error();
    const Tensor src = m.view();
    const int64_t row_bytes = dtype_row_bytes(m.dtype, m.cols);
    constexpr int64_t kChunkRows = 256;
    row.resize(static_cast<size_t>(m.cols));
    for (int64_t r0 = 0; r0 < m.rows; r0 += kChunkRows) {
      const int64_t rows = std::min(kChunkRows, m.rows - r0);
      staged.resize(static_cast<size_t>(rows * m.cols));
      for (int64_t r = 0; r < rows; ++r) {
        const float* f;
        if (m.dtype == DType::kF32) {
          f = m.f32.data() + (r0 + r) * m.cols;
        } else {
          quant::dequantize_row(m.dtype, static_cast<const uint8_t*>(src.data) + (r0 + r) * row_bytes, m.cols,
                                row.data());
          if (m.dtype == DType::kF8E4M3)  // (the codes' values; then the row's scale)
            for (float& v : row) v *= m.row_scale[static_cast<size_t>(r0 + r)];
          f = row.data();
        }
        for (int64_t i = 0; i < m.cols; ++i) staged[static_cast<size_t>(r * m.cols + i)] = bf16_bits(f[i]);
      }
      EMBER_CUDA_TRY(cudaMemcpy(static_cast<uint16_t*>(*p) + r0 * m.cols, staged.data(), staged.size() * 2,
                                cudaMemcpyHostToDevice));
    }
    return Tensor::typed(*p, DType::kBF16, m.rows, m.cols);
  };
  // FP8 checkpoint matrices as they are (codes and row scales), stacked by rows.
  const auto fp8_matrix = [&](std::initializer_list<const WeightMatrix*> parts) -> Result<Tensor> {
    int64_t rows = 0;
    const int64_t cols = (*parts.begin())->cols;
    for (const WeightMatrix* m : parts) rows += m->rows;
    Result<void*> codes = d->alloc(static_cast<size_t>(rows * cols));
    if (!codes) return codes.error();
    Result<void*> scales = d->alloc(static_cast<size_t>(rows) * sizeof(float));
    if (!scales) return scales.error();
    int64_t at = 0;
    for (const WeightMatrix* m : parts) {
      EMBER_CUDA_TRY(cudaMemcpy(static_cast<uint8_t*>(*codes) + at * cols, m->raw.data(), m->raw.size(),
                                cudaMemcpyHostToDevice));
      EMBER_CUDA_TRY(cudaMemcpy(static_cast<float*>(*scales) + at, m->row_scale.data(), m->row_scale.size() * 4,
                                cudaMemcpyHostToDevice));
      at += m->rows;
    }
    return Tensor::fp8(*codes, static_cast<const float*>(*scales), rows, cols);
  };
  const auto fp8 = [&](const WeightMatrix& m) { return keep_fp8 && m.dtype == DType::kF8E4M3; };
  const auto vec = [&](const std::vector<float>& v) -> Result<Tensor> {
    auto p = d->alloc(v.size() * 4);
    if (!p) return p.error();
    EMBER_CUDA_TRY(cudaMemcpy(*p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    return Tensor::f32(static_cast<float*>(*p), {static_cast<int64_t>(v.size())});
  };
#define EMBER_TAKE(dst, expr)          \
  do {                                 \
    auto r_ = (expr);                  \
    if (!r_) return r_.error();        \
    (dst) = *r_;                       \
  } while (0)

  EMBER_TAKE(d->views_.embed, matrix(w.embed));
  for (const LayerWeights& lw : w.layers) {
    LayerWeightViews l;
    EMBER_TAKE(l.attn_norm, vec(lw.attn_norm));
    EMBER_TAKE(l.ffn_norm, vec(lw.ffn_norm));
    // q, k and v stacked in one buffer (one projection; see LayerWeightViews).
    if (fp8(lw.wq) && fp8(lw.wk) && fp8(lw.wv)) {
      EMBER_TAKE(l.wqkv, fp8_matrix({&lw.wq, &lw.wk, &lw.wv}));
      const auto* codes = static_cast<const uint8_t*>(l.wqkv.data);
      const int64_t q = lw.wq.rows, kv = lw.wk.rows, cols = lw.wq.cols;
      l.wq = Tensor::fp8(codes, l.wqkv.scale, q, cols);
      l.wk = Tensor::fp8(codes + q * cols, l.wqkv.scale + q, kv, cols);
      l.wv = Tensor::fp8(codes + (q + kv) * cols, l.wqkv.scale + q + kv, kv, cols);
    } else {
      void* qkv = nullptr;
      EMBER_TAKE(qkv, d->alloc(static_cast<size_t>((lw.wq.rows + lw.wk.rows + lw.wv.rows) * lw.wq.cols) * 2));
      uint16_t* part = static_cast<uint16_t*>(qkv);
      EMBER_TAKE(l.wq, matrix(lw.wq, part));
      EMBER_TAKE(l.wk, matrix(lw.wk, part + lw.wq.rows * lw.wq.cols));
      EMBER_TAKE(l.wv, matrix(lw.wv, part + (lw.wq.rows + lw.wk.rows) * lw.wq.cols));
      l.wqkv = Tensor::typed(qkv, DType::kBF16, lw.wq.rows + lw.wk.rows + lw.wv.rows, lw.wq.cols);
    }
    EMBER_TAKE(l.wo, fp8(lw.wo) ? fp8_matrix({&lw.wo}) : matrix(lw.wo));
    if (c.attention_bias) {
      std::vector<float> b(lw.bq);
      b.insert(b.end(), lw.bk.begin(), lw.bk.end());
      b.insert(b.end(), lw.bv.begin(), lw.bv.end());
      EMBER_TAKE(l.bqkv, vec(b));
      const float* base = l.bqkv.f32();
      const int64_t nq = static_cast<int64_t>(lw.bq.size()), nk = static_cast<int64_t>(lw.bk.size());
      l.bq = Tensor::f32(base, {nq});
      l.bk = Tensor::f32(base + nq, {nk});
      l.bv = Tensor::f32(base + nq + nk, {static_cast<int64_t>(lw.bv.size())});
    }
    EMBER_TAKE(l.w_gate_up, fp8(lw.w_gate_up) ? fp8_matrix({&lw.w_gate_up}) : matrix(lw.w_gate_up));
    EMBER_TAKE(l.w_down, fp8(lw.w_down) ? fp8_matrix({&lw.w_down}) : matrix(lw.w_down));
    d->views_.layers.push_back(l);
  }
  EMBER_TAKE(d->views_.final_norm, vec(w.final_norm));
  d->views_.vocab = w.vocab;  // (split: embed and lm_head hold this rank's rows alone)
  if (!w.lm_head.empty()) {
    EMBER_TAKE(d->views_.head, matrix(w.lm_head));
  } else {
    d->views_.head = d->views_.embed;
  }
  return d;
}

Result<std::unique_ptr<DeviceWeights>> DeviceWeights::dummy(const ModelConfig& whole, uint64_t seed, int rank,
                                                          int tensor_parallel_size, LmHead lm_head) {
  if (Status s = whole.validate(); !s) return s.error();
  Result<ModelConfig> shard = shard_config(whole, tensor_parallel_size);
  if (!shard) return shard.error();
  const ModelConfig& c = *shard;
  const ShardRanges cut = shard_ranges(whole, rank, tensor_parallel_size);
  std::unique_ptr<DeviceWeights> d(new DeviceWeights());
  d->views_.config = c;
  uint64_t tensor = 0;
  // Rows [r0, r0 + rows) x columns [c0, c0 + cols) of tensor `id`, whose whole has full_cols columns.
  const auto slice = [&](void* dst, int64_t rows, int64_t cols, int64_t full_cols, int64_t r0, int64_t c0, double std,
                         uint64_t id) -> Status {
    return fill_dummy_bf16_slice(dst, rows, cols, full_cols, r0, c0, std, seed, id, nullptr);
  };
  // (numbering and spread: make_dummy_weights', models/weights.h)
  const auto matrix = [&](int64_t rows, int64_t cols, void* dst = nullptr, double std = kDummyStd,
                          uint64_t id = kNextTensor) -> Result<Tensor> {
    Result<void*> p = dst;
    if (dst == nullptr) p = d->alloc(static_cast<size_t>(rows * cols) * 2);
    if (!p) return p.error();
    if (id == kNextTensor) id = tensor++;
    if (Status s = fill_dummy_bf16(*p, rows * cols, std, seed, id, nullptr); !s) return s.error();
    return Tensor::typed(*p, DType::kBF16, rows, cols);
  };
  const auto filled = [&](int64_t n, float value) -> Result<Tensor> {
    auto p = d->alloc(static_cast<size_t>(n) * 4);
    if (!p) return p.error();
    std::vector<float> v(static_cast<size_t>(n), value);
    EMBER_CUDA_TRY(cudaMemcpy(*p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    return Tensor::f32(static_cast<float*>(*p), {n});
  };
  const int64_t h = c.hidden_size, q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  const int64_t inter = c.intermediate_size;
  const int64_t whole_q = whole.num_heads * whole.head_dim, whole_inter = whole.intermediate_size;
  // A matrix cut from the whole one: a new buffer (or `dst`) of rows x cols.
  const auto cut_matrix = [&](int64_t rows, int64_t cols, int64_t full_cols, int64_t r0, int64_t c0, double std,
                              void* dst = nullptr) -> Result<Tensor> {
    Result<void*> p = dst;
    if (dst == nullptr) p = d->alloc(static_cast<size_t>(rows * cols) * 2);
    if (!p) return p.error();
    if (Status s = slice(*p, rows, cols, full_cols, r0, c0, std, tensor++); !s) return s.error();
    return Tensor::typed(*p, DType::kBF16, rows, cols);
  };
  // Same order as make_dummy_weights: embed, then per layer q, k, v, o, gate_up, down, then lm_head.
  // Vocab-parallel: this rank's rows of the embedding (and of the LM head below).
  const VocabSplit vocab = vocab_split(c.vocab_size, rank, tensor_parallel_size);
  if (lm_head == LmHead::kVocabParallel) {
    EMBER_TAKE(d->views_.embed, cut_matrix(vocab.rows, h, h, vocab.begin, 0, kDummyStd));
  } else {
    EMBER_TAKE(d->views_.embed, matrix(c.vocab_size, h));
  }
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeightViews l;
    EMBER_TAKE(l.attn_norm, filled(h, 1.0f));
    EMBER_TAKE(l.ffn_norm, filled(h, 1.0f));
    void* qkv = nullptr;
    EMBER_TAKE(qkv, d->alloc(static_cast<size_t>((q_dim + 2 * kv_dim) * h) * 2));
    uint16_t* part = static_cast<uint16_t*>(qkv);
    EMBER_TAKE(l.wq, cut_matrix(q_dim, h, h, cut.q0, 0, kDummyStd, part));
    EMBER_TAKE(l.wk, cut_matrix(kv_dim, h, h, cut.k0, 0, kDummyStd, part + q_dim * h));
    EMBER_TAKE(l.wv, cut_matrix(kv_dim, h, h, cut.k0, 0, kDummyStd, part + (q_dim + kv_dim) * h));
    l.wqkv = Tensor::typed(qkv, DType::kBF16, q_dim + 2 * kv_dim, h);
    const double out_std = dummy_output_projection_std(c, i);
    EMBER_TAKE(l.wo, cut_matrix(h, q_dim, whole_q, 0, cut.q0, out_std));
    // gate rows then up rows, each this rank's MLP columns
    void* gate_up = nullptr;
    EMBER_TAKE(gate_up, d->alloc(static_cast<size_t>(2 * inter * h) * 2));
    const uint64_t gate_up_id = tensor++;
    if (Status s = slice(gate_up, inter, h, h, cut.m0, 0, kDummyStd, gate_up_id); !s) return s.error();
    if (Status s = slice(static_cast<uint16_t*>(gate_up) + inter * h, inter, h, h, whole_inter + cut.m0, 0, kDummyStd,
                         gate_up_id);
        !s)
      return s.error();
    l.w_gate_up = Tensor::typed(gate_up, DType::kBF16, 2 * inter, h);
    EMBER_TAKE(l.w_down, cut_matrix(h, inter, whole_inter, 0, cut.m0, out_std));
    if (c.attention_bias) {
      EMBER_TAKE(l.bqkv, filled(q_dim + 2 * kv_dim, 0.0f));
      l.bq = Tensor::f32(l.bqkv.f32(), {q_dim});
      l.bk = Tensor::f32(l.bqkv.f32() + q_dim, {kv_dim});
      l.bv = Tensor::f32(l.bqkv.f32() + q_dim + kv_dim, {kv_dim});
    }
    d->views_.layers.push_back(l);
  }
  EMBER_TAKE(d->views_.final_norm, filled(h, 1.0f));
  if (lm_head == LmHead::kVocabParallel) {
    d->views_.vocab = vocab;
    if (c.tie_word_embeddings) {
      d->views_.head = d->views_.embed;
    } else {
      void* rows = nullptr;
      EMBER_TAKE(rows, d->alloc(static_cast<size_t>(vocab.rows * h) * 2));
      if (Status s = slice(rows, vocab.rows, h, h, vocab.begin, 0, kDummyStd, kDummyLmHeadTensor); !s)
        return s.error();
      d->views_.head = Tensor::typed(rows, DType::kBF16, vocab.rows, h);
    }
  } else if (c.tie_word_embeddings) {
    d->views_.head = d->views_.embed;
  } else {
    EMBER_TAKE(d->views_.head, matrix(c.vocab_size, h, nullptr, kDummyStd, kDummyLmHeadTensor));
  }
#undef EMBER_TAKE
  EMBER_CUDA_TRY(cudaDeviceSynchronize());
  return d;
}

}  // namespace ember
