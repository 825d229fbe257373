#pragma once
// A fork-join pool tuned for many short parallel regions (a decode step runs a few hundred):
// workers spin briefly on a generation counter before sleeping, and the caller takes part as
// thread 0, so a region costs well under a microsecond when the workers are awake.
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace vela {

class ThreadPool {
  public:
    // n_threads counts the calling thread; 1 means everything runs inline.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs fn(ith, nth) once on each of the nth threads; returns when all have finished.
    // Not reentrant: fn must not call run() on the same pool.
    void run(const std::function<void(int ith, int nth)>& fn);

    // Splits [0, n) into one contiguous range per thread: fn(begin, end), skipping empty ones.
    template <class F>
    void parallel_for(int64_t n, F&& fn) {
        if (n_threads_ == 1 || n <= 1) {
            if (n > 0) fn(int64_t{0}, n);
            return;
        }
        run([&](int ith, int nth) {
            const int64_t begin = n * ith / nth;
            const int64_t end = n * (ith + 1) / nth;
            if (begin < end) fn(begin, end);
        });
    }

  private:
    void worker_loop(int ith);

    int n_threads_;
    std::vector<std::thread> workers_;
    const std::function<void(int, int)>* task_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
};

}  // namespace vela
