#pragma once
// The interface between matmul.cpp and the per-ISA kernel files (kernels_<isa>.cpp). Each ISA
// fills one KernelSet; matmul.cpp picks the set once from Workspace::isa() and never branches
// on the ISA again. Kept to PODs and function pointers (see quant_blocks.h for why).
#include <cstddef>
#include <cstdint>

#include "backend/cpu/quant_blocks.h"

namespace vela::cpu {

// Weight types whose blocks of 32 take the integer path against ActBlocks.
enum class Q8Kind { Q4_0 = 0, Q4_1, Q5_0, Q5_1, Q8_0, Count };

constexpr int kTileRows = 4;     // weight rows per micro-kernel call
constexpr int kMaxTileCols = 4;  // tokens per micro-kernel call (an ISA may use fewer)

// One micro-kernel call: y[c * ldy + r] = dot(weight row r, activation row c) for r < nr,
// c < nc, over nb blocks of 32.
struct TileArgs {
    const uint8_t* w;   // first weight row
    size_t w_stride;    // bytes between weight rows
    const ActBlock* x;  // first activation row
    int64_t x_stride;   // blocks between activation rows
    int64_t nb;
    float* y;
    int64_t ldy;
    int nr;  // 1..kTileRows
    int nc;  // 1..KernelSet::tile_cols
};
using TileFn = void (*)(const TileArgs&);

// Weight types whose super-blocks of 256 take the integer path against ActBlockKs.
enum class KKind { Q2_K = 0, Q3_K, Q4_K, Q5_K, Q6_K, Count };

// As TileArgs, over nb super-blocks of 256 against ActBlockK rows.
struct KTileArgs {
    const uint8_t* w;
    size_t w_stride;
    const ActBlockK* x;
    int64_t x_stride;  // super-blocks between activation rows
    int64_t nb;
    float* y;
    int64_t ldy;
    int nr;  // 1..kTileRows
    int nc;  // 1..KQuantKernels::tile_cols
};
using KTileFn = void (*)(const KTileArgs&);

// The K-quant kernels of one ISA (kquant_<isa>.cpp). A null tile means this ISA has none for
// that type and matmul uses the scalar one (same ActBlockK input, so the sets mix freely).
struct KQuantKernels {
    int tile_cols;
    // k floats (k % 256 == 0) to k/256 ActBlockKs, q = round-half-even(x / d), d = amax / 127.
    void (*quantize_act)(const float* x, ActBlockK* out, int64_t k);
    KTileFn tile[static_cast<int>(KKind::Count)];
};

KQuantKernels kquant_kernels_scalar();
KQuantKernels kquant_kernels_avx2();    // only call where the CPU has AVX2+FMA+F16C
KQuantKernels kquant_kernels_avx512();  // only call where the CPU has AVX-512 F/BW/VL/VNNI

struct KernelSet {
    int tile_cols;  // the nc this ISA's kernels are fastest at
    TileFn q8_tile[static_cast<int>(Q8Kind::Count)];
    // k floats (k % 32 == 0) to k/32 ActBlocks, q = round-half-even(x / d), d = amax / 127.
    void (*quantize_act)(const float* x, ActBlock* out, int64_t k);
    float (*dot_f32)(const float* a, const float* b, int64_t k);
    void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t k);
    // Optional (null where an ISA has none): weight rows decoded once into the ISA's own form,
    // so a prefill reuses one decode for every token tile. pack_rows writes nr rows of
    // packed_row_bytes(nb) each (64-byte aligned); packed_tile reads them with
    // TileArgs::w_stride = packed_row_bytes(nb).
    size_t (*packed_row_bytes)(int64_t nb);
    void (*pack_rows[static_cast<int>(Q8Kind::Count)])(const uint8_t* w, size_t w_stride, int nr,
                                                       int64_t nb, void* out);
    TileFn packed_tile;
    KQuantKernels kquant;
};

const KernelSet& kernels_scalar();
const KernelSet& kernels_avx2();    // only call where the CPU has AVX2+FMA+F16C
const KernelSet& kernels_avx512();  // only call where the CPU has AVX-512 F/BW/VL/VNNI

}  // namespace vela::cpu
