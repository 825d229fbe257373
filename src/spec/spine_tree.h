#pragma once
// Token trees from a draft model, shaped by acceptance statistics (after Sequoia, Chen et al.
// 2024). DraftModelDrafter drafts its greedy chain (the "spine", one draft forward per depth)
// and adds, at each depth, the next-best tokens of the same draft distribution as siblings of
// the spine node (leaves). Siblings cost the drafter nothing (the distribution is computed
// anyway) and the target one verification row each. Every candidate is a deterministic
// function of the context, so the verifier's multi-candidate rule with one-hot q keeps the
// target's distribution exactly, for any sampling settings (verifier.h).
//
// How many siblings each depth gets comes from running acceptance rates: a(d, r) = P(the child
// of rank r at depth d is accepted | its parent was reached and ranks < r were rejected).
#include <cstdint>
#include <span>
#include <vector>

#include "spec/drafter.h"

namespace vela::spec {

struct DraftTreeOptions {
    int32_t max_width = 1;  // children per depth at most (1: chains, no trees)
    // A sibling is drafted only when it adds at least this many expected accepted tokens: the
    // price of its verification row, in tokens (0: fill the node budget). 0.2 from the 2-core
    // CPU (docs/benchmarks.md): a row costs 0.1-0.2 of a decode step, a step of the Qwen 0.5B
    // -> 1.5B chain ~3.7 decode steps for ~5.7 tokens, so a row is worth ~0.15 * 5.7 / 3.7 =
    // 0.2 tokens. Where rows are nearly free (a GPU), far less.
    double min_gain = 0.2;
};

class SpineTreeSizer {
  public:
    static constexpr int32_t kMaxDepth = 64;
    // Each rate forgets old outcomes at this rate per new outcome (~50 recent ones count).
    static constexpr double kDecay = 0.98;

    explicit SpineTreeSizer(DraftTreeOptions options);

    // One depth of a verified tree: ranks 0 .. n_tried - 1 were tried in order, `accepted_rank`
    // was accepted (the last tried), or none was (-1). depth >= 1.
    void record(int32_t depth, int32_t n_tried, int32_t accepted_rank);
    // a(depth, rank), from the counts with a uniform prior (0.5 before any outcome).
    double rate(int32_t depth, int32_t rank) const;
    // Children for depths 1..depth (widths[d - 1] >= 1: the spine node and its siblings) with
    // at most max_nodes nodes in all.
    std::vector<int32_t> widths(int32_t depth, int32_t max_nodes) const;
    // Expected accepted tokens of a spine tree with these widths under the current rates.
    double expected_accepted(std::span<const int32_t> widths) const;

    const DraftTreeOptions& options() const { return options_; }
    // Outcomes recorded, and of those, how many accepted a sibling (rank > 0): logs, tests.
    int64_t n_recorded() const { return n_recorded_; }
    int64_t n_sibling_accepted() const { return n_sibling_accepted_; }

  private:
    struct Counts {
        double tried = 0;
        double accepted = 0;
    };
    DraftTreeOptions options_;
    std::vector<Counts> counts_;  // [(depth - 1) * max_width + rank]
    int64_t n_recorded_ = 0;
    int64_t n_sibling_accepted_ = 0;
};

// Appends one depth of a spine tree to `draft`: `spine` as a child of `parent` (-1: of the
// sequence), then up to width - 1 siblings: the best-scoring other tokens with a score above
// `floor`, best first, ties by id. Returns the spine node's index. scores: one per token.
int32_t append_spine_level(int32_t spine, std::span<const float> scores, float floor, int32_t width,
                           int32_t parent, Draft& draft);

// The outcome of a verified draft for the sizer: walks the tokens the sequence holds after
// verification from `base` (its length before the draft) down the draft (a chain or a tree)
// and records, at each depth reached, which ranks were tried and which was accepted.
void record_outcome(const Draft& draft, std::span<const int32_t> tokens, size_t base,
                    SpineTreeSizer& sizer);

}  // namespace vela::spec
