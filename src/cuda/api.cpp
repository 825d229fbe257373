// Library boundary of the CUDA attention kernels: validates Params (typed errors naming the
// field at fault), plans the decode split and turns CUDA error codes into vela::Error.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "cuda/attention_params.h"
#include "cuda/launch.h"

namespace vela::cuda {
namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) fail<Error>("CUDA error in {}: {}", what, cudaGetErrorString(e));
}

// The kernel instances launch.h lists are the only ones built (dispatch.cuh launches exactly
// those): any other dtype, KV format or head dim is named here, with what is supported.
template <int... kDims>
void check_head_dim(detail::HeadDims<kDims...> dims, int head_dim, const char* kernel) {
    if (dims.contains(head_dim)) return;
    std::string supported;
    ((supported += (supported.empty() ? "" : ", ") + std::to_string(kDims)), ...);
    fail<InvalidArgument>("{}: head_dim {} unsupported (instances: {})", kernel, head_dim,
                          supported);
}

void check_dtype(Dtype dtype, const char* kernel) {
    if (dtype != Dtype::kF16 && dtype != Dtype::kBf16)
        fail<InvalidArgument>("{}: dtype {} unsupported (kF16 or kBf16)", kernel,
                              static_cast<int>(dtype));
}

template <class Dims>
void check_heads(Dims dims, int head_dim, int num_heads, int num_kv_heads, const char* kernel) {
    check_head_dim(dims, head_dim, kernel);
    if (num_heads <= 0 || num_kv_heads <= 0 || num_heads % num_kv_heads != 0)
        fail<InvalidArgument>("{}: num_heads {} is not a multiple of num_kv_heads {}", kernel,
                              num_heads, num_kv_heads);
}

void check_paged(const PagedKv& kv, const char* kernel) {
    if (kv.k_cache == nullptr || kv.v_cache == nullptr || kv.block_size <= 0 ||
        kv.block_table_stride <= 0)
        fail<InvalidArgument>(
            "{}: paged K/V needs caches, block_size > 0 (got {}) and "
            "block_table_stride > 0 (got {})",
            kernel, kv.block_size, kv.block_table_stride);
}

void check_scales(const PagedKv& kv, int head_dim, const char* kernel) {
    if (kv.k_scale == nullptr || kv.v_scale == nullptr || kv.scale_block_stride <= 0 ||
        kv.token_stride % head_dim != 0 || kv.head_stride % head_dim != 0)
        fail<InvalidArgument>(
            "{}: 8-bit K/V needs k_scale, v_scale, scale_block_stride > 0 (got {}) and row "
            "strides that are multiples of head_dim",
            kernel, kv.scale_block_stride);
}

// Q4 K/V (PagedKv): its pairs, the residual of open blocks, group sizes of 32, 64 or 128 within
// the head, whole 16-key tiles in a block.
void check_q4(const PagedKv& kv, int head_dim, const char* kernel) {
    if (kv.k_scale == nullptr || kv.v_scale == nullptr || kv.scale_block_stride <= 0 ||
        kv.k_residual == nullptr || kv.residual_of == nullptr)
        fail<InvalidArgument>(
            "{}: Q4 K/V needs k_scale, v_scale, scale_block_stride > 0, k_residual and "
            "residual_of",
            kernel);
    if (kv.kv_group != 32 && kv.kv_group != 64 && kv.kv_group != 128)
        fail<InvalidArgument>("{}: Q4 kv_group must be 32, 64 or 128, got {}", kernel,
                              kv.kv_group);
    if (head_dim % kv.kv_group != 0 && kv.kv_group < head_dim)
        fail<InvalidArgument>("{}: Q4 kv_group {} does not divide head_dim {}", kernel,
                              kv.kv_group, head_dim);
    if (kv.block_size % 16 != 0)
        fail<InvalidArgument>("{}: Q4 K/V needs a block size that is a multiple of 16, got {}",
                              kernel, kv.block_size);
}

// Split length for a planned decode: a multiple of 32 keys, so 16-key warp tiles never straddle.
int split_len(const DecodeParams& p) {
    const int per = (std::max(p.max_seqlen_k, 1) + p.num_splits - 1) / p.num_splits;
    return (per + 31) / 32 * 32;
}

}  // namespace

bool device_available() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

bool prefill_wgmma_available() {
#ifdef VELA_CUDA_SM90A
    int dev = 0, major = 0, minor = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
           major == 9 && minor == 0;
#else
    return false;  // built without sm_90a code
#endif
}

void prefill_forward(const PrefillParams& p, void* stream) {
    // kAuto keeps head_dim 64 block-sparse masks on the mma.sync kernel: its 64 x 64 tiles are
    // the mask's granularity, while a wgmma tile (192 x 128 at head_dim 64) is skipped only when
    // all its entries are zero; at head_dim 128 the wgmma kernel's speed outweighs that down to
    // ~25% density (docs/benchmarks-cuda.md).
    const bool paged_q4 = p.paged.block_table != nullptr && p.kv_format == KvFormat::kQ4;
    const bool paged_8bit = p.paged.block_table != nullptr && (is_8bit(p.kv_format) || paged_q4);
    const bool tree = p.tree_offset != nullptr;
    const bool wgmma = p.kernel == PrefillKernel::kWgmma ||
                       (p.kernel == PrefillKernel::kAuto && prefill_wgmma_available() &&
                        !paged_8bit && !tree && (p.block_mask == nullptr || p.head_dim >= 128));
    if (wgmma && !prefill_wgmma_available())
        fail<InvalidArgument>(
            "prefill_forward: the wgmma kernel needs an sm_90a build and an sm_90 device");
    check_dtype(p.dtype, "prefill_forward");
    if (wgmma)
        check_heads(detail::PrefillSm90HeadDims{}, p.head_dim, p.num_heads, p.num_kv_heads,
                    "prefill_forward (wgmma)");
    else
        check_heads(detail::PrefillHeadDims{}, p.head_dim, p.num_heads, p.num_kv_heads,
                    "prefill_forward (mma.sync)");
    if (p.batch < 0 || p.max_seqlen_q < 0 || p.q == nullptr || p.o == nullptr ||
        p.cu_seqlens_q == nullptr)
        fail<InvalidArgument>("prefill_forward: q, o and cu_seqlens_q are required (batch {})",
                              p.batch);
    if (wgmma && paged_8bit)
        fail<InvalidArgument>(
            "prefill_forward: 8-bit and Q4 paged K/V run on the mma.sync kernel only");
    if (tree && (wgmma || !p.causal || p.tree_mask == nullptr))
        fail<InvalidArgument>(
            "prefill_forward: token-tree masks need tree_mask, causal and the mma.sync kernel");
    if (p.paged.block_table != nullptr) {
        check_paged(p.paged, "prefill_forward");
        if (p.seqlens_k == nullptr) fail<InvalidArgument>("prefill_forward: paged needs seqlens_k");
        if (paged_q4) {
            check_q4(p.paged, p.head_dim, "prefill_forward");
        } else if (paged_8bit) {
            check_scales(p.paged, p.head_dim, "prefill_forward");
        }
    } else if (p.k == nullptr || p.v == nullptr || p.cu_seqlens_k == nullptr) {
        fail<InvalidArgument>("prefill_forward: contiguous K/V needs k, v and cu_seqlens_k");
    }
    if (!(p.softmax_scale > 0.f))
        fail<InvalidArgument>("prefill_forward: softmax_scale must be > 0, got {}",
                              p.softmax_scale);
    if (p.total_q < 0 || p.total_k < 0)
        fail<InvalidArgument>("prefill_forward: negative total_q {} / total_k {}", p.total_q,
                              p.total_k);
    if (p.block_mask != nullptr && p.block_mask_row_stride <= 0)
        fail<InvalidArgument>("prefill_forward: block_mask needs block_mask_row_stride > 0, got {}",
                              p.block_mask_row_stride);
    if (p.max_seqlen_q == 0 || p.batch == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    check(wgmma ? detail::launch_prefill_sm90(p, s) : detail::launch_prefill(p, s),
          "prefill_forward");
}

size_t backward_workspace_bytes(const BackwardParams& p) {
    return sizeof(float) * static_cast<size_t>(std::max(p.total_q, 0)) * p.num_heads *
           (p.head_dim + 1);
}

void prefill_backward(const BackwardParams& p, void* stream) {
    check_dtype(p.dtype, "prefill_backward");
    check_heads(detail::BackwardHeadDims{}, p.head_dim, p.num_heads, p.num_kv_heads,
                "prefill_backward");
    if (p.batch < 0 || p.total_q < 0 || p.max_seqlen_q < 0 || p.max_seqlen_k < 0)
        fail<InvalidArgument>("prefill_backward: negative batch {} / total_q {} / max_seqlen",
                              p.batch, p.total_q);
    if (p.q == nullptr || p.k == nullptr || p.v == nullptr || p.o == nullptr || p.d_o == nullptr ||
        p.lse == nullptr || p.cu_seqlens_q == nullptr || p.cu_seqlens_k == nullptr)
        fail<InvalidArgument>("prefill_backward: q, k, v, o, d_o, lse and cu_seqlens are required");
    if (p.dq == nullptr || p.dk == nullptr || p.dv == nullptr || p.workspace == nullptr)
        fail<InvalidArgument>("prefill_backward: dq, dk, dv and workspace are required");
    if (!(p.softmax_scale > 0.f))
        fail<InvalidArgument>("prefill_backward: softmax_scale must be > 0, got {}",
                              p.softmax_scale);
    // Same rule as the forward: the wgmma kernel on sm_90 devices of an sm_90a build.
    const bool wgmma = p.kernel == PrefillKernel::kWgmma ||
                       (p.kernel == PrefillKernel::kAuto && prefill_wgmma_available());
    if (wgmma && !prefill_wgmma_available())
        fail<InvalidArgument>(
            "prefill_backward: the wgmma kernel needs an sm_90a build and an sm_90 device");
    check(detail::launch_backward(p, wgmma, static_cast<cudaStream_t>(stream)), "prefill_backward");
}

// Split count minimising the estimated time in keys: waves of CTAs x (keys per split + a fixed
// per-CTA cost: first-load latency, warp merge, finish counter), plus, with more than one split,
// the tail of the last CTA (partials, counter, the combine's L2 round trips). Measured on H200
// (docs/benchmarks-cuda.md, split sweep): past one wave, more and shorter CTAs only add fixed
// costs, and one split (o written directly) wins whenever it nearly fills the device. Split
// counts whose rounding leaves trailing splits empty are skipped. Always prepares the kernel
// (decode_prepare), also when the caller set num_splits.
void decode_plan(DecodeParams& p, int device_sm_count) {
    const int ctas_per_sm = detail::decode_prepare(p);
    if (p.num_splits > 0) return;
    const bool quantised = is_8bit(p.kv_format);
    // About 2-3 us of a CTA slot, in keys streamed per slot in that time (8-bit keys are half
    // the bytes). The 8-bit constant was fitted at 3 CTAs per SM; at 2 it picks 1-4 splits where
    // 3 CTAs would take 3-10, and every row measured faster so (H100).
    const int64_t cta_cost = quantised ? 128 : 64;
    const int keys = std::max(p.max_seqlen_k, 1);
    const int64_t per_split = std::max<int64_t>(1, decode_counters(p));
    const int64_t slots = int64_t{std::max(device_sm_count, 1)} * ctas_per_sm;
    const int lo = (keys + detail::kDecodeMaxSplitLen - 1) / detail::kDecodeMaxSplitLen;
    const int hi = std::min(std::max(lo, (keys + 31) / 32), detail::kDecodeMaxSplits);
    int64_t best_cost = -1;
    for (int s = lo; s <= hi; ++s) {
        const int len = ((keys + s - 1) / s + 31) / 32 * 32;  // as split_len()
        if ((keys + len - 1) / len < s) continue;
        const int64_t waves = (per_split * s + slots - 1) / slots;
        // Partial write, finish counter and the combine's L2 round trips sit at the tail.
        const int64_t combine = s > 1 ? cta_cost * (2 + (s + 15) / 16) : 0;
        const int64_t cost = waves * (len + cta_cost) + combine;
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            p.num_splits = s;
        }
    }
    if (p.num_splits == 0) p.num_splits = lo;  // every count left splits empty: the fewest
}

size_t decode_workspace_bytes(const DecodeParams& p) {
    return detail::decode_counter_bytes(p) + sizeof(float) *
                                                 static_cast<size_t>(detail::decode_slots(p)) *
                                                 std::max(p.num_splits, 1) * (p.head_dim + 1);
}

void decode_forward(const DecodeParams& p, void* stream) {
    check_dtype(p.dtype, "decode_forward");
    if (p.kv_format != KvFormat::kF16 && p.kv_format != KvFormat::kBf16 &&
        p.kv_format != KvFormat::kInt8 && p.kv_format != KvFormat::kFp8E4M3 &&
        p.kv_format != KvFormat::kQ4)
        fail<InvalidArgument>("decode_forward: kv_format {} unsupported",
                              static_cast<int>(p.kv_format));
    if (p.kv_format == KvFormat::kQ4) {
        check_q4(p.paged, p.head_dim, "decode_forward");
        if (p.cu_seqlens_q != nullptr || p.kv_ready)
            fail<InvalidArgument>(
                "decode_forward: Q4 K/V takes one row a sequence, without kv_ready (the step's "
                "block quantisation writes older keys)");
    }
    check_heads(detail::DecodeHeadDims{}, p.head_dim, p.num_heads, p.num_kv_heads,
                "decode_forward");
    check_paged(p.paged, "decode_forward");
    const int group = p.num_heads / p.num_kv_heads;
    if (group > detail::kDecodeMaxGroup)
        fail<InvalidArgument>("decode_forward: {} query heads per kv head (max {})", group,
                              detail::kDecodeMaxGroup);
    if (p.q == nullptr || p.o == nullptr || p.seqlens_k == nullptr || p.workspace == nullptr)
        fail<InvalidArgument>("decode_forward: q, o, seqlens_k and workspace are required");
    if (p.num_splits <= 0 || p.num_splits > detail::kDecodeMaxSplits)
        fail<InvalidArgument>("decode_forward: num_splits {} (call decode_plan() first; max {})",
                              p.num_splits, detail::kDecodeMaxSplits);
    if (is_8bit(p.kv_format)) check_scales(p.paged, p.head_dim, "decode_forward");
    if (p.cu_seqlens_q != nullptr &&
        (p.max_seqlen_q < 1 || p.max_seqlen_q > DecodeParams::kMaxRows))
        fail<InvalidArgument>("decode_forward: max_seqlen_q {} with cu_seqlens_q (1 to {})",
                              p.max_seqlen_q, DecodeParams::kMaxRows);
    const int len = split_len(p);
    if (len > detail::kDecodeMaxSplitLen)
        fail<InvalidArgument>("decode_forward: {} splits leave {} keys a split (max {})",
                              p.num_splits, len, detail::kDecodeMaxSplitLen);
    check(detail::launch_decode(p, len, static_cast<cudaStream_t>(stream)), "decode_forward");
}

}  // namespace vela::cuda
