#include "engine/tp_workers.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"
#include "engine/tp_sockets.h"

namespace vela {
namespace {

// Plain values and arrays of them, in this process's byte order (both ends are one binary).
class WireOut {
  public:
    explicit WireOut(std::vector<std::byte>& b) : b_(b) { b_.clear(); }
    template <class T>
    void pod(const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        put(&v, sizeof(T));
    }
    template <class T>
    void array(std::span<const T> v) {
        pod<uint64_t>(v.size());
        put(v.data(), v.size_bytes());
    }
    template <class T>
    void array(const std::vector<T>& v) {
        array(std::span<const T>(v));
    }

  private:
    void put(const void* data, size_t n) {
        const size_t at = b_.size();
        b_.resize(at + n);
        if (n > 0) std::memcpy(b_.data() + at, data, n);
    }

    std::vector<std::byte>& b_;
};

class WireIn {
  public:
    explicit WireIn(std::span<const std::byte> b) : b_(b) {}
    template <class T>
    T pod() {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        take(&v, sizeof(T));
        return v;
    }
    template <class T>
    void array(std::vector<T>& out) {
        const auto n = pod<uint64_t>();
        if (n > (b_.size() - at_) / sizeof(T)) malformed();
        out.resize(n);
        take(out.data(), n * sizeof(T));
    }
    void end() const {
        if (at_ != b_.size()) malformed();
    }

  private:
    void take(void* dst, size_t n) {
        if (n > b_.size() - at_) malformed();
        if (n == 0) return;  // an empty array's data() may be null, which memcpy may not take
        std::memcpy(dst, b_.data() + at_, n);
        at_ += n;
    }
    [[noreturn]] static void malformed() { fail("tensor parallel: malformed message from rank 0"); }

    std::span<const std::byte> b_;
    size_t at_ = 0;
};

struct Header {
    TpChannel::Kind kind;
    uint32_t kv;
    uint64_t bytes;
};

void write_batch(WireOut& w, const ForwardBatch& b) {
    w.array(b.tokens);
    w.array(b.positions);
    w.array(b.slot_mapping);
    w.array(b.query_start);
    w.array(b.kv_len);
    w.pod(b.max_blocks);
    w.array(b.block_table);
    w.array(b.local_slot_mapping);
    w.array(b.local_block_table);
    w.array(b.logit_rows);
    w.array(b.tree_mask);
    w.array(b.tree_offset);
    w.pod(b.kv_scores);
    w.pod(b.sparse_sinks);
    w.pod(b.sparse_window);
}

void read_batch(WireIn& r, ForwardBatch& b) {
    r.array(b.tokens);
    r.array(b.positions);
    r.array(b.slot_mapping);
    r.array(b.query_start);
    r.array(b.kv_len);
    b.max_blocks = r.pod<int32_t>();
    r.array(b.block_table);
    r.array(b.local_slot_mapping);
    r.array(b.local_block_table);
    r.array(b.logit_rows);
    r.array(b.tree_mask);
    r.array(b.tree_offset);
    b.kv_scores = r.pod<KvScoreMode>();
    b.sparse_sinks = r.pod<int64_t>();
    b.sparse_window = r.pod<int64_t>();
}

// The threads of this process (fork copies only the calling one).
int count_threads() {
    DIR* d = opendir("/proc/self/task");
    if (!d) return 1;
    int n = 0;
    while (const dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

std::string exit_reason(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
    return "stopped";
}

}  // namespace

// --- the channel ---

TpChannel::~TpChannel() {
    if (fd_ >= 0) close(fd_);
}

void TpChannel::send(Kind kind, uint32_t kv, std::span<const std::byte> payload) {
    const Header h{kind, kv, payload.size()};
    write_all(fd_, &h, sizeof h);
    write_all(fd_, payload.data(), payload.size());
}

bool TpChannel::receive(Message& m) {
    Header h{};
    if (!read_all(fd_, &h, sizeof h, /*eof_ok=*/true)) return false;  // rank 0 closed it
    m.kind = h.kind;
    m.kv = h.kv;
    m.payload.resize(h.bytes);
    read_all(fd_, m.payload.data(), h.bytes);
    return true;
}

// --- a worker ---

void serve_tp_steps(Model& model, Backend& backend, TpChannel& channel) {
    std::unordered_map<uint32_t, std::unique_ptr<KvStorage>> kvs;
    auto kv_of = [&](uint32_t id) -> KvStorage& {
        auto it = kvs.find(id);
        if (it == kvs.end()) fail("tensor parallel: rank 0 named KV storage {} it never made", id);
        return *it->second;
    };
    TpChannel::Message m;
    ForwardBatch batch;
    std::vector<int32_t> keep;
    std::vector<LogitPenalty> penalties;
    std::vector<BlockOp> ops;
    Model::RowsOut out;
    while (channel.receive(m)) {
        WireIn in(m.payload);
        switch (m.kind) {
            case TpChannel::Kind::KvCreate: {
                const auto block_size = in.pod<int64_t>(), num_blocks = in.pod<int64_t>(),
                           n_kv_heads = in.pod<int64_t>(), local_blocks = in.pod<int64_t>();
                const auto scores = in.pod<bool>();
                const auto formats = in.pod<KvFormats>();
                in.end();
                // This rank's own layout (its heads' key offsets), of rank 0's size.
                KvLayout layout = model.kv_layout(block_size, num_blocks, local_blocks);
                VELA_ASSERT(layout.n_kv_heads == n_kv_heads);
                layout.attention_scores = scores;
                kvs[m.kv] = model.make_kv_storage(backend, layout, formats);
                break;
            }
            case TpChannel::Kind::KvApply:
                in.array(ops);
                in.end();
                kv_of(m.kv).apply(ops);
                break;
            case TpChannel::Kind::KvDestroy:
                in.end();
                kvs.erase(m.kv);
                break;
            case TpChannel::Kind::Forward: {
                read_batch(in, batch);
                in.array(keep);
                in.array(penalties);
                const auto lse = in.pod<bool>();
                in.end();
                model.forward(batch, kv_of(m.kv), backend, keep, out, penalties, lse);
                break;
            }
            case TpChannel::Kind::Setup:
                fail("tensor parallel: a setup message after the worker started");
        }
    }
}

// --- rank 0 ---

// Rank 0's KV storage: its own, with every block operation sent to the workers first.
class TpWorkers::Mirrored final : public KvStorage {
  public:
    Mirrored(TpWorkers& owner, uint32_t id, std::unique_ptr<KvStorage> local)
        : owner_(owner), id_(id), local_(std::move(local)) {}
    ~Mirrored() override {
        try {
            owner_.send_all(TpChannel::Kind::KvDestroy, id_, {});
        } catch (const GroupFailed&) {  // a stopped group keeps nothing to free
        }
    }
    const KvLayout& layout() const override { return local_->layout(); }
    KvFormats formats() const override { return local_->formats(); }
    Device device() const override { return local_->device(); }
    void apply(std::span<const BlockOp> ops) override {
        if (!ops.empty()) {
            WireOut w(owner_.wire_);
            w.array(ops);
            owner_.send_all(TpChannel::Kind::KvApply, id_, owner_.wire_);
        }
        local_->apply(ops);
    }
    void read_scores(int64_t layer, std::span<const int64_t> slots, float* out) const override {
        local_->read_scores(layer, slots, out);
    }
    size_t bytes_per_token() const override { return local_->bytes_per_token(); }

    const TpWorkers& owner() const { return owner_; }
    uint32_t id() const { return id_; }
    KvStorage& local() { return *local_; }

  private:
    TpWorkers& owner_;
    uint32_t id_;
    std::unique_ptr<KvStorage> local_;
};

TpWorkers::TpWorkers(int size, const WorkerMain& worker, ShmGroup* group) : group_(group) {
    VELA_ASSERT(size >= 2);
    if (const int threads = count_threads(); threads != 1) {
        fail("tensor parallel: the worker processes must be started before any other thread "
             "(this process has {})",
             threads);
    }
    std::fflush(nullptr);  // nothing buffered is written twice
    const pid_t parent = getpid();
    for (int r = 1; r < size; ++r) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            fail("tensor parallel: socketpair: {}", strerror(errno));
        const pid_t pid = fork();
        if (pid < 0) fail("tensor parallel: fork: {}", strerror(errno));
        if (pid == 0) {
            // The worker: dies with rank 0, keeps only its own channel.
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            channels_.clear();
            close(sv[0]);
            int code = 1;
            try {
                TpChannel channel(sv[1]);
                code = worker(r, channel);
            } catch (const std::exception& e) {
                log(LogLevel::Error, "tensor-parallel rank {}: {}", r, e.what());
                if (group_) group_->fail(r, e.what());
            }
            std::fflush(nullptr);
            _exit(code);
        }
        close(sv[1]);
        pids_.push_back(pid);
        channels_.push_back(std::make_unique<TpChannel>(sv[0]));
    }
    if (group_) group_->set_liveness_check([this] { return check_workers(); });
}

TpWorkers::~TpWorkers() {
    if (group_) {
        group_->set_liveness_check(nullptr);
        group_->fail(0, "rank 0 stopped the group");  // wakes a worker inside a collective
    }
    channels_.clear();  // each worker's loop ends at its channel's end
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (pid_t& pid : pids_) {
        while (pid > 0) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) != 0) {
                pid = -1;
            } else if (std::chrono::steady_clock::now() > deadline) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                pid = -1;
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
        }
    }
}

TpWorkers::TpWorkers(std::vector<std::unique_ptr<TpChannel>> channels)
    : channels_(std::move(channels)), group_(nullptr) {
    VELA_ASSERT(!channels_.empty());
}

std::string TpWorkers::check_workers() {
    for (size_t i = 0; i < pids_.size(); ++i) {
        if (pids_[i] <= 0) continue;
        int status = 0;
        if (waitpid(pids_[i], &status, WNOHANG) == pids_[i]) {
            pids_[i] = -1;
            if (failure_.empty())
                failure_ = fmt::format("worker rank {} {}", i + 1, exit_reason(status));
        }
    }
    return failure_;
}

void TpWorkers::throw_if_failed() {
    std::string why = group_ ? group_->failure() : "";
    if (why.empty()) {
        why = check_workers();
        if (!why.empty() && group_) group_->fail(-1, why);  // wakes the other workers
    }
    if (!why.empty()) throw GroupFailed(fmt::format("tensor-parallel group stopped ({})", why));
}

void TpWorkers::send_all(TpChannel::Kind kind, uint32_t kv, std::span<const std::byte> payload) {
    throw_if_failed();
    for (size_t i = 0; i < channels_.size(); ++i) {
        try {
            channels_[i]->send(kind, kv, payload);
        } catch (const GroupFailed&) {
            // Its process is gone, or about to be: name how it went where waitpid can tell.
            for (int tries = 0; tries < 100 && check_workers().empty(); ++tries)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            if (failure_.empty()) failure_ = fmt::format("worker rank {}: channel closed", i + 1);
            throw_if_failed();
        }
    }
}

void TpWorkers::send_setup(std::span<const std::byte> bytes) {
    send_all(TpChannel::Kind::Setup, 0, bytes);
}

std::unique_ptr<KvStorage> TpWorkers::make_kv_storage(Backend& backend, const KvLayout& layout,
                                                      KvFormats formats) {
    auto local = backend.make_kv_storage(layout, formats);
    const uint32_t id = next_kv_++;
    WireOut w(wire_);
    w.pod(layout.block_size);
    w.pod(layout.num_blocks);
    w.pod(layout.n_kv_heads);
    w.pod(layout.local_num_blocks);
    w.pod(layout.attention_scores);
    w.pod(formats);
    send_all(TpChannel::Kind::KvCreate, id, wire_);
    return std::make_unique<Mirrored>(*this, id, std::move(local));
}

KvStorage& TpWorkers::forward(const ForwardBatch& batch, KvStorage& kv,
                              std::span<const int32_t> keep,
                              std::span<const LogitPenalty> penalties, bool lse) {
    auto* mirrored = dynamic_cast<Mirrored*>(&kv);
    if (!mirrored || &mirrored->owner() != this)
        fail("tensor parallel: a forward over a KV storage the workers do not have");
    WireOut w(wire_);
    write_batch(w, batch);
    w.array(keep);
    w.array(penalties);
    w.pod(lse);
    send_all(TpChannel::Kind::Forward, mirrored->id(), wire_);
    return mirrored->local();
}

}  // namespace vela
