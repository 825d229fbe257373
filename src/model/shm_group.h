#pragma once
// Tensor-parallel ranks as processes of one host, over shared memory (CPU backends): the
// collectives of ThreadGroup (tensor_parallel.h) between processes. Rank 0 makes the group before
// it forks the others, which inherit the mapping. Sums are taken in rank order, so every rank
// gets the same bits, and the same bits as a ThreadGroup of the same size.
//
// A rank that stops does not hang the others: fail() (or a liveness check that finds a rank
// gone) wakes every waiting rank, and every collective of the group throws GroupFailed from then
// on.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/tensor_parallel.h"

namespace vela {

class ShmGroup {
  public:
    // `slot_floats`: each rank's share of the segment; larger collectives go in pieces (it must
    // hold one row of an all-gather: at least the vocabulary).
    explicit ShmGroup(int size, size_t slot_floats = size_t{1} << 20);
    ~ShmGroup();
    ShmGroup(const ShmGroup&) = delete;
    ShmGroup& operator=(const ShmGroup&) = delete;

    int size() const { return size_; }
    // The communicator of rank r, for the process that is rank r.
    Communicator& rank(int r);

    // Marks the group failed by `rank` for `why`: every rank's waiting or next collective throws
    // GroupFailed. The first failure is kept.
    void fail(int rank, const std::string& why);
    // Whether the group failed, and why ("" while it has not).
    std::string failure() const;
    // Called while a collective waits (every few milliseconds): a non-empty reason fails the
    // group. Rank 0 checks its workers' processes with it.
    void set_liveness_check(std::function<std::string()> check) { liveness_ = std::move(check); }

  private:
    class Rank;
    struct Header;
    void barrier();
    float* slot(int r) const;
    [[noreturn]] void throw_failed() const;

    int size_;
    size_t slot_floats_;
    size_t bytes_;
    Header* header_;  // the shared mapping: the header, then the ranks' slots
    std::function<std::string()> liveness_;
    std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace vela
