#pragma once
// The Llama-family decoder (Llama, Mistral, Qwen2, SmolLM2), written once
// against the Backend op interface: the CPU and CUDA runners run this same
// code over their own memory. One forward() runs a flat varlen batch (any mix
// of prefill chunks and decodes, see ForwardInputs) over a paged KV cache and
// returns logits only for the rows in logits_indices.

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "kernels/communicator.h"
#include "models/weights.h"

namespace ember {

// Views of one layer's weights in the backend's memory. Norms and biases are
// float32; matrices any dtype the backend's linear() takes.
struct LayerWeightViews {
  Tensor attn_norm, ffn_norm;  // [H]
  Tensor wq, wk, wv, wo;       // see LayerWeights
  Tensor bq, bk, bv;           // data == nullptr unless config.attention_bias
  // Optional: wq, wk, wv stacked by rows [(Hq + 2 Hkv) * D, H] (and their
  // biases). When every layer has it, q, k and v come from one projection
  // (one weight read: what small-batch decode is bound by).
  Tensor wqkv, bqkv;
  Tensor w_gate_up, w_down;
};

struct DecoderWeights {
  ModelConfig config;
  Tensor embed;       // [V, H]
  Tensor final_norm;  // [H]
  Tensor head;        // [V, H] (the embedding when tied); vocab.on(): [vocab.rows, H], rows from vocab.begin
  VocabSplit vocab;   // a vocab-parallel LM head: the decoder all-gathers the logits (set_communicator)
  std::vector<LayerWeightViews> layers;
};

// Views of host weights (the CPU backend reads them in place).
DecoderWeights host_weight_views(const LlamaWeights& weights);

// A paged KV cache as the decoder sees it: per layer, K and V of
// [num_blocks, block_size, num_kv_heads, head_dim] in the activation dtype.
struct KvCacheView {
  std::vector<Tensor> k, v;
};

// Paged K and V caches in host memory (the CPU runner's): float32, or FP8
// E4M3 codes scaled by each layer's k_scale / v_scale (kernels/backend.h).
// Slot s of a layer is block s / block_size, offset s % block_size.
struct KvCache {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  DType dtype = DType::kF32;
  std::vector<std::vector<float>> k, v;            // [layer], float32
  std::vector<std::vector<uint8_t>> k_fp8, v_fp8;  // [layer], FP8
  std::vector<float> k_scale, v_scale;             // [layer], FP8: 1 until the caller sets them

  // dtype: kF32 or kF8E4M3.
  static KvCache allocate(const ModelConfig& config, int64_t num_blocks, int64_t block_size, DType dtype = DType::kF32);
  // Bytes one token takes in K and V of every layer, in a cache of `dtype`.
  static int64_t bytes_per_token(const ModelConfig& config, DType dtype);
  KvCacheView view();
};

RopeConfig rope_config_of(const ModelConfig& config);

// Backend memory that grows on demand and is freed with its owner.
class BackendBuffer {
 public:
  BackendBuffer() = default;
  BackendBuffer(const BackendBuffer&) = delete;
  BackendBuffer& operator=(const BackendBuffer&) = delete;
  ~BackendBuffer() { release(); }

  // At least `bytes` bytes; contents are lost when it grows.
  void* ensure(Backend& backend, size_t bytes);
  void* data() const { return ptr_; }
  size_t capacity() const { return bytes_; }
  void release();

 private:
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class LlamaDecoder {
 public:
  // `weights` (their memory) and `backend` must outlive the decoder.
  LlamaDecoder(const LlamaWeights& weights, Backend& backend);
  LlamaDecoder(DecoderWeights weights, Backend& backend);

  // Sizes the activations for steps of up to `tokens` tokens and `logit_rows`
  // sampled rows. Steps within that never allocate (CUDA graphs rely on it:
  // a captured step must find its buffers where they were).
  void reserve(int64_t tokens, int64_t logit_rows);

  // One step; the caller has made `in` current (backend.begin_forward(in)).
  // Returns the [R, V] float32 logits in backend memory, valid until the next
  // call. Inputs are trusted (the scheduler validated them): token ids < vocab,
  // slots inside the cache, block tables covering seq_lens.
  Tensor forward(const ForwardInputs& in, const KvCacheView& cache);

  // begin_forward + forward + download, for host caches (tests, the CPU runner):
  // writes in.logits_indices.size() rows of vocab_size logits to `logits`.
  void forward(const ForwardInputs& in, KvCache& cache, std::vector<float>& logits);

  const ModelConfig& config() const { return w_.config; }

  // --calculate-kv-scales (vLLM's): the next forward that has tokens first sets every layer's FP8 cache scales
  // from its own K and V (Backend::set_kv_scale: max|k| / 200 over rotation pairs, max|v| / 100), then writes
  // with them; later forwards keep them. Call it before the cache holds anything: what is cached stays in the
  // scale it was written with. A runner that replays captured forwards (CUDA graphs) runs eager while pending.
  void calculate_kv_scales_next_forward() { kv_scales_pending_ = true; }
  bool kv_scales_pending() const { return kv_scales_pending_; }

  // A vocab-parallel LM head's all-gather goes through `comm` (this rank's,
  // not owned), enqueued on `stream` (the backend's cudaStream_t; null on the
  // CPU). Needed when weights.vocab.ranks > 1.
  void set_communicator(Communicator* comm, void* stream = nullptr) {
    comm_ = comm;
    stream_ = stream;
  }

 private:
  // LM head over the gathered rows: whole, or this rank's vocab rows then the all-gather.
  void lm_head(const Tensor& gathered, Tensor& logits);

  DecoderWeights w_;
  Backend& backend_;
  Communicator* comm_ = nullptr;
  void* stream_ = nullptr;
  RopeConfig rope_;
  bool fused_qkv_ = false;
  bool fp8_weights_ = false;  // FP8 q/k/v, gate/up and down: their inputs may come quantized (fp8_in_)
  bool kv_scales_pending_ = false;
  int64_t reserved_tokens_ = 0, reserved_rows_ = 0;
  // Activations, reused between calls; sized by reserve().
  BackendBuffer hidden_, residual_, normed_, qkv_, q_, k_, v_, attn_, gate_up_, act_, gathered_, logits_;
  BackendBuffer vocab_part_, vocab_all_;  // vocab-parallel: [R, stride] this rank's, [ranks, R, stride] everyone's
  // FP8 weights: a normed row's (the q/k/v and gate/up projections' input) and the SiLU's (down's) E4M3 codes,
  // then one float32 scale a row, when Backend::takes_fp8_activations.
  BackendBuffer normed_fp8_, act_fp8_;
};

}  // namespace ember
