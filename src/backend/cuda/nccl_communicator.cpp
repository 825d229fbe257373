#include "backend/cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace vela {
namespace {

void check(ncclResult_t r, const char* what) {
    if (r != ncclSuccess) fail<Error>("NCCL error in {}: {}", what, ncclGetErrorString(r));
}

cudaStream_t stream_of(Backend& backend) {
    auto* cuda = dynamic_cast<CudaBackend*>(&backend);
    if (cuda == nullptr)
        fail<InvalidArgument>("NCCL collectives run on the CUDA backend, not on {}",
                              backend.name());
    return static_cast<cudaStream_t>(cuda->stream());
}

void check_device_f32(const Tensor& t) {
    VELA_ASSERT(t.device == Device::Cuda && t.dtype == DType::F32);
}

}  // namespace

NcclCommunicator::Id NcclCommunicator::new_id() {
    ncclUniqueId id;
    check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    Id out;
    static_assert(sizeof(id) == sizeof(Id));
    std::memcpy(out.data(), &id, sizeof(id));
    return out;
}

NcclCommunicator::NcclCommunicator(const Id& id, int rank, int size) : rank_(rank), size_(size) {
    if (size < 1 || rank < 0 || rank >= size)
        fail<InvalidArgument>("NCCL: rank {} of {}", rank, size);
    ncclUniqueId nid;
    std::memcpy(&nid, id.data(), sizeof(nid));
    ncclComm_t comm = nullptr;
    check(ncclCommInitRank(&comm, size, nid, rank), "ncclCommInitRank");
    comm_ = comm;
}

NcclCommunicator::~NcclCommunicator() {
    if (comm_ != nullptr) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
}

void NcclCommunicator::all_reduce_sum(Backend& backend, Tensor x) {
    check_device_f32(x);
    check(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.numel()), ncclFloat32, ncclSum,
                        static_cast<ncclComm_t>(comm_), stream_of(backend)),
          "ncclAllReduce");
}

void NcclCommunicator::all_gather_cols(Backend& backend, const Tensor& local, Tensor full) {
    check_device_f32(local);
    check_device_f32(full);
    if (local.rows != full.rows || local.cols * size_ != full.cols)
        fail<InvalidArgument>(
            "NCCL all-gather: {} ranks of {} columns do not make {} (the slices must be equal)",
            size_, local.cols, full.cols);
    const cudaStream_t stream = stream_of(backend);
    const size_t n = static_cast<size_t>(local.numel());
    if (!gathered_ || gathered_->bytes() < n * size_ * sizeof(float))
        gathered_ = std::make_unique<CudaBuffer>(n * size_ * sizeof(float));
    auto* g = static_cast<float*>(gathered_->data());
    check(ncclAllGather(local.data, g, n, ncclFloat32, static_cast<ncclComm_t>(comm_), stream),
          "ncclAllGather");
    const size_t width = static_cast<size_t>(local.cols) * sizeof(float);
    for (int r = 0; r < size_; ++r) {
        cuda_backend::check(
            cudaMemcpy2DAsync(full.f32() + r * local.cols,
                              static_cast<size_t>(full.cols) * sizeof(float), g + r * n, width,
                              width, static_cast<size_t>(local.rows), cudaMemcpyDeviceToDevice,
                              stream),
            "all-gather columns");
    }
}

}  // namespace vela
