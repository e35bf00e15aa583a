#pragma once
// Tensor-core and async-copy primitives for the prefill kernel (sm_80+).
// Fragment layouts relied on (PTX ISA, "Matrix Fragments for mma.m16n8k16"
// with .bf16; g = lane / 4, c = lane % 4):
//   A 16x16 (row-major), 4 x .b32, each two bf16 of adjacent columns:
//     a0 = A[g][2c..2c+1]   a1 = A[g+8][2c..2c+1]   a2 = A[g][2c+8..]   a3 = A[g+8][2c+8..]
//   B 16x8 (k x n, "col"), 2 x .b32:
//     b0 = B[2c..2c+1][g]   b1 = B[2c+8..2c+9][g]
//   C/D 16x8 fp32, 4 floats:
//     d0,d1 = D[g][2c..2c+1]   d2,d3 = D[g+8][2c..2c+1]
//   The lower 16 bits of a .b32 hold the element with the smaller column
//   (A) or row (B) index.
// ldmatrix.m8n8.x4: lanes 8i..8i+7 give the row addresses of matrix i; lane l
// receives row l/4, columns 2(l%4)..+1 of each matrix (with .trans: rows
// 2(l%4)..+1 of column l/4), one register per matrix.
// Consequence used for P.V (flash-attention 2): the C fragments of two
// adjacent 16x8 score tiles, packed to bf16 pairs, ARE the A fragment of the
// 16x16 probability block: a0 = (d0,d1) of tile 0, a1 = (d2,d3) of tile 0,
// a2 = (d0,d1) of tile 1, a3 = (d2,d3) of tile 1.

#include <cstdint>

#include <cuda_bf16.h>

namespace ember::mma {

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][D] bf16
// tile stored with chunk c of row r at c ^ (r & 7): the eight rows one
// ldmatrix phase (or one cp.async quarter-warp) touches land in eight
// distinct bank groups.
template <int D>
__device__ inline int swizzle(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

__device__ inline uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// 16-byte global->shared copy; src_bytes 0 zero-fills (keys past the context).
__device__ inline void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a * b, m16n8k16, bf16 inputs, fp32 accumulators.
__device__ inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ inline uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ inline float fast_exp2(float x) {  // ex2.approx: 2 ulp, exp2(-inf) = 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace ember::mma
