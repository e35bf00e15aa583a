#pragma once
// Turns one sequence's sampled tokens into text deltas: incremental
// detokenization, EOS / stop token ids, stop strings matched on the text
// across token boundaries (the matched string and everything after it are
// never sent), and logprobs. Runs on the engine thread, one per sequence.
//
// Streaming and stop strings: text that could still turn out to be the start
// of a stop string is held back until the next token decides it, so a client
// never receives text that a later stop match would have removed.

#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"
#include "models/tokenizer/tokenizer.h"

namespace ember {

class SequenceOutputProcessor {
 public:
  // `params` and `tokenizer` must outlive the processor. eos_ids: the model's
  // end-of-sequence tokens (ignored when params.ignore_eos).
  SequenceOutputProcessor(const Tokenizer& tokenizer, const SamplingParams& params, std::vector<int32_t> eos_ids);

  // Feeds the sequence's next sampled token; appends to `delta` (token id,
  // logprobs, final text). Returns kStop when the token ends the sequence
  // (EOS, a stop token id, or a stop string completed by its text), after which
  // the processor must not be fed again. `num_output_tokens` counts this token.
  FinishReason on_token(const SampledToken& token, int32_t num_output_tokens, SequenceDelta& delta);

  // The sequence ended for another reason (length, abort): releases the text
  // held back for stop-string matching and any incomplete character.
  void finish(SequenceDelta& delta);

  // All the text sent so far (for non-streaming responses and tests).
  const std::string& text() const { return sent_; }

 private:
  // Length of the longest suffix of held_ that is a proper prefix of a stop string.
  size_t unsafe_suffix_length() const;
  void emit(std::string text, SequenceDelta& delta);

  const SamplingParams& params_;
  std::vector<int32_t> eos_ids_;
  IncrementalDetokenizer detok_;
  std::string held_;  // decoded but not yet sent (may start a stop string)
  std::string sent_;
  bool finished_ = false;
};

}  // namespace ember
