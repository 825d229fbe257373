#pragma once
// GPT-2's reversible byte <-> unicode alphabet: every byte maps to a printable code point, so
// byte-level BPE vocabularies are plain UTF-8 strings ("Ġ" is the space byte 0x20).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace vela {

class ByteLevelAlphabet {
  public:
    ByteLevelAlphabet();

    // Appends the alphabet form (UTF-8) of raw bytes.
    void encode(std::string_view bytes, std::string& out) const;
    // Appends the raw bytes of alphabet text; false if a code point is outside the alphabet
    // (then nothing sensible can be decoded from it, e.g. a special token's text).
    bool decode(std::string_view text, std::string& out) const;

  private:
    std::array<uint32_t, 256> to_unicode_{};
    std::array<std::string, 256> encoded_{};  // to_unicode_ as UTF-8, for a fast encode
    std::unordered_map<uint32_t, uint8_t> to_byte_;
};

}  // namespace vela
