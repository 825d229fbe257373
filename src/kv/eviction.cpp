#include "kv/eviction.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace vela {

std::string_view eviction_policy_name(EvictionPolicy p) {
    switch (p) {
        case EvictionPolicy::None: return "none";
        case EvictionPolicy::Window: return "window";
        case EvictionPolicy::Sinks: return "sinks";
        case EvictionPolicy::H2O: return "h2o";
        case EvictionPolicy::Tova: return "tova";
    }
    return "?";
}

EvictionPolicy parse_eviction_policy(std::string_view name) {
    for (EvictionPolicy p : {EvictionPolicy::None, EvictionPolicy::Window, EvictionPolicy::Sinks,
                             EvictionPolicy::H2O, EvictionPolicy::Tova}) {
        if (eviction_policy_name(p) == name) return p;
    }
    fail<InvalidArgument>("unknown KV eviction policy '{}' (none, window, sinks, h2o or tova)",
                          name);
}

KvScoreMode EvictionConfig::score_mode() const {
    switch (policy) {
        case EvictionPolicy::H2O: return KvScoreMode::Accumulate;
        case EvictionPolicy::Tova: return KvScoreMode::Last;
        default: return KvScoreMode::None;
    }
}

void EvictionConfig::validate() const {
    if (!enabled()) return;
    if (budget_tokens < 0 || budget_fraction < 0.0 || budget_fraction >= 1.0 ||
        (budget_tokens == 0 && budget_fraction == 0.0)) {
        fail<InvalidArgument>(
            "KV eviction ({}) needs a budget: a number of tokens >= 1 or a fraction in (0, 1)",
            eviction_policy_name(policy));
    }
    if (sinks < 0) fail<InvalidArgument>("KV sinks must be >= 0, got {}", sinks);
    if (budget_tokens > 0 && budget_tokens <= sinks) {
        fail<InvalidArgument>("a KV budget of {} tokens leaves nothing beside {} sinks",
                              budget_tokens, sinks);
    }
}

int64_t EvictionConfig::budget(int64_t n_seen) const {
    if (budget_tokens > 0) return budget_tokens;
    const auto share = static_cast<int64_t>(std::ceil(budget_fraction * static_cast<double>(n_seen)));
    return std::max(share, sinks + 1);
}

void parse_kv_budget(std::string_view text, EvictionConfig& config) {
    const std::string s(text);
    size_t used = 0;
    double v = 0.0;
    try {
        v = std::stod(s, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != s.size() || s.empty() || !(v > 0.0)) {
        fail<InvalidArgument>(
            "--kv-budget '{}' is neither a number of tokens (>= 1) nor a fraction in (0, 1)", text);
    }
    if (v < 1.0) {
        config.budget_fraction = v;
        config.budget_tokens = 0;
    } else if (v == std::floor(v) && v < 1e15) {
        config.budget_tokens = static_cast<int64_t>(v);
        config.budget_fraction = 0.0;
    } else {
        fail<InvalidArgument>("--kv-budget '{}' tokens is not a whole number", text);
    }
}

KvEvictor::KvEvictor(const EvictionConfig& config, const KvLayout& layout)
    : config_(config), layout_(layout) {
    config_.validate();
    if (config_.score_mode() != KvScoreMode::None && !layout.attention_scores) {
        fail<InvalidArgument>("KV eviction policy {} needs a KV storage that keeps attention scores",
                              eviction_policy_name(config_.policy));
    }
}

bool KvEvictor::due(int64_t kv_tokens, int64_t n_seen) const {
    return config_.enabled() && kv_tokens > config_.budget(n_seen) + layout_.block_size;
}

std::vector<int32_t> KvEvictor::keep_best(std::span<const float> scores, int64_t keep,
                                          int64_t recent_from) {
    const auto n = static_cast<int64_t>(scores.size());
    recent_from = std::clamp<int64_t>(recent_from, 0, n);
    const int64_t n_best = std::clamp<int64_t>(keep - (n - recent_from), 0, recent_from);
    std::vector<int32_t> idx(static_cast<size_t>(recent_from));
    for (int64_t i = 0; i < recent_from; ++i) idx[i] = static_cast<int32_t>(i);
    auto better = [&](int32_t a, int32_t b) {
        return scores[a] != scores[b] ? scores[a] > scores[b] : a > b;
    };
    std::nth_element(idx.begin(), idx.begin() + n_best, idx.end(), better);
    idx.resize(static_cast<size_t>(n_best));
    std::sort(idx.begin(), idx.end());
    for (int64_t i = recent_from; i < n; ++i) idx.push_back(static_cast<int32_t>(i));
    return idx;
}

std::vector<KeepGroup> KvEvictor::plan(const KvStorage& storage, const BlockTable& table,
                                       int64_t n_seen) const {
    const int64_t n = table.n_tokens, keep = std::min(n, config_.budget(n_seen));
    const int64_t nh = layout_.n_kv_heads, bs = layout_.block_size;
    std::vector<KeepGroup> groups;
    if (config_.policy == EvictionPolicy::Window || config_.policy == EvictionPolicy::Sinks) {
        int64_t sinks = config_.policy == EvictionPolicy::Sinks ? std::min(config_.sinks, keep) : 0;
        int64_t cut = n - keep;  // the tokens dropped, right after the sinks
        if (storage.formats().k == KvFormat::Q4) {
            // Q4 keys are quantised per block and channel (kivi_keys.h): a key moved among
            // other keys is quantised again with them, and a sequence cut every block of
            // tokens would requantise its keys again and again. So the cut is whole blocks:
            // the sinks round up to a block, the cut down to blocks (up to block_size - 1
            // tokens over the budget stay), and every kept block stays as it is
            // (BlockManager::compact drops the others from the table, moving no row).
            sinks = std::min((sinks + bs - 1) / bs * bs, n);
            cut = std::max<int64_t>(0, (n - std::max(keep, sinks)) / bs * bs);
        }
        KeepGroup g;
        for (int64_t i = 0; i < sinks; ++i) g.indices.push_back(static_cast<int32_t>(i));
        for (int64_t i = sinks + cut; i < n; ++i) g.indices.push_back(static_cast<int32_t>(i));
        groups.push_back(std::move(g));
        return groups;
    }
    std::vector<int64_t> slots(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) slots[i] = int64_t{table.blocks[i / bs]} * bs + i % bs;
    std::vector<float> all(static_cast<size_t>(n * nh)), one(static_cast<size_t>(n));
    // The first tokens are kept as attention sinks by every policy but window (--kv-sinks 0
    // gives the policies as published).
    const int64_t sinks = std::min(config_.sinks, keep);
    auto pin_sinks = [&] {
        for (int64_t i = 0; i < sinks; ++i) one[i] = std::numeric_limits<float>::infinity();
    };
    for (int64_t l = 0; l < layout_.n_layers; ++l) {
        storage.read_scores(l, slots, all.data());
        if (config_.policy == EvictionPolicy::H2O) {
            for (int64_t h = 0; h < nh; ++h) {
                for (int64_t i = 0; i < n; ++i) one[i] = all[i * nh + h];
                pin_sinks();
                groups.push_back({static_cast<int32_t>(l), static_cast<int32_t>(h),
                                  keep_best(one, keep, n - keep / 2)});
            }
        } else {
            for (int64_t i = 0; i < n; ++i) {
                float sum = 0.0f;
                for (int64_t h = 0; h < nh; ++h) sum += all[i * nh + h];
                one[i] = sum;
            }
            pin_sinks();
            groups.push_back({static_cast<int32_t>(l), -1, keep_best(one, keep, n)});
        }
    }
    return groups;
}

}  // namespace vela
