#include "models/tokenizer/pretokenizer.h"

#include <unicode/regex.h>
#include <unicode/unistr.h>

#include "models/tokenizer/unicode.h"

namespace ember {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct PreTokenizer::Step {
  enum class Kind { kRegex, kLiteral, kDigits } kind = Kind::kRegex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  std::unique_ptr<icu::RegexPattern> regex;
  std::string literal;
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

// Oniguruma's \s / \S are the White_Space property; ICU's are narrower.
std::string rewrite_whitespace_classes(std::string_view pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      const char c = pattern[i + 1];
      if (c == 's') {
        out += "\\p{White_Space}";
      } else if (c == 'S') {
        out += "\\P{White_Space}";
      } else {
        out += pattern.substr(i, 2);
      }
      ++i;
    } else {
      out.push_back(pattern[i]);
    }
  }
  return out;
}

struct Piece {
  uint32_t begin, end;
  bool is_match;
};

// Applies HF's SplitDelimiterBehavior to pieces that tile one span.
void apply_behavior(std::vector<Piece>& pieces, SplitBehavior behavior, bool invert, std::vector<Span>* out) {
  if (invert) {
    for (Piece& p : pieces) p.is_match = !p.is_match;
  }
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Piece& p : pieces) out->push_back({p.begin, p.end});
      break;
    case SplitBehavior::kRemoved:
      for (const Piece& p : pieces) {
        if (!p.is_match) out->push_back({p.begin, p.end});
      }
      break;
    case SplitBehavior::kContiguous: {
      // HF joins neighbours of equal kind; two non-matches only neighbour each
      // other under invert (the gap between adjacent matches is empty).
      bool prev_match = false;
      const size_t first = out->size();
      for (const Piece& p : pieces) {
        if (p.is_match == prev_match && out->size() > first) {
          out->back().end = p.end;
        } else {
          out->push_back({p.begin, p.end});
        }
        prev_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      const size_t first = out->size();
      for (const Piece& p : pieces) {
        if (p.is_match && !prev_match && out->size() > first) {
          out->back().end = p.end;
        } else {
          out->push_back({p.begin, p.end});
        }
        prev_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      // Mirror image of kMergedWithPrevious: walk from the right.
      std::vector<Span> rev;
      bool prev_match = false;
      for (size_t i = pieces.size(); i-- > 0;) {
        const Piece& p = pieces[i];
        if (p.is_match && !prev_match && !rev.empty()) {
          rev.back().begin = p.begin;
        } else {
          rev.push_back({p.begin, p.end});
        }
        prev_match = p.is_match;
      }
      out->insert(out->end(), rev.rbegin(), rev.rend());
      break;
    }
  }
}

constexpr int32_t kRegexTimeLimitSteps = 200;

// Reusable state for regex steps: compiling a matcher per piece costs more
// than matching (SmolLM2 runs the GPT-2 regex on every piece Digits leaves).
struct RegexScratch {
  std::unique_ptr<icu::RegexMatcher> matcher;
  icu::UnicodeString u16;
  std::vector<uint32_t> offset;  // UTF-16 index -> byte offset in text
};

// Tiles `span` with regex matches and the gaps between them.
void regex_pieces(const icu::RegexPattern& regex, std::string_view text, Span span, RegexScratch* scratch,
                  std::vector<Piece>* pieces) {
  icu::UnicodeString& u16 = scratch->u16;
  std::vector<uint32_t>& offset = scratch->offset;
  u16.remove();
  offset.clear();
  for (size_t pos = span.begin; pos < span.end;) {
    const size_t at = pos;
    const char32_t cp = utf8_next(text, &pos);
    u16.append(static_cast<UChar32>(cp));
    offset.push_back(static_cast<uint32_t>(at));
    if (cp >= 0x10000) offset.push_back(static_cast<uint32_t>(at));
  }
  offset.push_back(span.end);
  UErrorCode status = U_ZERO_ERROR;
  if (!scratch->matcher) {
    scratch->matcher.reset(regex.matcher(u16, status));
    // A pattern from a file may backtrack catastrophically: bound each find()
    // (ICU steps, roughly milliseconds). On time-out the rest of the span is
    // one unmatched piece, so encode() degrades instead of hanging.
    if (scratch->matcher) scratch->matcher->setTimeLimit(kRegexTimeLimitSteps, status);
  } else {
    scratch->matcher->reset(u16);
  }
  icu::RegexMatcher* m = scratch->matcher.get();
  uint32_t prev = span.begin;
  while (U_SUCCESS(status) && m->find(status)) {
    const uint32_t b = offset[m->start(status)];
    const uint32_t e = offset[m->end(status)];
    if (b == e) continue;  // HF drops empty pieces
    if (prev < b) pieces->push_back({prev, b, false});
    pieces->push_back({b, e, true});
    prev = e;
  }
  if (prev < span.end) pieces->push_back({prev, span.end, false});
}

void literal_pieces(std::string_view literal, std::string_view text, Span span, std::vector<Piece>* pieces) {
  uint32_t prev = span.begin;
  if (!literal.empty()) {
    const std::string_view s = text.substr(span.begin, span.end - span.begin);
    for (size_t at = s.find(literal); at != std::string_view::npos; at = s.find(literal, at + literal.size())) {
      const auto b = static_cast<uint32_t>(span.begin + at);
      if (prev < b) pieces->push_back({prev, b, false});
      pieces->push_back({b, static_cast<uint32_t>(b + literal.size()), true});
      prev = static_cast<uint32_t>(b + literal.size());
    }
  }
  if (prev < span.end) pieces->push_back({prev, span.end, false});
}

void digit_pieces(std::string_view text, Span span, std::vector<Piece>* pieces) {
  for (size_t pos = span.begin; pos < span.end;) {
    const auto at = static_cast<uint32_t>(pos);
    const bool digit = is_numeric_cp(utf8_next(text, &pos));
    pieces->push_back({at, static_cast<uint32_t>(pos), digit});
  }
  // Merge neighbouring non-digits back into one piece (digits stay single;
  // the step's behavior decides whether runs of digits are joined).
  std::vector<Piece> merged;
  for (const Piece& p : *pieces) {
    if (!merged.empty() && !p.is_match && !merged.back().is_match) {
      merged.back().end = p.end;
    } else {
      merged.push_back(p);
    }
  }
  pieces->swap(merged);
}

}  // namespace

Status PreTokenizer::add_regex_split(std::string_view pattern, SplitBehavior behavior, bool invert) {
  const std::string rewritten = rewrite_whitespace_classes(pattern);
  UErrorCode status = U_ZERO_ERROR;
  UParseError perr{};
  auto step = std::make_unique<Step>();
  step->regex.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(rewritten), 0, perr, status));
  if (U_FAILURE(status)) {
    return Error{"pre-tokenizer regex does not compile (" + std::string(u_errorName(status)) + " at offset " +
                 std::to_string(perr.offset) + "): " + std::string(pattern)};
  }
  step->kind = Step::Kind::kRegex;
  step->behavior = behavior;
  step->invert = invert;
  steps_.push_back(std::move(step));
  return Status::success();
}

void PreTokenizer::add_literal_split(std::string literal, SplitBehavior behavior, bool invert) {
  auto step = std::make_unique<Step>();
  step->kind = Step::Kind::kLiteral;
  step->literal = std::move(literal);
  step->behavior = behavior;
  step->invert = invert;
  steps_.push_back(std::move(step));
}

void PreTokenizer::add_digits(bool individual_digits) {
  auto step = std::make_unique<Step>();
  step->kind = Step::Kind::kDigits;
  step->behavior = individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  steps_.push_back(std::move(step));
}

Status PreTokenizer::add_byte_level(bool add_prefix_space, bool use_regex) {
  if (add_prefix_space && !steps_.empty()) {
    return Error{"ByteLevel pre-tokenizer with add_prefix_space after another step is not supported"};
  }
  if (has_byte_level_) return Error{"more than one ByteLevel pre-tokenizer"};
  add_prefix_space_ = add_prefix_space;
  has_byte_level_ = true;
  if (use_regex) return add_regex_split(kGpt2Pattern, SplitBehavior::kIsolated, false);
  return Status::success();
}

void PreTokenizer::split(std::string_view text, std::vector<Span>* out) const {
  std::vector<Span> cur{{0, static_cast<uint32_t>(text.size())}};
  std::vector<Span> next;
  std::vector<Piece> pieces;
  for (const auto& step : steps_) {
    RegexScratch scratch;
    next.clear();
    for (const Span& span : cur) {
      pieces.clear();
      switch (step->kind) {
        case Step::Kind::kRegex: regex_pieces(*step->regex, text, span, &scratch, &pieces); break;
        case Step::Kind::kLiteral: literal_pieces(step->literal, text, span, &pieces); break;
        case Step::Kind::kDigits: digit_pieces(text, span, &pieces); break;
      }
      apply_behavior(pieces, step->behavior, step->invert, &next);
    }
    cur.swap(next);
  }
  for (const Span& s : cur) {
    if (s.begin < s.end) out->push_back(s);
  }
}

}  // namespace ember
