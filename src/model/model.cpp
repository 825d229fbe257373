#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "model/rope.h"

namespace vela {

// Activations of one step in the backend's memory, sized for the largest batch seen so far.
struct Model::Scratch {
    struct Slot {
        std::unique_ptr<DeviceBuffer> buffer;
        Tensor view(Backend& b, int64_t rows, int64_t cols, DType type = DType::F32) {
            const size_t bytes = row_bytes(type, cols) * static_cast<size_t>(rows);
            if (!buffer || buffer->bytes() < bytes) buffer = b.allocate(bytes);
            return Tensor{buffer->data(), type, rows, cols, b.device()};
        }
    };
    Backend* backend = nullptr;
    // Rotary angles of every row: one table per RopeParams (global layers, local layers).
    struct Angles {
        Slot cos, sin;
        Tensor tcos, tsin;
        std::vector<float> host_cos, host_sin;
    };
    Slot x, h, q, k, v, attn, gate, up, out_rows, logits, ids, top_tokens, top_logits, lse;
    Slot rank_logits;      // tensor parallel: this rank's vocabulary slice of the logits
    int64_t n_logits = 0;  // rows in `logits` from the last forward
    Tensor tx, th, tq, tk, tv, tattn, tgate, tup;
    Angles global, local;

    void prepare(Backend& b, const HParams& hp, int64_t rows) {
        if (backend != &b) *this = Scratch{};  // buffers belong to the backend that made them
        backend = &b;
        tx = x.view(b, rows, hp.n_embd);
        th = h.view(b, rows, hp.n_embd);
        tq = q.view(b, rows, hp.q_dim());
        tk = k.view(b, rows, hp.kv_dim());
        tv = v.view(b, rows, hp.kv_dim());
        tattn = attn.view(b, rows, hp.q_dim());
        tgate = gate.view(b, rows, hp.n_ff);
        tup = up.view(b, rows, hp.n_ff);
    }

    // Fills `a` with the angles of every row's position for `rope`, on the device.
    void make_angles(Backend& b, const RopeParams& rope, const float* freq_factors,
                     const ForwardBatch& batch, Angles& a) {
        const int64_t rows = batch.n_rows(), half = rope.dim / 2;
        a.tcos = a.cos.view(b, rows, half);
        a.tsin = a.sin.view(b, rows, half);
        a.host_cos.resize(static_cast<size_t>(rows * half));
        a.host_sin.resize(static_cast<size_t>(rows * half));
        for (int64_t r = 0; r < rows; ++r) {
            rope_cos_sin(rope, freq_factors, batch.positions[r], &a.host_cos[r * half],
                         &a.host_sin[r * half]);
        }
        b.to_device(a.host_cos.data(), a.tcos);
        b.to_device(a.host_sin.data(), a.tsin);
    }
};

namespace {

// The rows of `t` (n_heads heads of head_dim each) seen as one row per head.
Tensor per_head(const Tensor& t, int64_t head_dim) {
    return Tensor{t.data, t.dtype, t.numel() / head_dim, head_dim, t.device};
}

// Model::key_offsets from the key biases (host memory: called before any upload).
std::vector<float> key_offsets_of(const HParams& hp, const ModelWeights& w) {
    const int64_t nkv = hp.n_kv_heads, hd = hp.head_dim;
    if (w.layers.empty() || !w.layers[0].bk || hp.n_ctx_train <= 0) return {};
    std::vector<float> out(static_cast<size_t>(hp.n_layers * nkv * hd), 0.0f);
    for (int64_t il = 0; il < hp.n_layers; ++il) {
        if (!w.layers[il].bk) continue;
        const RopeParams& rope = hp.rope_of(il);
        const int64_t half = rope.dim / 2;
        // Each pair's angle per position (the angles grow linearly with it).
        std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
        rope_cos_sin(rope, w.rope_freq_factors, 1, c.data(), s.data());
        std::vector<bool> steady(static_cast<size_t>(hd), true);  // past rope.dim: never turned
        for (int64_t i = 0; i < half; ++i) {
            const bool ok = std::abs(std::atan2(s[i], c[i])) * static_cast<double>(hp.n_ctx_train) <
                            std::numbers::pi / 3;
            steady[rope.neox ? i : 2 * i] = ok;
            steady[rope.neox ? i + half : 2 * i + 1] = ok;
        }
        const float* bias = w.layers[il].bk.f32();
        for (int64_t h = 0; h < nkv; ++h) {
            for (int64_t d = 0; d < hd; ++d) {
                if (steady[d]) out[(il * nkv + h) * hd + d] = bias[h * hd + d];
            }
        }
    }
    return out;
}

}  // namespace

Model::Model(const std::string& path, Communicator* comm)
    : file_(gguf::File::open(path)),
      hp_(HParams::from_gguf(file_)),
      comm_(comm),
      scratch_(std::make_unique<Scratch>()) {
    TpShard shard = shard_model(hp_, ModelWeights::bind(file_, hp_), comm_ ? comm_->rank() : 0,
                                comm_ ? comm_->size() : 1);
    local_ = shard.local;
    vocab_begin_ = shard.vocab_begin;
    vocab_end_ = shard.vocab_end;
    weights_ = std::move(shard.weights);
    owned_ = std::move(shard.owned);
    key_offsets_ = key_offsets_of(local_, weights_);
    // V's bias per query head (GQA: each query head reads its KV head's values).
    const int64_t q_dim = local_.q_dim(), hd = local_.head_dim,
                  group = local_.n_heads / local_.n_kv_heads;
    if (!weights_.layers.empty() && weights_.layers[0].bv) {
        v_bias_heads_.resize(static_cast<size_t>(local_.n_layers * q_dim));
        for (int64_t il = 0; il < local_.n_layers; ++il) {
            LayerWeights& l = weights_.layers[static_cast<size_t>(il)];
            float* out = v_bias_heads_.data() + il * q_dim;
            for (int64_t i = 0; i < q_dim; ++i) out[i] = l.bv.f32()[(i / hd / group) * hd + i % hd];
            l.bv_heads = Weight{out, DType::F32, 1, q_dim, Device::Cpu};
        }
    }
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;

KvLayout Model::kv_layout(int64_t block_size, int64_t num_blocks,
                          int64_t local_num_blocks) const {
    KvLayout layout{local_.n_layers, local_.n_kv_heads, local_.head_dim, block_size, num_blocks};
    layout.key_offsets = key_offsets_;
    if (local_num_blocks > 0) {
        if (hp_.sliding_window == 0) {
            fail<InvalidArgument>("{} has no sliding-window layers for a local KV group", hp_.arch);
        }
        for (int64_t l = 0; l < hp_.n_layers; ++l) layout.local_layers.push_back(hp_.is_local(l));
        layout.local_num_blocks = local_num_blocks;
    }
    return layout;
}

void Model::forward(const ForwardBatch& batch, KvStorage& kv, Backend& backend,
                    std::vector<float>& logits) {
    RowsOut out;
    out.logits.swap(logits);
    forward(batch, kv, backend, {}, out);
    logits.swap(out.logits);
}

std::unique_ptr<KvStorage> Model::make_kv_storage(Backend& backend, const KvLayout& layout,
                                                  KvFormats formats) const {
    if (comm_ && layout.attention_scores) {
        fail<InvalidArgument>(
            "KV eviction by attention scores (H2O, TOVA) is not supported with tensor "
            "parallelism: each rank sees only its own heads' scores");
    }
    return broadcast_ ? broadcast_->make_kv_storage(backend, layout, formats)
                      : backend.make_kv_storage(layout, formats);
}

void Model::forward(const ForwardBatch& batch, KvStorage& kv_in, Backend& backend,
                    std::span<const int32_t> keep, RowsOut& out,
                    std::span<const LogitPenalty> penalties, bool lse) {
    const int64_t rows = batch.n_rows();
    VELA_ASSERT(rows > 0);
    // Rank 0 of processes: the others start the same forward (and their collectives wait for
    // ours); the ops run on rank 0's own storage.
    KvStorage& kv = broadcast_ ? broadcast_->forward(batch, kv_in, keep, penalties, lse) : kv_in;
    if (loaded_on_ != &backend) {
        backend.load_weights(weights_);
        loaded_on_ = &backend;
    }
    Scratch& s = *scratch_;
    s.prepare(backend, local_, rows);
    backend.plan(batch);

    s.make_angles(backend, hp_.rope, weights_.rope_freq_factors, batch, s.global);
    if (!hp_.layer_is_local.empty())
        s.make_angles(backend, hp_.rope_local, nullptr, batch, s.local);

    // Only the rows that need logits go through the final norm and the LM head.
    const auto n_out = static_cast<int64_t>(batch.logit_rows.size());
    VELA_ASSERT(keep.empty() || std::ssize(keep) == n_out);
    std::vector<float>& logits = out.logits;
    logits.resize(static_cast<size_t>(n_out * hp_.n_vocab));
    out.ids.resize(static_cast<size_t>(n_out));
    Tensor out_rows, out_logits, out_ids, rank_logits;
    if (n_out > 0) {  // allocated here: the ops may be recorded once and replayed
        out_rows = s.out_rows.view(backend, n_out, hp_.n_embd);
        out_logits = s.logits.view(backend, n_out, hp_.n_vocab);
        out_ids = s.ids.view(backend, n_out, 1, DType::I32);
        if (comm_) rank_logits = s.rank_logits.view(backend, n_out, vocab_end_ - vocab_begin_);
    }
    backend.run_ops(this, kv, [&] {
        backend.embed(weights_.token_embd, s.tx);
        if (hp_.embd_scale != 1.f) backend.scale(s.tx, hp_.embd_scale);
        backend.rms_norm(s.tx, weights_.layers[0].attn_norm, s.th, hp_.rms_eps);
        for (int64_t il = 0; il < hp_.n_layers; ++il) layer(il, kv, backend, s);
        if (n_out == 0) return;
        backend.gather_logit_rows(s.tx, out_rows);
        backend.rms_norm(out_rows, weights_.output_norm, out_rows, hp_.rms_eps);
        if (comm_) {  // this rank's vocabulary slice, then every rank's
            backend.matmul(weights_.output, out_rows, rank_logits);
            comm_->all_gather_cols(backend, rank_logits, out_logits);
        } else {
            backend.matmul(weights_.output, out_rows, out_logits);
        }
        // Every step, whoever asks: a recorded step must not depend on which rows are greedy.
        backend.argmax_rows(out_logits, out_ids);
    });
    s.n_logits = n_out;
    if (n_out == 0) return;
    backend.to_host(out_ids, out.ids.data());
    // Top-k lists, over the rows from the first to the last that asks for one (eagerly: which
    // rows sample this way changes from step to step, the recorded ops must not).
    auto kept = [&](int64_t r) { return keep.empty() ? kKeepRow : keep[static_cast<size_t>(r)]; };
    out.top_k = 0;
    int64_t top_first = n_out, top_last = -1;
    for (int64_t r = 0; r < n_out; ++r) {
        if (kept(r) <= 0) continue;
        out.top_k = std::max(out.top_k, kept(r));
        top_first = std::min(top_first, r);
        top_last = r;
    }
    for (const LogitPenalty& e : penalties) {
        VELA_ASSERT(e.row >= 0 && e.row < n_out && kept(e.row) > 0);
    }
    const int64_t n_top = top_last - top_first + 1;
    const Tensor top_rows{out_logits.f32() + top_first * hp_.n_vocab, DType::F32,
                          std::max<int64_t>(n_top, 0), hp_.n_vocab, out_logits.device};
    out.lse.clear();
    if (lse && out.top_k > 0) {  // of the raw rows: before the penalties
        const Tensor t = s.lse.view(backend, n_top, 1, DType::F64);
        backend.logsumexp_rows(top_rows, t);
        out.lse.resize(static_cast<size_t>(n_out));
        backend.to_host(t, out.lse.data() + top_first);
    }
    if (!penalties.empty()) backend.apply_penalties(out_logits, penalties);
    if (out.top_k > 0) {
        VELA_ASSERT(out.top_k <= Backend::kMaxTopK);
        const int64_t n = n_top, k = out.top_k;
        const Tensor& rows = top_rows;
        const Tensor tokens = s.top_tokens.view(backend, n, k, DType::I32);
        const Tensor values = s.top_logits.view(backend, n, k);
        backend.top_k_rows(rows, tokens, values);
        out.top_tokens.resize(static_cast<size_t>(n_out * k));
        out.top_logits.resize(static_cast<size_t>(n_out * k));
        backend.to_host(tokens, out.top_tokens.data() + top_first * k);
        backend.to_host(values, out.top_logits.data() + top_first * k);
    }
    // The rows that come back whole, in runs of consecutive rows: one copy each.
    for (int64_t r = 0; r < n_out;) {
        if (kept(r) != kKeepRow) {
            ++r;
            continue;
        }
        int64_t end = r + 1;
        while (end < n_out && kept(end) == kKeepRow) ++end;
        const Tensor run{out_logits.f32() + r * hp_.n_vocab, DType::F32, end - r, hp_.n_vocab,
                         out_logits.device};
        backend.to_host(run, logits.data() + r * hp_.n_vocab);
        r = end;
    }
}

void Model::fetch_row(Backend& backend, int64_t row, RowsOut& out) {
    Scratch& s = *scratch_;
    VELA_ASSERT(row >= 0 && row < s.n_logits && s.logits.buffer &&
                out.logits.size() >= static_cast<size_t>(s.n_logits * hp_.n_vocab));
    const Tensor t{static_cast<float*>(s.logits.buffer->data()) + row * hp_.n_vocab, DType::F32, 1,
                   hp_.n_vocab, backend.device()};
    backend.to_host(t, out.logits.data() + row * hp_.n_vocab);
}

// One layer. On entry s.th holds the layer's attention-normed input (forward() or the previous
// layer's last fused op puts it there); on exit s.tx holds the layer's output and, unless this
// is the last layer, s.th the next layer's attention-normed input.
void Model::layer(int64_t il, KvStorage& kv, Backend& backend, Scratch& s) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(il)];

    // Attention block.
    const Weight* qkv[] = {&w.wq, &w.wk, &w.wv};
    const Tensor qkv_out[] = {s.tq, s.tk, s.tv};
    backend.matmuls(qkv, s.th, qkv_out);
    // Quantised V: its bias joins after attention instead (softmax weights sum to 1, so
    // sum p (v + b) = sum p v + b exactly), leaving the codes for what varies between tokens.
    const bool v_bias_after = w.bv_heads && kv_quantised(kv.formats().v);
    if (w.bq) {
        backend.add_bias(s.tq, w.bq);
        backend.add_bias(s.tk, w.bk);
        if (!v_bias_after) backend.add_bias(s.tv, w.bv);
    }
    if (w.q_norm) {  // Gemma 3: every query and key head is RMS-normalised before rotation
        backend.rms_norm(per_head(s.tq, hp_.head_dim), w.q_norm, per_head(s.tq, hp_.head_dim),
                         hp_.rms_eps);
        backend.rms_norm(per_head(s.tk, hp_.head_dim), w.k_norm, per_head(s.tk, hp_.head_dim),
                         hp_.rms_eps);
    }
    const RopeParams& rope = hp_.rope_of(il);
    const Scratch::Angles& angles = hp_.is_local(il) ? s.local : s.global;
    backend.rope_write_kv(kv, il, s.tq, s.tk, s.tv, local_.n_heads, local_.n_kv_heads,
                          local_.head_dim, rope.dim, angles.tcos, angles.tsin, rope.neox);
    backend.attention(kv, il, s.tq, s.tattn, local_.n_heads, hp_.attn_scale, hp_.window(il));
    if (v_bias_after) backend.add_bias(s.tattn, w.bv_heads);
    backend.matmul(w.wo, s.tattn, s.th);
    if (comm_) comm_->all_reduce_sum(backend, s.th);  // row-parallel: the ranks' partial sums
    if (w.attn_post_norm) backend.rms_norm(s.th, w.attn_post_norm, s.th, hp_.rms_eps);
    backend.add_rms_norm(s.tx, s.th, w.ffn_norm, s.th, hp_.rms_eps);

    // Feed-forward block (SwiGLU, or GeGLU for Gemma).
    backend.gated_ffn(w.w_gate, w.w_up, s.th, s.tgate, s.tup,
                      hp_.ffn_act == FfnActivation::GeluTanh);
    backend.matmul(w.w_down, s.tgate, s.th);
    if (comm_) comm_->all_reduce_sum(backend, s.th);
    if (w.ffn_post_norm) backend.rms_norm(s.th, w.ffn_post_norm, s.th, hp_.rms_eps);
    // The residual add, joined with the next layer's attention norm.
    if (il + 1 < hp_.n_layers) {
        const LayerWeights& next = weights_.layers[static_cast<size_t>(il + 1)];
        backend.add_rms_norm(s.tx, s.th, next.attn_norm, s.th, hp_.rms_eps);
    } else {
        backend.add_inplace(s.tx, s.th);
    }
}

}  // namespace vela
