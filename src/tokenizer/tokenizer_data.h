#pragma once
// Everything a Tokenizer is built from, as plain data. The GGUF adapter (tokenizer_gguf.cpp)
// fills it from `tokenizer.ggml.*` metadata; tests can fill it from any other source.
#include <cstdint>
#include <string>
#include <vector>

namespace vela {

namespace gguf {
class File;
}

// `tokenizer.ggml.model`.
enum class TokenizerModel {
    ByteLevelBpe,   // "gpt2": GPT-2 byte-to-unicode alphabet, merges ranked by list order
    SentencePiece,  // "llama": SentencePiece-style BPE, merges chosen by token score
};

// `tokenizer.ggml.pre`: how raw text is split into words before BPE (byte-level models only).
enum class PreTokenizerKind {
    Gpt2,    // "gpt2", "default" and unknown names: the original GPT-2 split
    SmolLM,  // "smollm", "starcoder", "refact": every digit alone, then the GPT-2 split
    Llama3,  // "llama-bpe", "llama3": case-insensitive contractions, numbers in groups of 3
    Qwen2,   // "qwen2", "deepseek-r1-qwen": like Llama-3 but every digit alone
};

// Values of `tokenizer.ggml.token_type` (same numbering as llama.cpp / the gguf package).
enum class TokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

struct TokenizerData {
    TokenizerModel model = TokenizerModel::ByteLevelBpe;
    PreTokenizerKind pre = PreTokenizerKind::Gpt2;
    std::vector<std::string> tokens;  // id -> text (byte-level alphabet or "▁" form)
    std::vector<TokenType> types;     // empty means all Normal
    std::vector<std::string> merges;  // "left right", highest priority first (byte-level only)
    std::vector<float> scores;        // SentencePiece merge priority; empty for byte-level
    int32_t bos = -1, eos = -1, unk = -1, pad = -1;
    int32_t eot = -1, eom = -1;  // end-of-turn / end-of-message when the model has them
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = false;  // SentencePiece: prepend "▁" to the text (a dummy prefix)
    // Byte-level models whose pre-tokenizer keeps a whole word when it is already a token
    // (Llama-3's "ignore_merges"), skipping the merge loop for it.
    bool ignore_merges = false;
    std::string chat_template;
};

// Reads `tokenizer.ggml.*` and `tokenizer.chat_template` (tokenizer_gguf.cpp); FormatError when
// required keys are missing or malformed. Tokenizer::from_gguf is this plus the constructor.
TokenizerData tokenizer_data_from_gguf(const gguf::File& file);

// Maps a `tokenizer.ggml.pre` name to its kind; unknown names fall back to Gpt2.
PreTokenizerKind pre_tokenizer_from_name(const std::string& name);

}  // namespace vela
