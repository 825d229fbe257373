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

std::string strip(std::string_view s) {
    size_t begin = 0, end = s.size();
    while (begin < end) {
        size_t next = begin;
        if (!is_py_space(utf8::decode(s, next))) break;
        begin = next;
    }
    // Scan forward to find where the trailing whitespace run starts.
    size_t last_non_space = begin;
    for (size_t pos = begin; pos < end;) {
        const uint32_t cp = utf8::decode(s, pos);
        if (!is_py_space(cp)) last_non_space = pos;
    }
    return std::string(s.substr(begin, last_non_space - begin));
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

std::string render_chatml(const ChatTemplate& t, std::span<const ChatMessage> messages, bool gen) {
    std::string out;
    for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0 && messages[0].role != "system" && !t.default_system.empty())
            out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
        out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
    }
    if (gen) out += "<|im_start|>assistant\n";
    return out;
}

std::string render_llama3(std::span<const ChatMessage> messages, bool gen) {
    std::string out;
    for (const ChatMessage& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) +
               "<|eot_id|>";
    if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

// Llama-2-chat: the system prompt is folded into the first user turn; roles must alternate.
// The template ignores add_generation_prompt: "[/INST]" already asks for the answer.
std::string render_llama2(const ChatTemplate& t, std::span<const ChatMessage> messages) {
    std::string out;
    const bool has_system = !messages.empty() && messages[0].role == "system";
    const std::span<const ChatMessage> turns = has_system ? messages.subspan(1) : messages;
    for (size_t i = 0; i < turns.size(); ++i) {
        const ChatMessage& m = turns[i];
        if ((m.role == "user") != (i % 2 == 0))
            fail<InvalidArgument>(
                "chat: roles must alternate user/assistant/user/... (message {} is '{}')",
                i + (has_system ? 1 : 0), m.role);
        std::string content;
        if (i == 0 && has_system)
            content.append("<<SYS>>\n").append(messages[0].content).append("\n<</SYS>>\n\n");
        content.append(m.content);
        if (m.role == "user") {
            if (i > 0) out.append(t.bos_text);
            out.append("[INST] ").append(strip(content)).append(" [/INST]");
        } else {
            out.append(" ").append(strip(content)).append(" ").append(t.eos_text);
        }
    }
    return out;
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
    } else {
        log(LogLevel::Warn, "chat template not recognised ({} chars); using ChatML", jinja.size());
        t.format = ChatFormat::ChatML;
    }
    return t;
}

std::string render_chat(const ChatTemplate& tmpl, std::span<const ChatMessage> messages,
                        bool add_generation_prompt) {
    switch (tmpl.format) {
        case ChatFormat::ChatML:
            return render_chatml(tmpl, messages, add_generation_prompt);
        case ChatFormat::Llama3:
            return render_llama3(messages, add_generation_prompt);
        case ChatFormat::Llama2:
            return render_llama2(tmpl, messages);
    }
    return {};
}

std::string apply_chat_template(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                                bool add_generation_prompt) {
    const auto text_of = [&](int32_t id) {
        return id >= 0 ? std::string(tokenizer.token_text(id)) : std::string();
    };
    const ChatTemplate t = detect_chat_template(tokenizer.chat_template(), text_of(tokenizer.bos()),
                                                text_of(tokenizer.eos()));
    return render_chat(t, messages, add_generation_prompt);
}

}  // namespace vela
