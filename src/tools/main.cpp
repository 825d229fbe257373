// The `vela` command line: generate, chat, info, perplexity, bench, serve.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "tools/commands.h"

int main(int argc, char** argv) {
    CLI::App app{"vela: LLM inference engine (GGUF models, paged KV cache, CPU FlashAttention)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "vela 0.1.0");
    vela::cli::register_generate(app);
    vela::cli::register_chat(app);
    vela::cli::register_info(app);
    vela::cli::register_perplexity(app);
    vela::cli::register_bench(app);
    vela::cli::register_serve(app);
    try {
        // CLI11 wants the arguments after the program name, last first.
        std::vector<std::string> args(argv + 1, argv + argc);
        vela::cli::rewrite_llama_server_flags(args);
        std::reverse(args.begin(), args.end());
        app.parse(args);
    } catch (const CLI::RuntimeError& e) {
        return e.get_exit_code();  // a subcommand's own exit status
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return 0;
}
