#include "engine/model_runner.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace vela {

const ForwardBatch& ModelRunner::prepare(const std::vector<ScheduledSeq>& scheduled,
                                         const BlockManager& blocks) {
    batch_.clear();
    batch_.kv_scores = kv_scores_;
    logit_row_.assign(scheduled.size(), -1);
    logit_rows_.assign(scheduled.size(), 0);
    keep_.clear();
    penalties_.clear();
    lse_ = false;
    const int64_t bs = blocks.config().block_size;
    int64_t n_logit_rows = 0;
    for (size_t i = 0; i < scheduled.size(); ++i) {
        const ScheduledSeq& s = scheduled[i];
        const auto& tokens = s.seq->tokens();
        const int64_t begin = s.seq->n_computed();
        const BlockTable& table = blocks.table(s.seq->id());
        // Positions continue the sequence; its KV holds the tokens eviction left.
        VELA_ASSERT(table.n_tokens == s.seq->n_kv() + s.n_tokens);
        for (int64_t slot : s.slots) {
            // Writing into a shared block would change another sequence's KV.
            VELA_ASSERT(blocks.pool().ref_count(static_cast<int32_t>(slot / bs)) == 1);
        }
        const spec::Draft& draft = s.seq->draft();
        if (draft.size() > 0) {
            VELA_ASSERT(begin + s.n_tokens == static_cast<int64_t>(tokens.size()) + draft.size());
            fed_.assign(1, tokens.back());
            fed_.insert(fed_.end(), draft.tokens.begin(), draft.tokens.end());
            if (draft.is_tree()) {
                batch_.add_tree(fed_, draft.parents, begin, s.slots, table.blocks, table.n_tokens);
            } else {
                batch_.add_sequence(fed_, begin, s.slots, table.blocks, table.n_tokens, true, true);
            }
            batch_.add_local(table, bs);
            logit_row_[i] = n_logit_rows;
            logit_rows_[i] = s.n_tokens;
            n_logit_rows += s.n_tokens;
            keep_.insert(keep_.end(), static_cast<size_t>(s.n_tokens), Model::kKeepRow);
            continue;
        }
        // Only a sequence whose last token is fed this step samples.
        const bool samples = begin + s.n_tokens == static_cast<int64_t>(tokens.size());
        batch_.add_sequence(
            std::span(tokens).subspan(static_cast<size_t>(begin), static_cast<size_t>(s.n_tokens)),
            begin, s.slots, table.blocks, table.n_tokens, samples);
        batch_.add_local(table, bs);
        if (samples) {
            logit_row_[i] = n_logit_rows;
            logit_rows_[i] = 1;
            keep_.push_back(keep_for(*s.seq));
            if (keep_.back() > 0) {
                add_penalties(*s.seq, static_cast<int32_t>(n_logit_rows));
                lse_ = lse_ || s.seq->request().logprobs >= 0 ||
                       Sampler::nucleus(s.seq->request().sampling);
            }
            ++n_logit_rows;
        }
    }
    batch_.finish();
    return batch_;
}

void ModelRunner::run(KvStorage& kv) {
    model_.forward(batch_, kv, backend_, keep_, out_, penalties_, lse_);
}

void ModelRunner::add_penalties(const Sequence& seq, int32_t row) {
    const SamplingParams& p = seq.request().sampling;
    if (!p.penalties_enabled()) return;
    sampling::for_each_penalised(
        seq.tokens(), p, static_cast<size_t>(model_.hparams().n_vocab), counts_,
        [&](int32_t token, int32_t count) {
            penalties_.push_back(
                {row, token, count, p.repetition_penalty, p.frequency_penalty, p.presence_penalty});
        });
}

bool ModelRunner::logits_to_host_env() {
    const char* e = std::getenv("VELA_LOGITS_TO_HOST");
    return e != nullptr && std::strcmp(e, "1") == 0;
}

int32_t ModelRunner::keep_for(const Sequence& seq) const {
    if (host_sampling_) return Model::kKeepRow;
    if (seq.samples_argmax()) return Model::kKeepArgmax;
    const SamplingParams& p = seq.request().sampling;
    const int32_t logprobs = seq.request().logprobs;
    // Logprobs describe the raw row: a list taken after penalties cannot give them.
    if (!Sampler::samples_top(p, model_.hparams().n_vocab) ||
        (logprobs >= 0 && p.penalties_enabled()))
        return Model::kKeepRow;
    static_assert(Sampler::kNucleusList <= Backend::kMaxTopK);
    const int32_t k = std::max(Sampler::top_list_size(p), logprobs);
    return k <= Backend::kMaxTopK ? k : Model::kKeepRow;
}

int32_t ModelRunner::argmax_token(size_t i) const {
    const int64_t row = logit_row_[i];
    if (row < 0 || keep_[static_cast<size_t>(row)] != Model::kKeepArgmax) return -1;
    const int32_t id = out_.ids[static_cast<size_t>(row)];
    if (id < 0) {
        fail<InvalidArgument>("sampling: none of the {} logits is above -inf (all masked or NaN)",
                              model_.hparams().n_vocab);
    }
    return id;
}

bool ModelRunner::samples_top(size_t i) const {
    const int64_t row = logit_row_[i];
    return row >= 0 && keep_[static_cast<size_t>(row)] > 0;
}

std::span<const sampling::Candidate> ModelRunner::top_for(size_t i) {
    VELA_ASSERT(samples_top(i));
    const auto k = static_cast<size_t>(out_.top_k);
    const size_t first = static_cast<size_t>(logit_row_[i]) * k;
    top_.resize(k);
    for (size_t j = 0; j < k; ++j)
        top_[j] = {out_.top_tokens[first + j], out_.top_logits[first + j]};
    return top_;
}

double ModelRunner::lse_for(size_t i) const {
    VELA_ASSERT(samples_top(i));
    const auto row = static_cast<size_t>(logit_row_[i]);
    return row < out_.lse.size() ? out_.lse[row] : std::numeric_limits<double>::quiet_NaN();
}

std::span<float> ModelRunner::fetch_row(size_t i) {
    VELA_ASSERT(samples_top(i));
    model_.fetch_row(backend_, logit_row_[i], out_);
    return logits_for(i);
}

std::span<float> ModelRunner::logits_for(size_t i) {
    if (logit_row_[i] < 0) return {};
    const int64_t n_vocab = model_.hparams().n_vocab;
    return std::span<float>(out_.logits.data() + logit_row_[i] * n_vocab,
                            static_cast<size_t>(logit_rows_[i] * n_vocab));
}

}  // namespace vela
