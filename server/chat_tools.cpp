// A chat request's tools around the model (chat_tools.h).

#include "server/chat_tools.h"

#include <climits>

namespace ember {
namespace {

using nlohmann::ordered_json;

std::string compact(const ordered_json& j) { return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace); }

// What a template that knows no tools gets in its system message: the definitions, and how to call them.
std::string instructions(const ordered_json& definitions) {
  std::string text =
      "# Tools\n\nYou may call functions to help with the user's request. Their signatures (JSON Schema), one per "
      "line:\n<tools>\n";
  for (const ordered_json& d : definitions) text += compact(d) + "\n";
  text +=
      "</tools>\n\nTo call a function, write a JSON object with its name and arguments between <tool_call> and "
      "</tool_call>, one call per pair of tags:\n<tool_call>\n{\"name\": \"<function name>\", \"arguments\": "
      "{<arguments as JSON>}}\n</tool_call>\nThe results come back between <tool_response> and </tool_response>.";
  return text;
}

// An assistant turn's calls as the hermes blocks the instructions ask for, after its text.
std::string calls_as_text(const ChatMessage& m) {
  std::string text = m.content.value_or("");
  for (const nlohmann::json& call : *m.tool_calls) {
    const nlohmann::json& fn = call.at("function");
    ordered_json written;
    written["name"] = fn.at("name");
    written["arguments"] = ordered_json::parse(fn.at("arguments").dump());
    if (!text.empty()) text += "\n";
    text += "<tool_call>\n" + compact(written) + "\n</tool_call>";
  }
  return text;
}

ChatMessage message(std::string role, std::string content) {
  ChatMessage m;
  m.role = std::move(role);
  m.content = std::move(content);
  return m;
}

}  // namespace

bool template_reads_tools(std::string_view template_source) {
  return template_source.find("tools") != std::string_view::npos;
}

ToolCallSyntax detect_tool_call_syntax(std::string_view source) {
  const auto has = [&](std::string_view s) { return source.find(s) != std::string_view::npos; };
  if (has("<tool_call>")) return ToolCallSyntax::kHermes;
  if (has("[TOOL_CALLS]")) return ToolCallSyntax::kMistral;
  if (has("<|python_tag|>") || has("ipython")) return ToolCallSyntax::kLlama3Json;
  return ToolCallSyntax::kHermes;
}

std::vector<ChatMessage> with_tools_in_system_message(const std::vector<ChatMessage>& messages,
                                                      const ordered_json& definitions) {
  std::vector<ChatMessage> out;
  const std::string text = instructions(definitions);
  size_t next = 0;
  if (!messages.empty() && (messages[0].role == "system" || messages[0].role == "developer")) {
    out.push_back(messages[0]);
    const std::string own = messages[0].content.value_or("");
    out[0].content = own.empty() ? text : own + "\n\n" + text;
    next = 1;
  } else {
    out.push_back(message("system", text));
  }
  bool after_tool = false;
  for (size_t i = next; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool") {
      // Results as a user turn (templates that know no tools may know no tool role either); consecutive ones merge,
      // so that user and assistant turns still alternate.
      const std::string block = "<tool_response>\n" + m.content.value_or("") + "\n</tool_response>";
      if (after_tool) {
        out.back().content = *out.back().content + "\n" + block;
      } else {
        out.push_back(message("user", block));
      }
      after_tool = true;
      continue;
    }
    after_tool = false;
    out.push_back(m);
    if (m.role == "assistant" && m.tool_calls && !m.tool_calls->empty()) {
      out.back().content = calls_as_text(m);
      out.back().tool_calls.reset();
    }
  }
  return out;
}

std::optional<ToolCallOptions> tool_call_options(const ChatCompletionRequest& r, ToolCallSyntax syntax) {
  if (r.tools.empty() || r.tool_choice.mode == ToolChoice::Mode::kNone) return std::nullopt;
  ToolCallOptions o;
  for (const ordered_json& t : r.tools) o.tool_names.push_back(t.at("function").at("name").get<std::string>());
  o.max_calls = r.parallel_tool_calls ? INT32_MAX : 1;
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::kRequired:
      o.syntax = ToolCallSyntax::kJsonArray;
      break;
    case ToolChoice::Mode::kNamed:
      o.syntax = ToolCallSyntax::kArguments;
      o.forced_name = r.tool_choice.name;
      break;
    default:
      o.syntax = syntax;
      break;
  }
  return o;
}

}  // namespace ember
