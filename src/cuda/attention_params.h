#pragma once
// Host API of the CUDA attention kernels. Plain C++ (no CUDA headers), so engine code built
// without nvcc can fill these structs. All pointers are device pointers; strides are in
// elements. One Params struct per kernel, validated once at the launch boundary.
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace vela::cuda {

enum class Dtype : uint8_t { kF16, kBf16 };

// Storage format of a paged K/V cache. The 8-bit formats carry one float scale per stored row (one
// token of one kv head): value = stored * scale (PagedKv). kQ4 is KIVI's 4-bit (PagedKv's Q4
// fields): V per token, K per channel of each full block, the open block's keys in fp16.
enum class KvFormat : uint8_t { kF16, kBf16, kInt8, kFp8E4M3, kQ4 };

constexpr bool is_8bit(KvFormat f) {
    return f == KvFormat::kInt8 || f == KvFormat::kFp8E4M3;
}

// Which prefill forward kernel runs. kAuto: the Hopper wgmma kernel when the library was built
// for sm_90a and the device is sm_90, except for block-sparse masks at head_dim 64 (the mma.sync
// kernel's 64 x 64 tiles skip masked tiles at the mask's granularity); else the mma.sync kernel
// (sm_80+). Tests and benchmarks force one; forcing kWgmma where prefill_wgmma_available() is
// false is an InvalidArgument.
enum class PrefillKernel : uint8_t { kAuto, kMmaSync, kWgmma };

// Paged K/V: cache[num_blocks][block_size][num_kv_heads][head_dim]; sequence b's token t lives
// in block block_table[b * block_table_stride + t / block_size] at row t % block_size.
struct PagedKv {
    const void* k_cache = nullptr;
    const void* v_cache = nullptr;
    const int32_t* block_table = nullptr;
    int block_table_stride = 0;
    int block_size = 0;
    int64_t block_stride = 0;  // elements between consecutive blocks
    int64_t token_stride = 0;  // elements between rows within a block
    int64_t head_stride = 0;   // elements between kv heads within a row
    // 8-bit formats only: the scale of the row at element offset blk * block_stride + r (r =
    // row * token_stride + kvh * head_stride) is k_scale[blk * scale_block_stride + r / head_dim]
    // (v_scale for V). Dense scale arrays laid out as the rows: scale_block_stride =
    // block_stride / head_dim; scales stored in each block after its rows: k_scale points at
    // the first block's, scale_block_stride = the block's bytes / 4.
    const float* k_scale = nullptr;
    const float* v_scale = nullptr;
    int64_t scale_block_stride = 0;

    // kQ4 (kv/kv_quant.h's codecs): rows of head_dim / 2 bytes of codes (8 values in 4 bytes:
    // byte i holds value i low, i + 4 high), the strides above in bytes. k_scale / v_scale point
    // at the first block's fp16 pairs, scale_block_stride = the block's bytes / 4: per kv head
    // K's scales of every channel then its mins ([2][head_dim]), V's (scale, min) of each group of
    // kv_group values of each row ([block_size][head_dim / kv_group][2]). K of a block is
    // quantised once the block is full; until then its keys live in fp16 at k_residual, slot
    // residual_of[block] ([slot][num_kv_heads][block_size][head_dim]). A query reads its own
    // block from there unless it is the block's last row (kv/kivi_keys.h's rule), every other
    // block from its codes. block_size a multiple of 16.
    int kv_group = 32;
    const void* k_residual = nullptr;
    const int32_t* residual_of = nullptr;
};

// Prefill forward (FlashAttention-2 style, tensor cores). Varlen batch: sequence b owns query
// rows [cu_seqlens_q[b], cu_seqlens_q[b+1]) of q/o and key rows [cu_seqlens_k[b],
// cu_seqlens_k[b+1]) of k/v (contiguous mode) or seqlens_k[b] tokens of paged (paged mode).
// Causal masking is bottom-right aligned: query i of a sequence with lq queries and lk keys sees
// key j iff j <= i + lk - lq (the queries are the last lq tokens). A sliding window further
// requires j >= i + lk - lq - window_left.
struct PrefillParams {
    PrefillKernel kernel = PrefillKernel::kAuto;
    Dtype dtype = Dtype::kBf16;
    int head_dim = 0;  // 64 or 128; 256 on the wgmma kernel only
    int num_heads = 0;
    int num_kv_heads = 0;  // divides num_heads (GQA / MQA)
    int batch = 0;
    int max_seqlen_q = 0;  // host-side bound on cu_seqlens_q differences: sizes the grid

    const void* q = nullptr;  // [total_q][num_heads][head_dim] with the strides below
    int64_t q_row_stride = 0, q_head_stride = 0;
    const int32_t* cu_seqlens_q = nullptr;  // [batch + 1]

    // Contiguous K/V (used when paged.block_table == nullptr).
    const void* k = nullptr;
    const void* v = nullptr;
    int64_t kv_row_stride = 0, kv_head_stride = 0;
    const int32_t* cu_seqlens_k = nullptr;  // [batch + 1]

    // Paged K/V (used when paged.block_table != nullptr); lengths come from seqlens_k. With
    // kv_format kInt8 or kFp8E4M3 the paged cache holds 8-bit rows with their scales (the
    // mma.sync kernel only: kAuto picks it); any 16-bit value means K/V are in `dtype`.
    PagedKv paged;
    const int32_t* seqlens_k = nullptr;  // [batch]
    KvFormat kv_format = KvFormat::kF16;

    // Optional host copies of cu_seqlens_q[batch] and cu_seqlens_k[batch] (the row counts of q
    // and of contiguous k/v). Given, the Hopper kernel loads contiguous Q/K/V with TMA bulk
    // copies bounded by them; 0 = unknown (every thread copies with cp.async instead). TMA
    // tiles may cover the next sequence's first K/V rows, which are masked (P = 0): K/V values
    // must be finite.
    int total_q = 0, total_k = 0;

    void* o = nullptr;  // same layout and dtype as q
    int64_t o_row_stride = 0, o_head_stride = 0;
    float* lse = nullptr;  // optional [total_q][num_heads], natural log; -inf for empty rows

    float softmax_scale = 0.f;  // usually 1/sqrt(head_dim)
    bool causal = false;
    int window_left = -1;  // < 0: unlimited

    // Optional block-sparse mask on top of causal/window: the tile of query rows
    // [qb * kBlockMaskSize, +kBlockMaskSize) and keys [kb * kBlockMaskSize, +kBlockMaskSize) of
    // sequence b, head h (indices within the sequence) is computed iff
    // block_mask[b * batch_stride + h * head_stride + qb * row_stride + kb] != 0; skipped tiles
    // cost neither loads nor math. A zero stride shares the mask across batch or heads.
    static constexpr int kBlockMaskSize = 64;
    const uint8_t* block_mask = nullptr;
    int64_t block_mask_batch_stride = 0, block_mask_head_stride = 0, block_mask_row_stride = 0;

    // Optional token-tree masks (speculative verification), with causal: sequence b with
    // tree_offset[b] >= 0 has an lq x lq byte mask at tree_mask + tree_offset[b] (row-major;
    // nonzero at (i, j): query i sees the key of the sequence's new row j, key lk - lq + j).
    // Its queries see every older key; tree_offset[b] < 0 is plain causal. The mma.sync kernel
    // only (kAuto picks it; kWgmma with a tree is an InvalidArgument).
    const uint8_t* tree_mask = nullptr;
    const int64_t* tree_offset = nullptr;  // [batch]
};

// Backward of the prefill forward for contiguous K/V (FlashAttention-2 recomputation: S and P
// are rebuilt tile by tile from q, k and the forward's LSE, never stored). Shapes, varlen
// layout, causal/window masking and GQA as in PrefillParams; dK/dV of a kv head are the sums
// over its query heads. q, o, d_o and dq share the q strides; k, v, dk and dv the kv strides.
// `kernel` picks the dK/dV kernel with the forward's rule (kAuto: wgmma on sm_90 devices of an
// sm_90a build, else mma.sync; forcing kWgmma elsewhere is an InvalidArgument).
struct BackwardParams {
    PrefillKernel kernel = PrefillKernel::kAuto;
    Dtype dtype = Dtype::kBf16;
    int head_dim = 0;  // 64 or 128
    int num_heads = 0;
    int num_kv_heads = 0;
    int batch = 0;
    int max_seqlen_q = 0, max_seqlen_k = 0;  // host-side bounds: size the grids
    int total_q = 0;                         // cu_seqlens_q[batch]: sizes the workspace

    const void* q = nullptr;
    const void* o = nullptr;    // forward output
    const void* d_o = nullptr;  // gradient of the loss w.r.t. o
    int64_t q_row_stride = 0, q_head_stride = 0;
    const int32_t* cu_seqlens_q = nullptr;
    const void* k = nullptr;
    const void* v = nullptr;
    int64_t kv_row_stride = 0, kv_head_stride = 0;
    const int32_t* cu_seqlens_k = nullptr;
    const float* lse = nullptr;  // [total_q][num_heads] from prefill_forward, natural log

    void* dq = nullptr;
    void* dk = nullptr;
    void* dv = nullptr;
    void* workspace = nullptr;  // backward_workspace_bytes() bytes of device memory

    float softmax_scale = 0.f;
    bool causal = false;
    int window_left = -1;
};

// Decode over paged K/V: split-K Flash-Decoding in one launch. One query row per sequence, or a
// few (verifying speculative drafts, cu_seqlens_q). Each CTA owns one kv head (all its query
// heads packed, and with cu_seqlens_q as many of the sequence's rows as fit its 16 mma columns)
// and one slice of the context; the last CTA of a (sequence, kv head, rows) to finish merges the
// slices through their LSEs.
struct DecodeParams {
    Dtype dtype = Dtype::kBf16;  // dtype of q and o
    KvFormat kv_format = KvFormat::kBf16;
    int head_dim = 0;  // 64 or 128
    int num_heads = 0;
    int num_kv_heads = 0;  // num_heads / num_kv_heads <= 8
    int batch = 0;
    int max_seqlen_k = 0;  // host-side bound on seqlens_k: sizes the split

    const void* q = nullptr;  // [rows][num_heads][head_dim], contiguous
    PagedKv paged;
    const int32_t* seqlens_k = nullptr;  // [batch]

    // Optional, several query rows per sequence, as in PrefillParams: sequence b owns q / o rows
    // [cu_seqlens_q[b], cu_seqlens_q[b + 1]), and its row i of n sees keys [0, seqlens_k[b] - n +
    // 1 + i) (causal, bottom-right aligned). A CTA packs 16 / group of a sequence's rows with
    // their query heads, so each K/V byte is read once per that many rows, not once per row.
    // nullptr: one row per sequence (row b).
    const int32_t* cu_seqlens_q = nullptr;  // [batch + 1]
    int max_seqlen_q = 1;  // host-side bound on the rows per sequence (<= kMaxRows): sizes the grid
    static constexpr int kMaxRows = 64;

    void* o = nullptr;     // [rows][num_heads][head_dim], contiguous
    float* lse = nullptr;  // optional [rows][num_heads]
    float softmax_scale = 0.f;

    // True when no kernel launched just before this call in the stream writes block_table or
    // seqlens_k (e.g. they were uploaded with cudaMemcpyAsync before it): the kernel may then read
    // them before waiting for that kernel (programmatic dependent launch, sm_90+), and prefetch
    // the first K/V tiles into L2 meanwhile. q, the caches and the workspace are read after the
    // wait (an L2 prefetch reads nothing into the kernel), the caches unless kv_ready.
    bool metadata_ready = false;
    // True (with metadata_ready) when the kernel launched just before this call writes, of the
    // caches, at most each sequence's newest key, or its newest rows' keys with cu_seqlens_q (the
    // tokens this step appends, as a fused append-and-rope kernel does) with their scales: each
    // warp
    // whose first tiles hold only older keys then copies them into shared memory before the
    // launch wait, not just into L2. Speed against kv_ready off (docs/benchmarks-cuda.md):
    // H200 0.99-1.11x, H100 0.94-1.06x (slower at 8-bit batch 1 with 16k-32k keys).
    bool kv_ready = false;

    int num_splits = 0;  // 0: chosen by decode_plan(); at most 1024
    // decode_workspace_bytes() bytes of device memory, zero-filled (cudaMemset) once when
    // allocated: its first bytes are per-(sequence, kv head, rows) counters (decode_counters())
    // that every call leaves zero, then the splits' partial outputs. A workspace reused by calls
    // of several shapes reserves counters for the largest (workspace_counters), so that no call's
    // partial outputs land on another's counters; zero the counters again when that reserve grows.
    void* workspace = nullptr;
    int workspace_counters = 0;  // counters reserved, >= decode_counters() (0: exactly that)
};

// A decode call's CTAs per (kv head, split) of a sequence: its rows in groups of 16 / group
// (one with cu_seqlens_q unset). Each such CTA group has one finish counter in the workspace.
inline int decode_row_chunks(const DecodeParams& p) {
    if (p.cu_seqlens_q == nullptr) return 1;
    const int group = p.num_kv_heads > 0 ? std::max(p.num_heads / p.num_kv_heads, 1) : 1;
    const int per_cta = std::max(16 / group, 1);
    return (std::max(p.max_seqlen_q, 1) + per_cta - 1) / per_cta;
}
inline int64_t decode_counters(const DecodeParams& p) {
    return int64_t{p.batch} * p.num_kv_heads * decode_row_chunks(p);
}

// Launches on `stream` (a cudaStream_t; nullptr = default stream). Throw vela::InvalidArgument
// for unsupported shapes and vela::Error for CUDA failures.
void prefill_forward(const PrefillParams& p, void* stream = nullptr);
// True when the Hopper wgmma prefill kernel can run on the current device.
bool prefill_wgmma_available();

// fp32 dQ accumulator and the rowsum(dO * O) terms: 4 * total_q * num_heads * (head_dim + 1).
size_t backward_workspace_bytes(const BackwardParams& p);
// Writes dq, dk and dv (every element, including rows of empty sequences).
void prefill_backward(const BackwardParams& p, void* stream = nullptr);

// Fills p.num_splits when 0 so the grid covers the device's multiprocessors in few, full waves:
// call it once per step, before decode_forward. It also prepares the kernel instance for p (its
// shared-memory limit, raised once per instance and device), so no launch pays for that.
void decode_plan(DecodeParams& p, int device_sm_count);
size_t decode_workspace_bytes(const DecodeParams& p);
void decode_forward(const DecodeParams& p, void* stream = nullptr);

// True when a CUDA device is usable (tests skip otherwise).
bool device_available();

}  // namespace vela::cuda
