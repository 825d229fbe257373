#include "engine/tp_sockets.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace vela {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x56544c41;  // "VTLA"

struct Hello {
    uint32_t magic;
    int32_t rank, size, kind;  // kind 0: the steps' channel, 1: the collectives'
};

int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

std::pair<std::string, std::string> split_master(const std::string& master) {
    const size_t colon = master.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == master.size())
        fail<InvalidArgument>("VELA_TP_MASTER must be host:port, got '{}'", master);
    return {master.substr(0, colon), master.substr(colon + 1)};
}

addrinfo* resolve(const std::string& master, bool passive) {
    const auto [host, port] = split_master(master);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    addrinfo* res = nullptr;
    if (const int e = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); e != 0)
        fail("tensor parallel: cannot resolve '{}': {}", master, gai_strerror(e));
    return res;
}

void no_delay(int fd) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // steps are small messages
}

int listen_at(const std::string& master) {
    addrinfo* res = resolve(master, true);
    int fd = -1;
    std::string why = "no address";
    for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        const int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            why = strerror(errno);
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) fail("tensor parallel: rank 0 cannot listen at {}: {}", master, why);
    return fd;
}

// Connects to rank 0, retrying until the deadline (rank 0 may not listen yet).
int connect_to(const std::string& master, Clock::time_point deadline) {
    for (;;) {
        addrinfo* res = resolve(master, false);
        for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
            const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) continue;
            if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                freeaddrinfo(res);
                no_delay(fd);
                return fd;
            }
            close(fd);
        }
        freeaddrinfo(res);
        if (Clock::now() > deadline) fail("tensor parallel: no rank 0 at {}", master);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

}  // namespace

void write_all(int fd, const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    while (n > 0) {
        const ssize_t k = ::send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            throw GroupFailed(fmt::format("tensor parallel: a rank is gone ({})",
                                          k < 0 ? strerror(errno) : "closed"));
        b += k;
        n -= static_cast<size_t>(k);
    }
}

bool read_all(int fd, void* p, size_t n, bool eof_ok) {
    auto* b = static_cast<std::byte*>(p);
    const size_t want = n;
    while (n > 0) {
        const ssize_t k = ::read(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0 && eof_ok && n == want) return false;
        if (k <= 0)
            throw GroupFailed(fmt::format("tensor parallel: a rank is gone ({})",
                                          k < 0 ? strerror(errno) : "connection closed"));
        b += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

LaunchedRank launched_rank_from_env() {
    LaunchedRank r;
    r.size = env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", 0));
    if (r.size == 0) return r;
    r.rank = env_int("OMPI_COMM_WORLD_RANK", env_int("PMI_RANK", 0));
    r.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("MPI_LOCALRANKID", r.rank));
    return r;
}

TpSockets tp_rendezvous(int rank, int size, const std::string& master, double timeout_s) {
    VELA_ASSERT(size >= 2 && rank >= 0 && rank < size);
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    TpSockets s;
    if (rank != 0) {
        for (int kind : {0, 1}) {
            const int fd = connect_to(master, deadline);
            const Hello h{kMagic, rank, size, kind};
            write_all(fd, &h, sizeof h);
            (kind == 0 ? s.control : s.data).push_back(fd);
        }
        return s;
    }
    s.control.assign(static_cast<size_t>(size - 1), -1);
    s.data.assign(static_cast<size_t>(size - 1), -1);
    const int listener = listen_at(master);
    auto cleanup = [&] {
        close(listener);
        for (int fd : s.control)
            if (fd >= 0) close(fd);
        for (int fd : s.data)
            if (fd >= 0) close(fd);
    };
    for (int joined = 0; joined < 2 * (size - 1);) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                               Clock::now());
        pollfd p{listener, POLLIN, 0};
        if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            cleanup();
            fail("tensor parallel: {} of {} ranks joined at {} within {} s", joined / 2 + 1, size,
                 master, timeout_s);
        }
        const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        no_delay(fd);
        Hello h{};
        try {
            read_all(fd, &h, sizeof h);
        } catch (const GroupFailed&) {
            close(fd);
            continue;
        }
        if (h.magic != kMagic || h.size != size || h.rank < 1 || h.rank >= size ||
            (h.kind != 0 && h.kind != 1)) {
            close(fd);
            cleanup();
            fail("tensor parallel: a rank joined as {} of {} (kind {}); this group has {} ranks",
                 h.rank, h.size, h.kind, size);
        }
        int& slot = (h.kind == 0 ? s.control : s.data)[static_cast<size_t>(h.rank - 1)];
        if (slot >= 0) {
            close(fd);
            cleanup();
            fail("tensor parallel: rank {} joined twice", h.rank);
        }
        slot = fd;
        ++joined;
    }
    close(listener);
    return s;
}

// --- collectives through rank 0 ---

SocketGroup::SocketGroup(int rank, int size, std::vector<int> fds)
    : rank_(rank), size_(size), fds_(std::move(fds)) {
    VELA_ASSERT(std::ssize(fds_) == (rank == 0 ? size - 1 : 1));
}

SocketGroup::~SocketGroup() {
    for (int fd : fds_) close(fd);
}

void SocketGroup::send(int peer, const void* p, size_t n) {
    try {
        write_all(fds_[static_cast<size_t>(rank_ == 0 ? peer - 1 : 0)], p, n);
    } catch (const GroupFailed&) {
        throw GroupFailed(fmt::format("tensor-parallel group stopped (rank {} is gone)", peer));
    }
}

void SocketGroup::receive(int peer, void* p, size_t n) {
    try {
        read_all(fds_[static_cast<size_t>(rank_ == 0 ? peer - 1 : 0)], p, n);
    } catch (const GroupFailed&) {
        throw GroupFailed(fmt::format("tensor-parallel group stopped (rank {} is gone)", peer));
    }
}

void SocketGroup::all_reduce_sum(Backend&, Tensor x) {
    VELA_ASSERT(x.device == Device::Cpu && x.dtype == DType::F32);
    const auto n = static_cast<size_t>(x.numel());
    const size_t bytes = n * sizeof(float);
    if (rank_ != 0) {
        send(0, x.f32(), bytes);
        receive(0, x.f32(), bytes);
        return;
    }
    sum_.assign(n, 0.0f);
    part_.resize(n);
    for (size_t i = 0; i < n; ++i) sum_[i] += x.f32()[i];
    for (int r = 1; r < size_; ++r) {
        receive(r, part_.data(), bytes);
        for (size_t i = 0; i < n; ++i) sum_[i] += part_[i];
    }
    for (int r = 1; r < size_; ++r) send(r, sum_.data(), bytes);
    std::copy(sum_.begin(), sum_.end(), x.f32());
}

void SocketGroup::all_gather_cols(Backend&, const Tensor& local, Tensor full) {
    VELA_ASSERT(local.device == Device::Cpu && local.dtype == DType::F32);
    VELA_ASSERT(full.device == Device::Cpu && full.dtype == DType::F32 && local.rows == full.rows);
    const size_t full_bytes = static_cast<size_t>(full.numel()) * sizeof(float);
    if (rank_ != 0) {
        const int64_t cols = local.cols;
        send(0, &cols, sizeof cols);
        send(0, local.f32(), static_cast<size_t>(local.numel()) * sizeof(float));
        receive(0, full.f32(), full_bytes);
        return;
    }
    auto place = [&](const float* src, int64_t cols, int64_t col) {
        for (int64_t r = 0; r < full.rows; ++r)
            std::copy_n(src + r * cols, cols, full.f32() + r * full.cols + col);
    };
    place(local.f32(), local.cols, 0);
    int64_t col = local.cols;
    for (int r = 1; r < size_; ++r) {
        int64_t cols = 0;
        receive(r, &cols, sizeof cols);
        if (cols < 0 || col + cols > full.cols)
            throw GroupFailed(fmt::format("tensor parallel: rank {} gathers {} columns", r, cols));
        part_.resize(static_cast<size_t>(full.rows * cols));
        receive(r, part_.data(), part_.size() * sizeof(float));
        place(part_.data(), cols, col);
        col += cols;
    }
    VELA_ASSERT(col == full.cols);
    for (int r = 1; r < size_; ++r) send(r, full.f32(), full_bytes);
}

}  // namespace vela
