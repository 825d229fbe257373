#pragma once
// A vocabulary of the 256 byte-level (GPT-2 alphabet) tokens, id = byte value, no merges: the
// ids of any text are its bytes, so tests can state expected ids without the encoder under test.
#include <string>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_data.h"

namespace vela::test {

inline TokenizerData byte_vocabulary() {
    TokenizerData d;
    ByteLevelAlphabet alphabet;
    for (int b = 0; b < 256; ++b) {
        std::string s;
        alphabet.encode(std::string(1, static_cast<char>(b)), s);
        d.tokens.push_back(s);
        d.types.push_back(TokenType::Normal);
    }
    return d;
}

}  // namespace vela::test
