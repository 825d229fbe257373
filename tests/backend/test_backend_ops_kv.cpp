// Conformance of the Backend's KV ops (write_kv, attention, KvStorage::apply) for every KvFormat
// against float64 references written here, on every built backend. Sequences sit on shuffled,
// non-contiguous blocks of a pool whose every slot starts NaN, so a kernel that reads a slot it
// should not (a key past the causal limit, outside the window, in another layer, or in a block
// the sequence does not own) turns its output NaN.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kv_conformance.h"

namespace vela::test {

// write_kv: every written (slot, head) row holds the input rounded to the format (to nearest,
// ties to even) or quantised by its definition: exact, tolerance 0 (one quantisation step at
// rounding ties). Every other slot, and the other layer, keeps its NaN.
void BackendKvOps::check_write_kv(KvFormats f, int64_t bs, int64_t heads, int64_t hd,
                                  std::mt19937_64& rng) {
    const std::vector<SeqShape> shapes = {{1, 1}, {5, 12}, {17, 17}, {1, 40}};
    const KvLayout l{2, heads, hd, bs, blocks_needed(shapes, bs) + 2};
    if (unsupported(f, 0)) {  // refused by name, never stored wrongly
        EXPECT_THROW(make_kv(l, f), InvalidArgument) << kv_formats_name(f);
        return;
    }
    auto kv = make_kv(l, f);
    const int64_t group = kv->formats().group;  // as stored (the CUDA backend: one a row)
    poison(*kv);
    const ForwardBatch batch = step_batch(place(shapes, l, rng));
    const auto n = static_cast<size_t>(batch.n_rows() * heads * hd);
    const std::vector<float> k = normal_floats(n, rng), v = normal_floats(n, rng);
    write(*kv, 1, batch, k, v);

    std::vector<int64_t> row_of_slot(static_cast<size_t>(l.num_slots()), -1);
    for (int64_t r = 0; r < batch.n_rows(); ++r) row_of_slot[batch.slot_mapping[r]] = r;
    double worst = 0.0;
    std::string wrong, clobbered;  // the first wrong written row, the first overwritten one
    for (int64_t layer = 0; layer < l.n_layers; ++layer) {
        for (int64_t slot = 0; slot < l.num_slots(); ++slot) {
            const int64_t r = layer == 1 ? row_of_slot[slot] : -1;
            for (int64_t h = 0; h < heads; ++h) {
                for (bool value : {false, true}) {
                    const std::vector<float> got = read(*kv, layer, slot, h, value);
                    const QuantRow want =
                        r < 0
                            ? QuantRow{}
                            : stored_row(value ? f.v : f.k,
                                         (value ? v : k).data() + (r * heads + h) * hd, hd, group);
                    const std::string where = fmt::format("layer {} slot {} head {} {}", layer,
                                                          slot, h, value ? "V" : "K");
                    for (int64_t d = 0; d < hd; ++d) {
                        if (r < 0) {
                            if (!std::isnan(got[d]) && clobbered.empty()) clobbered = where;
                            continue;
                        }
                        const double e =
                            std::max(0.0, std::fabs(got[d] - want.value[d]) - want.slack[d]);
                        if (!(e == 0.0) && wrong.empty()) {
                            wrong = fmt::format("{} dim {}: got {} want {}", where, d, got[d],
                                                want.value[d]);
                        }
                        worst = std::isnan(e) ? INFINITY : std::max(worst, e);
                    }
                }
            }
        }
    }
    report_.add("write_kv", name_of(f), worst, 0.0);
    const std::string what =
        fmt::format("write_kv {} block_size {} heads {} head_dim {}", name_of(f), bs, heads, hd);
    EXPECT_EQ(worst, 0.0) << what << ": " << wrong << ", seed " << run_seed();
    EXPECT_TRUE(clobbered.empty()) << what << " wrote outside its rows, at " << clobbered;
}

TEST_P(BackendKvOps, WriteKv) {
    auto rng = op_rng("write_kv");
    for (KvFormats f : kFormats) {
        for (int64_t bs : {1, 7, 16}) {
            check_write_kv(f, bs, 1, 40, rng);
            check_write_kv(f, bs, 3, 72, rng);
            check_write_kv(f, bs, 2, 37, rng);
        }
    }
}

// attention: out[row][h] = sum_j softmax_j(scale * q . K_j) V_j over the keys at positions
// (pos - window, pos] (all of [0, pos] when window is 0), with K/V as stored (rounded to the
// format). Scale of a row: the largest |V| of its sequence (the output is a convex combination
// of those values). Float dots, exp and sums: 1e-5.
//
// The float64 attention of step rows of every sequence. k, v: per sequence, all kv_len tokens
// (rows of n_kv_heads * head_dim), already rounded to the format; q: the step's rows.
std::vector<double> attention_reference(const AttentionCase& c, const PagedSeqs& p,
                                        const std::vector<std::vector<double>>& k,
                                        const std::vector<std::vector<double>>& v,
                                        const std::vector<float>& q, double scale,
                                        const std::vector<std::vector<int32_t>>& trees = {}) {
    const int64_t hd = c.head_dim, n_heads = c.n_kv_heads * c.ratio, kv_cols = c.n_kv_heads * hd;
    std::vector<double> out(q.size());
    int64_t row = 0;
    for (size_t s = 0; s < p.shapes.size(); ++s) {
        const SeqShape sh = p.shapes[s];
        const int64_t first = sh.kv_len - sh.q_len;
        for (int64_t i = 0; i < sh.q_len; ++i, ++row) {
            const int64_t pos = first + i;
            const int64_t lo = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
            // The new rows a tree row sees: itself and its ancestors (row 0 is everyone's).
            std::vector<bool> seen(static_cast<size_t>(sh.q_len), trees.empty() || sh.q_len == 1);
            if (!seen[0]) {
                for (int64_t r = i; r > 0; r = trees[s][static_cast<size_t>(r - 1)] + 1) {
                    seen[static_cast<size_t>(r)] = true;
                }
                seen[0] = true;
            }
            // Keys left out by sparse attention or by the tree: weight 0 (exp(-inf)).
            auto skipped = [&](int64_t j) {
                return (c.sparse_window > 0 && j >= c.sparse_sinks && j <= pos - c.sparse_window) ||
                       (j >= first && !seen[static_cast<size_t>(j - first)]);
            };
            for (int64_t h = 0; h < n_heads; ++h) {
                const int64_t g = h / c.ratio;
                const float* qh = q.data() + (row * n_heads + h) * hd;
                std::vector<double> w(static_cast<size_t>(pos - lo + 1));
                double mx = -INFINITY, sum = 0.0;
                for (int64_t j = lo; j <= pos; ++j) {
                    double dot = 0.0;
                    for (int64_t d = 0; d < hd; ++d) dot += qh[d] * k[s][j * kv_cols + g * hd + d];
                    w[j - lo] = skipped(j) ? -INFINITY : scale * dot;
                    mx = std::max(mx, w[j - lo]);
                }
                for (double& x : w) sum += (x = std::exp(x - mx));
                double* o = out.data() + (row * n_heads + h) * hd;
                for (int64_t j = lo; j <= pos; ++j) {
                    for (int64_t d = 0; d < hd; ++d) {
                        o[d] += w[j - lo] / sum * v[s][j * kv_cols + g * hd + d];
                    }
                }
            }
        }
    }
    return out;
}

void BackendKvOps::check_attention(const AttentionCase& c, std::mt19937_64& rng,
                                   std::vector<SeqShape> shapes) {
    if (unsupported(c.format, c.head_dim)) return;
    const int64_t hd = c.head_dim, n_heads = c.n_kv_heads * c.ratio, kv_cols = c.n_kv_heads * hd;
    if (shapes.empty()) {
        // Decode rows and prompt chunks in one batch: a first token, a whole prompt, a decode
        // over several key tiles, a chunk in the middle of a prompt, draft verification rows, a
        // prompt of several query tiles, and one random shape.
        shapes = {{1, 1}, {17, 17}, {1, 130}, {33, 100}, {3, 50}, {70, 70}};
        const int64_t q_len = std::uniform_int_distribution<int64_t>(1, 24)(rng);
        shapes.push_back({q_len, q_len + std::uniform_int_distribution<int64_t>(0, 120)(rng)});
    }
    const KvLayout l{2, c.n_kv_heads, hd, c.block_size, blocks_needed(shapes, c.block_size) + 3};
    auto kv = make_kv(l, c.format);
    poison(*kv);
    const PagedSeqs p = place(shapes, l, rng);

    // Each sequence's K/V: the history is written by an earlier step, the new rows by this one.
    const StepKv in = random_step_kv(shapes, kv_cols, rng);
    write(*kv, 1, history_batch(p), in.k_hist, in.v_hist);
    std::vector<std::vector<int32_t>> trees;
    if (c.tree_seed != 0) {
        std::mt19937_64 tree_rng(c.tree_seed);
        for (const SeqShape& sh : shapes) trees.push_back(random_tree(sh.q_len, tree_rng));
    }
    ForwardBatch step = trees.empty() ? step_batch(p) : tree_step_batch(p, trees);
    step.sparse_sinks = c.sparse_sinks;
    step.sparse_window = c.sparse_window;
    write(*kv, 1, step, in.k_new, in.v_new);  // plans the step

    // The K/V as stored (write_kv's test checks them against the format's definition), and the
    // scale of each row: the largest |V| of its sequence (the output is a convex combination).
    std::vector<std::vector<double>> k_stored, v_stored;
    std::vector<double> row_scale;
    for (size_t s = 0; s < shapes.size(); ++s) {
        std::vector<double> ks, vs;
        for (int64_t pos = 0; pos < shapes[s].kv_len; ++pos) {
            for (int64_t h = 0; h < c.n_kv_heads; ++h) {
                for (bool value : {false, true}) {
                    const std::vector<float> row = read(*kv, 1, p.slot(s, pos), h, value);
                    (value ? vs : ks).insert((value ? vs : ks).end(), row.begin(), row.end());
                }
            }
        }
        double vmax = 0.0;
        for (double x : vs) vmax = std::max(vmax, std::fabs(x));
        row_scale.insert(row_scale.end(), static_cast<size_t>(shapes[s].q_len), vmax);
        k_stored.push_back(std::move(ks));
        v_stored.push_back(std::move(vs));
    }

    const int64_t rows = step.n_rows();
    const std::vector<float> q =
        normal_floats(static_cast<size_t>(rows * n_heads * hd), rng, c.q_sigma);
    DeviceTensor dq(backend(), rows, n_heads * hd), dout(backend(), rows, n_heads * hd);
    dq.upload(q);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    backend().attention(*kv, 1, dq.view(), dout.view(), n_heads, scale, c.window);
    const std::string what = fmt::format(
        "gqa {}x{} head_dim {} block_size {} window {} q_sigma {} sparse {}+{} tree {}",
        c.n_kv_heads, c.ratio, hd, c.block_size, c.window, c.q_sigma, c.sparse_sinks,
        c.sparse_window, c.tree_seed);
    const std::vector<double> ref =
        attention_reference(c, p, k_stored, v_stored, q, scale, trees);
    expect_close(report_, "attention", name_of(c.format), dout, ref, row_scale,
                 GetParam().precision.attention_tol(c.format), what);
    if (quantised(c.format)) {
        const std::vector<double> exact =
            attention_reference(c, p, in.k_input, in.v_input, q, scale, trees);
        expect_close(report_, "attn_vs_f64", name_of(c.format), dout, exact, row_scale,
                     quantisation_tolerance(c.format), what);
    }
}

TEST_P(BackendKvOps, Attention) {
    auto rng = op_rng("attention");
    const int64_t ratios[] = {1, 3, 7}, block_sizes[] = {1, 7, 16};
    const int64_t head_dims[] = {64, 72, 37, 128}, windows[] = {1, 5, 48};
    for (KvFormats f : kFormats) {
        for (int ri = 0; ri < 3; ++ri) {
            for (int bi = 0; bi < 3; ++bi) {
                for (bool windowed : {false, true}) {
                    const int64_t ratio = ratios[ri];
                    const int64_t n_kv = ratio == 1 ? 3 : ratio == 3 ? 2 : 1;
                    check_attention(
                        {f, n_kv, ratio, head_dims[(ri + bi) % 4], block_sizes[bi],
                         windowed ? windows[(ri + bi) % 3] : 0, (ri + bi) % 2 == 0 ? 1.0 : 3.0},
                        rng);
                }
            }
        }
    }
}

// Head size 256 (Gemma 3: one kv head of four query heads, local layers windowed) in every
// format: prompt chunks, decode rows over several key tiles, a token tree, and the sliding
// window. The CUDA backend runs all of them on its prefill kernels (no decode instance at 256).
TEST_P(BackendKvOps, HeadSize256) {
    auto rng = op_rng("head_size_256");
    for (KvFormats f : kFormats) {
        check_attention({f, 1, 4, 256, 16, 0, 3.0}, rng);
        check_attention({f, 2, 2, 256, 16, 48, 1.0}, rng);
        check_attention({f, 1, 4, 256, 16, 0, 3.0, 0, 0, /*tree_seed=*/7}, rng,
                        {{6, 6}, {1, 90}, {9, 140}, {13, 300}});
    }
}

// Sparse attention of self-speculative drafting: decode rows over their first sinks and last
// window keys. The sinks fill whole blocks and every kv_len - window is a multiple of the block
// size, where a backend that reads whole blocks (CUDA) and one that reads exact keys (CPU) attend
// to the same keys. Sequences as short as the sinks plus the window read every key.
TEST_P(BackendKvOps, SparseAttention) {
    auto rng = op_rng("sparse_attention");
    const int64_t bs = 16, sinks = 16, window = 37;
    const std::vector<SeqShape> shapes = {{1, 5}, {1, 37}, {1, 53}, {1, 101}, {1, 245}, {1, 357}};
    for (KvFormats f : kFormats) {
        for (int64_t head_dim : {64, 128}) {
            check_attention({f, 2, 4, head_dim, bs, 0, 3.0, sinks, window}, rng, shapes);
        }
    }
}

// Steps of a few rows per sequence (draft verification: the CUDA backend runs each row as a
// decode query with its causal length) and decode steps, batches of several sizes and lengths
// in turn on one backend: a workspace reused by a larger batch after a smaller one with many
// splits must not read the smaller one's partial outputs as its finish counters.
TEST_P(BackendKvOps, VerificationRowsAndDecodeBatchesInTurn) {
    auto rng = op_rng("verification_rows");
    const std::vector<std::vector<SeqShape>> steps = {
        {{1, 3000}},
        {{1, 2500}, {1, 40}, {1, 1800}},
        {{6, 1200}, {1, 90}, {9, 1400}, {16, 100}, {2, 67}, {13, 2000}},
        {{1, 3100}, {1, 900}},
        {{1, 700}, {1, 2000}, {1, 33}, {1, 1500}, {1, 2900}, {1, 64}, {1, 1200}},
        {{5, 2600}, {5, 2600}, {5, 2600}},
    };
    for (KvFormats f : kFormats) {
        for (int64_t head_dim : {64, 128}) {
            for (const auto& shapes : steps) {
                check_attention({f, 2, 4, head_dim, 16, 0, 2.0}, rng, shapes);
            }
        }
    }
}

// Token-tree verification (ForwardBatch::add_tree): a node sees the history, row 0 and its own
// ancestors only. Trees of 2-24 rows over histories that span several key tiles, decode rows
// beside them; the float64 reference masks the same tree. Causal attention of the same rows
// differs from the tree's by far more than the tolerance (the mask is checked, not assumed).
TEST_P(BackendKvOps, TreeAttention) {
    auto rng = op_rng("tree_attention");
    const std::vector<SeqShape> shapes = {{6, 6}, {1, 90}, {9, 140}, {24, 100}, {2, 67}, {13, 300}};
    uint64_t seed = 1;
    for (KvFormats f : kFormats) {
        for (int64_t head_dim : {64, 128}) {
            for (int64_t block_size : {1, 16}) {
                check_attention({f, 2, 3, head_dim, block_size, 0, 3.0, 0, 0, seed++}, rng, shapes);
            }
        }
    }
}

// KvLayout::key_offsets: keys whose channels carry a large constant part (Qwen2's key bias: a
// low-frequency RoPE pair at +-150 where the rest are N(0, 1)) attended over 8-bit KV. Stored less
// the offsets, attention is the float64 attention of the true keys within the format's
// tolerance (softmax ignores the shift); stored whole (no offsets in the layout), the constant
// sets every row's scale and the error is several times larger, which shows the offsets are
// applied. Returns the largest error relative to the row's largest |V|.
double BackendKvOps::offset_keys_error(KvFormats f, int64_t hd, bool store_offsets,
                                       std::mt19937_64& rng) {
    const AttentionCase c{f, 2, 3, hd, 16, 0, 1.0};
    const std::vector<SeqShape> shapes = {{1, 1}, {1, 130}, {33, 100}, {70, 70}};
    KvLayout l{2, c.n_kv_heads, hd, c.block_size, blocks_needed(shapes, c.block_size) + 3};
    std::vector<float> offsets(static_cast<size_t>(l.n_layers * l.n_kv_heads * hd), 0.0f);
    for (int64_t h = 0; h < l.n_kv_heads; ++h) {
        float* o = offsets.data() + (l.n_kv_heads + h) * hd;  // layer 1
        o[hd / 2 - 1] = h == 0 ? 150.0f : -120.0f;
        o[hd - 1] = 90.0f;
        o[hd / 2 - 2] = -20.0f;
    }
    if (store_offsets) l.key_offsets = offsets;
    auto kv = make_kv(l, f);
    poison(*kv);
    const PagedSeqs p = place(shapes, l, rng);
    StepKv in = random_step_kv(shapes, l.n_kv_heads * hd, rng);
    const float* layer1 = offsets.data() + l.n_kv_heads * hd;
    const auto kv_cols = static_cast<size_t>(l.n_kv_heads * hd);
    for (std::vector<float>* k : {&in.k_hist, &in.k_new}) {
        for (size_t i = 0; i < k->size(); ++i) (*k)[i] += layer1[i % kv_cols];
    }
    for (std::vector<double>& k : in.k_input) {
        for (size_t i = 0; i < k.size(); ++i) k[i] += layer1[i % kv_cols];
    }
    write(*kv, 1, history_batch(p), in.k_hist, in.v_hist);
    const ForwardBatch step = step_batch(p);
    write(*kv, 1, step, in.k_new, in.v_new);

    const int64_t rows = step.n_rows(), n_heads = c.n_kv_heads * c.ratio;
    const std::vector<float> q = normal_floats(static_cast<size_t>(rows * n_heads * hd), rng);
    DeviceTensor dq(backend(), rows, n_heads * hd), dout(backend(), rows, n_heads * hd);
    dq.upload(q);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    backend().attention(*kv, 1, dq.view(), dout.view(), n_heads, scale, 0);
    const std::vector<double> exact = attention_reference(c, p, in.k_input, in.v_input, q, scale);
    const std::vector<float> got = dout.download();
    double worst = 0.0;
    int64_t row = 0;
    for (size_t s = 0; s < shapes.size(); ++s) {
        double vmax = 0.0;
        for (double x : in.v_input[s]) vmax = std::max(vmax, std::fabs(x));
        for (int64_t i = 0; i < shapes[s].q_len; ++i, ++row) {
            for (int64_t j = 0; j < n_heads * hd; ++j) {
                const auto at = static_cast<size_t>(row * n_heads * hd + j);
                const double err = std::fabs(got[at] - exact[at]) / vmax;
                worst = std::isnan(err) ? INFINITY : std::max(worst, err);
            }
        }
    }
    return worst;
}

TEST_P(BackendKvOps, KeyOffsets) {
    auto rng = op_rng("key_offsets");
    for (KvFormats f : {KvFormats{KvFormat::Q8}, KvFormats{KvFormat::Q8, KvFormat::Q8, 64},
                        KvFormats{KvFormat::FP8}}) {
        for (int64_t hd : {64, 128}) {
            if (unsupported(f, hd)) continue;
            const double with = offset_keys_error(f, hd, true, rng);
            const double without = offset_keys_error(f, hd, false, rng);
            const std::string what = fmt::format("{} head_dim {}", name_of(f), hd);
            std::printf("[backend_ops] %s key offsets %s: error %.4f, stored whole %.4f\n",
                        GetParam().name.c_str(), what.c_str(), with, without);
            EXPECT_LE(with, quantisation_tolerance(f)) << what;
            EXPECT_GT(without, 3 * with) << what;
        }
    }
}

// KvStorage::apply: Copy, SwapOut and SwapIn move whole blocks (every layer, K and V) in order;
// host slots keep what was swapped out across apply() calls while the device blocks are
// reused. Bytes are moved, not recomputed: exact, tolerance 0.
void BackendKvOps::check_block_ops(KvFormats f, int64_t bs, std::mt19937_64& rng) {
    const KvLayout l{2, 2, 40, bs, 8};
    if (unsupported(f, 0)) return;
    auto kv = make_kv(l, f);
    const size_t block_elems = block_index(l, l.n_layers, false, 0, 0, 0);
    std::vector<BlockData> dev(static_cast<size_t>(l.num_blocks), BlockData(block_elems));
    std::vector<BlockData> host(3);
    auto refill = [&](const std::vector<int32_t>& blocks) { refill_blocks(*kv, blocks, dev, rng); };
    auto apply = [&](const std::vector<BlockOp>& ops) {
        kv->apply(ops);
        for (const BlockOp& op : ops) {
            switch (op.kind) {
                case BlockOp::Kind::Copy:
                    dev[op.dst] = dev[op.src];
                    break;
                case BlockOp::Kind::SwapOut:
                    host[op.dst] = dev[op.src];
                    break;
                case BlockOp::Kind::SwapIn:
                    dev[op.dst] = host[op.src];
                    break;
                case BlockOp::Kind::MoveRow:
                    for (int64_t layer = 0; layer < l.n_layers; ++layer) {
                        if (op.layer >= 0 && op.layer != layer) continue;
                        for (bool value : {false, true}) {
                            for (int64_t h = 0; h < l.n_kv_heads; ++h) {
                                if (op.head >= 0 && op.head != h) continue;
                                for (int64_t d = 0; d < l.head_dim; ++d) {
                                    dev[op.dst / bs]
                                       [block_index(l, layer, value, h, op.dst % bs, d)] =
                                           dev[op.src / bs]
                                              [block_index(l, layer, value, h, op.src % bs, d)];
                                }
                            }
                        }
                    }
                    break;
            }
        }
    };
    using K = BlockOp::Kind;
    refill({0, 1, 2, 3, 4, 5, 6, 7});
    apply({{K::Copy, 2, 5}, {K::SwapOut, 3, 0}, {K::SwapOut, 5, 1}, {K::Copy, 1, 3}});
    refill({0, 7});  // blocks handed to other sequences meanwhile
    apply({{K::SwapIn, 0, 7},
           {K::SwapIn, 1, 0},
           {K::Copy, 7, 6},
           {K::SwapOut, 6, 2},
           {K::SwapIn, 2, 4}});
    // Eviction's row moves, in order: the second reads the slot the first wrote, the fourth
    // writes the slot the third read, and a copy between runs of moves keeps its place.
    const auto slot = [bs](int32_t block, int64_t off) {
        return static_cast<int32_t>(block * bs + off % bs);
    };
    apply({{K::MoveRow, slot(3, 5), slot(1, 0), -1, -1},
           {K::MoveRow, slot(1, 0), slot(4, 0), 1, -1},
           {K::MoveRow, slot(5, 1), slot(2, 3), 0, 1},
           {K::MoveRow, slot(6, 0), slot(5, 1), 1, 0},
           {K::Copy, 4, 6},
           {K::MoveRow, slot(6, 1), slot(3, 2), -1, -1}});

    double worst = 0.0;
    std::string wrong;  // each block that differs, at its first wrong element
    for (int32_t b = 0; b < l.num_blocks; ++b) {
        const BlockData got = read_block(*kv, b);
        bool named = false;
        for (size_t i = 0; i < block_elems; ++i) {
            const double e = std::fabs(got[i] - dev[b][i]);
            worst = std::isnan(e) ? INFINITY : std::max(worst, e);
            if (e == 0.0 || named) continue;
            const size_t per_kv = block_elems / static_cast<size_t>(2 * l.n_layers);
            wrong += fmt::format(" block {} (layer {} {}: got {} want {})", b, i / (2 * per_kv),
                                 (i / per_kv) % 2 == 0 ? "K" : "V", got[i], dev[b][i]);
            named = true;
        }
    }
    report_.add("kv_apply", name_of(f), worst, 0.0);
    EXPECT_EQ(worst, 0.0) << "KvStorage::apply " << name_of(f) << " block_size " << bs << ":"
                          << wrong << ", seed " << run_seed();
}

// Fresh values in `blocks` of every layer, written to the storage and recorded in `dev`.
void BackendKvOps::refill_blocks(KvStorage& kv, const std::vector<int32_t>& blocks,
                                 std::vector<BlockData>& dev, std::mt19937_64& rng) {
    const KvLayout& l = kv.layout();
    const int64_t bs = l.block_size, hd = l.head_dim, cols = l.n_kv_heads * hd;
    std::vector<int64_t> slots;
    for (int32_t b : blocks) {
        for (int64_t off = 0; off < bs; ++off) slots.push_back(b * bs + off);
    }
    ForwardBatch batch;
    batch.clear();
    batch.add_sequence(std::vector<int32_t>(slots.size(), 0), 0, slots, blocks, std::ssize(slots),
                       false);
    batch.finish();
    for (int64_t layer = 0; layer < l.n_layers; ++layer) {
        const std::vector<float> k = normal_floats(slots.size() * cols, rng);
        const std::vector<float> v = normal_floats(k.size(), rng);
        write(kv, layer, batch, k, v);
    }
    // As stored (write_kv's test checks the storage against the format's definition).
    for (int32_t b : blocks) dev[b] = read_block(kv, b);
}

BlockData BackendKvOps::read_block(const KvStorage& kv, int32_t b) {
    const KvLayout& l = kv.layout();
    BlockData out(block_index(l, l.n_layers, false, 0, 0, 0));
    for (int64_t layer = 0; layer < l.n_layers; ++layer) {
        for (bool value : {false, true}) {
            for (int64_t h = 0; h < l.n_kv_heads; ++h) {
                for (int64_t off = 0; off < l.block_size; ++off) {
                    const std::vector<float> row =
                        read(kv, layer, b * l.block_size + off, h, value);
                    for (int64_t d = 0; d < l.head_dim; ++d) {
                        out[block_index(l, layer, value, h, off, d)] = row[d];
                    }
                }
            }
        }
    }
    return out;
}

TEST_P(BackendKvOps, ApplyBlockOps) {
    auto rng = op_rng("kv_apply");
    for (KvFormats f : kFormats) {
        for (int64_t bs : {1, 7, 16}) check_block_ops(f, bs, rng);
    }
}

INSTANTIATE_TEST_SUITE_P(Built, BackendKvOps, ::testing::ValuesIn(built_backends()), factory_name);

}  // namespace vela::test
