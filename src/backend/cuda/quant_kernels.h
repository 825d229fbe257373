#pragma once
// CUDA kernels that read GGUF weights in their stored (quantised) formats: the decode matvec,
// the bf16 dequantisation feeding the prefill GEMM, and the embedding lookup. Plain C++ (no CUDA
// headers); values are those of vela::cpu::dequantize_row, bit for bit.
#include <cstdint>

#include "core/dtype.h"

namespace vela::cuda_backend {

// Largest number of activation rows matvec() takes (decode, and draft verification).
inline constexpr int64_t kMatvecMaxRows = 8;
// Largest number of matrices matvec_multi() takes in one launch (Q, K and V).
inline constexpr int kMatvecMaxMats = 3;

// Whether the kernels below read weights of this type.
bool supports_weight_type(DType t);

// y[m][n] (row stride ldy) = x[m][k] (row stride ldx) * W^T, where W is n rows of k elements of
// type t, each row row_bytes(t, k) bytes, rows contiguous. All pointers are device pointers.
// Weights are dequantised exactly in fp32 and products accumulated in fp32. 1 <= m <=
// kMatvecMaxRows. `stream` is a cudaStream_t (nullptr: default stream). Throws
// vela::InvalidArgument for an unsupported type, a k that is not a multiple of the type's block
// size, or m out of range. w must be 16-byte aligned (cudaMalloc'd, or a GGUF tensor at its 32-byte
// alignment); also InvalidArgument when it is not, or when n or k exceed 2^30.
// With `batch_invariant`, one kernel instance serves every m, so that a row's sums do not depend
// on how many rows come with it (the default picks an instance per m: the staged kernel's tile,
// and with it each lane's share of the sum, depends on m).
void matvec(DType t, const void* w, int64_t n, int64_t k, const float* x, int64_t ldx, int64_t m,
            float* y, int64_t ldy, void* stream, bool batch_invariant = false);

// Whether matvec_multi and matvec_glu are the faster way to multiply matrices of type t with at
// most n rows: they run the one-CTA-per-row kernel, which matvec() itself picks for weights
// without decoding and for quantised matrices of few rows (quant_kernels.cu says why); else
// callers compose matvec() and elementwise ops. VELA_MATVEC=staged|rows1|rows2 overrides the
// choice (benchmarks).
bool matvec_fuses(DType t, int64_t n);

// One launch for several matrices of type t and row length k against the same activations x (m
// rows of k, contiguous): outs[j].y (m x outs[j].n, contiguous) = x * W_j^T. Same exactness and
// requirements as matvec(); 1 to kMatvecMaxMats matrices, each with at least one row.
struct MatvecOutput {
    const void* w;
    int64_t n;
    float* y;
};
void matvec_multi(DType t, const MatvecOutput* outs, int count, int64_t k, const float* x,
                  int64_t m, void* stream);

// The first half of a gated FFN in one launch: y (m x n, contiguous) = act(x * G^T) * (x * U^T)
// for gate and up matrices G and U (n rows of k, type t), act SiLU (SwiGLU) or, with gelu, GELU
// in its tanh form (GeGLU), computed as the CUDA silu_mul / gelu_mul kernels do.
void matvec_glu(DType t, const void* gate, const void* up, int64_t n, int64_t k, const float* x,
                int64_t m, float* y, bool gelu, void* stream);

// out (rows x cols, row-major, bf16 as uint16 bits, round-to-nearest-even) = W rows [0, rows)
// dequantised: the operand of the tensor-core GEMM used for prefill. w and out 16-byte aligned.
void dequantize_bf16(DType t, const void* w, int64_t rows, int64_t cols, uint16_t* out,
                     void* stream);

// out[i][0 .. cols) = row ids[i] of `table` (rows of cols elements of type t) dequantised to fp32,
// for i < n; ids is a device array of int32 (each a valid row: not checked). table and out
// 16-byte aligned.
void embed_rows(DType t, const void* table, int64_t cols, const int32_t* ids, int64_t n, float* out,
                void* stream);

}  // namespace vela::cuda_backend
