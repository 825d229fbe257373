#pragma once
// Finds special-token texts (e.g. "<|im_start|>") inside raw text, leftmost-longest, as HF's
// added-token splitting does. Control tokens are recognised only when the caller parses
// specials; user-defined tokens always are (llama.cpp and HF agree on both).
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace vela {

struct Fragment {
    std::string_view text;  // raw text to run through BPE (when token < 0)
    int32_t token = -1;     // a matched special token
};

class SpecialTokenMatcher {
  public:
    explicit SpecialTokenMatcher(const Vocab& vocab);
    std::vector<Fragment> split(std::string_view text, bool parse_special) const;

  private:
    struct Entry {
        std::string_view text;  // points into the Vocab, which outlives the matcher
        int32_t id;
        bool control;
    };
    // Entries by first byte, longest first, so each position checks only its candidates.
    std::vector<std::vector<Entry>> by_first_byte_;
};

}  // namespace vela
