#pragma once
// CPU compute kernels of the forward pass. Matmuls over quantised weights quantise the
// activations to 8-bit blocks once per call and run integer dot products in the widest ISA the
// machine has (chosen once per Workspace, see isa.h); the elementwise ops are plain loops.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "backend/cpu/isa.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace vela::cpu {

// Scratch memory reused across calls (quantised activations, dequantised weight rows); one
// per model runner. Not thread-safe: one matmul at a time per Workspace.
class Workspace {
  public:
    // Uses the best ISA of this machine, lowered by VELA_CPU_ISA=scalar|avx2|avx512 if set.
    Workspace();
    explicit Workspace(Isa isa);
    ~Workspace();
    Workspace(Workspace&&) noexcept;
    Workspace& operator=(Workspace&&) noexcept;

    Isa isa() const { return isa_; }
    // A 64-byte aligned buffer of at least `bytes`, valid until the next call.
    std::byte* scratch(size_t bytes);

  private:
    struct AlignedFree {
        void operator()(std::byte* p) const;
    };
    Isa isa_;
    std::unique_ptr<std::byte, AlignedFree> buf_;
    size_t capacity_ = 0;
};

struct MatmulParams {
    const void* w;   // weight matrix, n rows of k elements, each row row_bytes(w_type, k) bytes
    DType w_type;    // F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K
    int64_t n;       // output features (weight rows)
    int64_t k;       // input features
    const float* x;  // m rows of k floats, row stride ldx (>= k)
    int64_t ldx;
    int64_t m;  // number of tokens (1 for decode, hundreds for prefill)
    float* y;   // m rows of n floats, row stride ldy (>= n)
    int64_t ldy;
};

// y = x * W^T, parallel over the pool. Tiles of 4 weight rows x several tokens so each weight
// block is loaded once per tile of tokens. Throws vela::Error for an unsupported weight type
// and InvalidArgument for a k that is not a multiple of the type's block size.
void matmul(const MatmulParams& p, Workspace& ws, ThreadPool& pool);

// Whether matmul/dequantize_row accept this weight type.
bool supports_weight_type(DType type);

// Dequantize one row of k elements (embedding lookup, tests); k a multiple of the block size.
void dequantize_row(DType type, const void* src, float* dst, int64_t k);

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps);  // y may == x
void add(const float* a, const float* b, float* y, int64_t n);           // y may alias a or b
void silu_mul(const float* gate, const float* up, float* y, int64_t n);  // y = silu(gate)*up
void gelu_mul(const float* gate, const float* up, float* y, int64_t n);  // y = gelu(gate)*up
void softmax(float* x, int64_t n);                                       // in place, max-subtracted

// Rotary embedding for one token's heads, in place: x has n_heads rows of head_dim floats,
// the first rot_dim dims rotate. neox=false: pairs (2i, 2i+1) (Llama GGUF layout); neox=true:
// pairs (i, i + rot_dim/2). cos/sin have rot_dim/2 entries for this token's position.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float* cos,
          const float* sin, bool neox);

}  // namespace vela::cpu
