#pragma once
// Tensor-parallel collectives between CUDA backends over NCCL (model/tensor_parallel.h), one rank
// per process or per device, enqueued on the backend's stream. Its own library (vela_nccl), so
// that only what uses it needs libnccl at run time.
#include <array>
#include <memory>

#include "backend/cuda/cuda_backend.h"
#include "model/tensor_parallel.h"

namespace vela {

class NcclCommunicator final : public Communicator {
  public:
    using Id = std::array<char, 128>;  // ncclUniqueId's bytes
    // A new group's id: made by one rank, given to every rank (before their constructors).
    static Id new_id();
    // Joins the group as `rank` of `size` on the current CUDA device (collective: every rank
    // constructs at once). Error naming NCCL's reason on failure.
    NcclCommunicator(const Id& id, int rank, int size);
    ~NcclCommunicator() override;
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    // ncclAllReduce in place, on the CUDA backend's stream.
    void all_reduce_sum(Backend& backend, Tensor x) override;
    // ncclAllGather of the ranks' slices (equal widths: InvalidArgument otherwise), then each
    // rank's block copied into its columns of `full`.
    void all_gather_cols(Backend& backend, const Tensor& local, Tensor full) override;

  private:
    void* comm_ = nullptr;  // ncclComm_t
    int rank_, size_;
    std::unique_ptr<CudaBuffer> gathered_;  // [size][rows][local cols]
};

}  // namespace vela
