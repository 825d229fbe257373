#pragma once
// A prompt assembled from pieces of different trust: a chat template's own text, where the
// texts of control tokens (<|im_start|>, <|eot_id|>, ...) stand for those tokens, and message
// text, which must stay text so that a user cannot forge a turn boundary.
#include <span>
#include <string>
#include <vector>

namespace vela {

struct TextSegment {
    std::string text;
    bool parse_special = false;  // control-token texts in `text` become those tokens
};

// The segments' texts joined: the prompt as one string (what a Jinja template renders).
inline std::string joined_text(std::span<const TextSegment> segments) {
    std::string out;
    for (const TextSegment& s : segments) out += s.text;
    return out;
}

}  // namespace vela
