#pragma once
// The `vela` subcommands, one run function each (cmd_<name>.cpp). Each returns the process exit
// status; errors a user can cause throw vela::Error, which run_guarded turns into one line.
#include <functional>

#include "tools/options.h"

namespace vela::cli {

int run_generate(const GenerateOptions& o);
int run_chat(const ChatOptions& o);
int run_info(const InfoOptions& o);
int run_perplexity(const PerplexityOptions& o);
int run_bench(const BenchOptions& o);
int run_serve(const ServeOptions& o);

// Runs a command, turning vela::Error into the line `vela: error: ...` and exit status 1.
int run_guarded(const std::function<int()>& command);

}  // namespace vela::cli
