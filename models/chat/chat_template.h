#pragma once
// A model's chat template (tokenizer_config.json `chat_template`, GGUF
// `tokenizer.chat_template`, or --chat-template FILE) rendered the way
// transformers' apply_chat_template renders it: jinja2 with trim_blocks,
// lstrip_blocks and loop controls, the raise_exception / strftime_now / namespace
// globals, transformers' tojson, `tools` and `documents` passed as none unless
// given. Our own interpreter (models/chat/jinja_*.h) covers the language those
// templates use; tests compare its output with python jinja2 byte for byte.
//
// A template is untrusted input: syntax errors come back as an Error with line
// and column, runtime errors (raise_exception, misuse of undefined values, type
// errors) as an Error, and rendering is bounded in output size, loop iterations
// and nesting, so a hostile template or conversation can neither hang nor crash.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace ember {

namespace jinja {
struct Stmt;
}

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  std::string bos_token;
  std::string eos_token;
  // More template variables (e.g. tools, date_string, enable_thinking), merged over
  // the defaults; must be a JSON object or null.
  nlohmann::ordered_json extra_context;
  // strftime_now() formats this time (seconds since the epoch, UTC) when set;
  // otherwise the local time now, as transformers does.
  std::optional<int64_t> now_unix_seconds;
  size_t max_output_bytes = size_t{1} << 20;   // also bounds any one string value
  int64_t max_loop_iterations = int64_t{1} << 20;  // summed over all loops of one rendering
};

class ChatTemplate {
 public:
  static Result<ChatTemplate> parse(std::string source);

  // messages: a JSON array of objects (role, content as a string or a list of
  // {"type": "text", "text": ...} parts, optional name / tool_calls / ...).
  // ordered_json keeps the key order of tool schemas, which tojson shows.
  Result<std::string> render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& options) const;
  Result<std::string> render(const nlohmann::json& messages, const ChatTemplateOptions& options) const;

  const std::string& source() const { return *source_; }

 private:
  struct Parsed;
  std::shared_ptr<const std::string> source_;  // normalised source (error positions refer to it)
  std::shared_ptr<const Parsed> parsed_;
};

}  // namespace ember
