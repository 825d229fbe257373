// matmul: the one dispatch point from (weight type, ISA) to a kernel, the activation
// quantisation, and the split of the output into tiles over the thread pool.
#include <cstdlib>
#include <new>
#include <optional>

#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "core/error.h"

namespace vela::cpu {
namespace {

constexpr size_t kAlign = 64;
// Weight rows a thread keeps hot while it walks all token tiles (prefill): 16 rows of the widest
// default-model row (1536 x Q4_1 ~ 1 KB) stay in L1 alongside one token tile.
constexpr int64_t kRowChunk = 16;

const KernelSet& kernels_for(Isa isa) {
    switch (isa) {
        case Isa::Avx512:
            return kernels_avx512();
        case Isa::Avx2:
            return kernels_avx2();
        case Isa::Scalar:
            break;
    }
    return kernels_scalar();
}

std::optional<Q8Kind> q8_kind(DType t) {
    switch (t) {
        case DType::Q4_0:
            return Q8Kind::Q4_0;
        case DType::Q4_1:
            return Q8Kind::Q4_1;
        case DType::Q5_0:
            return Q8Kind::Q5_0;
        case DType::Q5_1:
            return Q8Kind::Q5_1;
        case DType::Q8_0:
            return Q8Kind::Q8_0;
        default:
            return std::nullopt;
    }
}

std::optional<KKind> k_kind(DType t) {
    switch (t) {
        case DType::Q2_K:
            return KKind::Q2_K;
        case DType::Q3_K:
            return KKind::Q3_K;
        case DType::Q4_K:
            return KKind::Q4_K;
        case DType::Q5_K:
            return KKind::Q5_K;
        case DType::Q6_K:
            return KKind::Q6_K;
        default:
            return std::nullopt;
    }
}

void check_params(const MatmulParams& p) {
    if (!supports_weight_type(p.w_type)) {
        fail("cpu matmul: no kernel for weight type {}", dtype_name(p.w_type));
    }
    const int64_t bs = dtype_info(p.w_type).block_size;
    if (p.k <= 0 || p.k % bs != 0) {
        fail<InvalidArgument>(
            "cpu matmul: k = {} is not a positive multiple of the {} block size {}", p.k,
            dtype_name(p.w_type), bs);
    }
    if (p.n < 0 || p.m < 0 || p.ldx < p.k || p.ldy < p.n) {
        fail<InvalidArgument>("cpu matmul: bad shape n={} k={} m={} ldx={} ldy={}", p.n, p.k, p.m,
                              p.ldx, p.ldy);
    }
}

// Runs fn(thread, row_begin, row_end, tok_begin, tok_end) over a split of the n x m output: by
// weight rows (in multiples of the tile height) when there are enough rows for every thread, else
// by tokens, so that n = 1 (or a tiny head) still uses the pool.
template <class F>
void split_output(int64_t n, int64_t m, ThreadPool& pool, F&& fn) {
    const int64_t row_tiles = (n + kTileRows - 1) / kTileRows;
    pool.run([&](int ith, int nth) {
        if (row_tiles >= 2 * nth || m < nth) {
            const int64_t t0 = row_tiles * ith / nth, t1 = row_tiles * (ith + 1) / nth;
            const int64_t r0 = t0 * kTileRows, r1 = t1 * kTileRows < n ? t1 * kTileRows : n;
            if (r0 < r1) fn(ith, r0, r1, int64_t{0}, m);
        } else {
            const int64_t c0 = m * ith / nth, c1 = m * (ith + 1) / nth;
            if (c0 < c1) fn(ith, int64_t{0}, n, c0, c1);
        }
    });
}

// Packing a row chunk pays off once it is reused by a few token tiles.
constexpr int64_t kMinTokensToPack = 8;

void matmul_q8(const MatmulParams& p, Q8Kind kind, const KernelSet& ks, Workspace& ws,
               ThreadPool& pool) {
    const int64_t nb = p.k / kQK;
    const size_t act_bytes =
        (static_cast<size_t>(p.m * nb) * sizeof(ActBlock) + kAlign - 1) / kAlign * kAlign;
    const bool pack = ks.packed_row_bytes != nullptr && p.m >= kMinTokensToPack;
    const size_t pack_bytes = pack ? ks.packed_row_bytes(nb) * kRowChunk : 0;
    std::byte* scratch = ws.scratch(act_bytes + pack_bytes * static_cast<size_t>(pool.size()));
    auto* xq = reinterpret_cast<ActBlock*>(scratch);
    pool.parallel_for(p.m, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) ks.quantize_act(p.x + c * p.ldx, xq + c * nb, p.k);
    });
    const int ki = static_cast<int>(kind);
    const size_t w_stride = row_bytes(p.w_type, p.k);
    const auto* w = static_cast<const uint8_t*>(p.w);
    split_output(p.n, p.m, pool, [&](int ith, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
        std::byte* packed = scratch + act_bytes + pack_bytes * static_cast<size_t>(ith);
        for (int64_t rc = r0; rc < r1; rc += kRowChunk) {
            const int64_t rc_end = rc + kRowChunk < r1 ? rc + kRowChunk : r1;
            // Either the raw rows or this chunk decoded once into the ISA's packed form.
            const uint8_t* rows = w + rc * w_stride;
            size_t stride = w_stride;
            TileFn tile = ks.q8_tile[ki];
            if (pack && c1 - c0 >= kMinTokensToPack) {
                stride = ks.packed_row_bytes(nb);
                ks.pack_rows[ki](rows, w_stride, static_cast<int>(rc_end - rc), nb, packed);
                rows = reinterpret_cast<const uint8_t*>(packed);
                tile = ks.packed_tile;
            }
            for (int64_t c = c0; c < c1; c += ks.tile_cols) {
                const int nc = static_cast<int>(c1 - c < ks.tile_cols ? c1 - c : ks.tile_cols);
                for (int64_t r = rc; r < rc_end; r += kTileRows) {
                    const int nr =
                        static_cast<int>(rc_end - r < kTileRows ? rc_end - r : kTileRows);
                    tile({rows + (r - rc) * stride, stride, xq + c * nb, nb, nb,
                          p.y + c * p.ldy + r, p.ldy, nr, nc});
                }
            }
        }
    });
}

// K-quants: activations quantised once per call to ActBlockKs, then the same walk as matmul_q8
// (row chunks x all tokens, tiles of 4 rows x tile_cols tokens) without packing.
void matmul_k(const MatmulParams& p, KKind kind, const KernelSet& ks, Workspace& ws,
              ThreadPool& pool) {
    const int64_t nb = p.k / kQKK;
    auto* xq =
        reinterpret_cast<ActBlockK*>(ws.scratch(static_cast<size_t>(p.m * nb) * sizeof(ActBlockK)));
    const KQuantKernels& kk = ks.kquant;
    pool.parallel_for(p.m, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) kk.quantize_act(p.x + c * p.ldx, xq + c * nb, p.k);
    });
    const int ki = static_cast<int>(kind);
    const KTileFn tile = kk.tile[ki] != nullptr ? kk.tile[ki] : kernels_scalar().kquant.tile[ki];
    const int tile_cols = kk.tile[ki] != nullptr ? kk.tile_cols : 1;
    const size_t w_stride = row_bytes(p.w_type, p.k);
    const auto* w = static_cast<const uint8_t*>(p.w);
    split_output(p.n, p.m, pool, [&](int, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
        for (int64_t rc = r0; rc < r1; rc += kRowChunk) {
            const int64_t rc_end = rc + kRowChunk < r1 ? rc + kRowChunk : r1;
            for (int64_t c = c0; c < c1; c += tile_cols) {
                const int nc = static_cast<int>(c1 - c < tile_cols ? c1 - c : tile_cols);
                for (int64_t r = rc; r < rc_end; r += kTileRows) {
                    const int nr =
                        static_cast<int>(rc_end - r < kTileRows ? rc_end - r : kTileRows);
                    tile({w + r * w_stride, w_stride, xq + c * nb, nb, nb, p.y + c * p.ldy + r,
                          p.ldy, nr, nc});
                }
            }
        }
    });
}

// Types without an integer kernel (F32/F16/BF16): each thread converts one weight row at a time
// to floats and dots it with every token of its range, so a row is converted once per matmul.
void matmul_float(const MatmulParams& p, const KernelSet& ks, Workspace& ws, ThreadPool& pool) {
    const size_t row_floats = (static_cast<size_t>(p.k) + 15) / 16 * 16;
    float* rows = reinterpret_cast<float*>(ws.scratch(row_floats * sizeof(float) * pool.size()));
    const size_t w_stride = row_bytes(p.w_type, p.k);
    const auto* w = static_cast<const uint8_t*>(p.w);
    pool.run([&](int ith, int nth) {
        const int64_t r0 = p.n * ith / nth, r1 = p.n * (ith + 1) / nth;
        float* buf = rows + row_floats * ith;
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* src = w + r * w_stride;
            const float* wr = buf;
            if (p.w_type == DType::F32) {
                wr = reinterpret_cast<const float*>(src);
            } else if (p.w_type == DType::F16) {
                ks.f16_to_f32(reinterpret_cast<const uint16_t*>(src), buf, p.k);
            } else {
                dequantize_row(p.w_type, src, buf, p.k);
            }
            for (int64_t c = 0; c < p.m; ++c)
                p.y[c * p.ldy + r] = ks.dot_f32(wr, p.x + c * p.ldx, p.k);
        }
    });
}

}  // namespace

Workspace::Workspace() : Workspace(default_isa()) {}
// Clamped to what the CPU runs: a higher level would die on an illegal instruction.
Workspace::Workspace(Isa isa)
    : isa_(static_cast<int>(isa) < static_cast<int>(detect_isa()) ? isa : detect_isa()) {}
Workspace::~Workspace() = default;
Workspace::Workspace(Workspace&&) noexcept = default;
Workspace& Workspace::operator=(Workspace&&) noexcept = default;

void Workspace::AlignedFree::operator()(std::byte* p) const {
    std::free(p);
}

std::byte* Workspace::scratch(size_t bytes) {
    if (bytes > capacity_) {
        const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
        void* mem = std::aligned_alloc(kAlign, rounded);
        if (mem == nullptr) throw std::bad_alloc();
        buf_.reset(static_cast<std::byte*>(mem));
        capacity_ = rounded;
    }
    return buf_.get();
}

void matmul(const MatmulParams& p, Workspace& ws, ThreadPool& pool) {
    check_params(p);
    if (p.n == 0 || p.m == 0) return;
    const KernelSet& ks = kernels_for(ws.isa());
    if (const std::optional<Q8Kind> kind = q8_kind(p.w_type)) {
        matmul_q8(p, *kind, ks, ws, pool);
    } else if (const std::optional<KKind> kkind = k_kind(p.w_type)) {
        matmul_k(p, *kkind, ks, ws, pool);
    } else {
        matmul_float(p, ks, ws, pool);
    }
}

}  // namespace vela::cpu
