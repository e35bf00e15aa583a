#pragma once
// The per-logit rules of sampling, written once for the CPU sampler
// (engine/sampler.cpp) and the GPU sampling kernels (kernels/cuda/sampler_kernels.cu).
// Each logit an id's processors touch goes through them in this order (as vLLM):
//   1. logit_bias      x + bias
//   2. min_tokens      -inf for EOS and stop_token_ids while fewer than
//                      min_tokens outputs exist
//   3. repetition      x / r if x > 0, else x * r; ids in the prompt or the
//                      output, once each (HF/CTRL)
//   4. frequency and   x - (frequency * count + presence), ids generated
//      presence        count > 0 times (OpenAI)
// then sampling multiplies by 1 / temperature (temperatures below 1e-5 are
// greedy: SamplingParams::greedy(), which both samplers ask). Each rule
// touches an id at most once, so applying them pass by pass over the ids (the
// CPU) or id by id (the GPU) gives the same floats. On the device every
// operation is a correctly rounded IEEE op that is never contracted into an
// FMA (__fadd_rn & co.); on the host the plain operators, as the CPU sampler
// always used, compiled with -ffp-contract=off (CMakeLists.txt) so that no
// target fuses them either. So the GPU's processed logits are bit-identical to
// the CPU's.
// Plain C++17 with no dependencies: nvcc compiles it as well.

#include <cstdint>

#if defined(__CUDACC__)
#define EMBER_HOST_DEVICE __host__ __device__
#else
#define EMBER_HOST_DEVICE
#endif

namespace ember::sampling {

EMBER_HOST_DEVICE inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
EMBER_HOST_DEVICE inline float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
EMBER_HOST_DEVICE inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
EMBER_HOST_DEVICE inline float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// 1. logit_bias.
EMBER_HOST_DEVICE inline float with_bias(float x, float bias) { return add_rn(x, bias); }

// 2. min_tokens: whether EOS and stop_token_ids are masked, given the outputs
// generated so far (including those still in flight).
EMBER_HOST_DEVICE inline bool min_tokens_masks(int64_t generated, int32_t min_tokens) { return generated < min_tokens; }
EMBER_HOST_DEVICE inline float masked_logit() { return -__builtin_inff(); }  // -INFINITY without <cmath>

// 3. repetition penalty r (> 0; 1 is off).
EMBER_HOST_DEVICE inline float with_repetition_penalty(float x, float r) {
  return x > 0.0f ? div_rn(x, r) : mul_rn(x, r);
}

// 4. frequency and presence penalties of an id generated `count` (> 0) times:
// what is subtracted, then the subtraction.
EMBER_HOST_DEVICE inline float additive_penalty(float frequency, float presence, int32_t count) {
  return add_rn(mul_rn(frequency, static_cast<float>(count)), presence);
}
EMBER_HOST_DEVICE inline float with_additive_penalty(float x, float penalty) { return sub_rn(x, penalty); }

// Temperature: logits are multiplied by the float reciprocal of T.
EMBER_HOST_DEVICE inline float inverse_temperature(float temperature) { return div_rn(1.0f, temperature); }
EMBER_HOST_DEVICE inline float with_temperature(float x, float inv_temperature) { return mul_rn(x, inv_temperature); }

}  // namespace ember::sampling
