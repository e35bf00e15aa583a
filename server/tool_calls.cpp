// Tool calls parsed out of model output (tool_calls.h): one machine over bytes for whole texts and streams.

#include "server/tool_calls.h"

#include <algorithm>
#include <random>
#include <utility>

#include "server/openai_protocol.h"  // make_response_id
#include "server/tool_call_json.h"

namespace ember {
namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralTag = "[TOOL_CALLS]";

enum class Match { kNo, kPartial, kFull };

// Whether the text at `pos` starts with `tag`; kPartial when the text ends inside it.
Match match_at(std::string_view text, size_t pos, std::string_view tag) {
  const size_t n = std::min(tag.size(), text.size() - pos);
  if (text.substr(pos, n) != tag.substr(0, n)) return Match::kNo;
  return n == tag.size() ? Match::kFull : Match::kPartial;
}

std::string call_id(ToolCallSyntax syntax) {
  if (syntax != ToolCallSyntax::kMistral) return make_response_id("chatcmpl-tool");
  // Mistral's templates refuse any id but 9 letters and digits (vLLM's mistral parser makes them so too).
  static constexpr std::string_view kAlnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device rd;
  std::string id;
  for (int i = 0; i < 9; ++i) id += kAlnum[rd() % kAlnum.size()];
  return id;
}

}  // namespace

std::optional<ToolCallSyntax> tool_call_syntax(std::string_view name) {
  if (name == "hermes") return ToolCallSyntax::kHermes;
  if (name == "llama3_json") return ToolCallSyntax::kLlama3Json;
  if (name == "mistral") return ToolCallSyntax::kMistral;
  return std::nullopt;
}

std::string_view tool_call_syntax_name(ToolCallSyntax syntax) {
  switch (syntax) {
    case ToolCallSyntax::kHermes:
      return "hermes";
    case ToolCallSyntax::kLlama3Json:
      return "llama3_json";
    case ToolCallSyntax::kMistral:
      return "mistral";
    case ToolCallSyntax::kJsonArray:
      return "json_array";
    case ToolCallSyntax::kArguments:
      return "arguments";
  }
  return "";
}

void append_chunk(ParsedToolCalls& message, const ToolCallChunk& chunk) {
  if (!chunk.content.empty()) message.content = message.content.value_or("") + chunk.content;
  for (const ToolCallOut& piece : chunk.calls) {
    if (piece.id) {
      message.calls.push_back(piece);
      continue;
    }
    for (ToolCallOut& call : message.calls)
      if (call.index == piece.index) call.arguments += piece.arguments;
  }
}

ParsedToolCalls parse_tool_calls(const ToolCallOptions& options, std::string_view text) {
  ToolCallParser parser(options);
  ParsedToolCalls message{std::string(), {}};
  append_chunk(message, parser.feed(text));
  append_chunk(message, parser.finish());
  if (!message.calls.empty() && message.content->empty()) message.content.reset();
  return message;
}

ToolCallParser::ToolCallParser(ToolCallOptions options)
    : options_(std::move(options)),
      state_(options_.syntax == ToolCallSyntax::kArguments ? State::kArgsOnly : State::kText) {}

ToolCallChunk ToolCallParser::feed(std::string_view text) {
  input_.append(text);
  while (step(false)) {
  }
  input_.erase(0, pos_);
  search_from_ -= std::min(search_from_, pos_);
  pos_ = 0;
  return std::exchange(out_, {});
}

ToolCallChunk ToolCallParser::finish(std::string_view text) {
  input_.append(text);
  while (step(true)) {
  }
  if (!after_call_ && !forced()) out_.content += held_ws_;
  held_ws_.clear();
  input_.clear();
  pos_ = 0;
  return std::exchange(out_, {});
}

bool ToolCallParser::step(bool eof) {
  switch (state_) {
    case State::kText:
      return text_step(eof);
    case State::kHead:
      return head_step(eof);
    case State::kArgs: {
      const size_t start = pos_;
      while (pos_ < input_.size() && state_ == State::kArgs) {
        if (!scanner_.feed(input_[pos_])) {
          state_ = State::kAfterCall;  // the arguments broke off before this byte
          break;
        }
        if (scanner_.depth() == 1) state_ = State::kTail;  // the arguments' object closed
        ++pos_;
      }
      add_arguments(std::string_view(input_).substr(start, pos_ - start));
      return pos_ > start || state_ != State::kArgs;
    }
    case State::kTail:
      while (pos_ < input_.size()) {
        if (!scanner_.feed(input_[pos_])) break;
        if (scanner_.done()) {
          ++pos_;
          break;
        }
        ++pos_;
      }
      if (pos_ == input_.size() && !scanner_.done() && !scanner_.failed()) return false;
      state_ = State::kAfterCall;
      return true;
    case State::kAfterCall:
      return after_call_step(eof);
    case State::kWhole:
      return whole_step(eof);
    case State::kArgsOnly:
      if (calls_ == 0) start_call(options_.forced_name, "");
      add_arguments(std::string_view(input_).substr(pos_));
      pos_ = input_.size();
      return false;
  }
  return false;
}

bool ToolCallParser::text_step(bool eof) {
  const std::string_view in(input_);
  const ToolCallSyntax syntax = options_.syntax;
  while (pos_ < in.size()) {
    const char c = in[pos_];
    if (is_json_space(c)) {
      held_ws_ += c;
      ++pos_;
      continue;
    }
    if (syntax == ToolCallSyntax::kHermes && c == '<') {
      const Match m = match_at(in, pos_, kHermesOpen);
      if (m == Match::kPartial && !eof) return false;
      if (m == Match::kFull) {
        pos_ += kHermesOpen.size();
        open_call(std::string(kHermesOpen), State::kHead);
        return true;
      }
    } else if (syntax == ToolCallSyntax::kMistral && c == '[') {
      const Match m = match_at(in, pos_, kMistralTag);
      if (m == Match::kPartial && !eof) return false;
      if (m == Match::kFull) {
        size_t list = pos_ + kMistralTag.size();
        while (list < in.size() && is_json_space(in[list])) ++list;
        if (list == in.size() && !eof) return false;
        if (list < in.size() && in[list] == '[') {
          const std::string raw(in.substr(pos_, list + 1 - pos_));
          pos_ = list + 1;
          open_call(raw, State::kHead);
          return true;
        }
      } else if (at_start_) {  // the tag is a special token a detokenizer may have skipped: a list at the start
        ++pos_;
        open_call("[", State::kHead);
        return true;
      }
    } else if (syntax == ToolCallSyntax::kLlama3Json && at_start_) {
      if (c == '{') {
        open_call("", State::kHead);
        return true;
      }
      const Match m = c == '<' ? match_at(in, pos_, kPythonTag) : Match::kNo;
      if (m == Match::kPartial && !eof) return false;
      if (m == Match::kFull) {
        pos_ += kPythonTag.size();
        open_call(std::string(kPythonTag), State::kHead);
        return true;
      }
    } else if (syntax == ToolCallSyntax::kJsonArray && at_start_ && c == '[') {
      ++pos_;
      open_call("[", State::kHead);
      return true;
    }
    content_byte(c);
    ++pos_;
  }
  return false;
}

bool ToolCallParser::head_step(bool eof) {
  const HeadMatch head = read_call_head(std::string_view(input_).substr(pos_));
  if (head.result == Head::kMore && !eof) return false;
  if (head.result == Head::kNotObject) {
    to_content(raw_);
    return true;
  }
  if (head.result == Head::kYes && is_known_tool(options_.tool_names, head.name)) {
    scanner_ = JsonScanner();
    for (size_t i = 0; i < head.length; ++i) scanner_.feed(input_[pos_ + i]);  // (valid JSON so far)
    pos_ += head.length;
    start_call(head.name, "");
    state_ = State::kArgs;
    return true;
  }
  // Another key order, arguments as a string, an unknown name, or the text ended in the head: the call is held to
  // its end and parsed whole.
  state_ = State::kWhole;
  search_from_ = pos_;
  return true;
}

bool ToolCallParser::after_call_step(bool eof) {
  while (pos_ < input_.size() && is_json_space(input_[pos_])) ++pos_;  // (whitespace beside a call belongs to neither)
  if (pos_ == input_.size()) return false;
  const std::string_view in(input_);
  state_ = State::kText;
  switch (options_.syntax) {
    case ToolCallSyntax::kHermes:
      // Up to the closing tag is still the call (vLLM reads an unclosed call to the end of the text): dropped.
      // A new opening ends it too (a model that forgot the closing tag).
      for (; pos_ < in.size(); ++pos_) {
        if (in[pos_] != '<') continue;
        const Match close = match_at(in, pos_, kHermesClose), open = match_at(in, pos_, kHermesOpen);
        if (close == Match::kFull) {
          pos_ += kHermesClose.size();
          return true;
        }
        if (open == Match::kFull) return true;
        if ((close == Match::kPartial || open == Match::kPartial) && !eof) break;
      }
      state_ = State::kAfterCall;
      return false;
    case ToolCallSyntax::kLlama3Json:
      if (in[pos_] == ';') open_call(std::string(in.substr(pos_++, 1)), State::kHead);
      break;
    case ToolCallSyntax::kMistral:
    case ToolCallSyntax::kJsonArray:
      if (in[pos_] == ',')
        open_call(std::string(in.substr(pos_++, 1)), State::kHead);
      else if (in[pos_] == ']')
        ++pos_;
      break;
    case ToolCallSyntax::kArguments:
      break;
  }
  return true;
}

bool ToolCallParser::whole_step(bool eof) {
  const std::string_view in(input_);
  if (options_.syntax == ToolCallSyntax::kHermes) {
    const size_t close = in.find(kHermesClose, search_from_);
    if (close == std::string_view::npos && !eof) {
      search_from_ = std::max(pos_, in.size() - std::min(in.size(), kHermesClose.size() - 1));
      return false;
    }
    const size_t end = close == std::string_view::npos ? in.size() : close;
    const size_t after = close == std::string_view::npos ? end : close + kHermesClose.size();
    if (auto call = read_call(in.substr(pos_, end - pos_), options_.tool_names)) {
      start_call(call->name, std::move(call->arguments));
      state_ = State::kText;
    } else {
      to_content(raw_ + std::string(in.substr(pos_, after - pos_)));
    }
    pos_ = after;
    return true;
  }
  if (!eof) return false;  // the other syntaxes list calls up to the end of the text
  const char sep = options_.syntax == ToolCallSyntax::kLlama3Json ? ';' : ',';
  const char close = options_.syntax == ToolCallSyntax::kLlama3Json ? '\0' : ']';
  if (auto calls = read_call_list(in.substr(pos_), sep, close, options_.tool_names)) {
    for (ToolCallText& call : *calls) start_call(call.name, std::move(call.arguments));
    state_ = State::kText;
  } else {
    to_content(raw_ + std::string(in.substr(pos_)));
  }
  pos_ = in.size();
  return true;
}

void ToolCallParser::open_call(std::string raw, State next) {
  ws_before_ = std::move(held_ws_);
  held_ws_.clear();
  raw_ = std::move(raw);
  state_ = next;
}

// Whitespace beside a call belongs to neither the call nor the content, except that the whitespace before a run
// of calls separates the content before it from content after it ("Sure <call> done." reads "Sure done.").
// A forced tool_choice's text is calls and nothing else (its grammar says so): what is left over can only be
// list syntax that max_tokens cut off, and is not content.
bool ToolCallParser::forced() const {
  return options_.syntax == ToolCallSyntax::kJsonArray || options_.syntax == ToolCallSyntax::kArguments;
}

void ToolCallParser::to_content(std::string_view raw) {
  if (!forced()) {
    out_.content += after_call_ ? gap_ : ws_before_;
    out_.content += raw;
  }
  gap_.clear();
  ws_before_.clear();
  after_call_ = false;
  at_start_ = false;
  has_content_ = true;
  state_ = State::kText;
}

void ToolCallParser::content_byte(char c) {
  if (!forced()) {
    out_.content += after_call_ ? gap_ : held_ws_;
    out_.content += c;
  }
  gap_.clear();
  held_ws_.clear();
  after_call_ = false;
  at_start_ = false;
  has_content_ = true;
}

void ToolCallParser::start_call(const std::string& name, std::string arguments) {
  const int32_t index = calls_++;
  sending_ = index < options_.max_calls;
  if (!after_call_) gap_ = has_content_ ? std::move(ws_before_) : std::string();
  ws_before_.clear();
  held_ws_.clear();
  after_call_ = true;
  at_start_ = false;
  if (!sending_) return;
  ++sent_;
  out_.calls.push_back(ToolCallOut{index, call_id(options_.syntax), name, std::move(arguments)});
}

void ToolCallParser::add_arguments(std::string_view piece) {
  if (!sending_ || piece.empty()) return;
  if (!out_.calls.empty() && out_.calls.back().index == calls_ - 1) {
    out_.calls.back().arguments += piece;
    return;
  }
  out_.calls.push_back(ToolCallOut{calls_ - 1, std::nullopt, std::nullopt, std::string(piece)});
}

}  // namespace ember
