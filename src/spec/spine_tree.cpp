#include "spec/spine_tree.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace vela::spec {

SpineTreeSizer::SpineTreeSizer(DraftTreeOptions options) : options_(options) {
    if (options.max_width < 1 || options.max_width > 64) {
        fail<InvalidArgument>("draft tree: width must be between 1 and 64, got {}",
                              options.max_width);
    }
    if (!(options.min_gain >= 0.0 && options.min_gain <= 1.0)) {
        fail<InvalidArgument>("draft tree: minimum gain must be in [0, 1], got {}",
                              options.min_gain);
    }
    counts_.resize(static_cast<size_t>(kMaxDepth * options.max_width));
}

void SpineTreeSizer::record(int32_t depth, int32_t n_tried, int32_t accepted_rank) {
    VELA_ASSERT(depth >= 1 && n_tried >= 0 && accepted_rank < n_tried);
    if (depth > kMaxDepth) return;
    n_tried = std::min(n_tried, options_.max_width);
    ++n_recorded_;
    if (accepted_rank > 0) ++n_sibling_accepted_;
    for (int32_t r = 0; r < n_tried; ++r) {
        Counts& c = counts_[static_cast<size_t>((depth - 1) * options_.max_width + r)];
        c.tried = kDecay * c.tried + 1.0;
        c.accepted = kDecay * c.accepted + (r == accepted_rank ? 1.0 : 0.0);
    }
}

double SpineTreeSizer::rate(int32_t depth, int32_t rank) const {
    if (depth < 1 || depth > kMaxDepth || rank < 0 || rank >= options_.max_width) return 0.0;
    const Counts& c = counts_[static_cast<size_t>((depth - 1) * options_.max_width + rank)];
    return (c.accepted + 1.0) / (c.tried + 2.0);
}

double SpineTreeSizer::expected_accepted(std::span<const int32_t> widths) const {
    // Accepted length >= d iff the spine reached depth d - 1 and one of depth d's children is
    // accepted: E = sum_d reach(d - 1) * (1 - prod_{r < w_d} (1 - a(d, r))).
    double e = 0.0, reach = 1.0;
    for (size_t i = 0; i < widths.size(); ++i) {
        const auto d = static_cast<int32_t>(i + 1);
        double miss = 1.0;
        for (int32_t r = 0; r < widths[i]; ++r) miss *= 1.0 - rate(d, r);
        e += reach * (1.0 - miss);
        reach *= rate(d, 0);
    }
    return e;
}

std::vector<int32_t> SpineTreeSizer::widths(int32_t depth, int32_t max_nodes) const {
    depth = std::clamp(depth, 0, kMaxDepth);
    const int32_t spare = std::max(0, max_nodes - depth);  // sibling nodes to hand out
    const int32_t most = options_.max_width - 1;           // siblings per depth
    // The spine's depth is given (the draft forwards are paid for), so E above splits into one
    // term per depth, and a depth's term depends only on its own sibling count s_d: a knapsack.
    // Exact dynamic programme over depths: best[b] = the largest net gain (expected accepted
    // tokens added by siblings, minus min_gain per sibling) of the depths so far using at most
    // b siblings. O(depth * spare * width) <= 64^3 steps; a greedy pick of the best marginal
    // gains would need gains falling with rank, which estimated rates need not do.
    const double lowest = std::numeric_limits<double>::lowest();
    std::vector<double> best(static_cast<size_t>(spare + 1), 0.0), next, gain;
    std::vector<int32_t> choice(static_cast<size_t>(depth * (spare + 1)), 0);
    double reach = 1.0;  // P(the spine reaches depth d - 1)
    for (int32_t d = 1; d <= depth; ++d) {
        gain.assign(static_cast<size_t>(most + 1), 0.0);
        double miss = 1.0 - rate(d, 0);  // P(reached, spine and siblings so far rejected)
        for (int32_t s = 1; s <= most; ++s) {
            gain[s] = gain[s - 1] + reach * miss * rate(d, s) - options_.min_gain;
            miss *= 1.0 - rate(d, s);
        }
        next.assign(best.size(), lowest);
        for (int32_t b = 0; b <= spare; ++b) {
            for (int32_t s = 0; s <= std::min(most, b); ++s) {
                const double v = best[static_cast<size_t>(b - s)] + gain[static_cast<size_t>(s)];
                if (v > next[static_cast<size_t>(b)]) {  // ties: fewer siblings here
                    next[static_cast<size_t>(b)] = v;
                    choice[static_cast<size_t>((d - 1) * (spare + 1) + b)] = s;
                }
            }
        }
        best.swap(next);
        reach *= rate(d, 0);
    }
    std::vector<int32_t> w(static_cast<size_t>(depth), 1);
    for (int32_t d = depth, b = spare; d >= 1; --d) {
        const int32_t s = choice[static_cast<size_t>((d - 1) * (spare + 1) + b)];
        w[static_cast<size_t>(d - 1)] += s;
        b -= s;
    }
    return w;
}

int32_t append_spine_level(int32_t spine, std::span<const float> scores, float floor, int32_t width,
                           int32_t parent, Draft& draft) {
    const auto index = static_cast<int32_t>(draft.size());
    draft.tokens.push_back(spine);
    draft.parents.push_back(parent);
    // The best width - 1 others, kept sorted (best first); width is small, scores are a vocab.
    std::vector<int32_t> top;
    const auto better = [&](int32_t a, int32_t b) {
        return scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)] ||
               (scores[static_cast<size_t>(a)] == scores[static_cast<size_t>(b)] && a < b);
    };
    const auto n = static_cast<size_t>(std::max(0, width - 1));
    for (size_t t = 0; t < scores.size() && n > 0; ++t) {
        const auto id = static_cast<int32_t>(t);
        if (id == spine || !(scores[t] > floor)) continue;
        if (top.size() == n && !better(id, top.back())) continue;
        if (top.size() == n) top.pop_back();
        top.insert(std::upper_bound(top.begin(), top.end(), id, better), id);
    }
    for (int32_t id : top) {
        draft.tokens.push_back(id);
        draft.parents.push_back(parent);
    }
    return index;
}

void record_outcome(const Draft& draft, std::span<const int32_t> tokens, size_t base,
                    SpineTreeSizer& sizer) {
    const auto parent = [&](int32_t i) {
        return draft.is_tree() ? draft.parents[static_cast<size_t>(i)] : i - 1;
    };
    const auto k = static_cast<int32_t>(draft.size());
    int32_t node = -1;
    for (size_t pos = base, depth = 1; pos < tokens.size(); ++pos, ++depth) {
        // The children of `node` are tried in index order; the one matching the sequence's
        // token was accepted (a rejected child's token is never the one drawn after it).
        int32_t rank = 0, hit = -1;
        for (int32_t c = node + 1; c < k && hit < 0; ++c) {
            if (parent(c) != node) continue;
            if (draft.tokens[static_cast<size_t>(c)] == tokens[pos]) {
                hit = c;
            } else {
                ++rank;
            }
        }
        if (hit < 0 && rank == 0) return;  // a leaf: the bonus token
        sizer.record(static_cast<int32_t>(depth), hit < 0 ? rank : rank + 1, hit < 0 ? -1 : rank);
        if (hit < 0) return;
        node = hit;
    }
}

}  // namespace vela::spec
