#pragma once
// The offline path behind `ember generate` (one prompt streamed, or a file of prompts as a batch).

#include "cli/options.h"
#include "models/model_source.h"

namespace ember {

#include <string>

int generate(const ModelSource& src, const GenerateOptions& options, const std::string& device);

}  // namespace ember
