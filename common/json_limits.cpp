#include "common/json_limits.h"

namespace ember {

Status check_json_shape(std::string_view text, int max_depth, size_t max_containers, const std::string& source,
                        size_t max_object_members) {
  int depth = 0;
  size_t containers = 0;
  bool in_string = false;
  // Per open container (up to a fixed depth: deeper ones fail max_depth first
  // or go uncounted): whether it is an object, and its commas so far.
  constexpr int kTracked = 256;
  bool is_object[kTracked] = {};
  size_t commas[kTracked] = {};
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '{':
      case '[':
        if (++depth > max_depth) {
          return Error{source + ": offset " + std::to_string(i) + ": JSON nested deeper than " + std::to_string(max_depth)};
        }
        if (++containers > max_containers) {
          return Error{source + ": offset " + std::to_string(i) + ": more than " + std::to_string(max_containers) +
                       " JSON objects and arrays"};
        }
        // (closing brackets without opening ones drive depth below zero in invalid text: not tracked)
        if (depth >= 0 && depth < kTracked) {
          is_object[depth] = c == '{';
          commas[depth] = 0;
        }
        break;
      case ',':
        if (depth > 0 && depth < kTracked && is_object[depth] && ++commas[depth] >= max_object_members) {
          return Error{source + ": offset " + std::to_string(i) + ": a JSON object with more than " +
                       std::to_string(max_object_members) + " members"};
        }
        break;
      case '}':
      case ']': --depth; break;
      default: break;
    }
  }
  return Status::success();
}

}  // namespace ember
