#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace vela {

SpecialTokenMatcher::SpecialTokenMatcher(const Vocab& vocab) : by_first_byte_(256) {
    for (int32_t id = 0; id < vocab.size(); ++id) {
        const TokenType t = vocab.type(id);
        const std::string& text = vocab.text(id);
        if (text.empty() || (t != TokenType::Control && t != TokenType::UserDefined)) continue;
        by_first_byte_[static_cast<unsigned char>(text[0])].push_back(
            {text, id, t == TokenType::Control});
    }
    for (auto& list : by_first_byte_) {
        std::stable_sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) {
            return a.text.size() > b.text.size();
        });
    }
}

std::vector<Fragment> SpecialTokenMatcher::split(std::string_view text, bool parse_special) const {
    std::vector<Fragment> out;
    size_t raw_start = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        const Entry* hit = nullptr;
        for (const Entry& e : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
            if ((parse_special || !e.control) && text.substr(pos, e.text.size()) == e.text) {
                hit = &e;
                break;
            }
        }
        if (!hit) {
            ++pos;
            continue;
        }
        if (pos > raw_start) out.push_back({text.substr(raw_start, pos - raw_start), -1});
        out.push_back({hit->text, hit->id});
        pos += hit->text.size();
        raw_start = pos;
    }
    if (raw_start < text.size()) out.push_back({text.substr(raw_start), -1});
    return out;
}

}  // namespace vela
