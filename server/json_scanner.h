#pragma once
// An incremental JSON recognizer: fed a text one byte at a time, it says as soon
// as the text can no longer be the start of a JSON value (RFC 8259), how deep
// in objects and arrays the last byte left it, and when the value is whole.
// It allocates only its stack of open containers and builds nothing, so a
// streamed tool call's arguments can be checked byte by byte as they arrive.
//
// Scope: one top-level object or array (a scalar at the top level has no end
// byte: a number would end only at the next byte). Strings are checked for
// escapes and control characters, not for valid UTF-8 (the response writer
// replaces invalid bytes).

#include <cstdint>
#include <string>

namespace ember {

class JsonScanner {
 public:
  // False when `c` cannot continue a JSON object or array (or the value was already whole); the scanner then
  // stays failed.
  bool feed(char c);

  bool failed() const { return state_ == State::kFailed; }
  bool done() const { return state_ == State::kDone; }
  // Open objects and arrays after the last byte.
  size_t depth() const { return stack_.size(); }

  static constexpr size_t kMaxDepth = 512;

 private:
  enum class State : uint8_t {
    kStart,       // before the top-level value
    kValue,       // a value is expected
    kFirstKey,    // after "{": a key or "}"
    kKey,         // after "," in an object: a key
    kColon,       // after a key
    kFirstValue,  // after "[": a value or "]"
    kAfterValue,  // "," or the container's close
    kString,
    kEscape,
    kUnicode,  // inside \uXXXX: hex_left_ digits to go
    kLiteral,  // inside true / false / null: literal_ is the rest
    kNumMinus,
    kNumZero,
    kNumInt,
    kNumDot,
    kNumFrac,
    kNumExp,
    kNumExpSign,
    kNumExpDigits,
    kDone,
    kFailed,
  };

  bool fail();
  bool open(char c);
  bool close(char c);
  bool value(char c);       // the first byte of a value
  bool end_number(char c);  // a byte after a number that may end it

  State state_ = State::kStart;
  bool string_is_key_ = false;
  int hex_left_ = 0;
  const char* literal_ = nullptr;
  std::string stack_;  // '{' or '[' per open container
};

}  // namespace ember
