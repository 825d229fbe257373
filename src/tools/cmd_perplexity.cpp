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

namespace vela::cli {
namespace {

// llama-perplexity's logits file: "_logits_", int32 n_ctx, int32 n_vocab, int32 n_chunks, the
// int32 tokens of every chunk, then for each scored token of each chunk one record of
// 2*ceil(n_vocab/2) + 4 uint16: float scale, float minimum log-probability, then each token's
// log-probability quantised to 16 bits over the top 16 nats (below that: 0).
class KlDivergenceBase {
  public:
    KlDivergenceBase(const std::string& path, int64_t n_ctx, int64_t n_vocab,
                     std::span<const int32_t> tokens, int64_t n_chunks)
        : out_(path, std::ios::binary), n_vocab_(n_vocab) {
        if (!out_)
            fail<InvalidArgument>("cannot open '{}' for writing: {}", path, std::strerror(errno));
        out_.write("_logits_", 8);
        put(static_cast<int32_t>(n_ctx));
        put(static_cast<int32_t>(n_vocab));
        put(static_cast<int32_t>(n_chunks));
        out_.write(reinterpret_cast<const char*>(tokens.data()),
                   static_cast<std::streamsize>(n_chunks * n_ctx * sizeof(int32_t)));
        record_.resize(static_cast<size_t>(2 * ((n_vocab + 1) / 2) + 4));
    }

    void add(std::span<const float> logits) {
        const auto [lo, hi] = std::minmax_element(logits.begin(), logits.end());
        const float max_logit = *hi;
        const float min_logit = std::max(*lo, max_logit - 16.0f);
        double sum = 0;
        for (const float l : logits) sum += std::exp(static_cast<double>(l - max_logit));
        const float log_sum = static_cast<float>(std::log(sum));
        const float header[2] = {(max_logit - min_logit) / 65535.0f,
                                 min_logit - max_logit - log_sum};
        std::memcpy(record_.data(), header, sizeof header);
        uint16_t* q = record_.data() + 4;
        std::fill(q, record_.data() + record_.size(), uint16_t{0});
        if (header[0] > 0) {
            const float inv_scale = 1.0f / header[0];
            for (int64_t i = 0; i < n_vocab_; ++i) {
                const float l = logits[static_cast<size_t>(i)];
                if (l > min_logit)
                    q[i] = static_cast<uint16_t>(std::lrint(inv_scale * (l - min_logit)));
            }
        }
        out_.write(reinterpret_cast<const char*>(record_.data()),
                   static_cast<std::streamsize>(record_.size() * sizeof(uint16_t)));
        if (!out_) fail<Error>("writing the KL-divergence base file failed (disk full?)");
    }

  private:
    void put(int32_t v) { out_.write(reinterpret_cast<const char*>(&v), sizeof v); }

    std::ofstream out_;
    int64_t n_vocab_;
    std::vector<uint16_t> record_;
};

}  // namespace

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
                               rt.eviction);
    const int64_t first = n_ctx / 2;
    const size_t V = static_cast<size_t>(rt.model->hparams().n_vocab);
    std::optional<KlDivergenceBase> kl_base;
    if (!o.kl_divergence_base.empty()) {
        kl_base.emplace(o.kl_divergence_base, n_ctx, static_cast<int64_t>(V), tokens, n_chunks);
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
