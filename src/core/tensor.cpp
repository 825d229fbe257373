#include "core/tensor.h"

#include "core/error.h"

namespace vela {

const char* device_name(Device d) {
    return d == Device::Cuda ? "cuda" : "cpu";
}

Tensor Tensor::rows_view(int64_t begin, int64_t n) const {
    VELA_ASSERT(begin >= 0 && n >= 0 && begin + n <= rows);
    Tensor t = *this;
    t.data = static_cast<char*>(data) + static_cast<size_t>(begin) * row_bytes(dtype, cols);
    t.rows = n;
    return t;
}

Tensor Tensor::reshaped(int64_t r, int64_t c) const {
    VELA_ASSERT(r * c == numel());
    Tensor t = *this;
    t.rows = r;
    t.cols = c;
    return t;
}

}  // namespace vela
