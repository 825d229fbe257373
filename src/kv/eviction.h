#pragma once
// KV eviction: which tokens a sequence keeps once its KV outgrows a budget. A policy ranks the
// tokens (by recency, or by the attention scores that attention records into the KvStorage) and
// returns the indices to keep; BlockManager::compact moves those rows to the front of the
// sequence's blocks and frees the rest. Positions do not change: RoPE was applied when a key was
// written, so a kept key keeps its position and new tokens continue the sequence's numbering
// (the engine tracks positions apart from KV length).
//
// Policies:
//   window  the most recent tokens;
//   sinks   StreamingLLM (Xiao et al. 2023): the first `sinks` tokens + the most recent;
//   h2o     Heavy-Hitter Oracle (Zhang et al. 2023): the most recent half of the budget + the
//           tokens with the largest attention accumulated over every query since they were
//           written, chosen per layer and KV head;
//   tova    Token Omission Via Attention (Oren et al. 2024): the tokens with the largest
//           attention from the newest query, averaged over the layer's heads, per layer.
//
// Eviction runs when a sequence holds more than budget + one block of tokens, and cuts it to the
// budget, so its cost is paid once per block of new tokens. With Q4 keys (quantised per block)
// window and sinks cut whole blocks: sinks round up to a block, and up to a block - 1 tokens
// over the budget stay, so kept keys are never quantised again.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kv/block_manager.h"
#include "kv/block_table.h"
#include "kv/kv_storage.h"

namespace vela {

enum class EvictionPolicy { None, Window, Sinks, H2O, Tova };

std::string_view eviction_policy_name(EvictionPolicy p);
// "none", "window", "sinks", "h2o", "tova"; InvalidArgument otherwise.
EvictionPolicy parse_eviction_policy(std::string_view name);

struct EvictionConfig {
    EvictionPolicy policy = EvictionPolicy::None;
    // Tokens kept per sequence: budget_tokens when > 0, else budget_fraction (0, 1) of the
    // tokens the sequence has seen (prompt and generated), never fewer than sinks + 1.
    int64_t budget_tokens = 0;
    double budget_fraction = 0.0;
    int64_t sinks = 4;  // the sinks policy's always-kept first tokens

    bool enabled() const { return policy != EvictionPolicy::None; }
    // What attention has to record for this policy.
    KvScoreMode score_mode() const;
    // InvalidArgument naming the setting.
    void validate() const;
    // Tokens a sequence that has seen n_seen tokens keeps.
    int64_t budget(int64_t n_seen) const;
};

// Parses --kv-budget: a whole number of tokens (>= 1) or a fraction in (0, 1).
void parse_kv_budget(std::string_view text, EvictionConfig& config);

class KvEvictor {
  public:
    KvEvictor(const EvictionConfig& config, const KvLayout& layout);

    const EvictionConfig& config() const { return config_; }
    // Whether a sequence holding kv_tokens after seeing n_seen tokens is due for eviction.
    bool due(int64_t kv_tokens, int64_t n_seen) const;
    // The tokens to keep (budget(n_seen) of them, by index in the sequence's KV), ranked by the
    // policy, reading the storage's scores where the policy needs them.
    std::vector<KeepGroup> plan(const KvStorage& storage, const BlockTable& table,
                                int64_t n_seen) const;

  private:
    // The indices [recent_from, scores.size()) and the best keep - (size - recent_from) of
    // [0, recent_from) by score (the more recent on ties), in ascending order.
    static std::vector<int32_t> keep_best(std::span<const float> scores, int64_t keep,
                                          int64_t recent_from);

    EvictionConfig config_;
    KvLayout layout_;
};

}  // namespace vela
