#pragma once
// The CUDA implementation of Backend: whole models on one GPU. Weights are uploaded once and
// stay in their file's format (quant_kernels.h reads them); activations are fp32 rows in device
// memory; the KV cache is a DeviceKvStorage of 16-bit values read by the paged FlashAttention
// kernels of src/cuda. One stream carries the whole step; only to_host() waits for it.
//
// Matmuls of up to kMatvecMaxRows rows (decode, draft verification) run the dequantising
// matrix-vector kernels in fp32; larger ones (prefill) dequantise the weight to bf16 and run a
// cuBLAS tensor-core GEMM with bf16 activations and fp32 accumulation.
//
// This header needs no CUDA headers: code built without nvcc (the CLI, tests) can use it.
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"

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

// Paged K/V in device memory, F16 or BF16, in KvStorage's layout: per layer, K and V each
// [num_blocks][n_kv_heads][block_size][head_dim]. Swapped-out blocks live in pinned host memory.
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
    // Reads one token's K or V row of one head back as float (tests, debugging); waits for the
    // stream.
    void read(int64_t layer, int64_t slot, int64_t kv_head, bool value, float* out) const;

  private:
    struct PinnedFree {
        void operator()(std::byte* p) const;
    };
    KvLayout layout_;
    KvFormats formats_;
    void* stream_;
    size_t block_bytes_ = 0;  // one block of one side of one layer
    std::unique_ptr<CudaBuffer> memory_;
    std::map<int32_t, std::unique_ptr<std::byte, PinnedFree>> host_;  // swap space by host slot
};

// Whether this process sees a usable CUDA device.
bool cuda_device_available();

class CudaBackend final : public Backend {
  public:
    // On the current CUDA device; Error when there is none.
    CudaBackend();
    ~CudaBackend() override;

    Device device() const override { return Device::Cuda; }
    std::string name() const override { return "cuda"; }

    MemoryInfo memory_info() const override;
    std::unique_ptr<DeviceBuffer> allocate(size_t bytes) override;
    void to_device(const void* host, Tensor dst) override;
    void to_host(const Tensor& src, void* host) override;
    void load_weights(ModelWeights& weights) override;
    std::unique_ptr<KvStorage> make_kv_storage(const KvLayout& layout, KvFormats formats) override;

    void plan(const ForwardBatch& batch) override;
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

    // Whether KV of this format is stored (head_dim 0) and attended over at this head size.
    static bool supports_kv(KvFormats formats, int64_t head_dim);

  private:
    // A device scratch buffer that grows to the largest size asked of it.
    struct Scratch {
        std::unique_ptr<CudaBuffer> buf;
        void* get(size_t bytes);
    };
    // The step's metadata in device memory, at offsets into meta_ (one upload per step).
    struct Plan {
        const ForwardBatch* batch = nullptr;
        int32_t* tokens = nullptr;
        int64_t* slots = nullptr;
        int32_t* query_start = nullptr;
        int32_t* kv_len = nullptr;
        int32_t* block_table = nullptr;
        int32_t* logit_rows = nullptr;
        int32_t max_q_len = 0, max_kv_len = 0;
        int decode_splits = 0;  // chosen by the step's first decode attention
    };
    const Plan& planned() const;
    void check_launch(const char* what) const;
    void decode_attention(const DeviceKvStorage& kv, int64_t layer, const void* q, void* o,
                          int64_t n_heads, float scale);

    void* stream_ = nullptr;  // cudaStream_t
    void* cublas_ = nullptr;  // cublasHandle_t
    int sm_count_ = 0;
    std::vector<std::unique_ptr<CudaBuffer>> weights_;  // one allocation per model loaded
    Plan plan_;
    std::vector<std::byte> meta_host_;
    Scratch meta_, w_bf16_, x_bf16_, q_half_, o_half_, decode_ws_;
};

}  // namespace vela
