// `vela chat`: a multi-turn conversation on stdin/stdout. Each turn re-renders the whole
// conversation with the model's chat template; the engine reuses the KV of the common prefix
// kept from the previous turn, so only the new text is prefilled.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "tools/commands.h"
#include "tools/common.h"

namespace vela::cli {

int run_chat(const ChatOptions& o) {
    Runtime rt = Runtime::load(o.common);
    Engine engine(*rt.model, *rt.tokenizer, *rt.backend, rt.engine_config(o.common));
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    int64_t previous = -1;
    const bool tty = isatty(fileno(stdin));
    std::string line;
    for (;;) {
        if (tty) std::fputs("\n> ", stdout);
        std::fflush(stdout);
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        if (line == "/exit" || line == "/quit") break;
        messages.push_back({"user", line});
        Request req;
        // What the user types stays text: "<|im_end|>" in a line cannot end the turn.
        req.prompt = encode_chat(*rt.tokenizer, messages, true);
        if (static_cast<int64_t>(req.prompt.size()) + 1 >= o.common.ctx_size) {
            std::fprintf(stderr,
                         "vela: the conversation no longer fits the context (%lld tokens); "
                         "start a new chat or raise --ctx-size\n",
                         static_cast<long long>(req.prompt.size()));
            break;
        }
        req.sampling = o.sampling.params;
        req.max_tokens = o.sampling.max_tokens;
        req.stop = o.sampling.stop;
        req.retain_kv = true;
        req.reuse_kv_of = previous;
        const int64_t id = engine.add_request(std::move(req));
        std::string reply;
        while (engine.has_work()) {
            for (const StepOutput& out : engine.step()) {
                std::fwrite(out.text.data(), 1, out.text.size(), stdout);
                reply += out.text;
            }
            std::fflush(stdout);
        }
        std::fputs("\n", stdout);
        messages.push_back({"assistant", reply});
        previous = id;
    }
    return 0;
}

}  // namespace vela::cli
