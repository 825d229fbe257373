// CudaBackend::run_ops: decode and draft-verification steps recorded as CUDA graphs, one per step
// shape, and replayed.
#include <cuda_runtime.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace vela {
namespace {

using cuda_backend::as_stream;
using cuda_backend::check;

// Graphs kept before all are dropped and recorded again (each holds ~10-20 launches a layer).
constexpr size_t kMaxGraphs = 256;

}  // namespace

void CudaBackend::drop_graphs() {
    check(cudaStreamSynchronize(as_stream(stream_)), "graph drop");
    for (auto& [key, g] : graphs_) {
        if (g.exec != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
    }
    graphs_.clear();
}

// A decode step's ops are run eagerly the first time its shape is seen (which sizes every
// scratch buffer it needs), recorded the second time, and replayed after that, as long as no
// allocation has moved a buffer since (generation_).
void CudaBackend::run_ops(const void* model, KvStorage& kv,
                          const std::function<void()>& ops) {
    const Plan& p = planned();
    // Host work of the step that no recording holds (Q4 residuals), then its ops.
    DeviceKvStorage& dkv = cuda_backend::device_storage(kv);
    dkv.begin_step(*p.batch, plans_);
    if (!p.graph) return ops();
    const GraphKey key{model,
                       &kv,
                       p.batch->n_seqs(),
                       p.batch->n_rows(),
                       static_cast<int64_t>(p.batch->logit_rows.size()),
                       p.table_stride,
                       p.kv_bound};
    auto it = graphs_.find(key);
    if (it == graphs_.end() && graphs_.size() >= kMaxGraphs) drop_graphs();
    if (it == graphs_.end()) it = graphs_.emplace(key, Graph{}).first;
    Graph& g = it->second;
    const auto s = as_stream(stream_);
    if (g.kv_generation != dkv.generation()) {  // the storage moved what kernels address
        g.kv_generation = dkv.generation();
        g.generation = 0;
    }
    if (g.generation == generation_ && g.exec != nullptr) {
        check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g.exec), s), "graph launch");
        return;
    }
    ++warmups_;  // from here on, the step runs eagerly or is recorded
    if (g.generation != generation_) {  // first sight of this shape with these buffers
        if (g.exec != nullptr) {
            check(cudaStreamSynchronize(s), "graph drop");
            cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
            g.exec = nullptr;
        }
        ops();
        g.generation = generation_;
        return;
    }
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "graph capture");
    cudaGraph_t graph = nullptr;
    try {
        ops();
    } catch (...) {
        cudaStreamEndCapture(s, &graph);
        if (graph != nullptr) cudaGraphDestroy(graph);
        cudaGetLastError();
        graphs_.erase(it);
        throw;
    }
    check(cudaStreamEndCapture(s, &graph), "graph capture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(e, "graph instantiate");
    check(cudaGraphLaunch(exec, s), "graph launch");
    g.exec = exec;
    // An allocation during the recording (none is expected) leaves g stale: recorded again.
}

}  // namespace vela
