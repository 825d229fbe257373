#include "tokenizer/pre_tokenizer.h"

#include <re2/re2.h>

#include <string>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace vela {
namespace {

// Unicode White_Space, which `\s` means in the Oniguruma regexes HF tokenizers run; RE2's own
// `\s` is ASCII only. Used inside character classes.
constexpr std::string_view kSpace =
    R"(\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

bool is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

// The pre-tokenizer regex of each family, minus its trailing `|\s+(?!\S)|\s+`.
std::string words_pattern(PreTokenizerKind kind) {
    const std::string s(kSpace);
    switch (kind) {
        case PreTokenizerKind::Gpt2:
        case PreTokenizerKind::SmolLM:
            return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" + s + R"(\p{L}\p{N}]+)";
        case PreTokenizerKind::Llama3:
        case PreTokenizerKind::Qwen2: {
            const std::string numbers =
                kind == PreTokenizerKind::Llama3 ? R"(\p{N}{1,3})" : R"(\p{N})";
            return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|)" + numbers +
                   R"(| ?[^)" + s + R"(\p{L}\p{N}]+[\r\n]*|[)" + s + R"(]*[\r\n]+)";
        }
    }
    return {};
}

std::unique_ptr<re2::RE2> compile(const std::string& pattern) {
    re2::RE2::Options opt;
    opt.set_log_errors(false);
    auto re = std::make_unique<re2::RE2>(pattern, opt);
    if (!re->ok()) fail("pre-tokenizer regex failed to compile: {}", re->error());
    return re;
}

}  // namespace

PreTokenizer::PreTokenizer(PreTokenizerKind kind) : words_(compile(words_pattern(kind))) {
    if (kind == PreTokenizerKind::SmolLM) digits_ = compile(R"(\p{N})");
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
    if (!digits_) {
        split_words(text, out);
        return;
    }
    // Digits become words of their own; the regex then runs on each stretch between them, so
    // a space before a digit stays a word of its own (HF's Digits pre-tokenizer comes first).
    size_t pos = 0;
    re2::StringPiece m;
    while (pos < text.size() &&
           digits_->Match(text, pos, text.size(), re2::RE2::UNANCHORED, &m, 1)) {
        const size_t start = static_cast<size_t>(m.data() - text.data());
        if (start > pos) split_words(text.substr(pos, start - pos), out);
        out.push_back(text.substr(start, m.size()));
        pos = start + m.size();
    }
    if (pos < text.size()) split_words(text.substr(pos), out);
}

void PreTokenizer::split_words(std::string_view text, std::vector<std::string_view>& out) const {
    size_t pos = 0;
    re2::StringPiece m;
    while (pos < text.size()) {
        if (words_->Match(text, pos, text.size(), re2::RE2::ANCHOR_START, &m, 1) && !m.empty()) {
            out.push_back(text.substr(pos, m.size()));
            pos += m.size();
            continue;
        }
        // At whitespace (or an invalid byte, kept alone). `\s+(?!\S)` takes the run but leaves
        // its last character to the next word when a non-space follows; `\s+` takes a lone one.
        size_t end = pos, last = pos;
        while (end < text.size()) {
            size_t next = end;
            if (!is_space(utf8::decode(text, next))) break;
            last = end;
            end = next;
        }
        if (end == pos)
            end = pos + 1;
        else if (end < text.size() && last > pos)
            end = last;
        out.push_back(text.substr(pos, end - pos));
        pos = end;
    }
}

}  // namespace vela
