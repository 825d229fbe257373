#include "sampling/logits_processors.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "sampling/fast_exp.h"

namespace vela::sampling {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Max over independent lanes: a single running max is one long dependency chain. Written as
// `acc < x ? x : acc` so a NaN x never wins.
template <class T, class Get>
float lane_max(std::span<const T> v, Get get) {
    constexpr size_t kLanes = 16;
    float acc[kLanes];
    std::fill(std::begin(acc), std::end(acc), kNegInf);
    size_t i = 0;
    for (; i + kLanes <= v.size(); i += kLanes)
        for (size_t j = 0; j < kLanes; ++j)
            acc[j] = acc[j] < get(v[i + j]) ? get(v[i + j]) : acc[j];
    float m = kNegInf;
    for (float a : acc) m = m < a ? a : m;
    for (; i < v.size(); ++i) m = m < get(v[i]) ? get(v[i]) : m;
    return m;
}

float max_logit(const Candidates& c) {
    if (c.sorted) return c.items.front().logit;
    return lane_max(std::span<const Candidate>(c.items),
                    [](const Candidate& x) { return x.logit; });
}

// w[i] = exp((logit_i - m) * inv_t): a branch-free loop the compiler vectorises.
void exp_weights(const Candidates& c, float m, float inv_t, std::vector<float>& w) {
    w.resize(c.items.size());
    const Candidate* x = c.items.data();
    for (size_t i = 0; i < w.size(); ++i) w[i] = exp_nonpositive((x[i].logit - m) * inv_t);
}

// Double sum over 8 interleaved lanes: a fixed association, so still the same on every platform.
double sum_double(std::span<const float> w) {
    double lane[8] = {};
    size_t i = 0;
    for (; i + 8 <= w.size(); i += 8)
        for (size_t j = 0; j < 8; ++j) lane[j] += w[i + j];
    double z = 0.0;
    for (double l : lane) z += l;
    for (; i < w.size(); ++i) z += w[i];
    return z;
}

// Below this many candidates a full sort is cheaper than the bucket passes.
constexpr size_t kSortLimit = 1024;

// Buckets of logit distance below the maximum, 1/32 nat wide; everything past 32 nats (weight
// < 1e-13) shares the last one. Rounding is monotone, so a better-ranked token never lands in a
// later bucket than a worse one.
constexpr int kBuckets = 1025;
constexpr float kBucketsPerNat = 32.0f;

int bucket_of(float logit, float m) {
    const float d = (m - logit) * kBucketsPerNat;
    return d < static_cast<float>(kBuckets - 1) ? static_cast<int>(d) : kBuckets - 1;
}

// top_p over a large unsorted (id-ordered) set without sorting it: a histogram of probability
// mass by logit bucket finds the bucket where the nucleus ends; only that bucket is sorted to
// find the last kept token, and the survivors stay in id order.
void top_p_by_buckets(Candidates& c, float p) {
    const float m = max_logit(c);
    std::vector<float>& w = c.scratch;
    exp_weights(c, m, 1.0f, w);
    std::vector<double> bucket_mass(kBuckets, 0.0);
    for (size_t i = 0; i < w.size(); ++i)
        bucket_mass[static_cast<size_t>(bucket_of(c.items[i].logit, m))] += w[i];
    const double target = static_cast<double>(p) * sum_double(w);
    double before = 0.0;  // mass of the buckets ranked above the crossing one
    int crossing = 0;
    while (crossing < kBuckets - 1 && before + bucket_mass[static_cast<size_t>(crossing)] < target)
        before += bucket_mass[static_cast<size_t>(crossing++)];
    std::vector<Candidate> edge;
    for (const Candidate& x : c.items)
        if (bucket_of(x.logit, m) == crossing) edge.push_back(x);
    if (edge.empty()) return;  // unreachable for p < 1 short of rounding: keep everything
    std::sort(edge.begin(), edge.end(), ranks_before);
    Candidate last = edge.back();  // rounding never reached the target: keep the whole bucket
    for (const Candidate& x : edge) {
        before += exp_nonpositive(x.logit - m);  // the same weights as the buckets summed
        if (before >= target) {
            last = x;
            break;
        }
    }
    // Branch-free compaction (keeps id order): whether a token is in the nucleus is a coin flip
    // for the branch predictor when the nucleus is large.
    size_t kept = 0;
    for (const Candidate& x : c.items) {
        c.items[kept] = x;
        kept += static_cast<size_t>((x.logit > last.logit) |
                                    ((x.logit == last.logit) & (x.token <= last.token)));
    }
    c.items.resize(kept);
}

}  // namespace

void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     const SamplingParams& params, std::vector<int32_t>& counts) {
    if (!params.penalties_enabled() || history.empty()) return;
    for_each_penalised(history, params, logits.size(), counts, [&](int32_t t, int32_t count) {
        float& l = logits[static_cast<size_t>(t)];
        l = penalised_logit(l, count, params.repetition_penalty, params.frequency_penalty,
                            params.presence_penalty);
    });
}

int32_t argmax(std::span<const float> logits) {
    // Two passes, the first one vectorisable; finding the first index that holds the maximum
    // gives ties to the lowest id. NaN is never the maximum.
    const float m = lane_max(logits, [](float x) { return x; });
    if (!(m > kNegInf)) return -1;
    return static_cast<int32_t>(std::find(logits.begin(), logits.end(), m) - logits.begin());
}

void all_candidates(std::span<const float> logits, Candidates& out) {
    out.items.clear();
    out.items.reserve(logits.size());
    for (size_t i = 0; i < logits.size(); ++i)
        if (logits[i] > kNegInf) out.items.push_back({static_cast<int32_t>(i), logits[i]});
    out.sorted = false;
}

namespace {

// Offers one token to the bounded min-heap of top_k (front = worst kept).
void offer(std::vector<Candidate>& heap, size_t keep, Candidate x) {
    auto worse_first = [](const Candidate& a, const Candidate& b) { return ranks_before(a, b); };
    if (!(x.logit > kNegInf)) return;  // masked or NaN
    if (heap.size() < keep) {
        heap.push_back(x);
        std::push_heap(heap.begin(), heap.end(), worse_first);
    } else if (ranks_before(x, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), worse_first);
        heap.back() = x;
        std::push_heap(heap.begin(), heap.end(), worse_first);
    }
}

}  // namespace

void top_k(std::span<const float> logits, int32_t k, Candidates& out) {
    VELA_ASSERT(k > 0);
    const size_t keep = std::min(static_cast<size_t>(k), logits.size());
    out.items.clear();
    out.items.reserve(keep);
    // Once the heap is full, a block of 16 logits whose (vectorisable) max is below the worst
    // kept one is skipped whole: for k << n almost every block, so this runs near memory speed.
    constexpr size_t kBlock = 16;
    const float* v = logits.data();
    size_t i = 0;
    for (; i + kBlock <= logits.size(); i += kBlock) {
        if (out.items.size() == keep) {
            float block_max = kNegInf;
            for (size_t j = 0; j < kBlock; ++j)
                block_max = block_max < v[i + j] ? v[i + j] : block_max;
            if (block_max < out.items.front().logit) continue;
        }
        for (size_t j = i; j < i + kBlock; ++j)
            offer(out.items, keep, {static_cast<int32_t>(j), v[j]});
    }
    for (; i < logits.size(); ++i) offer(out.items, keep, {static_cast<int32_t>(i), v[i]});
    std::sort(out.items.begin(), out.items.end(), ranks_before);
    out.sorted = true;
}

void top_p(Candidates& c, float p) {
    if (p >= 1.0f || c.items.size() <= 1) return;
    if (!c.sorted && c.items.size() > kSortLimit) {
        top_p_by_buckets(c, p);
        return;
    }
    if (!c.sorted) {
        std::sort(c.items.begin(), c.items.end(), ranks_before);
        c.sorted = true;
    }
    const float m = c.items.front().logit;
    exp_weights(c, m, 1.0f, c.scratch);
    const double target = static_cast<double>(p) * sum_double(c.scratch);
    double cum = 0.0;
    for (size_t i = 0; i < c.items.size(); ++i) {
        cum += c.scratch[i];
        if (cum >= target) {
            c.items.resize(i + 1);
            return;
        }
    }
}

void min_p(Candidates& c, float p) {
    if (p <= 0.0f || c.items.empty()) return;
    // p_i >= p * p_max  <=>  logit_i >= max + log(p): no exponentials needed.
    const double threshold = static_cast<double>(max_logit(c)) + std::log(static_cast<double>(p));
    auto below = [threshold](const Candidate& x) {
        return static_cast<double>(x.logit) < threshold;
    };
    if (c.sorted) {
        auto cut = std::find_if(c.items.begin(), c.items.end(), below);
        c.items.erase(cut, c.items.end());
    } else {
        std::erase_if(c.items, below);  // keeps id order
    }
}

bool truncate_ranked(std::span<const Candidate> ranked, double lse, float top_p, float min_p,
                     Candidates& out) {
    size_t n = 0;  // listed entries; fewer than the list holds: the row has no more
    while (n < ranked.size() && ranked[n].token >= 0) ++n;
    const bool whole = n < ranked.size();
    if (n == 0 || !std::isfinite(lse)) return false;
    const float m = ranked.front().logit;
    size_t keep = n;
    bool complete = whole;  // ranked[0, keep) holds every survivor so far
    if (top_p < 1.0f) {
        const double target = static_cast<double>(top_p) * std::exp(lse - static_cast<double>(m));
        double cum = 0.0;
        size_t i = 0;
        while (i < n && (cum += exp_nonpositive(ranked[i].logit - m)) < target) ++i;
        if (i < n) {
            keep = i + 1;
            complete = true;
        }
    }
    if (min_p > 0.0f) {
        const double threshold = static_cast<double>(m) + std::log(static_cast<double>(min_p));
        size_t i = 0;
        while (i < keep && static_cast<double>(ranked[i].logit) >= threshold) ++i;
        complete = complete || i < keep;  // the ranked rest lies below the threshold too
        keep = i;
    }
    if (!complete) return false;
    out.items.assign(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(keep));
    // top_p sorts a row of <= kSortLimit candidates; otherwise both keep all_candidates' order.
    out.sorted = top_p < 1.0f && whole && n <= kSortLimit;
    if (!out.sorted) {
        std::sort(out.items.begin(), out.items.end(),
                  [](const Candidate& a, const Candidate& b) { return a.token < b.token; });
    }
    return true;
}

double softmax(const Candidates& c, float temperature, std::vector<float>& weights) {
    VELA_ASSERT(temperature > 0.0f && !c.items.empty());
    exp_weights(c, max_logit(c), 1.0f / temperature, weights);
    return sum_double(weights);
}

}  // namespace vela::sampling
