#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <optional>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace vela {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // "▁", SentencePiece's space

// Control tokens that end a turn in the chat formats we know, beyond the declared eos/eot. A
// user-defined token with one of these texts is taken for a control token, as llama.cpp does
// (Gemma 3 declares "</s>" user-defined; llama.cpp then neither matches it in plain text nor
// renders it).
constexpr std::array<std::string_view, 10> kEndOfTurnTexts = {
    "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>",      "<end_of_turn>",
    "<|end|>",       "<EOT>",      "<|return|>", "<|end_of_text|>", "</s>"};

bool is_end_of_turn_text(std::string_view text) {
    return std::find(kEndOfTurnTexts.begin(), kEndOfTurnTexts.end(), text) != kEndOfTurnTexts.end();
}

void check_special_id(int32_t id, const char* name, size_t n_tokens) {
    if (id < -1 || id >= static_cast<int64_t>(n_tokens))
        fail<FormatError>("tokenizer: {} token id {} outside the vocabulary of {}", name, id,
                          n_tokens);
}

std::optional<uint8_t> parse_byte_token(std::string_view text) {
    // "<0xNN>"
    if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(text[3]), lo = hex(text[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return static_cast<uint8_t>(hi * 16 + lo);
}

}  // namespace

struct Tokenizer::Impl {
    Vocab vocab;
    SpecialTokenMatcher specials;
    ByteLevelAlphabet alphabet;
    std::optional<PreTokenizer> pre;
    std::unique_ptr<ByteLevelBpe> byte_bpe;
    std::unique_ptr<SentencePieceBpe> spm;
    std::vector<bool> eog;

    // Takes the vocabulary out of `d`; the Tokenizer keeps only its small fields.
    explicit Impl(TokenizerData& d)
        : vocab(std::move(d.tokens), std::move(d.types)), specials(vocab) {}
};

Tokenizer::Tokenizer(TokenizerData data) : data_(std::move(data)) {
    const size_t n = data_.tokens.size();
    if (n == 0) fail<FormatError>("tokenizer: empty vocabulary");
    check_special_id(data_.bos, "bos", n);
    check_special_id(data_.eos, "eos", n);
    check_special_id(data_.unk, "unknown", n);
    check_special_id(data_.pad, "padding", n);
    check_special_id(data_.eot, "eot", n);
    check_special_id(data_.eom, "eom", n);
    for (size_t id = 0; id < data_.types.size(); ++id) {
        if (data_.types[id] == TokenType::UserDefined && is_end_of_turn_text(data_.tokens[id]))
            data_.types[id] = TokenType::Control;
    }
    impl_ = std::make_unique<Impl>(data_);
    if (data_.model == TokenizerModel::ByteLevelBpe) {
        impl_->pre.emplace(data_.pre);
        impl_->byte_bpe = std::make_unique<ByteLevelBpe>(impl_->vocab, data_.merges,
                                                         data_.ignore_merges, data_.unk);
    } else {
        impl_->spm =
            std::make_unique<SentencePieceBpe>(impl_->vocab, std::move(data_.scores), data_.unk);
    }
    data_.tokens.clear();  // moved from: leave them in a defined state
    data_.types.clear();
    data_.merges.clear();
    data_.scores.clear();

    impl_->eog.assign(n, false);
    for (const int32_t id : {data_.eos, data_.eot, data_.eom})
        if (id >= 0) impl_->eog[static_cast<size_t>(id)] = true;
    for (int32_t id = 0; id < impl_->vocab.size(); ++id) {
        if (impl_->vocab.type(id) == TokenType::Control &&
            is_end_of_turn_text(impl_->vocab.text(id)))
            impl_->eog[static_cast<size_t>(id)] = true;
    }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

int32_t Tokenizer::vocab_size() const {
    return impl_->vocab.size();
}

bool Tokenizer::is_eog(int32_t id) const {
    return impl_->vocab.valid(id) && impl_->eog[static_cast<size_t>(id)];
}

std::string_view Tokenizer::token_text(int32_t id) const {
    if (!impl_->vocab.valid(id))
        fail<InvalidArgument>("token id {} outside the vocabulary of {}", id, vocab_size());
    return impl_->vocab.text(id);
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
    return impl_->vocab.find(text);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
    const std::vector<Fragment> fragments = impl_->specials.split(text, parse_special);
    return encode_fragments(fragments, add_bos, text.size());
}

std::vector<int32_t> Tokenizer::encode(std::span<const TextSegment> segments, bool add_bos) const {
    std::vector<Fragment> fragments;
    size_t size = 0;
    for (const TextSegment& s : segments) {
        for (const Fragment& f : impl_->specials.split(s.text, s.parse_special))
            fragments.push_back(f);
        size += s.text.size();
    }
    return encode_fragments(fragments, add_bos, size);
}

std::vector<int32_t> Tokenizer::encode_fragments(std::span<const Fragment> fragments, bool add_bos,
                                                 size_t size_hint) const {
    std::vector<int32_t> ids;
    ids.reserve(size_hint / 3 + 2);
    if (add_bos && data_.bos >= 0) ids.push_back(data_.bos);
    // SentencePiece's dummy prefix goes before the text and after every special token, as in
    // llama.cpp and HF (which normalizes each piece between added tokens separately).
    bool after_special = true;
    std::string joined;  // a text run split over several fragments (segment boundaries)
    for (size_t i = 0; i < fragments.size();) {
        if (fragments[i].token >= 0) {
            ids.push_back(fragments[i++].token);
            after_special = true;
            continue;
        }
        size_t end = i + 1;
        while (end < fragments.size() && fragments[end].token < 0) ++end;
        std::string_view run = fragments[i].text;
        if (end > i + 1) {
            joined.clear();
            for (size_t j = i; j < end; ++j) joined += fragments[j].text;
            run = joined;
        }
        encode_raw(run, after_special, ids);
        after_special = false;
        i = end;
    }
    if (add_bos && data_.add_eos && data_.eos >= 0) ids.push_back(data_.eos);
    return ids;
}

void Tokenizer::encode_raw(std::string_view text, bool space_prefix,
                           std::vector<int32_t>& out) const {
    if (impl_->spm) {
        std::string s;
        s.reserve(text.size() + 8);
        if (data_.add_space_prefix && space_prefix) s += kSpaceMark;
        for (const char c : text) {
            if (c == ' ')
                s += kSpaceMark;
            else
                s.push_back(c);
        }
        impl_->spm->encode(s, out);
        return;
    }
    std::vector<std::string_view> words;
    impl_->pre->split(text, words);
    std::string mapped;
    for (const std::string_view w : words) {
        mapped.clear();
        impl_->alphabet.encode(w, mapped);
        impl_->byte_bpe->encode_word(mapped, out);
    }
}

bool Tokenizer::is_skipped_in_decode(int32_t id) const {
    const TokenType t = impl_->vocab.type(id);
    return t == TokenType::Control || t == TokenType::Unknown || t == TokenType::Unused;
}

std::string Tokenizer::token_bytes(int32_t id, bool at_start) const {
    const std::string_view text = token_text(id);
    if (is_skipped_in_decode(id)) return {};
    // Added tokens are stored as plain text, not in the byte-level alphabet.
    if (impl_->vocab.type(id) == TokenType::UserDefined) return std::string(text);
    std::string out;
    if (impl_->byte_bpe) {
        if (!impl_->alphabet.decode(text, out)) out.assign(text);
        return out;
    }
    if (impl_->vocab.type(id) == TokenType::Byte) {
        if (const auto b = parse_byte_token(text)) return std::string(1, static_cast<char>(*b));
    }
    for (size_t pos = 0; pos < text.size();) {
        if (text.substr(pos, kSpaceMark.size()) == kSpaceMark) {
            out.push_back(' ');
            pos += kSpaceMark.size();
        } else {
            out.push_back(text[pos++]);
        }
    }
    if (at_start && data_.add_space_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
    std::string bytes;
    bool at_start = true;
    for (const int32_t id : ids) {
        bytes += token_bytes(id, at_start);
        if (!is_skipped_in_decode(id)) at_start = false;
    }
    std::string out;
    utf8::append_lossy(out, bytes, /*final=*/true);
    return out;
}

}  // namespace vela
