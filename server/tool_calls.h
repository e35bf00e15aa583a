#pragma once
// Tool calls in a model's output, parsed back into OpenAI's tool_calls: over the
// whole text (a non-streamed reply) or incrementally as it streams.
//
// One machine does both: parse_tool_calls(text) is a ToolCallParser fed the
// whole text at once, and the parser decides nothing from where its input was
// split, so a stream's deltas always add up to the non-streamed message.
//
// A call is sent (its id and name) once its head `{"name": "<tool>",
// "arguments": {` has been read, then its arguments as they arrive, each byte
// checked by a JSON recognizer. A call written otherwise (other key order,
// arguments as a string) is held until its end and parsed whole. Text that is
// no call (malformed JSON, an unknown tool name, a tag never followed by JSON)
// stays content, byte for byte. Whitespace beside a call belongs to neither,
// but separates content before the call from content after it.
//
// Once sent, a call cannot be taken back: if its arguments break off
// (max_tokens, or JSON gone wrong), they end where they broke, as OpenAI's do
// when max_tokens cuts a call; in hermes, the rest of a call up to its closing
// tag is dropped.

#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/json_scanner.h"

namespace ember {

enum class ToolCallSyntax {
  kHermes,      // <tool_call>{"name": ..., "arguments": {...}}</tool_call>, anywhere in the text (Qwen, Hermes)
  kLlama3Json,  // from the start: [<|python_tag|>]{"name": ..., "parameters": {...}}, several joined by ";"
  kMistral,     // [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (the tag may be gone: a special token)
  kJsonArray,   // the whole text is [{"name": ..., "parameters": {...}}, ...]: tool_choice "required"
  kArguments,   // the whole text is one call's arguments: a named tool_choice
};

// --tool-call-parser NAME, vLLM's names: hermes, llama3_json, mistral.
std::optional<ToolCallSyntax> tool_call_syntax(std::string_view name);
std::string_view tool_call_syntax_name(ToolCallSyntax syntax);

// One tool call as the response carries it: whole in a message ({"id", "type": "function", "function": {"name",
// "arguments"}}); in a stream, a piece of one: a call's first piece has its id and name, later ones add to its
// arguments.
struct ToolCallOut {
  int32_t index = 0;              // which call of the choice
  std::optional<std::string> id;  // "chatcmpl-tool-" + 32 hex digits
  std::optional<std::string> name;
  std::string arguments;  // JSON text (a piece of it in a stream)
};

struct ToolCallOptions {
  ToolCallSyntax syntax = ToolCallSyntax::kHermes;
  std::vector<std::string> tool_names;  // a call to any other name stays text; empty: any name
  std::string forced_name;              // kArguments: the tool the text is the arguments of
  int32_t max_calls = INT32_MAX;        // parallel_tool_calls false: 1 (later calls are read and dropped)
};

// What one piece of input added: content text and tool-call pieces.
struct ToolCallChunk {
  std::string content;
  std::vector<ToolCallOut> calls;
  bool empty() const { return content.empty() && calls.empty(); }
};

// A whole message: content null when there are calls and no text (as vLLM sends it).
struct ParsedToolCalls {
  std::optional<std::string> content;
  std::vector<ToolCallOut> calls;
};

ParsedToolCalls parse_tool_calls(const ToolCallOptions& options, std::string_view text);

// Adds a chunk as a client adds up a stream.
void append_chunk(ParsedToolCalls& message, const ToolCallChunk& chunk);

class ToolCallParser {
 public:
  explicit ToolCallParser(ToolCallOptions options);

  // The content and call pieces `text` completes; what may still turn out either way is held back.
  ToolCallChunk feed(std::string_view text);
  // The last of the text: its pieces and what was held back, decided (a parser is not fed after this).
  ToolCallChunk finish(std::string_view text = {});
  // Calls sent so far (finish_reason "tool_calls" when any).
  int32_t num_calls() const { return sent_; }

 private:
  enum class State {
    kText,       // content; watching for a call's opening
    kHead,       // a call object's head, until it matches or cannot
    kArgs,       // inside the arguments object: streamed
    kTail,       // the rest of the call object, dropped
    kAfterCall,  // a closing tag or separator, or the next call
    kWhole,      // a call with another head: held to its end, then parsed whole
    kArgsOnly,   // kArguments: everything is the forced call's arguments
  };

  bool step(bool eof);  // one decision; false when the input so far cannot decide it
  bool text_step(bool eof);
  bool head_step(bool eof);
  bool after_call_step(bool eof);
  bool whole_step(bool eof);
  void open_call(std::string raw, State next);
  void to_content(std::string_view raw);  // an opening that was no call: its text is content after all
  void start_call(const std::string& name, std::string arguments);
  void add_arguments(std::string_view piece);
  void content_byte(char c);

  bool forced() const;
  ToolCallOptions options_;
  State state_;
  std::string input_;  // what feed() gave and no step consumed, from pos_
  size_t pos_ = 0;
  size_t search_from_ = 0;    // kWhole: where to resume looking for the closing tag
  std::string held_ws_;       // whitespace in content, sent or dropped once the next byte shows what it borders
  std::string ws_before_;     // the whitespace before the current opening (content again if it was no call)
  std::string gap_;           // the whitespace before the latest calls: sent if content follows them
  std::string raw_;           // the current opening's text (content again if it was no call)
  bool at_start_ = true;      // only whitespace so far
  bool has_content_ = false;  // content (not whitespace) sent
  bool after_call_ = false;   // a call was read and no content followed yet
  int32_t calls_ = 0;         // calls read (sent or dropped past max_calls)
  int32_t sent_ = 0;
  bool sending_ = false;  // the current call is sent
  JsonScanner scanner_;   // over the current call object
  ToolCallChunk out_;     // what the current feed()/finish() returns
};

}  // namespace ember
