// SamplingParams::validate: every bad field is reported once, by its OpenAI name.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "engine/sampling_params.h"

namespace ember {
namespace {

constexpr int32_t kVocab = 100;

std::string error_of(const SamplingParams& p) {
  Status s = p.validate(kVocab);
  return s.ok() ? std::string("<ok>") : s.error().message;
}

TEST(SamplingParams, DefaultsAreValid) { EXPECT_TRUE(SamplingParams{}.validate(kVocab).ok()); }

TEST(SamplingParams, BoundaryValuesAreValid) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_p = 1.0f;
  p.top_k = 0;  // off, like -1
  p.min_p = 1.0f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.repetition_penalty = 0.01f;
  p.max_tokens = 5;
  p.min_tokens = 5;
  p.logit_bias = {{0, -100.0f}, {kVocab - 1, 100.0f}};
  p.logprobs = 20;
  p.top_logprobs = 20;
  EXPECT_TRUE(p.validate(kVocab).ok()) << error_of(p);
}

struct BadCase {
  const char* name;
  void (*mutate)(SamplingParams&);
  const char* expected;  // the exact message
};

class SamplingParamsBad : public testing::TestWithParam<BadCase> {};

TEST_P(SamplingParamsBad, NamesTheField) {
  SamplingParams p;
  GetParam().mutate(p);
  EXPECT_EQ(error_of(p), GetParam().expected);
}

const BadCase kBadCases[] = {
    {"n", [](SamplingParams& p) { p.n = 0; }, "n must be >= 1, got 0"},
    {"max_tokens", [](SamplingParams& p) { p.max_tokens = 0; }, "max_tokens must be >= 1, got 0"},
    {"min_tokens_negative", [](SamplingParams& p) { p.min_tokens = -1; }, "min_tokens must be >= 0, got -1"},
    {"min_tokens_above_max",
     [](SamplingParams& p) {
       p.max_tokens = 4;
       p.min_tokens = 5;
     },
     "min_tokens must be <= max_tokens (4), got 5"},
    {"temperature", [](SamplingParams& p) { p.temperature = -1.0f; }, "temperature must be in [0, 100], got -1"},
    {"temperature_nan", [](SamplingParams& p) { p.temperature = std::nanf(""); },
     "temperature must be in [0, 100], got nan"},
    {"temperature_huge", [](SamplingParams& p) { p.temperature = 1e26f; },
     "temperature must be in [0, 100], got 1e+26"},
    {"top_p_zero", [](SamplingParams& p) { p.top_p = 0.0f; }, "top_p must be in (0, 1], got 0"},
    {"top_p_above", [](SamplingParams& p) { p.top_p = 1.5f; }, "top_p must be in (0, 1], got 1.5"},
    {"top_k", [](SamplingParams& p) { p.top_k = -2; }, "top_k must be -1 (disabled) or >= 1, got -2"},
    {"min_p", [](SamplingParams& p) { p.min_p = 1.5f; }, "min_p must be in [0, 1], got 1.5"},
    {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = 2.5f; },
     "presence_penalty must be in [-2, 2], got 2.5"},
    {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = -3.0f; },
     "frequency_penalty must be in [-2, 2], got -3"},
    {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; },
     "repetition_penalty must be in (0, 100], got 0"},
    {"repetition_penalty_huge", [](SamplingParams& p) { p.repetition_penalty = 1e26f; },
     "repetition_penalty must be in (0, 100], got 1e+26"},
    {"logit_bias_id", [](SamplingParams& p) { p.logit_bias = {{kVocab, 1.0f}}; },
     "logit_bias token id 100 is out of vocabulary [0, 100)"},
    {"logit_bias_value", [](SamplingParams& p) { p.logit_bias = {{3, 101.0f}}; },
     "logit_bias values must be in [-100, 100], got 101 for token 3"},
    {"stop_token_ids", [](SamplingParams& p) { p.stop_token_ids = {-1}; },
     "stop_token_ids entry -1 is out of vocabulary [0, 100)"},
    {"stop", [](SamplingParams& p) { p.stop = {"ok", ""}; }, "stop must not contain empty strings"},
    {"logprobs", [](SamplingParams& p) { p.logprobs = 21; }, "logprobs must be in [0, 20], got 21"},
    {"top_logprobs", [](SamplingParams& p) { p.top_logprobs = -1; },
     "top_logprobs must be in [0, 20], got -1"},
    {"top_logprobs_without_logprobs", [](SamplingParams& p) { p.top_logprobs = 3; },
     "top_logprobs requires logprobs to be set"},
};

INSTANTIATE_TEST_SUITE_P(Fields, SamplingParamsBad, testing::ValuesIn(kBadCases),
                         [](const testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(SamplingParams, ReportsEveryBadFieldOnce) {
  SamplingParams p;
  p.temperature = -1.0f;
  p.top_p = 2.0f;
  p.logit_bias = {{-5, 1.0f}, {-4, 1.0f}};  // two bad ids, one message
  EXPECT_EQ(error_of(p),
            "temperature must be in [0, 100], got -1; top_p must be in (0, 1], got 2; "
            "logit_bias token id -5 is out of vocabulary [0, 100)");
}

TEST(SamplingParams, GreedyBelowEpsilonAndTopKOff) {
  SamplingParams p;
  p.temperature = 1e-6f;
  EXPECT_TRUE(p.greedy());
  p.temperature = 0.1f;
  EXPECT_FALSE(p.greedy());
  p.top_k = 0;
  EXPECT_EQ(p.top_k_or_off(), -1);
  p.top_k = 7;
  EXPECT_EQ(p.top_k_or_off(), 7);
}

}  // namespace
}  // namespace ember
