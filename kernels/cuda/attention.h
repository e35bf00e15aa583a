#pragma once
// Causal paged attention on the GPU, with exactly the semantics of
// Backend::paged_attention (kernels/backend.h; CPU version kernels/cpu/attention.cpp):
// a varlen batch of B sequences and T query tokens; sequence b owns query rows
// [query_start_loc[b], query_start_loc[b+1]), the LAST q_len tokens of its
// context of seq_lens[b] tokens, and query i attends to context tokens
// [0, seq_lens[b] - q_len + i]. Query head h reads KV head h / (Hq / Hkv).
// KV caches are [num_blocks, block_size, Hkv, D] bf16; token j of sequence b
// lives in block block_tables[b * max_blocks_per_seq + j / block_size].
//
// Three kernels, one contract:
//   decode    flash-decoding, every q_len == 1 (T == B): context split over
//             thread blocks, fp32 partials in `workspace`, then a reduction
//             (v2, the one the backend runs, and v1, kept for comparison).
//   prefill   flash-attention 2 with mma.sync bf16 tensor cores: any varlen
//             batch (chunked prefill with cached context, decodes mixed in).
//   reference one warp per (token, head), online softmax in fp32: slow and
//             obviously correct; tests compare the fast kernels with it.
// All are CUDA-graph capturable: grids depend only on the host bounds
// max_seq_len / max_query_len; no allocation, no sync, no host reads.
// Supported: head_dim 64 or 128; block_size a power of two (8..256 tested).

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "common/status.h"

namespace ember {

struct PagedAttentionArgs {
  const __nv_bfloat16* q = nullptr;  // [T, Hq*D]
  __nv_bfloat16* out = nullptr;      // [T, Hq*D]
  const __nv_bfloat16* k_cache = nullptr;  // [num_blocks, block_size, Hkv, D]
  const __nv_bfloat16* v_cache = nullptr;
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
  // Tuning (benchmarks): the decode split size in keys, a power of two in
  // [64, 1024]; 0 lets the planner choose. The workspace must fit it.
  int32_t decode_chunk = 0;
};

// Bytes of `workspace` paged_attention_decode needs for these bounds (0 when
// the context is not split). num_sms <= 0: the current device's SM count.
size_t paged_attention_workspace_bytes(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                                       int max_seq_len, int num_sms = 0, int decode_chunk = 0);

// Requires every q_len == 1 (num_tokens == num_seqs, max_query_len == 1).
// v1: three phases per block (all logits, softmax, all of V) between barriers.
Status paged_attention_decode(const PagedAttentionArgs& args, cudaStream_t stream);
// The same contract and workspace, per-warp online softmax with no barrier in
// the key loop, tensor-core q.K and P.V (attention_decode_v2.cu): what the
// CUDA backend runs (H100, batch 32 x 4k: 2,777 GB/s, 93% of copy; v1 2,397).
Status paged_attention_decode_v2(const PagedAttentionArgs& args, cudaStream_t stream);
// Any varlen batch.
Status paged_attention_prefill(const PagedAttentionArgs& args, cudaStream_t stream);
// Any varlen batch, its q_len == 1 sequences by the decode kernel (GQA heads
// share each K/V read; the prefill kernel's tiles would hold one valid row
// per query head) and the rest by the prefill kernel: what mixed
// prefill + decode steps run. Needs the decode workspace.
Status paged_attention_mixed(const PagedAttentionArgs& args, cudaStream_t stream);
// The same with an explicit tile: warps 4 (64 query rows a block) or 8 (128
// rows). paged_attention_prefill picks by max_query_len; tests and the
// benchmark drive both.
Status paged_attention_prefill_warps(const PagedAttentionArgs& args, int warps, cudaStream_t stream);
// The tensor-core kernel paged_attention_prefill runs (attention_prefill_v3.cu:
// 4 warps of 16 or 32 query rows, one barrier per key tile, lazy O rescale):
// rows 64 or 128 query rows a block. H100, one 16k prompt: 331-358 TFLOP/s
// (torch SDPA flash 345; the v2 kernel it replaced 311). v1 (warps4/warps8)
// stays for comparison and for scale <= 0.
Status paged_attention_prefill_v3(const PagedAttentionArgs& args, int rows, cudaStream_t stream);
// Any varlen batch, any head_dim <= 256 that is a multiple of 32, any block_size.
Status paged_attention_reference(const PagedAttentionArgs& args, cudaStream_t stream);

// Shared host-side checks of the shape arguments (not of device data).
Status check_paged_attention_args(const PagedAttentionArgs& args, const char* who);

// The multiprocessor count of the current device, queried once per device.
int cuda_sm_count();

}  // namespace ember
