#pragma once
// One (token, query head) of causal paged attention with AVX2 (attention_avx2.cpp).

#include <cstdint>
#include <vector>

namespace ember {

struct AttendArgs {
  const float* k_cache = nullptr;  // this KV head's first element of slot 0
  const float* v_cache = nullptr;
  int64_t row_stride = 0;  // elements between consecutive slots (Hkv * D)
  int64_t head_dim = 0;    // D, a multiple of 8
  int64_t visible = 0;     // context tokens [0, visible) attended to
  float scale = 1.0f;
  const int32_t* block_table = nullptr;
  int64_t block_size = 0;
  // An FP8 cache instead of k_cache / v_cache: codes, read as code * k_scale (v_scale).
  const uint8_t* k_codes = nullptr;
  const uint8_t* v_codes = nullptr;
  float k_scale = 1.0f, v_scale = 1.0f;
};

// out[n] = code * scale for n FP8 E4M3 codes (n a multiple of 8): the values the exact loop reads, the same bits.
void dequantize_fp8_avx2(const uint8_t* codes, int64_t n, float scale, float* out);

// out[D] = softmax(q . K^T * scale) V over the visible context; scores and rows are scratch.
void attend_one_avx2(const AttendArgs& a, const float* q, float* out, std::vector<float>& scores,
                     std::vector<int64_t>& rows);

}  // namespace ember
