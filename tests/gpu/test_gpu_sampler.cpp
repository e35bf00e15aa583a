// GpuSampler against the CPU Sampler (engine/sampler.h, the single definition
// of the semantics) on random logits and random parameters, rows sampled by
// both with identical generators. Runs only on a GPU machine; without one it
// FAILS rather than skipping.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/gpu_sampler.h"
#include "engine/sampler.h"
#include "kernels/cuda/device_info.h"

namespace ember {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

enum class Shape { kGaussian, kPeaked, kTies, kMasked };

std::vector<float> random_logits(int32_t vocab, Shape shape, std::mt19937_64& rng) {
  std::normal_distribution<float> g(0.0f, 2.0f);
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(vocab));
  for (float& v : x) v = g(rng);
  switch (shape) {
    case Shape::kGaussian: break;
    case Shape::kPeaked:  // a few tokens carry nearly all the mass
      for (int j = 0; j < 4; ++j) x[static_cast<size_t>(id(rng))] += 12.0f + 3.0f * u01(rng);
      break;
    case Shape::kTies:  // few distinct values: ties everywhere, also at the top
      for (float& v : x) v = std::round(v) * 0.5f;
      break;
    case Shape::kMasked:
      for (float& v : x)
        if (u01(rng) < 0.3f) v = kNegInf;
      break;
  }
  return x;
}

SamplingParams random_params(int32_t vocab, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  auto pick = [&](std::initializer_list<float> v) { return *(v.begin() + rng() % v.size()); };
  SamplingParams sp;
  sp.temperature = u01(rng) < 0.2f ? 0.0f : pick({0.3f, 0.7f, 1.0f, 1.3f});
  const int kc = static_cast<int>(rng() % 5);
  sp.top_k = kc == 0 ? 1 : kc == 1 ? 5 : kc == 2 ? 50 : -1;
  sp.top_p = pick({1.0f, 1.0f, 0.9f, 0.5f, 0.95f, 0.1f + 0.9f * u01(rng)});
  sp.min_p = pick({0.0f, 0.0f, 0.05f, 0.2f});
  sp.repetition_penalty = pick({1.0f, 1.0f, 1.2f, 0.8f});
  sp.frequency_penalty = pick({0.0f, 0.0f, 0.5f, -0.3f});
  sp.presence_penalty = pick({0.0f, 0.0f, 0.7f});
  if (rng() % 3 == 0)
    for (int j = 0; j < 4; ++j) sp.logit_bias[id(rng)] = pick({-100.0f, 5.0f, 2.5f, -1.0f});
  if (rng() % 3 == 0) {
    sp.min_tokens = static_cast<int32_t>(rng() % 40);
    sp.stop_token_ids = {id(rng), id(rng)};
    sp.ignore_eos = rng() % 2 == 0;
  }
  if (rng() % 2 == 0) sp.logprobs = static_cast<int32_t>(rng() % 21);
  sp.seed = rng();
  return sp;
}

// The CPU sampler's sampling distribution over `processed` logits (survivors
// in ascending id order with their unnormalised mass): the oracle that tells
// whether a differing draw sat on a CDF boundary.
struct Dist {
  std::vector<int32_t> ids;
  std::vector<double> p;
};

Dist reference_distribution(const std::vector<float>& x, const SamplingParams& sp) {
  struct C { int32_t id; float y; double p; };
  std::vector<C> c;
  const float inv_t = 1.0f / sp.temperature;
  for (int32_t i = 0; i < static_cast<int32_t>(x.size()); ++i)
    if (x[i] > kNegInf) c.push_back({i, x[i] * inv_t, 0.0});
  auto better = [](const C& a, const C& b) { return a.y != b.y ? a.y > b.y : a.id < b.id; };
  std::sort(c.begin(), c.end(), better);
  const int32_t k = sp.top_k_or_off();
  if (k > 0 && static_cast<size_t>(k) < c.size()) {
    const float kth = c[k - 1].y;
    std::erase_if(c, [&](const C& e) { return e.y < kth; });
  }
  double sum = 0.0;
  for (C& e : c) sum += (e.p = std::exp(static_cast<double>(e.y) - c[0].y));
  for (C& e : c) e.p /= sum;
  if (sp.top_p < 1.0f) {
    double before = 0.0;
    size_t keep = 0;
    while (keep < c.size() && before < sp.top_p) before += c[keep++].p;
    c.resize(std::max<size_t>(keep, 1));
  }
  if (sp.min_p > 0.0f) {
    const double floor = sp.min_p * c[0].p;
    std::erase_if(c, [&](const C& e) { return e.p < floor; });
  }
  std::sort(c.begin(), c.end(), [](const C& a, const C& b) { return a.id < b.id; });
  Dist d;
  for (const C& e : c) d.ids.push_back(e.id), d.p.push_back(e.p);
  return d;
}

// True when u (already scaled by the total) lies within tol of a CDF boundary
// between tokens a and b.
bool near_boundary(const Dist& d, double u, int32_t a, int32_t b, double tol) {
  double total = 0.0, acc = 0.0;
  for (double p : d.p) total += p;
  const int32_t lo = std::min(a, b), hi = std::max(a, b);
  for (size_t j = 0; j < d.ids.size(); ++j) {
    acc += d.p[j];
    if (d.ids[j] >= lo && d.ids[j] < hi && std::abs(acc - u * total) <= tol * total) return true;
  }
  return false;
}

struct Batch {
  std::vector<std::vector<float>> logits;
  std::vector<std::vector<int32_t>> prompt, output;
  std::vector<SamplingParams> params;
  std::vector<RequestGenerator> gen;
  std::vector<int32_t> draft;  // speculative verification rows: the proposed token, else -1
};

Batch random_batch(int32_t vocab, int32_t rows, std::mt19937_64& rng) {
  Batch b;
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  for (int32_t r = 0; r < rows; ++r) {
    b.logits.push_back(random_logits(vocab, static_cast<Shape>(rng() % 4), rng));
    std::vector<int32_t> prompt(rng() % 50), output(rng() % 50);
    for (auto& t : prompt) t = id(rng);
    for (auto& t : output) t = id(rng);
    if (!output.empty()) output.push_back(output[0]);  // repeats, for frequency counts
    b.prompt.push_back(prompt);
    b.output.push_back(output);
    b.params.push_back(random_params(vocab, rng));
    b.gen.push_back({*b.params.back().seed, static_cast<uint32_t>(r % 3), rng() % 1000});
    // A third of the rows verify a proposal: the row's best raw logit (often accepted) or any id.
    const std::vector<float>& l = b.logits.back();
    const int32_t best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    const uint64_t kind = rng() % 6;
    b.draft.push_back(kind == 0 ? best : kind == 1 ? id(rng) : -1);
  }
  return b;
}

// Grammar bitmasks (structured outputs) on a third of the rows: dense, sparse, a single id, and a mask that
// allows only the stop ids (min_tokens must then leave EOS alone).
std::vector<std::vector<uint32_t>> random_masks(int32_t vocab, int32_t rows_n, const std::vector<int32_t>& eos,
                                                std::mt19937_64& rng) {
  std::vector<std::vector<uint32_t>> masks(static_cast<size_t>(rows_n));
  const size_t words = (static_cast<size_t>(vocab) + 31) / 32;
  for (int32_t r = 0; r < rows_n; r += 3) {
    std::vector<uint32_t>& m = masks[static_cast<size_t>(r)];
    m.assign(words, 0);
    const int kind = static_cast<int>(rng() % 4);
    auto set = [&](int32_t id) { m[static_cast<size_t>(id) >> 5] |= 1u << (id & 31); };
    if (kind == 3) {
      for (int32_t e : eos) set(e);
      continue;
    }
    if (kind == 2) {
      set(static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)));
      continue;
    }
    const uint64_t one_in = kind == 0 ? 2 : 50;
    for (int32_t id = 0; id < vocab; ++id)
      if (rng() % one_in == 0) set(id);
  }
  return masks;
}

std::vector<SamplerRow> make_rows(Batch& b, std::vector<RequestGenerator>& gens,
                                  const std::vector<std::vector<uint32_t>>& masks = {}) {
  std::vector<SamplerRow> rows;
  for (size_t r = 0; r < b.logits.size(); ++r) {
    rows.push_back({b.logits[r], b.prompt[r], b.output[r], &b.params[r], &gens[r]});
    rows.back().draft_token = b.draft[r];
    if (r < masks.size() && !masks[r].empty()) rows.back().allowed = masks[r].data();
  }
  return rows;
}

struct Tally {
  int rows = 0, greedy = 0, draws = 0, boundary_diffs = 0, verified = 0, accepted = 0;
};

// Within 1e-4, or the same infinity (a -inf raw logit's logprob is -inf on both).
void expect_same_logprob(float got, float want, const std::string& where) {
  if (std::isinf(got) || std::isinf(want)) {
    EXPECT_EQ(got, want) << where;
  } else {
    EXPECT_NEAR(got, want, 1e-4) << where;
  }
}

void compare_batch(int32_t vocab, int32_t rows_n, std::vector<int32_t> eos, std::mt19937_64& rng, Tally& tally) {
  Batch b = random_batch(vocab, rows_n, rng);
  const std::vector<std::vector<uint32_t>> masks = random_masks(vocab, rows_n, eos, rng);
  std::vector<RequestGenerator> cpu_gen = b.gen, gpu_gen = b.gen;
  std::vector<SamplerRow> cpu_rows = make_rows(b, cpu_gen, masks), gpu_rows = make_rows(b, gpu_gen, masks);

  Sampler cpu(eos);
  const std::vector<SampledToken> want = cpu.sample(cpu_rows);

  auto gpu = GpuSampler::create(vocab, rows_n, eos);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  const size_t n = static_cast<size_t>(vocab) * rows_n;
  float* d_logits = nullptr;
  ASSERT_EQ(cudaMalloc(&d_logits, n * sizeof(float)), cudaSuccess);
  for (int32_t r = 0; r < rows_n; ++r)
    ASSERT_EQ(cudaMemcpy(d_logits + static_cast<size_t>(r) * vocab, b.logits[r].data(), vocab * sizeof(float),
                         cudaMemcpyHostToDevice), cudaSuccess);
  std::vector<SampledToken> got;
  got.push_back({-7, 1.0f, {}});  // sample() must replace stale content
  const Status st = (*gpu)->sample(d_logits, gpu_rows, got, nullptr);
  ASSERT_TRUE(st.ok()) << st.error().message;
  std::vector<float> processed(n);
  ASSERT_EQ(cudaMemcpy(processed.data(), d_logits, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaFree(d_logits), cudaSuccess);
  ASSERT_EQ(got.size(), want.size());

  for (int32_t r = 0; r < rows_n; ++r) {
    const SamplingParams& sp = b.params[r];
    const std::string where = "vocab " + std::to_string(vocab) + " row " + std::to_string(r) + " T=" +
                              std::to_string(sp.temperature) + " k=" + std::to_string(sp.top_k) +
                              " p=" + std::to_string(sp.top_p) + " min_p=" + std::to_string(sp.min_p);
    ++tally.rows;
    EXPECT_EQ(cpu_gen[r].step, gpu_gen[r].step) << where;  // advanced exactly when the CPU draws
    if (sp.greedy()) {
      ++tally.greedy;
      EXPECT_EQ(got[r].token, want[r].token) << where;
    } else if (got[r].token != want[r].token) {
      // Only a uniform sitting on a CDF boundary may flip the draw.
      std::vector<float> row(processed.begin() + static_cast<ptrdiff_t>(r) * vocab,
                             processed.begin() + static_cast<ptrdiff_t>(r + 1) * vocab);
      RequestGenerator g = b.gen[r];
      const double u = g.next_uniform();
      Dist d = reference_distribution(row, sp);
      const int32_t draft = b.draft[r];
      if (draft < 0) {
        EXPECT_TRUE(near_boundary(d, u, want[r].token, got[r].token, 1e-5))
            << where << ": cpu " << want[r].token << " gpu " << got[r].token << " u " << u;
      } else {
        // Either the acceptance test (u1 against p(d)) sat on its boundary, or the
        // draw from the rest (u2) sat on a boundary of the distribution without d.
        const double u2 = g.next_uniform();
        double total = 0.0, pd = 0.0;
        for (size_t j = 0; j < d.ids.size(); ++j) total += d.p[j], pd += d.ids[j] == draft ? d.p[j] : 0.0;
        const bool acceptance_flip = std::abs(u * total - pd) <= 1e-5 * total;
        Dist rest;
        for (size_t j = 0; j < d.ids.size(); ++j)
          if (d.ids[j] != draft) rest.ids.push_back(d.ids[j]), rest.p.push_back(d.p[j]);
        EXPECT_TRUE(acceptance_flip || near_boundary(rest, u2, want[r].token, got[r].token, 1e-5))
            << where << " draft " << draft << ": cpu " << want[r].token << " gpu " << got[r].token;
      }
      ++tally.boundary_diffs;
    }
    if (!sp.greedy()) ++tally.draws;
    if (b.draft[r] >= 0) ++tally.verified, tally.accepted += want[r].token == b.draft[r];
    if (sp.logprobs) {
      expect_same_logprob(got[r].logprob, want[r].logprob, where);
      ASSERT_EQ(got[r].top.size(), want[r].top.size()) << where;
      for (size_t j = 0; j < want[r].top.size(); ++j) {
        EXPECT_EQ(got[r].top[j].token, want[r].top[j].token) << where << " top " << j;
        expect_same_logprob(got[r].top[j].logprob, want[r].top[j].logprob, where + " top " + std::to_string(j));
      }
    } else {
      EXPECT_TRUE(got[r].top.empty()) << where;
    }
  }
}

class GpuSamplerParity : public ::testing::TestWithParam<int32_t> {};

TEST_P(GpuSamplerParity, MatchesCpuSampler) {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
  const int32_t vocab = GetParam();
  std::mt19937_64 rng(0x5a3c1 + static_cast<uint64_t>(vocab));
  const int32_t rows = vocab <= 64 ? 256 : vocab <= 49152 ? 96 : 48;
  const int batches = vocab <= 64 ? 8 : 3;
  Tally tally;
  for (int i = 0; i < batches; ++i) {
    compare_batch(vocab, rows, {vocab - 1, 2}, rng, tally);
    if (HasFatalFailure()) return;
  }
  std::printf("vocab %d: %d rows, %d greedy, %d draws, %d boundary differences, %d verify rows (%d accepted)\n",
              vocab, tally.rows, tally.greedy, tally.draws, tally.boundary_diffs, tally.verified, tally.accepted);
  EXPECT_GT(tally.verified, tally.rows / 5) << "verification rows are covered";
  EXPECT_GT(tally.accepted, 0);
  EXPECT_LT(tally.accepted, tally.verified);
  EXPECT_LE(tally.boundary_diffs * 1000, std::max(tally.draws, 1000)) << "more than 1 in 1000 draws differ";
}

INSTANTIATE_TEST_SUITE_P(Vocabs, GpuSamplerParity, ::testing::Values(64, 32000, 49152, 128256));

// All rows greedy with no processors: the argmax fast path, ties included.
TEST(GpuSampler, GreedyFastPathMatchesCpu) {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
  for (int32_t vocab : {64, 32000, 128256}) {
    std::mt19937_64 rng(99 + static_cast<uint64_t>(vocab));
    const int32_t rows_n = 64;
    std::vector<std::vector<float>> logits;
    for (int32_t r = 0; r < rows_n; ++r) logits.push_back(random_logits(vocab, static_cast<Shape>(r % 4), rng));
    logits[1].assign(static_cast<size_t>(vocab), kNegInf);  // all masked: the CPU answers 0
    logits[2].assign(static_cast<size_t>(vocab), 1.5f);     // one big tie: lowest id
    SamplingParams sp;
    sp.temperature = 0.0f;
    std::vector<SamplerRow> rows;
    for (auto& l : logits) rows.push_back({l, {}, {}, &sp, nullptr});
    Sampler cpu;
    const auto want = cpu.sample(rows);
    auto gpu = GpuSampler::create(vocab, rows_n, {});
    ASSERT_TRUE(gpu.ok());
    float* d = nullptr;
    ASSERT_EQ(cudaMalloc(&d, sizeof(float) * vocab * rows_n), cudaSuccess);
    for (int32_t r = 0; r < rows_n; ++r)
      ASSERT_EQ(cudaMemcpy(d + static_cast<size_t>(r) * vocab, logits[r].data(), sizeof(float) * vocab,
                           cudaMemcpyHostToDevice), cudaSuccess);
    std::vector<SampledToken> got;
    ASSERT_TRUE((*gpu)->sample(d, rows, got, nullptr).ok());
    ASSERT_EQ(cudaFree(d), cudaSuccess);
    ASSERT_EQ(got.size(), want.size());
    for (int32_t r = 0; r < rows_n; ++r) EXPECT_EQ(got[r].token, want[r].token) << "vocab " << vocab << " row " << r;
  }
}

// 20k seeded draws from one fixed distribution with top-p 0.9: frequencies
// match the nucleus (chi-square, p = 0.001), and nothing outside it is drawn.
TEST(GpuSampler, TopPFrequenciesChiSquare) {
  ASSERT_FALSE(cuda_devices().empty()) << "no CUDA device: GPU tests must run on a GPU machine";
  const int32_t vocab = 64, rows_n = 500, calls = 40;
  std::mt19937_64 rng(7);
  std::vector<float> logits(vocab);
  std::normal_distribution<float> g(0.0f, 1.5f);
  for (float& v : logits) v = g(rng);
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_p = 0.9f;
  const Dist d = reference_distribution(logits, sp);
  double total = 0.0;
  for (double p : d.p) total += p;

  auto gpu = GpuSampler::create(vocab, rows_n, {});
  ASSERT_TRUE(gpu.ok());
  float* dl = nullptr;
  ASSERT_EQ(cudaMalloc(&dl, sizeof(float) * vocab * rows_n), cudaSuccess);
  std::vector<int64_t> counts(vocab, 0);
  std::vector<RequestGenerator> gens(rows_n);
  for (int32_t r = 0; r < rows_n; ++r) gens[r] = {1234567u + static_cast<uint64_t>(r), 0, 0};
  for (int c = 0; c < calls; ++c) {
    for (int32_t r = 0; r < rows_n; ++r)
      ASSERT_EQ(cudaMemcpy(dl + static_cast<size_t>(r) * vocab, logits.data(), sizeof(float) * vocab,
                           cudaMemcpyHostToDevice), cudaSuccess);
    std::vector<SamplerRow> rows;
    for (int32_t r = 0; r < rows_n; ++r) rows.push_back({logits, {}, {}, &sp, &gens[r]});
    std::vector<SampledToken> got;
    ASSERT_TRUE((*gpu)->sample(dl, rows, got, nullptr).ok());
    for (const auto& t : got) {
      ASSERT_GE(t.token, 0);
      ASSERT_LT(t.token, vocab);
      ++counts[t.token];
    }
  }
  ASSERT_EQ(cudaFree(dl), cudaSuccess);
  for (int32_t r = 0; r < rows_n; ++r) EXPECT_EQ(gens[r].step, static_cast<uint64_t>(calls));

  const double n = static_cast<double>(rows_n) * calls;
  std::vector<bool> in_nucleus(vocab, false);
  double chi2 = 0.0, pooled_obs = 0.0, pooled_exp = 0.0;
  int bins = 0;
  for (size_t j = 0; j < d.ids.size(); ++j) {
    in_nucleus[d.ids[j]] = true;
    const double e = n * d.p[j] / total, o = static_cast<double>(counts[d.ids[j]]);
    if (e < 5.0) {
      pooled_obs += o, pooled_exp += e;
      continue;
    }
    chi2 += (o - e) * (o - e) / e, ++bins;
  }
  if (pooled_exp > 0.0) chi2 += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp, ++bins;
  for (int32_t i = 0; i < vocab; ++i) {
    if (!in_nucleus[i]) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the top-p nucleus";
    }
  }
  // Wilson-Hilferty critical value of chi-square(df) at p = 0.001.
  const double df = bins - 1, z = 3.09;
  const double crit = df * std::pow(1.0 - 2.0 / (9.0 * df) + z * std::sqrt(2.0 / (9.0 * df)), 3.0);
  std::printf("top-p chi-square %.1f, df %.0f, critical %.1f, nucleus %zu tokens\n", chi2, df, crit, d.ids.size());
  EXPECT_GT(df, 5.0);
  EXPECT_LT(chi2, crit);
}

}  // namespace
}  // namespace ember
