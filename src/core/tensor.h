#pragma once
// Non-owning views of the arrays kernels read and write, tagged with the device whose memory
// holds them. Weights stay in their file's quantised format.
#include <cstdint>

#include "core/dtype.h"

namespace vela {

enum class Device { Cpu, Cuda };

const char* device_name(Device d);

// A 2-D weight of `rows` rows of `cols` elements stored row-major in `type` (GGUF shape
// [cols, rows]); a 1-D vector has rows == 1.
struct Weight {
    const void* data = nullptr;
    DType type = DType::F32;
    int64_t rows = 0;
    int64_t cols = 0;
    Device device = Device::Cpu;

    explicit operator bool() const { return data != nullptr; }
    const float* f32() const { return static_cast<const float*>(data); }
};

// An activation: `rows` contiguous rows of `cols` elements of `dtype` in `device` memory.
// Backends check dtype and device at their boundary; a view never owns its memory.
struct Tensor {
    void* data = nullptr;
    DType dtype = DType::F32;
    int64_t rows = 0;
    int64_t cols = 0;
    Device device = Device::Cpu;

    int64_t numel() const { return rows * cols; }
    float* f32() const { return static_cast<float*>(data); }
};

}  // namespace vela
