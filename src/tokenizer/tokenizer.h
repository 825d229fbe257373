#pragma once
// Text <-> token ids for the two tokenizer families GGUF files carry: byte-level BPE ("gpt2":
// SmolLM2, Llama-3, Qwen2, GPT-2) and SentencePiece-style BPE ("llama": Llama-2, Mistral).
// Token ids match Hugging Face `tokenizers` for the same vocabulary (tests/tokenizer/).
// Thread-safe: encode/decode are const and may run concurrently.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/text_segment.h"
#include "tokenizer/tokenizer_data.h"

namespace vela {

namespace gguf {
class File;
}
struct Fragment;

class Tokenizer {
  public:
    // Reads `tokenizer.ggml.*` and `tokenizer.chat_template`; FormatError on missing/invalid
    // metadata (unknown model, merges naming absent tokens, special ids out of range, ...).
    static Tokenizer from_gguf(const gguf::File& file);
    explicit Tokenizer(TokenizerData data);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    // parse_special: control-token texts in `text` become those tokens (chat-formatted prompts);
    // otherwise they are tokenized as plain text. User-defined tokens are always recognised.
    // add_bos: prepend BOS (and append EOS when the model asks for it, as llama.cpp's
    // add_special does).
    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
    // Encodes the joined text of `segments`, parsing control-token texts only inside segments
    // that ask for it. Text runs on across segment boundaries (BPE and SentencePiece's dummy
    // prefix see the joined text), so the ids equal encode(joined_text(segments), add_bos, true)
    // whenever no plain segment holds a control token's text.
    std::vector<int32_t> encode(std::span<const TextSegment> segments, bool add_bos) const;
    // Control tokens (BOS, EOS, <|im_start|>, ...) are skipped, as HF's
    // skip_special_tokens=True; every other token is rendered. Invalid UTF-8 that byte tokens
    // can produce is replaced by U+FFFD, so the result is always valid UTF-8.
    std::string decode(std::span<const int32_t> ids) const;
    // The vocabulary's text of a token (byte-level alphabet or "▁" form). InvalidArgument when
    // the id is out of range.
    std::string_view token_text(int32_t id) const;
    // The id of a token text (the lowest when texts repeat), if the vocabulary has it.
    std::optional<int32_t> find_token(std::string_view text) const;

    int32_t vocab_size() const;
    int32_t bos() const { return data_.bos; }
    int32_t eos() const { return data_.eos; }
    // End of generation: eos, eot, eom and the control tokens that end a turn in common chat
    // formats (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, ...).
    bool is_eog(int32_t id) const;
    bool add_bos_default() const { return data_.add_bos; }
    const std::string& chat_template() const { return data_.chat_template; }
    TokenizerModel model() const { return data_.model; }

    // The raw bytes a token contributes to decoded text ("" for control tokens). `at_start`:
    // the token is the first rendered one, where SentencePiece drops its dummy-prefix space.
    std::string token_bytes(int32_t id, bool at_start) const;
    // Whether decode() skips this token (control, unknown and unused tokens).
    bool is_skipped_in_decode(int32_t id) const;

  private:
    struct Impl;
    void encode_raw(std::string_view text, bool space_prefix, std::vector<int32_t>& out) const;
    std::vector<int32_t> encode_fragments(std::span<const Fragment> fragments, bool add_bos,
                                          size_t size_hint) const;

    TokenizerData data_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vela
