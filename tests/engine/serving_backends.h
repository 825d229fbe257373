#pragma once
// The default model on each backend the build has, for engine tests that hold on every backend:
// "cpu", and with CUDA "cuda" (the default mode) and "cuda_invariant" (--batch-invariant). The
// GPU's ones are null without a device (VELA_REQUIRE_GPU=1 makes tests fail instead of skip).
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../common/default_model.h"
#include "backend/cpu/cpu_backend.h"
#ifdef VELA_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace vela::test {

using Tokens = std::vector<int32_t>;

// The default model on one backend (the GPU's needs its own Model: loading uploads the weights
// and repoints them), and the outputs of each prompt alone there.
struct ServingBackend {
    Model* model = nullptr;
    const Tokenizer* tokenizer = nullptr;
    Backend* backend = nullptr;
    std::map<std::string, std::vector<Tokens>> alone;  // by KV format and block size
};

inline bool gpu_required() {
    const char* v = std::getenv("VELA_REQUIRE_GPU");
    return v != nullptr && std::string(v) == "1";
}

// Null when the model is not fetched or (for "cuda") there is no device.
inline ServingBackend* serving_backend(const std::string& name) {
    static std::map<std::string, std::unique_ptr<ServingBackend>> made;
    auto& b = made[name];
    if (b) return b.get();
    test::DefaultModel* m = test::default_model();
    if (m == nullptr) return nullptr;
    b = std::make_unique<ServingBackend>();
    b->tokenizer = &m->tokenizer;
    if (name == "cpu") {
        b->model = &m->model;
        b->backend = &m->backend;
        return b.get();
    }
#ifdef VELA_HAS_CUDA
    if (name == "cuda" && cuda_device_available()) {
        static CudaBackend cuda;  // outlives the model
        static Model model(test::default_model_path());
        b->model = &model;
        b->backend = &cuda;
        return b.get();
    }
    if (name == "cuda_invariant" && cuda_device_available()) {
        static CudaBackend cuda(/*graphs=*/true, /*batch_invariant=*/true);
        static Model model(test::default_model_path());
        b->model = &model;
        b->backend = &cuda;
        return b.get();
    }
#endif
    b.reset();
    return nullptr;
}

inline std::vector<std::string> serving_backends() {
#ifdef VELA_HAS_CUDA
    return {"cpu", "cuda", "cuda_invariant"};
#else
    return {"cpu"};
#endif
}

}  // namespace vela::test
