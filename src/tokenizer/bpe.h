#pragma once
// The two merge loops. Both start from one symbol per character and repeatedly merge the best
// adjacent pair (leftmost on ties) until no pair forms a token; they differ only in what
// "best" means: the merge list's rank (byte-level BPE) or the merged token's score
// (SentencePiece). A heap with lazy invalidation keeps long words O(n log n).
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace vela {

class ByteLevelBpe {
  public:
    // `merges` are "left right" strings, highest priority first; FormatError when a merge names
    // a token the vocabulary lacks.
    ByteLevelBpe(const Vocab& vocab, const std::vector<std::string>& merges, bool ignore_merges,
                 int32_t unk);

    // Appends the ids of one pre-tokenized word given in the byte-level alphabet. Results are
    // cached (thread-safe), since natural text repeats its words.
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  private:
    struct Merge {
        int32_t rank;
        int32_t merged;
    };
    void merge_word(std::string_view word, std::vector<int32_t>& out) const;

    const Vocab& vocab_;
    std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
    bool ignore_merges_;
    int32_t unk_;
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>
        cache_;
};

class SentencePieceBpe {
  public:
    SentencePieceBpe(const Vocab& vocab, std::vector<float> scores, int32_t unk);

    // Appends the ids of `text` (spaces already replaced by "▁"). Characters that no token
    // covers fall back to <0xNN> byte tokens, or to unk when the vocabulary has none.
    void encode(std::string_view text, std::vector<int32_t>& out) const;

  private:
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;
    void emit_fallback(std::string_view piece, std::vector<int32_t>& out) const;
    // A token that merging may produce (SentencePiece never merges into control/byte/unused).
    std::optional<int32_t> mergeable(std::string_view text) const;

    const Vocab& vocab_;
    std::vector<float> scores_;
    int32_t unk_;
    std::vector<int32_t> byte_tokens_;  // byte -> <0xNN> id, -1 when absent
    // True when no mergeable token has a "▁" right after another character: then no merge can
    // span the start of a "▁word", and the text is merged word by word (same result, far
    // smaller heaps) as SentencePiece itself does.
    bool split_words_ = false;
};

}  // namespace vela
