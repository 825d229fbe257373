#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace vela {

ByteLevelAlphabet::ByteLevelAlphabet() {
    // Printable Latin-1 bytes keep their code point; the other 68 bytes (controls, space,
    // DEL, NBSP, soft hyphen) are moved, in byte order, to U+0100 and up.
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        to_unicode_[b] = printable ? b : next++;
        utf8::append(encoded_[b], to_unicode_[b]);
        to_byte_[to_unicode_[b]] = static_cast<uint8_t>(b);
    }
}

void ByteLevelAlphabet::encode(std::string_view bytes, std::string& out) const {
    for (const char c : bytes) out += encoded_[static_cast<unsigned char>(c)];
}

bool ByteLevelAlphabet::decode(std::string_view text, std::string& out) const {
    size_t pos = 0;
    while (pos < text.size()) {
        const auto it = to_byte_.find(utf8::decode(text, pos));
        if (it == to_byte_.end()) return false;
        out.push_back(static_cast<char>(it->second));
    }
    return true;
}

}  // namespace vela
