#pragma once
// Error values that cross module boundaries. ember validates at the edges
// (HTTP, model files, CLI) and reports what went wrong as an Error; inside a
// room, code trusts its data. Exceptions never cross a room's public API.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace ember {

struct Error {
  std::string message;
};

// A value or an Error. Deliberately tiny: std::expected is C++23.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}    // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)
  static Status success() { return {}; }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { assert(!ok_); return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace ember

// Returns the error of a Status expression from the enclosing function (which
// returns Status or any Result<T>).
#define EMBER_TRY_STATUS(expr)                \
  do {                                        \
    ::ember::Status try_status_ = (expr);     \
    if (!try_status_.ok()) return try_status_.error(); \
  } while (0)
