#pragma once
// Pre-tokenization for byte-level BPE: cuts normalized text into the pieces
// that BPE merges never cross. A PreTokenizer is a sequence of steps with
// HF tokenizers semantics; each step re-splits every piece the previous step
// produced:
//   - regex Split (Llama 3 / Qwen2 patterns) with a SplitBehavior and invert,
//   - Digits (individual or contiguous runs of Rust's char::is_numeric),
//   - ByteLevel: with use_regex, the GPT-2 regex split (Isolated); the byte
//     mapping itself happens later, inside the BPE model.
// Regexes run on ICU's engine. HF uses Oniguruma, whose \s is the Unicode
// White_Space property while ICU's is [\t\n\f\r\p{Z}], so \s and \S are
// rewritten to \p{White_Space} / \P{White_Space} before compiling.
// Immutable once built; split() is safe to call from several threads.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ember {

// HF's SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// The pretokenizer regexes of the model families ember knows.
extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
extern const char* const kQwen2Pattern;

// A byte range [begin, end) of the text being pre-tokenized.
struct Span {
  uint32_t begin = 0;
  uint32_t end = 0;
};

class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  Status add_regex_split(std::string_view pattern, SplitBehavior behavior, bool invert);
  void add_literal_split(std::string literal, SplitBehavior behavior, bool invert);
  void add_digits(bool individual_digits);
  // add_prefix_space is only supported on a ByteLevel step that comes first
  // (HF would otherwise prefix every piece of the previous step).
  Status add_byte_level(bool add_prefix_space, bool use_regex);

  bool add_prefix_space() const { return add_prefix_space_; }
  bool has_byte_level() const { return has_byte_level_; }

  // Appends the pieces of `text` (valid UTF-8) to *out. Empty pieces are dropped.
  void split(std::string_view text, std::vector<Span>* out) const;

  struct Step;

 private:
  std::vector<std::unique_ptr<Step>> steps_;
  bool add_prefix_space_ = false;
  bool has_byte_level_ = false;
};

}  // namespace ember
