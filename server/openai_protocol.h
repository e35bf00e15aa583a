#pragma once
// The OpenAI API as ember speaks it, without HTTP and without the engine:
// request bodies in (parsed, type-checked and range-checked into typed
// requests whose SamplingParams passed validate()), response objects out
// (JSON and SSE frames shaped as OpenAI and vLLM send them).
//
// Conventions kept from vLLM: unknown request fields are ignored; a JSON null
// means "not given"; choice index of prompt p, sample i is p * n + i; ids are
// "cmpl-" / "chatcmpl-" + 32 hex digits; logprobs that are -inf or NaN are sent
// as -9999.0 (JSON has no infinity).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/request.h"  // FinishReason
#include "engine/sampling_params.h"
#include "models/tokenizer/unicode.h"
#include "server/openai_error.h"
#include "server/tool_calls.h"  // ToolCallOut

namespace ember {

// What the server knows when it parses: bounds that depend on the model and flags.
struct ProtocolLimits {
  int32_t vocab_size = INT32_MAX;   // token ids in prompts, logit_bias, stop_token_ids must be below
  int32_t max_model_len = INT32_MAX;
  int32_t max_n = 128;              // n (completions per prompt) at most
  int32_t max_prompts = 256;        // prompts in one /v1/completions request at most
  int32_t max_sequences = 512;      // prompts x n of one request at most
  int32_t max_stop = 16;            // stop strings at most
  int max_json_depth = 64;          // checked before parsing (common/json_limits.h)
  size_t max_json_containers = 1 << 16;
};

// ---- requests ---------------------------------------------------------------------

// One prompt: text to tokenize, or token ids given by the client (checked < vocab_size).
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int32_t> token_ids;
};

// Constrained output: response_format, vLLM's structured_outputs (and its older guided_* fields), or tool_choice
// "required" / a named function. Parsing turns each into grammar text in ember's GBNF dialect
// (engine/structured/README.md); the server compiles it against the vocabulary (a 400 when it does not compile)
// before the request reaches the engine.
struct StructuredOutput {
  std::string gbnf;
  std::string field;  // the request field it came from, for errors ("response_format", "structured_outputs.regex")
};

// Fields both endpoints share besides the sampling ones.
struct StreamOptions {
  bool stream = false;
  bool include_usage = false;            // stream_options.include_usage: a last chunk with usage
  bool continuous_usage_stats = false;   // stream_options.continuous_usage_stats (vLLM): usage in every chunk
};

struct CompletionRequest {
  std::string model;
  std::vector<PromptInput> prompts;      // >= 1; each yields params.n choices
  SamplingParams params;                 // max_tokens defaults to 16 (OpenAI)
  StreamOptions stream;
  std::string user;
  std::optional<std::string> cache_salt;  // vLLM: isolates this request's prefix-cache entries
  int32_t priority = 0;                   // vLLM: lower runs first under priority scheduling
  bool add_special_tokens = true;         // tokenize text prompts with BOS (vLLM's default for completions)
  std::optional<StructuredOutput> structured;
};

// A chat message after parsing: a list of text parts is joined with "\n" (what
// vLLM does for templates that take string content).
struct ChatMessage {
  std::string role;                    // system | developer | user | assistant | tool
  std::optional<std::string> content;  // null only for assistant messages
  std::optional<std::string> name;
  std::optional<std::string> tool_call_id;
  // An assistant turn's tool calls, as agent frameworks send the history back: [{"id", "type": "function",
  // "function": {"name", "arguments"}}]; each arguments string that holds a JSON object becomes that object, as
  // vLLM hands them to templates (which write `arguments | tojson`).
  std::optional<nlohmann::json> tool_calls;
};

// {"role", "content"[, "name", "tool_call_id", "tool_calls"]}: what a chat template iterates over.
nlohmann::json to_template_json(const ChatMessage& message);

// tool_choice: "none" (answer in text), "auto" (the model decides; its calls are parsed), "required" (at least one
// call) or one named function; "auto" when tools are given, "none" otherwise (OpenAI's defaults).
struct ToolChoice {
  enum class Mode { kNone, kAuto, kRequired, kNamed };
  Mode mode = Mode::kNone;
  std::string name;  // kNamed: one of the tools
};

struct ChatCompletionRequest {
  std::string model;
  std::vector<ChatMessage> messages;   // >= 1
  SamplingParams params;               // logprobs = top_logprobs when "logprobs": true, else unset
  // max_completion_tokens, else max_tokens, as given; unset means "the rest of
  // the context" and check_request_limits() (engine/request_limits.h) fills
  // params.max_tokens once the prompt length is known.
  std::optional<int32_t> requested_max_tokens;
  StreamOptions stream;
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  bool add_special_tokens = false;     // vLLM's default for chat: the template adds BOS itself
  nlohmann::json chat_template_kwargs = nlohmann::json::object();
  std::optional<std::string> chat_template;  // vLLM: a template in the request overrides the model's
  std::string user;
  std::optional<std::string> cache_salt;
  int32_t priority = 0;
  std::optional<StructuredOutput> structured;
  // tools as sent ([{"type": "function", "function": {"name", "description"?, "parameters"?}}]), validated, keys in
  // the client's order: what a chat template's `tools` variable receives.
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();
  ToolChoice tool_choice;
  bool parallel_tool_calls = true;
};

// POST /v1/responses (OpenAI's Responses API), text only: `chat` is the chat
// request it amounts to (instructions as the system message, input items as
// messages, max_output_tokens as max_completion_tokens), validated as chat is.
struct ResponsesRequest {
  ChatCompletionRequest chat;
  std::optional<std::string> instructions;
  nlohmann::json metadata = nlohmann::json::object();
};
// POST /tokenize: either {"prompt"} (completion style) or {"messages"} (chat style).
struct TokenizeRequest {
  std::string model;                             // optional on this route
  std::optional<std::string> prompt;
  std::vector<ChatMessage> messages;             // used when prompt is unset
  bool add_special_tokens = true;                // vLLM: true for prompt, false for messages
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  bool return_token_strs = false;
  nlohmann::json chat_template_kwargs = nlohmann::json::object();
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();  // rendered with messages, as a chat request's
};

struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;                   // each in [0, vocab_size)
};

ApiResult<CompletionRequest> parse_completion_request(std::string_view body, const ProtocolLimits& limits);
ApiResult<ChatCompletionRequest> parse_chat_request(std::string_view body, const ProtocolLimits& limits);
// Errors name the Responses API's fields ("input[1].content", "max_output_tokens"); stored state
// (previous_response_id, conversation), tools and non-text formats are 400s.
ApiResult<ResponsesRequest> parse_responses_request(std::string_view body, const ProtocolLimits& limits);
ApiResult<TokenizeRequest> parse_tokenize_request(std::string_view body, const ProtocolLimits& limits);
ApiResult<DetokenizeRequest> parse_detokenize_request(std::string_view body, const ProtocolLimits& limits);

// ---- responses --------------------------------------------------------------------

// null, "stop", "length", "abort" (vLLM's reason for an aborted request).
nlohmann::json to_json(FinishReason reason);

// What stopped a choice beyond "stop": the matched stop string, the stop token id, or nothing (EOS, length).
using StopReason = std::variant<std::monostate, std::string, int32_t>;

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  std::optional<int32_t> cached_tokens;  // prefix-cache hits: prompt_tokens_details.cached_tokens
};
nlohmann::json to_json(const Usage& usage);

// One position of a logprobs list. `token` holds the token's raw bytes (it may
// be part of a UTF-8 character); builders send it as text with invalid bytes
// replaced by U+FFFD and, in chat, the raw bytes in "bytes".
struct TokenAlternative {
  std::string token;
  float logprob = 0.0f;
};
struct LogprobEntry {
  std::string token;
  std::optional<float> logprob;          // null for the first echoed prompt token
  std::vector<TokenAlternative> top;     // best first
  bool has_top = true;                   // false: top_logprobs entry is null (first echoed prompt token)
  int32_t text_offset = 0;               // completions: byte offset of the token in the choice's text
};

struct CompletionChoiceOut {
  int32_t index = 0;
  std::string text;
  std::optional<std::vector<LogprobEntry>> logprobs;  // unset: "logprobs": null
  FinishReason finish_reason = FinishReason::kNone;
  StopReason stop_reason;
  std::vector<int32_t> prompt_token_ids;  // echoed as vLLM's prompt_token_ids when non-empty
};

struct ChatChoiceOut {
  int32_t index = 0;
  std::optional<std::string> role;      // stream: "assistant" in a choice's first chunk only
  std::optional<std::string> content;   // full response: the message; stream: the delta (unset: no key)
  std::vector<ToolCallOut> tool_calls;  // none: no key (server/tool_calls.h)
  bool called_tools = false;            // finish_reason "tool_calls" where the engine says "stop"
  std::optional<std::vector<LogprobEntry>> logprobs;
  FinishReason finish_reason = FinishReason::kNone;
  StopReason stop_reason;
};

struct ResponseHeader {
  std::string id;       // make_response_id("cmpl") / ("chatcmpl")
  int64_t created = 0;  // unix seconds, the same in every chunk of one stream
  std::string model;
  bool usage_on_every_chunk = false;  // stream_options.include_usage: "usage": null on the chunks before its own
};

std::string make_response_id(std::string_view prefix);  // prefix + "-" + 32 random hex digits
int64_t unix_now();

nlohmann::json build_completion(const ResponseHeader& h, const std::vector<CompletionChoiceOut>& choices,
                                const Usage& usage);
// A streamed completion chunk: "text" is the delta. usage is added when set
// (the final usage chunk has no choices; continuous_usage_stats puts it on all).
nlohmann::json build_completion_chunk(const ResponseHeader& h, const std::vector<CompletionChoiceOut>& choices,
                                      const std::optional<Usage>& usage = std::nullopt);

// A full chat.completion: each choice's content (and tool_calls) is the message (role "assistant"); finish_reason
// "tool_calls" for a choice that called tools and stopped.
nlohmann::json build_chat_completion(const ResponseHeader& h, const std::vector<ChatChoiceOut>& choices,
                                     const Usage& usage);
// A chat.completion.chunk: each choice's role/content/tool_calls pieces form the delta ({} when all unset).
nlohmann::json build_chat_chunk(const ResponseHeader& h, const std::vector<ChatChoiceOut>& choices,
                                const std::optional<Usage>& usage = std::nullopt);

// A Responses API "response" object: in_progress (no output yet), completed or incomplete.
struct ResponseObject {
  std::string id;          // "resp_..."
  std::string message_id;  // "msg_..."
  int64_t created_at = 0;
  std::string model;
  std::string status = "in_progress";
  std::string text;
  std::optional<std::string> incomplete_reason;  // "max_output_tokens"
  std::optional<std::string> instructions;
  std::optional<int32_t> max_output_tokens;
  float temperature = 1.0f;
  float top_p = 1.0f;
  nlohmann::json metadata = nlohmann::json::object();
  std::optional<Usage> usage;
};
nlohmann::json build_response(const ResponseObject& response);
// One Responses API stream event: "event: <type>" and its data, numbered by `sequence` (incremented).
std::string response_event(const std::string& type, nlohmann::json payload, int64_t& sequence);

// Server-sent events: "data: <compact json>\n\n" and the terminator "data: [DONE]\n\n".
std::string sse_event(const nlohmann::json& payload);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
// A JSON body as sent: compact, invalid UTF-8 replaced rather than thrown on.
std::string dump_body(const nlohmann::json& payload);

struct ModelCard {
  std::string id;
  int64_t created = 0;
  std::string root;         // the model path it was loaded from
  int32_t max_model_len = 0;
};
nlohmann::json build_model_card(const ModelCard& model);  // GET /v1/models/{id}
nlohmann::json build_model_list(const std::vector<ModelCard>& models);

nlohmann::json build_tokenize_response(const std::vector<int32_t>& tokens, int32_t max_model_len,
                                       const std::optional<std::vector<std::string>>& token_strs);
nlohmann::json build_detokenize_response(const std::string& text);
nlohmann::json build_version_response();

// Text as JSON can carry it: sanitize_utf8 (models/tokenizer/unicode.h) replaces
// invalid UTF-8 with U+FFFD as Python's bytes.decode("utf-8", "replace") does.

}  // namespace ember
