#pragma once
// Internal: the tiled online-softmax kernel, written once against an `Ops` policy of vector
// primitives (row dots, weighted row sums, scale, exp-and-sum, F16 decode, and the int8 dots
// and sums that dequantise Q8 rows in registers). K and V formats are independent template
// arguments, chosen at one dispatch point (run_attention). attention_scalar.cpp
// and attention_avx2.cpp each instantiate it; the AVX2 file compiles it under a target pragma, so
// everything here has internal linkage: the linker must never merge an AVX2 copy into the
// scalar path.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "attention/attention_work.h"
#include "kv/kv_dtype.h"
#include "kv/kv_quant.h"

namespace vela::attention_detail {
namespace {

// Keys [begin, end) of a tile in one block of K in Q4 (per channel, kv/kivi_keys.h). A query
// reads the block's fp16 keys (SideTile::rows) while it is open, or, if it was closed by this
// step's write, when the query's KV index is before the block's last one (closed_end); else its
// codes, dequantised once per tile with its channels' scales and minima (SideTile::code_rows).
struct KeySegment {
    int64_t begin = 0, end = 0;
    bool open = false;
    int64_t closed_end = -1;
};

// One tile of K or V rows of one KV head. Float formats: `rows` point at float rows (F32 in the
// cache, F16/BF16 decoded once per tile into `decoded` for the whole GQA group). Q8 / Q4: `q8` /
// `q4` point at the rows in the cache and `scales` holds each row's scales (and Q4's minima) as
// float; the Ops dequantise in registers. K in Q4: `segments`, `channels` (a block's scales and
// minima) and `code_rows` (its codes dequantised once for the whole GQA group, in `codes`), and
// `rows` point at the decoded fp16 keys of blocks that have them.
struct SideTile {
    int64_t group = kKvGroup;  // values per scale of a Q8 / Q4 row (the side's)
    std::vector<float> decoded, codes, scales, channels;
    std::vector<const float*> rows, code_rows;
    std::vector<const int8_t*> q8;
    std::vector<const uint8_t*> q4;
    std::vector<KeySegment> segments;

    explicit SideTile(int64_t head_dim)
        : decoded(static_cast<size_t>(kKeyTile * head_dim)),
          scales(static_cast<size_t>(kKeyTile * 2 * kv_groups(head_dim, kKvGroup))),  // most
          rows(kKeyTile),
          q8(kKeyTile),
          q4(kKeyTile) {}
};

struct TileScratch {
    std::vector<float> scores, acc, max, sum;
    SideTile k, v;
    std::vector<int64_t> keys;  // a token tree row's visible keys, in order

    TileScratch(int64_t vectors, int64_t head_dim)
        : scores(kKeyTile),
          acc(static_cast<size_t>(vectors * head_dim)),
          max(static_cast<size_t>(vectors)),
          sum(static_cast<size_t>(vectors)),
          k(head_dim),
          v(head_dim) {}
};

// K in Q4 (per channel): keys [first, first + n) of one KV head, split at block boundaries.
template <class Ops>
void load_kivi_keys(const KvSideView& side, const AttentionSeq& seq, int64_t kv_head, int64_t first,
                    int64_t n, SideTile& t, const int64_t* keys) {
    const int64_t bs = side.block_size, hd = side.head_dim;
    t.channels.resize(static_cast<size_t>(2 * hd));
    t.codes.resize(static_cast<size_t>(kKeyTile * hd));
    t.code_rows.resize(kKeyTile);
    t.segments.clear();
    const KeyResidual* open = nullptr;
    int64_t index = -1;  // block index in the sequence's table
    for (int64_t j = 0; j < n; ++j) {
        const int64_t pos = keys != nullptr ? keys[first + j] : first + j;
        const int64_t block = seq.block_table[pos / bs];
        if (pos / bs != index) {
            index = pos / bs;
            open = side.open_keys(block);
            KeySegment g;
            g.begin = j;
            g.open = open != nullptr && !open->closed;
            g.closed_end = open != nullptr && open->closed ? index * bs + bs - 1 : -1;
            if (!g.open) {
                Ops::f16_to_f32(side.channel_scales(block, kv_head), t.channels.data(), 2 * hd);
            }
            t.segments.push_back(g);
        }
        KeySegment& g = t.segments.back();
        g.end = j + 1;
        if (!g.open) {
            float* codes = t.codes.data() + j * hd;
            const auto* q = reinterpret_cast<const uint8_t*>(side.row(block, kv_head, pos % bs));
            Ops::q4_channels_to_f32(q, t.channels.data(), hd, codes);
            t.code_rows[j] = codes;
        }
        if (open != nullptr) {
            float* decoded = t.decoded.data() + j * hd;
            Ops::f16_to_f32(open->row(kv_head, pos % bs, bs, hd), decoded, hd);
            t.rows[j] = decoded;
        } else {
            t.rows[j] = nullptr;
        }
    }
}

// Loads the rows of keys [first, first + n) of one KV head of one side, following the block
// table; with `keys`, key i is the sequence's KV row keys[i] (a token tree row's visible keys).
template <class Ops, class T>
void load_side(const KvSideView& side, const AttentionSeq& seq, int64_t kv_head, int64_t first,
               int64_t n, SideTile& t, const int64_t* keys = nullptr) {
    const int64_t bs = side.block_size, hd = side.head_dim, per_row = side.scales_per_row;
    t.group = side.group;
    if constexpr (std::is_same_v<T, KvQ4>) {
        if (side.per_channel) return load_kivi_keys<Ops>(side, seq, kv_head, first, n, t, keys);
    }
    for (int64_t j = 0; j < n; ++j) {
        const int64_t pos = keys != nullptr ? keys[first + j] : first + j;
        const int64_t block = seq.block_table[pos / bs];
        const std::byte* row = side.row(block, kv_head, pos % bs);
        if constexpr (std::is_same_v<T, float>) {
            t.rows[j] = reinterpret_cast<const float*>(row);
        } else if constexpr (std::is_same_v<T, KvQ8> || std::is_same_v<T, KvQ4>) {
            if constexpr (std::is_same_v<T, KvQ8>) {
                t.q8[j] = reinterpret_cast<const int8_t*>(row);
            } else {
                t.q4[j] = reinterpret_cast<const uint8_t*>(row);
            }
            Ops::f16_to_f32(side.scales(block, kv_head, pos % bs), &t.scales[j * per_row], per_row);
        } else {
            float* decoded = t.decoded.data() + j * hd;
            const auto* bits = reinterpret_cast<const uint16_t*>(row);
            if constexpr (std::is_same_v<T, KvF16>) {
                Ops::f16_to_f32(bits, decoded, hd);
            } else {
                static_assert(std::is_same_v<T, KvBF16>);
                Ops::bf16_to_f32(bits, decoded, hd);
            }
            t.rows[j] = decoded;
        }
    }
}

// out[j] = q . key j for tile keys [lo, hi], the query at KV index `qkv` (K in Q4: which form
// of a block it reads depends on qkv, KeySegment).
template <class Ops, class TK>
void key_dots(const float* q, TileScratch& s, int64_t lo, int64_t hi, int64_t hd, int64_t qkv,
              float* out) {
    if constexpr (std::is_same_v<TK, KvQ8>) {
        const int64_t group = s.k.group;
        Ops::dot_rows_q8(q, s.k.q8.data() + lo, s.k.scales.data() + lo * kv_groups(hd, group),
                         hi - lo + 1, hd, group, out + lo);
    } else if constexpr (std::is_same_v<TK, KvQ4>) {
        for (const KeySegment& g : s.k.segments) {
            const int64_t a = std::max(lo, g.begin), b = std::min(hi + 1, g.end);
            if (a >= b) continue;
            const bool fp16 = g.open || qkv < g.closed_end;
            Ops::dot_rows(q, (fp16 ? s.k.rows : s.k.code_rows).data() + a, b - a, hd, out + a);
        }
    } else {
        Ops::dot_rows(q, s.k.rows.data() + lo, hi - lo + 1, hd, out + lo);
    }
}

// Folds tile keys [lo, hi] into one query vector's running (max, sum, acc); the query sits at
// KV index qkv.
template <class Ops, class TK, class TV>
void fold_keys(const float* q, TileScratch& s, int64_t lo, int64_t hi, float scale, int64_t hd,
               int64_t qkv, float* acc, float& max, float& sum) {
    float* scores = s.scores.data();
    const int64_t n = hi - lo + 1, group = s.v.group, groups = kv_groups(hd, group);
    float tile_max = -std::numeric_limits<float>::infinity();
    key_dots<Ops, TK>(q, s, lo, hi, hd, qkv, scores);
    for (int64_t j = lo; j <= hi; ++j) {
        scores[j] *= scale;
        tile_max = std::max(tile_max, scores[j]);
    }
    const float new_max = std::max(max, tile_max);
    const float correction = std::exp(max - new_max);  // 0 on the first tile (max = -inf)
    const float tile_sum = Ops::exp_shift_sum(scores + lo, n, new_max);
    sum = sum * correction + tile_sum;
    Ops::scale(acc, correction, hd);
    if constexpr (std::is_same_v<TV, KvQ8>) {
        Ops::accumulate_q8(scores + lo, s.v.q8.data() + lo, s.v.scales.data() + lo * groups, n, acc,
                           hd, group);
    } else if constexpr (std::is_same_v<TV, KvQ4>) {
        Ops::accumulate_q4(scores + lo, s.v.q4.data() + lo, s.v.scales.data() + lo * 2 * groups, n,
                           acc, hd, group);
    } else {
        Ops::accumulate(scores + lo, s.v.rows.data() + lo, n, acc, hd);
    }
    max = new_max;
}

// One work item: query rows [row_begin, row_end) x the heads of one KV group. Key tiles sit on
// a fixed grid (multiples of kKeyTile from position 0) and each query vector only folds its own
// valid keys, so its result does not depend on which other rows share the work item. With
// `stats`, each query vector's final (max, sum) goes to stats[2 * (row * n_heads + head)].
template <class Ops, class TK, class TV>
void attend(const PagedAttentionParams& p, const AttentionWork& w, TileScratch& s, float* stats) {
    const AttentionSeq& seq = p.seqs[static_cast<size_t>(w.seq)];
    const int64_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim;
    const int64_t vectors = (w.row_end - w.row_begin) * group;
    const int64_t pos0 = seq.kv_len - seq.q_len;  // position of query row 0
    std::fill_n(s.acc.begin(), vectors * hd, 0.0f);
    std::fill_n(s.max.begin(), vectors, -std::numeric_limits<float>::infinity());
    std::fill_n(s.sum.begin(), vectors, 0.0f);

    // A token tree row (its own work item) sees the keys before the tree and its ancestors in
    // the tree, itself last: laid out as a contiguous list, they are exactly the keys it would
    // see decoded alone, tiled on the same grid, so its result is the same bit for bit.
    // A sparse row (self-speculative drafting) sees the first sparse_sinks keys and its last
    // sparse_window ones, laid out the same way.
    const int64_t* keys = nullptr;
    int64_t tree_pos = -1;  // the row's index in that list
    if (seq.tree_mask != nullptr) {
        const uint8_t* visible = seq.tree_mask + w.row_begin * seq.q_len;
        s.keys.resize(static_cast<size_t>(pos0));
        for (int64_t i = 0; i < pos0; ++i) s.keys[i] = i;
        for (int64_t j = 0; j <= w.row_begin; ++j) {
            if (visible[j] != 0) s.keys.push_back(pos0 + j);
        }
    } else if (seq.sparse_window > 0) {
        const int64_t own = pos0 + w.row_begin;
        const int64_t recent = std::max<int64_t>(0, own - seq.sparse_window + 1);
        s.keys.clear();
        for (int64_t i = 0; i < std::min(seq.sparse_sinks, recent); ++i) s.keys.push_back(i);
        for (int64_t i = recent; i <= own; ++i) s.keys.push_back(i);
    }
    if (seq.tree_mask != nullptr || seq.sparse_window > 0) {
        keys = s.keys.data();
        tree_pos = static_cast<int64_t>(s.keys.size()) - 1;
    }
    const int64_t last_key = keys != nullptr ? tree_pos : pos0 + w.row_end - 1;
    const int64_t first_key =
        p.window > 0 ? std::max<int64_t>(0, pos0 + w.row_begin - p.window + 1) : 0;
    for (int64_t t0 = first_key / kKeyTile * kKeyTile; t0 <= last_key; t0 += kKeyTile) {
        const int64_t n = std::min(kKeyTile, last_key + 1 - t0);
        load_side<Ops, TK>(p.kv.k, seq, w.kv_head, t0, n, s.k, keys);
        load_side<Ops, TV>(p.kv.v, seq, w.kv_head, t0, n, s.v, keys);
        for (int64_t m = 0; m < vectors; ++m) {
            const int64_t row = w.row_begin + m / group;
            const int64_t pos = keys != nullptr ? tree_pos : pos0 + row;
            const int64_t lo = p.window > 0 ? std::max(t0, pos - p.window + 1) - t0 : 0;
            const int64_t hi = std::min(pos, t0 + n - 1) - t0;
            if (lo > hi) continue;
            const float* q =
                p.q + ((seq.q_begin + row) * p.n_heads + w.kv_head * group + m % group) * hd;
            fold_keys<Ops, TK, TV>(q, s, lo, hi, p.scale, hd, pos0 + row, &s.acc[m * hd], s.max[m],
                                   s.sum[m]);
        }
    }
    for (int64_t m = 0; m < vectors; ++m) {
        const int64_t row = w.row_begin + m / group;
        const int64_t vec = (seq.q_begin + row) * p.n_heads + w.kv_head * group + m % group;
        float* out = p.out + vec * hd;
        const float inv = 1.0f / s.sum[m];
        for (int64_t d = 0; d < hd; ++d) out[d] = s.acc[m * hd + d] * inv;
        if (stats != nullptr) {
            stats[2 * vec] = s.max[m];
            stats[2 * vec + 1] = s.sum[m];
        }
    }
}

// The scores pass (p.kv_scores, for the eviction policies): the softmax weight each recorded
// query row gives each key, from the row's final (max, sum) in `stats`, added over the query
// heads of KV head `kv_head` into the storage's per-token scores. Sequences are visited in
// order by one thread per KV head, so sequences that share blocks (prefix cache, fork) add
// into the same scores without a race.
template <class Ops, class TK>
void score_keys(const PagedAttentionParams& p, int64_t kv_head, const float* stats,
                TileScratch& s) {
    const int64_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim, bs = p.block_size;
    const bool last = p.kv_scores == KvScoreMode::Last;
    for (const AttentionSeq& seq : p.seqs) {
        if (seq.q_len == 0) continue;
        auto score = [&](int64_t key) -> float& {
            const int64_t block = seq.block_table[key / bs];
            return p.kv.scores[(block * p.n_kv_heads + kv_head) * bs + key % bs];
        };
        if (last) {
            for (int64_t key = 0; key < seq.kv_len; ++key) score(key) = 0.0f;
        }
        const int64_t pos0 = seq.kv_len - seq.q_len;
        const int64_t row_begin = last ? seq.q_len - 1 : 0;
        const int64_t last_key = seq.kv_len - 1;
        const int64_t first_key =
            p.window > 0 ? std::max<int64_t>(0, pos0 + row_begin - p.window + 1) : 0;
        for (int64_t t0 = first_key / kKeyTile * kKeyTile; t0 <= last_key; t0 += kKeyTile) {
            const int64_t n = std::min(kKeyTile, last_key + 1 - t0);
            load_side<Ops, TK>(p.kv.k, seq, kv_head, t0, n, s.k);
            for (int64_t row = row_begin; row < seq.q_len; ++row) {
                const int64_t pos = pos0 + row;
                const int64_t lo = p.window > 0 ? std::max(t0, pos - p.window + 1) - t0 : 0;
                const int64_t hi = std::min(pos, t0 + n - 1) - t0;
                if (lo > hi) continue;
                for (int64_t g = 0; g < group; ++g) {
                    const int64_t vec = (seq.q_begin + row) * p.n_heads + kv_head * group + g;
                    const float* q = p.q + vec * hd;
                    key_dots<Ops, TK>(q, s, lo, hi, hd, pos, s.scores.data());
                    const float max = stats[2 * vec], inv = 1.0f / stats[2 * vec + 1];
                    for (int64_t j = lo; j <= hi; ++j) {
                        score(t0 + j) += std::exp(s.scores[j] * p.scale - max) * inv;
                    }
                }
            }
        }
    }
}

template <class Ops, class TK, class TV>
void run_typed(const PagedAttentionParams& p, std::span<const AttentionWork> work,
               ThreadPool& pool) {
    const int64_t group = p.n_heads / p.n_kv_heads;
    int64_t max_vectors = 1;
    for (const AttentionWork& w : work)
        max_vectors = std::max(max_vectors, (w.row_end - w.row_begin) * group);
    std::vector<float> stats;
    if (p.kv_scores != KvScoreMode::None) {
        int64_t n_rows = 0;
        for (const AttentionSeq& seq : p.seqs) n_rows = std::max(n_rows, seq.q_begin + seq.q_len);
        stats.resize(static_cast<size_t>(2 * n_rows * p.n_heads));
    }
    float* stats_out = stats.empty() ? nullptr : stats.data();
    // Work items differ in cost (context lengths vary), so threads take them one at a time.
    std::atomic<size_t> next{0};
    pool.run([&](int, int) {
        std::optional<TileScratch> scratch;
        for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < work.size();) {
            if (!scratch) scratch.emplace(max_vectors, p.head_dim);
            attend<Ops, TK, TV>(p, work[i], *scratch, stats_out);
        }
    });
    if (stats.empty()) return;
    std::atomic<int64_t> next_head{0};
    pool.run([&](int, int) {
        std::optional<TileScratch> scratch;
        for (int64_t h; (h = next_head.fetch_add(1, std::memory_order_relaxed)) < p.n_kv_heads;) {
            if (!scratch) scratch.emplace(1, p.head_dim);
            score_keys<Ops, TK>(p, h, stats_out, *scratch);
        }
    });
}

template <class Ops>
void run_attention(const PagedAttentionParams& p, std::span<const AttentionWork> work,
                   ThreadPool& pool) {
    if (p.kv.k.format == KvFormat::Q4 && !p.kv.k.per_channel) {
        fail<InvalidArgument>("attention: 4-bit keys must be stored per channel (KIVI)");
    }
    if (p.kv.v.per_channel) fail<InvalidArgument>("attention: values are never per channel");
    visit_kv_format(p.kv.k.format, [&](auto tk) {
        visit_kv_format(p.kv.v.format, [&](auto tv) {
            run_typed<Ops, decltype(tk), decltype(tv)>(p, work, pool);
        });
    });
}

}  // namespace
}  // namespace vela::attention_detail
