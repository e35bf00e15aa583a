#pragma once
// A pre-check run on JSON text from files or the network before it is parsed:
// nlohmann::json builds the whole tree first, and copying or walking a deeply
// nested tree recurses, so a small hostile file could exhaust the stack or
// memory. This scan is linear, allocation-free and skips over strings.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ember {

// Fails if brackets nest deeper than `max_depth`, if there are more than
// `max_containers` objects and arrays in all, or if one object has more than
// `max_object_members` members (a request's logit_bias of a million entries is
// refused before it is built). `source` names the input in errors.
Status check_json_shape(std::string_view text, int max_depth, size_t max_containers, const std::string& source,
                        size_t max_object_members = SIZE_MAX);

}  // namespace ember
