#pragma once
// The KV element types and the one place that maps the runtime dtype to a C++ element type.
// Adding INT8/INT4 KV means adding a case here (plus its row codec); callers that dispatch
// through visit_kv_dtype then fail to compile until they handle it.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fp16.h"

namespace vela {

// Half floats are stored as raw IEEE binary16 bits.
struct KvF16 {
    uint16_t bits;
};

// bfloat16 stored as its raw bits (the upper half of a float).
struct KvBF16 {
    uint16_t bits;
};

template <class T>
struct KvElement;

template <>
struct KvElement<float> {
    static constexpr DType dtype = DType::F32;
    static float encode(float x) { return x; }
    static float decode(float x) { return x; }
};

template <>
struct KvElement<KvF16> {
    static constexpr DType dtype = DType::F16;
    static KvF16 encode(float x) { return KvF16{fp32_to_fp16(x)}; }
    static float decode(KvF16 x) { return fp16_to_fp32(x.bits); }
};

template <>
struct KvElement<KvBF16> {
    static constexpr DType dtype = DType::BF16;
    static KvBF16 encode(float x) { return KvBF16{fp32_to_bf16(x)}; }
    static float decode(KvBF16 x) { return bf16_to_fp32(x.bits); }
};

// Calls fn(T{}) with T the element type of `dtype`; throws InvalidArgument for types the KV
// cache does not store.
template <class Fn>
decltype(auto) visit_kv_dtype(DType dtype, Fn&& fn) {
    switch (dtype) {
        case DType::F32:
            return fn(float{});
        case DType::F16:
            return fn(KvF16{});
        case DType::BF16:
            return fn(KvBF16{});
        default:
            break;
    }
    fail<InvalidArgument>("KV cache dtype {} is not supported (F32, F16 or BF16)",
                          dtype_name(dtype));
}

inline size_t kv_element_size(DType dtype) {
    return visit_kv_dtype(dtype, [](auto t) { return sizeof(t); });
}

}  // namespace vela
