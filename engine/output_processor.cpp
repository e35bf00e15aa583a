#include "engine/output_processor.h"

#include <algorithm>
#include <utility>

namespace ember {

SequenceOutputProcessor::SequenceOutputProcessor(const Tokenizer& tokenizer, const SamplingParams& params,
                                                 std::vector<int32_t> eos_ids)
    : params_(params),
      eos_ids_(std::move(eos_ids)),
      detok_(tokenizer, params.skip_special_tokens, /*continues_text=*/true) {}

FinishReason SequenceOutputProcessor::on_token(const SampledToken& token, int32_t num_output_tokens,
                                             SequenceDelta& delta) {
  if (finished_) return FinishReason::kStop;
  delta.token_ids.push_back(token.token);
  if (params_.logprobs) delta.logprobs.push_back(token);

  // The sampler masks EOS and stop ids until min_tokens, so seeing one here
  // means it is allowed to end the sequence. Their text is not part of the output.
  const bool is_eos = !params_.ignore_eos &&
                      std::find(eos_ids_.begin(), eos_ids_.end(), token.token) != eos_ids_.end();
  const bool is_stop_id = std::find(params_.stop_token_ids.begin(), params_.stop_token_ids.end(), token.token) !=
                          params_.stop_token_ids.end();
  if (is_eos || is_stop_id) {
    finished_ = true;
    held_ += detok_.flush();
    emit(std::exchange(held_, {}), delta);
    delta.stop_reason = std::to_string(token.token);
    delta.stop_reason_is_token = true;
    return FinishReason::kStop;
  }

  held_ += detok_.push(token.token);
  if (!params_.stop.empty() && num_output_tokens >= params_.min_tokens) {
    size_t best = std::string::npos;
    const std::string* matched = nullptr;
    for (const std::string& s : params_.stop) {
      if (s.empty()) continue;
      const size_t at = held_.find(s);
      if (at != std::string::npos && at < best) {
        best = at;
        matched = &s;
      }
    }
    if (matched) {
      finished_ = true;
      held_.resize(best);
      emit(std::exchange(held_, {}), delta);
      delta.stop_reason = *matched;
      return FinishReason::kStop;
    }
  }
  const size_t keep = unsafe_suffix_length();
  emit(held_.substr(0, held_.size() - keep), delta);
  held_.erase(0, held_.size() - keep);
  return FinishReason::kNone;
}

void SequenceOutputProcessor::finish(SequenceDelta& delta) {
  if (finished_) return;
  finished_ = true;
  held_ += detok_.flush();
  emit(std::exchange(held_, {}), delta);
}

size_t SequenceOutputProcessor::unsafe_suffix_length() const {
  size_t longest = 0;
  for (const std::string& s : params_.stop) {
    if (s.empty()) continue;  // validate() rejects these; never underflow
    const size_t limit = std::min(s.size() - 1, held_.size());
    for (size_t len = limit; len > longest; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        longest = len;
        break;
      }
    }
  }
  return longest;
}

void SequenceOutputProcessor::emit(std::string text, SequenceDelta& delta) {
  if (text.empty()) return;
  sent_ += text;
  delta.text += text;
}

}  // namespace ember
