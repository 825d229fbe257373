#include "core/tensor.h"

namespace vela {

const char* device_name(Device d) {
    return d == Device::Cuda ? "cuda" : "cpu";
}

}  // namespace vela
