#pragma once
// The CUDA implementation of Backend: whole models on one GPU. Weights are uploaded once and
// stay in their file's format (quant_kernels.h reads them); activations are fp32 rows in device
// memory; the KV cache is a DeviceKvStorage of 16-bit values or 8-bit codes with a scale per row,
// read by the paged FlashAttention kernels of src/cuda. One stream carries the whole step; only
// to_host() waits for it.
//
// Matmuls of up to kMatvecMaxRows rows (decode, draft verification) run the dequantising
// matrix-vector kernels in fp32; larger ones (prefill) run a cuBLAS tensor-core GEMM with fp32
// accumulation: F16 and BF16 weights as stored, with activations rounded to the same type, other
// types dequantised to bf16 first. Decode and draft-verification steps may be recorded as CUDA
// graphs and replayed (run_ops); a few ops have fused kernels (add_rms_norm, matmuls, gated_ffn, rope_write_kv).
//
// This header needs no CUDA headers: code built without nvcc (the CLI, tests) can use it.
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/kv_ops.h"

namespace vela {

// Device memory of one cudaMalloc, freed with the object.
class CudaBuffer final : public DeviceBuffer {
  public:
    explicit CudaBuffer(size_t bytes);
    ~CudaBuffer() override;
    CudaBuffer(const CudaBuffer&) = delete;
    CudaBuffer& operator=(const CudaBuffer&) = delete;
    void* data() override { return data_; }
    size_t bytes() const override { return bytes_; }

  private:
    size_t bytes_;
    void* data_ = nullptr;
};

// Paged K/V in device memory: per layer, K and V each [num_blocks] blocks of
// [n_kv_heads][block_size][head_dim] values: F16 or BF16, or 8-bit codes (Q8: int8, FP8: e4m3)
// followed in the block by one float scale per row ([n_kv_heads][block_size], 16-byte aligned;
// kv_ops.h defines the quantisation: one group a row, so formats() reports group = head_dim).
// Swapped-out blocks live in pinned host memory; eviction's row moves run as one kernel per run
// of moves. Attention scores (h2o, tova) are kept per layer beside the cache when the layout asks.
//
// Q4 (KIVI, kv_ops.h): blocks of codes and fp16 (scale, min) pairs, and a pool of fp16 key
// residuals for the blocks still filling, with kv/kivi_keys.h's rules: begin_step() gives every
// block the step writes a residual (a closed block reopens from its codes), the write closes the
// blocks whose last row it writes (quantised per channel, the residual kept until the next step
// so that the step's own rows still read it), and copies and swaps carry residuals along. The
// pool grows as needed (a new generation for recorded graphs). Eviction's row moves go through
// the residuals (whole rows: window and sinks; the score policies are refused with Q4).
class DeviceKvStorage final : public KvStorage {
  public:
    DeviceKvStorage(const KvLayout& layout, KvFormats formats, void* stream);
    ~DeviceKvStorage() override;

    const KvLayout& layout() const override { return layout_; }
    KvFormats formats() const override { return formats_; }
    Device device() const override { return Device::Cuda; }
    void apply(std::span<const BlockOp> ops) override;
    void read_scores(int64_t layer, std::span<const int64_t> slots, float* out) const override;

    // Layer `layer`'s K (value = false) or V cache.
    void* side(int64_t layer, bool value) const;
    size_t block_bytes() const { return block_bytes_; }
    // Bytes into a block where its row scales begin (8-bit formats; else block_bytes()).
    size_t scale_offset() const { return scale_offset_; }
    // Layer `layer`'s attention scores ([block][kv head][block_size] floats), or nullptr when
    // the layout keeps none (KvLayout::attention_scores).
    float* scores(int64_t layer) const;
    // Layer `layer`'s KvLayout::key_offsets on the device, or nullptr: none, or 16-bit K.
    const float* key_offsets(int64_t layer) const;
    size_t bytes_per_token() const override;
    // Reads one token's K or V row of one head back as float (tests, debugging; K as stored,
    // less its key offsets; Q4 K as a later row reads it: from the residual while its block has
    // one, else dequantised); waits for the stream.
    void read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const;

    // Q4: prepares the residuals for a step that writes batch.slot_mapping, before its ops;
    // once per planned step (`step`: the backend's count of plan() calls), a no-op for the
    // other formats.
    void begin_step(const ForwardBatch& batch, uint64_t step);
    // Q4: layer `layer`'s residual pool and the block -> pool slot map (device memory).
    cuda_backend::KvResidual residual(int64_t layer) const;
    // Q4: the step's blocks to quantise, as close_q4_blocks takes them (count first).
    const int32_t* closing() const;
    // Bumped whenever device memory that kernels address moves (the residual pool grew).
    uint64_t generation() const { return generation_; }

  private:
    void move_rows(std::span<const BlockOp> ops);
    bool q4() const { return formats_.k == KvFormat::Q4; }
    int32_t take_residual(int32_t block);      // Q4: the block's residual slot, made if none
    void drop_residual(int32_t block);         // Q4: releases the block's residual, if any
    void upload_residual_map();                // Q4: sends the map's pending changes
    size_t residual_bytes() const;             // Q4: one slot of one layer
    void grow_residuals();
    void move_residual(const BlockOp& op);     // Q4: a copy's or swap's residual
    void move_q4_keys(std::span<const BlockOp> ops);  // Q4: a run of row moves' keys
    void read_q4(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const;

    struct PinnedFree {
        void operator()(std::byte* p) const;
    };
    KvLayout layout_;
    KvFormats formats_;
    void* stream_;
    size_t block_bytes_ = 0;  // one block of one side of one layer
    // Where each layer's K (then V) starts in memory_, [n_layers + 1]: layers of the local
    // group (KvLayout::local_layers) hold fewer blocks.
    std::vector<size_t> layer_offset_;
    size_t scale_offset_ = 0;
    std::unique_ptr<CudaBuffer> memory_;
    std::unique_ptr<CudaBuffer> moves_;           // the row moves of one apply(), uploaded
    std::unique_ptr<CudaBuffer> scores_;          // every layer's, when kept
    std::unique_ptr<CudaBuffer> key_offsets_;     // KvLayout::key_offsets, 8-bit K only
    size_t score_block_bytes_ = 0;                // one block's scores of one layer
    mutable std::unique_ptr<CudaBuffer> gather_;  // read_scores' slots and results
    std::map<int32_t, std::unique_ptr<std::byte, PinnedFree>> host_;  // swap space by host slot
    uint64_t generation_ = 0;
    uint64_t step_ = 0;  // the last begin_step's
    // Q4 residuals (see the class comment).
    std::unique_ptr<CudaBuffer> residuals_;  // [layer][slot][n_kv_heads][block_size][head_dim]
    int32_t residual_slots_ = 0;             // slots per layer in residuals_
    std::unique_ptr<CudaBuffer> slot_of_;    // [num_blocks] int32, the device map
    std::vector<int32_t> slot_of_host_;      // its mirror
    std::vector<int32_t> free_slots_;
    std::vector<int32_t> patches_;           // (block, slot) pairs not yet on the device
    std::vector<int32_t> closed_last_;       // blocks the previous step closed
    std::unique_ptr<CudaBuffer> closing_;    // [count][blocks] of the step
    std::unique_ptr<CudaBuffer> staging_;    // patch pairs and reopened blocks, uploaded
    std::map<int32_t, std::vector<uint16_t>> host_residuals_;  // swapped out, by host slot
};

// Whether this process sees a usable CUDA device.
bool cuda_device_available();
// How many it sees (0 when none), and making device `index` this thread's current one (Error
// naming CUDA's reason): tensor-parallel rank r runs on device r.
int cuda_device_count();
void cuda_select_device(int index);

class CudaBackend final : public Backend {
  public:
    // On the current CUDA device; Error when there is none. With `graphs`, decode and
    // verification steps are recorded as CUDA graphs (one per step shape) and replayed;
    // without, every op is launched one by one (vLLM's --enforce-eager). With
    // `batch_invariant`, every row's arithmetic is the same whatever else is in the batch
    // (vLLM's VLLM_BATCH_INVARIANT): matmuls run the matvec kernels, eight rows a launch, and
    // attention the prefill kernel for decode rows too, so a request's greedy output does not
    // depend on the load; it costs a weight pass per 8 rows.
    explicit CudaBackend(bool graphs = true, bool batch_invariant = false);
    ~CudaBackend() override;

    Device device() const override { return Device::Cuda; }
    std::string name() const override { return "cuda"; }
    uint64_t warmup_runs() const override { return warmups_; }
    void* stream() const { return stream_; }  // cudaStream_t: every op of a step runs on it

    MemoryInfo memory_info() const override;
    std::unique_ptr<DeviceBuffer> allocate(size_t bytes) override;
    void to_device(const void* host, Tensor dst) override;
    void to_host(const Tensor& src, void* host) override;
    void load_weights(ModelWeights& weights) override;
    std::unique_ptr<KvStorage> make_kv_storage(const KvLayout& layout, KvFormats formats) override;

    void plan(const ForwardBatch& batch) override;
    void run_ops(const void* model, KvStorage& kv, const std::function<void()>& ops) override;
    void embed(const Weight& table, Tensor out) override;
    void matmul(const Weight& w, const Tensor& x, Tensor y) override;
    void rms_norm(const Tensor& x, const Weight& weight, Tensor y, float eps) override;
    void add_inplace(Tensor y, const Tensor& x) override;
    void add_bias(Tensor y, const Weight& bias) override;
    void silu_mul(const Tensor& gate, const Tensor& up, Tensor y) override;
    void gelu_mul(const Tensor& gate, const Tensor& up, Tensor y) override;
    void scale(Tensor y, float factor) override;
    void rope(Tensor x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const Tensor& cos,
              const Tensor& sin, bool neox) override;
    void write_kv(KvStorage& kv, int64_t layer, const Tensor& k, const Tensor& v) override;
    void attention(const KvStorage& kv, int64_t layer, const Tensor& q, Tensor out, int64_t n_heads,
                   float scale, int64_t window) override;
    void gather_logit_rows(const Tensor& x, Tensor out) override;
    void argmax_rows(const Tensor& x, Tensor ids) override;
    void top_k_rows(const Tensor& x, Tensor tokens, Tensor values) override;
    void logsumexp_rows(const Tensor& x, Tensor lse) override;
    std::string kv_unsupported(KvFormats formats, int64_t head_dim) const override;
    void apply_penalties(Tensor x, std::span<const LogitPenalty> entries) override;

    void add_rms_norm(Tensor x, const Tensor& delta, const Weight& weight, Tensor y,
                      float eps) override;
    void matmuls(std::span<const Weight* const> ws, const Tensor& x,
                 std::span<const Tensor> ys) override;
    void gated_ffn(const Weight& gate, const Weight& up, const Tensor& x, Tensor y, Tensor up_out,
                   bool gelu) override;
    void rope_write_kv(KvStorage& kv, int64_t layer, Tensor q, Tensor k, const Tensor& v,
                       int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t rot_dim,
                       const Tensor& cos, const Tensor& sin, bool neox) override;

    // Whether KV of this format is stored (head_dim 0) and attended over at this head size.
    static bool supports_kv(KvFormats formats, int64_t head_dim);
    size_t kv_token_bytes(KvFormat f, bool key, int64_t head_dim, int64_t block_size,
                          int64_t group) const override;

  private:
    // A device scratch buffer that grows to the largest size asked of it; growing moves it,
    // which invalidates the recorded graphs (a new generation).
    struct Scratch {
        explicit Scratch(uint64_t* g) : generation(g) {}
        uint64_t* generation;
        std::unique_ptr<CudaBuffer> buf;
        void* get(size_t bytes);
    };
    // A decode or verification step's shape: what a recorded graph bakes into its launches.
    struct GraphKey {
        const void* model;
        const void* kv;
        int64_t n_seqs, n_rows, n_logits;
        int32_t table_stride, kv_bound;
        auto operator<=>(const GraphKey&) const = default;
    };
    struct Graph {
        uint64_t generation = 0;  // of the buffers the graph (or the eager run before it) used
        uint64_t kv_generation = 0;  // of the KV storage's (DeviceKvStorage::generation)
        void* exec = nullptr;     // cudaGraphExec_t; null: seen once, recorded the next time
    };
    void drop_graphs();
    // The step's metadata in device memory, at offsets into meta_ (one upload per step).
    struct Plan {
        const ForwardBatch* batch = nullptr;
        int32_t* tokens = nullptr;
        int64_t* slots = nullptr;
        int32_t* query_start = nullptr;
        int32_t* kv_len = nullptr;
        int32_t* block_table = nullptr;
        int32_t* logit_rows = nullptr;
        // The local group's (ForwardBatch::local_slot_mapping / local_block_table, at the same
        // stride), or null without one.
        int64_t* local_slots = nullptr;
        int32_t* local_block_table = nullptr;
        // What a layer of block group g (KvLayout::group_of) writes to and reads.
        const int64_t* slots_of(int8_t g) const { return g == 1 ? local_slots : slots; }
        const int32_t* table_of(int8_t g) const { return g == 1 ? local_block_table : block_table; }
        // Token trees (ForwardBatch::tree_offset / tree_mask), or null when every sequence is
        // causal.
        int64_t* tree_offset = nullptr;
        uint8_t* tree_mask = nullptr;
        // A step of a few rows per sequence (draft verification) whose rows may run as decode
        // queries (DecodeParams::cu_seqlens_q).
        bool rows_as_decode = false;
        int32_t max_q_len = 0, max_kv_len = 0;
        // Row length of the uploaded block table and the bound on KV lengths given to the
        // kernels: the batch's own, or rounded up to a few buckets for a recorded decode step
        // (kernels read the true lengths from kv_len).
        int32_t table_stride = 0, kv_bound = 0;
        bool graph = false;  // a decode or verification step that may be recorded and replayed
        int decode_splits = 0;  // chosen by the step's first decode attention
    };
    const Plan& planned() const;
    void check_launch(const char* what) const;
    void close_blocks(const DeviceKvStorage& kv, int64_t layer);
    void sparse_tables(const ForwardBatch& batch);
    // rows: each sequence's rows of the step as decode queries (Plan::rows_as_decode), else
    // its one row.
    void decode_attention(const DeviceKvStorage& kv, int64_t layer, const void* q, void* o,
                          int64_t n_heads, float scale, float* lse, bool rows);
    // Rows per sequence up to which a step's rows run as decode queries.
    static constexpr int32_t kMaxRowsAsDecode = 16;

    void* stream_ = nullptr;  // cudaStream_t
    void* cublas_ = nullptr;  // cublasHandle_t
    int sm_count_ = 0;
    bool graphs_enabled_;
    bool batch_invariant_;
    uint64_t generation_ = 1;  // bumped by every allocation that may move what graphs point at
    uint64_t warmups_ = 0;     // warmup_runs()
    uint64_t plans_ = 0;       // plan() calls: DeviceKvStorage::begin_step's step
    std::map<GraphKey, Graph> graphs_;
    std::unique_ptr<CudaBuffer> cublas_ws_;
    int decode_counters_ = 0;  // finish counters the decode workspace reserves (DecodeParams)
    std::unique_ptr<CudaBuffer>
        penalties_;  // apply_penalties' entries, uploaded (no graph uses it)
    std::vector<std::unique_ptr<CudaBuffer>> weights_;  // one allocation per model loaded
    Plan plan_;
    std::vector<std::byte> meta_host_;
    std::vector<int32_t> table_host_;  // the step's block table, padded or sparse
    std::vector<int32_t> local_table_host_;  // the local group's, padded
    // Sparse (self-drafting) steps: per sequence the blocks attended and the keys they hold.
    int64_t kv_block_size_ = 0;  // of the KV storages made; -1 when they differ
    std::vector<int32_t> sparse_kv_len_, sparse_blocks_;
    std::vector<int64_t> sparse_start_;
    int32_t sparse_max_blocks_ = 0;
    Scratch meta_{&generation_}, w_bf16_{&generation_}, x_bf16_{&generation_},
        q_half_{&generation_}, o_half_{&generation_}, decode_ws_{&generation_}, lse_{&generation_};
};

}  // namespace vela
