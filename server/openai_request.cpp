// Parsing and validation of /v1/completions, /tokenize and /detokenize bodies,
// and the sampling fields every generating endpoint shares.

#include <charconv>
#include <limits>

#include "server/openai_protocol.h"
#include "server/request_fields.h"

namespace ember {
namespace {

// logit_bias keys are token ids written as decimal strings ("50256"), as
// Python's int() reads them without surrounding spaces.
std::optional<int32_t> parse_token_key(const std::string& key) {
  int32_t id = 0;
  const char* end = key.data() + key.size();
  auto [ptr, ec] = std::from_chars(key.data(), end, id);
  if (ec != std::errc() || ptr != end || key.empty()) return std::nullopt;
  return id;
}

void read_stop(FieldReader& f, std::vector<std::string>& out, const ProtocolLimits& limits) {
  const nlohmann::json* v = f.find("stop");
  if (f.failed() || !v) return;
  if (v->is_string()) {
    out = {v->get<std::string>()};
    return;
  }
  if (!v->is_array()) return f.fail_type("stop", "a string or an array of strings", *v);
  if (v->size() > static_cast<size_t>(limits.max_stop)) {
    return f.fail(invalid_request("'stop' has " + std::to_string(v->size()) + " entries; at most " +
                                      std::to_string(limits.max_stop) + " are allowed.",
                                  "stop"));
  }
  out.clear();
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) return f.fail_type(nested_param("stop", i), "a string", (*v)[i]);
    out.push_back((*v)[i].get<std::string>());
  }
}

void read_logit_bias(FieldReader& f, std::map<int32_t, float>& out) {
  const nlohmann::json* v = f.find("logit_bias");
  if (f.failed() || !v) return;
  if (!v->is_object()) return f.fail_type("logit_bias", "an object", *v);
  for (const auto& [key, bias] : v->items()) {
    auto id = parse_token_key(key);
    if (!id) {
      return f.fail(invalid_request("Invalid key in 'logit_bias': '" + key + "' is not a token id.", "logit_bias"));
    }
    if (!bias.is_number()) return f.fail_type("logit_bias." + key, "a number", bias);
    out[*id] = static_cast<float>(bias.get<double>());
  }
}

// The prompt in its four shapes: "text", ["text", ...], [id, ...], [[id, ...], ...].
void read_prompt(FieldReader& f, std::vector<PromptInput>& out, const ProtocolLimits& limits) {
  const nlohmann::json* v = f.find("prompt");
  if (f.failed()) return;
  if (!v) return f.fail(invalid_request("Missing required parameter: 'prompt'.", "prompt"));
  auto empty = [&] { f.fail(invalid_request("The prompt must not be empty.", "prompt")); };
  auto token_list = [&](const nlohmann::json& list, const std::string& param) -> std::optional<PromptInput> {
    if (list.empty()) {
      empty();
      return std::nullopt;
    }
    PromptInput in;
    in.token_ids.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      auto id = as_integer(list[i], std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
      if (!list[i].is_number() || !id) {
        f.fail_type(nested_param(param, i), "an integer", list[i]);
        return std::nullopt;
      }
      if (*id < 0 || *id >= limits.vocab_size) {
        f.fail(invalid_request("Token id " + std::to_string(*id) + " in the prompt is out of vocabulary [0, " +
                                   std::to_string(limits.vocab_size) + ").",
                               "prompt"));
        return std::nullopt;
      }
      in.token_ids.push_back(static_cast<int32_t>(*id));
    }
    return in;
  };

  if (v->is_string()) {
    if (v->get_ref<const std::string&>().empty()) return empty();
    out.push_back(PromptInput{v->get<std::string>(), {}});
    return;
  }
  if (!v->is_array()) return f.fail_type("prompt", "a string or an array", *v);
  if (v->empty()) return empty();
  const nlohmann::json& first = v->front();
  if (first.is_number()) {
    if (auto in = token_list(*v, "prompt")) out.push_back(std::move(*in));
    return;
  }
  // A list of prompts: all strings or all token lists, like its first element.
  if (v->size() > static_cast<size_t>(limits.max_prompts))
    return f.fail(invalid_request("prompt: " + std::to_string(v->size()) + " prompts in one request; at most " +
                                      std::to_string(limits.max_prompts) + " (--max-prompts-per-request)",
                                  "prompt"));
  for (size_t i = 0; i < v->size(); ++i) {
    const nlohmann::json& e = (*v)[i];
    const std::string param = nested_param("prompt", i);
    if (first.is_string()) {
      if (!e.is_string()) return f.fail_type(param, "a string", e);
      if (e.get_ref<const std::string&>().empty()) return empty();
      out.push_back(PromptInput{e.get<std::string>(), {}});
    } else if (first.is_array()) {
      if (!e.is_array()) return f.fail_type(param, "an array of integers", e);
      auto in = token_list(e, param);
      if (!in) return;
      out.push_back(std::move(*in));
    } else {
      return f.fail_type(param, "a string, an integer or an array of integers", e);
    }
  }
}

std::string first_word(const std::string& s) { return s.substr(0, s.find(' ')); }

}  // namespace

void read_sampling_fields(FieldReader& f, SamplingParams& p, const ProtocolLimits& limits) {
  f.read("n", p.n);
  f.read("temperature", p.temperature);
  f.read("top_p", p.top_p);
  f.read("top_k", p.top_k);
  f.read("min_p", p.min_p);
  f.read("presence_penalty", p.presence_penalty);
  f.read("frequency_penalty", p.frequency_penalty);
  f.read("repetition_penalty", p.repetition_penalty);
  std::optional<int64_t> seed;
  f.read("seed", seed);
  // -1 means no seed, as llama-server has it; another negative seed (Python
  // ints are signed) keeps its bit pattern, so distinct seeds stay distinct.
  if (seed && *seed != -1) p.seed = static_cast<uint64_t>(*seed);
  read_stop(f, p.stop, limits);
  f.read("stop_token_ids", p.stop_token_ids);
  f.read("min_tokens", p.min_tokens);
  f.read("ignore_eos", p.ignore_eos);
  read_logit_bias(f, p.logit_bias);
}

void read_stream_fields(FieldReader& f, StreamOptions& out) {
  f.read("stream", out.stream);
  const nlohmann::json* opts = f.find("stream_options");
  if (f.failed() || !opts) return;
  if (!opts->is_object()) return f.fail_type("stream_options", "an object", *opts);
  if (!out.stream) {
    return f.fail(invalid_request("Stream options can only be defined when `stream=True`.", "stream_options"));
  }
  FieldReader o(*opts, "stream_options");
  o.read("include_usage", out.include_usage);
  o.read("continuous_usage_stats", out.continuous_usage_stats);
  if (o.failed()) f.fail(o.error());
}

std::optional<ApiError> check_sampling(const SamplingParams& p, const ProtocolLimits& limits,
                                       const std::string& max_tokens_param, const std::string& logprobs_param) {
  if (Status s = p.validate(limits.vocab_size); !s.ok()) {
    // validate() starts each message with the field's name; the first names the param.
    std::string param = first_word(s.error().message);
    if (param == "max_tokens") param = max_tokens_param;
    if (param == "logprobs") param = logprobs_param;
    return invalid_request(s.error().message, param);
  }
  if (p.n > limits.max_n) {
    return invalid_request("n must be <= " + std::to_string(limits.max_n) + ", got " + std::to_string(p.n), "n");
  }
  return std::nullopt;
}

ApiResult<CompletionRequest> parse_completion_request(std::string_view body, const ProtocolLimits& limits) {
  auto parsed = parse_request_object(body, limits.max_json_depth, limits.max_json_containers);
  if (!parsed) return parsed.error();
  const nlohmann::json& j = *parsed;
  FieldReader f(j);
  CompletionRequest r;
  f.read("model", r.model);
  read_prompt(f, r.prompts, limits);
  if (f.find("suffix") && !f.failed()) f.fail(invalid_request("suffix is not currently supported", "suffix"));
  std::optional<int32_t> max_tokens;
  f.read("max_tokens", max_tokens);
  if (max_tokens) r.params.max_tokens = *max_tokens;
  read_sampling_fields(f, r.params, limits);
  std::optional<int32_t> logprobs;
  f.read("logprobs", logprobs);
  r.params.logprobs = logprobs;
  f.read("echo", r.params.echo);
  std::optional<int32_t> best_of;
  f.read("best_of", best_of);
  read_stream_fields(f, r.stream);
  f.read("user", r.user);
  f.read("cache_salt", r.cache_salt);
  f.read("priority", r.priority);
  f.read("skip_special_tokens", r.params.skip_special_tokens);
  f.read("add_special_tokens", r.add_special_tokens);
  read_structured_output(f, body, r.structured);
  if (f.failed()) return f.error();

  if (auto e = check_sampling(r.params, limits, "max_tokens", "logprobs")) return *e;
  if (const int64_t seqs = static_cast<int64_t>(r.prompts.size()) * r.params.n; seqs > limits.max_sequences) {
    return invalid_request(std::to_string(r.prompts.size()) + " prompts x n = " + std::to_string(r.params.n) + " is " +
                               std::to_string(seqs) + " sequences; one request may ask for at most " +
                               std::to_string(limits.max_sequences) + " (--max-sequences-per-request)",
                           "n");
  }
  if (best_of && *best_of != r.params.n) {
    return invalid_request("best_of must equal n when given (ember returns every sequence it samples), got best_of=" +
                               std::to_string(*best_of) + " and n=" + std::to_string(r.params.n),
                           "best_of");
  }
  if (r.cache_salt && r.cache_salt->empty()) {
    return invalid_request("cache_salt must be a non-empty string when given", "cache_salt");
  }
  return r;
}

ApiResult<TokenizeRequest> parse_tokenize_request(std::string_view body, const ProtocolLimits& limits) {
  auto parsed = parse_request_object(body, limits.max_json_depth, limits.max_json_containers);
  if (!parsed) return parsed.error();
  FieldReader f(*parsed);
  TokenizeRequest r;
  f.read("model", r.model);
  if (f.find("messages")) {
    r.add_special_tokens = false;  // vLLM: the chat template adds its own BOS
    read_messages(f, r.messages);
    f.read("add_generation_prompt", r.add_generation_prompt);
    f.read("continue_final_message", r.continue_final_message);
    f.read_object("chat_template_kwargs", r.chat_template_kwargs);
    std::vector<std::string> names;
    r.tools = read_tool_definitions(f, body, names);
  } else {
    std::string prompt;
    if (!f.find("prompt") && !f.failed()) {
      f.fail(invalid_request("Missing required parameter: 'prompt' (or 'messages').", "prompt"));
    }
    f.read("prompt", prompt);
    r.prompt = std::move(prompt);
  }
  f.read("add_special_tokens", r.add_special_tokens);
  f.read("return_token_strs", r.return_token_strs);
  if (f.failed()) return f.error();
  if (r.add_generation_prompt && r.continue_final_message && !r.messages.empty()) {
    return invalid_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                           "continue_final_message");
  }
  return r;
}

ApiResult<DetokenizeRequest> parse_detokenize_request(std::string_view body, const ProtocolLimits& limits) {
  auto parsed = parse_request_object(body, limits.max_json_depth, limits.max_json_containers);
  if (!parsed) return parsed.error();
  FieldReader f(*parsed);
  DetokenizeRequest r;
  f.read("model", r.model);
  if (!f.find("tokens") && !f.failed()) f.fail(invalid_request("Missing required parameter: 'tokens'.", "tokens"));
  f.read("tokens", r.tokens);
  if (f.failed()) return f.error();
  for (int32_t id : r.tokens) {
    if (id < 0 || id >= limits.vocab_size) {
      return invalid_request("Token id " + std::to_string(id) + " is out of vocabulary [0, " +
                                 std::to_string(limits.vocab_size) + ").",
                             "tokens");
    }
  }
  return r;
}

}  // namespace ember
