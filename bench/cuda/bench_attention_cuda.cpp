// Timing driver for the CUDA attention kernels (cudaEvents, median of repeats, random data).
// Prints markdown tables: prefill forward TFLOP/s (FlashAttention benchmark convention: batch x
// seqlen = 16k tokens, hidden 2048), backward TFLOP/s, block-sparse speedup vs density and
// decode GB/s against the measured device-to-device copy
// bandwidth (back-to-back calls over rotating K/V caches, so L2 never serves the cache; timed as
// a stream of calls and replayed from a CUDA graph). The torch
// SDPA peer runs from sdpa_peer.py in the same script (run.sh).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "cuda/attention_params.h"
#include "read_floor.h"

namespace {

using namespace vela::cuda;

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
}

struct Buffer {
    void* p = nullptr;
    explicit Buffer(size_t bytes) {
        check(cudaMalloc(&p, std::max<size_t>(bytes, 16)), "cudaMalloc");
    }
    ~Buffer() { cudaFree(p); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

// Random bytes whose 16-bit pairs are finite, O(1) fp16/bf16 values (never zeros): a random
// chunk of at most 64 MiB is uploaded and tiled on the device, so multi-GB caches fill fast.
void fill_random(void* dst, size_t bytes, uint32_t seed) {
    const size_t chunk = std::min<size_t>(bytes, size_t(64) << 20);
    std::vector<uint8_t> h(chunk);
    std::mt19937 rng(seed);
    for (size_t i = 0; i < chunk; ++i)
        h[i] = (i % 2) ? static_cast<uint8_t>(0x30 + rng() % 16) : rng();
    check(cudaMemcpy(dst, h.data(), chunk, cudaMemcpyHostToDevice), "upload");
    auto* d = static_cast<uint8_t*>(dst);
    for (size_t off = chunk; off < bytes; off += chunk)
        check(cudaMemcpy(d + off, d, std::min(chunk, bytes - off), cudaMemcpyDeviceToDevice),
              "tile");
}

template <class Fn>
double median_ms(Fn fn, int reps) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 3; ++i) fn();
    std::vector<float> t;
    for (int i = 0; i < reps; ++i) {
        cudaEventRecord(a);
        fn();
        cudaEventRecord(b);
        check(cudaEventSynchronize(b), "timing");
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

double copy_bandwidth_gbs() {
    const size_t bytes = size_t(2) << 30;
    Buffer a(bytes), b(bytes);
    check(cudaMemset(a.p, 1, bytes), "memset");
    const double ms = median_ms([&] { cudaMemcpy(b.p, a.p, bytes, cudaMemcpyDeviceToDevice); }, 10);
    return 2.0 * bytes / (ms * 1e6);  // bytes read + written
}

// VELA_BENCH_HD / VELA_BENCH_SEQLEN (optional) restrict the prefill sweep, e.g. for a profiler.
bool selected(const char* env, int value) {
    const char* v = std::getenv(env);
    return v == nullptr || std::atoi(v) == value;
}

void bench_prefill() {
    std::printf("\n| kernel | head_dim | seqlen | batch | heads | causal | ms | TFLOP/s |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    for (int hd : {64, 128, 256}) {
        for (int s : {512, 1024, 2048, 4096, 8192, 16384}) {
            if (!selected("VELA_BENCH_HD", hd) || !selected("VELA_BENCH_SEQLEN", s)) continue;
            for (bool causal : {false, true}) {
                const int batch = 16384 / s, heads = 2048 / hd;
                const size_t elems = size_t(batch) * s * heads * hd;
                Buffer q(elems * 2), k(elems * 2), v(elems * 2), o(elems * 2), cu(4 * (batch + 1));
                fill_random(q.p, elems * 2, 1);
                fill_random(k.p, elems * 2, 2);
                fill_random(v.p, elems * 2, 3);
                std::vector<int32_t> cuh(batch + 1);
                for (int b = 0; b <= batch; ++b) cuh[b] = b * s;
                check(cudaMemcpy(cu.p, cuh.data(), 4 * (batch + 1), cudaMemcpyHostToDevice), "cu");
                PrefillParams p;
                p.dtype = Dtype::kBf16;
                p.head_dim = hd;
                p.num_heads = p.num_kv_heads = heads;
                p.batch = batch;
                p.max_seqlen_q = s;
                p.q = q.p;
                p.k = k.p;
                p.v = v.p;
                p.o = o.p;
                p.q_row_stride = p.o_row_stride = p.kv_row_stride = int64_t{heads} * hd;
                p.q_head_stride = p.o_head_stride = p.kv_head_stride = hd;
                p.cu_seqlens_q = p.cu_seqlens_k = static_cast<int32_t*>(cu.p);
                p.total_q = p.total_k = batch * s;
                p.softmax_scale = 1.f / std::sqrt(float(hd));
                p.causal = causal;
                const double flops = 4.0 * batch * heads * double(s) * s * hd / (causal ? 2 : 1);
                // wgmma-cpasync: the wgmma kernel without totals, i.e. with cp.async loads.
                for (const char* name : {"mma.sync", "wgmma-cpasync", "wgmma-tma"}) {
                    const bool mma_sync = name[0] == 'm';
                    if (mma_sync ? hd == 256 : !prefill_wgmma_available()) continue;
                    p.kernel = mma_sync ? PrefillKernel::kMmaSync : PrefillKernel::kWgmma;
                    p.total_q = p.total_k = name[6] == 't' ? batch * s : 0;
                    const double ms = median_ms([&] { prefill_forward(p); }, 20);
                    std::printf("| vela prefill %s bf16 | %d | %d | %d | %d | %d | %.3f | %.1f |\n",
                                name, hd, s, batch, heads, causal, ms, flops / (ms * 1e9));
                }
            }
        }
    }
}

// One bf16 problem at the FlashAttention benchmark shape (batch x s = 16k tokens, hidden 2048)
// with everything the forward and backward need.
struct DenseProblem {
    int hd, s, batch, heads;
    size_t elems;
    Buffer q, k, v, o, d_o, dq, dk, dv, lse, cu;
    PrefillParams fwd;
    BackwardParams bwd;

    DenseProblem(int hd_, int s_, bool causal)
        : hd(hd_),
          s(s_),
          batch(16384 / s_),
          heads(2048 / hd_),
          elems(size_t(batch) * s * heads * hd),
          q(elems * 2),
          k(elems * 2),
          v(elems * 2),
          o(elems * 2),
          d_o(elems * 2),
          dq(elems * 2),
          dk(elems * 2),
          dv(elems * 2),
          lse(4 * size_t(batch) * s * heads),
          cu(4 * (batch + 1)) {
        fill_random(q.p, elems * 2, 1);
        fill_random(k.p, elems * 2, 2);
        fill_random(v.p, elems * 2, 3);
        fill_random(d_o.p, elems * 2, 4);
        std::vector<int32_t> cuh(batch + 1);
        for (int b = 0; b <= batch; ++b) cuh[b] = b * s;
        check(cudaMemcpy(cu.p, cuh.data(), 4 * (batch + 1), cudaMemcpyHostToDevice), "cu");
        fwd.head_dim = bwd.head_dim = hd;
        fwd.num_heads = fwd.num_kv_heads = bwd.num_heads = bwd.num_kv_heads = heads;
        fwd.batch = bwd.batch = batch;
        fwd.max_seqlen_q = bwd.max_seqlen_q = bwd.max_seqlen_k = s;
        bwd.total_q = fwd.total_q = fwd.total_k = batch * s;
        fwd.q = bwd.q = q.p;
        fwd.k = bwd.k = k.p;
        fwd.v = bwd.v = v.p;
        fwd.o = o.p;
        bwd.o = o.p;
        bwd.d_o = d_o.p;
        fwd.lse = static_cast<float*>(lse.p);
        bwd.lse = fwd.lse;
        fwd.q_row_stride = fwd.o_row_stride = fwd.kv_row_stride = int64_t{heads} * hd;
        fwd.q_head_stride = fwd.o_head_stride = fwd.kv_head_stride = hd;
        bwd.q_row_stride = bwd.kv_row_stride = int64_t{heads} * hd;
        bwd.q_head_stride = bwd.kv_head_stride = hd;
        fwd.cu_seqlens_q = fwd.cu_seqlens_k = bwd.cu_seqlens_q = bwd.cu_seqlens_k =
            static_cast<int32_t*>(cu.p);
        fwd.softmax_scale = bwd.softmax_scale = 1.f / std::sqrt(float(hd));
        fwd.causal = bwd.causal = causal;
        bwd.dq = dq.p;
        bwd.dk = dk.p;
        bwd.dv = dv.p;
    }
    double flops() const { return 4.0 * batch * heads * double(s) * s * hd / (fwd.causal ? 2 : 1); }
};

// Backward FLOPs are 2.5x the forward's by convention (5 matmuls instead of 2). Each dK/dV kernel
// the device has is timed; the one kAuto picks (wgmma where available) is the "vela fwd+bwd" row
// that compare.py joins with the SDPA peer, the other one is labelled "vela bwd".
void bench_backward() {
    std::printf(
        "\n| kernel | head_dim | seqlen | batch | heads | causal | fwd ms | bwd ms | bwd "
        "TFLOP/s | fwd+bwd TFLOP/s |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int hd : {64, 128}) {
        for (int s : {512, 1024, 2048, 4096, 8192, 16384}) {
            for (bool causal : {false, true}) {
                DenseProblem d(hd, s, causal);
                Buffer ws(backward_workspace_bytes(d.bwd));
                d.bwd.workspace = ws.p;
                const double f_ms = median_ms([&] { prefill_forward(d.fwd); }, 10);
                const bool sm90 = prefill_wgmma_available();
                for (const PrefillKernel kernel :
                     {PrefillKernel::kMmaSync, PrefillKernel::kWgmma}) {
                    const bool wgmma = kernel == PrefillKernel::kWgmma;
                    if (wgmma && !sm90) continue;
                    d.bwd.kernel = kernel;
                    const double b_ms = median_ms([&] { prefill_backward(d.bwd); }, 10);
                    std::printf(
                        "| vela %s %s bf16 | %d | %d | %d | %d | %d | %.3f | %.3f | %.1f | %.1f "
                        "|\n",
                        wgmma == sm90 ? "fwd+bwd" : "bwd", wgmma ? "wgmma" : "mma.sync", hd, s,
                        d.batch, d.heads, causal, f_ms, b_ms, 2.5 * d.flops() / (b_ms * 1e9),
                        3.5 * d.flops() / ((f_ms + b_ms) * 1e9));
                }
            }
        }
    }
}

// Forward time of one kernel against the fraction of 64 x 64 tiles kept by a random block mask
// (shared by all heads), beside the same problem without a mask.
void bench_block_sparse_on(DenseProblem& d, PrefillKernel kernel) {
    const char* name = kernel == PrefillKernel::kWgmma ? "wgmma-tma" : "mma.sync";
    d.fwd.kernel = kernel;
    const double dense_ms = median_ms([&] { prefill_forward(d.fwd); }, 10);
    std::printf(
        "| vela prefill %s bf16 | %d | %d | %d x %d | dense (no mask) | %.3f | 1.00x | %.1f |\n",
        name, d.hd, d.s, d.batch, d.heads, dense_ms, d.flops() / (dense_ms * 1e9));
    const int nb = d.s / PrefillParams::kBlockMaskSize;
    Buffer mask(size_t(nb) * nb);
    for (double density : {1.0, 0.5, 0.25, 0.1, 0.05}) {
        std::vector<uint8_t> m(size_t(nb) * nb);
        std::mt19937 rng(17);
        std::bernoulli_distribution keep(density);
        size_t kept = 0;
        for (auto& x : m) kept += (x = keep(rng) ? 1 : 0);
        check(cudaMemcpy(mask.p, m.data(), m.size(), cudaMemcpyHostToDevice), "mask");
        PrefillParams p = d.fwd;
        p.block_mask = static_cast<uint8_t*>(mask.p);
        p.block_mask_row_stride = nb;
        const double ms = median_ms([&] { prefill_forward(p); }, 10);
        const double frac = double(kept) / m.size();
        std::printf(
            "| vela prefill %s bf16 block-sparse | %d | %d | %d x %d | %.3f | %.3f | %.2fx | %.1f "
            "|\n",
            name, d.hd, d.s, d.batch, d.heads, frac, ms, dense_ms / ms,
            frac * d.flops() / (ms * 1e9));
    }
}

void bench_block_sparse() {
    std::printf(
        "\n| kernel | head_dim | seqlen | batch x heads | density | ms | speedup vs dense | "
        "TFLOP/s of kept tiles |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    for (int hd : {64, 128}) {
        DenseProblem d(hd, 8192, false);
        bench_block_sparse_on(d, PrefillKernel::kMmaSync);
        if (prefill_wgmma_available()) bench_block_sparse_on(d, PrefillKernel::kWgmma);
    }
}

// Tables and lengths here are uploaded once (as an engine uploads them by memcpy before a step),
// so no kernel before a call writes them: the decode may read them, and prefetch its first K/V
// tiles, before the launch wait (DecodeParams::metadata_ready). VELA_DECODE_METADATA_READY=0
// times the path that waits first, for a table written by the kernel before the call.
bool metadata_ready() {
    const char* ready = std::getenv("VELA_DECODE_METADATA_READY");
    return ready == nullptr || std::strcmp(ready, "0") != 0;
}

// No kernel here writes the caches either (an engine's append kernel before the call writes only
// each sequence's newest key): DecodeParams::kv_ready lets the warps whose first tiles hold older
// keys copy them before the launch wait. VELA_DECODE_KV_READY=0 times the L2-prefetch path.
bool kv_ready() {
    const char* ready = std::getenv("VELA_DECODE_KV_READY");
    return ready == nullptr || std::strcmp(ready, "0") != 0;
}

bool hnd_layout() {
    const char* v = std::getenv("VELA_DECODE_LAYOUT");
    return v != nullptr && std::strcmp(v, "hnd") == 0;
}

// One decode problem: Llama-3-8B attention shape over `copies` separate K/V caches (scattered
// blocks, as in a real pool). Consecutive calls read different caches, as consecutive layers
// do, so L2 (50-60 MB) never serves a cache that a previous call read.
struct DecodeProblem {
    static constexpr int kHeads = 32, kKvHeads = 8, kHd = 128, kBs = 16;
    int batch, ctx, copies;
    size_t cache_bytes;
    std::vector<std::unique_ptr<Buffer>> k, v;
    Buffer q, o, table, lens, scales;

    size_t scales_bytes() const { return 4 * size_t(batch) * ctx * kKvHeads; }  // one a row

    DecodeProblem(KvFormat f, int batch_, int ctx_)
        : batch(batch_),
          ctx(ctx_),
          copies(0),
          cache_bytes(size_t(batch_) * ctx_ * kKvHeads * kHd * (f == KvFormat::kBf16 ? 2 : 1)),
          q(size_t(batch_) * kHeads * kHd * 2),
          o(size_t(batch_) * kHeads * kHd * 2),
          table(4 * size_t(batch_) * (ctx_ / kBs)),
          lens(4 * size_t(batch_)),
          scales(4 * size_t(batch_) * ctx_ * kKvHeads) {
        copies =
            static_cast<int>(std::min<size_t>(32, (size_t(256) << 20) / (2 * cache_bytes) + 1));
        // Copies after the first are device copies of it: only their addresses must differ.
        for (int i = 0; i < copies; ++i) {
            k.push_back(std::make_unique<Buffer>(cache_bytes));
            v.push_back(std::make_unique<Buffer>(cache_bytes));
        }
        fill_random(k[0]->p, cache_bytes, 4);
        fill_random(v[0]->p, cache_bytes, 5);
        for (int i = 1; i < copies; ++i) {
            check(cudaMemcpy(k[i]->p, k[0]->p, cache_bytes, cudaMemcpyDeviceToDevice), "copy");
            check(cudaMemcpy(v[i]->p, v[0]->p, cache_bytes, cudaMemcpyDeviceToDevice), "copy");
        }
        fill_random(q.p, size_t(batch) * kHeads * kHd * 2, 6);
        const int nb = batch * (ctx / kBs);
        std::vector<int32_t> t(nb), l(batch, ctx);
        std::vector<float> sc(size_t(nb) * kBs * kKvHeads, 0.01f);
        std::mt19937 rng(7);
        for (int i = 0; i < nb; ++i) t[i] = i;
        std::shuffle(t.begin(), t.end(), rng);
        check(cudaMemcpy(table.p, t.data(), 4 * size_t(nb), cudaMemcpyHostToDevice), "table");
        check(cudaMemcpy(lens.p, l.data(), 4 * size_t(batch), cudaMemcpyHostToDevice), "lens");
        check(cudaMemcpy(scales.p, sc.data(), 4 * sc.size(), cudaMemcpyHostToDevice), "scales");
    }

    DecodeParams params(KvFormat f) const {
        DecodeParams p;
        p.dtype = Dtype::kBf16;
        p.kv_format = f;
        p.head_dim = kHd;
        p.num_heads = kHeads;
        p.num_kv_heads = kKvHeads;
        p.batch = batch;
        p.max_seqlen_k = ctx;
        p.q = q.p;
        // VELA_DECODE_LAYOUT=hnd: heads outside tokens within a block ([block][kv head][token]
        // [dim], FlashInfer's HND), so one head's keys of a block are contiguous; default NHD
        // ([block][token][kv head][dim], the layout of vLLM's and llama.cpp's caches).
        const bool hnd = hnd_layout();
        p.paged = {k[0]->p,
                   v[0]->p,
                   static_cast<int32_t*>(table.p),
                   ctx / kBs,
                   kBs,
                   int64_t{kBs} * kKvHeads * kHd,
                   hnd ? int64_t{kHd} : int64_t{kKvHeads} * kHd,
                   hnd ? int64_t{kBs} * kHd : int64_t{kHd}};
        p.seqlens_k = static_cast<int32_t*>(lens.p);
        p.paged.k_scale = p.paged.v_scale = static_cast<float*>(scales.p);
        p.paged.scale_block_stride = p.paged.block_stride / kHd;
        p.o = o.p;
        p.softmax_scale = 1.f / std::sqrt(float(kHd));
        p.metadata_ready = metadata_ready();
        p.kv_ready = kv_ready();
        return p;
    }
};

// Mean time of one call in a stream of back-to-back calls call(i), i rotating over `copies`
// cache copies (the host enqueues ahead of the GPU, so launch overhead shows only where it
// exceeds the call).
template <class Call>
double stream_ms(int copies, Call call, cudaStream_t stream) {
    const int reps = std::max(40, 2 * copies);
    for (int i = 0; i < copies; ++i) call(i);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a, stream);
    for (int i = 0; i < reps; ++i) call(i);
    cudaEventRecord(b, stream);
    check(cudaEventSynchronize(b), "stream timing");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms / reps;
}

double decode_stream_ms(const DecodeProblem& d, DecodeParams p, cudaStream_t stream) {
    auto call = [&](int i) {
        p.paged.k_cache = d.k[i % d.copies]->p;
        p.paged.v_cache = d.v[i % d.copies]->p;
        decode_forward(p, stream);
    };
    return stream_ms(d.copies, call, stream);
}

// The same calls replayed from a CUDA graph (one per layer-like cache copy), as an engine that
// captures its decode step sees them: GPU time without the host's per-call launch cost. NaN
// when capture fails.
double decode_graph_ms(const DecodeProblem& d, DecodeParams p, cudaStream_t stream) {
    const int n = std::max(d.copies, 16);
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
    bool ok = true;
    try {
        for (int i = 0; i < n; ++i) {
            p.paged.k_cache = d.k[i % d.copies]->p;
            p.paged.v_cache = d.v[i % d.copies]->p;
            decode_forward(p, stream);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "graph capture: %s\n", e.what());
        ok = false;
    }
    ok = cudaStreamEndCapture(stream, &graph) == cudaSuccess && ok &&
         cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
    double ms = std::nan("");
    if (ok) {
        const int reps = std::max(3, 64 / n);
        cudaGraphLaunch(exec, stream);
        cudaEvent_t a, b;
        cudaEventCreate(&a);
        cudaEventCreate(&b);
        cudaEventRecord(a, stream);
        for (int i = 0; i < reps; ++i) cudaGraphLaunch(exec, stream);
        cudaEventRecord(b, stream);
        check(cudaEventSynchronize(b), "graph timing");
        float t = 0;
        cudaEventElapsedTime(&t, a, b);
        ms = double(t) / (reps * n);
        cudaEventDestroy(a);
        cudaEventDestroy(b);
    }
    cudaGetLastError();  // clears the error a failed capture leaves
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    return ms;
}

// A plain device copy with the call's memory traffic: back-to-back cudaMemcpyAsync of one K
// cache copy onto the V copy beside it (bytes read + written = K + V read), rotating over the
// copies as the decode timing does, so neither side stays in L2. (V's contents are overwritten
// by K's: as random, and the decode's timing does not depend on them.) What a copy reaches at
// this size is the ceiling for a small call.
double same_traffic_copy_ms(const DecodeProblem& d, cudaStream_t stream) {
    auto call = [&](int i) {
        check(cudaMemcpyAsync(d.v[i % d.copies]->p, d.k[i % d.copies]->p, d.cache_bytes,
                              cudaMemcpyDeviceToDevice, stream),
              "copy");
    };
    return stream_ms(d.copies, call, stream);
}

// The read-only kernel (read_floor.h) over the call's K and V caches: launch plus bytes over
// bandwidth, the floor of a decode call of this traffic that reads after the wait.
double read_floor_ms(const DecodeProblem& d, int sms, cudaStream_t stream) {
    auto call = [&](int i) {
        check(vela::bench::launch_read_floor(d.k[i % d.copies]->p, d.v[i % d.copies]->p,
                                             d.cache_bytes, sms, stream),
              "read floor");
    };
    return stream_ms(d.copies, call, stream);
}

struct DecodeTimes {
    double stream_ms, graph_ms;
};

DecodeTimes time_decode(const DecodeProblem& d, DecodeParams p, int sms, cudaStream_t stream,
                        bool graph) {
    decode_plan(p, sms);
    const size_t bytes = decode_workspace_bytes(p);
    Buffer ws(bytes);
    check(cudaMemset(ws.p, 0, bytes), "workspace");  // finish counters start (and stay) zero
    p.workspace = ws.p;
    return {decode_stream_ms(d, p, stream), graph ? decode_graph_ms(d, p, stream) : std::nan("")};
}

// Split counts other than the planned one (VELA_DECODE_SWEEP=1), including those the previous
// plan chose: the data behind the plan's cost model. Counts whose rounded split length (a
// multiple of 32 keys, at most 8192) leaves trailing splits empty are left out.
std::vector<int> sweep_splits(int planned, int ctx) {
    std::vector<int> out;
    for (int s : {1, 2, 3, 4, 6, 8, 10, 12, 16, 17, 24, 32, 33, 37, 48, 49, 64}) {
        const int len = ((ctx + s - 1) / s + 31) / 32 * 32;
        if (s != planned && len <= 8192 && (ctx + len - 1) / len == s) out.push_back(s);
    }
    return out;
}

void bench_decode(double copy_gbs, int sms) {
    const bool sweep = std::getenv("VELA_DECODE_SWEEP") != nullptr;
    cudaStream_t stream;
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    std::printf("\nmetadata_ready: %s\n",
                metadata_ready() ? "on (block table and lengths read, "
                                   "first tiles prefetched into L2, before the launch wait)"
                                 : "off");
    std::printf("kv_ready: %s\n", metadata_ready() && kv_ready()
                                      ? "on (first tiles of older keys "
                                        "copied into shared memory before the launch wait)"
                                      : "off");
    std::printf(
        "\n| kernel | kv format | batch | context | splits | us | GB/s | %% of copy | graph us | "
        "graph %% of copy | same-traffic copy us | its %% of copy | read-only kernel us | its %% "
        "of "
        "copy |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    // VELA_DECODE_KV (bf16 / int8 / fp8e4m3), VELA_DECODE_MAX_BATCH and VELA_DECODE_BATCH /
    // VELA_DECODE_CTX (one value each, e.g. for a profiler) restrict the table.
    const char* only_kv = std::getenv("VELA_DECODE_KV");
    const char* max_batch = std::getenv("VELA_DECODE_MAX_BATCH");
    for (KvFormat f : {KvFormat::kBf16, KvFormat::kInt8, KvFormat::kFp8E4M3}) {
        const char* name = f == KvFormat::kBf16   ? "bf16"
                           : f == KvFormat::kInt8 ? "int8"
                                                  : "fp8e4m3";
        if (only_kv != nullptr && std::strcmp(only_kv, name) != 0) continue;
        for (int batch : {1, 8, 32, 64}) {
            if (max_batch != nullptr && batch > std::atoi(max_batch)) continue;
            if (!selected("VELA_DECODE_BATCH", batch)) continue;
            for (int ctx : {1024, 4096, 16384, 32768}) {
                if (!selected("VELA_DECODE_CTX", ctx)) continue;
                const DecodeProblem d(f, batch, ctx);
                DecodeParams p = d.params(f);
                decode_plan(p, sms);
                // K and V read once, plus the quantised formats' scales.
                const size_t scale_bytes = f == KvFormat::kBf16 ? 0 : 2 * d.scales_bytes();
                const double gb = (2.0 * d.cache_bytes + scale_bytes) / 1e6;
                const double copy_ms = same_traffic_copy_ms(d, stream);
                const double floor_ms = read_floor_ms(d, sms, stream);
                auto row = [&](const char* kind, int splits, bool graph) {
                    DecodeParams q = p;
                    q.num_splits = splits;
                    const DecodeTimes t = time_decode(d, q, sms, stream, graph);
                    std::printf(
                        "| %s | %s | %d | %d | %d | %.1f | %.0f | %.0f%% | %.1f | %.0f%% | %.1f | "
                        "%.0f%% | %.1f | %.0f%% |\n",
                        kind, name, batch, ctx, splits, t.stream_ms * 1e3, gb / t.stream_ms,
                        100.0 * gb / t.stream_ms / copy_gbs, t.graph_ms * 1e3,
                        100.0 * gb / t.graph_ms / copy_gbs, copy_ms * 1e3,
                        100.0 * (2.0 * d.cache_bytes / 1e6) / copy_ms / copy_gbs, floor_ms * 1e3,
                        100.0 * (2.0 * d.cache_bytes / 1e6) / floor_ms / copy_gbs);
                    std::fflush(stdout);
                };
                row(hnd_layout() ? "vela decode HND" : "vela decode", p.num_splits, true);
                if (sweep)
                    for (int s : sweep_splits(p.num_splits, ctx)) row("split sweep", s, false);
            }
        }
    }
    cudaStreamDestroy(stream);
}

// Draft verification: R query rows a sequence (row r sees ctx - (R - 1 - r) keys), one call with
// the rows packed (DecodeParams::cu_seqlens_q: a CTA holds 16 / group rows) against the same
// rows as separate decode sequences over the same block tables (each row reads its whole KV).
// GB/s counts the KV bytes once a call (the floor of a call that reads them once).
void bench_decode_rows(double copy_gbs, int sms) {
    cudaStream_t stream;
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    std::printf(
        "\n| kv format | batch | context | rows a sequence | packed us | GB/s | %% of copy | rows "
        "as "
        "sequences us | packed speed-up |\n|---|---|---|---|---|---|---|---|---|\n");
    for (KvFormat f : {KvFormat::kBf16}) {
        for (int batch : {16, 64}) {
            const int ctx = 16384;
            const DecodeProblem d(f, batch, ctx);
            const int blocks = ctx / DecodeProblem::kBs;
            std::vector<int32_t> table(size_t(batch) * blocks);
            check(cudaMemcpy(table.data(), d.table.p, 4 * table.size(), cudaMemcpyDeviceToHost),
                  "table");
            for (int rows : {1, 2, 4, 6, 8}) {
                const size_t n = size_t(batch) * rows;
                Buffer q(n * DecodeProblem::kHeads * DecodeProblem::kHd * 2),
                    o(n * DecodeProblem::kHeads * DecodeProblem::kHd * 2);
                fill_random(q.p, n * DecodeProblem::kHeads * DecodeProblem::kHd * 2, 8);
                std::vector<int32_t> cu{0}, row_table, row_lens;
                for (int b = 0; b < batch; ++b) {
                    cu.push_back(cu.back() + rows);
                    for (int r = 0; r < rows; ++r) {
                        row_table.insert(row_table.end(), table.begin() + size_t(b) * blocks,
                                         table.begin() + size_t(b + 1) * blocks);
                        row_lens.push_back(ctx - (rows - 1 - r));
                    }
                }
                Buffer dcu(4 * cu.size()), dtable(4 * row_table.size()), dlens(4 * row_lens.size());
                check(cudaMemcpy(dcu.p, cu.data(), 4 * cu.size(), cudaMemcpyHostToDevice), "cu");
                check(cudaMemcpy(dtable.p, row_table.data(), 4 * row_table.size(),
                                 cudaMemcpyHostToDevice),
                      "rows");
                check(cudaMemcpy(dlens.p, row_lens.data(), 4 * row_lens.size(),
                                 cudaMemcpyHostToDevice),
                      "lens");
                DecodeParams packed = d.params(f);
                packed.q = q.p;
                packed.o = o.p;
                packed.cu_seqlens_q = static_cast<int32_t*>(dcu.p);
                packed.max_seqlen_q = rows;
                DecodeParams apart = d.params(f);
                apart.q = q.p;
                apart.o = o.p;
                apart.batch = static_cast<int>(n);
                apart.paged.block_table = static_cast<int32_t*>(dtable.p);
                apart.seqlens_k = static_cast<int32_t*>(dlens.p);
                const double t_packed = time_decode(d, packed, sms, stream, false).stream_ms;
                const double t_apart = time_decode(d, apart, sms, stream, false).stream_ms;
                const double gb = 2.0 * d.cache_bytes / 1e6;
                std::printf("| %s | %d | %d | %d | %.1f | %.0f | %.0f%% | %.1f | %.2fx |\n",
                            f == KvFormat::kBf16 ? "bf16" : "int8", batch, ctx, rows,
                            t_packed * 1e3, gb / t_packed, 100.0 * gb / t_packed / copy_gbs,
                            t_apart * 1e3, t_apart / t_packed);
                std::fflush(stdout);
            }
        }
    }
    cudaStreamDestroy(stream);
}

}  // namespace

// Usage: bench_attention_cuda [prefill] [backward] [sparse] [decode] [rows]; no argument runs all.
int main(int argc, char** argv) {
    auto wanted = [&](const char* name) {
        if (argc == 1) return true;
        for (int i = 1; i < argc; ++i)
            if (std::strcmp(argv[i], name) == 0) return true;
        return false;
    };
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "device");
    const double copy = copy_bandwidth_gbs();
    std::printf("device: %s, %d SMs; cudaMemcpy D2D: %.0f GB/s (read + write)\n", prop.name,
                prop.multiProcessorCount, copy);
    if (wanted("prefill")) bench_prefill();
    if (wanted("backward")) bench_backward();
    if (wanted("sparse")) bench_block_sparse();
    if (wanted("decode")) bench_decode(copy, prop.multiProcessorCount);
    if (wanted("rows")) bench_decode_rows(copy, prop.multiProcessorCount);
    return 0;
}
