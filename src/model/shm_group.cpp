#include "model/shm_group.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>

#include "core/error.h"

namespace vela {
namespace {

constexpr int kMaxRanks = 64;
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Shared (not private) futexes: the waiters are other processes.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ns) {
    timespec ts{0, timeout_ns};
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>* word) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr,
            0);
}

void check_host(const Tensor& t) {
    VELA_ASSERT(t.device == Device::Cpu && t.dtype == DType::F32);
}

}  // namespace

struct ShmGroup::Header {
    std::atomic<uint32_t> arrived;
    std::atomic<uint32_t> generation;
    std::atomic<int32_t> failed;   // 0 while the group works, 1 once `why` is written
    std::atomic<int32_t> failing;  // taken by the first rank to fail the group
    char why[512];
    int64_t count[kMaxRanks];  // each rank's operand of the current piece: elements or columns
};

class ShmGroup::Rank final : public Communicator {
  public:
    Rank(ShmGroup& group, int rank) : group_(group), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return group_.size_; }

    void all_reduce_sum(Backend&, Tensor x) override {
        check_host(x);
        const int64_t n = x.numel(), piece = static_cast<int64_t>(group_.slot_floats_);
        float* data = x.f32();
        for (int64_t off = 0; off < n; off += piece) {
            const int64_t len = std::min(piece, n - off);
            std::copy_n(data + off, len, group_.slot(rank_));
            group_.header_->count[rank_] = len;
            group_.barrier();
            sum_.assign(static_cast<size_t>(len), 0.0f);
            for (int r = 0; r < group_.size_; ++r) {
                if (group_.header_->count[r] != len) {
                    group_.fail(rank_, "all_reduce_sum of different sizes on the ranks");
                    group_.throw_failed();
                }
                const float* v = group_.slot(r);
                for (size_t i = 0; i < sum_.size(); ++i) sum_[i] += v[i];
            }
            group_.barrier();  // every operand read: the ranks may overwrite them
            std::copy(sum_.begin(), sum_.end(), data + off);
        }
    }

    void all_gather_cols(Backend&, const Tensor& local, Tensor full) override {
        check_host(local);
        check_host(full);
        VELA_ASSERT(local.rows == full.rows);
        VELA_ASSERT(static_cast<size_t>(full.cols) <= group_.slot_floats_);
        const int64_t piece = static_cast<int64_t>(group_.slot_floats_) / full.cols;
        for (int64_t r0 = 0; r0 < full.rows; r0 += piece) {
            const int64_t rows = std::min(piece, full.rows - r0);
            std::copy_n(local.f32() + r0 * local.cols, rows * local.cols, group_.slot(rank_));
            group_.header_->count[rank_] = local.cols;
            group_.barrier();
            int64_t col = 0;
            for (int r = 0; r < group_.size_; ++r) {
                const int64_t cols = group_.header_->count[r];
                if (col + cols > full.cols) {
                    group_.fail(rank_, "all_gather_cols wider than its output");
                    group_.throw_failed();
                }
                const float* v = group_.slot(r);
                for (int64_t i = 0; i < rows; ++i)
                    std::copy_n(v + i * cols, cols, full.f32() + (r0 + i) * full.cols + col);
                col += cols;
            }
            VELA_ASSERT(col == full.cols);
            group_.barrier();
        }
    }

  private:
    ShmGroup& group_;
    int rank_;
    std::vector<float> sum_;
};

ShmGroup::ShmGroup(int size, size_t slot_floats) : size_(size), slot_floats_(slot_floats) {
    VELA_ASSERT(size >= 1 && size <= kMaxRanks && slot_floats > 0);
    const size_t header = (sizeof(Header) + 63) / 64 * 64;
    bytes_ = header + static_cast<size_t>(size) * slot_floats * sizeof(float);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) vela::fail("tensor parallel: cannot map {} bytes: {}", bytes_, strerror(errno));
    header_ = new (p) Header{};
    header_->arrived.store(0);
    header_->generation.store(0);
    header_->failed.store(0);
    header_->failing.store(0);
    for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
}

ShmGroup::~ShmGroup() {
    munmap(header_, bytes_);
}

Communicator& ShmGroup::rank(int r) {
    return *ranks_.at(static_cast<size_t>(r));
}

float* ShmGroup::slot(int r) const {
    const size_t header = (sizeof(Header) + 63) / 64 * 64;
    return reinterpret_cast<float*>(reinterpret_cast<std::byte*>(header_) + header) +
           static_cast<size_t>(r) * slot_floats_;
}

void ShmGroup::fail(int rank, const std::string& why) {
    int32_t expected = 0;
    if (header_->failing.compare_exchange_strong(expected, 1)) {
        const std::string text = rank >= 0 ? fmt::format("rank {}: {}", rank, why) : why;
        const size_t n = std::min(text.size(), sizeof(header_->why) - 1);
        std::memcpy(header_->why, text.data(), n);
        header_->why[n] = '\0';
        header_->failed.store(1, std::memory_order_release);
    }
    // Wake every waiter: barrier() checks the failure before each sleep, and a sleep that began
    // just before this wake-up ends at its timeout.
    futex_wake(&header_->generation);
}

std::string ShmGroup::failure() const {
    if (header_->failed.load(std::memory_order_acquire) == 0) return "";
    return header_->why;
}

void ShmGroup::throw_failed() const {
    std::string why = failure();
    for (int i = 0; why.empty() && i < 1000; ++i) {  // the failing rank is writing its reason
        sched_yield();
        why = failure();
    }
    throw GroupFailed(fmt::format("tensor-parallel group stopped ({})", why));
}

void ShmGroup::barrier() {
    Header& h = *header_;
    if (h.failing.load(std::memory_order_acquire) != 0) throw_failed();
    const uint32_t gen = h.generation.load(std::memory_order_acquire);
    if (h.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(size_)) {
        h.arrived.store(0, std::memory_order_relaxed);
        h.generation.store(gen + 1, std::memory_order_release);
        futex_wake(&h.generation);
        return;
    }
    // A collective's ranks arrive within microseconds of each other in a step: yield first,
    // then sleep on the futex, checking liveness between sleeps.
    for (int spin = 0; h.generation.load(std::memory_order_acquire) == gen; ++spin) {
        if (h.failing.load(std::memory_order_acquire) != 0) throw_failed();
        if (spin < 200) {
            sched_yield();
            continue;
        }
        futex_wait(&h.generation, gen, 10'000'000);
        if (liveness_ && h.generation.load(std::memory_order_acquire) == gen) {
            if (std::string why = liveness_(); !why.empty()) fail(-1, why);
        }
    }
}

}  // namespace vela
