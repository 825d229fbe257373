#include "tokenizer/stream_decoder.h"

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace vela {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}

std::string StreamDecoder::push(int32_t id) {
    pending_ += tokenizer_->token_bytes(id, at_start_);
    if (!tokenizer_->is_skipped_in_decode(id)) at_start_ = false;
    // The lossy rule replaces invalid bytes the moment they are known to be invalid and keeps an
    // incomplete tail, so chunk by chunk it yields exactly what decode() yields for the whole.
    std::string out;
    const size_t used = utf8::append_lossy(out, pending_, /*final=*/false);
    pending_.erase(0, used);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out;
    utf8::append_lossy(out, pending_, /*final=*/true);
    pending_.clear();
    at_start_ = true;
    return out;
}

}  // namespace vela
