#include "model/tensor_parallel.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace vela {
namespace {

// Rows [r0, r1) of a matrix: contiguous, a view.
Weight rows_of(const Weight& w, int64_t r0, int64_t r1) {
    Weight s = w;
    s.data =
        static_cast<const std::byte*>(w.data) + static_cast<size_t>(r0) * row_bytes(w.type, w.cols);
    s.rows = r1 - r0;
    return s;
}

// Elements [c0, c1) of a float vector (1 x n): a view.
Weight elems_of(const Weight& w, int64_t c0, int64_t c1) {
    if (!w) return w;
    Weight s = w;
    s.data = w.f32() + c0;
    s.cols = c1 - c0;
    return s;
}

int64_t block_of(DType t) {
    return dtype_info(t).block_size;
}

// Columns [c0, c1) of every row: whole quantisation blocks, copied into `owned`.
Weight cols_of(const Weight& w, int64_t c0, int64_t c1,
               std::vector<std::unique_ptr<std::byte[]>>& owned) {
    const int64_t block = block_of(w.type);
    VELA_ASSERT(c0 % block == 0 && c1 % block == 0);
    const size_t in_row = row_bytes(w.type, w.cols), skip = row_bytes(w.type, c0),
                 out_row = row_bytes(w.type, c1 - c0);
    auto buf = std::make_unique<std::byte[]>(out_row * static_cast<size_t>(w.rows));
    const auto* src = static_cast<const std::byte*>(w.data);
    for (int64_t r = 0; r < w.rows; ++r)
        std::memcpy(buf.get() + static_cast<size_t>(r) * out_row,
                    src + static_cast<size_t>(r) * in_row + skip, out_row);
    Weight s = w;
    s.data = buf.get();
    s.cols = c1 - c0;
    owned.push_back(std::move(buf));
    return s;
}

}  // namespace

TpShard shard_model(const HParams& hp, const ModelWeights& w, int rank, int size) {
    TpShard s;
    s.local = hp;
    s.vocab_end = hp.n_vocab;
    s.weights = w;
    if (size == 1) return s;
    VELA_ASSERT(rank >= 0 && rank < size);
    const int64_t n = size, H = hp.n_heads, Hk = hp.n_kv_heads, hd = hp.head_dim;
    if (H % n != 0)
        fail<InvalidArgument>("tensor parallel {}: {} query heads do not split evenly", n, H);
    if (Hk % n != 0 && n % Hk != 0)
        fail<InvalidArgument>(
            "tensor parallel {}: {} kv heads neither split evenly nor divide the ranks", n, Hk);
    const int64_t heads = H / n, h0 = rank * heads;
    // Fewer kv heads than ranks: each rank keeps the one its query heads read.
    const int64_t kv_heads = Hk >= n ? Hk / n : 1, kv0 = Hk >= n ? rank * kv_heads : rank * Hk / n;
    s.local.n_heads = heads;
    s.local.n_kv_heads = kv_heads;
    // n_ff cut at whole blocks of every layer's down projection (the largest block).
    int64_t block = 1;
    for (const LayerWeights& l : w.layers) block = std::max(block, block_of(l.w_down.type));
    if (hp.n_ff % block != 0 || hp.n_ff / block < n)
        fail<InvalidArgument>("tensor parallel {}: n_ff {} is not {} blocks of {}", n, hp.n_ff, n,
                              block);
    const int64_t blocks = hp.n_ff / block;
    const int64_t f0 = rank * blocks / n * block, f1 = (rank + 1) * blocks / n * block;
    s.local.n_ff = f1 - f0;
    s.vocab_begin = rank * hp.n_vocab / n;
    s.vocab_end = (rank + 1) * hp.n_vocab / n;
    s.weights.output = rows_of(w.output, s.vocab_begin, s.vocab_end);
    for (size_t il = 0; il < w.layers.size(); ++il) {
        const LayerWeights& l = w.layers[il];
        LayerWeights& o = s.weights.layers[il];
        const int64_t wo_block = block_of(l.wo.type);
        if ((h0 * hd) % wo_block != 0 || (heads * hd) % wo_block != 0)
            fail<InvalidArgument>(
                "tensor parallel {}: layer {}'s attn_output ({}, blocks of {}) cannot be cut "
                "at query head {} (column {})",
                n, il, dtype_name(l.wo.type), wo_block, h0, h0 * hd);
        o.wq = rows_of(l.wq, h0 * hd, (h0 + heads) * hd);
        o.wk = rows_of(l.wk, kv0 * hd, (kv0 + kv_heads) * hd);
        o.wv = rows_of(l.wv, kv0 * hd, (kv0 + kv_heads) * hd);
        o.bq = elems_of(l.bq, h0 * hd, (h0 + heads) * hd);
        o.bk = elems_of(l.bk, kv0 * hd, (kv0 + kv_heads) * hd);
        o.bv = elems_of(l.bv, kv0 * hd, (kv0 + kv_heads) * hd);
        o.bv_heads = Weight{};  // per query head: the Model builds it from the local bv
        o.wo = cols_of(l.wo, h0 * hd, (h0 + heads) * hd, s.owned);
        o.w_gate = rows_of(l.w_gate, f0, f1);
        o.w_up = rows_of(l.w_up, f0, f1);
        o.w_down = cols_of(l.w_down, f0, f1, s.owned);
    }
    return s;
}

// --- ranks as threads ---

class ThreadGroup::Rank final : public Communicator {
  public:
    Rank(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return group_.size(); }

    void all_reduce_sum(Backend&, Tensor x) override {
        check_host(x);
        publish(x);
        sum_.assign(static_cast<size_t>(x.numel()), 0.0f);
        for (const Tensor& t : group_.published_) {
            VELA_ASSERT(t.numel() == x.numel());
            const float* v = t.f32();
            for (size_t i = 0; i < sum_.size(); ++i) sum_[i] += v[i];
        }
        group_.barrier_.arrive_and_wait();  // every operand read: the ranks may overwrite them
        std::copy(sum_.begin(), sum_.end(), x.f32());
    }

    void all_gather_cols(Backend&, const Tensor& local, Tensor full) override {
        check_host(local);
        check_host(full);
        publish(local);
        int64_t col = 0;
        for (const Tensor& t : group_.published_) {
            VELA_ASSERT(t.rows == full.rows && col + t.cols <= full.cols);
            for (int64_t r = 0; r < t.rows; ++r)
                std::copy_n(t.f32() + r * t.cols, t.cols, full.f32() + r * full.cols + col);
            col += t.cols;
        }
        VELA_ASSERT(col == full.cols);
        group_.barrier_.arrive_and_wait();
    }

  private:
    static void check_host(const Tensor& t) {
        VELA_ASSERT(t.device == Device::Cpu && t.dtype == DType::F32);
    }
    // Puts this rank's operand where the others read it, once all have.
    void publish(const Tensor& t) {
        group_.published_[static_cast<size_t>(rank_)] = t;
        group_.barrier_.arrive_and_wait();
    }

    ThreadGroup& group_;
    int rank_;
    std::vector<float> sum_;
};

Communicator& ThreadGroup::rank(int r) {
    return *ranks_.at(static_cast<size_t>(r));
}

ThreadGroup::ThreadGroup(int size) : barrier_(size), published_(static_cast<size_t>(size)) {
    VELA_ASSERT(size >= 1);
    for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
}

ThreadGroup::~ThreadGroup() = default;

}  // namespace vela
