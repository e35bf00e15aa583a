#include "server/json_scanner.h"

namespace ember {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

}  // namespace

bool JsonScanner::fail() {
  state_ = State::kFailed;
  return false;
}

bool JsonScanner::open(char c) {
  if (stack_.size() >= kMaxDepth) return fail();
  stack_.push_back(c);
  state_ = c == '{' ? State::kFirstKey : State::kFirstValue;
  return true;
}

bool JsonScanner::close(char c) {
  if (stack_.empty() || stack_.back() != (c == '}' ? '{' : '[')) return fail();
  stack_.pop_back();
  state_ = stack_.empty() ? State::kDone : State::kAfterValue;
  return true;
}

bool JsonScanner::value(char c) {
  switch (c) {
    case '{':
    case '[':
      return open(c);
    case '"':
      string_is_key_ = false;
      state_ = State::kString;
      return true;
    case 't':
      literal_ = "rue";
      break;
    case 'f':
      literal_ = "alse";
      break;
    case 'n':
      literal_ = "ull";
      break;
    case '-':
      state_ = State::kNumMinus;
      return true;
    case '0':
      state_ = State::kNumZero;
      return true;
    default:
      if (!is_digit(c)) return fail();
      state_ = State::kNumInt;
      return true;
  }
  state_ = State::kLiteral;
  return true;
}

// A number has no end byte of its own: the byte after it closes it and is then read as what follows a value.
// (Numbers only occur inside a container here, so the stack is not empty.)
bool JsonScanner::end_number(char c) {
  state_ = State::kAfterValue;
  return feed(c);
}

bool JsonScanner::feed(char c) {
  switch (state_) {
    case State::kStart:
      if (is_ws(c)) return true;
      return c == '{' || c == '[' ? open(c) : fail();
    case State::kValue:
      return is_ws(c) || value(c);
    case State::kFirstKey:
      if (c == '}') return close(c);
      [[fallthrough]];
    case State::kKey:
      if (is_ws(c)) return true;
      if (c != '"') return fail();
      string_is_key_ = true;
      state_ = State::kString;
      return true;
    case State::kColon:
      if (is_ws(c)) return true;
      if (c != ':') return fail();
      state_ = State::kValue;
      return true;
    case State::kFirstValue:
      if (c == ']') return close(c);
      return is_ws(c) || value(c);
    case State::kAfterValue:
      if (is_ws(c)) return true;
      if (c == ',') {
        state_ = stack_.back() == '{' ? State::kKey : State::kValue;
        return true;
      }
      return c == '}' || c == ']' ? close(c) : fail();
    case State::kString:
      if (c == '"') {
        state_ = string_is_key_ ? State::kColon : State::kAfterValue;
        return true;
      }
      if (c == '\\') state_ = State::kEscape;
      return static_cast<unsigned char>(c) >= 0x20 || fail();
    case State::kEscape:
      if (c == 'u') {
        hex_left_ = 4;
        state_ = State::kUnicode;
        return true;
      }
      if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' && c != 't') return fail();
      state_ = State::kString;
      return true;
    case State::kUnicode:
      if (!is_hex(c)) return fail();
      if (--hex_left_ == 0) state_ = State::kString;
      return true;
    case State::kLiteral:
      if (c != *literal_) return fail();
      if (*++literal_ == '\0') state_ = State::kAfterValue;
      return true;
    case State::kNumMinus:
      if (c == '0') {
        state_ = State::kNumZero;
        return true;
      }
      if (!is_digit(c)) return fail();
      state_ = State::kNumInt;
      return true;
    case State::kNumInt:
      if (is_digit(c)) return true;
      [[fallthrough]];
    case State::kNumZero:
      if (c == '.') {
        state_ = State::kNumDot;
        return true;
      }
      [[fallthrough]];
    case State::kNumFrac:
      if (state_ == State::kNumFrac && is_digit(c)) return true;
      if (c == 'e' || c == 'E') {
        state_ = State::kNumExp;
        return true;
      }
      return end_number(c);
    case State::kNumDot:
      if (!is_digit(c)) return fail();
      state_ = State::kNumFrac;
      return true;
    case State::kNumExp:
      if (c == '+' || c == '-') {
        state_ = State::kNumExpSign;
        return true;
      }
      [[fallthrough]];
    case State::kNumExpSign:
      if (!is_digit(c)) return fail();
      state_ = State::kNumExpDigits;
      return true;
    case State::kNumExpDigits:
      return is_digit(c) || end_number(c);
    case State::kDone:
    case State::kFailed:
      break;
  }
  return fail();
}

}  // namespace ember
