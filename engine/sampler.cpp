#include "engine/sampler.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

#include "kernels/sampling_rules.h"

namespace ember {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = uint64_t{a} * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

struct Candidate {
  int32_t id;
  float logit;
  double p;
};

// Higher logit first; among equals the lower id, so every ordering below is
// a pure function of the logits.
bool better(const Candidate& a, const Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

}  // namespace

Philox4x32::Counter Philox4x32::apply(Counter c, Key k) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c[0], hi0, lo0);
    mulhilo(kM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kW0;
    k[1] += kW1;
  }
  return c;
}

double RequestGenerator::next_uniform() {
  const Philox4x32::Counter out = Philox4x32::apply(
      {static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), stream, 0},
      {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  ++step;
  const uint64_t bits = ((uint64_t{out[0]} << 32) | out[1]) >> 11;  // 53 bits
  return static_cast<double>(bits) * 0x1.0p-53;
}

Sampler::Sampler(std::vector<int32_t> eos_token_ids) : eos_(std::move(eos_token_ids)) {}

bool mask_allows_more_than_stops(const SamplerRow& row, int32_t vocab, std::span<const int32_t> eos) {
  const std::vector<int32_t>& stops = row.params->stop_token_ids;
  for (int32_t id = 0; id < vocab; ++id)
    if (((row.allowed[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1u) &&
        std::find(eos.begin(), eos.end(), id) == eos.end() && std::find(stops.begin(), stops.end(), id) == stops.end())
      return true;
  return false;
}

std::vector<SampledToken> Sampler::sample(std::span<const SamplerRow> rows) {
  std::vector<SampledToken> out;
  out.reserve(rows.size());
  for (const SamplerRow& row : rows) out.push_back(sample(row));
  return out;
}

SampledToken Sampler::sample(const SamplerRow& row) {
  const SamplingParams& sp = *row.params;
  logits_.assign(row.logits.begin(), row.logits.end());
  apply_logit_processors(row);

  SampledToken result;
  result.token = draw(row);
  result.accepted = row.draft_token >= 0 && result.token == row.draft_token;

  if (sp.logprobs) {
    // Raw logprobs: log-softmax of the model's logits (see the header).
    const std::span<const float> raw = row.logits;
    const float mx = *std::max_element(raw.begin(), raw.end());
    double sum = 0.0;
    for (float x : raw) sum += std::exp(static_cast<double>(x) - mx);
    const double lse = mx + std::log(sum);
    result.logprob = static_cast<float>(raw[result.token] - lse);
    const size_t want = std::min<size_t>(static_cast<size_t>(*sp.logprobs), raw.size());
    if (want > 0) {
      candidates_.resize(raw.size());
      for (size_t i = 0; i < raw.size(); ++i) candidates_[i] = static_cast<int32_t>(i);
      auto by_logit = [&](int32_t a, int32_t b) {
        return raw[a] != raw[b] ? raw[a] > raw[b] : a < b;
      };
      std::partial_sort(candidates_.begin(), candidates_.begin() + want, candidates_.end(), by_logit);
      for (size_t i = 0; i < want; ++i) {
        const int32_t id = candidates_[i];
        result.top.push_back({id, static_cast<float>(raw[id] - lse)});
      }
    }
  }
  return result;
}

void Sampler::apply_logit_processors(const SamplerRow& row) {
  const SamplingParams& sp = *row.params;
  const int32_t vocab = static_cast<int32_t>(logits_.size());
  auto in_vocab = [&](int32_t id) { return id >= 0 && id < vocab; };

  auto allowed = [&](int32_t id) { return (row.allowed[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1u; };
  if (row.allowed != nullptr)
    for (int32_t id = 0; id < vocab; ++id)
      if (!allowed(id)) logits_[id] = sampling::masked_logit();

  // The rules, in their order, pass by pass (kernels/sampling_rules.h).
  for (const auto& [id, bias] : sp.logit_bias)
    if (in_vocab(id)) logits_[id] = sampling::with_bias(logits_[id], bias);

  assert(row.pending_outputs == 0 || !sp.penalizes_outputs());
  // A grammar that allows nothing but the stop tokens outranks min_tokens.
  if (sampling::min_tokens_masks(static_cast<int64_t>(row.output_ids.size()) + row.pending_outputs, sp.min_tokens) &&
      (row.allowed == nullptr || mask_allows_more_than_stops(row, vocab, eos_))) {
    if (!sp.ignore_eos)
      for (int32_t id : eos_)
        if (in_vocab(id)) logits_[id] = sampling::masked_logit();
    for (int32_t id : sp.stop_token_ids)
      if (in_vocab(id)) logits_[id] = sampling::masked_logit();
  }

  const bool repetition = sp.repetition_penalty != 1.0f;
  const bool additive = sp.presence_penalty != 0.0f || sp.frequency_penalty != 0.0f;
  if (!repetition && !additive) return;

  // Scratch indexed by token id; every touched entry is reset before returning,
  // so both vectors stay all-zero between calls.
  counts_.resize(logits_.size(), 0);
  seen_.resize(logits_.size(), 0);
  for (int32_t id : row.output_ids)
    if (in_vocab(id)) ++counts_[id];
  if (repetition) {
    const float r = sp.repetition_penalty;
    auto penalize_once = [&](int32_t id) {
      if (!in_vocab(id) || seen_[id]) return;
      seen_[id] = 1;
      logits_[id] = sampling::with_repetition_penalty(logits_[id], r);
    };
    for (int32_t id : row.prompt_ids) penalize_once(id);
    for (int32_t id : row.output_ids) penalize_once(id);
    for (int32_t id : row.prompt_ids)
      if (in_vocab(id)) seen_[id] = 0;
    for (int32_t id : row.output_ids)
      if (in_vocab(id)) seen_[id] = 0;
  }
  for (int32_t id : row.output_ids) {
    if (!in_vocab(id) || counts_[id] == 0) continue;
    if (additive)
      logits_[id] = sampling::with_additive_penalty(
          logits_[id], sampling::additive_penalty(sp.frequency_penalty, sp.presence_penalty, counts_[id]));
    counts_[id] = 0;  // once per id; also resets the scratch
  }
}

int32_t Sampler::draw(const SamplerRow& row) {
  const SamplingParams& sp = *row.params;
  const int32_t vocab = static_cast<int32_t>(logits_.size());

  if (sp.greedy()) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i)
      if (logits_[i] > logits_[best]) best = i;  // strict: lowest id wins ties
    return best;  // a draft is accepted iff it is this argmax
  }
  const bool verify = row.draft_token >= 0;

  std::vector<Candidate> cand;
  cand.reserve(logits_.size());
  const float inv_t = sampling::inverse_temperature(sp.temperature);
  for (int32_t i = 0; i < vocab; ++i)
    if (logits_[i] > kNegInf) cand.push_back({i, sampling::with_temperature(logits_[i], inv_t), 0.0});
  if (cand.empty()) {
    // Everything masked: nothing sensible to draw. The draw is still taken, so a
    // row's generator advances once per sampled token whatever the logits were:
    // async scheduling prepares the next step's generator before this one ends.
    row.generator->next_uniform();
    if (verify) row.generator->next_uniform();
    return 0;
  }

  // top-k keeps the k best and anything tied with the k-th (as vLLM).
  const int32_t k = sp.top_k_or_off();
  if (k > 0 && static_cast<size_t>(k) < cand.size()) {
    std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), better);
    const float kth = cand[k - 1].logit;
    std::erase_if(cand, [&](const Candidate& c) { return c.logit < kth; });
  }

  auto softmax = [&] {
    float mx = kNegInf;
    for (const Candidate& c : cand) mx = std::max(mx, c.logit);
    double sum = 0.0;
    for (Candidate& c : cand) sum += (c.p = std::exp(static_cast<double>(c.logit) - mx));
    for (Candidate& c : cand) c.p /= sum;
  };
  softmax();

  // top-p keeps the shortest best-first prefix whose mass reaches top_p: a
  // token survives if the mass strictly before it is below top_p.
  if (sp.top_p < 1.0f) {
    std::sort(cand.begin(), cand.end(), better);
    double before = 0.0;
    size_t keep = 0;
    while (keep < cand.size() && before < sp.top_p) before += cand[keep++].p;
    cand.resize(std::max<size_t>(keep, 1));
  }

  // min-p: relative to the most likely survivor (renormalisation does not
  // change the ratio, so the probabilities above are good enough).
  if (sp.min_p > 0.0f) {
    double pmax = 0.0;
    for (const Candidate& c : cand) pmax = std::max(pmax, c.p);
    const double floor = sp.min_p * pmax;
    std::erase_if(cand, [&](const Candidate& c) { return c.p < floor; });
  }

  // Inverse CDF in ascending id order: the draw depends on the set of
  // survivors and their mass, never on how the filters happened to order them.
  std::sort(cand.begin(), cand.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  double total = 0.0;
  for (const Candidate& c : cand) total += c.p;
  if (!verify) {
    const double u = row.generator->next_uniform() * total;
    double acc = 0.0;
    for (const Candidate& c : cand) {
      acc += c.p;
      if (u < acc) return c.id;
    }
    return cand.back().id;
  }
  // Verification against a point-mass proposal q = [draft]: accept with
  // min(1, p(d) / q(d)) = p(d); else draw from norm(max(0, p - q)), which is p
  // without d. Two draws always, so a seed's stream does not depend on the outcome.
  const double u1 = row.generator->next_uniform();
  const double u2 = row.generator->next_uniform();
  const int32_t d = row.draft_token;
  double p_d = 0.0;
  for (const Candidate& c : cand)
    if (c.id == d) p_d = c.p;
  if (u1 * total < p_d) return d;
  const double rest = total - p_d;
  if (!(rest > 0.0)) return d;  // p(d) = 1 up to rounding: u1 < 1 accepted it in exact arithmetic
  const double u = u2 * rest;
  double acc = 0.0;
  int32_t last = -1;
  for (const Candidate& c : cand) {
    if (c.id == d) continue;
    acc += c.p;
    last = c.id;
    if (u < acc) return c.id;
  }
  return last;
}

}  // namespace ember
