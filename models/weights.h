#pragma once
// The weights of a Llama-family decoder on the host, in Hugging Face layout
// ([out, in] row-major, rotary pairs (i, i + D/2)). Matrices keep the type
// they have in the file: float32, or BF16/F16 and GGUF quantized blocks that
// the CPU kernels read directly (dequantizing in registers, float32 math), so
// SmolLM2-135M Q4_1 takes ~100 MB instead of ~540 MB and decode streams 5x
// fewer bytes. Norms and biases are always float32.

#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "kernels/backend.h"
#include "models/formats/gguf.h"
#include "models/formats/hf_model_dir.h"
#include "models/model_config.h"

namespace ember {

// One [rows, cols] weight matrix, owned. kF32 data lives in `f32`; any other
// dtype in `raw`, rows * dtype_row_bytes(dtype, cols) bytes (see DType). An
// FP8 checkpoint's matrices (kF8E4M3) keep their codes in `raw` and one scale
// a row in `row_scale` (a per-tensor scale repeated).
struct WeightMatrix {
  std::vector<float> f32;
  std::vector<uint8_t> raw;
  std::vector<float> row_scale;  // kF8E4M3 only
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0;

  // A float32 matrix of the given shape (values to be filled in `f32`).
  static WeightMatrix zeros(int64_t rows, int64_t cols);
  size_t size() const { return static_cast<size_t>(rows * cols); }  // elements
  bool empty() const { return rows == 0; }
  Tensor view() const {
    if (dtype == DType::kF8E4M3) return Tensor::fp8(raw.data(), row_scale.data(), rows, cols);
    return dtype == DType::kF32 ? Tensor::f32(f32.data(), {rows, cols}) : Tensor::typed(raw.data(), dtype, rows, cols);
  }
  // Rows of `other` (same cols) after these; mixed dtypes meet in float32.
  void append_rows(WeightMatrix other);
  bool operator==(const WeightMatrix&) const = default;
};

struct LayerWeights {
  std::vector<float> attn_norm;   // [H]
  WeightMatrix wq, wk, wv;        // [Hq*D, H], [Hkv*D, H], [Hkv*D, H]
  std::vector<float> bq, bk, bv;  // empty unless config.attention_bias
  WeightMatrix wo;                // [H, Hq*D]
  std::vector<float> ffn_norm;    // [H]
  WeightMatrix w_gate_up;         // [2I, H]: gate rows, then up rows (silu_mul's fused layout)
  WeightMatrix w_down;            // [H, I]
  // An FP8 KV cache's scales (--kv-cache-dtype fp8): a checkpoint's self_attn.k_scale / v_scale, else 1 (vLLM's
  // default). Unused by a cache in the activation dtype.
  float k_scale = 1.0f, v_scale = 1.0f;
};

// A vocab-parallel LM head (tensor parallelism, engine/parallel/shard.h): this
// rank computes the logits of vocabulary rows [begin, begin + rows) only. Every
// rank's part travels padded to `stride` rows (ceil(V / ranks), as vLLM pads),
// so rank r's begins at r * stride; the decoder all-gathers the parts into the
// whole logits. ranks == 0: the LM head is whole (not split).
struct VocabSplit {
  int ranks = 0;
  int64_t begin = 0, rows = 0, stride = 0;
  bool on() const { return ranks > 0; }
  bool operator==(const VocabSplit&) const = default;
};

struct LlamaWeights {
  ModelConfig config;
  WeightMatrix embed;  // [V, H]; with vocab.on(): rows [vocab.begin, vocab.begin + vocab.rows) only
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [H]
  // [V, H]; empty when tied to embed. With vocab.on(): only rows
  // [vocab.begin, vocab.begin + vocab.rows) (tied: embed, which holds them).
  WeightMatrix lm_head;
  VocabSplit vocab;
  const WeightMatrix& head() const { return lm_head.empty() ? embed : lm_head; }
  // Bytes the weights take in memory.
  uint64_t bytes() const;
};

// Every tensor's presence, type and shape is checked against `config`; an
// error names the file and the tensor. For llama/mistral GGUFs the Q and K
// rows are un-permuted (llama.cpp's converter interleaves each head's rotary
// halves for GGML's adjacent-pair rope; our rope pairs (i, i + D/2) like HF).
// Called by the loaders with each layer as soon as it is complete: it may
// replace the layer (tensor parallelism keeps a rank's slices and drops the
// rest, so a rank never holds the whole model). An Error stops the load.
using LayerHook = std::function<Status(int64_t layer, LayerWeights& weights)>;

Result<LlamaWeights> load_llama_weights(const GgufFile& gguf, const ModelConfig& config, const LayerHook& hook = {});

// From a Hugging Face directory (weights_safetensors.cpp): F32, F16 and BF16
// tensors are upcast to float32; HF's layout is ours, so nothing is permuted.
// FP8 checkpoints (vLLM's "fp8" and compressed-tensors float formats: F8_E4M3
// weights with a `weight_scale` per tensor or per output channel) keep their
// codes (kF8E4M3); a static `input_scale` is read and not used (ember
// quantizes activations per token, dynamically).
// Every expected tensor's presence, dtype and shape is checked, and a tensor
// ember would not use (an o_proj or MLP bias, a q/k/v bias the config does not
// announce) is an error rather than silently dropped. Errors name the shard
// file and the tensor.
Result<LlamaWeights> load_llama_weights(const HfModelDir& dir, const LayerHook& hook = {});

// Every kF8E4M3 matrix to float32 (code * its row's scale, rounded once): the
// CPU runner's way to serve an FP8 checkpoint.
void dequantize_fp8(WeightMatrix& m);
void dequantize_fp8(LlamaWeights& w);
bool has_fp8(const LlamaWeights& w);

// Bytes make_dummy_weights allocates for `config` (float32 everywhere), for
// callers that check before allocating (Llama-3-8B is ~32 GB).
uint64_t dummy_weights_bytes(const ModelConfig& config);

// Deterministic random weights at real shapes, for tests and benchmarks
// (weights_dummy.cpp): matrices ~ N(0, 0.02^2) from a counter-based hash of
// (seed, tensor, index), so the same seed gives the same bytes on any machine
// and thread count; norms are 1, biases 0. Refuses (Error) an invalid config
// or one needing more than `max_bytes`.
Result<LlamaWeights> make_dummy_weights(const ModelConfig& config, uint64_t seed,
                                        uint64_t max_bytes = uint64_t{8} << 30, const LayerHook& hook = {});

// The dummy tensors' numbering and spread, shared with the GPU's
// DeviceWeights::dummy: embed 0; layer i's q, k, v, o, gate_up, down
// 1 + 6i .. 6 + 6i; the untied lm_head kDummyLmHeadTensor, apart from the layer
// count, so that a model cut to its first layers keeps every tensor it has.
constexpr double kDummyStd = 0.02;
constexpr uint64_t kDummyLmHeadTensor = uint64_t{1} << 40;
// The std of layer `layer`'s o_proj and down_proj: kDummyStd, times
// config.dummy_late_layer_scale from config.dummy_exit_layer on.
double dummy_output_projection_std(const ModelConfig& config, int64_t layer);

// Inverse of llama.cpp convert_hf_to_gguf.py's `permute` on the rows of a
// [heads * head_dim, cols] matrix (cols = 1 for a bias): GGUF row
// h*D + 2i + p holds HF row h*D + p*D/2 + i.
void unpermute_rotary_rows(std::vector<float>& w, int64_t heads, int64_t head_dim, int64_t cols);
// The same on a matrix of any dtype: rows are moved whole (a quantized row is
// a run of blocks), so it works on raw GGUF blocks too.
void unpermute_rotary_rows(WeightMatrix& w, int64_t heads, int64_t head_dim);

}  // namespace ember
