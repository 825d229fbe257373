#include "engine/forward_driver.h"

#include "core/error.h"

namespace vela {
namespace {
constexpr int64_t kSeq = 0;
constexpr int64_t kBlockSize = 16;

KvCacheConfig config_for(const HParams& hp, int64_t n_ctx) {
    KvCacheConfig c;
    c.n_layers = hp.n_layers;
    c.n_kv_heads = hp.n_kv_heads;
    c.head_dim = hp.head_dim;
    c.block_size = kBlockSize;
    c.num_blocks = (n_ctx + kBlockSize - 1) / kBlockSize;
    return c;
}
}  // namespace

ForwardDriver::ForwardDriver(Model& model, Backend& backend, int64_t n_ctx, int64_t batch_size)
    : model_(model),
      backend_(backend),
      batch_size_(batch_size),
      kv_(config_for(model.hparams(), n_ctx)) {
    kv_.add_sequence(kSeq);
}

void ForwardDriver::reset() {
    kv_.free(kSeq);
    kv_.add_sequence(kSeq);
    n_past_ = 0;
}

void ForwardDriver::forward(const int32_t* tokens, int64_t n, BatchSequence::Logits logits) {
    if (!kv_.can_append(kSeq, n)) {
        fail<ResourceExhausted>("{} tokens do not fit the context", n_past_ + n);
    }
    batch_.tokens.assign(tokens, tokens + n);
    batch_.slots = kv_.append(kSeq, n);
    batch_.seqs = {BatchSequence{kSeq, n_past_, n, logits}};
    model_.forward(batch_, kv_, backend_, step_logits_);
    n_past_ += n;
}

const std::vector<float>& ForwardDriver::evaluate(const std::vector<int32_t>& tokens,
                                                  bool all_logits) {
    reset();
    logits_.clear();
    const int64_t n = static_cast<int64_t>(tokens.size());
    for (int64_t begin = 0; begin < n; begin += batch_size_) {
        const int64_t len = std::min(batch_size_, n - begin);
        const bool last = begin + len == n;
        using L = BatchSequence::Logits;
        forward(tokens.data() + begin, len, all_logits ? L::All : (last ? L::Last : L::None));
        logits_.insert(logits_.end(), step_logits_.begin(), step_logits_.end());
    }
    return logits_;
}

const std::vector<float>& ForwardDriver::extend(const std::vector<int32_t>& tokens) {
    forward(tokens.data(), static_cast<int64_t>(tokens.size()), BatchSequence::Logits::Last);
    return step_logits_;
}

}  // namespace vela
