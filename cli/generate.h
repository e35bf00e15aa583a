#pragma once
// The single-prompt offline path behind `ember generate`.

#include "cli/options.h"
#include "models/model_source.h"

namespace ember {

int generate_one(const ModelSource& src, const GenerateOptions& options);

}  // namespace ember
