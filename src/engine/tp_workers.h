#pragma once
// Tensor parallelism over processes of one host: rank 0 (the process that schedules: the engine,
// the server) forks one worker process per other rank. Each worker loads its share of the model
// (Model with its rank's Communicator) and then runs what rank 0 sends over a Unix socket, in
// order: the KV storages it makes, every block operation on them, and every forward with its
// batch. The ranks' collectives meet inside the forwards (ShmGroup on CPU backends, NCCL on GPUs).
//
// Rank 0's Model gets the group as its StepBroadcast (model/tensor_parallel.h), so everything
// that drives a Model (Engine, ForwardDriver) runs tensor-parallel unchanged.
//
// A worker that dies or fails stops the group: rank 0's next (or current) forward throws
// GroupFailed naming the rank, and so does every later one. Workers die with rank 0.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model.h"
#include "model/shm_group.h"
#include "model/tensor_parallel.h"

namespace vela {

// One end of the socket between rank 0 and a worker: framed messages.
class TpChannel {
  public:
    enum class Kind : uint32_t { Setup, KvCreate, KvApply, KvDestroy, Forward };
    struct Message {
        Kind kind = Kind::Setup;
        uint32_t kv = 0;  // the storage a Kv* or Forward message is for
        std::vector<std::byte> payload;
    };

    explicit TpChannel(int fd) : fd_(fd) {}
    ~TpChannel();
    TpChannel(const TpChannel&) = delete;
    TpChannel& operator=(const TpChannel&) = delete;

    // GroupFailed when the other end is gone.
    void send(Kind kind, uint32_t kv, std::span<const std::byte> payload);
    // The next message; false when the other end closed the socket.
    bool receive(Message& m);

  private:
    int fd_;
};

// A worker's loop: carries out rank 0's messages on its own share until rank 0 closes the
// channel. Setup messages are for the worker's own start (read before this loop) and refused
// here. Errors propagate: the caller fails the group.
void serve_tp_steps(Model& model, Backend& backend, TpChannel& channel);

class TpWorkers final : public StepBroadcast {
  public:
    // A worker process's whole life as rank `rank`: load its share, read its setup, then
    // serve_tp_steps; returns its exit code. An exception fails `group` (when there is one)
    // and exits 1.
    using WorkerMain = std::function<int(int rank, TpChannel& channel)>;

    // Forks ranks 1 .. size - 1, each running `worker`. The calling process must have one
    // thread (fork copies only the caller's); Error otherwise. `group` (CPU backends): the
    // workers' ShmGroup, failed when a worker is found gone so that no rank waits on.
    TpWorkers(int size, const WorkerMain& worker, ShmGroup* group = nullptr);
    // Ranks started by someone else (mpirun; tp_sockets.h): their steps' channels, rank r's at
    // index r - 1. A worker that is gone shows as its channel or its collectives failing.
    explicit TpWorkers(std::vector<std::unique_ptr<TpChannel>> channels);
    // Ends the group: the workers' loops end when their channels close, and any worker still
    // inside a collective is woken (the group is failed first); each is waited for, and killed
    // if it has not exited within a few seconds.
    ~TpWorkers() override;
    TpWorkers(const TpWorkers&) = delete;
    TpWorkers& operator=(const TpWorkers&) = delete;

    int size() const { return static_cast<int>(channels_.size()) + 1; }
    // Rank r's process (r >= 1, forked workers), -1 once it has exited and been reaped.
    pid_t pid(int r) const { return pids_.at(static_cast<size_t>(r - 1)); }
    // The same bytes to every worker, before the steps (e.g. NCCL's group id).
    void send_setup(std::span<const std::byte> bytes);
    // Why a worker has gone ("" while all run); reaps those that exited.
    std::string check_workers();

    std::unique_ptr<KvStorage> make_kv_storage(Backend& backend, const KvLayout& layout,
                                               KvFormats formats) override;
    KvStorage& forward(const ForwardBatch& batch, KvStorage& kv, std::span<const int32_t> keep,
                       std::span<const LogitPenalty> penalties, bool lse) override;

  private:
    class Mirrored;
    // Every worker gets the message; GroupFailed when one is gone.
    void send_all(TpChannel::Kind kind, uint32_t kv, std::span<const std::byte> payload);
    void throw_if_failed();

    std::vector<pid_t> pids_;  // rank r + 1's process, -1 once reaped
    std::vector<std::unique_ptr<TpChannel>> channels_;
    ShmGroup* group_;
    std::string failure_;  // why the group stopped, once it has
    uint32_t next_kv_ = 0;
    std::vector<std::byte> wire_;  // a message being built
};

}  // namespace vela
