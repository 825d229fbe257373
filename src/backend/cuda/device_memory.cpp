// Device memory of the CUDA backend: CudaBuffer (one cudaMalloc) and DeviceKvStorage (the paged
// KV cache in device memory, with its swap space in pinned host memory).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kv_ops.h"
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

int cuda_device_count() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

void cuda_select_device(int index) {
    check(cudaSetDevice(index), "cudaSetDevice");
}

// --- KV storage ---

void DeviceKvStorage::PinnedFree::operator()(std::byte* p) const {
    cudaFreeHost(p);
}

DeviceKvStorage::DeviceKvStorage(const KvLayout& layout, KvFormats formats, void* stream)
    : layout_(layout), formats_(formats), stream_(stream) {
    if (layout.has_local_group() && (formats.k == KvFormat::Q4 || layout.attention_scores)) {
        fail<InvalidArgument>(
            "the CUDA backend keeps sliding-window layers apart (local group) with the f16, "
            "bf16, q8 and fp8 KV formats and no eviction: use --swa-full");
    }
    const auto rows = static_cast<size_t>(layout.n_kv_heads * layout.block_size);
    const auto hd = static_cast<size_t>(layout.head_dim);
    auto align16 = [](size_t n) { return (n + 15) / 16 * 16; };
    if (cuda_backend::is_8bit(cuda_backend::kv_code(formats.k))) {
        // One group a row: what the kernels store (kv_ops.h), reported as the group.
        formats_.group = layout.head_dim;
        scale_offset_ = align16(rows * hd);
        block_bytes_ = scale_offset_ + align16(rows * 4);
        if (!layout.key_offsets.empty()) {
            const size_t bytes = layout.key_offsets.size() * sizeof(float);
            key_offsets_ = std::make_unique<CudaBuffer>(bytes);
            check(cudaMemcpy(key_offsets_->data(), layout.key_offsets.data(), bytes,
                             cudaMemcpyHostToDevice),
                  "KV key offsets");
        }
    } else if (q4()) {
        // Codes, then the fp16 pairs: K's [kv head][2][head_dim], V's [kv head][block_size]
        // [group]; both sides get the larger.
        const auto groups = static_cast<size_t>(kv_groups(layout.head_dim, formats.group));
        const size_t k_pairs = static_cast<size_t>(layout.n_kv_heads) * 4 * hd;
        const size_t v_pairs = rows * groups * 4;
        scale_offset_ = align16(rows * hd / 2);
        block_bytes_ = scale_offset_ + align16(std::max(k_pairs, v_pairs));
        const auto blocks = static_cast<size_t>(layout.num_blocks);
        slot_of_ = std::make_unique<CudaBuffer>(4 * blocks);
        check(cudaMemset(slot_of_->data(), 0xff, 4 * blocks), "KV residual map");
        slot_of_host_.assign(blocks, -1);
        grow_residuals();
    } else {
        block_bytes_ = rows * hd * 2;
        scale_offset_ = block_bytes_;
    }
    layer_offset_.assign(1, 0);
    for (int64_t l = 0; l < layout.n_layers; ++l) {
        layer_offset_.push_back(layer_offset_.back() +
                                2 * block_bytes_ * static_cast<size_t>(layout.blocks_of(l)));
    }
    memory_ = std::make_unique<CudaBuffer>(layer_offset_.back());
    if (layout.attention_scores) {
        score_block_bytes_ = 4 * rows;
        const size_t bytes =
            score_block_bytes_ * static_cast<size_t>(layout.num_blocks * layout.n_layers);
        scores_ = std::make_unique<CudaBuffer>(bytes);
        check(cudaMemset(scores_->data(), 0, bytes), "KV scores");
    }
}

DeviceKvStorage::~DeviceKvStorage() = default;

void* DeviceKvStorage::side(int64_t layer, bool value) const {
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    const size_t side_bytes = block_bytes_ * static_cast<size_t>(layout_.blocks_of(layer));
    return static_cast<std::byte*>(memory_->data()) + layer_offset_[static_cast<size_t>(layer)] +
           (value ? side_bytes : 0);
}

// A run of row moves in one launch: the list uploaded to moves_, then moved in order (Q4: the
// keys through their blocks' residuals first, move_q4_keys).
void DeviceKvStorage::move_rows(std::span<const BlockOp> ops) {
    VELA_ASSERT(!layout_.has_local_group());  // every layer at the same stride below
    if (q4()) move_q4_keys(ops);
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
    m.scores = scores(0);
    m.scores_per_layer = static_cast<int64_t>(score_block_bytes_ / 4) * layout_.num_blocks;
    m.shape = cuda_backend::kv_shape(*this);
    cuda_backend::move_kv_rows(m, stream_);
    check(cudaGetLastError(), "KV row moves");
}

void DeviceKvStorage::apply(std::span<const BlockOp> ops) {
    const cudaStream_t s = as_stream(stream_);
    // What a block is made of: per layer its K and V rows and, when kept, its scores. A host
    // slot holds them in this order (each block group's ops touch their own layers' parts).
    struct Region {
        std::byte* base;
        size_t bytes;  // per block
        int8_t group;  // BlockOp::group
    };
    std::vector<Region> regions;
    size_t host_bytes = 0;
    for (int64_t layer = 0; layer < layout_.n_layers; ++layer) {
        const int8_t g = layout_.group_of(layer);
        for (bool value : {false, true})
            regions.push_back({static_cast<std::byte*>(side(layer, value)), block_bytes_, g});
        if (scores_)
            regions.push_back(
                {reinterpret_cast<std::byte*>(scores(layer)), score_block_bytes_, g});
    }
    for (const Region& r : regions) host_bytes += r.bytes;
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
        std::byte* host = nullptr;
        if (op.kind == BlockOp::Kind::SwapOut) {
            auto& slot = host_[op.dst];
            if (!slot) {
                void* p = nullptr;
                check(cudaMallocHost(&p, host_bytes), "cudaMallocHost (KV swap space)");
                slot.reset(static_cast<std::byte*>(p));
            }
            host = slot.get();
        } else if (op.kind == BlockOp::Kind::SwapIn) {
            const auto it = host_.find(op.src);
            VELA_ASSERT(it != host_.end() && "swap in of a host slot never written");
            host = it->second.get();
        }
        size_t host_off = 0;
        for (const Region& r : regions) {
            if (r.group != op.group) {
                host_off += r.bytes;
                continue;
            }
            switch (op.kind) {
                case BlockOp::Kind::Copy:
                    check(cudaMemcpyAsync(r.base + r.bytes * op.dst, r.base + r.bytes * op.src,
                                          r.bytes, cudaMemcpyDeviceToDevice, s),
                          "KV block copy");
                    break;
                case BlockOp::Kind::SwapOut:
                    check(cudaMemcpyAsync(host + host_off, r.base + r.bytes * op.src, r.bytes,
                                          cudaMemcpyDeviceToHost, s),
                          "KV swap out");
                    swapped = true;
                    break;
                case BlockOp::Kind::SwapIn:
                    check(cudaMemcpyAsync(r.base + r.bytes * op.dst, host + host_off, r.bytes,
                                          cudaMemcpyHostToDevice, s),
                          "KV swap in");
                    swapped = true;
                    break;
                case BlockOp::Kind::MoveRow:
                    break;  // moved above
            }
            host_off += r.bytes;
        }
        if (q4()) move_residual(op);
    }
    // Host slots are read and rewritten by later calls: their copies must be done.
    if (swapped) check(cudaStreamSynchronize(s), "KV swap");
    if (q4()) upload_residual_map();
}

const float* DeviceKvStorage::key_offsets(int64_t layer) const {
    if (!key_offsets_) return nullptr;
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    return static_cast<const float*>(key_offsets_->data()) +
           layer * layout_.n_kv_heads * layout_.head_dim;
}

float* DeviceKvStorage::scores(int64_t layer) const {
    if (!scores_) return nullptr;
    VELA_ASSERT(layer >= 0 && layer < layout_.n_layers);
    return static_cast<float*>(scores_->data()) +
           score_block_bytes_ / 4 * static_cast<size_t>(layout_.num_blocks * layer);
}

void DeviceKvStorage::read_scores(int64_t layer, std::span<const int64_t> slots, float* out) const {
    if (!scores_) fail<InvalidArgument>("this KV storage keeps no attention scores");
    const size_t n = slots.size(), nkv = static_cast<size_t>(layout_.n_kv_heads);
    if (n == 0) return;
    const size_t slot_bytes = 8 * n, out_bytes = 4 * n * nkv;
    if (!gather_ || gather_->bytes() < slot_bytes + out_bytes)
        gather_ = std::make_unique<CudaBuffer>(slot_bytes + out_bytes);
    auto* dev_slots = static_cast<int64_t*>(gather_->data());
    auto* dev_out = reinterpret_cast<float*>(static_cast<std::byte*>(gather_->data()) + slot_bytes);
    const cudaStream_t s = as_stream(stream_);
    check(cudaMemcpyAsync(dev_slots, slots.data(), slot_bytes, cudaMemcpyHostToDevice, s),
          "KV scores read");
    cuda_backend::gather_scores(scores(layer), dev_slots, static_cast<int64_t>(n),
                                layout_.n_kv_heads, layout_.block_size, dev_out, stream_);
    check(cudaGetLastError(), "KV scores read");
    check(cudaMemcpyAsync(out, dev_out, out_bytes, cudaMemcpyDeviceToHost, s), "KV scores read");
    check(cudaStreamSynchronize(s), "KV scores read");
}

size_t DeviceKvStorage::bytes_per_token() const {
    size_t n_layers = 0;  // the main group's: the local layers' KV does not grow with tokens
    for (int64_t l = 0; l < layout_.n_layers; ++l) n_layers += layout_.is_local(l) ? 0 : 1;
    return block_bytes_ * 2 * n_layers / static_cast<size_t>(layout_.block_size);
}

// OCP FP8 E4M3 (bias 7, no infinities, 0x7f / 0xff NaN).
static float fp8_e4m3_to_float(uint8_t v) {
    const int sign = v >> 7, exp = (v >> 3) & 0xf, mant = v & 7;
    if (exp == 0xf && mant == 7) return NAN;
    const float mag = exp == 0 ? std::ldexp(mant / 8.f, -6) : std::ldexp(1.f + mant / 8.f, exp - 7);
    return sign ? -mag : mag;
}

void DeviceKvStorage::read(int64_t layer, int64_t slot, int64_t kv_head, bool value,
                           float* out) const {
    if (q4()) return read_q4(layer, slot, kv_head, value, out);
    const int64_t hd = layout_.head_dim, bs = layout_.block_size;
    const int64_t block = slot / bs, row = kv_head * bs + slot % bs;
    const KvFormat f = value ? formats_.v : formats_.k;
    const bool bits8 = cuda_backend::is_8bit(cuda_backend::kv_code(f));
    const size_t elem = bits8 ? 1 : 2;
    std::vector<uint8_t> bytes(static_cast<size_t>(hd) * elem);
    float scale = 1.f;
    const auto* base = static_cast<const std::byte*>(side(layer, value)) +
                       block_bytes_ * static_cast<size_t>(block);
    check(cudaStreamSynchronize(as_stream(stream_)), "KV read");
    check(cudaMemcpy(bytes.data(), base + static_cast<size_t>(row * hd) * elem, bytes.size(),
                     cudaMemcpyDeviceToHost),
          "KV read");
    if (bits8) {
        check(cudaMemcpy(&scale, base + scale_offset_ + 4 * static_cast<size_t>(row), 4,
                         cudaMemcpyDeviceToHost),
              "KV read");
    }
    for (int64_t d = 0; d < hd; ++d) {
        if (bits8) {
            const float code = f == KvFormat::Q8 ? static_cast<float>(static_cast<int8_t>(bytes[d]))
                                                 : fp8_e4m3_to_float(bytes[d]);
            out[d] = code * scale;
            continue;
        }
        uint16_t h;
        std::memcpy(&h, &bytes[2 * d], 2);
        out[d] = f == KvFormat::BF16 ? bf16_to_fp32(h) : fp16_to_fp32(h);
    }
}

}  // namespace vela
