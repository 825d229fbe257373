#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <optional>
#include <queue>
#include <utility>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace vela {
namespace {

// One symbol of the word being merged: a byte range of the word and its token id (-1 when the
// text is no token). Merged-away symbols have len 0; the live ones form a linked list.
struct Symbol {
    uint32_t start, len;
    int32_t id;
    int prev, next;
};

// A pair that may merge. `key` orders candidates (smaller first), ties go to the leftmost.
// The lengths pin down the pair's content: a stale candidate no longer matches them.
struct Candidate {
    double key;
    int left, right;
    uint32_t left_len, right_len;
    int32_t merged;
    bool operator>(const Candidate& o) const { return key != o.key ? key > o.key : left > o.left; }
};

std::vector<Symbol> split_chars(std::string_view word) {
    std::vector<Symbol> syms;
    size_t pos = 0;
    while (pos < word.size()) {
        const size_t start = pos;
        pos = std::min(word.size(), pos + utf8::seq_len(static_cast<unsigned char>(word[pos])));
        const int i = static_cast<int>(syms.size());
        syms.push_back(
            {static_cast<uint32_t>(start), static_cast<uint32_t>(pos - start), -1, i - 1, i + 1});
    }
    if (!syms.empty()) syms.back().next = -1;
    return syms;
}

// `pair(a, b)` returns the (key, merged id) of merging two adjacent symbols, or nullopt.
template <class PairFn>
void merge_symbols(std::vector<Symbol>& syms, PairFn pair) {
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    auto try_push = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        if (const auto p = pair(syms[l], syms[r]))
            heap.push({p->first, l, r, syms[l].len, syms[r].len, p->second});
    };
    for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) try_push(i, i + 1);
    while (!heap.empty()) {
        const Candidate c = heap.top();
        heap.pop();
        Symbol& left = syms[c.left];
        Symbol& right = syms[c.right];
        if (left.len != c.left_len || right.len != c.right_len || left.next != c.right) continue;
        left.len += right.len;
        left.id = c.merged;
        right.len = 0;
        left.next = right.next;
        if (right.next >= 0) syms[right.next].prev = c.left;
        try_push(left.prev, c.left);
        try_push(c.left, left.next);
    }
}

constexpr size_t kMaxCachedWord = 128;
constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // "▁"

// Whether the "▁" at byte `at` of `s` comes right after another "▁".
bool after_space_mark(std::string_view s, size_t at) {
    return at >= kSpaceMark.size() &&
           s.substr(at - kSpaceMark.size(), kSpaceMark.size()) == kSpaceMark;
}
constexpr size_t kMaxCacheEntries = 1 << 16;

}  // namespace

ByteLevelBpe::ByteLevelBpe(const Vocab& vocab, const std::vector<std::string>& merges,
                           bool ignore_merges, int32_t unk)
    : vocab_(vocab), ignore_merges_(ignore_merges), unk_(unk) {
    merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& m = merges[rank];
        const size_t sp = m.find(' ', 1);
        if (sp == std::string::npos)
            fail<FormatError>("tokenizer: merge {} '{}' has no space", rank, m);
        const std::string_view left = std::string_view(m).substr(0, sp);
        const std::string_view right = std::string_view(m).substr(sp + 1);
        const auto l = vocab.find(left), r = vocab.find(right);
        const auto merged = vocab.find(std::string(left) + std::string(right));
        if (!l || !r || !merged)
            fail<FormatError>("tokenizer: merge {} '{}' names a token not in the vocabulary", rank,
                              m);
        const uint64_t key = (static_cast<uint64_t>(*l) << 32) | static_cast<uint32_t>(*r);
        merges_.try_emplace(key, Merge{static_cast<int32_t>(rank), *merged});  // first rank wins
    }
}

void ByteLevelBpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (ignore_merges_) {
        if (const auto id = vocab_.find(word)) {
            out.push_back(*id);
            return;
        }
    }
    if (word.size() > kMaxCachedWord) {
        merge_word(word, out);
        return;
    }
    {
        std::lock_guard lock(cache_mutex_);
        if (const auto it = cache_.find(word); it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    merge_word(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();  // bounded memory on endless input
    cache_.emplace(std::string(word), std::move(ids));
}

void ByteLevelBpe::merge_word(std::string_view word, std::vector<int32_t>& out) const {
    std::vector<Symbol> syms = split_chars(word);
    for (Symbol& s : syms) s.id = vocab_.find(word.substr(s.start, s.len)).value_or(-1);
    merge_symbols(
        syms, [&](const Symbol& a, const Symbol& b) -> std::optional<std::pair<double, int32_t>> {
            if (a.id < 0 || b.id < 0) return std::nullopt;
            const auto it =
                merges_.find((static_cast<uint64_t>(a.id) << 32) | static_cast<uint32_t>(b.id));
            if (it == merges_.end()) return std::nullopt;
            return std::pair{static_cast<double>(it->second.rank), it->second.merged};
        });
    for (const Symbol& s : syms) {
        if (s.len == 0) continue;
        if (s.id >= 0)
            out.push_back(s.id);
        else if (unk_ >= 0)
            out.push_back(unk_);  // a character outside the alphabet's vocab
    }
}

SentencePieceBpe::SentencePieceBpe(const Vocab& vocab, std::vector<float> scores, int32_t unk)
    : vocab_(vocab), scores_(std::move(scores)), unk_(unk), byte_tokens_(256, -1) {
    if (scores_.size() != static_cast<size_t>(vocab.size()))
        fail<FormatError>("tokenizer: {} scores for {} tokens", scores_.size(), vocab.size());
    for (int b = 0; b < 256; ++b) {
        const auto id = vocab.find(fmt::format("<0x{:02X}>", b));
        if (id && vocab.type(*id) == TokenType::Byte) byte_tokens_[static_cast<size_t>(b)] = *id;
    }
    split_words_ = true;
    for (int32_t id = 0; id < vocab.size() && split_words_; ++id) {
        const std::string& t = vocab.text(id);
        if (!mergeable(t)) continue;
        for (size_t at = t.find(kSpaceMark, 1); at != std::string::npos;
             at = t.find(kSpaceMark, at + 1)) {
            if (!after_space_mark(t, at)) split_words_ = false;
        }
    }
}

std::optional<int32_t> SentencePieceBpe::mergeable(std::string_view text) const {
    const auto id = vocab_.find(text);
    if (!id) return std::nullopt;
    const TokenType t = vocab_.type(*id);
    if (t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Undefined)
        return id;
    return std::nullopt;
}

void SentencePieceBpe::encode(std::string_view text, std::vector<int32_t>& out) const {
    if (!split_words_) {
        encode_word(text, out);
        return;
    }
    // Cut before every "▁" that follows another character.
    size_t start = 0;
    for (size_t at = text.find(kSpaceMark, 1); at != std::string_view::npos;
         at = text.find(kSpaceMark, at + 1)) {
        if (after_space_mark(text, at)) continue;
        encode_word(text.substr(start, at - start), out);
        start = at;
    }
    encode_word(text.substr(start), out);
}

void SentencePieceBpe::encode_word(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<Symbol> syms = split_chars(text);
    for (Symbol& s : syms) s.id = mergeable(text.substr(s.start, s.len)).value_or(-1);
    merge_symbols(
        syms, [&](const Symbol& a, const Symbol& b) -> std::optional<std::pair<double, int32_t>> {
            const auto id = mergeable(text.substr(a.start, a.len + b.len));
            if (!id) return std::nullopt;
            return std::pair{-static_cast<double>(scores_[static_cast<size_t>(*id)]), *id};
        });
    for (const Symbol& s : syms) {
        if (s.len == 0) continue;
        if (s.id >= 0)
            out.push_back(s.id);
        else
            emit_fallback(text.substr(s.start, s.len), out);
    }
}

void SentencePieceBpe::emit_fallback(std::string_view piece, std::vector<int32_t>& out) const {
    for (const char c : piece) {
        const int32_t id = byte_tokens_[static_cast<unsigned char>(c)];
        if (id < 0) {
            if (unk_ >= 0) out.push_back(unk_);  // no byte tokens: the whole piece is unknown
            return;
        }
        out.push_back(id);
    }
}

}  // namespace vela
