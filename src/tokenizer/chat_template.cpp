#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "core/log.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace vela {
namespace {

// Python's str.isspace(), which Jinja's `trim` and `.strip()` use.
bool is_py_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Bytes of leading whitespace.
size_t leading_space(std::string_view s) {
    size_t begin = 0;
    while (begin < s.size()) {
        size_t next = begin;
        if (!is_py_space(utf8::decode(s, next))) break;
        begin = next;
    }
    return begin;
}

// Where the trailing whitespace starts (0 when all of `s` is whitespace). UTF-8 is decoded
// forward only, so this scans the whole string.
size_t trailing_space_start(std::string_view s) {
    size_t end = 0;
    for (size_t pos = 0; pos < s.size();) {
        if (!is_py_space(utf8::decode(s, pos))) end = pos;
    }
    return end;
}

std::string strip(std::string_view s) {
    const std::string_view rest = s.substr(leading_space(s));
    return std::string(rest.substr(0, trailing_space_start(rest)));
}

// Builds the segment list, merging neighbours of the same kind.
class SegmentWriter {
  public:
    void markup(std::string_view s) { add(s, true); }  // the template's own text
    void text(std::string_view s) { add(s, false); }   // roles and message contents
    void append(const std::vector<TextSegment>& segments) {
        for (const TextSegment& s : segments) add(s.text, s.parse_special);
    }
    std::vector<TextSegment> take() { return std::move(out_); }

  private:
    void add(std::string_view s, bool parse_special) {
        if (s.empty()) return;
        if (!out_.empty() && out_.back().parse_special == parse_special)
            out_.back().text += s;
        else
            out_.push_back({std::string(s), parse_special});
    }
    std::vector<TextSegment> out_;
};

// Python's .strip() of the joined text, applied piecewise: whitespace may run across segments.
void strip(std::vector<TextSegment>& segments) {
    for (TextSegment& s : segments) {
        s.text.erase(0, leading_space(s.text));
        if (!s.text.empty()) break;
    }
    for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        it->text.resize(trailing_space_start(it->text));
        if (!it->text.empty()) break;
    }
}

// The system prompt a ChatML template inserts when the conversation has none, e.g. SmolLM2's
// `{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n...' }}`.
std::string find_default_system(const std::string& jinja) {
    if (jinja.find("!= 'system'") == std::string::npos &&
        jinja.find("!= \"system\"") == std::string::npos)
        return {};
    const std::string_view head = "<|im_start|>system";
    const size_t at = jinja.find(head);
    if (at == std::string::npos) return {};
    size_t begin = at + head.size();
    if (jinja.compare(begin, 1, "\n") == 0)
        begin += 1;
    else if (jinja.compare(begin, 2, "\\n") == 0)
        begin += 2;
    else
        return {};
    const size_t end = jinja.find("<|im_end|>", begin);
    if (end == std::string::npos) return {};
    return jinja.substr(begin, end - begin);
}

std::vector<TextSegment> render_chatml(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                       bool gen) {
    SegmentWriter out;
    for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0 && messages[0].role != "system" && !t.default_system.empty())
            out.markup("<|im_start|>system\n" + t.default_system + "<|im_end|>\n");
        out.markup("<|im_start|>");
        out.text(messages[i].role);
        out.markup("\n");
        out.text(messages[i].content);
        out.markup("<|im_end|>\n");
    }
    if (gen) out.markup("<|im_start|>assistant\n");
    return out.take();
}

std::vector<TextSegment> render_llama3(std::span<const ChatMessage> messages, bool gen) {
    SegmentWriter out;
    for (const ChatMessage& m : messages) {
        out.markup("<|start_header_id|>");
        out.text(m.role);
        out.markup("<|end_header_id|>\n\n");
        out.text(strip(m.content));
        out.markup("<|eot_id|>");
    }
    if (gen) out.markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
    return out.take();
}

// Llama-2-chat: the system prompt is folded into the first user turn; roles must alternate.
// The template ignores add_generation_prompt: "[/INST]" already asks for the answer.
std::vector<TextSegment> render_llama2(const ChatTemplate& t,
                                       std::span<const ChatMessage> messages) {
    SegmentWriter out;
    const bool has_system = !messages.empty() && messages[0].role == "system";
    const std::span<const ChatMessage> turns = has_system ? messages.subspan(1) : messages;
    for (size_t i = 0; i < turns.size(); ++i) {
        const ChatMessage& m = turns[i];
        if ((m.role == "user") != (i % 2 == 0))
            fail<InvalidArgument>(
                "chat: roles must alternate user/assistant/user/... (message {} is '{}')",
                i + (has_system ? 1 : 0), m.role);
        SegmentWriter turn;
        if (i == 0 && has_system) {
            turn.markup("<<SYS>>\n");
            turn.text(messages[0].content);
            turn.markup("\n<</SYS>>\n\n");
        }
        turn.text(m.content);
        std::vector<TextSegment> content = turn.take();
        strip(content);
        if (m.role == "user") {
            if (i > 0) out.markup(t.bos_text);
            out.markup("[INST] ");
            out.append(content);
            out.markup(" [/INST]");
        } else {
            out.markup(" ");
            out.append(content);
            out.markup(" " + t.eos_text);
        }
    }
    return out.take();
}

// llama.cpp's trim (C isspace), which its Gemma rendering applies; Gemma's Jinja template uses
// Python's, which differs only on non-ASCII spaces.
std::string trim_ascii(std::string_view s) {
    const auto space = [](char c) {
        return std::string_view(" \t\n\v\f\r").find(c) != std::string_view::npos;
    };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return std::string(s);
}

// Gemma has no system turn: as llama.cpp renders it, system messages (trimmed) are held and put
// before the next user turn, followed by a blank line; "assistant" is called "model".
std::vector<TextSegment> render_gemma(std::span<const ChatMessage> messages, bool gen) {
    SegmentWriter out;
    std::string system;
    for (const ChatMessage& m : messages) {
        if (m.role == "system") {
            system += trim_ascii(m.content);
            continue;
        }
        const bool model = m.role == "assistant";
        out.markup("<start_of_turn>");
        out.text(model ? "model" : m.role);
        out.markup("\n");
        if (!system.empty() && !model) {
            out.text(system + "\n\n");
            system.clear();
        }
        out.text(trim_ascii(m.content));
        out.markup("<end_of_turn>\n");
    }
    if (gen) out.markup("<start_of_turn>model\n");
    return out.take();
}

}  // namespace

ChatTemplate detect_chat_template(const std::string& jinja, std::string bos_text,
                                  std::string eos_text) {
    ChatTemplate t;
    t.bos_text = std::move(bos_text);
    t.eos_text = std::move(eos_text);
    if (jinja.find("<|im_start|>") != std::string::npos) {
        t.format = ChatFormat::ChatML;
        t.default_system = find_default_system(jinja);
    } else if (jinja.find("<|start_header_id|>") != std::string::npos) {
        t.format = ChatFormat::Llama3;
    } else if (jinja.find("[INST]") != std::string::npos) {
        t.format = ChatFormat::Llama2;
    } else if (jinja.find("<start_of_turn>") != std::string::npos) {
        t.format = ChatFormat::Gemma;
    } else {
        log(LogLevel::Warn, "chat template not recognised ({} chars); using ChatML", jinja.size());
        t.format = ChatFormat::ChatML;
    }
    return t;
}

std::vector<TextSegment> render_chat(const ChatTemplate& tmpl,
                                     std::span<const ChatMessage> messages,
                                     bool add_generation_prompt) {
    switch (tmpl.format) {
        case ChatFormat::ChatML:
            return render_chatml(tmpl, messages, add_generation_prompt);
        case ChatFormat::Llama3:
            return render_llama3(messages, add_generation_prompt);
        case ChatFormat::Llama2:
            return render_llama2(tmpl, messages);
        case ChatFormat::Gemma:
            return render_gemma(messages, add_generation_prompt);
    }
    return {};
}

std::vector<TextSegment> apply_chat_template(const Tokenizer& tokenizer,
                                             std::span<const ChatMessage> messages,
                                             bool add_generation_prompt) {
    const auto text_of = [&](int32_t id) {
        return id >= 0 ? std::string(tokenizer.token_text(id)) : std::string();
    };
    // Some Gemma GGUFs (Gemma 3 270M) ship no template; their turn tokens say what they are.
    if (tokenizer.chat_template().empty() && tokenizer.find_token("<start_of_turn>"))
        return render_gemma(messages, add_generation_prompt);
    const ChatTemplate t = detect_chat_template(tokenizer.chat_template(), text_of(tokenizer.bos()),
                                                text_of(tokenizer.eos()));
    return render_chat(t, messages, add_generation_prompt);
}

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) {
    const std::vector<TextSegment> segments =
        apply_chat_template(tokenizer, messages, add_generation_prompt);
    return tokenizer.encode(segments, tokenizer.add_bos_default());
}

}  // namespace vela
