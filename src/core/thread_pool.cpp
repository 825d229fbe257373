#include "core/thread_pool.h"

#include <immintrin.h>

#include "core/error.h"

namespace vela {
namespace {
// Pause iterations before a worker sleeps: long enough (~0.1-1 ms, `pause` takes 10-140 cycles
// depending on the core) to bridge the serial gap between two ops of a decode step, short
// enough not to burn a core between requests.
constexpr int kSpinIterations = 1 << 13;
// Pause iterations before the caller, waiting for the workers, starts yielding its core: on an
// oversubscribed machine the worker it waits for may need that core to run at all.
constexpr int kCallerSpinIterations = 1 << 12;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    generation_.notify_all();
    for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    if (n_threads_ == 1) {
        fn(0, 1);
        return;
    }
    task_ = &fn;
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    generation_.notify_all();
    fn(0, n_threads_);
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
        if (spin < kCallerSpinIterations) {
            _mm_pause();
        } else {
            std::this_thread::yield();
        }
    }
    task_ = nullptr;
}

void ThreadPool::worker_loop(int ith) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = generation_.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
            _mm_pause();
            gen = generation_.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            generation_.wait(seen, std::memory_order_acquire);
            continue;
        }
        seen = gen;
        if (stop_.load(std::memory_order_acquire)) return;
        (*task_)(ith, n_threads_);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

}  // namespace vela
