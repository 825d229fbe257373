#pragma once
// Non-owning views of the arrays kernels read. Weights stay in their file's quantised format.
#include <cstdint>

#include "core/dtype.h"

namespace vela {

// A 2-D weight of `rows` rows of `cols` elements stored row-major in `type` (GGUF shape
// [cols, rows]); a 1-D vector has rows == 1.
struct Weight {
    const void* data = nullptr;
    DType type = DType::F32;
    int64_t rows = 0;
    int64_t cols = 0;

    explicit operator bool() const { return data != nullptr; }
    const float* f32() const { return static_cast<const float*>(data); }
};

}  // namespace vela
