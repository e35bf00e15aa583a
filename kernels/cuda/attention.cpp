// The host side every attention entry point shares: the argument checks, and
// the mixed-batch entry point that hands each sequence to the kernel built
// for it.

#include <string>

#include "kernels/cuda/attention.h"

namespace ember {

Status check_paged_attention_args(const PagedAttentionArgs& a, const char* who) {
  auto fail = [&](const std::string& what) { return Error{std::string(who) + ": " + what}; };
  if (a.num_seqs <= 0 || a.num_tokens <= 0) return fail("empty batch");
  if (a.num_heads <= 0 || a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0)
    return fail("num_heads must be a positive multiple of num_kv_heads");
  if (a.block_size <= 0 || (a.block_size & (a.block_size - 1)) != 0)
    return fail("block_size must be a power of two, got " + std::to_string(a.block_size));
  if (a.max_seq_len <= 0 || a.max_query_len <= 0 || a.max_blocks_per_seq <= 0)
    return fail("max_seq_len, max_query_len and max_blocks_per_seq must be positive");
  if (!a.q || !a.out || !a.k_cache || !a.v_cache || !a.query_start_loc || !a.seq_lens || !a.block_tables)
    return fail("null pointer argument");
  if (a.kv_fp8 && (!a.k_scale || !a.v_scale)) return fail("an FP8 cache needs k_scale and v_scale");
  // The prefill kernel orders scores before scaling them (attention_prefill.cu).
  if (!(a.scale > 0.0f)) return fail("scale must be positive, got " + std::to_string(a.scale));
  return Status::success();
}

Status paged_attention_mixed(const PagedAttentionArgs& args, cudaStream_t stream) {
  PagedAttentionArgs a = args;
  a.split_decodes = true;
  if (Status s = paged_attention_decode(a, stream); !s.ok()) return s;
  return paged_attention_prefill(a, stream);
}

}  // namespace ember
