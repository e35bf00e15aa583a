#pragma once
// The JSON a tool call is written in, read two ways (internal to server/, for
// tool_calls.cpp): a call object's head, the moment it is whole, so that a
// stream can send the call's name before its arguments; and whole call objects
// or lists of them, for calls written any other way. Each says "not yet" apart
// from "no", so that a streamed text is judged as its whole would be.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ember {

bool is_json_space(char c);

// A name the request's tools have (any name when there are none).
bool is_known_tool(const std::vector<std::string>& names, const std::string& name);

enum class Head {
  kNo,         // not a head that streams (another key order, a string for the arguments, broken JSON)
  kNotObject,  // not even an object
  kMore,       // the text ends before it can tell
  kYes,
};
struct HeadMatch {
  Head result = Head::kNo;
  size_t length = 0;  // kYes: the head's bytes, up to the arguments' "{"
  std::string name;
};

// `{"name": "<string>", "arguments": ` ("parameters" too), JSON whitespace anywhere between, followed by "{".
// Heads longer than 1 KiB are kNo (so a runaway name cannot make each streamed byte rescan it).
HeadMatch read_call_head(std::string_view text);

struct ToolCallText {
  std::string name;
  std::string arguments;  // compact JSON of an object
};

// One call object read whole: {"name", "arguments" or "parameters": an object or a string holding one, or none
// ("{}")}, other keys ignored; the name must be known.
std::optional<ToolCallText> read_call(std::string_view text, const std::vector<std::string>& names);

// Call objects joined by `sep` up to the end of the text, or up to `close` (0: none) and then only whitespace;
// at least one, and every one a call.
std::optional<std::vector<ToolCallText>> read_call_list(std::string_view text, char sep, char close,
                                                        const std::vector<std::string>& names);

}  // namespace ember
