#pragma once
// Splits raw text into the words that byte-level BPE merges within, exactly as the Hugging Face
// pre-tokenizer regexes do. RE2 has no lookahead, so the regexes' common tail
// `\s+(?!\S)|\s+` is implemented by hand: RE2 runs every alternative before it, anchored, and
// only when none matches (the text is at whitespace) is the whitespace run cut by hand.
#include <memory>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer_data.h"

namespace re2 {
class RE2;
}

namespace vela {

class PreTokenizer {
  public:
    explicit PreTokenizer(PreTokenizerKind kind);
    ~PreTokenizer();
    PreTokenizer(PreTokenizer&&) noexcept;
    PreTokenizer& operator=(PreTokenizer&&) noexcept;

    // Appends the words of `text` (views into it) to `out`; their concatenation is `text`.
    void split(std::string_view text, std::vector<std::string_view>& out) const;

  private:
    void split_words(std::string_view text, std::vector<std::string_view>& out) const;

    std::unique_ptr<re2::RE2> words_;   // the regex without its whitespace-lookahead tail
    std::unique_ptr<re2::RE2> digits_;  // set when digits are split off one by one first
};

}  // namespace vela
