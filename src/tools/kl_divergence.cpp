#include "tools/kl_divergence.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace vela::cli {
namespace {

size_t record_size(int64_t n_vocab) {
    return static_cast<size_t>(2 * ((n_vocab + 1) / 2) + 4);
}

}  // namespace

KlDivergenceBase::KlDivergenceBase(const std::string& path, int64_t n_ctx, int64_t n_vocab,
                                   std::span<const int32_t> tokens, int64_t n_chunks)
    : out_(path, std::ios::binary), n_vocab_(n_vocab), record_(record_size(n_vocab)) {
    if (!out_) fail<InvalidArgument>("cannot open '{}' for writing: {}", path, std::strerror(errno));
    out_.write("_logits_", 8);
    put(static_cast<int32_t>(n_ctx));
    put(static_cast<int32_t>(n_vocab));
    put(static_cast<int32_t>(n_chunks));
    out_.write(reinterpret_cast<const char*>(tokens.data()),
               static_cast<std::streamsize>(n_chunks * n_ctx * sizeof(int32_t)));
}

void KlDivergenceBase::add(std::span<const float> logits) {
    const auto [lo, hi] = std::minmax_element(logits.begin(), logits.end());
    const float max_logit = *hi;
    const float min_logit = std::max(*lo, max_logit - 16.0f);
    double sum = 0;
    for (const float l : logits) sum += std::exp(static_cast<double>(l - max_logit));
    const float log_sum = static_cast<float>(std::log(sum));
    const float header[2] = {(max_logit - min_logit) / 65535.0f, min_logit - max_logit - log_sum};
    std::memcpy(record_.data(), header, sizeof header);
    uint16_t* q = record_.data() + 4;
    std::fill(q, record_.data() + record_.size(), uint16_t{0});
    if (header[0] > 0) {
        const float inv_scale = 1.0f / header[0];
        for (int64_t i = 0; i < n_vocab_; ++i) {
            const float l = logits[static_cast<size_t>(i)];
            if (l > min_logit) q[i] = static_cast<uint16_t>(std::lrint(inv_scale * (l - min_logit)));
        }
    }
    out_.write(reinterpret_cast<const char*>(record_.data()),
               static_cast<std::streamsize>(record_.size() * sizeof(uint16_t)));
    if (!out_) fail<Error>("writing the KL-divergence base file failed (disk full?)");
}

KlDivergenceReader::KlDivergenceReader(const std::string& path, int64_t n_ctx, int64_t n_vocab,
                                       std::span<const int32_t> tokens, int64_t n_chunks)
    : in_(path, std::ios::binary), path_(path), n_vocab_(n_vocab), record_(record_size(n_vocab)) {
    if (!in_) fail<InvalidArgument>("cannot open '{}': {}", path, std::strerror(errno));
    char magic[8] = {};
    int32_t head[3] = {};
    in_.read(magic, 8);
    in_.read(reinterpret_cast<char*>(head), sizeof head);
    if (!in_ || std::memcmp(magic, "_logits_", 8) != 0) {
        fail<InvalidArgument>("'{}' is not a llama-perplexity logits file", path);
    }
    if (head[0] != n_ctx || head[1] != n_vocab || head[2] < n_chunks) {
        fail<InvalidArgument>(
            "'{}' holds {} chunks of {} tokens over {} token ids; this run has {} chunks of {} "
            "over {}",
            path, head[2], head[0], head[1], n_chunks, n_ctx, n_vocab);
    }
    std::vector<int32_t> theirs(static_cast<size_t>(int64_t{head[2]} * head[0]));
    in_.read(reinterpret_cast<char*>(theirs.data()),
             static_cast<std::streamsize>(theirs.size() * sizeof(int32_t)));
    if (!in_ || !std::equal(tokens.begin(), tokens.begin() + n_chunks * n_ctx, theirs.begin())) {
        fail<InvalidArgument>("'{}' was computed on other tokens (another text or tokenizer)",
                              path);
    }
}

void KlDivergenceReader::add(std::span<const float> logits, int32_t next) {
    in_.read(reinterpret_cast<char*>(record_.data()),
             static_cast<std::streamsize>(record_.size() * sizeof(uint16_t)));
    if (!in_) fail<InvalidArgument>("'{}' ends before the last scored token", path_);
    float head[2];
    std::memcpy(head, record_.data(), sizeof head);
    const uint16_t* q = record_.data() + 4;
    const auto top = std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (const float l : logits) sum += std::exp(static_cast<double>(l) - *top);
    const double log_norm = *top + std::log(sum);  // log-probability = logit - log_norm
    double kld = 0;
    int64_t top_base = 0;
    for (int64_t i = 0; i < n_vocab_; ++i) {
        if (q[i] > q[top_base]) top_base = i;
        const double lb = double{head[0]} * q[i] + head[1];
        if (lb <= -16.0) continue;  // the file keeps the top 16 nats only
        kld += std::exp(lb) * (lb - (double{logits[static_cast<size_t>(i)]} - log_norm));
    }
    kld_.push_back(kld);
    same_top_ += (top - logits.begin()) == top_base ? 1 : 0;
    nll_base_ -= double{head[0]} * q[next] + head[1];
}

KlDivergenceReader::Result KlDivergenceReader::result() const {
    Result r;
    r.n = static_cast<int64_t>(kld_.size());
    if (r.n == 0) return r;
    double sum = 0, sum2 = 0;
    for (double k : kld_) {
        sum += k;
        sum2 += k * k;
    }
    r.kld_mean = sum / r.n;
    r.kld_sem = r.n > 1 ? std::sqrt(std::max(0.0, sum2 / r.n - r.kld_mean * r.kld_mean) / (r.n - 1))
                        : 0.0;
    std::vector<double> sorted = kld_;
    std::sort(sorted.begin(), sorted.end());
    r.kld_p99 = sorted[static_cast<size_t>(0.99 * static_cast<double>(r.n - 1))];
    r.same_top = static_cast<double>(same_top_) / r.n;
    r.ppl_base = std::exp(nll_base_ / r.n);
    return r;
}

}  // namespace vela::cli
