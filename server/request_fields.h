#pragma once
// Pieces the completion, chat and tokenize parsers share (internal to server/).

#include <string>
#include <vector>

#include "server/json_fields.h"
#include "server/openai_protocol.h"

namespace ember {

// temperature, top_p, top_k, min_p, the three penalties, seed, stop,
// stop_token_ids, min_tokens, ignore_eos, n, logit_bias: type checks only.
void read_sampling_fields(FieldReader& f, SamplingParams& p, const ProtocolLimits& limits);

// stream + stream_options (only allowed with stream: true, as vLLM).
void read_stream_fields(FieldReader& f, StreamOptions& out);

// Range checks through SamplingParams::validate, plus the limits it does not
// know (n <= max_n). param is the first failing field; `max_tokens_param`
// names the field max_tokens came from ("max_completion_tokens" in chat),
// `logprobs_param` the one logprobs came from ("top_logprobs" in chat).
std::optional<ApiError> check_sampling(const SamplingParams& p, const ProtocolLimits& limits,
                                       const std::string& max_tokens_param, const std::string& logprobs_param);

// response_format, structured_outputs and vLLM's guided_* fields, turned into grammar text (at most one kind).
// `body` is the request text (a schema's properties keep the order written there).
void read_structured_output(FieldReader& f, std::string_view body, std::optional<StructuredOutput>& out);

// tools (function definitions), tool_choice and parallel_tool_calls; tool_choice "required" or a named function
// sets `structured` to the grammar that forces it (replacing a response_format). `body` is the request's text:
// the definitions keep its key order.
void read_tools(FieldReader& f, std::string_view body, ChatCompletionRequest& r);

// "tools" alone, validated as read_tools does (the /tokenize route renders them): the definitions for a template's
// `tools` variable, their names in `names`; an empty list when there are none.
nlohmann::ordered_json read_tool_definitions(FieldReader& f, std::string_view body, std::vector<std::string>& names);

// "messages": a non-empty list of {role, content, name?, tool_call_id?}.
void read_messages(FieldReader& f, std::vector<ChatMessage>& out);

}  // namespace ember
