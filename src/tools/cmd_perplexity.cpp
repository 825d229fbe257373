// `vela perplexity FILE`: llama.cpp-style chunked perplexity. The text is split into chunks of
// ctx-size tokens, each evaluated from an empty cache; the negative log-likelihood of the
// second half of every chunk is averaged (the first half gives each scored token context).
#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "engine/forward_driver.h"
#include "sampling/logprobs.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace vela::cli {

int run_perplexity(const PerplexityOptions& o) {
    Runtime rt = Runtime::load(o.common);
    const std::string text = read_text_file(o.file);
    const bool add_bos = rt.tokenizer->add_bos_default();
    const std::vector<int32_t> tokens = rt.tokenizer->encode(text, add_bos, false);
    const int64_t n_ctx = o.common.ctx_size;
    int64_t n_chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
    if (o.max_chunks > 0) n_chunks = std::min(n_chunks, o.max_chunks);
    if (n_chunks < 1) {
        fail<InvalidArgument>("'{}' has {} tokens, fewer than one context of {}", o.file,
                              tokens.size(), n_ctx);
    }
    fmt::print(stderr, "perplexity: {} tokens, {} chunks of {}\n", tokens.size(), n_chunks, n_ctx);
    vela::ForwardDriver driver(*rt.model, *rt.backend, n_ctx, o.common.batch_size, rt.kv_formats);
    const int64_t first = n_ctx / 2;
    double nll = 0;
    int64_t count = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
        std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        if (add_bos) chunk[0] = rt.tokenizer->bos();  // every chunk starts like a document
        const std::vector<float>& logits = driver.evaluate(chunk, /*all_logits=*/true);
        const size_t V = static_cast<size_t>(rt.model->hparams().n_vocab);
        for (int64_t j = first; j + 1 < n_ctx; ++j) {
            nll -= token_logprob(std::span(logits).subspan(static_cast<size_t>(j) * V, V),
                                 chunk[j + 1]);
            ++count;
        }
        fmt::print(stderr, "[{}]{:.4f} ", c + 1, std::exp(nll / count));
    }
    const double ppl = std::exp(nll / count);
    fmt::print("\nFinal estimate: PPL = {:.4f} over {} scored tokens ({} chunks of {})\n", ppl,
               count, n_chunks, n_ctx);
    return 0;
}

}  // namespace vela::cli
