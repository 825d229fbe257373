// Device memory of the CUDA backend: CudaBuffer (one cudaMalloc) and DeviceKvStorage (the paged
// KV cache in device memory, with its swap space in pinned host memory).
#include <cuda_runtime.h>

#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/ops.h"
#include "core/error.h"
#include "core/fp16.h"
#include "cuda/attention_params.h"

namespace vela {

using cuda_backend::as_stream;
using cuda_backend::check;

// --- memory ---

CudaBuffer::CudaBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    const cudaError_t e = cudaMalloc(&data_, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();  // clears the sticky-free error so the process goes on
        size_t free = 0, total = 0;
        cudaMemGetInfo(&free, &total);
        fail<ResourceExhausted>("cannot allocate {} MiB of GPU memory ({} MiB free of {} MiB)",
                                bytes >> 20, free >> 20, total >> 20);
    }
    check(e, "cudaMalloc");
}

CudaBuffer::~CudaBuffer() {
    if (data_ != nullptr) cudaFree(data_);
}

bool cuda_device_available() {
    return cuda::device_available();
}

// --- KV storage ---

void DeviceKvStorage::PinnedFree::operator()(std::byte* p) const {
    cudaFreeHost(p);
}

DeviceKvStorage::DeviceKvStorage(const KvLayout& layout, KvFormats formats, void* stream)
    : layout_(layout), formats_(formats), stream_(stream) {
    block_bytes_ = kv_row_bytes(formats.k, layout.head_dim, formats.group) *
                   static_cast<size_t>(layout.n_kv_heads * layout.block_size);
    memory_ = std::make_unique<CudaBuffer>(block_bytes_ * static_cast<size_t>(layout.num_blocks) *
                                           static_cast<size_t>(2 * layout.n_layers));
}

DeviceKvStorage::~DeviceKvStorage() = default;

void* DeviceKvStorage::side(int64_t layer, bool value) const {
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    const size_t side_bytes = block_bytes_ * static_cast<size_t>(layout_.num_blocks);
    return static_cast<std::byte*>(memory_->data()) +
           side_bytes * static_cast<size_t>(2 * layer + (value ? 1 : 0));
}

// A run of row moves in one launch: the list uploaded to moves_, then moved in order.
void DeviceKvStorage::move_rows(std::span<const BlockOp> ops) {
    std::vector<cuda_backend::KvRowMove> host(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) {
        const BlockOp& op = ops[i];
        VELA_ASSERT(op.kind == BlockOp::Kind::MoveRow);
        host[i] = {op.src, op.dst, op.layer, op.head};
    }
    const size_t bytes = host.size() * sizeof(cuda_backend::KvRowMove);
    if (!moves_ || moves_->bytes() < bytes) moves_ = std::make_unique<CudaBuffer>(bytes);
    // From pageable memory: returns once `host` is read, ordered before the kernel.
    check(cudaMemcpyAsync(moves_->data(), host.data(), bytes, cudaMemcpyHostToDevice,
                          as_stream(stream_)),
          "KV row moves upload");
    cuda_backend::KvRowMoves m;
    m.moves = static_cast<const cuda_backend::KvRowMove*>(moves_->data());
    m.count = static_cast<int64_t>(host.size());
    m.cache = memory_->data();
    m.side_bytes = static_cast<int64_t>(block_bytes_) * layout_.num_blocks;
    m.n_layers = layout_.n_layers;
    m.n_kv_heads = layout_.n_kv_heads;
    m.block_size = layout_.block_size;
    m.head_dim = layout_.head_dim;
    cuda_backend::move_kv_rows(m, stream_);
    check(cudaGetLastError(), "KV row moves");
}

void DeviceKvStorage::apply(std::span<const BlockOp> ops) {
    const cudaStream_t s = as_stream(stream_);
    bool swapped = false;
    for (size_t i = 0; i < ops.size(); ++i) {
        const BlockOp& op = ops[i];
        if (op.kind == BlockOp::Kind::MoveRow) {  // with the moves right after it
            size_t end = i + 1;
            while (end < ops.size() && ops[end].kind == BlockOp::Kind::MoveRow) ++end;
            move_rows(ops.subspan(i, end - i));
            i = end - 1;
            continue;
        }
        for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
            for (bool value : {false, true}) {
                auto* base = static_cast<std::byte*>(side(layer, value));
                // A host slot holds [layer][K, V] of one block.
                const size_t host_off = block_bytes_ * static_cast<size_t>(2 * layer + value);
                switch (op.kind) {
                    case BlockOp::Kind::Copy:
                        check(cudaMemcpyAsync(base + block_bytes_ * op.dst,
                                              base + block_bytes_ * op.src, block_bytes_,
                                              cudaMemcpyDeviceToDevice, s),
                              "KV block copy");
                        break;
                    case BlockOp::Kind::SwapOut: {
                        auto& slot = host_[op.dst];
                        if (!slot) {
                            void* p = nullptr;
                            check(cudaMallocHost(
                                      &p, block_bytes_ * 2 * static_cast<size_t>(layout_.n_layers)),
                                  "cudaMallocHost (KV swap space)");
                            slot.reset(static_cast<std::byte*>(p));
                        }
                        check(cudaMemcpyAsync(slot.get() + host_off, base + block_bytes_ * op.src,
                                              block_bytes_, cudaMemcpyDeviceToHost, s),
                              "KV swap out");
                        swapped = true;
                        break;
                    }
                    case BlockOp::Kind::SwapIn: {
                        const auto it = host_.find(op.src);
                        VELA_ASSERT(it != host_.end() && "swap in of a host slot never written");
                        check(cudaMemcpyAsync(base + block_bytes_ * op.dst,
                                              it->second.get() + host_off, block_bytes_,
                                              cudaMemcpyHostToDevice, s),
                              "KV swap in");
                        swapped = true;
                        break;
                    }
                    case BlockOp::Kind::MoveRow:
                        break;  // moved above
                }
            }
        }
    }
    // Host slots are read and rewritten by later calls: their copies must be done.
    if (swapped) check(cudaStreamSynchronize(s), "KV swap");
}

void DeviceKvStorage::read_scores(int64_t, std::span<const int64_t>, float*) const {
    fail<InvalidArgument>("the GPU's KV storage keeps no attention scores yet");
}

void DeviceKvStorage::read(int64_t layer, int64_t slot, int64_t kv_head, bool value,
                           float* out) const {
    const int64_t hd = layout_.head_dim, bs = layout_.block_size;
    const int64_t block = slot / bs, off = slot % bs;
    std::vector<uint16_t> row(static_cast<size_t>(hd));
    const auto* src =
        static_cast<const std::byte*>(side(layer, value)) +
        2 * static_cast<size_t>(((block * layout_.n_kv_heads + kv_head) * bs + off) * hd);
    check(cudaStreamSynchronize(as_stream(stream_)), "KV read");
    check(cudaMemcpy(row.data(), src, row.size() * 2, cudaMemcpyDeviceToHost), "KV read");
    const KvFormat f = value ? formats_.v : formats_.k;
    for (int64_t d = 0; d < hd; ++d) {
        out[d] = f == KvFormat::BF16 ? bf16_to_fp32(row[d]) : fp16_to_fp32(row[d]);
    }
}

}  // namespace vela
