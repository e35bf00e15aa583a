#pragma once
// Causal paged attention on the GPU, with exactly the semantics of
// Backend::paged_attention (kernels/backend.h; CPU version kernels/cpu/attention.cpp):
// a varlen batch of B sequences and T query tokens; sequence b owns query rows
// [query_start_loc[b], query_start_loc[b+1]), the LAST q_len tokens of its
// context of seq_lens[b] tokens, and query i attends to context tokens
// [0, seq_lens[b] - q_len + i]. Query head h reads KV head h / (Hq / Hkv).
// KV caches are [num_blocks, block_size, Hkv, D] bf16, or E4M3 codes (an FP8
// cache, kv_fp8: element = code * *k_scale, resp. *v_scale; one byte an
// element, so decode reads half the bytes); token j of sequence b lives in
// block block_tables[b * max_blocks_per_seq + j / block_size].
//
// One entry point per kind of step, one contract:
//   decode   flash-decoding, every q_len == 1 (attention_decode.cu).
//   prefill  flash-attention 2 on mma.sync tensor cores, any varlen batch
//            (attention_prefill.cu).
//   mixed    a varlen batch whose q_len == 1 sequences go to the decode
//            kernel and the rest to the prefill kernel (attention.cpp).
// All are CUDA-graph capturable: grids depend only on the host bounds
// max_seq_len / max_query_len; no allocation, no sync, no host reads.
// Supported: head_dim 64 or 128; block_size a power of two (8..256 tested);
// scale > 0 (and k_scale > 0). Design and measurements: NOTES-attention.md.

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "common/status.h"

namespace ember {

// What the kernels take: PagedAttentionArgs less the FP8 cache's scales,
// which reach them as two more parameters (so the bf16 kernels' parameters,
// hence their code, stay as they were tuned).
struct PagedAttentionParams {
  const __nv_bfloat16* q = nullptr;  // [T, Hq*D]
  __nv_bfloat16* out = nullptr;      // [T, Hq*D]
  const void* k_cache = nullptr;  // [num_blocks, block_size, Hkv, D]: bf16, or E4M3 codes when kv_fp8
  const void* v_cache = nullptr;
  const int32_t* query_start_loc = nullptr;  // device, [B + 1]
  const int32_t* seq_lens = nullptr;         // device, [B]
  const int32_t* block_tables = nullptr;     // device, [B * max_blocks_per_seq]
  int32_t num_seqs = 0, num_tokens = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, block_size = 0,
          max_blocks_per_seq = 0;
  int32_t max_seq_len = 0;    // host upper bound on seq_lens (may exceed the true max, e.g. max_model_len)
  int32_t max_query_len = 0;  // host upper bound on q_len
  float scale = 1.0f;
  void* workspace = nullptr;  // device scratch for the decode split partials
  size_t workspace_bytes = 0;
  // Set by paged_attention_mixed: the decode kernel takes only sequences with
  // q_len == 1 (any batch) and the prefill kernel skips them.
  bool split_decodes = false;
  // Tuning (tests, benchmarks); 0 lets the entry point choose.
  //   decode_chunk  the decode split size in keys, a power of two in
  //                 [64, 1024]; the workspace must fit it.
  //   prefill_rows  query rows per prefill block, 64 or 128.
  int32_t decode_chunk = 0;
  int32_t prefill_rows = 0;
};

struct PagedAttentionArgs : PagedAttentionParams {
  // An FP8 cache: the layer's scales, one float each in device memory (read
  // by the kernels, so a captured graph follows them).
  bool kv_fp8 = false;
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  // Decode: each warp loads its first tile's keys before it waits for the
  // kernel before, except the step's new key (false: it waits first; the
  // same bits either way).
  bool decode_early_kv = true;
};

// Bytes of `workspace` paged_attention_decode needs for these bounds (0 when
// the context is not split). num_sms <= 0: the current device's SM count.
size_t paged_attention_workspace_bytes(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                                       int max_seq_len, int num_sms = 0, int decode_chunk = 0);

// Every q_len == 1 (num_tokens == num_seqs, max_query_len == 1). Needs the
// workspace. Batch 32 x 4k context: 93% of a device copy (H100 2,785 GB/s,
// H200 3,917 GB/s; torch SDPA 3,590).
Status paged_attention_decode(const PagedAttentionArgs& args, cudaStream_t stream);
// Any varlen batch. One 16k prompt: H100 343-358 TFLOP/s (torch SDPA flash 345),
// H200 350 (flash 335, cuDNN 633).
Status paged_attention_prefill(const PagedAttentionArgs& args, cudaStream_t stream);
// Any varlen batch, its q_len == 1 sequences by the decode kernel (GQA heads
// share each K/V read; a prefill tile would hold one valid row per query
// head) and the rest by the prefill kernel: what mixed prefill + decode
// steps run. Needs the decode workspace.
Status paged_attention_mixed(const PagedAttentionArgs& args, cudaStream_t stream);

// The host-side checks of the shape arguments (not of device data) every
// entry point makes; `who` names the caller in the message.
Status check_paged_attention_args(const PagedAttentionArgs& args, const char* who);

}  // namespace ember
