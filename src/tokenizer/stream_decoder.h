#pragma once
// Incremental detokenisation for streaming. push() returns only complete UTF-8: bytes of a
// character split across tokens are held back until the rest arrives. The concatenation of
// every push() and the final flush() equals Tokenizer::decode of all ids pushed.
#include <cstdint>
#include <string>

namespace vela {

class Tokenizer;

class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer& tokenizer);
    // Text completed by this token (possibly empty).
    std::string push(int32_t id);
    // Whatever is still held back, with an incomplete character replaced by U+FFFD; the decoder
    // then starts afresh.
    std::string flush();

  private:
    const Tokenizer* tokenizer_;
    std::string pending_;   // bytes of an incomplete character
    bool at_start_ = true;  // no text rendered yet (SentencePiece's leading-space rule)
};

}  // namespace vela
