#include "tools/common.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <functional>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#ifdef VELA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#ifdef VELA_HAS_NCCL
#include "backend/cuda/nccl_communicator.h"
#endif
#include "core/error.h"
#include "core/log.h"
#include "engine/memory_plan.h"
#include "engine/tp_sockets.h"
#include "spec/draft_model_drafter.h"
#include "spec/ngram_drafter.h"
#include "tools/commands.h"

namespace vela::cli {
namespace fs = std::filesystem;

namespace {
constexpr const char* kDefaultModel = "SmolLM2-135M-Instruct.Q4_1.gguf";

// Reads every page of the mapped weights once so that the first forward does not stall on page
// faults, printing a progress bar for files large enough to notice.
void prefault(const gguf::File& f) {
    const auto& tensors = f.tensors();
    if (tensors.empty()) return;
    const bool show = f.size() > (size_t{512} << 20) && isatty(STDERR_FILENO);
    volatile uint8_t sink = 0;
    size_t done = 0;
    int last_pct = -1;
    for (const auto& t : tensors) {
        for (size_t off = 0; off < t.nbytes; off += 4096) sink = sink + t.data[off];
        done += t.nbytes;
        const int pct =
            static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(f.size()));
        if (show && pct != last_pct) {
            std::fprintf(stderr, "\rloading %s: %3d%%", f.path().c_str(), pct);
            last_pct = pct;
        }
    }
    if (show) std::fprintf(stderr, "\n");
}
}  // namespace

std::string default_model_path() {
    if (const char* env = std::getenv("VELA_MODEL"); env != nullptr && *env != '\0') return env;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        // build/<preset>/bin/vela -> <source>/models
        const fs::path candidate = exe.parent_path() / "../../../models" / kDefaultModel;
        if (fs::exists(candidate)) return fs::weakly_canonical(candidate).string();
    }
    return (fs::path("models") / kDefaultModel).string();
}

// The one place that picks the backend: "auto" is the GPU when the build has CUDA and the
// machine a usable device, else the CPU.
std::unique_ptr<Backend> make_backend(const std::string& device, ThreadPool& pool,
                                      bool enforce_eager, bool batch_invariant) {
    if (device != "cpu" && device != "cuda" && device != "auto") {
        fail<InvalidArgument>("--device must be cpu, cuda or auto, got '{}'", device);
    }
#ifdef VELA_HAS_CUDA
    if (device == "cuda" || (device == "auto" && cuda_device_available())) {
        return std::make_unique<CudaBackend>(/*graphs=*/!enforce_eager, batch_invariant);
    }
#else
    (void)enforce_eager;
    (void)batch_invariant;  // the CPU backend is batch-invariant as it is
    if (device == "cuda") {
        fail<InvalidArgument>(
            "--device cuda: this build has no CUDA backend (built without "
            "nvcc); use --device cpu");
    }
#endif
    return std::make_unique<CpuBackend>(pool);
}

namespace {

// Each rank's share of the CPU threads.
int threads_per_rank(const CommonOptions& o) {
    const int threads =
        o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, threads / o.tensor_parallel);
}

// NCCL's group on GPU backends: rank 0 makes its id and sends it to the workers, which read it
// from their channel before anything else.
using GroupId = std::array<char, 128>;  // ncclUniqueId's bytes

GroupId new_group_id() {
#ifdef VELA_HAS_NCCL
    return NcclCommunicator::new_id();
#else
    fail<InvalidArgument>("--tensor-parallel on a GPU: this build has no NCCL");
#endif
}

GroupId read_group_id(TpChannel& channel) {
    GroupId id{};
    TpChannel::Message m;
    if (!channel.receive(m)) fail("tensor parallel: rank 0 stopped before the setup");
    if (m.kind != TpChannel::Kind::Setup || m.payload.size() != id.size())
        fail("tensor parallel: rank 0 sent no NCCL id");
    std::memcpy(id.data(), m.payload.data(), id.size());
    return id;
}

std::unique_ptr<Communicator> gpu_communicator(const GroupId& id, int rank, int size) {
#ifdef VELA_HAS_NCCL
    return std::make_unique<NcclCommunicator>(id, rank, size);
#else
    (void)id, (void)rank, (void)size;
    fail<InvalidArgument>("--tensor-parallel on a GPU: this build has no NCCL");
#endif
}

// A worker: rank `rank`'s backend (GPU `device`) and share of the model, then the steps rank 0
// sends. `cpu_comm`: the group's collectives for CPU backends.
int serve_rank(const CommonOptions& o, const std::string& path, int rank, int device,
               Communicator& cpu_comm, TpChannel& channel) {
    ThreadPool pool(threads_per_rank(o));
#ifdef VELA_HAS_CUDA
    if (o.device == "cuda" || (o.device == "auto" && cuda_device_available()))
        cuda_select_device(device);
#else
    (void)device;
#endif
    const auto backend = make_backend(o.device, pool, o.enforce_eager, o.batch_invariant);
    std::unique_ptr<Communicator> nccl;
    if (backend->device() != Device::Cpu)
        nccl = gpu_communicator(read_group_id(channel), rank, o.tensor_parallel);
    Model model(path, nccl ? nccl.get() : &cpu_comm);
    serve_tp_steps(model, *backend, channel);
    return 0;
}

// The address ranks started by mpirun meet at (rank 0's host:port).
std::string tp_master() {
    const char* env = std::getenv("VELA_TP_MASTER");
    return env != nullptr && *env != '\0' ? env : "127.0.0.1:29517";
}

}  // namespace

Runtime Runtime::load(const CommonOptions& o) {
    if (o.verbose) log_level() = LogLevel::Debug;
    const std::string path = o.model.empty() ? default_model_path() : o.model;
    if (!fs::exists(path)) {
        fail<InvalidArgument>("model file '{}' not found{}", path,
                              o.model.empty() ? " (run scripts/fetch_model.sh)" : "");
    }
    const int tp = o.tensor_parallel;
    if (tp < 1 || tp > 64) fail<InvalidArgument>("--tensor-parallel must be 1 to 64, got {}", tp);
    Runtime rt;
    std::unique_ptr<SocketGroup> sockets;  // rank 0's CPU collectives with ranks mpirun started
    if (const LaunchedRank launched = launched_rank_from_env(); tp > 1 && launched.size > 0) {
        // Started by mpirun, a process per rank (on one host or several): the ranks meet over
        // TCP at rank 0; the workers serve steps, and exit, here.
        if (launched.size != tp) {
            fail<InvalidArgument>("--tensor-parallel {} under mpirun with {} processes: run "
                                  "mpirun -np {}",
                                  tp, launched.size, tp);
        }
        TpSockets s = tp_rendezvous(launched.rank, tp, tp_master());
        if (launched.rank != 0) {
            SocketGroup group(launched.rank, tp, s.data);
            TpChannel channel(s.control[0]);
            std::exit(serve_rank(o, path, launched.rank, launched.local_rank, group, channel));
        }
        std::vector<std::unique_ptr<TpChannel>> channels;
        for (int fd : s.control) channels.push_back(std::make_unique<TpChannel>(fd));
        rt.tp_workers = std::make_unique<TpWorkers>(std::move(channels));
        sockets = std::make_unique<SocketGroup>(0, tp, s.data);
    } else if (tp > 1) {  // first: the workers are forked from a process with one thread
        rt.tp_shm = std::make_unique<ShmGroup>(tp);
        ShmGroup& shm = *rt.tp_shm;
        rt.tp_workers = std::make_unique<TpWorkers>(
            tp,
            [&](int rank, TpChannel& channel) {
                return serve_rank(o, path, rank, rank, shm.rank(rank), channel);
            },
            &shm);
    }
    rt.pool = std::make_unique<ThreadPool>(threads_per_rank(o));
    rt.backend = make_backend(o.device, *rt.pool, o.enforce_eager, o.batch_invariant);
    Communicator* comm = nullptr;
    if (tp > 1 && rt.backend->device() == Device::Cpu) {
        comm = sockets ? static_cast<Communicator*>(sockets.get()) : &rt.tp_shm->rank(0);
        rt.tp_comm = std::move(sockets);
    } else if (tp > 1) {
#ifdef VELA_HAS_CUDA
        if (const int n = cuda_device_count(); n < tp)
            fail<InvalidArgument>("--tensor-parallel {} needs {} GPUs; this machine has {}", tp, tp,
                                  n);
#endif
        const GroupId id = new_group_id();
        rt.tp_workers->send_setup(std::as_bytes(std::span(id)));
        rt.tp_comm = gpu_communicator(id, 0, tp);
        comm = rt.tp_comm.get();
    }
    rt.model = std::make_unique<Model>(path, comm);
    if (rt.tp_workers) rt.model->set_step_broadcast(rt.tp_workers.get());
    prefault(rt.model->file());
    rt.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(rt.model->file()));
    const KvFormat both = parse_kv_format(o.kv_type);
    rt.kv_formats = {o.kv_type_k.empty() ? both : parse_kv_format(o.kv_type_k),
                     o.kv_type_v.empty() ? both : parse_kv_format(o.kv_type_v), o.kv_quant_group};
    if (const std::string why =
            rt.backend->kv_unsupported(rt.kv_formats, rt.model->hparams().head_dim);
        !why.empty()) {
        fail<InvalidArgument>("--kv-type {}: {}", kv_formats_name(rt.kv_formats), why);
    }
    rt.eviction.policy = parse_eviction_policy(o.kv_evict);
    rt.eviction.sinks = o.kv_sinks;
    if (!o.kv_budget.empty()) {
        if (!rt.eviction.enabled()) fail<InvalidArgument>("--kv-budget needs --kv-evict POLICY");
        parse_kv_budget(o.kv_budget, rt.eviction);
    }
    rt.eviction.validate();
    return rt;
}

EngineConfig Runtime::engine_config(const CommonOptions& o, bool fill_kv,
                                    int64_t max_running) const {
    EngineConfig c;
    if (max_running > 0) c.scheduler.max_running = max_running;
    c.n_ctx = o.ctx_size;
    c.kv_block_size = o.kv_block_size;
    c.scheduler.max_batched_tokens = o.batch_size;
    c.kv_formats = kv_formats;
    c.eviction = eviction;
    c.swa_full = o.swa_full;
    const Backend::MemoryInfo mem = backend->memory_info();
    if (mem.total == 0) return c;  // host memory: not planned

    // Each rank holds 1 / N of every weight but the token embedding, which it holds whole.
    const auto tp = static_cast<size_t>(model->tensor_parallel());
    size_t weights = 0, largest = 0;
    for (const auto& t : model->file().tensors()) {
        weights += t.name == "token_embd.weight" ? t.nbytes : t.nbytes / tp;
        largest = std::max(largest, static_cast<size_t>(t.dim(0) * t.dim(1)));
    }
    const HParams& hp = model->hparams();
    const size_t per_token = kv_bytes_per_token(c);
    MemoryPlanInput in;
    in.total = mem.total;
    in.free = mem.free;
    in.utilization = o.gpu_memory_utilization;
    in.weights = weights;
    in.workspace = forward_workspace_bytes(hp, c.scheduler.max_batched_tokens, largest);
    in.kv_bytes_per_block = per_token * static_cast<size_t>(c.kv_block_size);
    in.min_kv_blocks = (c.n_ctx + c.kv_block_size - 1) / c.kv_block_size;
    const MemoryPlan plan = plan_gpu_memory(in);
    if (fill_kv) c.kv_blocks = kv_blocks_for(plan.budget - in.weights - in.workspace, c);
    return c;
}

int64_t Runtime::kv_blocks_for(size_t bytes, const EngineConfig& c) const {
    const size_t full_block = kv_bytes_per_token(c) * static_cast<size_t>(c.kv_block_size);
    const auto full = static_cast<int64_t>(bytes / full_block);
    const HParams& hp = model->hparams();
    int64_t n_local = 0;
    for (int64_t l = 0; l < hp.n_layers; ++l) n_local += hp.is_local(l) ? 1 : 0;
    if (n_local == 0 || n_local == hp.n_layers) return full;
    const size_t layer_block = full_block / static_cast<size_t>(hp.n_layers);
    const int64_t local = local_pool_blocks(hp.sliding_window, c.scheduler.max_batched_tokens,
                                            c.kv_block_size, c.scheduler.max_running);
    const size_t local_bytes = layer_block * static_cast<size_t>(n_local * local);
    if (bytes <= local_bytes) return full;
    const auto blocks = static_cast<int64_t>((bytes - local_bytes) /
                                             (layer_block * static_cast<size_t>(hp.n_layers - n_local)));
    // The engine makes the local group only where it is smaller than the main pool.
    return local_kv_blocks(c, hp.sliding_window, blocks) > 0 ? blocks : full;
}

size_t Runtime::kv_bytes_per_token(const EngineConfig& c) const {
    const HParams& hp = model->local_hparams();  // this rank's kv heads
    const KvFormats f = c.kv_formats;
    return (backend->kv_token_bytes(f.k, true, hp.head_dim, c.kv_block_size, f.group) +
            backend->kv_token_bytes(f.v, false, hp.head_dim, c.kv_block_size, f.group)) *
           static_cast<size_t>(hp.n_kv_heads * hp.n_layers);
}

std::unique_ptr<spec::Drafter> Runtime::make_drafter(const SpecOptions& o, EngineConfig& config) {
    if (o.method != "draft" && !o.draft_model.empty()) {
        fail<InvalidArgument>("--draft-model is only used with --spec draft (got --spec {})",
                              o.method);
    }
    config.speculation.max_tokens = o.max_tokens;
    // Drafters are gated by measured speed too (never slower than off); a draft model's
    // catch-up steps are left out of the figures (Drafter::last_catch_up).
    config.speculation.gate = o.self_max_cost < 1.0;
    if (o.max_batch >= 0) {
        config.speculation.max_batch = o.max_batch;
    } else if (o.method == "self") {
        config.speculation.max_batch = std::numeric_limits<int64_t>::max();
    }
    if (o.branches > 1 && o.method != "ngram" && o.method != "draft") {
        fail<InvalidArgument>("--spec-branches is for --spec ngram or draft (got --spec {})",
                              o.method);
    }
    if (o.depth > 0 && (o.method != "draft" || o.branches < 2)) {
        fail<InvalidArgument>("--spec-depth is for --spec draft with --spec-branches > 1");
    }
    if (o.depth > o.max_tokens) {
        fail<InvalidArgument>("--spec-depth {} exceeds --spec-max-tokens {} (the tree's nodes)",
                              o.depth, o.max_tokens);
    }
    if (o.method == "off") return nullptr;
    if (o.method == "ngram") return std::make_unique<spec::NgramDrafter>(1, 3, o.branches);
    if (o.method == "self") {
        config.speculation.self_draft = true;
        config.speculation.self_sinks = o.self_sinks;
        config.speculation.self_window = o.self_window;
        config.speculation.self_max_cost = o.self_max_cost;
        return nullptr;
    }
    if (o.method != "draft") {
        fail<InvalidArgument>("--spec must be off, ngram, draft or self, got '{}'", o.method);
    }
    if (o.draft_model.empty()) fail<InvalidArgument>("--spec draft needs --draft-model FILE");
    if (!fs::exists(o.draft_model)) {
        fail<InvalidArgument>("draft model file '{}' not found", o.draft_model);
    }
    draft_model = std::make_unique<Model>(o.draft_model);
    prefault(draft_model->file());
    draft_tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(draft_model->file()));
    // The draft KV holds as many tokens as the model's own pool.
    const int64_t kv_tokens =
        config.kv_blocks > 0 ? config.kv_blocks * config.kv_block_size : config.n_ctx;
    // A tree: --spec-max-tokens nodes at most, --spec-depth of them on the draft's chain.
    config.speculation.max_depth = o.branches > 1 ? o.depth : 0;
    return std::make_unique<spec::DraftModelDrafter>(
        *draft_model, *draft_tokenizer, *backend, *model, *tokenizer, kv_tokens, kv_formats,
        spec::DraftTreeOptions{o.branches, o.node_gain});
}

std::string read_text_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) fail<InvalidArgument>("cannot read '{}': {}", path, std::strerror(errno));
    std::string s;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    std::fclose(f);
    return s;
}

int run_guarded(const std::function<int()>& command) {
    try {
        return command();
    } catch (const Error& e) {
        std::fprintf(stderr, "vela: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "vela: error: out of memory\n");
        return 1;
    }
}

}  // namespace vela::cli
