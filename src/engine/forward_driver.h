#pragma once
// Feeds one sequence of known tokens through the model in batch-size pieces, from an empty
// cache: the common core of `perplexity` and `bench`, which need no scheduler or sampling.
// With KV eviction, the sequence is cut to its budget after each forward that leaves it over
// budget + one block, as the engine does after each step. A model's sliding-window layers keep
// only their window (BlockManager's local group) unless swa_full, as in the engine.
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "kv/block_manager.h"
#include "kv/eviction.h"
#include "kv/kv_storage.h"
#include "model/forward_batch.h"
#include "model/model.h"

namespace vela {

class ForwardDriver {
  public:
    ForwardDriver(Model& model, Backend& backend, int64_t n_ctx, int64_t batch_size,
                  KvFormats kv_formats = KvFormat::F16, const EvictionConfig& eviction = {},
                  int64_t block_size = 16, bool swa_full = false);

    // Clears the cache, then evaluates `tokens`; returns the logits of every row (all_logits)
    // or of the last row only.
    const std::vector<float>& evaluate(const std::vector<int32_t>& tokens, bool all_logits);
    // Appends `tokens` to the current sequence in one forward; returns the last row's logits.
    const std::vector<float>& extend(const std::vector<int32_t>& tokens);
    void reset();
    // Tokens dropped by eviction since the last reset.
    int64_t n_evicted() const { return n_seen_ - blocks_.n_tokens(kSeq); }

  private:
    static constexpr int64_t kSeq = 0;
    void forward(const int32_t* tokens, int64_t n, bool last_logits, bool all_logits);

    Model& model_;
    Backend& backend_;
    int64_t batch_size_;
    BlockManager blocks_;
    std::unique_ptr<KvStorage> storage_;
    std::unique_ptr<KvEvictor> evictor_;
    int64_t n_seen_ = 0;  // tokens fed since the reset: the next token's position
    ForwardBatch batch_;
    std::vector<float> step_logits_;
    std::vector<float> logits_;
};

}  // namespace vela
