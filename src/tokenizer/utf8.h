#pragma once
// UTF-8 helpers shared by the pre-tokenizer, the decoders and the stream decoder.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vela::utf8 {

// Length in bytes of the sequence starting with lead byte `c` (1 for invalid leads, so that
// scanning always advances).
inline size_t seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

// Decodes the code point at `s[pos]`, advancing pos. Invalid input yields U+FFFD and advances
// by one byte; it never reads past the end.
uint32_t decode(std::string_view s, size_t& pos);

void append(std::string& out, uint32_t cp);

// Appends `bytes` to `out` as valid UTF-8, replacing each maximal invalid subpart with U+FFFD
// (the Unicode / WHATWG "lossy" rule, which HF tokenizers also use). When `final` is false, an
// incomplete sequence at the very end is not consumed; the return value is how many bytes were.
size_t append_lossy(std::string& out, std::string_view bytes, bool final);

bool is_valid(std::string_view s);

}  // namespace vela::utf8
