#include "server/json_fields.h"

#include <cmath>
#include <limits>

#include "common/json_limits.h"

namespace ember {

ApiResult<nlohmann::json> parse_request_object(std::string_view body, int max_depth, size_t max_containers) {
  // Shape first: nlohmann builds (and later destroys) the tree recursively, so a
  // deeply nested body must be refused before it is parsed.
  // (an object of more members than any request field needs is refused unbuilt: a huge logit_bias costs memory)
  constexpr size_t kMaxObjectMembers = 65536;
  if (Status shape = check_json_shape(body, max_depth, max_containers, "request body", kMaxObjectMembers);
      !shape.ok()) {
    return invalid_json(shape.error().message);
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    return invalid_json(e.what());
  }
  if (!j.is_object()) {
    return invalid_request(std::string("The request body must be a JSON object, got ") + json_type_phrase(j) + ".");
  }
  return j;
}

std::string nested_param(const std::string& parent, size_t index) {
  return parent + ".[" + std::to_string(index) + "]";
}

const char* json_type_phrase(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "an integer";
    case nlohmann::json::value_t::number_float: return "a decimal";
    default: return "an unsupported value";
  }
}

std::optional<int64_t> as_integer(const nlohmann::json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    const auto i = static_cast<int64_t>(u);
    if (i < lo || i > hi) return std::nullopt;
    return i;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < lo || i > hi) return std::nullopt;
    return i;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // Range check in double before the cast: casting an out-of-range double is undefined.
    // Beyond 2^53 a double no longer tells neighbouring integers apart (-2^63 - 1 parses as -2^63): refused.
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) >= 9007199254740992.0 ||
        d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      return std::nullopt;
    }
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

FieldReader::FieldReader(const nlohmann::json& object, std::string prefix)
    : object_(object), prefix_(std::move(prefix)) {}

const nlohmann::json* FieldReader::find(const char* key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string FieldReader::param(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

void FieldReader::fail(ApiError error) {
  if (!error_) error_ = std::move(error);
}

void FieldReader::fail_type(const std::string& param, const char* expected, const nlohmann::json& got) {
  fail(invalid_request("Invalid type for '" + param + "': expected " + expected + ", but got " +
                           json_type_phrase(got) + " instead.",
                       param));
}

void FieldReader::read(const char* key, bool& out) {
  const nlohmann::json* v = find(key);
  if (failed() || !v) return;
  if (!v->is_boolean()) return fail_type(param(key), "a boolean", *v);
  out = v->get<bool>();
}

void FieldReader::read(const char* key, std::optional<int64_t>& out) {
  const nlohmann::json* v = find(key);
  if (failed() || !v) return;
  if (!v->is_number()) return fail_type(param(key), "an integer", *v);
  auto i = as_integer(*v, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  if (!i) {
    return fail(invalid_request("Invalid value for '" + param(key) + "': expected an integer, got " + v->dump() + ".",
                                param(key)));
  }
  out = *i;
}

void FieldReader::read(const char* key, std::optional<int32_t>& out) {
  const nlohmann::json* v = find(key);
  if (failed() || !v) return;
  if (!v->is_number()) return fail_type(param(key), "an integer", *v);
  auto i = as_integer(*v, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
  if (!i) {
    return fail(invalid_request("Invalid value for '" + param(key) + "': expected a 32-bit integer, got " +
                                    v->dump() + ".",
                                param(key)));
  }
  out = static_cast<int32_t>(*i);
}

void FieldReader::read(const char* key, int32_t& out) {
  std::optional<int32_t> v;
  read(key, v);
  if (v) out = *v;
}

void FieldReader::read(const char* key, float& out) {
  const nlohmann::json* v = find(key);
  if (failed() || !v) return;
  if (!v->is_number()) return fail_type(param(key), "a number", *v);
  // A double beyond float range becomes inf, which every range check refuses.
  out = static_cast<float>(v->get<double>());
}

void FieldReader::read(const char* key, std::optional<std::string>& out) {
  const nlohmann::json* v = find(key);
  if (failed() || !v) return;
  if (!v->is_string()) return fail_type(param(key), "a string", *v);
  out = v->get<std::string>();
}

void FieldReader::read(const char* key, std::string& out) {
  std::optional<std::string> v;
  read(key, v);
  if (v) out = std::move(*v);
}

void FieldReader::read(const char* key, std::vector<int32_t>& out) {
  const nlohmann::json* v = find(key);
  if (failed() || !v) return;
  if (!v->is_array()) return fail_type(param(key), "an array of integers", *v);
  std::vector<int32_t> ids;
  ids.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const nlohmann::json& e = (*v)[i];
    auto id = as_integer(e, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
    if (!id) return fail_type(nested_param(param(key), i), "an integer", e);
    ids.push_back(static_cast<int32_t>(*id));
  }
  out = std::move(ids);
}

void FieldReader::read_object(const char* key, nlohmann::json& out) {
  const nlohmann::json* v = find(key);
  if (failed() || !v) return;
  if (!v->is_object()) return fail_type(param(key), "an object", *v);
  out = *v;
}

}  // namespace ember
