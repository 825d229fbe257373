#include "tokenizer/utf8.h"

namespace vela::utf8 {
namespace {

constexpr uint32_t kReplacement = 0xFFFD;

// Valid range of the second byte after lead `c` (Unicode Table 3-7): excludes overlongs,
// surrogates and code points above U+10FFFF. Returns false for bytes that cannot lead.
bool second_byte_range(unsigned char c, unsigned char& lo, unsigned char& hi) {
    lo = 0x80;
    hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return true;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    return (c >= 0xE0 && c <= 0xEF) || (c >= 0xF0 && c <= 0xF4);
}

enum class Scan { Ok, Invalid, Incomplete };

// Scans one sequence at s[pos]; `len` receives the sequence length (Ok) or the length of the
// maximal subpart to replace (Invalid) or the bytes present (Incomplete).
Scan scan(std::string_view s, size_t pos, size_t& len) {
    const auto c = static_cast<unsigned char>(s[pos]);
    if (c < 0x80) {
        len = 1;
        return Scan::Ok;
    }
    unsigned char lo, hi;
    if (!second_byte_range(c, lo, hi)) {
        len = 1;
        return Scan::Invalid;
    }
    const size_t need = seq_len(c);
    len = 1;
    while (len < need) {
        if (pos + len >= s.size()) return Scan::Incomplete;
        const auto b = static_cast<unsigned char>(s[pos + len]);
        const bool ok = len == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) return Scan::Invalid;
        ++len;
    }
    return Scan::Ok;
}

}  // namespace

uint32_t decode(std::string_view s, size_t& pos) {
    size_t len = 0;
    if (scan(s, pos, len) != Scan::Ok) {
        pos += 1;
        return kReplacement;
    }
    const auto c = static_cast<unsigned char>(s[pos]);
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
    pos += len;
    return cp;
}

void append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

size_t append_lossy(std::string& out, std::string_view bytes, bool final) {
    size_t pos = 0;
    while (pos < bytes.size()) {
        size_t len = 0;
        switch (scan(bytes, pos, len)) {
            case Scan::Ok:
                out.append(bytes.substr(pos, len));
                break;
            case Scan::Invalid:
                append(out, kReplacement);
                break;
            case Scan::Incomplete:
                if (!final) return pos;
                append(out, kReplacement);
                break;
        }
        pos += len;
    }
    return pos;
}

bool is_valid(std::string_view s) {
    size_t pos = 0;
    while (pos < s.size()) {
        size_t len = 0;
        if (scan(s, pos, len) != Scan::Ok) return false;
        pos += len;
    }
    return true;
}

}  // namespace vela::utf8
