// GGUF -> TokenizerData: the only place that knows the `tokenizer.ggml.*` key names.
#include <optional>

#include "core/error.h"
#include "core/log.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace vela {
namespace {

int32_t optional_id(const gguf::File& f, std::string_view key) {
    const std::optional<int64_t> v = f.get_int(key);
    if (!v) return -1;
    // Some converters write UINT32_MAX or -1 for "none".
    if (*v < 0 || *v > INT32_MAX) return -1;
    return static_cast<int32_t>(*v);
}

std::vector<TokenType> read_types(const gguf::File& f, size_t n_tokens) {
    std::vector<TokenType> types;
    const auto raw = f.get_int_array("tokenizer.ggml.token_type");
    if (!raw) return types;
    if (raw->size() != n_tokens)
        fail<FormatError>("{}: tokenizer.ggml.token_type has {} entries for {} tokens", f.path(),
                          raw->size(), n_tokens);
    types.reserve(n_tokens);
    for (const int64_t t : *raw) {
        if (t < 0 || t > static_cast<int64_t>(TokenType::Byte))
            fail<FormatError>("{}: tokenizer.ggml.token_type value {} is not a token type",
                              f.path(), t);
        types.push_back(static_cast<TokenType>(t));
    }
    return types;
}

}  // namespace

PreTokenizerKind pre_tokenizer_from_name(const std::string& name) {
    if (name == "smollm" || name == "starcoder" || name == "refact")
        return PreTokenizerKind::SmolLM;
    if (name == "llama-bpe" || name == "llama3" || name == "llama-v3")
        return PreTokenizerKind::Llama3;
    if (name == "qwen2" || name == "deepseek-r1-qwen") return PreTokenizerKind::Qwen2;
    return PreTokenizerKind::Gpt2;
}

TokenizerData tokenizer_data_from_gguf(const gguf::File& f) {
    TokenizerData d;
    const std::string model = f.require_string("tokenizer.ggml.model");
    if (model == "gpt2")
        d.model = TokenizerModel::ByteLevelBpe;
    else if (model == "llama")
        d.model = TokenizerModel::SentencePiece;
    else
        fail<FormatError>("{}: tokenizer.ggml.model '{}' is not supported (gpt2, llama)", f.path(),
                          model);

    const std::string pre = f.get_string("tokenizer.ggml.pre").value_or("default");
    d.pre = pre_tokenizer_from_name(pre);
    if (d.model == TokenizerModel::ByteLevelBpe && d.pre == PreTokenizerKind::Gpt2 &&
        pre != "gpt2" && pre != "default")
        log(LogLevel::Warn, "{}: pre-tokenizer '{}' not known; using GPT-2's split", f.path(), pre);
    d.ignore_merges = d.pre == PreTokenizerKind::Llama3;
    auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->empty())
        fail<FormatError>("{}: missing tokenizer.ggml.tokens", f.path());
    d.tokens = std::move(*tokens);
    d.types = read_types(f, d.tokens.size());

    if (d.model == TokenizerModel::ByteLevelBpe) {
        auto merges = f.get_string_array("tokenizer.ggml.merges");
        if (!merges) fail<FormatError>("{}: missing tokenizer.ggml.merges", f.path());
        d.merges = std::move(*merges);
    } else {
        const auto scores = f.get_float_array("tokenizer.ggml.scores");
        if (!scores) fail<FormatError>("{}: missing tokenizer.ggml.scores", f.path());
        d.scores.assign(scores->begin(), scores->end());
    }
    d.bos = optional_id(f, "tokenizer.ggml.bos_token_id");
    d.eos = optional_id(f, "tokenizer.ggml.eos_token_id");
    d.unk = optional_id(f, "tokenizer.ggml.unknown_token_id");
    d.pad = optional_id(f, "tokenizer.ggml.padding_token_id");
    d.eot = optional_id(f, "tokenizer.ggml.eot_token_id");
    d.eom = optional_id(f, "tokenizer.ggml.eom_token_id");
    // Defaults as llama.cpp: SentencePiece models add BOS and the dummy prefix unless told not to.
    const bool spm = d.model == TokenizerModel::SentencePiece;
    d.add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(spm);
    d.add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
    d.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(spm);
    d.chat_template = f.get_string("tokenizer.chat_template").value_or("");
    return d;
}

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
    return Tokenizer(tokenizer_data_from_gguf(f));
}

}  // namespace vela
