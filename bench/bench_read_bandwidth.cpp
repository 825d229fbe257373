// STREAM-like read bandwidth: the rate at which `threads` threads can stream `MiB` mebibytes
// that are not in cache, the ceiling a memory-bound decode step is judged against. Each thread
// sums its contiguous slice with 256-bit loads (4 independent accumulators), as a matrix-vector
// kernel reads its weight rows. Prints the best and median of the repetitions.
//
//   bench_read_bandwidth MiB [threads] [repetitions]
#include <fmt/format.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/thread_pool.h"

namespace {

__attribute__((target("avx2"))) uint64_t sum_slice(const __m256i* p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        a = _mm256_add_epi64(a, _mm256_load_si256(p + i));
        b = _mm256_add_epi64(b, _mm256_load_si256(p + i + 1));
        c = _mm256_add_epi64(c, _mm256_load_si256(p + i + 2));
        d = _mm256_add_epi64(d, _mm256_load_si256(p + i + 3));
    }
    const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        fmt::print(stderr, "usage: {} MiB [threads] [repetitions]\n", argv[0]);
        return 2;
    }
    const size_t mib = std::strtoull(argv[1], nullptr, 10);
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const int reps = argc > 3 ? std::atoi(argv[3]) : 10;
    if (mib < 1 || mib > (1u << 16) || threads < 1 || threads > 1024 || reps < 1) {
        fmt::print(stderr, "bench_read_bandwidth: MiB in [1, 65536], threads >= 1, reps >= 1\n");
        return 2;
    }
    const size_t bytes = mib << 20;
    const size_t vectors = bytes / sizeof(__m256i);
    std::unique_ptr<void, decltype(&std::free)> buf(std::aligned_alloc(4096, bytes), &std::free);
    std::memset(buf.get(), 1, bytes);  // fault every page in before timing
    const auto* data = static_cast<const __m256i*>(buf.get());

    vela::ThreadPool pool(threads);
    std::vector<uint64_t> sums(static_cast<size_t>(threads));
    std::vector<double> rates;
    for (int r = 0; r < reps + 1; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.run([&](int ith, int nth) {
            const size_t begin = vectors * static_cast<size_t>(ith) / static_cast<size_t>(nth);
            const size_t end = vectors * static_cast<size_t>(ith + 1) / static_cast<size_t>(nth);
            sums[static_cast<size_t>(ith)] += sum_slice(data + begin, end - begin);
        });
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) rates.push_back(static_cast<double>(bytes) / s / 1e9);  // r = 0 warms up
    }
    std::sort(rates.begin(), rates.end());
    uint64_t check = 0;
    for (uint64_t s : sums) check += s;  // keeps the loads alive
    fmt::print("read {} MiB, {} threads: best {:.1f} GB/s, median {:.1f} GB/s (checksum {})\n", mib,
               threads, rates.back(), rates[rates.size() / 2], check & 0xff);
    return 0;
}
