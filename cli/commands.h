#pragma once
// The subcommands. Each returns the process exit code.

#include "cli/options.h"

namespace ember {

int run_serve(const ServeOptions& options);
int run_generate(const GenerateOptions& options);
int run_bench(const BenchOptions& options);

}  // namespace ember
