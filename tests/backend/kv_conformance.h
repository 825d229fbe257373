#pragma once
// The KV conformance fixture (test_backend_ops_kv*.cpp): KV formats, sequences placed on
// shuffled blocks of a NaN-poisoned pool, their batches, float64 references of stored rows, and
// the BackendKvOps fixture whose checks the test files define.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "../common/kv_quant_reference.h"
#include "backend_conformance.h"
#include "reference_dequant.h"

namespace vela::test {


// K and V formats: each format for both, and 4-bit V (which has no 4-bit K yet) beside Q8 K,
// also in groups of 64 and 128 (--kv-quant-group). FP8 is the CUDA backend's only (the CPU
// refuses it by name).
inline const KvFormats kFormats[] = {KvFormat::F32,
                              KvFormat::F16,
                              KvFormat::BF16,
                              KvFormat::Q8,
                              {KvFormat::Q8, KvFormat::Q4},
                              {KvFormat::Q8, KvFormat::Q4, 64},
                              {KvFormat::Q8, KvFormat::Q8, 128},
                              KvFormat::FP8};

inline std::string name_of(KvFormats f) {
    std::string s = f.v == f.k ? fmt::format("{}", kv_format_name(f.k))
                               : fmt::format("{}/{}", kv_format_name(f.k), kv_format_name(f.v));
    if (f.group != kKvGroup) s += fmt::format("g{}", f.group);
    for (char& c : s) c = static_cast<char>(std::toupper(c));
    return s;
}

// What the storage holds for the row x[0, n): each value rounded to the format (to nearest,
// ties to even), or quantised by the format's definition; slack where a float implementation
// may round either way (quantisation ties).
inline QuantRow stored_row(KvFormat f, const float* x, int64_t n, int64_t group) {
    if (f == KvFormat::Q8) return q8_reference(x, n, group);
    if (f == KvFormat::Q4) return q4_reference(x, n, group);
    if (f == KvFormat::FP8) return fp8_reference(x, n);
    QuantRow r{std::vector<double>(n), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
    for (int64_t i = 0; i < n; ++i) {
        switch (f) {
            case KvFormat::F16:
                r.value[i] = round_to_format(x[i], 10, -14);
                break;
            case KvFormat::BF16:
                r.value[i] = round_to_format(x[i], 7, -126);
                break;
            default:
                r.value[i] = x[i];
                break;
        }
    }
    return r;
}

// Quantised formats are compared with attention over their stored values (tight) and over the
// unquantised input: the format's own error, relative to the row's largest |V|. Q8 measured
// worst 1.9e-2 over the cases below (3 seeds x 3 ISAs; q_sigma 3 makes the softmax sharp), Q8
// keys with Q4 values QQ; the tolerance is about twice that. The CUDA backend's FP8 (3 mantissa
// bits) measured worst 7.6e-2 (H100, 2 seeds), its Q8 (one scale a row) 2.2e-2.
inline bool quantised(KvFormats f) {
    auto q = [](KvFormat x) {
        return x == KvFormat::Q8 || x == KvFormat::Q4 || x == KvFormat::FP8;
    };
    return q(f.k) || q(f.v);
}
inline double quantisation_tolerance(KvFormats f) {
    if (f.k == KvFormat::FP8) return 0.15;
    return f.v == KvFormat::Q4 ? 0.1 : f.k == KvFormat::Q8 ? 4e-2 : 0.0;
}

struct SeqShape {
    int64_t q_len, kv_len;  // kv_len counts this step's q_len new tokens
};

// Sequences placed on shuffled blocks of one pool.
struct PagedSeqs {
    std::vector<SeqShape> shapes;
    std::vector<std::vector<int32_t>> blocks;
    int64_t block_size = 0;

    int64_t slot(size_t s, int64_t pos) const {
        return int64_t{blocks[s][pos / block_size]} * block_size + pos % block_size;
    }
};

inline int64_t blocks_needed(const std::vector<SeqShape>& shapes, int64_t bs) {
    int64_t n = 0;
    for (const SeqShape& s : shapes) n += (s.kv_len + bs - 1) / bs;
    return n;
}

inline PagedSeqs place(const std::vector<SeqShape>& shapes, const KvLayout& l, std::mt19937_64& rng) {
    std::vector<int32_t> ids(static_cast<size_t>(l.num_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    PagedSeqs p{shapes, {}, l.block_size};
    size_t next = 0;
    for (const SeqShape& s : shapes) {
        const auto n = static_cast<size_t>((s.kv_len + l.block_size - 1) / l.block_size);
        p.blocks.emplace_back(ids.begin() + static_cast<long>(next),
                              ids.begin() + static_cast<long>(next + n));
        next += n;
    }
    VELA_ASSERT(next <= ids.size());
    return p;
}

// Positions [from(s), to(s)) of every sequence as one batch: the history a step builds on, or
// the step itself.
template <class From, class To>
ForwardBatch span_batch(const PagedSeqs& p, From from, To to) {
    ForwardBatch b;
    b.clear();
    for (size_t s = 0; s < p.shapes.size(); ++s) {
        const int64_t first = from(p.shapes[s]), last = to(p.shapes[s]);
        std::vector<int64_t> slots;
        for (int64_t pos = first; pos < last; ++pos) slots.push_back(p.slot(s, pos));
        b.add_sequence(std::vector<int32_t>(slots.size(), 0), first, slots, p.blocks[s], last,
                       true);
    }
    b.finish();
    b.validate(p.block_size);
    return b;
}

inline ForwardBatch history_batch(const PagedSeqs& p) {
    return span_batch(
        p, [](const SeqShape&) { return int64_t{0}; },
        [](const SeqShape& s) { return s.kv_len - s.q_len; });
}
inline ForwardBatch step_batch(const PagedSeqs& p) {
    return span_batch(
        p, [](const SeqShape& s) { return s.kv_len - s.q_len; },
        [](const SeqShape& s) { return s.kv_len; });
}

// step_batch with the sequences of q_len > 1 verifying the trees `parents[s]`: a node's row is
// written at the next position of the sequence's slots (as the engine feeds a tree), while its
// RoPE position is its depth's.
inline ForwardBatch tree_step_batch(const PagedSeqs& p,
                                    const std::vector<std::vector<int32_t>>& parents) {
    ForwardBatch b;
    b.clear();
    for (size_t s = 0; s < p.shapes.size(); ++s) {
        const SeqShape sh = p.shapes[s];
        std::vector<int64_t> slots;
        for (int64_t pos = sh.kv_len - sh.q_len; pos < sh.kv_len; ++pos) {
            slots.push_back(p.slot(s, pos));
        }
        const std::vector<int32_t> tokens(slots.size(), 0);
        if (sh.q_len > 1) {
            b.add_tree(tokens, parents[s], sh.kv_len - sh.q_len, slots, p.blocks[s], sh.kv_len);
        } else {
            b.add_sequence(tokens, sh.kv_len - sh.q_len, slots, p.blocks[s], sh.kv_len, true);
        }
    }
    b.finish();
    b.validate(p.block_size);
    return b;
}

// A block's contents in every layer, as stored: [layer][K, V][head][offset][dim].
using BlockData = std::vector<double>;

inline size_t block_index(const KvLayout& l, int64_t layer, bool value, int64_t h, int64_t off,
                   int64_t d) {
    return static_cast<size_t>(
        (((layer * 2 + (value ? 1 : 0)) * l.n_kv_heads + h) * l.block_size + off) * l.head_dim + d);
}

// One attention batch: its storage format and shape, the window, the spread of the queries.
struct AttentionCase {
    KvFormats format;
    int64_t n_kv_heads, ratio, head_dim, block_size, window;
    double q_sigma;
    // Self-drafting's sparse attention (ForwardBatch::sparse_*): the first sinks keys and the
    // last sparse_window ones; 0: off.
    int64_t sparse_sinks = 0, sparse_window = 0;
    // Token trees (ForwardBatch::add_tree): every sequence with q_len > 1 verifies a random tree
    // of its new rows (row 0 the root), seeded by this value; 0: causal.
    uint64_t tree_seed = 0;
};

// The random tree of AttentionCase::tree_seed over q_len rows: parents[i] of node i (row i + 1),
// -1 for a child of row 0.
inline std::vector<int32_t> random_tree(int64_t q_len, std::mt19937_64& rng) {
    std::vector<int32_t> parents;
    for (int32_t i = 0; i + 1 < q_len; ++i) {
        parents.push_back(std::uniform_int_distribution<int32_t>(-1, i - 1)(rng));
    }
    return parents;
}

// Random K/V of every sequence (kv_cols values a token): the history an earlier step wrote and
// the rows this step writes, and each sequence's whole K/V in float64.
struct StepKv {
    std::vector<float> k_hist, v_hist, k_new, v_new;
    std::vector<std::vector<double>> k_input, v_input;
};

inline StepKv random_step_kv(const std::vector<SeqShape>& shapes, int64_t kv_cols, std::mt19937_64& rng) {
    StepKv s;
    for (const SeqShape& sh : shapes) {
        const std::vector<float> k = normal_floats(static_cast<size_t>(sh.kv_len * kv_cols), rng);
        const std::vector<float> v = normal_floats(k.size(), rng);
        const auto split = static_cast<long>((sh.kv_len - sh.q_len) * kv_cols);
        s.k_hist.insert(s.k_hist.end(), k.begin(), k.begin() + split);
        s.v_hist.insert(s.v_hist.end(), v.begin(), v.begin() + split);
        s.k_new.insert(s.k_new.end(), k.begin() + split, k.end());
        s.v_new.insert(s.v_new.end(), v.begin() + split, v.end());
        s.k_input.push_back(to_double(k));
        s.v_input.push_back(to_double(v));
    }
    return s;
}

class BackendKvOps : public BackendTest {
  protected:
    void check_write_kv(KvFormats f, int64_t block_size, int64_t heads, int64_t head_dim,
                        std::mt19937_64& rng);
    // Over `shapes` (q_len, kv_len), or a default mix of decode rows and prompt chunks.
    void check_attention(const AttentionCase& c, std::mt19937_64& rng,
                         std::vector<SeqShape> shapes = {});
    void check_block_ops(KvFormats f, int64_t block_size, std::mt19937_64& rng);
    double offset_keys_error(KvFormats f, int64_t head_dim, bool store_offsets,
                             std::mt19937_64& rng);
    void check_scores(KvFormats f, KvScoreMode mode, int64_t window,
                      const std::vector<SeqShape>& shapes, std::mt19937_64& rng);
    void refill_blocks(KvStorage& kv, const std::vector<int32_t>& blocks,
                       std::vector<BlockData>& dev, std::mt19937_64& rng);
    BlockData read_block(const KvStorage& kv, int32_t block);

    std::unique_ptr<KvStorage> make_kv(const KvLayout& l, KvFormats f) {
        return backend().make_kv_storage(l, f);
    }
    // True when this backend does not store format f (head_dim 0) or attend over it at that
    // head size (BackendFactory::supports_kv); printed once per kind of case.
    bool unsupported(KvFormats f, int64_t head_dim) {
        const auto& supports = GetParam().supports_kv;
        if (!supports || supports(f, head_dim)) return false;
        const std::string what = fmt::format("{} head_dim {}", kv_formats_name(f), head_dim);
        if (skipped_.insert(what).second) {
            std::printf("[backend_ops] %s: KV %s not supported, skipped\n", GetParam().name.c_str(),
                        what.c_str());
        }
        return true;
    }
    std::set<std::string> skipped_;
    // Plans `batch` and stores rows k, v (rows x n_kv_heads * head_dim) at its slots.
    void write(KvStorage& kv, int64_t layer, const ForwardBatch& batch, const std::vector<float>& k,
               const std::vector<float>& v) {
        const int64_t rows = batch.n_rows(), cols = kv.layout().n_kv_heads * kv.layout().head_dim;
        if (rows == 0) return;
        DeviceTensor dk(backend(), rows, cols), dv(backend(), rows, cols);
        dk.upload(k);
        dv.upload(v);
        backend().plan(batch);
        backend().write_kv(kv, layer, dk.view(), dv.view());
    }
    // Every slot of `layer` set to `k`/`v` (num_slots x n_kv_heads * head_dim).
    void write_all(KvStorage& kv, int64_t layer, const std::vector<float>& k,
                   const std::vector<float>& v) {
        const KvLayout& l = kv.layout();
        std::vector<int32_t> blocks(static_cast<size_t>(l.num_blocks));
        std::iota(blocks.begin(), blocks.end(), 0);
        std::vector<int64_t> slots(static_cast<size_t>(l.num_slots()));
        std::iota(slots.begin(), slots.end(), 0);
        pool_batch_.clear();
        pool_batch_.add_sequence(std::vector<int32_t>(slots.size(), 0), 0, slots, blocks,
                                 l.num_slots(), false);
        pool_batch_.finish();
        write(kv, layer, pool_batch_, k, v);
    }
    void poison(KvStorage& kv) {
        const KvLayout& l = kv.layout();
        const std::vector<float> nan(static_cast<size_t>(l.num_slots() * l.n_kv_heads * l.head_dim),
                                     kPoison);
        for (int64_t layer = 0; layer < l.n_layers; ++layer) write_all(kv, layer, nan, nan);
    }
    std::vector<float> read(const KvStorage& kv, int64_t layer, int64_t slot, int64_t head,
                            bool value) {
        std::vector<float> row(static_cast<size_t>(kv.layout().head_dim));
        GetParam().read_kv(kv, layer, slot, head, value, row.data());
        return row;
    }

    ForwardBatch pool_batch_;
};

}  // namespace vela::test
