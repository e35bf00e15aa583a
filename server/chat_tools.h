#pragma once
// A chat request's tools around the model: how the definitions reach it, which
// syntax its calls come back in, and how its output is read for the request's
// tool_choice.
//
// Definitions reach a template that reads a `tools` variable through it, as
// vLLM passes them ([{"type": "function", "function": {...}}]). A template that
// never mentions tools (SmolLM2's, plain ChatML) gets them the way llama.cpp's
// server serves generic templates: written into the system message (one is
// prepended when there is none) with instructions to call them in hermes syntax,
// and the conversation's earlier calls and results rewritten in that syntax
// (assistant calls as <tool_call> blocks in its content, tool results as a user
// turn of <tool_response> blocks), since such a template shows neither.

#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/openai_protocol.h"
#include "server/tool_calls.h"

namespace ember {

// A request's tools as its rendering sees them.
struct ChatTools {
  nlohmann::ordered_json definitions = nlohmann::ordered_json::array();
  // tool_choice "none" sets this false: then only a template that reads `tools` shows them (vLLM's default).
  bool instruct = true;
};

// Whether a template reads a `tools` variable (it mentions one).
bool template_reads_tools(std::string_view template_source);

// The call syntax a template teaches: mistral for [TOOL_CALLS]; llama3_json for <|python_tag|> or ipython;
// hermes for <tool_call>, for templates that never mention tools (ember instructs them in hermes), and otherwise.
ToolCallSyntax detect_tool_call_syntax(std::string_view template_source);

// `messages` with the definitions and the hermes instructions in the system message, and earlier calls and
// results in hermes syntax (for a template that does not read `tools`).
std::vector<ChatMessage> with_tools_in_system_message(const std::vector<ChatMessage>& messages,
                                                      const nlohmann::ordered_json& definitions);

// How a request's output is read: the forced shapes of tool_choice "required" and a named function, or `syntax`
// for "auto"; nullopt when it is plain text (no tools, or tool_choice "none").
std::optional<ToolCallOptions> tool_call_options(const ChatCompletionRequest& r, ToolCallSyntax syntax);

}  // namespace ember
