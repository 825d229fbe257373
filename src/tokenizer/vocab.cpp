#include "tokenizer/vocab.h"

#include "core/error.h"

namespace vela {

Vocab::Vocab(std::vector<std::string> tokens, std::vector<TokenType> types)
    : tokens_(std::move(tokens)), types_(std::move(types)) {
    if (types_.empty()) types_.assign(tokens_.size(), TokenType::Normal);
    if (types_.size() != tokens_.size())
        fail<FormatError>("tokenizer: {} token types for {} tokens", types_.size(), tokens_.size());
    index_.reserve(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i) index_.emplace(tokens_[i], static_cast<int32_t>(i));
}

std::optional<int32_t> Vocab::find(std::string_view text) const {
    const auto it = index_.find(text);
    if (it == index_.end()) return std::nullopt;
    return it->second;
}

}  // namespace vela
