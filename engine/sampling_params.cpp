#include "engine/sampling_params.h"

#include <cmath>
#include <sstream>

namespace ember {
namespace {

// Prints floats the way a user typed them ("-1", "0.5") rather than "-1.000000".
std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

Status SamplingParams::validate(int32_t vocab_size) const {
  std::vector<std::string> bad;
  auto fail = [&](std::string msg) { bad.push_back(std::move(msg)); };

  if (n < 1) fail("n must be >= 1, got " + num(n));
  if (max_tokens < 1) fail("max_tokens must be >= 1, got " + num(max_tokens));
  if (min_tokens < 0) {
    fail("min_tokens must be >= 0, got " + num(min_tokens));
  } else if (max_tokens >= 1 && min_tokens > max_tokens) {
    fail("min_tokens must be <= max_tokens (" + num(max_tokens) + "), got " + num(min_tokens));
  }
  // NaN fails every comparison, so each check is written as "accept if in range".
  if (!(temperature >= 0.0f && temperature <= 100.0f))
    fail("temperature must be in [0, 100], got " + num(temperature));
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("top_p must be in (0, 1], got " + num(top_p));
  if (top_k < -1) fail("top_k must be -1 (disabled) or >= 1, got " + num(top_k));
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail("min_p must be in [0, 1], got " + num(min_p));
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    fail("presence_penalty must be in [-2, 2], got " + num(presence_penalty));
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    fail("frequency_penalty must be in [-2, 2], got " + num(frequency_penalty));
  if (!(repetition_penalty > 0.0f && repetition_penalty <= 100.0f))
    fail("repetition_penalty must be in (0, 100], got " + num(repetition_penalty));
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= vocab_size) {
      fail("logit_bias token id " + num(id) + " is out of vocabulary [0, " + num(vocab_size) + ")");
      break;  // one message per field
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      fail("logit_bias values must be in [-100, 100], got " + num(bias) + " for token " + num(id));
      break;
    }
  }
  for (int32_t id : stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      fail("stop_token_ids entry " + num(id) + " is out of vocabulary [0, " + num(vocab_size) + ")");
      break;
    }
  }
  for (const std::string& s : stop) {
    if (s.empty()) {
      fail("stop must not contain empty strings");
      break;
    }
  }
  if (logprobs && (*logprobs < 0 || *logprobs > kMaxLogprobs))
    fail("logprobs must be in [0, " + num(kMaxLogprobs) + "], got " + num(*logprobs));
  if (top_logprobs < 0 || top_logprobs > kMaxLogprobs) {
    fail("top_logprobs must be in [0, " + num(kMaxLogprobs) + "], got " + num(top_logprobs));
  } else if (top_logprobs > 0 && !logprobs) {
    fail("top_logprobs requires logprobs to be set");
  }

  if (bad.empty()) return Status::success();
  std::string msg = bad[0];
  for (size_t i = 1; i < bad.size(); ++i) msg += "; " + bad[i];
  return Error{msg};
}

}  // namespace ember
