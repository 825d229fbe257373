#pragma once
// Launchers of the CUDA backend's elementwise and data-movement kernels (ops.cu). Plain C++ (no
// CUDA headers): every pointer is a device pointer, every `stream` a cudaStream_t. Shapes are
// checked by the caller (cuda_backend.cpp); these only launch, and report launch errors through
// the CUDA error state the caller checks.
#include <cstdint>

#include "backend/logit_penalty.h"

namespace vela::cuda_backend {

// Storage of 16-bit floats: the KV cache and the tensor-core operands.
enum class Half : uint8_t { F16, BF16 };

// Each of `rows` rows of `cols` floats: y = x / rms(x) * w (w has cols entries); y may be x.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, float eps,
              void* stream);
// x += d, then each row y = x / rms(x) * w; y may be d.
void add_rms_norm(float* x, const float* d, const float* w, float* y, int64_t rows, int64_t cols,
                  float eps, void* stream);
void add(float* y, const float* x, int64_t n, void* stream);                           // y += x
void add_bias(float* y, const float* bias, int64_t rows, int64_t cols, void* stream);  // rows
void scale(float* y, float factor, int64_t n, void* stream);
void silu_mul(const float* gate, const float* up, float* y, int64_t n, void* stream);
void gelu_mul(const float* gate, const float* up, float* y, int64_t n, void* stream);  // tanh
// Rotates each row's n_heads x head_dim in place; cos/sin hold rot_dim / 2 angles per row.
void rope(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
          const float* cos, const float* sin, bool neox, void* stream);
// out[i] = x[index[i]] (rows of cols floats), i < n.
void gather_rows(const float* x, int64_t cols, const int32_t* index, int64_t n, float* out,
                 void* stream);
// ids[r] = the index of row r's largest value (ties to the lowest index, NaN never the largest),
// -1 when no value of the row is above -inf; `rows` rows of `cols` floats.
void argmax_rows(const float* x, int64_t rows, int64_t cols, int32_t* ids, void* stream);
// The k (1..1024) largest values of each row, ranked (value desc, index asc), into rows x k
// tokens / values; NaN and -inf are never listed, short rows pad with -1 / -inf (top_k.cu).
void top_k_rows(const float* x, int64_t rows, int64_t cols, int k, int32_t* tokens, float* values,
                void* stream);
// lse[r] = log(sum(exp(row r))) as sampling::log_sum_exp computes it: the exponentials of the
// differences from the row's maximum summed in double; a non-finite maximum is returned as is.
void logsumexp_rows(const float* x, int64_t rows, int64_t cols, double* lse, void* stream);
// Backend::apply_penalties on the device: each thread changes one entry's logit,
// x[row * cols + token].
void apply_penalties(float* x, int64_t cols, const LogitPenalty* entries, int64_t n,
                     void* stream);
// Conversions between float rows and 16-bit rows (round to nearest even).
void to_half(const float* x, int64_t n, Half h, void* out, void* stream);
void from_half(const void* x, int64_t n, Half h, float* out, void* stream);

}  // namespace vela::cuda_backend
