#pragma once
// The OpenAPI 3 description of ember's HTTP routes, served at /openapi.json
// (and what the schemathesis run in CI explores).

#include <nlohmann/json.hpp>

namespace ember {

nlohmann::json openapi_document();

}  // namespace ember
