#pragma once
// Each `vela` subcommand registers itself on the top-level app.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace vela::cli {

void register_generate(CLI::App& app);
void register_chat(CLI::App& app);
void register_info(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_bench(CLI::App& app);
void register_serve(CLI::App& app);
// llama-server spellings CLI11 cannot declare (multi-letter single-dash flags such as -np).
void rewrite_llama_server_flags(std::vector<std::string>& args);

// Whole file as a string; vela::Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace vela::cli
