#pragma once
// `--config FILE.json`: every flag can come from a JSON object in a file
// ({"max-num-seqs": 64, "enable-prefix-caching": false, ...}). The file's flags
// are inserted right after the subcommand, before the user's own flags, so
// that a flag given on the command line wins (the last value is taken).

#include <string>
#include <vector>

#include "common/status.h"

namespace ember {

std::vector<std::string> config_args_from_argv(int argc, char** argv);

// Finds and removes `--config FILE` / `--config=FILE` in args (args[0] is the
// program) and splices the file's flags in after the subcommand.
Status expand_config_file(std::vector<std::string>* args);

// The flags one JSON object stands for; exposed for tests.
Result<std::vector<std::string>> flags_from_json(const std::string& json_text, const std::string& source);

}  // namespace ember
