#pragma once
// Tensor-parallel ranks launched by someone else (mpirun, one process per rank, on one host or
// several): they meet over TCP at rank 0's address (VELA_TP_MASTER, host:port, as torchrun's
// MASTER_ADDR / MASTER_PORT), each worker opening two connections to rank 0: one for the steps
// (a TpChannel) and one for the collectives of CPU backends (SocketGroup). GPU ranks take NCCL for
// the collectives, its id sent over the steps' channel as with forked workers.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "model/tensor_parallel.h"

namespace vela {

// Every byte of [p, p + n) written / read on a socket (EINTR retried). write_all throws
// GroupFailed when the other end is gone; read_all returns false at a clean end before the first
// byte when `eof_ok`, and throws GroupFailed on any other short read.
void write_all(int fd, const void* p, size_t n);
bool read_all(int fd, void* p, size_t n, bool eof_ok = false);

// The rank of this process and the group's size as mpirun's environment gives them
// (OMPI_COMM_WORLD_*, or PMI_RANK / PMI_SIZE), and its rank among the ranks of its host (the GPU it
// takes); size 0 when the process was not launched by mpirun.
struct LaunchedRank {
    int rank = 0, size = 0, local_rank = 0;
};
LaunchedRank launched_rank_from_env();

// The sockets of a group that met at `master` ("host:port"): rank 0 listens there and accepts
// every other rank's two connections; a worker connects (retrying while rank 0 starts). Error
// naming what is missing after `timeout_s`.
struct TpSockets {
    // Rank 0: ranks 1..size-1's sockets (index r - 1); a worker: its own to rank 0 (index 0).
    std::vector<int> control, data;
};
TpSockets tp_rendezvous(int rank, int size, const std::string& master, double timeout_s = 60);

// Collectives over TCP through rank 0 (CPU backends of ranks in different processes, possibly on
// different hosts): rank 0 sums the ranks' operands in rank order, as ThreadGroup does (the same
// bits), and sends every rank the result. A rank whose socket closes fails the collective with
// GroupFailed naming it.
class SocketGroup final : public Communicator {
  public:
    // `fds`: rank 0's data sockets of ranks 1..size-1, or a worker's one socket to rank 0 (owned:
    // closed with the group).
    SocketGroup(int rank, int size, std::vector<int> fds);
    ~SocketGroup() override;
    SocketGroup(const SocketGroup&) = delete;
    SocketGroup& operator=(const SocketGroup&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void all_reduce_sum(Backend& backend, Tensor x) override;
    void all_gather_cols(Backend& backend, const Tensor& local, Tensor full) override;

  private:
    void send(int peer, const void* p, size_t n);
    void receive(int peer, void* p, size_t n);

    int rank_, size_;
    std::vector<int> fds_;
    std::vector<float> sum_, part_;
};

}  // namespace vela
