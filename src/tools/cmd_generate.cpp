// `vela generate`: one prompt in, streamed text out, speeds at the end.
#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace vela::cli {

int run_generate(const GenerateOptions& o) {
    std::string prompt = o.prompt;
    if (!o.prompt_file.empty()) prompt = read_text_file(o.prompt_file);
    if (prompt.empty()) fail<InvalidArgument>("the prompt is empty (use -p TEXT or -f FILE)");

    Runtime rt = Runtime::load(o.common);
    Request req;
    if (o.chat) {
        // The prompt is a message: its text stays text, only the template adds control tokens.
        const ChatMessage msg{"user", prompt};
        req.prompt = encode_chat(*rt.tokenizer, std::span(&msg, 1), true);
    } else {
        // A raw prompt may spell control tokens on purpose, as llama.cpp and vLLM allow.
        req.prompt =
            rt.tokenizer->encode(prompt, rt.tokenizer->add_bos_default(), /*parse_special=*/true);
    }
    req.sampling = o.sampling.params;
    req.max_tokens = o.sampling.max_tokens;
    req.stop = o.sampling.stop;
    req.ignore_eos = o.sampling.ignore_eos;

    EngineConfig config = rt.engine_config(o.common);
    std::unique_ptr<spec::Drafter> drafter = rt.make_drafter(o.spec, config);
    Engine engine(*rt.model, *rt.tokenizer, *rt.backend, config, std::move(drafter));
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    engine.add_request(std::move(req));
    Clock::time_point t_first{};
    int64_t n_generated = 0;
    FinishReason reason = FinishReason::None;
    while (engine.has_work()) {
        for (const StepOutput& out : engine.step()) {
            if (!out.tokens.empty() && n_generated == 0) t_first = Clock::now();
            n_generated += static_cast<int64_t>(out.tokens.size());
            std::fwrite(out.text.data(), 1, out.text.size(), stdout);
            if (out.finish != FinishReason::None) reason = out.finish;
        }
        std::fflush(stdout);
    }
    const auto t_end = Clock::now();
    const double prefill_s = std::chrono::duration<double>(t_first - t0).count();
    const double decode_s = std::chrono::duration<double>(t_end - t_first).count();
    const int64_t n_prompt = engine.stats().prompt_tokens;
    std::fprintf(stderr,
                 "\n\nprompt: %lld tokens in %.3f s (%.1f tok/s) | generated: %lld tokens, "
                 "decode %.1f tok/s | finish: %s\n",
                 static_cast<long long>(n_prompt), prefill_s, n_prompt / prefill_s,
                 static_cast<long long>(n_generated),
                 n_generated > 1 ? (n_generated - 1) / decode_s : 0.0, finish_reason_name(reason));
    const EngineStats s = engine.stats();
    if (o.spec.method != "off") {
        std::fprintf(stderr,
                     "speculation (%s): %lld drafted, %lld accepted (%.1f%%), mean accepted "
                     "length %.2f tokens per target step\n",
                     o.spec.method.c_str(), static_cast<long long>(s.spec_draft_tokens),
                     static_cast<long long>(s.spec_accepted_tokens),
                     100.0 * s.spec_acceptance_rate(), s.spec_mean_accepted_length());
    }
    return 0;
}

}  // namespace vela::cli
