#pragma once
// Typed reads of a request object's fields for the protocol parsers. The
// first failure is kept (param = that field) and later reads do nothing, so a
// parser reads every field in order and checks failed() once. A missing field
// or a JSON null leaves the output untouched (null means "not given").
// Numbers follow pydantic's lax mode, as vLLM validates: an integer field
// accepts 2.0 but not 2.5; a float field accepts integers; bools are only
// true/false.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/openai_error.h"

namespace ember {

// Parses `body` (shape pre-checked, exceptions caught) into a JSON object.
ApiResult<nlohmann::json> parse_request_object(std::string_view body, int max_depth, size_t max_containers);

// "messages.[2].content": OpenAI's spelling of a nested param.
std::string nested_param(const std::string& parent, size_t index);

class FieldReader {
 public:
  // `prefix` names the object in params ("messages.[0]"); empty for the body.
  explicit FieldReader(const nlohmann::json& object, std::string prefix = "");

  // The field when present and not null.
  const nlohmann::json* find(const char* key) const;
  std::string param(const char* key) const;

  void read(const char* key, bool& out);
  void read(const char* key, int32_t& out);
  void read(const char* key, std::optional<int32_t>& out);
  void read(const char* key, std::optional<int64_t>& out);
  void read(const char* key, float& out);
  void read(const char* key, std::string& out);
  void read(const char* key, std::optional<std::string>& out);
  void read(const char* key, std::vector<int32_t>& out);  // list of integers
  void read_object(const char* key, nlohmann::json& out);  // any JSON object

  // Records an error unless one is already kept.
  void fail(ApiError error);
  void fail_type(const std::string& param, const char* expected, const nlohmann::json& got);
  bool failed() const { return error_.has_value(); }
  const ApiError& error() const { return *error_; }

 private:
  const nlohmann::json& object_;
  std::string prefix_;
  std::optional<ApiError> error_;
};

// Integer value of `v` in [lo, hi] (integral floats accepted), or nullopt.
std::optional<int64_t> as_integer(const nlohmann::json& v, int64_t lo, int64_t hi);
// JSON type names as OpenAI's messages use them ("a string", "an integer").
const char* json_type_phrase(const nlohmann::json& v);

}  // namespace ember
