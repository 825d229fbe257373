// libFuzzer target for the GGUF reader: any byte string must either parse or raise
// vela::Error; crashes, hangs, sanitizer reports and other exceptions are bugs.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "gguf/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto f = vela::gguf::File::parse(data, size, "fuzz");
        // Touch what a model loader touches.
        for (const auto& t : f.tensors()) {
            volatile uint8_t sink = t.nbytes > 0 ? t.data[t.nbytes - 1] : 0;
            (void)sink;
        }
        (void)f.get_string_array("tokenizer.ggml.tokens");
    } catch (const vela::Error&) {
    }
    return 0;
}
