#pragma once
// A pre-check run on JSON text from files or the network before it is parsed:
// nlohmann::json builds the whole tree first, and copying or walking a deeply
// nested tree recurses, so a small hostile file could exhaust the stack or
// memory. This scan is linear, allocation-free and skips over strings.

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ember {

// Fails if brackets nest deeper than `max_depth` or if there are more than
// `max_containers` objects and arrays in all. `source` names the input in errors.
Status check_json_shape(std::string_view text, int max_depth, size_t max_containers, const std::string& source);

}  // namespace ember
