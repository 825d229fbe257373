#pragma once
// The KV element types and the one place that maps a runtime KvFormat to a C++ tag type.
// Adding a KV format means adding a case here; callers that dispatch through visit_kv_format
// then fail to compile until they handle it.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/fp16.h"
#include "kv/kv_storage.h"

namespace vela {

// Half floats are stored as raw IEEE binary16 bits.
struct KvF16 {
    uint16_t bits;
};

// bfloat16 stored as its raw bits (the upper half of a float).
struct KvBF16 {
    uint16_t bits;
};

// int8 with fp16 scales per kKvGroup values (kv/kv_quant.h); rows are quantised as a whole.
struct KvQ8 {
    int8_t q;
};

// 4-bit (kv/kv_quant.h): V with fp16 (scale, min) per kKvGroup values of a row; K with one per
// channel of a full block (KvSideView::per_channel, kv/kivi_keys.h).
struct KvQ4 {
    uint8_t q;
};

// Element codecs of the float formats (quantised formats have row codecs in kv_quant.h).
template <class T>
struct KvElement;

template <>
struct KvElement<float> {
    static float encode(float x) { return x; }
    static float decode(float x) { return x; }
};

template <>
struct KvElement<KvF16> {
    static KvF16 encode(float x) { return KvF16{fp32_to_fp16(x)}; }
    static float decode(KvF16 x) { return fp16_to_fp32(x.bits); }
};

template <>
struct KvElement<KvBF16> {
    static KvBF16 encode(float x) { return KvBF16{fp32_to_bf16(x)}; }
    static float decode(KvBF16 x) { return bf16_to_fp32(x.bits); }
};

// Calls fn(T{}) with T the tag type of `format`.
template <class Fn>
decltype(auto) visit_kv_format(KvFormat format, Fn&& fn) {
    switch (format) {
        case KvFormat::F32:
            return fn(float{});
        case KvFormat::F16:
            return fn(KvF16{});
        case KvFormat::BF16:
            return fn(KvBF16{});
        case KvFormat::Q8:
            return fn(KvQ8{});
        case KvFormat::Q4:
            return fn(KvQ4{});
        case KvFormat::FP8:
            break;  // GPU only: no host storage
    }
    fail<InvalidArgument>("unknown KV format {}", static_cast<int>(format));
}

}  // namespace vela
