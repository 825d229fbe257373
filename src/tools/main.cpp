// The `vela` command line: generate, chat, info, perplexity, bench.
#include <CLI/CLI.hpp>

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
    try {
        app.parse(argc, argv);
    } catch (const CLI::RuntimeError& e) {
        return e.get_exit_code();  // a subcommand's own exit status
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return 0;
}
