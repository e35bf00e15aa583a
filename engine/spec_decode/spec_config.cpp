#include "engine/spec_decode/spec_config.h"

#include <nlohmann/json.hpp>

#include "common/json_limits.h"

namespace ember {

const char* method_name(SpeculativeConfig::Method method) {
  switch (method) {
    case SpeculativeConfig::Method::kNgram:
      return "ngram";
    case SpeculativeConfig::Method::kDraftModel:
      return "draft_model";
    case SpeculativeConfig::Method::kNone:
      break;
  }
  return "none";
}

Result<SpeculativeConfig> parse_speculative_config(const std::string& json, const std::string& model, int32_t k) {
  SpeculativeConfig c;
  const std::string where = "--speculative-config";
  std::string method;
  if (!json.empty()) {
    if (Status s = check_json_shape(json, 8, 64, where); !s.ok()) return s.error();
    nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Error{where + ": expected a JSON object"};
    for (const auto& item : j.items()) {
      // (named, not structured bindings: lambdas below capture them)
      const std::string& key = item.key();
      const nlohmann::json& value = item.value();
      auto integer = [&](int32_t& out) -> Status {
        if (!value.is_number_integer()) return Error{where + ": " + key + " must be an integer"};
        const int64_t v = value.get<int64_t>();
        if (v < 0 || v > 1'000'000) return Error{where + ": " + key + " = " + std::to_string(v) + " is out of range"};
        out = static_cast<int32_t>(v);
        return Status::success();
      };
      Status s = Status::success();
      if (key == "method") {
        if (!value.is_string()) return Error{where + ": method must be a string"};
        method = value.get<std::string>();
      } else if (key == "model") {
        if (!value.is_string()) return Error{where + ": model must be a string"};
        c.model = value.get<std::string>();
      } else if (key == "num_speculative_tokens") {
        s = integer(c.num_speculative_tokens);
      } else if (key == "prompt_lookup_min") {
        s = integer(c.prompt_lookup_min);
      } else if (key == "prompt_lookup_max") {
        s = integer(c.prompt_lookup_max);
      } else if (key == "disable_by_batch_size") {
        s = integer(c.disable_by_batch_size);
      } else {
        return Error{where + ": unknown key \"" + key +
                     "\" (known: method, model, num_speculative_tokens, prompt_lookup_min, prompt_lookup_max, "
                     "disable_by_batch_size)"};
      }
      if (!s.ok()) return s.error();
    }
  }
  if (c.model.empty()) c.model = model;
  if (c.num_speculative_tokens == 0) c.num_speculative_tokens = k;
  if (method.empty() && !c.model.empty()) method = "draft_model";
  if (method.empty()) {
    if (c.num_speculative_tokens > 0)
      return Error{"--num-speculative-tokens needs a method: --speculative-model PATH or --speculative-config"};
    return c;  // off
  }
  if (method == "ngram") {
    c.method = SpeculativeConfig::Method::kNgram;
    if (!c.model.empty()) return Error{where + ": the ngram method takes no model (got \"" + c.model + "\")"};
  } else if (method == "draft_model") {
    c.method = SpeculativeConfig::Method::kDraftModel;
    if (c.model.empty()) return Error{where + ": method draft_model needs a model"};
  } else {
    return Error{where + ": unknown method \"" + method + "\" (ember offers ngram and draft_model)"};
  }
  if (c.num_speculative_tokens < 1 || c.num_speculative_tokens > SpeculativeConfig::kMaxTokens)
    return Error{where + ": num_speculative_tokens must be in [1, " + std::to_string(SpeculativeConfig::kMaxTokens) +
                 "], got " + std::to_string(c.num_speculative_tokens)};
  if (c.disable_by_batch_size == 1)
    return Error{where + ": disable_by_batch_size must be >= 2 (or 0 for never), got 1"};
  if (c.prompt_lookup_min < 1 || c.prompt_lookup_max < c.prompt_lookup_min)
    return Error{where + ": need 1 <= prompt_lookup_min <= prompt_lookup_max, got " +
                 std::to_string(c.prompt_lookup_min) + " and " + std::to_string(c.prompt_lookup_max)};
  return c;
}

}  // namespace ember
