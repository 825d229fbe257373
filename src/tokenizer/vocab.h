#pragma once
// Token texts, types and the reverse text -> id index, shared by both BPE flavours.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_data.h"

namespace vela {

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class Vocab {
  public:
    Vocab(std::vector<std::string> tokens, std::vector<TokenType> types);

    int32_t size() const { return static_cast<int32_t>(tokens_.size()); }
    const std::string& text(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
    TokenType type(int32_t id) const { return types_[static_cast<size_t>(id)]; }
    bool valid(int32_t id) const { return id >= 0 && id < size(); }
    // The id of a token text; when texts repeat, the lowest id wins.
    std::optional<int32_t> find(std::string_view text) const;

  private:
    std::vector<std::string> tokens_;
    std::vector<TokenType> types_;
    std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> index_;
};

}  // namespace vela
