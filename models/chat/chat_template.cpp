#include "models/chat/chat_template.h"

#include <ctime>
#include <unordered_map>

#include "models/chat/jinja_eval.h"
#include "models/chat/jinja_lexer.h"
#include "models/chat/jinja_parser.h"

namespace ember {

using jinja::CallArgs;
using jinja::JinjaError;
using jinja::Value;
using jinja::ValueDict;
using jinja::ValueList;

struct ChatTemplate::Parsed {
  jinja::Body body;
};

namespace {

template <class Json>
Value from_json(const Json& j, int depth) {
  if (depth > jinja::kMaxValueDepth) throw JinjaError("messages nested too deeply");
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? Value::number(static_cast<double>(u))
                                                   : Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::number(j.template get<double>());
    case nlohmann::json::value_t::string: return Value::string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      for (const auto& e : j) items.push_back(from_json(e, depth + 1));
      return Value::make_list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      ValueDict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.set(it.key(), from_json(it.value(), depth + 1));
      return Value::make_dict(std::move(d));
    }
    default: throw JinjaError("unsupported JSON value in messages");
  }
}

std::string strftime_at(const std::string& fmt, const ChatTemplateOptions& opt) {
  std::tm tm{};
  if (opt.now_unix_seconds) {
    std::time_t t = static_cast<std::time_t>(*opt.now_unix_seconds);
    gmtime_r(&t, &tm);
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  if (fmt.empty()) return "";
  if (fmt.size() > 256) throw JinjaError("strftime_now: format too long");
  std::string buf(4096, '\0');
  size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
  buf.resize(n);
  return buf;
}

std::unordered_map<std::string, Value> make_globals(jinja::Interpreter& in, const ChatTemplateOptions& opt) {
  std::unordered_map<std::string, Value> g;
  g["add_generation_prompt"] = Value::boolean(opt.add_generation_prompt);
  g["bos_token"] = Value::string(opt.bos_token);
  g["eos_token"] = Value::string(opt.eos_token);
  g["tools"] = Value::none();  // apply_chat_template passes tools=None, documents=None
  g["documents"] = Value::none();
  g["raise_exception"] = Value::function([](CallArgs& a) -> Value {
    throw jinja::RaisedError(a.args.empty() ? std::string() : jinja::to_str(a.args[0]));
  });
  g["strftime_now"] = Value::function([&opt](CallArgs& a) {
    if (a.args.empty() || !a.args[0].is_string()) throw JinjaError("strftime_now() needs a format string");
    return Value::string(strftime_at(a.args[0].s, opt));
  });
  jinja::Interpreter* ip = &in;
  g["namespace"] = Value::function([ip](CallArgs& a) {
    ValueDict attrs;
    for (const Value& p : a.args) {
      if (!p.is_dict()) throw JinjaError("namespace() positional argument must be a dict");
      for (const auto& [k, v] : p.dict->items) attrs.set(k, v);
    }
    for (const auto& [k, v] : a.kwargs) {
      if (!k.empty() && k[0] == '_') throw JinjaError("cannot store underscore-prefixed attributes on a namespace");
      attrs.set(k, v);
    }
    return ip->make_namespace(std::move(attrs));
  });
  g["dict"] = Value::function([](CallArgs& a) {
    ValueDict d;
    for (const auto& [k, v] : a.kwargs) d.set(k, v);
    return Value::make_dict(std::move(d));
  });
  g["range"] = Value::function([ip](CallArgs& a) {
    int64_t start = 0, stop = 0, step = 1;
    for (const Value& v : a.args)
      if (v.kind != jinja::Kind::kInt) throw JinjaError("range() arguments must be integers");
    if (a.args.size() == 1) stop = a.args[0].i;
    else if (a.args.size() == 2 || a.args.size() == 3) {
      start = a.args[0].i;
      stop = a.args[1].i;
      if (a.args.size() == 3) step = a.args[2].i;
    } else {
      throw JinjaError("range expected 1 to 3 arguments");
    }
    if (step == 0) throw JinjaError("range() arg 3 must not be zero");
    ValueList out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      ip->check_list(out.size() + 1);
      out.push_back(Value::integer(k));
      if ((step > 0 && k > INT64_MAX - step) || (step < 0 && k < INT64_MIN - step)) break;
    }
    return Value::make_list(std::move(out));
  });
  return g;
}

}  // namespace

Result<ChatTemplate> ChatTemplate::parse(std::string source) {
  ChatTemplate t;
  auto src = std::make_shared<std::string>(jinja::normalize_template_source(source));
  auto parsed = std::make_shared<Parsed>();
  try {
    std::vector<jinja::Token> tokens = jinja::lex_template(*src);
    parsed->body = jinja::parse_template(*src, tokens);
  } catch (const JinjaError& e) {
    return Error{std::string("chat template syntax error: ") + e.what()};
  }
  t.source_ = std::move(src);
  t.parsed_ = std::move(parsed);
  return t;
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& messages,
                                         const ChatTemplateOptions& options) const {
  if (!messages.is_array()) return Error{"chat template: messages must be a JSON array"};
  for (const auto& m : messages)
    if (!m.is_object()) return Error{"chat template: each message must be a JSON object"};
  if (!options.extra_context.is_null() && !options.extra_context.is_object())
    return Error{"chat template: extra context must be a JSON object"};
  jinja::Limits limits;
  limits.max_output = options.max_output_bytes;
  limits.max_iterations = options.max_loop_iterations;
  jinja::Interpreter in(*source_, limits);
  try {
    auto globals = make_globals(in, options);
    globals["messages"] = from_json(messages, 0);
    if (options.extra_context.is_object())
      for (auto it = options.extra_context.begin(); it != options.extra_context.end(); ++it)
        globals[it.key()] = from_json(it.value(), 0);
    return in.render(parsed_->body, std::move(globals));
  } catch (const jinja::RaisedError& e) {
    return Error{std::string("chat template raised an exception: ") + e.what()};
  } catch (const JinjaError& e) {
    return Error{std::string("chat template error: ") + e.what()};
  } catch (const std::bad_alloc&) {
    return Error{"chat template error: out of memory"};
  }
}

Result<std::string> ChatTemplate::render(const nlohmann::json& messages, const ChatTemplateOptions& options) const {
  return render(nlohmann::ordered_json::parse(messages.dump()), options);
}

}  // namespace ember
