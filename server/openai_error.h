#pragma once
// The one error type of the HTTP boundary: what the client sees as
// {"error": {"message", "type", "param", "code"}} (OpenAI's error object) with
// an HTTP status. Parsing and validation return an ApiResult; routes turn an
// ApiError into the response body with to_json().

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

namespace ember {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::optional<std::string> param;  // the request field at fault, OpenAI spelling ("messages.[0].role")
  std::optional<std::string> code;   // machine-readable reason ("model_not_found"); null otherwise
};

// {"error": {"message", "type", "param", "code"}}: param and code are null when unset, as OpenAI sends them.
nlohmann::json to_json(const ApiError& error);

// The errors the server gives, in one place so every route words them alike.
ApiError invalid_request(std::string message, std::optional<std::string> param = std::nullopt);
ApiError invalid_json(const std::string& detail);              // 400, body is not JSON
ApiError model_not_found(const std::string& model);            // 404, code "model_not_found"
ApiError route_not_found(const std::string& method, const std::string& path);  // 404
ApiError unauthorized(bool key_given);                         // 401 (code "invalid_api_key" for a wrong key)
ApiError body_too_large(size_t limit_bytes);                   // 413
ApiError overloaded(int status, const std::string& message);   // 429 or 503 (the route adds Retry-After)
ApiError internal_error(const std::string& message);           // 500

// A value or an ApiError (the boundary's twin of common/status.h's Result).
template <class T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  ApiResult(ApiError error) : v_(std::move(error)) {}   // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const ApiError& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

}  // namespace ember
