// `vela perplexity FILE`: llama.cpp-style chunked perplexity. The text is split into chunks of
// ctx-size tokens, each evaluated from an empty cache; the negative log-likelihood of the
// second half of every chunk is averaged (the first half gives each scored token context).
//
// With --kl-divergence-base the scored tokens' full distributions are also written in the file
// format llama-perplexity reads back with --kl-divergence (its own format, documented by its
// source): llama.cpp then evaluates the same tokens and reports the KL divergence and top-token
// agreement between its distributions and Vela's.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "engine/forward_driver.h"
#include "sampling/logprobs.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/kl_divergence.h"

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
    if (rt.eviction.enabled()) {
        fmt::print(stderr,
                   "perplexity: KV eviction {} (budget {}), applied after each forward of -b {} "
                   "tokens\n",
                   eviction_policy_name(rt.eviction.policy), o.common.kv_budget,
                   o.common.batch_size);
    }
    vela::ForwardDriver driver(*rt.model, *rt.backend, n_ctx, o.common.batch_size, rt.kv_formats,
                               rt.eviction, o.common.kv_block_size, o.common.swa_full);
    const int64_t first = n_ctx / 2;
    const size_t V = static_cast<size_t>(rt.model->hparams().n_vocab);
    std::optional<KlDivergenceBase> kl_base;
    if (!o.kl_divergence_base.empty()) {
        kl_base.emplace(o.kl_divergence_base, n_ctx, static_cast<int64_t>(V), tokens, n_chunks);
    }
    std::optional<KlDivergenceReader> kl;
    if (!o.kl_divergence.empty()) {
        kl.emplace(o.kl_divergence, n_ctx, static_cast<int64_t>(V), tokens, n_chunks);
    }
    double nll = 0;
    int64_t count = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
        std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        if (add_bos) chunk[0] = rt.tokenizer->bos();  // every chunk starts like a document
        const std::vector<float>& logits = driver.evaluate(chunk, /*all_logits=*/true);
        for (int64_t j = first; j + 1 < n_ctx; ++j) {
            const auto row = std::span(logits).subspan(static_cast<size_t>(j) * V, V);
            nll -= token_logprob(row, chunk[j + 1]);
            if (kl_base) kl_base->add(row);
            if (kl) kl->add(row, chunk[j + 1]);
            ++count;
        }
        fmt::print(stderr, "[{}]{:.4f} ", c + 1, std::exp(nll / count));
    }
    const double ppl = std::exp(nll / count);
    fmt::print("\nFinal estimate: PPL = {:.4f} over {} scored tokens ({} chunks of {})\n", ppl,
               count, n_chunks, n_ctx);
    if (kl) {
        const KlDivergenceReader::Result r = kl->result();
        fmt::print(
            "KL divergence from the base ({}): mean {:.6f} +/- {:.6f}, p99 {:.6f}; same top "
            "token {:.2f}%; base PPL {:.4f}, this run / base {:+.3f}%\n",
            o.kl_divergence, r.kld_mean, r.kld_sem, r.kld_p99, 100.0 * r.same_top, r.ppl_base,
            100.0 * (ppl / r.ppl_base - 1.0));
    }
    return 0;
}

}  // namespace vela::cli
