#include "engine/model_runner.h"

namespace vela {

void ModelRunner::run(const std::vector<ScheduledSeq>& scheduled, KvCache& kv) {
    batch_.tokens.clear();
    batch_.slots.clear();
    batch_.seqs.clear();
    logit_row_.assign(scheduled.size(), -1);
    int64_t n_logit_rows = 0;
    for (size_t i = 0; i < scheduled.size(); ++i) {
        const ScheduledSeq& s = scheduled[i];
        const auto& tokens = s.seq->tokens();
        const int64_t begin = s.seq->n_computed();
        batch_.tokens.insert(batch_.tokens.end(), tokens.begin() + begin,
                             tokens.begin() + begin + s.n_tokens);
        batch_.slots.insert(batch_.slots.end(), s.slots.begin(), s.slots.end());
        // Only a sequence whose last token is fed this step samples; a partial prefill chunk
        // needs no logits.
        const bool samples = begin + s.n_tokens == static_cast<int64_t>(tokens.size());
        batch_.seqs.push_back(
            BatchSequence{s.seq->id(), begin, s.n_tokens,
                          samples ? BatchSequence::Logits::Last : BatchSequence::Logits::None});
        if (samples) logit_row_[i] = n_logit_rows++;
    }
    model_.forward(batch_, kv, backend_, logits_);
}

std::span<float> ModelRunner::logits_for(size_t i) {
    if (logit_row_[i] < 0) return {};
    const int64_t n_vocab = model_.hparams().n_vocab;
    return std::span<float>(logits_.data() + logit_row_[i] * n_vocab, static_cast<size_t>(n_vocab));
}

}  // namespace vela
