#include "cli/config_file.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/json_limits.h"

namespace ember {

std::vector<std::string> config_args_from_argv(int argc, char** argv) {
  return std::vector<std::string>(argv, argv + argc);
}

Result<std::vector<std::string>> flags_from_json(const std::string& json_text, const std::string& source) {
  if (Status s = check_json_shape(json_text, 4, 10000, source); !s) return s.error();
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{source + ": not valid JSON"};
  if (!j.is_object()) return Error{source + ": expected a JSON object of flags"};
  std::vector<std::string> flags;
  for (const auto& [key, value] : j.items()) {
    std::string name = key;
    std::replace(name.begin(), name.end(), '_', '-');
    if (name.empty() || name[0] == '-') return Error{source + ": bad flag name \"" + key + "\""};
    const std::string flag = "--" + name;
    auto scalar = [&](const nlohmann::json& v) -> Result<std::string> {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
      if (v.is_number()) {
        std::ostringstream os;
        os << v.get<double>();
        return os.str();
      }
      return Error{source + ": flag \"" + key + "\" must be a string, number, boolean or list"};
    };
    if (value.is_boolean()) {
      flags.push_back(value.get<bool>() ? flag : "--no-" + name);
    } else if (value.is_array()) {
      for (const auto& item : value) {
        auto s = scalar(item);
        if (!s) return s.error();
        flags.push_back(flag);
        flags.push_back(*s);
      }
    } else {
      auto s = scalar(value);
      if (!s) return s.error();
      flags.push_back(flag);
      flags.push_back(*s);
    }
  }
  return flags;
}

Status expand_config_file(std::vector<std::string>* args) {
  std::string path;
  for (size_t i = 1; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    if (a == "--config") {
      if (i + 1 >= args->size()) return Error{"--config needs a file"};
      path = (*args)[i + 1];
      args->erase(args->begin() + static_cast<long>(i), args->begin() + static_cast<long>(i) + 2);
      break;
    }
    if (a.rfind("--config=", 0) == 0) {
      path = a.substr(9);
      args->erase(args->begin() + static_cast<long>(i));
      break;
    }
  }
  if (path.empty()) return Status::success();

  std::ifstream in(path);
  if (!in) return Error{path + ": cannot open config file"};
  std::stringstream text;
  text << in.rdbuf();
  auto flags = flags_from_json(text.str(), path);
  if (!flags) return flags.error();

  auto sub = std::find_if(args->begin() + 1, args->end(),
                          [](const std::string& a) { return a == "serve" || a == "generate" || a == "bench"; });
  if (sub == args->end()) return Error{"--config needs a subcommand (serve, generate or bench)"};
  args->insert(sub + 1, flags->begin(), flags->end());
  return Status::success();
}

}  // namespace ember
