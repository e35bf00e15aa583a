#include "server/openai_error.h"

namespace ember {

nlohmann::json to_json(const ApiError& error) {
  nlohmann::json inner = {{"message", error.message}, {"type", error.type}, {"param", nullptr}, {"code", nullptr}};
  if (error.param) inner["param"] = *error.param;
  if (error.code) inner["code"] = *error.code;
  return {{"error", std::move(inner)}};
}

ApiError invalid_request(std::string message, std::optional<std::string> param) {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param), std::nullopt};
}

ApiError invalid_json(const std::string& detail) {
  // OpenAI's wording for an unparsable body; the detail says where.
  return ApiError{400,
                  "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                  "HTTP library correctly. The OpenAI API expects a JSON payload.) Detail: " + detail,
                  "invalid_request_error", std::nullopt, std::nullopt};
}

ApiError model_not_found(const std::string& model) {
  return ApiError{404, "The model `" + model + "` does not exist.", "invalid_request_error", "model",
                  "model_not_found"};
}

ApiError route_not_found(const std::string& method, const std::string& path) {
  return ApiError{404, "Invalid URL (" + method + " " + path + ")", "invalid_request_error", std::nullopt,
                  std::nullopt};
}

ApiError unauthorized(bool key_given) {
  // OpenAI's wording and type; the key given is never echoed.
  if (!key_given)
    return ApiError{401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error", std::nullopt, std::nullopt};
  return ApiError{401, "Incorrect API key provided.", "invalid_request_error", std::nullopt, "invalid_api_key"};
}

ApiError body_too_large(size_t limit_bytes) {
  return ApiError{413, "Request body is larger than the limit of " + std::to_string(limit_bytes) + " bytes.",
                  "invalid_request_error", std::nullopt, "request_too_large"};
}

ApiError overloaded(int status, const std::string& message) {
  return ApiError{status, message, status == 429 ? "rate_limit_error" : "service_unavailable_error", std::nullopt,
                  status == 429 ? std::optional<std::string>("rate_limit_exceeded") : std::nullopt};
}

ApiError internal_error(const std::string& message) {
  return ApiError{500, message, "server_error", std::nullopt, std::nullopt};
}

}  // namespace ember
